"""Which buffered questions a generation round replays, how many extra groups a round may add, and how a
question is identified.

Pure functions, deterministic in `(seed, round_index)`, so that every process computes the same answer from the
same (identical) buffer without communicating. The trainer calls them at generation time, with the latest buffer
(TRL's sampler runs 1–3 rounds ahead, so a sampler could only act on stale accuracies).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from typing import Any


def question_id(row: dict) -> int | str:
    """The identity the buffer keys a question by: its `prompt_id` column when the dataset has one, else a hash of
    its `prompt` and `answer` (so a streamed dataset needs no id column, and the same question met twice in a stream
    is one question, whose visits update one buffer entry). Stable across processes and runs, unlike `hash()`.

    Example:
    ```python
    >>> question_id({"prompt_id": 7, "prompt": "What is 2+3?"}), question_id({"prompt": "What is 2+3?", "answer": "5"})
    (7, 'q-1664fd4994a2258d')
    ```
    """
    if "prompt_id" in row:
        return row["prompt_id"]
    text = json.dumps([row["prompt"], row.get("answer")], sort_keys=True, default=str, ensure_ascii=False)
    return "q-" + hashlib.sha256(text.encode()).hexdigest()[:16]


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
