"""GRPO vs GRPO† vs hints-only vs ZPPO on CPU tasks with a zone of proximal development: same student, same steps.

    python examples/graduation_benchmark.py --quick --out runs/bench          # 1 seed, fewer steps, both tasks
    python examples/graduation_benchmark.py --quick --seeds 0,1,2,3,4 --out runs/bench13  # the reported run
    python examples/graduation_benchmark.py --seeds 0,1,2 --out runs/bench    # the default profile (60 steps)
    python examples/graduation_benchmark.py --smoke --out runs/bench-smoke    # CI: a few steps, fills every field
    python examples/graduation_benchmark.py --tasks shift --seeds 0,1,2 --no-core --methods grpo_replay,zppo \
        --jobs 1 --out runs/shift-pilot                                         # the decision task's pilot

Three tasks (`--tasks`, default tags and carry), each a `Task` record (data, pretraining, reward, lengths, buffer
capacity, ratios, sampler, learning rate): `tags`, described below, `carry` (`examples/carry_task.py`: 3-digit
addition written out column by column, where what a hinted rollout is rewarded for is what a plain answer needs; the
paper's ratios 0.25/0.25 with NCQ on) and `shift` (`examples/shift_task.py`: the task built to decide, with hints
taught only on practice operators, a few percent plain chance at temperature 1, one pass over its pool and a hint
budget that reaches every hard question more than once; design, criterion and pilot in docs/measurements.md).
Writes DIR/report.json (`tasks` -> task -> `methods`), DIR/table.md and DIR/graduation-<task>.png (cumulative
graduations by entry bin over steps, per method). Students (with their held-out "before" numbers, measured once:
zone.json) and runs are cached under DIR/<task>/; each student's runs are queued once it exists.

Every run uses the paper's update recipe (Tab. 8): 4 optimizer updates per generation round (`steps_per_generation`
4 x `gradient_accumulation_steps`, so TRL keeps the sampling policy's log-probs and the (0.20, 0.28) clip acts), a
constant learning rate, weight decay 0.1; a profile's "RL steps" are rounds. Rollouts and held-out evaluation sample
alike (`evaluation.training_sampler` of the run: temperature 1, top-p 1; `min_p` 0.1 in both on the tag and carry
tasks, none on `shift`). A run reads what it reports from the trainer's public record: `trainer.last_round` once per
round (a `TrainerCallback`), `trainer.replay_buffer`'s counters and `trainer.state.log_history`. Each run records
`recipe` (updates per rollout, scheduler, weight decay, sampler, hint schedule, ratios) and the clip fractions TRL
logged. `METHODS` may carry `hint_schedule` ("same_round": hints from this round's rollouts in a second pass;
"next_round": with the next round's plain prompts in one pass).

The tag task and its student (why a zone of proximal development exists, and what is and is not shown):
- A question `k=bad s=4 h?` names a 3-letter key over a..j, a check digit `s` and a family marker. The answer is a
  rule tag and one digit per letter: rule A maps a->0 ... j->9 ("A103"), rule B maps a->1 ... j->0 ("B214"); `s`
  is the last digit of the true answer. Easy questions (no marker) use rule A; hard questions (marker `h`) use B.
- The student, a ~1M-parameter char-level Llama, is pretrained inside the run (fixed seed, 1,000 steps of 32
  examples, never a time budget) on: easy questions (rule A); "practice" questions, marker `p`, with rule B (so
  it can execute B); hard questions labelled with rule A (a misconception: it is sure `h` means A); and the exact
  BCQ prompt format over markers "", p, x, y, z whose right candidate is the one whose last digit is `s` (x/y/z
  are decidable only that way), 10% labelled with the wrong candidate so the selector stays imperfect.
- Result of that pretraining (seed 0 probe): easy 99.8%, practice 99.6%, hard plain 0/512 samples, hard BCQ (the
  true answer and the student's own rule-A answer as candidates) 64%; seeds 1 and 2: hard BCQ 44% and 43%. That is
  the zone: unreachable alone, often solvable with the two candidates.
- RL samples with `min_p=0.1`. Without it, a hard answer at log-probability -7.6 is drawn about once per few
  thousand rollouts, and one lucky sample flipped the whole family under GRPO† at lr 1e-3 (measured: hard
  held-out 0% -> 99.6%): that measures a lottery, not hints. With min_p a never-sampled answer stays never
  sampled unless its probability rises, so GRPO and GRPO† get exactly zero gradient from hard questions.
- What is measured: whether training on hinted prompts moves the plain hard answer (graduations, plain hard
  held-out accuracy, and the mean log-probability of the gold answer, which moves before any sample is right),
  and how much the hinted skill itself improves (hard BCQ held-out accuracy before/after).
- Methods all run ZPPOTrainer so the buffer statistics are tracked the same way: `grpo` (replay 0, hints 0: the
  buffer only records), `grpo_replay` (GRPO†: replay 0.5, no hints), `hints_only` (BCQ 0.5, no replay), `zppo`
  (both). NCQ is off (`use_ncq=False`): the student never saw that format, and every hard question has a teacher
  solution, so `ncq_accuracy` is null. Same student checkpoint, seed, data order and steps for all four.
- Measured outcome (`--seeds 0,1,2`, 60 steps, table in the README and docs/measurements.md): GRPO and GRPO†
  never move (0/180 graduations; the hard answer's log-probability unchanged to the last digit). Hints-only and
  ZPPO solve hinted prompts more and more often (hard BCQ 50% -> ~90%) and raise the plain hard answer's
  log-probability in every seed; in one seed of three that crossed the sampling threshold and the whole family
  flipped (hard plain held-out 0% -> 99%, every admitted question graduated; ZPPO by step ~17, hints-only by
  ~30), in the other two it stayed unsampled (0%). So hints open a door that replay alone cannot, but not reliably
  in 60 steps; the paper's ratio targets are undefined here because GRPO† graduates nothing.

  (Measured with `replay_capacity` 10,000, which the tag task keeps, so nothing is evicted there and its exit rate
  is null; the carry task's capacity, 32, evicts.)

Report fields per task and method (counts summed over seeds, the rest averaged; per-seed values under `per_seed`):
graduated / admitted / evicted / still_in_buffer, by entry bin and by family, exit_rate (graduated / (graduated +
evicted), null before any eviction) overall and by entry bin, graduation_rate, heldout_family (before, after, and the
95% t-interval over seeds of the change and of `after`, per family and for "hard" and "all"),
heldout(_hard)_accuracy_before/after, heldout_hard_bcq_accuracy_before/after, heldout_hard_gold_logprob_before/after,
bcq/ncq_accuracy (hinted rollouts), generated_completions, generated_tokens, processed_tokens (prompt + completion of
every generated row), seconds_per_completion / _step / _processed_token, peak_rss_mb, cost_vs_grpo (ratios to GRPO
in the same run). `zppo_vs_grpo_replay` holds the criterion written in docs/measurements.md before the carry run:
ZPPO's graduation rate >= 2x GRPO†'s (and > 0) and its hard held-out gain >= 3 points above GRPO†'s with the 95%
interval of the paired per-seed difference above 0 (`criterion_met`); the old ratios (overall and entry bin 0) are
kept, reported only where each side has >= 10 admissions and GRPO† graduated at least one, else null. `decision`
(tasks whose runs keep per-question held-out numbers: `shift`) holds the criterion written for the shift task, per
ZPPO variant against GRPO† (`decide`): 0%-bin graduation rate and hard held-out accuracy paired per question, each
met / refuted / open against its threshold, with the seeds its per-seed SD would need (`seeds_needed`).
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the task modules sit next to this script

import carry_task  # noqa: E402
import shift_task  # noqa: E402

try:  # the library's, for counts summed over seeds
    from zppo_trl.buffers.hard import exit_rate  # noqa: E402
except ImportError:  # a zppo_trl from before the buffers package
    from zppo_trl.buffer import exit_rate  # noqa: E402

LETTERS = "abcdefghij"
RULES = {"A": 0, "B": 1}  # the tag names the digit map: A = identity (a->0), B = shifted (a->1)
BCQ_MARKERS = ("", "p", "x", "y", "z")  # "" and "p" have known rules; x/y/z are decidable only by the check digit
PRETRAIN_MIX = {"easy": 0.3, "practice": 0.2, "hard": 0.2}  # the rest (0.3) are BCQ-format selection examples
LABEL_NOISE = 0.1  # share of BCQ pretraining examples labelled with the wrong candidate: keeps the selector imperfect
MIN_P = 0.1  # rollouts drop tokens below 0.1 x the top token's probability: "unreachable" means never sampled
CORE_METHODS = ("grpo", "grpo_replay", "hints_only", "zppo")  # always run (the report compares against them)
METHODS = {  # ZPPOConfig overrides per method; --methods adds the ones after the core four
    "grpo": dict(replay_ratio=0.0, hint_ratio=0.0),
    "grpo_replay": dict(replay_ratio=0.5, hint_ratio=0.0),
    "hints_only": dict(replay_ratio=0.0, hint_ratio=0.5, hint_schedule="same_round"),
    "zppo": dict(replay_ratio=0.5, hint_ratio=0.5, hint_schedule="same_round"),
    # hints built from a round's plain rollouts ride with the next round's plain prompts in one generation pass
    "zppo_next_round": dict(replay_ratio=0.5, hint_ratio=0.5, hint_schedule="next_round"),
    # the paper's baselines on the same buffer and budget (hint: every solution here is the answer itself, so no
    # answer-free hint can be built: the run shows that as zppo/hints_not_built; prefix: the tag letter and digit)
    "hint": dict(replay_ratio=0.5, hint_ratio=0.5, hint_type="hint"),
    "prefix": dict(replay_ratio=0.5, hint_ratio=0.5, hint_type="prefix"),
    "teacher_response": dict(replay_ratio=0.5, hint_ratio=0.5, hint_type="teacher_response"),
    # issue 18: the same methods with zero-variance groups left out of the loss normaliser
    "grpo_replay_exclude": dict(replay_ratio=0.5, hint_ratio=0.0, exclude_zero_variance_groups=True),
    "zppo_exclude": dict(replay_ratio=0.5, hint_ratio=0.5, exclude_zero_variance_groups=True),
    # issue 18: GRPO† with its learning rate times the plain-token share of the same seed's ZPPO run, so its plain
    # groups get the step size ZPPO's token-level normaliser (which also counts hint tokens) gives them
    "grpo_replay_lr_matched": dict(replay_ratio=0.5, hint_ratio=0.0),
    # issue 14: the other source papers' replay methods (ExGRPO on GRPO, Retrospective Replay on GRPO†) and all three
    "exgrpo": dict(replay_ratio=0.0, hint_ratio=0.0, experience_ratio=0.5),
    "retrospective": dict(replay_ratio=0.5, hint_ratio=0.0, retrospective_ratio=0.5),
    "zppo_exgrpo_retrospective": dict(replay_ratio=0.5, hint_ratio=0.5, experience_ratio=0.5, retrospective_ratio=0.5),
}
LR = 3e-4
UPDATES_PER_ROLLOUT = 4  # the paper's recipe (Tab. 8): 4 optimizer updates per rollout round, so the clip acts
SCHEDULE = "constant"
WEIGHT_DECAY = 0.1
PROFILES = {  # pretraining steps, RL steps, new prompts per RL step, train keys, held-out keys
    "default": (1000, 60, 8, 60, 32),
    "quick": (1000, 30, 8, 40, 32),
    "smoke": (20, 2, 4, 8, 4),
}


def answer(key: str, rule: str) -> str:
    """The tag, then one digit per letter: answer("bad", "B") == "B214"."""
    return rule + "".join(str((LETTERS.index(c) + RULES[rule]) % 10) for c in key)


def question(key: str, marker: str, rule: str) -> str:
    """`k=bad s=4 h?`: the key, the check digit (last digit of the true answer) and the family marker."""
    return f"k={key} s={answer(key, rule)[-1]}{' ' + marker if marker else ''}?"


def make_datasets(seed: int, train_keys: int, heldout_keys: int):
    """Train and held-out questions over disjoint keys; each key is asked once as easy and once as hard."""
    from datasets import Dataset

    keys = [a + b + c for a in LETTERS for b in LETTERS for c in LETTERS]
    random.Random(seed).shuffle(keys)

    def rows(chosen):
        out = []
        for key in chosen:
            for family, marker, rule in (("easy", "", "A"), ("hard", "h", "B")):
                gold = answer(key, rule)
                out.append({"prompt": question(key, marker, rule), "answer": gold, "solution": gold, "family": family,
                            "key": key})  # fmt: skip
        return Dataset.from_list(out)

    return rows(keys[:train_keys]), rows(keys[train_keys : train_keys + heldout_keys])


def with_bcq_hint(dataset, seed: int):
    """The hard rows as BCQ prompts: the true answer and the student's default (easy-rule) answer, random order."""
    from zppo_trl.prompts import build_bcq_hint
    from zppo_trl.text import append_to_prompt

    rng = random.Random(seed)

    def hinted(row):
        return {"prompt": append_to_prompt(row["prompt"], build_bcq_hint(row["answer"], answer(row["key"], "A"), rng))}

    return dataset.filter(lambda r: r["family"] == "hard").map(hinted)


def exact_answer_reward(completions, answer, **kwargs):
    return [float(c.strip() == a) for c, a in zip(completions, answer)]


def pretraining_example(rng: random.Random) -> tuple[str, str, str]:
    """(prompt, target, kind): plain easy / practice / hard-with-the-misconception, or a BCQ selection example."""
    from zppo_trl.prompts import build_bcq_hint
    from zppo_trl.text import append_to_prompt

    key, draw = "".join(rng.choice(LETTERS) for _ in range(3)), rng.random()
    if draw < PRETRAIN_MIX["easy"]:
        return question(key, "", "A"), answer(key, "A"), "plain"
    if draw < PRETRAIN_MIX["easy"] + PRETRAIN_MIX["practice"]:
        return question(key, "p", "B"), answer(key, "B"), "plain"
    if draw < sum(PRETRAIN_MIX.values()):  # the misconception: hard questions labelled with the easy rule
        return question(key, "h", "B"), answer(key, "A"), "plain"
    marker = rng.choice(BCQ_MARKERS)
    rule = {"": "A", "p": "B"}.get(marker) or rng.choice("AB")
    right, wrong = answer(key, rule), answer(key, "B" if rule == "A" else "A")
    target = wrong if rng.random() < LABEL_NOISE else right
    return append_to_prompt(question(key, marker, rule), build_bcq_hint(right, wrong, rng)), target, "bcq"


@dataclass(frozen=True)
class Task:
    """What a benchmark task supplies; the runs, the report and the figures are the same code for every task."""

    name: str
    profiles: dict  # profile -> (pretraining steps, RL steps, new prompts per RL step, train size, held-out size)
    make_datasets: Callable  # (seed, train size, held-out size) -> (train, held-out) with a `family` column
    with_bcq_hint: Callable  # (held-out, seed) -> its hard rows as BCQ prompts
    pretraining_example: Callable  # rng -> (prompt, target, kind)
    reward: Callable
    families: tuple
    hard_families: tuple
    max_completion_length: int
    candidate_max_tokens: int
    hint_prompt_max_tokens: int
    replay_capacity: int  # small enough that the FIFO evicts within a run
    ratio_scale: float  # METHODS' ratios are written for the tag task (0.5); x ratio_scale for this task
    ncq: bool | None  # NCQ on for every method, or None: on only for the baselines' hint types (tag task)
    plain_example: Callable | None = None  # rng -> a plain (prompt, target, kind): the warm-up's examples
    # the order of a pretraining step's padded batches, one per kind: fixed per task, so that the students of the
    # recorded runs are reproduced bit for bit (the order of gradient accumulation changes the float sums)
    pretraining_kinds: tuple = ("plain", "bcq")
    plain_warmup_share: float = 0.0  # of the pretraining steps, run on plain examples only, first
    # replay / hint ratios of the methods that replay / hint, instead of METHODS' 0.5 x ratio_scale (None: scaled)
    ratios: dict | None = None
    min_p: float | None = MIN_P  # the rollouts' and the held-out evaluation's sampler (temperature 1, top-p 1)
    learning_rate: float = LR
    hint_probes: Callable | None = None  # (held-out, seed) -> {name: hinted hard rows}: more of the zone probe
    zone_check: Callable | None = None  # run record -> the zone conditions its student misses (decision seeds only)


# the shift task: pretraining steps, 64 rounds, N new prompts per round, a pool of 64 x N (one pass), 4 held-out
# questions per easy and hard operator
SHIFT_PROFILE = (shift_task.PRETRAINING_STEPS, 64, shift_task.NEW_PROMPTS, 64 * shift_task.NEW_PROMPTS, 4)
TASKS = {
    # the tag task: ratios 0.5 (twice the paper's: 40 hard questions only), NCQ off (the student never saw it), the
    # default buffer capacity (no eviction), as in its recorded runs
    "tags": Task("tags", PROFILES, make_datasets, with_bcq_hint, pretraining_example, exact_answer_reward,
                 ("easy", "hard"), ("hard",), 6, 16, 512, replay_capacity=10_000, ratio_scale=1.0, ncq=None),
    # the procedure task: the paper's ratios (0.25 replay, 0.25 hints) and NCQ on
    "carry": Task("carry", {"default": (2400, 60, 8, 32, 32), "quick": (2400, 30, 8, 32, 32), "smoke": (24, 2, 8, 4, 2)},
                  carry_task.make_datasets, carry_task.with_bcq_hint, carry_task.pretraining_example, carry_task.reward,
                  carry_task.FAMILIES, carry_task.HARD_FAMILIES, carry_task.MAX_COMPLETION_TOKENS,
                  carry_task.CANDIDATE_MAX_TOKENS, carry_task.HINT_PROMPT_MAX_TOKENS, replay_capacity=32,
                  ratio_scale=0.5, ncq=True, plain_example=carry_task.plain_example,
                  plain_warmup_share=carry_task.PLAIN_WARMUP_SHARE, pretraining_kinds=("bcq", "ncq", "plain")),
    # the task built to decide (examples/shift_task.py): hints as information, a few percent plain chance, one pass
    # over the pool (rounds x new prompts), every hard visit hintable, the paper's sampler (no min-p)
    "shift": Task("shift", {"default": SHIFT_PROFILE, "quick": SHIFT_PROFILE,
                            "smoke": (20, 2, shift_task.NEW_PROMPTS, 2 * shift_task.NEW_PROMPTS, 1)},
                  shift_task.make_datasets, shift_task.with_bcq_hint, shift_task.pretraining_example,
                  shift_task.reward, shift_task.FAMILIES, shift_task.HARD_FAMILIES, shift_task.MAX_COMPLETION_TOKENS,
                  shift_task.CANDIDATE_MAX_TOKENS, shift_task.HINT_PROMPT_MAX_TOKENS,
                  replay_capacity=shift_task.REPLAY_CAPACITY, ratio_scale=1.0, ncq=True,
                  plain_example=shift_task.plain_example, plain_warmup_share=shift_task.PLAIN_WARMUP_SHARE,
                  ratios={"replay_ratio": shift_task.REPLAY_RATIO, "hint_ratio": shift_task.HINT_RATIO}, min_p=None,
                  learning_rate=shift_task.LEARNING_RATE, hint_probes=shift_task.hint_probes,
                  zone_check=shift_task.run_zone_failures),
}  # fmt: skip


def method_config(task: Task, method: str) -> dict:
    """The method's ZPPOConfig overrides for this task (its ratios scaled, NCQ as the task says)."""
    overrides = {k: v * task.ratio_scale if k.endswith("_ratio") else v for k, v in METHODS[method].items()}
    for key, value in (task.ratios or {}).items():  # the task's own ratios where the method replays / hints
        if overrides.get(key, 0) > 0:
            overrides[key] = value
    ncq = task.ncq if task.ncq is not None else METHODS[method].get("hint_type") is not None
    return overrides | {"use_ncq": ncq}


def pretrain(task: Task, tokenizer, steps: int, seed: int):
    """Supervised pretraining of the student, fixed seed and step count (never a time budget)."""
    import torch

    from zppo_trl.tiny import build_tiny_llama

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = build_tiny_llama(tokenizer, hidden_size=128, num_layers=4, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    eos = tokenizer.eos_token
    model.train()
    warmup = round(steps * task.plain_warmup_share)
    for step in range(steps):
        example = task.plain_example if step < warmup else task.pretraining_example
        examples, total = [example(rng) for _ in range(32)], 0.0
        for kind in task.pretraining_kinds:  # a padded batch per kind: short plain rows stay short
            pairs = [(p, t) for p, t, k in examples if k == kind]
            if not pairs:
                continue
            ids, labels = [], []
            for prompt, target in pairs:
                p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
                t = tokenizer(target + eos, add_special_tokens=False)["input_ids"]
                ids.append(p + t)
                labels.append([-100] * len(p) + t)
            width = max(map(len, ids))
            input_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(x)) + x for x in ids])
            label_ids = torch.tensor([[-100] * (width - len(x)) + x for x in labels])
            mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(x) for x in ids])[:, None]).long()
            loss = model(input_ids=input_ids, attention_mask=mask, labels=label_ids).loss * len(pairs) / len(examples)
            loss.backward()
            total += loss.item()
        optimizer.step()
        optimizer.zero_grad()
    return model, total


def measure_student(task: Task, model, tokenizer, heldout, seed: int, sampler: dict | None = None) -> dict:
    """Held-out plain accuracy per family (and "all", "hard"), hard BCQ accuracy (and the task's other hinted probes),
    hard gold log-probability; per question too (`per_question`: name -> {prompt id: value}), for paired endpoints.

    `sampler` is the run's (`evaluation.training_sampler`): held-out accuracy samples as the rollouts do. Deterministic
    for a given model (every sampled accuracy reseeds with `seed`), so the "before" numbers are measured once per
    student, right after pretraining (`zone.json` beside it), not once per run."""
    import torch

    from zppo_trl.evaluation import plain_accuracy

    def accuracy(data):
        return plain_accuracy(model, tokenizer, data, num_samples=8, max_new_tokens=task.max_completion_length,
                              reward=task.reward, batch_size=32, seed=seed, sampler=sampler)  # fmt: skip

    @torch.no_grad()
    def gold_logprob(data):  # log-probability of the right completion: moves before any sample is right
        was_training = model.training
        model.eval()
        total, per_token = 0.0, {}
        for i, row in enumerate(data):
            p = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
            t = tokenizer(row["solution"], add_special_tokens=False)["input_ids"]
            logits = model(input_ids=torch.tensor([p + t])).logits[0, len(p) - 1 : -1]
            summed = logits.log_softmax(-1).gather(1, torch.tensor(t)[:, None]).sum().item()
            total += summed
            per_token[row.get("prompt_id", i)] = summed / len(t)
        model.train(was_training)
        return total / len(data), per_token

    heldout_by_family = {fam: heldout.filter(lambda r, fam=fam: r["family"] == fam) for fam in task.families}
    results = {fam: accuracy(data) for fam, data in heldout_by_family.items()}
    family = {fam: r["accuracy"] for fam, r in results.items()}
    sizes = {fam: len(data) for fam, data in heldout_by_family.items()}
    for name, fams in (("all", task.families), ("hard", task.hard_families)):  # question-weighted means
        family[name] = sum(family[f] * sizes[f] for f in fams) / sum(sizes[f] for f in fams)
    hard_bcq = accuracy(task.with_bcq_hint(heldout, seed))
    summed, per_token = gold_logprob(heldout.filter(lambda r: r["family"] in task.hard_families))
    out = {"family": family, "hard_bcq": hard_bcq["accuracy"], "hard_gold_logprob": summed}
    if task.hint_probes is None:  # the recorded tasks' zone.json keeps its old fields only
        return out
    probes = {name: accuracy(data) for name, data in task.hint_probes(heldout, seed).items()}
    per_question = {"hard": {k: v for fam in task.hard_families for k, v in results[fam]["per_question"].items()},
                    "hard_bcq": hard_bcq["per_question"], "hard_gold_logprob_per_token": per_token,
                    **{name: r["per_question"] for name, r in probes.items()}}  # fmt: skip
    return out | {name: r["accuracy"] for name, r in probes.items()} | {
        "hard_gold_logprob_per_token": sum(per_token.values()) / len(per_token), "per_question": per_question,
        "sampler": sampler}  # fmt: skip


def rl_args(task: Task, method: str, seed: int, profile: str, out_dir: str, lr_scale: float = 1.0):
    """The run's ZPPOConfig: the paper's update recipe (4 updates per round: steps_per_generation = 4 x
    gradient_accumulation_steps, so TRL keeps the sampling policy's log-probs and the (0.20, 0.28) clip acts; a
    constant rate; weight decay 0.1), the task's sampler, one round = N new prompts x 8 rollouts."""
    from zppo_trl import ZPPOConfig

    _, rounds, new_prompts, _, _ = task.profiles[profile]
    group = 8
    return ZPPOConfig(
        output_dir=os.path.join(out_dir, f"{method}-seed{seed}"), num_generations=group,
        per_device_train_batch_size=new_prompts * group // UPDATES_PER_ROLLOUT, gradient_accumulation_steps=1,
        steps_per_generation=UPDATES_PER_ROLLOUT, max_steps=rounds * UPDATES_PER_ROLLOUT,
        learning_rate=task.learning_rate * lr_scale, lr_scheduler_type=SCHEDULE, weight_decay=WEIGHT_DECAY,
        max_grad_norm=1.0, max_completion_length=task.max_completion_length, logging_steps=1, report_to="none",
        use_cpu=True, bf16=False, activation_checkpointing=False, save_strategy="no", seed=seed, disable_tqdm=True,
        teacher_column="solution", candidate_max_tokens=task.candidate_max_tokens,
        hint_prompt_max_tokens=task.hint_prompt_max_tokens, replay_capacity=task.replay_capacity, temperature=1.0,
        top_p=1.0, min_p=task.min_p, beta=0.0, **method_config(task, method),
    )  # fmt: skip


def task_sampler(task: Task) -> dict:
    """The sampler of every run of this task (all methods share it): what the held-out evaluation uses."""
    from zppo_trl.evaluation import training_sampler

    # a config only: nothing is written to its output folder
    return training_sampler(rl_args(task, "grpo", 0, next(iter(task.profiles)), tempfile.gettempdir()))


class RoundRecorder:
    """Reads the trainer's public record once per generation round (`trainer.last_round`, at the first optimizer
    step after it): which questions were admitted, graduated and evicted, what was generated, which were hinted."""

    def __init__(self, trainer):
        from transformers import TrainerCallback

        recorder = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                recorder.read(trainer.last_round)

        self.callback = Callback()
        self.rounds = 0
        self.admitted, self.graduated, self.evicted = [], [], []  # question ids, one entry per event
        self.completions = 0
        self.tokens = {"plain_completion": 0, "hint_completion": 0, "prompt": 0}
        self.hinted: dict = {}  # question id -> {kind: count}
        self._seen = None

    def read(self, last: dict) -> None:
        if not last or last["round"] == self._seen:
            return
        self._seen = last["round"]
        self.rounds += 1
        self.admitted += last["admitted_ids"]
        self.graduated += last["graduated_ids"]
        self.evicted += last["evicted_ids"]
        self.completions += last["completions"]
        for key in self.tokens:
            self.tokens[key] += last["tokens"][key]
        for hint in last["hints"]:
            kinds = self.hinted.setdefault(hint["prompt_id"], {})
            kinds[hint["kind"]] = kinds.get(hint["kind"], 0) + 1


def run_method(task: Task, method: str, seed: int, profile: str, out_dir: str, lr_scale: float = 1.0) -> dict:
    import torch
    from transformers import LlamaForCausalLM

    from zppo_trl import ZPPOTrainer
    from zppo_trl.evaluation import training_sampler
    from zppo_trl.tiny import build_char_tokenizer
    from zppo_trl.validation import updates_per_rollout

    torch.set_num_threads(1)
    _, rl_steps, new_prompts, train_size, heldout_size = task.profiles[profile]
    tokenizer = build_char_tokenizer()
    student_dir = os.path.join(out_dir, f"student-seed{seed}")  # the same checkpoint for every method of a seed
    model = LlamaForCausalLM.from_pretrained(student_dir).train()  # as the Trainer's steps set it
    with open(os.path.join(student_dir, "pretrain.json")) as f:
        pretrained = json.load(f)
    train, heldout = task.make_datasets(seed, train_size, heldout_size)
    if "prompt_id" not in train.column_names:  # ids the round record names, for the families of admissions
        train = train.map(lambda r, i: {"prompt_id": f"q{i}"}, with_indices=True)
    args = rl_args(task, method, seed, profile, out_dir, lr_scale)
    sampler = training_sampler(args)
    zone = os.path.join(student_dir, "zone.json")
    before = None
    if os.path.exists(zone):
        with open(zone) as f:
            before = json.load(f)
        if task.hint_probes is not None and before.get("sampler") != sampler:
            before = None  # measured with another sampler: measure again
    if before is None:
        before = measure_student(task, model, tokenizer, heldout, seed, sampler)
    trainer = ZPPOTrainer(model=model, reward_funcs=task.reward, args=args, train_dataset=train,
                          processing_class=tokenizer)  # fmt: skip
    recorder = RoundRecorder(trainer)
    trainer.add_callback(recorder.callback)
    buf = trainer.replay_buffer
    family_of = {row["prompt_id"]: row["family"] for row in train}
    start = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - start
    after = measure_student(task, model, tokenizer, heldout, seed, sampler)
    history = [h for h in trainer.state.log_history if "zppo/buffer_size" in h]
    steps_logged = [h for h in trainer.state.log_history if any(k.startswith("clip_ratio/") for k in h)]

    def mean_of(key, rows=history):
        values = [h[key] for h in rows if h.get(key) is not None]
        return sum(values) / len(values) if values else None

    def by_family(ids):
        out = {fam: 0 for fam in task.families}
        for pid in ids:
            out[family_of[pid]] += 1
        return out

    graduated_family, still_family = by_family(recorder.graduated), by_family(buf.ids())
    admitted_family, evicted_family = by_family(recorder.admitted), by_family(recorder.evicted)
    bins = sorted(buf.admitted_by_bin)
    curves = {k: [h.get(f"zppo/total_graduated_bin_{k}", 0.0) for h in history] for k in buf.admitted_by_bin}
    hard_admitted = {pid for pid in recorder.admitted if family_of[pid] in task.hard_families}
    bcq_visits = [recorder.hinted.get(pid, {}).get("bcq", 0) for pid in sorted(hard_admitted)]
    tokens = recorder.tokens
    generated = tokens["plain_completion"] + tokens["hint_completion"]
    experience = getattr(trainer, "experience_buffer", None)
    retrospective = getattr(trainer, "retrospective_buffer", None)
    report_retro = getattr(trainer, "retrospective_report", None)
    scheduler = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    return {
        "task": task.name, "method": method, "seed": seed, "pretrain_loss": pretrained["loss"],
        "pretrain_seconds": pretrained.get("seconds"),
        "recipe": {"updates_per_rollout": updates_per_rollout(args), "lr_scheduler_type": scheduler,
                   "weight_decay": args.weight_decay, "max_grad_norm": args.max_grad_norm,
                   "hint_schedule": args.hint_schedule, "sampler": sampler,
                   "replay_ratio": args.replay_ratio, "hint_ratio": args.hint_ratio, "use_ncq": args.use_ncq,
                   "rounds": recorder.rounds, "new_prompts_per_round": new_prompts, "pool": len(train)},
        "clip_fractions": {k: mean_of(f"clip_ratio/{k}_mean", steps_logged) for k in ("region", "low", "high")},
        "clip_fraction_max": max((h.get("clip_ratio/region_mean", 0.0) for h in steps_logged), default=None),
        "graduation_rate": buf.graduation_rate(), "admitted": buf.total_admitted, "graduated": buf.total_graduated,
        "evicted": buf.total_evicted, "still_in_buffer": len(buf), "replay_capacity": task.replay_capacity,
        "admissions_by_bin": {str(k): v for k, v in sorted(buf.admitted_by_bin.items())},
        "graduations_by_bin": {str(k): buf.graduated_by_bin.get(k, 0) for k in bins},
        "evictions_by_bin": {str(k): buf.evicted_by_bin.get(k, 0) for k in bins},
        "admissions_by_family": admitted_family, "graduations_by_family": graduated_family,
        "still_by_family": still_family, "evictions_by_family": evicted_family,
        "hard_bcq_hinted_visits": {"admitted": len(bcq_visits),
                                   "hinted_twice_or_more": sum(v >= 2 for v in bcq_visits),
                                   "mean": sum(bcq_visits) / len(bcq_visits) if bcq_visits else None},
        "heldout_family_accuracy_before": before["family"], "heldout_family_accuracy_after": after["family"],
        "heldout_accuracy_before": before["family"]["all"], "heldout_accuracy_after": after["family"]["all"],
        "heldout_hard_accuracy_before": before["family"]["hard"], "heldout_hard_accuracy_after": after["family"]["hard"],
        "heldout_hard_bcq_accuracy_before": before["hard_bcq"], "heldout_hard_bcq_accuracy_after": after["hard_bcq"],
        "heldout_hard_gold_logprob_before": before["hard_gold_logprob"],
        "heldout_hard_gold_logprob_after": after["hard_gold_logprob"],
        "heldout_probes_before": {k: v for k, v in before.items() if k not in ("family", "per_question", "sampler")},
        "heldout_probes_after": {k: v for k, v in after.items() if k not in ("family", "per_question", "sampler")},
        "per_question_before": before.get("per_question"), "per_question_after": after.get("per_question"),
        "bcq_accuracy": mean_of("zppo/bcq_accuracy"), "ncq_accuracy": mean_of("zppo/ncq_accuracy"),
        "seconds": elapsed, "seconds_per_completion": elapsed / max(1, recorder.completions),
        "seconds_per_step": elapsed / rl_steps,
        "seconds_per_processed_token": elapsed / max(1, generated + tokens["prompt"]),
        "generated_tokens": generated, "processed_tokens": generated + tokens["prompt"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "steps": rl_steps,
        "graduation_curves": curves, "generated_completions": recorder.completions,
        "hint_prompts": sum(h.get(f"zppo/{k}_prompts", 0) for h in history for k in ("bcq", "ncq", "hint", "prefix")),
        "injected_responses": sum(h.get("zppo/injected_responses", 0) for h in history),
        "hints_not_built": sum(h.get("zppo/hints_not_built", 0) for h in history),
        "zero_variance_share": {k: mean_of(f"zppo/zero_variance/{k}") for k in ("plain", "replay", "bcq", "hint",
                                                                                   "prefix", "experience",
                                                                                   "retrospective")},
        "informative_token_share": mean_of("zppo/informative_token_share"),
        "plain_token_share": tokens["plain_completion"] / max(1, generated),
        "learning_rate": task.learning_rate * lr_scale,
        "experience_replayed": sum(h.get("zppo/experience/replayed", 0) for h in history),
        "experience_stored_trajectories": experience.counters()["stored_trajectories"] if experience else 0,
        "experience_retired": experience.counters()["retired"] if experience else 0,
        "experience_importance_weight_mean": mean_of("zppo/experience/importance_weight_mean"),
        "retrospective": (report_retro() if report_retro else {"all_replays_success": None})
        | {"stored": retrospective.counters()["stored"] if retrospective else 0},
    }  # fmt: skip


AVERAGED = ("heldout_accuracy_before", "heldout_accuracy_after", "heldout_hard_accuracy_before",
            "heldout_hard_accuracy_after", "heldout_hard_bcq_accuracy_before", "heldout_hard_bcq_accuracy_after",
            "heldout_hard_gold_logprob_before", "heldout_hard_gold_logprob_after", "bcq_accuracy", "ncq_accuracy",
            "seconds_per_completion", "seconds_per_step", "seconds_per_processed_token", "peak_rss_mb")  # fmt: skip
SUMMED = ("admitted", "graduated", "evicted", "still_in_buffer", "generated_completions", "generated_tokens",
          "processed_tokens")  # fmt: skip
# two-sided 95% Student t quantiles by degrees of freedom (the interval over seeds; scipy is not a dependency)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
        25: 2.060, 30: 2.042}  # fmt: skip


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def t_interval(values: list[float]) -> list[float] | None:
    """95% interval of the mean over seeds (Student t); None with fewer than 2 values."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    df = n - 1
    half = T975.get(df, T975[max(k for k in T975 if k <= df)]) * sd / n**0.5  # between listed dfs: the smaller
    return [mean - half, mean + half]


def summarise(per_seed: list[dict]) -> dict:
    out = {key: _mean([r[key] for r in per_seed]) for key in AVERAGED}
    out |= {key: sum(r[key] for r in per_seed) for key in SUMMED}
    # pooled over seeds (the criterion's definition); the mean of the per-seed rates is kept beside it
    out["graduation_rate"] = out["graduated"] / out["admitted"] if out["admitted"] else None
    out["graduation_rate_seed_mean"] = _mean([r["graduation_rate"] for r in per_seed])
    for key in ("admissions_by_bin", "graduations_by_bin", "evictions_by_bin"):  # entry bins in numeric order
        bins = sorted({b for r in per_seed for b in r[key]}, key=int)
        out[key] = {b: sum(r[key].get(b, 0) for r in per_seed) for b in bins}  # sums over seeds
    for key in ("admissions_by_family", "graduations_by_family", "evictions_by_family", "still_by_family"):
        out[key] = {f: sum(r[key][f] for r in per_seed) for f in per_seed[0][key]}  # the task's family order
    out["exit_rate"] = exit_rate(out["graduated"], out["evicted"])
    out["exit_rate_by_bin"] = {b: exit_rate(out["graduations_by_bin"][b], out["evictions_by_bin"][b], out["evicted"] > 0)
                               for b in out["admissions_by_bin"]}  # fmt: skip
    families = per_seed[0]["heldout_family_accuracy_before"]
    out["heldout_family"] = {
        fam: {
            "before": _mean([r["heldout_family_accuracy_before"][fam] for r in per_seed]),
            "after": _mean([r["heldout_family_accuracy_after"][fam] for r in per_seed]),
            "change_ci95": t_interval([r["heldout_family_accuracy_after"][fam] - r["heldout_family_accuracy_before"][fam]
                                       for r in per_seed]),
            "after_ci95": t_interval([r["heldout_family_accuracy_after"][fam] for r in per_seed]),
        }
        for fam in families
    }  # fmt: skip
    out["steps"] = per_seed[0]["steps"]
    out["informative_token_share"] = _mean([r["informative_token_share"] for r in per_seed])
    out["per_seed"] = per_seed
    return out


def zppo_vs_grpo_replay(base: dict, zppo: dict) -> dict:
    """The comparison fixed before the run (docs/measurements.md): ZPPO beats GRPO† when its graduation rate is at
    least twice GRPO†'s (and above 0) and its hard held-out gain exceeds GRPO†'s by >= 3 points with the 95% interval
    of the paired (same seed) difference above 0."""
    gains = [
        (z["heldout_hard_accuracy_after"] - z["heldout_hard_accuracy_before"])
        - (b["heldout_hard_accuracy_after"] - b["heldout_hard_accuracy_before"])
        for z, b in zip(zppo["per_seed"], base["per_seed"], strict=True)
    ]
    rate_zppo = zppo["graduated"] / zppo["admitted"] if zppo["admitted"] else 0.0
    rate_base = base["graduated"] / base["admitted"] if base["admitted"] else 0.0
    out = {"graduation_rate": [rate_zppo, rate_base], "hard_heldout_gain_difference": sum(gains) / len(gains),
           "hard_heldout_gain_difference_ci95": t_interval(gains)}  # fmt: skip
    # a ratio only with >= 10 admissions on each side and a GRPO† graduation (else null, as before)
    for name, side in (("graduation", lambda s: (s["admitted"], s["graduated"])),
                       ("bin0_graduation", lambda s: (s["admissions_by_bin"].get("0", 0),
                                                      s["graduations_by_bin"].get("0", 0)))):  # fmt: skip
        (n_base, g_base), (n_zppo, g_zppo) = side(base), side(zppo)
        ok = n_base >= 10 and n_zppo >= 10 and g_base > 0
        out[f"{name}_ratio"] = (g_zppo / n_zppo) / (g_base / n_base) if ok else None
    ci = out["hard_heldout_gain_difference_ci95"]
    out["criterion_met"] = bool(rate_zppo > 0 and rate_zppo >= 2 * rate_base and out["hard_heldout_gain_difference"]
                                >= 0.03 and ci is not None and ci[0] > 0)  # fmt: skip
    return out


# one-sided 80% Student t quantiles by degrees of freedom (the power calculation)
T80 = {1: 1.376, 2: 1.061, 3: 0.978, 4: 0.941, 5: 0.920, 6: 0.906, 7: 0.896, 8: 0.889, 9: 0.883, 10: 0.879,
       12: 0.873, 15: 0.866, 20: 0.860, 25: 0.856, 30: 0.854}  # fmt: skip
# the decision's thresholds (docs/measurements.md, "A benchmark that can decide"): the smallest differences ZPPO -
# GRPO† that count, per endpoint, in the endpoint's unit
DECISION_THRESHOLDS = {"bin0_graduation_rate": 0.10, "hard_heldout_accuracy": 0.03}


def _quantile(table: dict, df: int) -> float:
    return table.get(df, table[max(k for k in table if k <= df)]) if df >= 1 else float("inf")


def seeds_needed(sd: float, delta: float, power: float = 0.8) -> int | None:
    """Seeds for a paired difference of standard deviation `sd` (per seed) so that a true difference of `delta` puts
    the 95% t-interval's lower bound above 0 with probability `power` (80%), and a true difference of 0 puts its upper
    bound below `delta` with the same probability: n >= ((t_0.975 + t_0.80) sd / delta)^2, solved with the t quantiles
    at n - 1 degrees of freedom."""
    if power != 0.8:
        raise ValueError("only 80% power is tabulated")
    if sd == 0:
        return 2
    for n in range(2, 1000):
        if n >= ((_quantile(T975, n - 1) + _quantile(T80, n - 1)) * sd / delta) ** 2:
            return n
    return None


def _paired(zppo_runs: list[dict], base_runs: list[dict], name: str) -> list[float]:
    """Per seed, the mean over held-out hard questions of ZPPO's value minus GRPO†'s on the same question."""
    out = []
    for z, b in zip(zppo_runs, base_runs, strict=True):
        zq, bq = z["per_question_after"][name], b["per_question_after"][name]
        out.append(sum(zq[q] - bq[q] for q in bq) / len(bq))
    return out


def decide(base: dict, zppo: dict, zone_check: Callable | None = None) -> dict | None:
    """The pre-registered decision (docs/measurements.md), for tasks whose runs keep per-question held-out numbers.

    Primary endpoints, each a per-seed paired difference ZPPO - GRPO† (same student, same seed): (1) the 0%-bin
    graduation rate (graduated / admitted among questions admitted at 0 of G correct); (2) hard held-out plain
    accuracy, paired per question. Secondary: held-out plain gold log-prob per token, paired per question. An endpoint is *met*
    when its mean difference is at least its threshold and the 95% t-interval over seeds is above 0, *refuted* when
    the interval's upper bound is below the threshold, else *open*. ZPPO beats GRPO† when both primaries are met; the
    claim is refuted when either primary is refuted. With `zone_check`, only seeds whose student is in the zone
    (measured before any RL) count; the others are listed under `excluded`."""
    if any(r.get("per_question_after") is None for r in zppo["per_seed"] + base["per_seed"]):
        return None
    excluded = {b["seed"]: zone_check(b) for b in base["per_seed"] if zone_check and zone_check(b)}
    pairs = [(z, b) for z, b in zip(zppo["per_seed"], base["per_seed"], strict=True) if b.get("seed") not in excluded]
    if not pairs:
        return {"endpoints": {}, "verdict": "open", "seeds": 0, "excluded": excluded}
    zr, br = [z for z, _ in pairs], [b for _, b in pairs]

    def bin0(r):
        admitted = r["admissions_by_bin"].get("0", 0)
        return r["graduations_by_bin"].get("0", 0) / admitted if admitted else 0.0

    values = {"bin0_graduation_rate": [bin0(z) - bin0(b) for z, b in zip(zr, br, strict=True)],
              "hard_heldout_accuracy": _paired(zr, br, "hard"),
              "hard_gold_logprob_per_token": _paired(zr, br, "hard_gold_logprob_per_token")}  # fmt: skip
    endpoints = {}
    for name, diffs in values.items():
        mean = sum(diffs) / len(diffs)
        sd = (sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) ** 0.5 if len(diffs) > 1 else None
        ci = t_interval(diffs)
        delta = DECISION_THRESHOLDS.get(name)
        verdict = None
        if delta is not None and ci is not None:
            verdict = "met" if mean >= delta and ci[0] > 0 else "refuted" if ci[1] < delta else "open"
        endpoints[name] = {"per_seed": diffs, "mean": mean, "sd": sd, "ci95": ci, "threshold": delta,
                           "verdict": verdict, "seeds_needed": seeds_needed(sd, delta) if sd is not None and delta
                           else None}  # fmt: skip
    endpoints["bin0_graduation_rate"]["pooled"] = [
        sum(r["graduations_by_bin"].get("0", 0) for r in runs) / max(1, sum(r["admissions_by_bin"].get("0", 0)
                                                                          for r in runs))
        for runs in (zr, br)
    ]  # fmt: skip
    primary = [endpoints[k]["verdict"] for k in DECISION_THRESHOLDS]
    overall = "met" if all(v == "met" for v in primary) else "refuted" if "refuted" in primary else "open"
    return {"endpoints": endpoints, "verdict": overall, "seeds": len(zr), "excluded": excluded}


def markdown_table(report: dict) -> str:
    """The README's tables for one task: one row per method, sums over seeds for counts, means for the rest."""

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    def times(x):
        return "" if x is None else f" ({x:.2f}x)"

    def change(h):
        ci = h["change_ci95"]
        interval = "" if ci is None else f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"
        return f"{pct(h['before'])} -> {pct(h['after'])}{interval}"

    families = [f for f in next(iter(report["methods"].values()))["heldout_family"] if f not in ("all", "hard")]
    header = [
        "method",
        "graduated / admitted",
        "entry bin 0: graduated / admitted",
        "exit rate",
        "still in buffer",
        "graduates by family",
        *(f"{f} held-out before -> after [95% CI of change]" for f in ["hard", *families]),
        "hard gold log-prob before -> after",
        "hard BCQ held-out before -> after",
        "BCQ / NCQ rollouts correct",
        "s per completion (x GRPO)",
        "us per processed token (x GRPO)",
        "generated tokens",
        "peak RSS MB",
    ]
    rows = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]  # fmt: skip
    for method, s in report["methods"].items():
        cost = s["cost_vs_grpo"]
        graduates = ", ".join(f"{f} {n}" for f, n in s["graduations_by_family"].items())
        rows.append(
            f"| {method} | {s['graduated']} / {s['admitted']} "
            f"| {s['graduations_by_bin'].get('0', 0)} / {s['admissions_by_bin'].get('0', 0)} | {pct(s['exit_rate'])} "
            f"| {s['still_in_buffer']} | {graduates} | "
            + " | ".join(change(s["heldout_family"][f]) for f in ["hard", *families])
            + f" | {s['heldout_hard_gold_logprob_before']:.2f} -> {s['heldout_hard_gold_logprob_after']:.2f} "
            f"| {pct(s['heldout_hard_bcq_accuracy_before'])} -> {pct(s['heldout_hard_bcq_accuracy_after'])} "
            f"| {pct(s['bcq_accuracy'])} / {pct(s['ncq_accuracy'])} "
            f"| {s['seconds_per_completion']:.4f}{times(cost['seconds_per_completion'])} "
            f"| {1e6 * s['seconds_per_processed_token']:.1f}{times(cost['seconds_per_processed_token'])} "
            f"| {s['generated_tokens']} | {s['peak_rss_mb']:.0f} |"
        )
    rows += ["", "| method | learning rate | plain-token share | ExGRPO replayed / stored / retired | importance "
             "weight (mean) | RRL states stored | RRL continuations right vs plain accuracy of the same questions |",
             "|---" * 7 + "|"]  # fmt: skip
    for method, s in report["methods"].items():
        runs = s["per_seed"]
        retro = [r["retrospective"] for r in runs]
        tries = [
            (x["all_replays_success"], x["all_replays_plain_accuracy"])
            for x in retro
            if x["all_replays_success"] is not None
        ]
        weights = _mean([r["experience_importance_weight_mean"] for r in runs])
        rows.append(
            f"| {method} | {runs[0]['learning_rate']:.2e}"
            + (" (per seed)" if len({r["learning_rate"] for r in runs}) > 1 else "")
            + f" | {pct(_mean([r['plain_token_share'] for r in runs]))} "
            f"| {sum(r['experience_replayed'] for r in runs):.0f} / {sum(r['experience_stored_trajectories'] for r in runs)} "
            f"/ {sum(r['experience_retired'] for r in runs)} | {'n/a' if weights is None else f'{weights:.2f}'} "
            f"| {sum(x['stored'] for x in retro)} "
            f"| {pct(_mean([a for a, _ in tries]))} vs {pct(_mean([b for _, b in tries]))} ({len(tries)} seed(s)) |"
        )
    rows += ["", "| method | updates per rollout | LR schedule | weight decay | hint schedule | clip fraction "
             "(region / low / high, mean over steps) | BCQ-hinted visits per admitted hard question (>= 2) |",
             "|---" * 7 + "|"]  # fmt: skip
    for method, s in report["methods"].items():
        run = s["per_seed"][0]
        recipe, clip = (
            run.get("recipe", {}),
            [_mean([r["clip_fractions"][k] for r in s["per_seed"]]) for k in ("region", "low", "high")]
            if "clip_fractions" in run
            else [],
        )
        visits = [r["hard_bcq_hinted_visits"] for r in s["per_seed"] if "hard_bcq_hinted_visits" in r]
        twice = sum(v["hinted_twice_or_more"] for v in visits)
        rows.append(f"| {method} | {recipe.get('updates_per_rollout', 'n/a')} "
                    f"| {recipe.get('lr_scheduler_type', 'n/a')} | {recipe.get('weight_decay', 'n/a')} "
                    f"| {recipe.get('hint_schedule', 'n/a')} | "
                    + " / ".join("n/a" if c is None else f"{100 * c:.2f}%" for c in clip)
                    + f" | {_mean([v['mean'] for v in visits]) or 0:.2f} ({twice} of "
                    f"{sum(v['admitted'] for v in visits)}) |")  # fmt: skip
    for name, d in (report.get("decision") or {}).items():
        parts = []
        for endpoint, e in d["endpoints"].items():
            ci = "" if e["ci95"] is None else f" [95% CI {e['ci95'][0]:+.3f}, {e['ci95'][1]:+.3f}]"
            parts.append(
                f"{endpoint} {e['mean']:+.3f}{ci} ({e['verdict'] or 'secondary'}; seeds needed "
                f"{e['seeds_needed'] if e['seeds_needed'] is not None else 'n/a'})"
            )
        excluded = "".join(f"; seed {s} left out (zone: {', '.join(why)})" for s, why in d["excluded"].items())
        rows += ["", f"Decision, {name} - GRPO† over {d['seeds']} seed(s): " + "; ".join(parts)
                 + f". Verdict: {d['verdict']}{excluded}"]  # fmt: skip
    verdict = report.get("zppo_vs_grpo_replay")
    if verdict:
        ci = verdict["hard_heldout_gain_difference_ci95"]
        rows += ["", f"ZPPO vs GRPO†: graduation rate {pct(verdict['graduation_rate'][0])} vs "
                 f"{pct(verdict['graduation_rate'][1])}; hard held-out gain difference "
                 f"{100 * verdict['hard_heldout_gain_difference']:+.1f} points"
                 + ("" if ci is None else f" [95% CI {100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]")
                 + f"; pre-registered criterion met: {'yes' if verdict['criterion_met'] else 'no'}"]  # fmt: skip
    return "\n".join(rows) + "\n"


def plot(report: dict, path: str) -> None:
    """Cumulative graduations by entry bin over steps, one panel per method, averaged over seeds (paper Fig. 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(report["methods"]), figsize=(2.8 * len(report["methods"]), 2.9), dpi=80,
                             sharey=True, squeeze=False)  # fmt: skip
    colors = plt.get_cmap("viridis")
    for ax, (method, summary) in zip(axes[0], report["methods"].items()):
        runs = summary["per_seed"]
        for k in sorted({k for r in runs for k in r["graduation_curves"]}, key=int):
            curves = [r["graduation_curves"].get(k) or [0.0] * r["steps"] for r in runs]
            mean = [sum(values) / len(values) for values in zip(*curves)]
            ax.plot(range(1, len(mean) + 1), mean, color=colors(int(k) / 8), label=f"entry bin {k}/8")
        ax.set_title(f"{report['task']}: {method}\n{summary['graduated']}/{summary['admitted']} graduated", fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7, loc="center right")
    axes[0][0].set_ylabel(f"cum. graduations\n(mean of {len(report['seeds'])} seed(s))")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def task_report(task: Task, methods: list[str], seeds: list[int], runs: dict) -> dict:
    report = {"task": task.name, "seeds": seeds, "hard_families": list(task.hard_families),
              "replay_capacity": task.replay_capacity, "methods": {}}  # fmt: skip
    for method in methods:
        report["methods"][method] = summarise([runs[task.name, method, s].result() for s in seeds])
    grpo = report["methods"].get("grpo")
    for summary in report["methods"].values():  # cost as ratios to GRPO measured in the same run
        summary["cost_vs_grpo"] = {k: summary[k] / grpo[k] if grpo else None for k in ("seconds_per_completion",
                                   "seconds_per_step", "seconds_per_processed_token", "peak_rss_mb")}  # fmt: skip
    base, zppo = report["methods"].get("grpo_replay"), report["methods"].get("zppo")
    if base and zppo:
        report["zppo_vs_grpo_replay"] = zppo_vs_grpo_replay(base, zppo)
        for name, summary in report["methods"].items():  # every ZPPO variant against GRPO†
            if name.startswith("zppo") and (verdict := decide(base, summary, task.zone_check)) is not None:
                report.setdefault("decision", {})[name] = verdict
        # kept under their old names for readers of earlier reports
        for name in ("graduation", "bin0_graduation"):
            report[f"zppo_vs_grpo_replay_{name}_ratio"] = report["zppo_vs_grpo_replay"][f"{name}_ratio"]
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, fewer steps")
    parser.add_argument("--smoke", action="store_true", help="a few steps only (CI)")
    parser.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2; --quick and --smoke: 0)")
    parser.add_argument("--tasks", default="tags,carry", help=f"comma-separated, from {list(TASKS)}")
    parser.add_argument("--no-core", action="store_true", help=f"run only --methods, not also {list(CORE_METHODS)}")
    parser.add_argument("--out", required=True)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one CPU thread each")
    parser.add_argument("--methods", default="", help=f"extra methods after {list(CORE_METHODS)}, comma-separated, "
                        f"from {[m for m in METHODS if m not in CORE_METHODS]}, or 'all'")  # fmt: skip
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)  # internal: task method seed profile [lr_scale]
    parser.add_argument("--pretrain", nargs=3, help=argparse.SUPPRESS)  # internal: task seed profile
    args = parser.parse_args()
    if args.pretrain:
        import torch

        from zppo_trl.tiny import build_char_tokenizer

        # one thread, as the runs; BENCH_PRETRAIN_THREADS lets a many-core machine pretrain the seeds faster
        torch.set_num_threads(int(os.environ.get("BENCH_PRETRAIN_THREADS", "1")))
        task, seed, profile = TASKS[args.pretrain[0]], int(args.pretrain[1]), args.pretrain[2]
        start = time.perf_counter()
        model, loss = pretrain(task, build_char_tokenizer(), task.profiles[profile][0], seed)
        seconds = time.perf_counter() - start
        folder = os.path.join(args.out, task.name, f"student-seed{seed}")
        model.save_pretrained(folder)
        with open(os.path.join(folder, "zone.json"), "w") as f:  # before pretrain.json, which marks the student done
            heldout = task.make_datasets(seed, *task.profiles[profile][3:])[1]
            json.dump(measure_student(task, model, build_char_tokenizer(), heldout, seed, task_sampler(task)), f)
        with open(os.path.join(folder, "pretrain.json"), "w") as f:
            json.dump({"loss": loss, "steps": task.profiles[profile][0], "seed": seed, "seconds": seconds}, f)
        return
    if args.one:
        name, method, seed, profile, *scale = args.one
        out = os.path.join(args.out, name)
        print(json.dumps(run_method(TASKS[name], method, int(seed), profile, out, float(scale[0]) if scale else 1.0)))
        return
    profile = "smoke" if args.smoke else "quick" if args.quick else "default"
    default_seeds = "0" if (args.quick or args.smoke) else "0,1,2"
    seeds = [int(s) for s in (args.seeds or default_seeds).split(",")]
    tasks = [t for t in args.tasks.split(",") if t]
    if not tasks or any(t not in TASKS for t in tasks):
        parser.error(f"--tasks: got {args.tasks!r}; choose from {list(TASKS)}")
    extra = [m for m in METHODS if m not in CORE_METHODS] if args.methods == "all" else [m for m in args.methods.split(",") if m]
    unknown = [m for m in extra if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    methods = extra if args.no_core else [*CORE_METHODS, *[m for m in extra if m not in CORE_METHODS]]
    if "grpo_replay_lr_matched" in methods and "zppo" not in methods:
        parser.error("--methods: grpo_replay_lr_matched needs zppo (its learning rate uses ZPPO's plain-token share)")
    me = [sys.executable, __file__, "--out", args.out]
    runs = {}
    with ThreadPoolExecutor(args.jobs) as pool:  # each run is its own 1-thread process: peak RSS is per run

        def run(name, method, seed):
            scale = []
            if method == "grpo_replay_lr_matched":  # needs the same seed's ZPPO run (queued before it)
                scale = [str(runs[name, "zppo", seed].result()["plain_token_share"])]
            saved = os.path.join(args.out, name, f"run-{method}-seed{seed}.json")
            if os.path.exists(saved):
                with open(saved) as f:
                    return json.load(f)
            done = subprocess.run([*me, "--one", name, method, str(seed), profile, *scale], capture_output=True,
                                  text=True)  # fmt: skip
            if done.returncode:
                raise RuntimeError(f"{name} {method} seed {seed} failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            with open(saved, "w") as f:  # each run as soon as it ends: a benchmark cut short keeps what finished
                json.dump(result, f)
            return result

        def student_then_runs(name, seed):
            # the runs are queued only once their student exists, so no slot ever waits for a student while other
            # runs are ready; a student already in --out (an interrupted benchmark, or one made elsewhere) is reused
            if not os.path.exists(os.path.join(args.out, name, f"student-seed{seed}", "pretrain.json")):
                subprocess.run([*me, "--pretrain", name, str(seed), profile], check=True)
            for m in sorted(methods, key=lambda m: m == "grpo_replay_lr_matched"):  # the matched run after ZPPO
                runs[name, m, seed] = pool.submit(run, name, m, seed)

        # every student first (seed by seed, task by task), then each student's runs in the order of --methods
        for job in [pool.submit(student_then_runs, name, s) for s in seeds for name in tasks]:
            job.result()  # its runs are queued when it returns, before the pool is shut down
    report = {"profile": profile, "seeds": seeds, "tasks": {}}
    for name in tasks:
        report["tasks"][name] = task_report(TASKS[name], methods, seeds, runs)
        plot(report["tasks"][name], os.path.join(args.out, f"graduation-{name}.png"))
        for method, s in report["tasks"][name]["methods"].items():
            print(f"{name:<6}{method:<12} graduated {s['graduated']}/{s['admitted']} hard held-out "
                  f"{s['heldout_hard_accuracy_before']:.3f} -> {s['heldout_hard_accuracy_after']:.3f} "
                  f"hard BCQ {s['heldout_hard_bcq_accuracy_before']:.3f} -> {s['heldout_hard_bcq_accuracy_after']:.3f} "
                  f"s/completion {s['seconds_per_completion']:.4f}", flush=True)  # fmt: skip
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    tables = "".join(f"## {name}\n\n{markdown_table(r)}\n" for name, r in report["tasks"].items())
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(tables)
    print(tables)
    print(f"wrote {args.out}/report.json, {args.out}/table.md and {args.out}/graduation-<task>.png per task")


if __name__ == "__main__":
    main()
