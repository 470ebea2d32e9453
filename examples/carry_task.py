"""The graduation benchmark's second task: 3-digit addition written out column by column (the paper's regime).

A question `347+285=?` is answered with the procedure, units first, then the sum after `#`:

    7+5=12,4+8+1=13,3+2+1=6#632

so the tokens a BCQ hint gets rewarded for (copying or re-deriving the right candidate's steps) are the tokens a
plain answer needs, unlike the tag task, whose hinted skill (pick the candidate with the right check digit) is a
different computation from the plain one.

Families, by the true carries (all three use the same procedure):
- `easy`: no carry. The student solves them.
- `near`: a carry into the tens only. The pretrained student writes that carry with probability `P_TENS` (0.3), so a
  near question is solved plain now and then: GRPO's own successes can teach it, and replay (GRPO†) revisits it.
- `far`: a carry into the hundreds. The student never writes that carry in plain pretraining (`P_HUNDREDS` = 0, the
  misconception), so the pretrained student never solves a far question plain under `min_p`. (Measured in the
  five-seed run: plain RL still reaches far questions, by transfer from the rewarded tens carries; docs/measurements.md.)

The right procedure is always longer than a wrong one (its `+1`s). Both BCQ candidates are shown whole (the results
recorded before whole candidates were the default used the equal-length cut, which always cut the right candidate
here, a cue to it: docs/measurements.md).

Pretraining (in the benchmark, per seed) starts with `PLAIN_WARMUP_SHARE` of its steps on plain questions only (cheap
rows: the column sums are learned there), then mixes plain questions of the three families, labelled with the student's
own procedure (the carries above), with BCQ and NCQ prompts built by the library's own `build_hint_prompt` (exactly
the format of training) over near and far questions: their target is the right procedure, except for
`HINT_LABEL_NOISE` (0.25) of them, labelled with the wrong candidate, so the hinted skill stays imperfect. The wrong
candidate / wrong trace is one the student itself would write. The correctness reward is the library's
`final_answer_reward` (the last number, here the one after `#`), so NCQ lists the same answers the reward calls wrong.
"""

from __future__ import annotations

import random

from zppo_trl.prompts import build_hint_prompt
from zppo_trl.rewards import extract_final_answer, final_answer_reward

FAMILIES = ("easy", "near", "far")
HARD_FAMILIES = ("near", "far")
P_TENS = 0.3  # the student writes a carry into the tens with this probability (plain pretraining labels)
P_HUNDREDS = 0.0  # and never a carry into the hundreds: the misconception that makes `far` unreachable plain
HINT_LABEL_NOISE = 0.25  # share of BCQ/NCQ pretraining examples labelled with the wrong procedure
PRETRAIN_MIX = {"plain": 0.55, "bcq": 0.3, "ncq": 0.15}
PLAIN_WARMUP_SHARE = 5 / 6  # of the pretraining steps: plain rows only (a hint row costs ~10 plain rows)
MAX_COMPLETION_TOKENS = 32  # the longest procedure, "9+9=18,9+9+1=19,9+9+1=19#1998", is 29 characters
CANDIDATE_MAX_TOKENS = 48  # a candidate is at most 29 characters: never cut
HINT_PROMPT_MAX_TOKENS = 512
reward = final_answer_reward


def digits(n: int) -> list[int]:
    """Units first: digits(347) == [7, 4, 3]."""
    return [n // 10**i % 10 for i in range(3)]


def family(a: int, b: int) -> str:
    """By the true carries: `far` if a carry reaches the hundreds, else `near` if one reaches the tens, else `easy`."""
    x, y = digits(a), digits(b)
    into_tens = x[0] + y[0] >= 10
    into_hundreds = x[1] + y[1] + into_tens >= 10
    return "far" if into_hundreds else "near" if into_tens else "easy"


def written(a: int, b: int, carries_into: set[int]) -> str:
    """The procedure as written by a student who writes an incoming carry only into the columns in `carries_into`
    (1 = tens, 2 = hundreds); the final answer is read off its own steps, so a skipped carry gives a consistent wrong
    sum: written(347, 285, {1, 2}) == "7+5=12,4+8+1=13,3+2+1=6#632", written(347, 285, set()) == "...#522"."""
    steps, sums, carry = [], [], 0
    for column, (x, y) in enumerate(zip(digits(a), digits(b))):
        c = carry if column in carries_into else 0
        s = x + y + c
        steps.append(f"{x}+{y}{'+1' if c else ''}={s}")
        sums.append(s)
        carry = int(s >= 10)
    return ",".join(steps) + "#" + str(sums[2]) + str(sums[1] % 10) + str(sums[0] % 10)


def solution(a: int, b: int) -> str:
    return written(a, b, {1, 2})


def student_procedure(a: int, b: int, rng: random.Random) -> str:
    """What the pretrained student writes plain: the tens carry with probability P_TENS, the hundreds carry never."""
    return written(a, b, {c for c, p in ((1, P_TENS), (2, P_HUNDREDS)) if rng.random() < p})


def wrong_procedure(a: int, b: int, rng: random.Random) -> str:
    """One of the student's own procedures that is wrong (a hard question's BCQ candidate / NCQ trace)."""
    while True:
        text = student_procedure(a, b, rng)
        if text != solution(a, b):
            return text


def question(a: int, b: int) -> str:
    return f"{a}+{b}=?"


def sample_pair(rng: random.Random, wanted: str) -> tuple[int, int]:
    while True:
        a, b = rng.randint(100, 999), rng.randint(100, 999)
        if family(a, b) == wanted:
            return a, b


def make_datasets(seed: int, train_per_family: int, heldout_per_family: int):
    """Train and held-out questions, disjoint, `*_per_family` of each family; columns prompt, answer (the sum),
    solution (the right procedure: the teacher column), family."""
    from datasets import Dataset

    rng, seen = random.Random(seed), set()

    def rows(n):
        out = []
        for fam in FAMILIES:
            while sum(r["family"] == fam for r in out) < n:
                a, b = sample_pair(rng, fam)
                if (a, b) not in seen:
                    seen.add((a, b))
                    out.append({"prompt": question(a, b), "answer": str(a + b), "solution": solution(a, b),
                                "family": fam})  # fmt: skip
        return Dataset.from_list(out)

    return rows(train_per_family), rows(heldout_per_family)


def operands(prompt: str) -> tuple[int, int]:
    a, b = prompt.split("=")[0].split("+")
    return int(a), int(b)


def hint_prompt(kind: str, a: int, b: int, wrong: list[str], rng: random.Random) -> str:
    """A BCQ or NCQ prompt exactly as the trainer builds it for this task (character tokenizer: 1 char = 1 token)."""
    return build_hint_prompt(kind, question(a, b), wrong, rng, correct=solution(a, b) if kind == "bcq" else None,
                             max_prompt_tokens=HINT_PROMPT_MAX_TOKENS, max_candidate_tokens=CANDIDATE_MAX_TOKENS,
                             count_tokens=len, extract_answer=extract_final_answer)  # fmt: skip


def with_bcq_hint(dataset, seed: int):
    """The hard rows as BCQ prompts: the right procedure and one of the student's own wrong ones, random order."""
    rng = random.Random(seed)

    def hinted(row):
        a, b = operands(row["prompt"])
        return {"prompt": hint_prompt("bcq", a, b, [wrong_procedure(a, b, rng)], rng)}

    return dataset.filter(lambda r: r["family"] in HARD_FAMILIES).map(hinted)


def plain_example(rng: random.Random) -> tuple[str, str, str]:
    """A plain question of a random family with the student's own procedure (the warm-up's only kind: cheap rows,
    where the column sums are learned before the ~300-token hint rows start)."""
    a, b = sample_pair(rng, rng.choice(FAMILIES))
    return question(a, b), student_procedure(a, b, rng), "plain"


def pretraining_example(rng: random.Random) -> tuple[str, str, str]:
    """(prompt, target, kind): a plain question with the student's own procedure, or a BCQ/NCQ prompt over a hard
    question whose target is the right procedure (the wrong one for HINT_LABEL_NOISE of them)."""
    draw = rng.random()
    if draw < PRETRAIN_MIX["plain"]:
        return plain_example(rng)
    kind = "bcq" if draw < PRETRAIN_MIX["plain"] + PRETRAIN_MIX["bcq"] else "ncq"
    a, b = sample_pair(rng, rng.choice(HARD_FAMILIES))
    wrong = [wrong_procedure(a, b, rng) for _ in range(1 if kind == "bcq" else rng.randint(1, 3))]
    target = wrong[0] if rng.random() < HINT_LABEL_NOISE else solution(a, b)
    return hint_prompt(kind, a, b, wrong, rng), target, kind
