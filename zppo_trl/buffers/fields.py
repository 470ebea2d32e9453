"""Reading a buffer's saved state back: one rule per kind of field, shared by every buffer, each fault a
`BufferStateError` that names the buffer and the field (`<what> state field `<name>` ...`)."""

from __future__ import annotations

import math

from .hard import BufferStateError


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_question_id(value) -> bool:
    """Question ids are `int` or `str` (never a bool, which is an int to Python)."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def id_order(prompt_id) -> tuple:
    """Sort key for mixed int/str ids: ints first, each kind in its natural order."""
    return (isinstance(prompt_id, str), prompt_id)


class StateFields:
    """The checks of one buffer's saved state (`what`: "experience", "retrospective")."""

    def __init__(self, what: str):
        self.what = what

    def error(self, name: str, problem: str) -> BufferStateError:
        return BufferStateError(f"{self.what} state field `{name}` {problem}.")

    def open(self, state, schema_version: int) -> dict:
        """The state itself, checked to be a dict of this zppo_trl's schema."""
        if not isinstance(state, dict):
            raise BufferStateError(f"{self.what} state must be a dict, got {type(state).__name__}.")
        if state.get("schema_version") != schema_version:
            raise BufferStateError(
                f"{self.what} state has `schema_version`={state.get('schema_version')!r}, this zppo_trl reads "
                f"{schema_version}. Resume with the zppo_trl version that wrote it, or start without the state."
            )
        return state

    def field(self, state: dict, name: str, kind: type):
        """`state[name]`, which must exist and be a `kind`."""
        if name not in state:
            raise BufferStateError(f"{self.what} state lacks the field `{name}`.")
        value = state[name]
        if not isinstance(value, kind):
            raise self.error(name, f"must be a {kind.__name__}, got {type(value).__name__}: {value!r:.80}")
        return value

    def count(self, value, name: str) -> int:
        """A non-negative integer."""
        if not is_int(value) or value < 0:
            raise self.error(name, f"must be a non-negative integer, got {value!r}")
        return value

    def question_id(self, value, name: str):
        if not is_question_id(value):
            raise self.error(
                name, f"holds a question id of type {type(value).__name__}: {value!r}; ids are int or str"
            )
        return value

    def fraction(self, value, name: str) -> float:
        """A number in [0, 1]."""
        if not is_number(value) or not 0.0 <= value <= 1.0:
            raise self.error(name, f"must be in [0, 1], got {value!r}")
        return float(value)
