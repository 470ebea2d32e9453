"""The graduation benchmark's third task, built to decide: per-operator keys, hints as information.

A question `k 472?` names an operator (a letter) and a 3-digit operand; every operator has a key, a digit, and the
answer is the operator's key:

    k 472?  ->  8

The operand only makes many distinct questions of one fact (a pool where no question is new twice, and held-out
questions that are new texts of the facts trained on): what a student learns is per operator, what is measured is
whether it answers other questions of that operator. The correctness reward asks for the completion exactly, and
reads the same text as the answer (`extract_answer`), so NCQ lists exactly what it calls wrong. (Answers that also
wrote operand digits shifted by the key were tried first: the students, measured before any RL, wrote the right key
under a BCQ hint but then the wrong digits, hard BCQ 8-13% against 6% plain: not a zone.)

Families (the operators and keys are fixed, `KEYS`, so every seed faces the same world):
- `easy`: operators a-d. Pretraining labels them with their key: the student solves them.
- `hard`: operators e-t (16). Pretraining labels each with its key only `P_HARD_RIGHT` of the time and otherwise
  with one of three fixed wrong keys (its misconceptions, `MISCONCEPTIONS`, in the shares `MISCONCEPTION_SHARES`), so
  the student answers a hard question right a few percent of the time, at temperature 1 and without min-p: GRPO and
  GRPO† have their own route (paper-like: a few percent of plain samples right from the 0% bin), and the route is
  per operator (16 of them), so one lucky sample moves one operator, not the family. (Three wrong keys, not one: with
  a single habit a first student learned "operator -> digits" and ignored the key it wrote, so even a right key came
  out with wrong digits.)
- `practice`: operators u-z and A-F (12). In plain rows each is labelled with a fixed habit key
  (`PRACTICE_HABIT`), so the student has a confident plain answer for it, as it has for a hard operator. Their BCQ
  prompts (built by the library's `build_hint_prompt`, exactly the training format) show the student's habit answer
  and a right answer with a fresh random key in random order, and the target is the right one (the habit for
  `PRACTICE_LABEL_NOISE` of them, so that the skill stays imperfect). The right key changes from example to example,
  so it can only be read off the candidates: what the student learns is "of the two candidates, write the one that is
  not my own answer". That is the only place a hint format appears in pretraining.

What this buys (each is measured before any RL by the zone probe, `zone.json` of each student):
- The hint is information, not a switch: hint formats are never shown with a hard (or easy) operator, so a BCQ prompt
  of a hard question helps only as far as the student reads its candidates. The probe checks it with a sham BCQ (the
  same prompt with two wrong candidates: the student's own wrong answer and another wrong key): a switch would lift
  it like the real one, information cannot.
- NCQ is untaught: the student never saw the format; whatever it does there is its own.
- Pretraining does not always produce a student that reads candidates on the hard operators (one of the pilot's
  three did not), so each student is checked before any RL (`zone_failures`) and only students in the zone count in
  the decision; the others' runs are still reported.
- What a BCQ rollout is rewarded for (writing the right key for this operator) is exactly the plain answer. Whether
  training on it moves the plain answer (transfer) is what the benchmark measures; nothing in pretraining links the
  two contexts for a hard operator.
"""

from __future__ import annotations

import random

from zppo_trl.prompts import build_hint_prompt

FAMILIES = ("easy", "hard")
HARD_FAMILIES = ("hard",)
EASY_OPS = "abcd"
HARD_OPS = "efghijklmnopqrst"
PRACTICE_OPS = "uvwxyzABCDEF"
# keys and misconceptions, drawn once (random.Random("shift-keys")) and written out so they never change
KEYS = dict(zip(EASY_OPS + HARD_OPS, [4, 9, 1, 6, 8, 3, 0, 7, 5, 2, 9, 6, 1, 4, 8, 0, 3, 7, 2, 5]))
MISCONCEPTIONS = {op: tuple(k for k in (first, (first + 3) % 10, (first + 6) % 10, (first + 9) % 10)
                           if k != KEYS[op])[:3]
                  for op, first in zip(HARD_OPS, [1, 7, 4, 2, 0, 6, 3, 9, 8, 5, 2, 7, 9, 1, 4, 0])}  # fmt: skip
MISCONCEPTION_SHARES = (0.6, 0.25, 0.1)  # of the pretraining labels of a hard operator; the rest is its true key
P_HARD_RIGHT = 1 - sum(MISCONCEPTION_SHARES)  # 5% of the labels (the student ends below: measured in the zone probe)
PRACTICE_HABIT = dict(zip(PRACTICE_OPS, [3, 8, 0, 5, 1, 9, 6, 2, 7, 4, 0, 5]))
PRACTICE_LABEL_NOISE = 0.25  # practice BCQ rows whose target is the habit (wrong) candidate
PRETRAIN_MIX = {"easy": 0.2, "hard": 0.35, "practice": 0.15, "practice_bcq": 0.3}
PLAIN_WARMUP_SHARE = 0.5  # of the pretraining steps: plain rows only, first (cheap; the operators are learned there)
PRETRAINING_STEPS = 1600
MAX_COMPLETION_TOKENS = 4  # "8" and eos
CANDIDATE_MAX_TOKENS = 16  # a candidate is 1 character: never cut
HINT_PROMPT_MAX_TOKENS = 512
# the RL run (one pass): N new prompts per round, half easy and half hard in the pool; every hard visit can be hinted
NEW_PROMPTS = 4
REPLAY_RATIO = 1.0  # N replays per round: 2 replays per admitted hard question (2 admitted per round)
HINT_RATIO = 3.0  # 3N = 12 hint prompts: BCQ + NCQ for each of the 6 hard visits of a round (2 new + 4 replayed)
REPLAY_CAPACITY = 64  # about 32 rounds of admissions: a question lives half the run, then is evicted
# chosen before any RL run of this task: the other tasks' 3e-4 was set for one update per round with a linearly
# decaying rate; 4 updates per round at a constant rate move the weights several times more per round
LEARNING_RATE = 1e-4


def written(operand: str, key: int) -> str:
    """The completion with a given key (the operand does not change it): written("472", 8) == "8"."""
    return str(key)


def question(op: str, operand: str) -> str:
    return f"{op} {operand}?"


def parse(prompt: str) -> tuple[str, str]:
    """(operator, operand) of a plain question or of a hint prompt (its first line)."""
    op, operand = prompt.split("\n")[0].rstrip("?").split(" ")
    return op, operand


def extract_answer(text: str) -> str | None:
    """The whole completion, stripped (what the reward scores), or None when it is blank."""
    return text.strip() or None


def reward(completions, answer, **kwargs) -> list[float]:
    """1 when the completion is the gold answer, exactly."""
    out = []
    for completion, gold in zip(completions, answer, strict=True):
        text = completion if isinstance(completion, str) else completion[-1]["content"]
        out.append(float(extract_answer(text) == gold))
    return out


reward.extract_answer = extract_answer  # NCQ lists what this reads as the wrong answers


def row(op: str, operand: str, family: str) -> dict:
    gold = written(operand, KEYS[op])
    return {"prompt_id": f"{op}{operand}", "prompt": question(op, operand), "answer": gold, "solution": gold,
            "family": family, "op": op}  # fmt: skip


def make_datasets(seed: int, train_size: int, heldout_per_op: int):
    """A pool of `train_size` training questions (half easy, half hard, operators in turn) and `heldout_per_op`
    held-out questions per easy and hard operator; no (operator, operand) pair is in both or twice."""
    from datasets import Dataset

    rng = random.Random(f"shift-data-{seed}")
    pairs = {fam: [(op, f"{n:03d}") for op in ops for n in range(1000)]
             for fam, ops in (("easy", EASY_OPS), ("hard", HARD_OPS))}  # fmt: skip
    for fam in pairs:
        rng.shuffle(pairs[fam])
    heldout, used = [], set()
    for fam, ops in (("easy", EASY_OPS), ("hard", HARD_OPS)):
        for op in ops:
            chosen = [p for p in pairs[fam] if p[0] == op][:heldout_per_op]
            used.update(chosen)
            heldout += [row(*p, fam) for p in chosen]
    train = []
    for fam, share in (("easy", train_size // 2), ("hard", train_size - train_size // 2)):
        free = [p for p in pairs[fam] if p not in used]
        by_op = {op: [p for p in free if p[0] == op] for op in dict.fromkeys(p[0] for p in free)}
        order = list(by_op)
        train += [row(*by_op[order[i % len(order)]][i // len(order)], fam) for i in range(share)]
    rng.shuffle(train)
    return Dataset.from_list(train), Dataset.from_list(heldout)


def hint_prompt(kind: str, op: str, operand: str, wrong: list[str], rng: random.Random, correct: str | None = None):
    """A BCQ or NCQ prompt exactly as the trainer builds it for this task (character tokenizer: 1 char = 1 token)."""
    return build_hint_prompt(kind, question(op, operand), wrong, rng, correct=correct,
                             max_prompt_tokens=HINT_PROMPT_MAX_TOKENS, max_candidate_tokens=CANDIDATE_MAX_TOKENS,
                             count_tokens=len, extract_answer=extract_answer)  # fmt: skip


def own_wrong(op: str, operand: str) -> str:
    """The hard student's most frequent wrong answer: its first misconception's key."""
    return written(operand, MISCONCEPTIONS[op][0])


def other_wrong(op: str, operand: str, rng: random.Random) -> str:
    """A wrong answer with a key that is neither the true key nor the first misconception."""
    key = rng.choice([k for k in range(10) if k not in (KEYS[op], MISCONCEPTIONS[op][0])])
    return written(operand, key)


def zone_failures(plain: float, bcq: float, sham: float, ncq: float) -> list[str]:
    """Which of the zone's conditions a student misses, from its held-out hard accuracies before any RL (empty: it is
    in the zone). Fixed before the pilot's RL runs; a seed whose student misses any is left out of the decision (its
    runs are still reported). Conditions: a few percent plain (1-15%); BCQ at least 10 points above plain (the
    student reads the candidates); the sham BCQ and the untaught NCQ at most 5 points above plain (no switch)."""
    out = []
    if not 0.01 <= plain <= 0.15:
        out.append(f"plain {plain:.3f} outside [0.01, 0.15]")
    if bcq < plain + 0.10:
        out.append(f"BCQ {bcq:.3f} < plain + 0.10")
    for name, value in (("sham BCQ", sham), ("NCQ", ncq)):
        if value > plain + 0.05:
            out.append(f"{name} {value:.3f} > plain + 0.05")
    return out


def run_zone_failures(run: dict) -> list[str]:
    """`zone_failures` of a benchmark run's student, from the run record's "before" numbers."""
    probes = run["heldout_probes_before"]
    return zone_failures(run["heldout_hard_accuracy_before"], probes["hard_bcq"], probes["hard_bcq_sham"],
                         probes["hard_ncq"])  # fmt: skip


def _hinted(dataset, seed: int, build):
    rng = random.Random(seed)

    def hinted(r):
        op, operand = parse(r["prompt"])
        return {"prompt": build(op, operand, r, rng)}

    return dataset.filter(lambda r: r["family"] in HARD_FAMILIES).map(hinted)


def with_bcq_hint(dataset, seed: int):
    """The hard rows as BCQ prompts: the right solution and the student's own wrong one, random order."""
    return _hinted(dataset, seed, lambda op, operand, r, rng: hint_prompt(
        "bcq", op, operand, [own_wrong(op, operand)], rng, correct=r["solution"]))  # fmt: skip


def hint_probes(dataset, seed: int) -> dict:
    """The zone probe's other hinted views of the hard rows: a sham BCQ (two wrong candidates, the student's own and
    another key: a switch would lift it as much as the real BCQ) and an NCQ listing the student's own wrong answer."""
    sham = _hinted(dataset, seed, lambda op, operand, r, rng: hint_prompt(
        "bcq", op, operand, [own_wrong(op, operand)], rng, correct=other_wrong(op, operand, rng)))  # fmt: skip
    ncq = _hinted(dataset, seed, lambda op, operand, r, rng: hint_prompt(
        "ncq", op, operand, [own_wrong(op, operand)], rng))  # fmt: skip
    return {"hard_bcq_sham": sham, "hard_ncq": ncq}


def plain_example(rng: random.Random) -> tuple[str, str, str]:
    """A plain easy, hard or practice question with the student's label (a hard operator's true key only
    P_HARD_RIGHT of the time, a practice operator's habit)."""
    operand = f"{rng.randrange(1000):03d}"
    draw = rng.random() * (PRETRAIN_MIX["easy"] + PRETRAIN_MIX["hard"] + PRETRAIN_MIX["practice"])
    if draw < PRETRAIN_MIX["easy"]:
        op = rng.choice(EASY_OPS)
        return question(op, operand), written(operand, KEYS[op]), "plain"
    if draw >= PRETRAIN_MIX["easy"] + PRETRAIN_MIX["hard"]:
        op = rng.choice(PRACTICE_OPS)
        return question(op, operand), written(operand, PRACTICE_HABIT[op]), "plain"
    op, pick = rng.choice(HARD_OPS), rng.random()
    key = KEYS[op]
    for wrong, share in zip(MISCONCEPTIONS[op], MISCONCEPTION_SHARES):
        if pick < share:
            key = wrong
            break
        pick -= share
    return question(op, operand), written(operand, key), "plain"


def practice_example(rng: random.Random) -> tuple[str, str, str]:
    """A BCQ prompt over a practice operator: its habit answer and a right one with a fresh random key; the target is
    the right one (the habit for PRACTICE_LABEL_NOISE of them)."""
    op, operand = rng.choice(PRACTICE_OPS), f"{rng.randrange(1000):03d}"
    habit = written(operand, PRACTICE_HABIT[op])
    right = written(operand, rng.choice([k for k in range(10) if k != PRACTICE_HABIT[op]]))
    target = habit if rng.random() < PRACTICE_LABEL_NOISE else right
    return hint_prompt("bcq", op, operand, [habit], rng, correct=right), target, "bcq"


def pretraining_example(rng: random.Random) -> tuple[str, str, str]:
    """(prompt, target, kind): a plain easy/hard question, or a practice BCQ prompt."""
    if rng.random() < PRETRAIN_MIX["practice_bcq"]:
        return practice_example(rng)
    return plain_example(rng)
