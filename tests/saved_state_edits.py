"""Saved buffer states with one field changed, for the tests that a corrupted state raises naming its field."""

import json


def replaced(state: dict, path, value) -> dict:
    """A deep copy of `state` with the field at `path` (a sequence of keys) set to `value`."""
    state = json.loads(json.dumps(state))
    target = state
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return state
