"""Which prompts join a generation round besides the new ones: replayed hard questions and hint prompts.

Pure functions, deterministic in `(seed, round_index)`, so that every process computes the same answer from the
same (identical) buffer without communicating. The trainer calls them at generation time, with the latest buffer
(TRL's sampler runs 1–3 rounds ahead, so a sampler could only act on stale accuracies).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def round_rng(seed: int, round_index: int, *salt: Any) -> random.Random:
    """A `random.Random` seeded from strings: unlike `hash()`, `random.seed(str)` is the same in every process."""
    return random.Random("/".join(str(x) for x in ("zppo", seed, round_index, *salt)))


def group_unit(num_processes: int, steps_per_generation: int, num_generations: int) -> int:
    """Smallest number of extra prompt groups that keeps a round's shapes legal.

    Extra groups add `count * G` rows to the round, split evenly and contiguously over `P` processes, and each
    process splits its rows into `steps_per_generation` micro-batches: so `count * G` must be a multiple of
    `P * spg` (otherwise TRL's `split_tensor_dict` silently drops rows, or ranks disagree on shapes).
    """
    quantum = num_processes * steps_per_generation
    return quantum // math.gcd(num_generations, quantum)


def ratio_count(ratio: float, num_new: int) -> int:
    """`ratio * num_new` rounded half up, and at least 1 for a positive ratio (so a small batch still replays)."""
    if ratio <= 0:
        return 0
    return max(1, math.floor(ratio * num_new + 0.5))


def replay_count(ratio: float, num_new: int, buffer_size: int, unit: int) -> int:
    """Number of buffered questions replayed in a round: `ratio_count`, at most the buffer's size, then rounded *up*
    to a multiple of `unit` (see `group_unit`); 0 when the buffer is empty. With `unit == 1` (e.g. one process, or G
    divisible by `P * spg`) this is exactly the paper's `round(0.25 * N)`, capped by what the buffer holds."""
    if buffer_size <= 0:
        return 0
    return math.ceil(min(ratio_count(ratio, num_new), buffer_size) / unit) * unit


def fit_to_unit(items: Sequence, unit: int) -> list:
    """Cut a planned list of extra groups down to a multiple of `unit`; a non-empty list shorter than one unit is
    repeated cyclically up to one unit instead (ours: the same hint prompt rolled out twice, never dropped)."""
    items = list(items)
    if not items or unit <= 1:
        return items
    if len(items) >= unit:
        return items[: len(items) // unit * unit]
    return [items[i % len(items)] for i in range(unit)]


def sample_replay(
    buffer_ids: Sequence, count: int, seed: int, round_index: int, exclude: set | frozenset = frozenset()
) -> list:
    """Draw `count` buffered ids uniformly, without replacement while the pool lasts (ours).

    Ids in `exclude` (the new prompts of the same round) are not drawn unless nothing else is left, so a round does
    not roll out the same question twice. When `count` exceeds the pool (only when `group_unit` demands it),
    further draws start a new permutation of the pool.
    """
    if count <= 0 or not buffer_ids:
        return []
    pool = [pid for pid in buffer_ids if pid not in exclude] or list(buffer_ids)
    rng = round_rng(seed, round_index, "replay")
    drawn: list = []
    while len(drawn) < count:
        drawn.extend(rng.sample(pool, min(len(pool), count - len(drawn))))
    return drawn


@dataclass
class HardVisit:
    """One plain (new or replayed) visit of a question in the current round, with what a hint needs."""

    prompt_id: Any
    position: int  # the group's index in the round's global order (tie-breaker)
    correct: int
    scored: int
    row: dict  # the dataset row (original columns)
    wrong_completions: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.scored


def rank_hard(visits: Sequence[HardVisit], hard_threshold: float) -> list[HardVisit]:
    """Hard visits (scored, accuracy < τ), one per question, hardest first.

    Ties in accuracy are broken by the position in the round (new prompts in sampler order, then replays); a question
    visited twice in one round keeps its lowest-accuracy visit (ours).
    """
    best: dict[Any, HardVisit] = {}
    for v in visits:
        if v.scored > 0 and v.accuracy < hard_threshold and v.wrong_completions:
            if v.prompt_id not in best or v.accuracy < best[v.prompt_id].accuracy:
                best[v.prompt_id] = v
    return sorted(best.values(), key=lambda v: (v.accuracy, v.position))


def plan_hints(
    ranked: Sequence[HardVisit], has_solution: Sequence[bool], slots: int, use_bcq: bool, use_ncq: bool
) -> list[tuple[str, HardVisit]]:
    """Walk hard questions hardest first, emitting each one's BCQ (when a correct solution exists) then its NCQ,
    until `slots` hint prompts are planned (paper Alg. 1 step 4: when one slot is left, BCQ wins)."""
    plan: list[tuple[str, HardVisit]] = []
    for visit, solved in zip(ranked, has_solution, strict=True):
        for kind, ok in (("bcq", use_bcq and solved), ("ncq", use_ncq)):
            if ok and len(plan) < slots:
                plan.append((kind, visit))
    return plan
