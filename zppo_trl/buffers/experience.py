"""ExGRPO's experience buffer (Zhan et al., arXiv 2510.02245, "Learning to Reason from Experience", §4, Alg. 1–2):
per question its latest plain accuracy k/K, its successful rollouts (`Trajectory`: token ids and the generating
policy's per-token log-probs) and its dataset row; a question solved K/K retires for good. Pure Python, no trainer;
the method's other pieces (sampling, trajectory choice, the shaped weight) are in `methods/exgrpo.py`.

Where this differs from ExGRPO's released code (a verl fork, `ExGRPO/exgrpo/verl/verl/mix_src/experience/`), the
docstrings below say so ("ours").
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from .fields import StateFields, id_order, is_int
from .hard import BufferStateError

FIELDS = StateFields("experience")

EXPERIENCE_SCHEMA_VERSION = 1

# Bytes one stored token costs, measured on CPython 3.11 (64-bit) with token ids drawn from a 151k vocabulary and
# float32 log-probs converted to Python floats (`Tensor.tolist()`), 1,000 tokens: in memory, two list slots
# (2 × 8 B) + an int object (28 B; ids below 257 are shared singletons and cost nothing) + a float object (24 B) =
# 68 B, measured 68.9 B with the lists' over-allocation (`sys.getsizeof` of both lists and of every element); in the
# JSON state, `len(json.dumps([ids, logps, round]))` / tokens = 28.5 B (about 6 B per id, 20 B per full-precision
# float). So 10,000 questions × 4 trajectories × 1,000 tokens hold about 2.7 GB in memory: cap `max_tokens`.
BYTES_PER_TOKEN_IN_MEMORY = 69
BYTES_PER_TOKEN_IN_JSON = 29


@dataclass
class Trajectory:
    """One successful rollout kept for replay.

    Args:
        completion_ids (`list[int]`):
            The completion's token ids, as generated (no prompt, no padding).
        logps (`list[float]`):
            The generating policy's per-token log-probs of `completion_ids` (same length): the denominator of the
            importance weight when the trajectory is replayed.
        round (`int`):
            Generation round in which the trajectory was generated and stored.
    """

    completion_ids: list[int]
    logps: list[float]
    round: int

    def __post_init__(self):
        if len(self.completion_ids) != len(self.logps):
            raise ValueError(
                f"`Trajectory.logps` has {len(self.logps)} values for {len(self.completion_ids)} `completion_ids`: "
                "pass the generating policy's log-prob of every completion token."
            )

    def __len__(self) -> int:
        return len(self.completion_ids)

    def nbytes(self) -> int:
        """Bytes this trajectory holds in memory (`sys.getsizeof` of both lists and of every element), about
        `BYTES_PER_TOKEN_IN_MEMORY` per token."""
        return (
            sys.getsizeof(self.completion_ids)
            + sum(map(sys.getsizeof, self.completion_ids))
            + sys.getsizeof(self.logps)
            + sum(map(sys.getsizeof, self.logps))
        )


@dataclass
class ExperienceEntry:
    correct: int  # k: correct plain rollouts of the latest scored visit
    scored: int  # K: scored plain rollouts of that visit
    row: dict | None  # the question's dataset row, to roll it out again (None in a state saved without rows)
    trajectories: list[Trajectory]  # successful rollouts, oldest first, at most `max_per_question`

    @property
    def accuracy(self) -> float:
        return self.correct / self.scored


class ExperienceBuffer:
    """ExGRPO's experience buffer, keyed by question id (`prompt_id`, an `int` or `str`, as the ZPPO buffer).

    Rules (paper defaults, choices marked "ours"):

    - a plain visit scores K rollouts, k of them correct. Rollouts that could not be scored are passed as `None` in
      `correct` and do not count in K (ours; as the ZPPO buffer's `scored`); a visit with nothing scored changes
      nothing;
    - 0 < k < K: the question is **stored** (or refreshed): its latest accuracy becomes k/K, its row is kept and the
      trajectories of its correct rollouts are appended, newest last; beyond `max_per_question` the oldest are dropped
      (ours: ExGRPO's code keeps every distinct success). A completion identical to a stored one replaces it (ours;
      ExGRPO's code skips an identical text), so the slots hold distinct trajectories with the latest log-probs;
    - k == K: the question **retires**: it leaves the buffer and joins `retired`, and is never stored again (paper;
      ExGRPO's code also drops it from the training set, which is the trainer's business here);
    - k == 0: a buffered question keeps its place and trajectories and its latest accuracy becomes 0 (ExGRPO keeps
      each question's *latest* accuracy; its code, unlike the paper's text, leaves the bucket unchanged on a 0/K
      visit); an unbuffered one is ignored: there is no success to store;
    - capacity (ours; ExGRPO's code has no cap): after a store, the oldest *inserted* question is **evicted** while
      more than `capacity` questions or more than `max_tokens` stored tokens are held. A refresh keeps the
      question's FIFO position, as in the ZPPO buffer. Memory is about `BYTES_PER_TOKEN_IN_MEMORY` (69) bytes per
      stored token plus the rows; choose `max_tokens >= max_per_question * max_completion_length`, or a question
      whose own trajectories exceed it is evicted as soon as it is stored.

    Args:
        capacity (`int`, *optional*, defaults to `10000`):
            Maximum number of questions held.
        max_per_question (`int`, *optional*, defaults to `4`):
            Maximum number of trajectories kept per question; the oldest is dropped beyond it.
        max_tokens (`int` or `None`, *optional*, defaults to `None`):
            Maximum number of completion tokens held over all trajectories; `None` for no limit.

    Example:
    ```python
    >>> buf = ExperienceBuffer(capacity=2)
    >>> t = Trajectory([5, 6], [-0.1, -0.2], round=0)
    >>> buf.update("q1", {"prompt": "2+3?"}, [True, False], [t, None], round_index=0)
    'stored'
    >>> buf.accuracy("q1"), len(buf.trajectories("q1"))
    (0.5, 1)
    >>> buf.update("q1", {"prompt": "2+3?"}, [True, True], [t, t], round_index=1)
    'retired'
    ```
    """

    def __init__(self, capacity: int = 10_000, max_per_question: int = 4, max_tokens: int | None = None):
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"`capacity` must be a positive integer, got {capacity!r}. Use e.g. 10000.")
        if not isinstance(max_per_question, int) or max_per_question < 1:
            raise ValueError(f"`max_per_question` must be a positive integer, got {max_per_question!r}. Use e.g. 4.")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise ValueError(
                f"`max_tokens` must be a positive integer or None, got {max_tokens!r}. Use None for no limit, or at "
                "least max_per_question × max_completion_length."
            )
        self.capacity = capacity
        self.max_per_question = max_per_question
        self.max_tokens = max_tokens
        self._entries: OrderedDict[int | str, ExperienceEntry] = OrderedDict()
        self._retired: set[int | str] = set()
        self._stored_tokens = 0
        self.total_stored_trajectories = 0  # trajectories ever stored (replacements of identical ones included)
        self.total_evicted = 0  # questions evicted by the capacity rule

    # ----------------------------------------------------------------------------------------------------------------
    # container protocol and reads

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, prompt_id) -> bool:
        return prompt_id in self._entries

    def ids(self) -> list:
        """Buffered question ids in FIFO order (oldest inserted first)."""
        return list(self._entries)

    def accuracy(self, prompt_id) -> float | None:
        """Latest plain accuracy k/K of a buffered question, or None."""
        entry = self._entries.get(prompt_id)
        return None if entry is None else entry.accuracy

    def counts(self, prompt_id) -> tuple[int, int] | None:
        """Latest (k, K) of a buffered question, or None."""
        entry = self._entries.get(prompt_id)
        return None if entry is None else (entry.correct, entry.scored)

    def trajectories(self, prompt_id) -> list[Trajectory]:
        """Stored trajectories of a question, oldest first (a copy of the list; empty when not buffered)."""
        entry = self._entries.get(prompt_id)
        return [] if entry is None else list(entry.trajectories)

    def missing_rows(self) -> list:
        """Ids of buffered questions whose row is not held (a state saved without rows), in FIFO order."""
        return [pid for pid, entry in self._entries.items() if entry.row is None]

    def fill_rows(self, rows: dict) -> None:
        """Give buffered questions without a row theirs, from `rows` (question id -> dataset row)."""
        for pid, entry in self._entries.items():
            if entry.row is None and pid in rows:
                entry.row = rows[pid]

    def row(self, prompt_id) -> dict | None:
        """The dataset row of a buffered question, or None."""
        entry = self._entries.get(prompt_id)
        return None if entry is None else entry.row

    def is_retired(self, prompt_id) -> bool:
        return prompt_id in self._retired

    @property
    def retired(self) -> frozenset:
        """Ids of the questions solved K/K: never stored again."""
        return frozenset(self._retired)

    @property
    def stored_tokens(self) -> int:
        """Completion tokens held over all stored trajectories."""
        return self._stored_tokens

    def counters(self) -> dict[str, int]:
        """Running totals, e.g. to diff before/after a round."""
        return {
            "stored_trajectories": self.total_stored_trajectories,
            "retired": len(self._retired),
            "evicted": self.total_evicted,
        }

    # ----------------------------------------------------------------------------------------------------------------
    # updates

    def update(
        self,
        prompt_id,
        row: dict,
        correct: Sequence[bool | None],
        trajectories: Sequence[Trajectory | None],
        round_index: int,
    ) -> str:
        """Record one plain visit of a question: its K rollouts, `correct[i]` telling whether rollout i was right
        (`None`: it could not be scored) and `trajectories[i]` its trajectory (required where `correct[i]` is True;
        ignored, and may be None, elsewhere).

        Returns `"stored"` (0 < k < K), `"retired"` (k == K), `"ignored"` (k == 0, or a retired question) or
        `"unscored"` (nothing could be scored); see the class docstring for what each does.
        """
        if len(correct) != len(trajectories):
            raise ValueError(
                f"`correct` has {len(correct)} rollouts but `trajectories` has {len(trajectories)}: pass one "
                "trajectory (or None) per rollout."
            )
        scored = [c for c in correct if c is not None]
        if not scored:
            return "unscored"
        if prompt_id in self._retired:
            return "ignored"
        k, K = sum(map(bool, scored)), len(scored)
        if k == K:
            entry = self._entries.pop(prompt_id, None)
            if entry is not None:
                self._stored_tokens -= sum(map(len, entry.trajectories))
            self._retired.add(prompt_id)
            return "retired"
        if k == 0:
            if prompt_id in self._entries:
                self._entries[prompt_id].correct, self._entries[prompt_id].scored = 0, K
            return "ignored"
        successes = [t for c, t in zip(correct, trajectories) if c]
        if any(not isinstance(t, Trajectory) for t in successes):
            raise ValueError(
                f"question {prompt_id!r} has a correct rollout without a `Trajectory`: pass the completion ids and "
                "the generating policy's log-probs of every correct rollout."
            )
        entry = self._entries.get(prompt_id)
        if entry is None:
            entry = self._entries[prompt_id] = ExperienceEntry(k, K, row, [])
        entry.correct, entry.scored, entry.row = k, K, row
        for trajectory in successes:
            for i, held in enumerate(entry.trajectories):
                if held.completion_ids == trajectory.completion_ids:
                    self._stored_tokens -= len(entry.trajectories.pop(i))
                    break
            entry.trajectories.append(trajectory)
            self._stored_tokens += len(trajectory)
            self.total_stored_trajectories += 1
        while len(entry.trajectories) > self.max_per_question:
            self._stored_tokens -= len(entry.trajectories.pop(0))
        self._evict_overflow()
        return "stored"

    def _evict_overflow(self) -> None:
        while self._entries and (
            len(self._entries) > self.capacity
            or (self.max_tokens is not None and self._stored_tokens > self.max_tokens)
        ):
            _, old = self._entries.popitem(last=False)
            self._stored_tokens -= sum(map(len, old.trajectories))
            self.total_evicted += 1

    # ----------------------------------------------------------------------------------------------------------------
    # (de)serialisation

    def state_dict(self) -> dict:
        """A JSON-serialisable snapshot in a deterministic order: entries in FIFO order, retired ids sorted (ints
        before strings). Ids keep their type (int or str) because they are stored in lists, never as object keys."""
        return {
            "schema_version": EXPERIENCE_SCHEMA_VERSION,
            "capacity": self.capacity,
            "max_per_question": self.max_per_question,
            "max_tokens": self.max_tokens,
            "entries": [
                [pid, e.correct, e.scored, e.row, [[t.completion_ids, t.logps, t.round] for t in e.trajectories]]
                for pid, e in self._entries.items()
            ],
            "retired": sorted(self._retired, key=id_order),
            "total_stored_trajectories": self.total_stored_trajectories,
            "total_evicted": self.total_evicted,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a snapshot in place. Raises `BufferStateError` naming the field (and changes nothing) when it is
        malformed. `capacity`, `max_per_question` and `max_tokens` stay this buffer's (the run's config); a snapshot
        that does not fit them is refused."""
        FIELDS.open(state, EXPERIENCE_SCHEMA_VERSION)
        totals = {
            key: FIELDS.count(FIELDS.field(state, key, int), key)
            for key in ("total_stored_trajectories", "total_evicted")
        }
        raw_entries = FIELDS.field(state, "entries", list)
        entries: OrderedDict[int | str, ExperienceEntry] = OrderedDict()
        for i, raw in enumerate(raw_entries):
            name = f"entries[{i}]"
            if not isinstance(raw, list) or len(raw) != 5:
                raise BufferStateError(f"experience state field `{name}` must be [id, k, K, row, trajectories].")
            pid, k, K, row, raw_trajectories = raw
            FIELDS.question_id(pid, f"{name}.id")
            if pid in entries:
                raise BufferStateError(f"experience state field `{name}.id` repeats the id {pid!r}.")
            if not (is_int(k) and is_int(K) and 0 <= k < K):
                raise BufferStateError(
                    f"experience state field `{name}` holds k={k!r}, K={K!r}: a buffered question needs integers "
                    "0 <= k < K (a K/K question retires)."
                )
            if row is not None and not isinstance(row, dict):  # None: saved without rows, the trainer finds them by id
                raise BufferStateError(
                    f"experience state field `{name}.row` must be a dict, got {type(row).__name__}."
                )
            if not isinstance(raw_trajectories, list) or not 1 <= len(raw_trajectories) <= self.max_per_question:
                raise BufferStateError(
                    f"experience state field `{name}.trajectories` must be a list of 1 to max_per_question="
                    f"{self.max_per_question} trajectories, got {_describe(raw_trajectories)}. Resume with "
                    "max_per_question at least the saved run's."
                )
            entries[pid] = ExperienceEntry(
                k, K, row, [_load_trajectory(t, f"{name}.trajectories[{j}]") for j, t in enumerate(raw_trajectories)]
            )
        retired = FIELDS.field(state, "retired", list)
        for i, pid in enumerate(retired):
            FIELDS.question_id(pid, f"retired[{i}]")
        retired_set = set(retired)
        if len(retired_set) != len(retired):
            raise BufferStateError("experience state field `retired` repeats an id.")
        both = [pid for pid in entries if pid in retired_set]
        if both:
            raise BufferStateError(f"experience state field `retired` holds buffered ids {both[:5]!r}.")
        tokens = sum(len(t) for e in entries.values() for t in e.trajectories)
        if len(entries) > self.capacity:
            raise BufferStateError(
                f"experience state field `entries` holds {len(entries)} questions, more than `capacity`="
                f"{self.capacity}. Resume with capacity >= {len(entries)}."
            )
        if self.max_tokens is not None and tokens > self.max_tokens:
            raise BufferStateError(
                f"experience state field `entries` holds {tokens} tokens, more than `max_tokens`={self.max_tokens}. "
                f"Resume with max_tokens >= {tokens}."
            )
        # everything validated: mutate in place so references held elsewhere stay valid
        self._entries, self._retired, self._stored_tokens = entries, retired_set, tokens
        self.total_stored_trajectories, self.total_evicted = (
            totals["total_stored_trajectories"],
            totals["total_evicted"],
        )

    def __eq__(self, other) -> bool:
        return isinstance(other, ExperienceBuffer) and self.state_dict() == other.state_dict()

    def __repr__(self) -> str:
        return (
            f"ExperienceBuffer(size={len(self)}, capacity={self.capacity}, tokens={self._stored_tokens}, "
            f"retired={len(self._retired)}, evicted={self.total_evicted})"
        )


# --------------------------------------------------------------------------------------------------------------------
# state validation helpers


def _describe(value) -> str:
    return f"{len(value)} items" if isinstance(value, list) else f"a {type(value).__name__}"


def _load_trajectory(raw, name: str) -> Trajectory:
    if not isinstance(raw, list) or len(raw) != 3:
        raise BufferStateError(f"experience state field `{name}` must be [completion_ids, logps, round].")
    ids, logps, round_index = raw
    if not isinstance(ids, list) or not all(is_int(t) and t >= 0 for t in ids):
        raise BufferStateError(f"experience state field `{name}.completion_ids` must be a list of token ids.")
    if not isinstance(logps, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in logps):
        raise BufferStateError(f"experience state field `{name}.logps` must be a list of numbers.")
    if len(logps) != len(ids):
        raise BufferStateError(
            f"experience state field `{name}.logps` has {len(logps)} values for {len(ids)} completion_ids."
        )
    if not is_int(round_index) or round_index < 0:
        raise BufferStateError(f"experience state field `{name}.round` must be a non-negative integer.")
    return Trajectory(ids, [float(x) for x in logps], round_index)
