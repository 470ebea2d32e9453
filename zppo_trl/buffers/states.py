"""Retrospective Replay's buffer of states (RRL, arXiv 2504.14363, adapted to GRPO; the method is described in
`methods/retrospective.py`): at most one state per hard question, its continuations' counts and its question's latest
plain accuracy; a state is dropped when its question graduates or when it stops being promising after `min_tries`
replayed continuations. Pure Python. Every counter and state is in `state_dict()`, identical on every process when
every process feeds the same visits (the trainer gathers them), like `hard.HardQuestionBuffer`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .fields import StateFields, is_number, is_question_id
from .hard import BufferStateError

FIELDS = StateFields("retrospective")

SCHEMA_VERSION = 1
_COUNTERS = ("stored", "replaced", "replayed", "dropped_unpromising", "dropped_graduated", "evicted")


# --------------------------------------------------------------------------------------------------------------------
# the buffer of states


@dataclass
class StoredState:
    """One question's stored state and what is known of it."""

    prefix: str  # the state: the rollout's text up to the cut
    successes: int  # correct replayed continuations
    tries: int  # scored replayed continuations
    stored_accuracy: float  # the question's plain accuracy when the state was stored
    accuracy: float  # the question's latest plain accuracy
    stored_round: int  # generation round of the harvest

    @property
    def continuation_success(self) -> float:
        """Continuation success with the harvest as a 1-of-1 prior: `(successes + 1) / (tries + 1)`."""
        return (self.successes + 1) / (self.tries + 1)


def is_promising(state: StoredState) -> bool:
    """Whether continuations from `state` succeed more often than plain rollouts of its question (prior included)."""
    return state.continuation_success > state.accuracy


class RetrospectiveBuffer:
    """At most one state per hard question, keyed by `prompt_id` (an `int` or `str`), oldest first.

    Args:
        capacity (`int`, *optional*, defaults to `1000`):
            Maximum number of states held; the oldest stored is evicted beyond it (ours).
        hard_threshold (`float`, *optional*, defaults to `0.5`):
            τ, as in the ZPPO buffer: states are harvested from questions with plain accuracy below it, and a
            question whose plain accuracy reaches it graduates and drops its state.
        min_tries (`int`, *optional*, defaults to `8`):
            Replayed continuations after which a state that is not promising is dropped (ours: one group of G = 8).
        harvest_until_round (`int` or `None`, *optional*, defaults to `None`):
            States are harvested only in generation rounds below it (the paper stores states early); None: always.

    Example:
    ```python
    >>> buf = RetrospectiveBuffer(min_tries=4)
    >>> buf.harvest("q1", "3 + 4 = 7.", accuracy=0.25)
    'stored'
    >>> buf.record_replay("q1", successes=0, tries=4)  # 1/5 = 0.2 < 0.25 after 4 tries
    'dropped'
    ```
    """

    def __init__(
        self,
        capacity: int = 1000,
        hard_threshold: float = 0.5,
        min_tries: int = 8,
        harvest_until_round: int | None = None,
    ):
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"`capacity` must be a positive integer, got {capacity!r}. Use 1000 (ours).")
        if not 0.0 < hard_threshold <= 1.0:
            raise ValueError(f"`hard_threshold` must be in (0, 1], got {hard_threshold!r}. Use 0.5 (paper default).")
        if not isinstance(min_tries, int) or min_tries < 1:
            raise ValueError(f"`min_tries` must be a positive integer, got {min_tries!r}. Use G, e.g. 8.")
        if harvest_until_round is not None and (not isinstance(harvest_until_round, int) or harvest_until_round < 1):
            raise ValueError(
                f"`harvest_until_round` must be None or a positive integer, got {harvest_until_round!r}. Use None to "
                "harvest in every round."
            )
        self.capacity = capacity
        self.hard_threshold = hard_threshold
        self.min_tries = min_tries
        self.harvest_until_round = harvest_until_round
        self._states: OrderedDict[int | str, StoredState] = OrderedDict()
        self.totals = dict.fromkeys(_COUNTERS, 0)
        # over every recorded replay, dropped states included: continuations' successes and tries, and the successes
        # plain rollouts would have had (Σ tries × the question's plain accuracy at the time), for reports
        self.replay_successes = 0
        self.replay_tries = 0
        self.replay_plain_expected = 0.0

    # ----------------------------------------------------------------------------------------------------------------
    # container protocol

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, prompt_id) -> bool:
        return prompt_id in self._states

    def __iter__(self):
        return iter(self._states)

    def ids(self) -> list:
        """Question ids with a state, oldest stored first."""
        return list(self._states)

    def state(self, prompt_id) -> StoredState | None:
        """The stored state of a question, or None."""
        return self._states.get(prompt_id)

    def counters(self) -> dict[str, int]:
        """Running totals: stored (harvests kept), replaced, replayed (recorded replays), dropped_unpromising,
        dropped_graduated, evicted. `stored == replaced + dropped_* + evicted + len(self)` always holds."""
        return dict(self.totals)

    # ----------------------------------------------------------------------------------------------------------------
    # updates

    def record_plain(self, prompt_id, accuracy: float) -> str:
        """Record a plain visit's accuracy for a question's state: `"graduated"` (accuracy >= τ: state dropped),
        `"dropped"` (no longer promising after `min_tries`), `"updated"`, or `"absent"` (no state: nothing kept)."""
        _check_accuracy(accuracy)
        state = self._states.get(prompt_id)
        if state is None:
            return "absent"
        if accuracy >= self.hard_threshold:
            del self._states[prompt_id]
            self.totals["dropped_graduated"] += 1
            return "graduated"
        state.accuracy = accuracy
        return self._judge(prompt_id, state)

    def harvest(self, prompt_id, prefix: str, accuracy: float, round_index: int = 0) -> str:
        """Offer `prefix`, the state of a correct plain rollout (`harvest_state`) of a visit with plain `accuracy`.

        Records the accuracy first (`record_plain`, so call one or the other per plain visit), then returns
        `"graduated"`/`"easy"` (accuracy >= τ: nothing stored), `"closed"` (round >= `harvest_until_round`),
        `"kept"` (the stored state's measured continuation success beats the plain accuracy), `"replaced"` or
        `"stored"`.
        """
        if not isinstance(prefix, str) or not prefix.strip():
            raise ValueError(f"`prefix` must be a non-blank string, got {prefix!r}.")
        if not 0.0 < accuracy <= 1.0:
            raise ValueError(
                f"`accuracy` must be in (0, 1] for a harvest, got {accuracy!r}: a state comes from a correct rollout."
            )
        if not is_question_id(prompt_id):
            raise ValueError(f"`prompt_id` must be an int or str, got {type(prompt_id).__name__}: {prompt_id!r}.")
        if self.record_plain(prompt_id, accuracy) == "graduated":
            return "graduated"
        if accuracy >= self.hard_threshold:
            return "easy"
        if self.harvest_until_round is not None and round_index >= self.harvest_until_round:
            return "closed"
        old = self._states.get(prompt_id)
        if old is not None and old.tries and old.successes / old.tries > accuracy:
            return "kept"
        if old is not None:
            del self._states[prompt_id]
            self.totals["replaced"] += 1
        self._states[prompt_id] = StoredState(prefix, 0, 0, accuracy, accuracy, round_index)
        self.totals["stored"] += 1
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)
            self.totals["evicted"] += 1
        return "replaced" if old is not None else "stored"

    def record_replay(self, prompt_id, successes: int, tries: int) -> str:
        """Record a replay of a question's state: `successes` of `tries` scored continuations were correct.
        Returns `"updated"`, `"dropped"` (not promising after `min_tries`), `"unscored"` (tries == 0: nothing
        changes) or `"absent"` (the state left meanwhile, e.g. its question graduated this round)."""
        if not (isinstance(successes, int) and isinstance(tries, int) and 0 <= successes <= tries):
            raise ValueError(
                f"`successes` and `tries` must be integers with 0 <= successes <= tries, got {successes!r} and "
                f"{tries!r}."
            )
        state = self._states.get(prompt_id)
        if state is None:
            return "absent"
        if tries == 0:
            return "unscored"
        state.successes += successes
        state.tries += tries
        self.totals["replayed"] += 1
        self.replay_successes += successes
        self.replay_tries += tries
        self.replay_plain_expected += tries * state.accuracy
        return self._judge(prompt_id, state)

    def _judge(self, prompt_id, state: StoredState) -> str:
        if state.tries >= self.min_tries and not is_promising(state):
            del self._states[prompt_id]
            self.totals["dropped_unpromising"] += 1
            return "dropped"
        return "updated"

    # ----------------------------------------------------------------------------------------------------------------
    # (de)serialisation

    def state_dict(self) -> dict:
        """A JSON-serialisable snapshot. Ids keep their type (int or str) because states are stored as lists."""
        return {
            "schema_version": SCHEMA_VERSION,
            "capacity": self.capacity,
            "hard_threshold": self.hard_threshold,
            "min_tries": self.min_tries,
            "harvest_until_round": self.harvest_until_round,
            "states": [
                [pid, s.prefix, s.successes, s.tries, s.stored_accuracy, s.accuracy, s.stored_round]
                for pid, s in self._states.items()
            ],
            "totals": dict(self.totals),
            "replay_successes": self.replay_successes,
            "replay_tries": self.replay_tries,
            "replay_plain_expected": self.replay_plain_expected,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a snapshot in place. Raises `BufferStateError` naming the field (and changes nothing) when it is
        malformed. The settings (`capacity`, `hard_threshold`, ...) stay this buffer's (the run's config)."""
        FIELDS.open(state, SCHEMA_VERSION)
        states = OrderedDict()
        rows = FIELDS.field(state, "states", list)
        for i, row in enumerate(rows):
            where = f"states[{i}]"
            if not isinstance(row, list) or len(row) != 7:
                raise BufferStateError(f"retrospective state field `{where}` must be a list of 7 values, got {row!r}.")
            pid, prefix, successes, tries, stored_accuracy, accuracy, stored_round = row
            if not is_question_id(pid) or pid in states:
                raise BufferStateError(
                    f"retrospective state field `{where}.prompt_id` is invalid or repeated: {pid!r}."
                )
            if not isinstance(prefix, str) or not prefix.strip():
                raise BufferStateError(f"retrospective state field `{where}.prefix` must be a non-blank string.")
            for name, value in (("successes", successes), ("tries", tries), ("stored_round", stored_round)):
                FIELDS.count(value, f"{where}.{name}")
            if successes > tries:
                raise BufferStateError(
                    f"retrospective state field `{where}.successes`={successes} exceeds `{where}.tries`={tries}."
                )
            stored_accuracy = FIELDS.fraction(stored_accuracy, f"{where}.stored_accuracy")
            states[pid] = StoredState(
                prefix, successes, tries, stored_accuracy, FIELDS.fraction(accuracy, f"{where}.accuracy"), stored_round
            )
        totals = FIELDS.field(state, "totals", dict)
        if set(totals) != set(_COUNTERS):
            raise BufferStateError(
                f"retrospective state field `totals` must have the keys {sorted(_COUNTERS)}, got {sorted(totals)}."
            )
        for name in _COUNTERS:
            FIELDS.count(totals[name], f"totals.{name}")
        for name in ("replay_successes", "replay_tries"):
            FIELDS.count(state.get(name), name)
        plain_expected = state.get("replay_plain_expected")
        if not is_number(plain_expected) or not 0.0 <= plain_expected <= state["replay_tries"]:
            raise BufferStateError(
                "retrospective state field `replay_plain_expected` must be in [0, replay_tries], got "
                f"{plain_expected!r}."
            )
        if state["replay_successes"] > state["replay_tries"]:
            raise BufferStateError("retrospective state field `replay_successes` exceeds `replay_tries`.")
        if len(states) > self.capacity:
            raise BufferStateError(
                f"retrospective state field `states` holds {len(states)} states, more than this buffer's "
                f"`capacity`={self.capacity}. Resume with a capacity >= {len(states)}."
            )
        left = sum(totals[k] for k in ("replaced", "dropped_unpromising", "dropped_graduated", "evicted"))
        if totals["stored"] != left + len(states):
            raise BufferStateError(
                f"retrospective state field `totals` does not add up: stored={totals['stored']} != replaced + dropped "
                f"+ evicted ({left}) + held ({len(states)})."
            )
        # everything validated: mutate in place so references held elsewhere stay valid
        self._states = states
        self.totals = {k: totals[k] for k in _COUNTERS}
        self.replay_successes, self.replay_tries = state["replay_successes"], state["replay_tries"]
        self.replay_plain_expected = float(plain_expected)

    def __eq__(self, other) -> bool:
        return isinstance(other, RetrospectiveBuffer) and self.state_dict() == other.state_dict()

    def __repr__(self) -> str:
        return f"RetrospectiveBuffer(size={len(self)}, capacity={self.capacity}, {self.totals})"


def _check_accuracy(accuracy) -> None:
    if not is_number(accuracy) or not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"`accuracy` must be a number in [0, 1], got {accuracy!r}.")
