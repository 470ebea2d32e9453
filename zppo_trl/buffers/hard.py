"""The hard-question replay buffer of ZPPO (paper §3, Algorithm 1 step 9).

Pure Python: no torch, no TRL. The trainer feeds it the plain-rollout accuracy of every question it visits and
reads back which questions to replay. Only the question's identity (its `prompt_id`) is stored, never a rollout.

Rules (paper defaults, choices marked "ours"):

- a visit with accuracy `< hard_threshold` (τ = 0.5) **admits** a question that is not in the buffer; the question
  is appended at the FIFO tail and its *entry bin* `k` (correct rollouts out of G at admission) is recorded;
- a visit with accuracy `< τ` of a question already in the buffer only refreshes its stored accuracy; it keeps its
  FIFO position (ours: re-failing does not buy a question more time in the buffer);
- a visit with accuracy `>= τ` of a buffered question **graduates** it (removed);
- beyond `capacity` the oldest questions are **evicted** (FIFO);
- a question that graduated or was evicted and fails again later is admitted again and counts as a new admission
  (ours). Hence the invariant `total_admitted == total_graduated + total_evicted + len(buffer)` always holds.

Only plain (new or replayed) rollouts may call `visit`; hint-augmented (BCQ/NCQ) rollouts never change the buffer:
a question is mastered only when it is solved without candidates.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

SCHEMA_VERSION = 1


def exit_rate(graduated: int, evicted: int, buffer_evicted: bool | None = None) -> float | None:
    """The paper's exit rate (Fig. 4): of the questions that left the buffer, the share that graduated,
    graduated / (graduated + evicted).

    None until the buffer has evicted something (`buffer_evicted`, by default `evicted > 0`; for one entry bin's
    counts pass whether the whole buffer evicted): before that every exit is a graduation and the rate says nothing
    (the graduation rate and the count still in the buffer do). None too where nothing exited."""
    buffer_evicted = evicted > 0 if buffer_evicted is None else buffer_evicted
    return graduated / (graduated + evicted) if buffer_evicted and graduated + evicted else None


@dataclass
class BufferEntry:
    accuracy: float  # latest plain accuracy (correct / scored rollouts)
    entry_bin: int  # correct plain rollouts out of G at admission
    admitted_round: int  # generation round of the admission


@dataclass(frozen=True)
class Graduation:
    """A question that left the buffer solved, for reports (`HardQuestionBuffer.graduations`)."""

    prompt_id: int | str
    entry_bin: int  # correct plain rollouts at admission
    admitted_round: int
    graduated_round: int
    correct: int  # correct / scored plain rollouts of the graduating visit
    scored: int


class BufferStateError(ValueError):
    """A saved buffer state cannot be loaded (corrupted, truncated, wrong schema or mismatched)."""


class HardQuestionBuffer:
    """FIFO buffer of hard questions, keyed by `prompt_id` (an `int` or `str`).

    Args:
        capacity (`int`, *optional*, defaults to `10000`):
            Maximum number of questions held; the oldest is evicted beyond it (paper Tab. 8).
        hard_threshold (`float`, *optional*, defaults to `0.5`):
            τ: a question is hard while its plain accuracy is below it, and graduates when a visit reaches it.

    Example:
    ```python
    >>> buf = HardQuestionBuffer(capacity=2)
    >>> buf.visit("q1", correct=0, scored=8, round_index=0)
    'admitted'
    >>> "q1" in buf, len(buf)
    (True, 1)
    >>> buf.visit("q1", correct=5, scored=8, round_index=1)
    'graduated'
    ```
    """

    def __init__(self, capacity: int = 10_000, hard_threshold: float = 0.5):
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"`capacity` must be a positive integer, got {capacity!r}. Use 10000 (paper default).")
        if not 0.0 < hard_threshold <= 1.0:
            raise ValueError(f"`hard_threshold` must be in (0, 1], got {hard_threshold!r}. Use 0.5 (paper default).")
        self.capacity = capacity
        self.hard_threshold = hard_threshold
        self._entries: OrderedDict[int | str, BufferEntry] = OrderedDict()
        self.total_admitted = 0
        self.total_graduated = 0
        self.total_evicted = 0
        self.admitted_by_bin: dict[int, int] = {}
        self.graduated_by_bin: dict[int, int] = {}
        self.evicted_by_bin: dict[int, int] = {}
        # every graduation of this run, oldest first, for reports; not in `state_dict` (a resumed run starts it empty)
        self.graduations: list[Graduation] = []

    # ----------------------------------------------------------------------------------------------------------------
    # container protocol

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, prompt_id) -> bool:
        return prompt_id in self._entries

    def __iter__(self):
        return iter(self._entries)

    def ids(self) -> list:
        """Buffered prompt ids in FIFO order (oldest first)."""
        return list(self._entries)

    def entry(self, prompt_id) -> BufferEntry | None:
        """The stored entry of a buffered question (latest plain accuracy, entry bin, admission round), or None."""
        return self._entries.get(prompt_id)

    # ----------------------------------------------------------------------------------------------------------------
    # updates

    def visit(self, prompt_id, correct: int, scored: int, round_index: int = 0) -> str:
        """Record one plain visit of a question: `correct` of `scored` rollouts were right.

        Returns what happened: `"admitted"`, `"graduated"`, `"updated"` (still hard, already buffered),
        `"easy"` (solved and not buffered) or `"unscored"` (no rollout could be scored: nothing changes).
        Eviction caused by an admission is reported by `evict_overflow`'s counters, see `total_evicted`.
        """
        if scored <= 0:
            return "unscored"
        if not 0 <= correct <= scored:
            raise ValueError(f"`correct` must be in [0, scored={scored}], got {correct}.")
        accuracy = correct / scored
        if accuracy >= self.hard_threshold:
            if prompt_id in self._entries:
                entry = self._entries.pop(prompt_id)
                self.total_graduated += 1
                _bump(self.graduated_by_bin, entry.entry_bin)
                self.graduations.append(
                    Graduation(prompt_id, entry.entry_bin, entry.admitted_round, round_index, correct, scored)
                )
                return "graduated"
            return "easy"
        if prompt_id in self._entries:
            self._entries[prompt_id].accuracy = accuracy
            return "updated"
        self._entries[prompt_id] = BufferEntry(accuracy=accuracy, entry_bin=correct, admitted_round=round_index)
        self.total_admitted += 1
        _bump(self.admitted_by_bin, correct)
        while len(self._entries) > self.capacity:
            _, old = self._entries.popitem(last=False)
            self.total_evicted += 1
            _bump(self.evicted_by_bin, old.entry_bin)
        return "admitted"

    # ----------------------------------------------------------------------------------------------------------------
    # statistics

    def counters(self) -> dict[str, int]:
        """Running totals, e.g. to diff before/after a round."""
        return {
            "admitted": self.total_admitted,
            "graduated": self.total_graduated,
            "evicted": self.total_evicted,
        }

    def graduation_rate(self, entry_bin: int | None = None) -> float | None:
        """Graduated / admitted, overall or for one entry bin (None when nothing was admitted)."""
        if entry_bin is None:
            admitted, graduated = self.total_admitted, self.total_graduated
        else:
            admitted = self.admitted_by_bin.get(entry_bin, 0)
            graduated = self.graduated_by_bin.get(entry_bin, 0)
        return graduated / admitted if admitted else None

    def by_entry_bin(self) -> list[tuple[int, int, int, float]]:
        """`(entry bin, admitted, graduated, graduation rate)` per entry bin that admitted a question, in bin order
        (what the end-of-run report and the model card tabulate)."""
        return [
            (k, n, self.graduated_by_bin.get(k, 0), self.graduated_by_bin.get(k, 0) / n)
            for k, n in sorted(self.admitted_by_bin.items())
            if n
        ]

    def exit_rate(self) -> float | None:
        """The paper's exit rate of the whole buffer (`exit_rate`)."""
        return exit_rate(self.total_graduated, self.total_evicted)

    # ----------------------------------------------------------------------------------------------------------------
    # (de)serialisation

    def state_dict(self) -> dict:
        """A JSON-serialisable snapshot. Ids keep their type (int or str) because entries are stored as pairs."""
        return {
            "schema_version": SCHEMA_VERSION,
            "capacity": self.capacity,
            "hard_threshold": self.hard_threshold,
            "entries": [[pid, e.accuracy, e.entry_bin, e.admitted_round] for pid, e in self._entries.items()],
            "total_admitted": self.total_admitted,
            "total_graduated": self.total_graduated,
            "total_evicted": self.total_evicted,
            # JSON object keys are strings: store bins as lists of [bin, count] to keep them ints
            "admitted_by_bin": [list(kv) for kv in sorted(self.admitted_by_bin.items())],
            "graduated_by_bin": [list(kv) for kv in sorted(self.graduated_by_bin.items())],
            "evicted_by_bin": [list(kv) for kv in sorted(self.evicted_by_bin.items())],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a snapshot in place. Raises `BufferStateError` (and changes nothing) when it is malformed.

        `capacity` and `hard_threshold` stay those of this buffer (the run's config), not the snapshot's."""
        try:
            if state.get("schema_version") != SCHEMA_VERSION:
                raise BufferStateError(
                    f"buffer state has schema_version={state.get('schema_version')!r}, this zppo_trl reads "
                    f"{SCHEMA_VERSION}. Resume with the zppo_trl version that wrote it, or start without the state."
                )
            entries = OrderedDict()
            for pid, acc, entry_bin, admitted_round in state["entries"]:
                if not isinstance(pid, (int, str)) or isinstance(pid, bool):
                    raise BufferStateError(f"buffer state holds a prompt id of type {type(pid).__name__}: {pid!r}.")
                entries[pid] = BufferEntry(float(acc), int(entry_bin), int(admitted_round))
            totals = {k: int(state[k]) for k in ("total_admitted", "total_graduated", "total_evicted")}
            bins = {k: {int(b): int(c) for b, c in state[k]} for k in _BIN_KEYS}
        except BufferStateError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise BufferStateError(f"buffer state is malformed ({type(err).__name__}: {err}).") from err
        if len(entries) > self.capacity:
            raise BufferStateError(
                f"buffer state holds {len(entries)} questions, more than `replay_capacity`={self.capacity}. Resume "
                f"with replay_capacity >= {len(entries)}."
            )
        if totals["total_admitted"] != totals["total_graduated"] + totals["total_evicted"] + len(entries):
            raise BufferStateError(
                f"buffer state totals do not add up: admitted={totals['total_admitted']} != graduated="
                f"{totals['total_graduated']} + evicted={totals['total_evicted']} + buffered={len(entries)}."
            )
        # everything validated: mutate in place so references held elsewhere stay valid
        self._entries = entries
        self.total_admitted, self.total_graduated, self.total_evicted = (
            totals["total_admitted"],
            totals["total_graduated"],
            totals["total_evicted"],
        )
        self.admitted_by_bin, self.graduated_by_bin, self.evicted_by_bin = (bins[k] for k in _BIN_KEYS)
        self.graduations = []

    def __eq__(self, other) -> bool:
        return isinstance(other, HardQuestionBuffer) and self.state_dict() == other.state_dict()

    def __repr__(self) -> str:
        return (
            f"HardQuestionBuffer(size={len(self)}, capacity={self.capacity}, admitted={self.total_admitted}, "
            f"graduated={self.total_graduated}, evicted={self.total_evicted})"
        )


_BIN_KEYS = ("admitted_by_bin", "graduated_by_bin", "evicted_by_bin")


def _bump(counter: dict[int, int], key: int) -> None:
    counter[key] = counter.get(key, 0) + 1
