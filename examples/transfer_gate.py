"""The transfer gate: does on-policy GRPO learning on BCQ hint prompts move the student's *plain* answer?

    OMP_NUM_THREADS=1 python examples/transfer_gate.py --out runs/gate-smollm2            # the full run (5 seeds)
    OMP_NUM_THREADS=1 python examples/transfer_gate.py --seeds 0 --out runs/gate-pilot    # one seed, both arms
    python examples/transfer_gate.py --smoke --out runs/gate-smoke                        # CI: tiny model, < 1 min

ZPPO trains the student on fresh rollouts of hint prompts (BCQ: the question, the teacher's worked solution and one
of the student's own wrong answers, unlabelled) and counts a question as learned only when the student answers it
*without* the hint. That only pays if what is learned in the hinted context carries over to the plain one. If it
does not, ZPPO cannot beat GRPO with a replay buffer (GRPO†) on that student, whatever else it does. This script
measures that carry-over directly, with TRL's own `trl.GRPOTrainer` (not `ZPPOTrainer`: the gate needs no buffer and
stays independent of the trainer's code).

From one starting student, for each seed, two arms of `--steps` K rollout steps each, with the same recipe:
- **bcq**: a dataset of BCQ prompts of the hard *training* questions only. Each prompt is built once by
  `zppo_trl.prompts.build_hint_prompt("bcq", ...)` from the teacher's worked `solution` and one wrong rollout the
  starting student wrote on the plain question (sampled once, at the start of the run; a question with no wrong,
  non-blank rollout gets no prompt; which wrong rollout and the candidates' order depend on the seed). Reward: the
  student's correctness reward against the question's original gold answer.
- **plain** (control): plain prompts of the same hard questions plus easy ones (`easy_families`), so that it has a
  gradient: hard questions alone are almost never answered right plain.

The update recipe is the paper's (Tab. 8): 4 optimizer updates per rollout step (`steps_per_generation = 4 *
gradient_accumulation_steps`: TRL keeps the sampling policy's log-probs and the (0.20, 0.28) clip acts), a constant
learning rate, weight decay 0.1, gradient clip 1.0, no KL (`beta=0`), token-level loss (`loss_type="dapo"`), the
paper's sampler (temperature 1, top-p 1, top-k off, no min-p) for training rollouts and, through
`evaluation.training_sampler`, for evaluation.

Measured on hard *held-out* questions (other questions of the hard families, never a training question), before
(once per run: both arms start from the same weights) and after each arm:
- the **plain gold log-prob**: the mean per-token log-probability of the teacher's worked solution under the plain
  prompt (chat template and answer-format instruction exactly as the plain training prompt), teacher-forced. It is
  deterministic and moves before any sampled answer turns right, so it sees a transfer that accuracy at 1-5% cannot.
  It also measures wording: RL sharpens the student's own way of writing, and in the pilot the control arm's value
  fell while its accuracy rose;
- the **answer-token log-prob** (secondary): the same pass, averaged only over the tokens where the worked solution's
  last step writes the gold answer, given the teacher's steps before it: the number with the wording held fixed;
- the **plain accuracy**: `--eval_samples` completions per question with the training sampler (the same evaluation
  seed before and after, so that sampling noise is shared by the paired change).
Per arm: the mean change (after - before) over seeds with its 95% t-interval, per seed and per question; the
difference bcq - plain paired by seed with its interval; the clip fractions TRL logged (`clip_ratio/*`); the
training reward per rollout step; the zone (plain and BCQ accuracy of the training questions, measured again at the
start of the run).

Students (`--student`; a `Student` record says how to load the model and tokenizer, the questions and their
families, the teacher solution, the reward, the prompt form, the lengths and the sizes; add one to `STUDENTS`):
- `smollm2` (default): the embedded SmolLM2-135M-Instruct (`zppo_trl.models.embedded_model_path`, offline) with
  LoRA, on `zppo_trl.demo_tasks` families in its zone: hard = add_2d, mul_2d_1d, add_sub (plain 1-5%, with BCQ
  14-23% in docs/measurements.md), easy (control arm only) = add_1d, mul_1d; the reward `final_answer_reward`.
  - LoRA r=16, alpha=32 on every linear layer (attention and MLP), no dropout. RL moves few bits per episode, so a
    small rank holds it (Schulman et al., "LoRA Without Regret", 2025: rank 1 matches full fine-tuning in RL), but
    attention-only LoRA learns markedly worse than LoRA that includes the MLP; dropout would make the old and the
    new log-probs of the same weights differ, so the ratio would not start at 1.
  - Learning rate 2e-4 (constant) instead of the paper's 1e-6 for full fine-tuning: a LoRA update starts at zero in
    a rank-r subspace and needs about 10x the full fine-tuning rate for the same change (same source), and this run
    makes 48 updates (12 rollout steps of 4 prompts x 4 completions) where the paper makes 800 on 384 prompts per
    rollout step. The rest of the factor was set with the pilot below, by the control arm and by time, never by the
    bcq arm: at 5e-4 the control arm's held-out accuracy barely moved (+1.8 points) while its gold log-prob fell by
    0.40 (its wording collapsed away from the teacher's); at 2e-4 its accuracy rose by 9.6 points and its gold
    log-prob changed by -0.11 with 41 of 48 questions moving the same way, both well outside their noise.
  - K = 12 rollout steps, 4 prompts x 4 completions of at most 48 tokens: what 5 seeds x 2 arms fit in about 3.5 h
    of one CPU thread (a BCQ prompt is ~4x as long as a plain one, so a bcq step costs ~2x a plain step). Held out:
    16 questions per hard family, 8 samples each (accuracy s.e. ~1.5 points at the starting 4%).
- `tiny` (`--smoke`): a random character-level Llama built in code (`zppo_trl.tiny`), 2 steps, 2 seeds. It fills
  every field of the report and shows nothing about transfer.

Writes `OUT/gate.json` (`student`, `config`, `recipe`, `zone`, `held_out_before`, `arms.bcq`, `arms.plain`,
`difference`, `seconds`) and prints a table. The start (zone, starting rollouts, "before" numbers) and each finished
(seed, arm) are cached in OUT (`start.json`, `seed<S>-<arm>.json`), so an interrupted run resumes where it stopped;
a folder holding another configuration's results is refused.

Runtime (SmolLM2, one thread of a 2-core CPU, other jobs on the other core): PILOT_RUNTIME.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import PrinterCallback, TrainerCallback  # noqa: E402

from zppo_trl.evaluation import plain_accuracy, sample_completions, training_sampler  # noqa: E402
from zppo_trl.prompts import HintNotBuilt, build_hint_prompt  # noqa: E402
from zppo_trl.rewards import answer_extractor, final_answer_reward  # noqa: E402
from zppo_trl.text import append_to_prompt, completion_text  # noqa: E402
from zppo_trl.validation import PAPER_UPDATE_RECIPE, PAPER_UPDATES_PER_ROLLOUT, updates_per_rollout  # noqa: E402

ARMS = ("bcq", "plain")
EPSILON, EPSILON_HIGH = 0.2, 0.28  # the paper's asymmetric clip range
START_SEED = 0  # the starting rollouts and the zone are sampled once per run, with this seed
EVAL_SEED = 1234  # every held-out accuracy samples with this seed: before and after share their sampling noise


# --------------------------------------------------------------------------------------------------------------------
# students


@dataclass
class Student:
    """One starting student and its task: everything the gate needs to know about it.

    Questions are rows with `prompt` (chat messages or a string, without the answer-format instruction), `answer`
    (gold), `solution` (the teacher's worked solution: the BCQ's correct candidate and the gold completion whose
    log-prob is measured), `family` and a unique `prompt_id`.
    """

    name: str
    load: Callable[[], tuple]  # () -> (model, tokenizer): a fresh copy of the starting student
    lora: Callable[[], object] | None  # () -> a peft config, or None to train every weight
    train_questions: list[dict]
    held_out_questions: list[dict]  # hard families only, no question in common with train_questions
    hard_families: tuple[str, ...]
    easy_families: tuple[str, ...]  # the control arm's extra questions
    reward: Callable = final_answer_reward
    instruction: str | None = None  # the answer-format instruction appended to every prompt
    max_completion_length: int = 48
    candidate_max_tokens: int = 64
    hint_prompt_max_tokens: int = 256
    learning_rate: float = 2e-4
    prompts_per_step: int = 4
    num_generations: int = 4
    micro_batch: int = 4  # sequences per forward/backward pass: bounds memory, not the update
    eval_samples: int = 8  # sampled completions per held-out question
    zone_samples: int = 8  # starting rollouts per training question (the wrong candidates, and the zone)
    settings: dict = field(default_factory=dict)  # what the results depend on besides the above (sizes, LoRA)


LLAMA_LINEAR_LAYERS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SMOLLM2_INSTRUCTION = "Put the final answer in \\boxed{}, for example \\boxed{7}."  # the CPU demo's


def demo_questions(family_sizes: dict[str, int], seed: int, exclude: set[str], tag: str) -> list[dict]:
    from zppo_trl.demo_tasks import generate

    rows = []
    for family, count in family_sizes.items():
        for i, task in enumerate(generate(family, count, seed, exclude)):
            rows.append({"prompt": [{"role": "user", "content": task.question}], "answer": str(task.answer),
                         "solution": task.solution, "family": family, "prompt_id": f"{family}-{tag}{i}"})  # fmt: skip
    return rows


def smollm2_student(args) -> Student:
    from zppo_trl.demo_tasks import DEMO_SEED, HELD_OUT_SEED

    hard, easy = ("add_2d", "mul_2d_1d", "add_sub"), ("add_1d", "mul_1d")
    train = demo_questions({f: args.train_per_family for f in hard} | {f: args.easy_per_family for f in easy},
                           DEMO_SEED, set(), "")  # fmt: skip
    seen = {row["prompt"][0]["content"] for row in train}
    held_out = demo_questions({f: args.held_out_per_family for f in hard}, HELD_OUT_SEED, seen, "test-")
    lora_r = args.lora_r or 16

    def load():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from zppo_trl.models import embedded_model_path

        path = embedded_model_path()
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), AutoTokenizer.from_pretrained(path)

    def lora():
        from peft import LoraConfig

        return LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0, task_type="CAUSAL_LM",
                          target_modules=LLAMA_LINEAR_LAYERS)  # fmt: skip

    return Student(
        name="smollm2", load=load, lora=lora, train_questions=train, held_out_questions=held_out,
        hard_families=hard, easy_families=easy, reward=final_answer_reward, instruction=SMOLLM2_INSTRUCTION,
        max_completion_length=48,  # the longest worked solution (mul_2d_1d) is 44 tokens
        candidate_max_tokens=64, hint_prompt_max_tokens=256,  # the zone probe's budgets: both candidates whole
        learning_rate=args.learning_rate or 2e-4, prompts_per_step=args.prompts_per_step or 4,
        num_generations=args.num_generations or 4, micro_batch=4, eval_samples=args.eval_samples or 8,
        zone_samples=8,
        settings={"model": "HuggingFaceTB/SmolLM2-135M-Instruct (embedded, de-quantised Q4_1)",
                  "lora": {"r": lora_r, "alpha": 2 * lora_r, "dropout": 0.0, "targets": "all linear layers"},
                  "train_per_family": args.train_per_family, "easy_per_family": args.easy_per_family,
                  "held_out_per_family": args.held_out_per_family},
    )  # fmt: skip


def gold_character_share(completions, answer, **kwargs) -> list[float]:
    """The smoke's dense reward: the share of a completion's characters that occur in the gold answer. A random
    model is never right, so the correctness reward would give the smoke no gradient and nothing to measure."""
    texts = [completion_text(c) for c in completions]
    return [sum(ch in str(gold) for ch in text) / max(1, len(text)) for text, gold in zip(texts, answer)]


gold_character_share.extract_answer = answer_extractor(final_answer_reward)


def tiny_student(args) -> Student:
    """A random char-level Llama on sums of two numbers: a CI smoke that runs every step of the gate in seconds."""
    from zppo_trl.tiny import addition_dataset, build_char_tokenizer, build_tiny_llama

    def rows(dataset, tag):
        out = []
        for row in dataset:  # three-digit sums are the "hard" family here: a label, the random model knows neither
            family = "three_digit_sum" if int(row["answer"]) >= 100 else "two_digit_sum"
            out.append({**row, "family": family, "prompt_id": f"{tag}{row['prompt_id']}"})
        return out

    train = rows(addition_dataset(16, seed=0), "train-")
    seen = {row["prompt"][0]["content"] for row in train}
    held_out = [r for r in rows(addition_dataset(16, seed=1), "test-") if r["prompt"][0]["content"] not in seen]
    held_out = [r for r in held_out if r["family"] == "three_digit_sum"][:4]

    def load():
        tokenizer = build_char_tokenizer()
        return build_tiny_llama(tokenizer, seed=0), tokenizer

    def lora():
        from peft import LoraConfig

        return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                          target_modules=LLAMA_LINEAR_LAYERS)  # fmt: skip

    return Student(
        name="tiny", load=load, lora=lora, train_questions=train, held_out_questions=held_out,
        hard_families=("three_digit_sum",), easy_families=("two_digit_sum",), reward=gold_character_share,
        instruction="Answer in \\boxed{}.", max_completion_length=8, candidate_max_tokens=48,
        hint_prompt_max_tokens=512, learning_rate=args.learning_rate or 1e-2, prompts_per_step=2,
        num_generations=4, micro_batch=2, eval_samples=2, zone_samples=4,
        settings={"model": "random char-level Llama (zppo_trl.tiny)", "lora": {"r": 4, "alpha": 8}},
    )  # fmt: skip


STUDENTS: dict[str, Callable[[argparse.Namespace], Student]] = {"smollm2": smollm2_student, "tiny": tiny_student}


# --------------------------------------------------------------------------------------------------------------------
# prompts, sampling and measurements


def plain_prompt(student: Student, row: dict):
    return append_to_prompt(row["prompt"], student.instruction)


def templated(tokenizer, prompt) -> str:
    """The text the model sees: chat prompts through the chat template with the generation prompt, as TRL does."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)


def sample_texts(model, tokenizer, prompts: list, num_samples: int, max_new_tokens: int, sampler: dict,
                 batch_size: int = 8) -> list[list[str]]:  # fmt: skip
    """`num_samples` completions of each prompt, decoded, with the given sampler."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [templated(tokenizer, p) for p in prompts[start : start + batch_size]]
            ids = sample_completions(model, tokenizer, texts, num_samples, max_new_tokens=max_new_tokens, **sampler)
            decoded = tokenizer.batch_decode(ids, skip_special_tokens=True)
            out += [decoded[i * num_samples : (i + 1) * num_samples] for i in range(len(texts))]
    finally:
        model.train(was_training)
    return out


def score(student: Student, completions: list[str], gold: str) -> list[float | None]:
    return student.reward(completions=completions, answer=[gold] * len(completions))


def answer_span(solution: str, answer: str) -> tuple[int, int] | None:
    """Where the worked solution's last step computes the gold answer: its first occurrence as a whole number after
    the last "=" (before it, the same digits may be an operand copied from the question), as a character span; None
    when there is none."""
    pattern = re.compile(rf"(?<![\d.]){re.escape(answer)}(?!\d)")
    match = pattern.search(solution, max(0, solution.rfind("=")))
    return match.span() if match else None


@torch.no_grad()
def gold_logprobs(student: Student, model, tokenizer, rows: list[dict]) -> dict[str, dict[str, float | None]]:
    """Per question, teacher-forced under its plain prompt (the chat template and instruction as in training):
    - `solution`: the mean per-token log-probability of its worked solution (the solution's own tokens, no end
      token). It also measures style: a student whose own wording drifts away from the teacher's loses here even
      when it computes as well as before;
    - `answer`: the mean log-probability of the tokens where the solution's last step writes the gold answer
      (`answer_span`), given the teacher's steps before it: what the student knows of the number, with the wording
      held fixed."""
    was_training = model.training
    model.eval()
    out = {}
    try:
        for row in rows:
            prompt = tokenizer(templated(tokenizer, plain_prompt(student, row)), add_special_tokens=False)["input_ids"]
            encoded = tokenizer(row["solution"], add_special_tokens=False, return_offsets_mapping=True)
            target = encoded["input_ids"]
            input_ids = torch.tensor([prompt + target], device=model.device)
            logits = model(input_ids=input_ids).logits[0, len(prompt) - 1 : -1].float()
            picked = logits.log_softmax(-1).gather(1, torch.tensor(target, device=model.device)[:, None])[:, 0]
            span = answer_span(row["solution"], str(row["answer"]))
            answer = [i for i, (a, b) in enumerate(encoded["offset_mapping"]) if span and a < span[1] and b > span[0]]
            out[row["prompt_id"]] = {"solution": picked.mean().item(),
                                     "answer": picked[answer].mean().item() if answer else None}  # fmt: skip
    finally:
        model.train(was_training)
    return out


def measure_held_out(student: Student, model, tokenizer, sampler: dict) -> dict:
    from datasets import Dataset

    rows = student.held_out_questions
    logprob = gold_logprobs(student, model, tokenizer, rows)
    accuracy = plain_accuracy(
        model, tokenizer, Dataset.from_list(rows), num_samples=student.eval_samples,
        max_new_tokens=student.max_completion_length, instruction=student.instruction, sampler=sampler,
        batch_size=8, reward=student.reward, seed=EVAL_SEED,
    )["per_question"]  # fmt: skip
    # one sampled completion of the first question of each family: what the student writes, next to the numbers
    firsts = [next(r for r in rows if r["family"] == family) for family in dict.fromkeys(r["family"] for r in rows)]
    torch.manual_seed(EVAL_SEED)
    examples = sample_texts(model, tokenizer, [plain_prompt(student, r) for r in firsts], 1,
                            student.max_completion_length, sampler)  # fmt: skip
    solution = {pid: v["solution"] for pid, v in logprob.items()}
    answer = {pid: v["answer"] for pid, v in logprob.items()}
    return {"gold_logprob": mean(solution.values()), "gold_answer_logprob": mean(answer.values()),
            "accuracy": mean(accuracy.values()), "gold_logprob_per_question": solution,
            "gold_answer_logprob_per_question": answer, "accuracy_per_question": accuracy,
            "examples": {r["prompt_id"]: texts[0] for r, texts in zip(firsts, examples)}}  # fmt: skip


def wrong_rollouts(completions: list[str], scores: list[float | None]) -> list[str]:
    """The rollouts that are not fully right (for a 0/1 reward: the wrong ones); unscorable ones are left out."""
    return [c for c, s in zip(completions, scores) if s is not None and s < 1.0]


def bcq_prompt(student: Student, tokenizer, row: dict, wrong: list[str], rng: random.Random):
    """The BCQ prompt of one question as ZPPO builds it; raises HintNotBuilt when no wrong rollout is usable."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return build_hint_prompt(
        "bcq", row["prompt"], wrong, rng, correct=row["solution"], instruction=student.instruction,
        max_prompt_tokens=student.hint_prompt_max_tokens, max_candidate_tokens=student.candidate_max_tokens,
        count_tokens=count, extract_answer=answer_extractor(student.reward),
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# the run's start: starting rollouts, zone, "before"


def start_of_run(student: Student, model, tokenizer, sampler: dict) -> dict:
    """Sampled once per run from the starting student: every training question's plain rollouts (the hard ones'
    wrong rollouts become BCQ candidates), the zone (plain vs BCQ accuracy of the training questions, per family)
    and the held-out "before" numbers, which both arms share."""
    start, start_cpu = time.perf_counter(), time.process_time()
    torch.manual_seed(START_SEED)
    rows = student.train_questions
    plain = sample_texts(model, tokenizer, [plain_prompt(student, r) for r in rows], student.zone_samples,
                         student.max_completion_length, sampler)  # fmt: skip
    rollouts, hinted, hinted_rows, not_built = {}, [], [], {}
    for row, completions in zip(rows, plain):
        scores = score(student, completions, row["answer"])
        rollouts[row["prompt_id"]] = {"completions": completions, "scores": scores}
        if row["family"] not in student.hard_families:
            continue
        wrong = wrong_rollouts(completions, scores)
        try:
            hinted.append(bcq_prompt(student, tokenizer, row, wrong, random.Random(f"zone-{row['prompt_id']}")))
            hinted_rows.append(row)
        except HintNotBuilt as err:
            not_built[err.reason] = not_built.get(err.reason, 0) + 1
    hinted_completions = sample_texts(model, tokenizer, hinted, student.zone_samples, student.max_completion_length,
                                      sampler)  # fmt: skip
    zone = {}
    for family in (*student.hard_families, *student.easy_families):
        family_rows = [r for r in rows if r["family"] == family]
        plain_scores = [s for r in family_rows for s in rollouts[r["prompt_id"]]["scores"] if s is not None]
        zone[family] = {"kind": "hard" if family in student.hard_families else "easy",
                        "questions": len(family_rows), "plain_correct": sum(plain_scores),
                        "plain_samples": len(plain_scores), "plain_accuracy": mean(plain_scores)}  # fmt: skip
    for family in student.hard_families:
        bcq_scores = [s for r, c in zip(hinted_rows, hinted_completions) if r["family"] == family
                      for s in score(student, c, r["answer"]) if s is not None]  # fmt: skip
        zone[family] |= {"bcq_questions": sum(r["family"] == family for r in hinted_rows),
                         "bcq_correct": sum(bcq_scores), "bcq_samples": len(bcq_scores),
                         "bcq_accuracy": mean(bcq_scores)}  # fmt: skip
    hard = [zone[f] for f in student.hard_families]
    zone["hard"] = {
        "plain_accuracy": ratio(sum(z["plain_correct"] for z in hard), sum(z["plain_samples"] for z in hard)),
        "bcq_accuracy": ratio(sum(z["bcq_correct"] for z in hard), sum(z["bcq_samples"] for z in hard)),
        "hints_not_built": not_built,
        "samples_per_question": student.zone_samples,
    }
    before = measure_held_out(student, model, tokenizer, sampler)
    return {"rollouts": rollouts, "zone": zone, "before": before, "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - start_cpu}  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# one arm of one seed


def arm_dataset(student: Student, tokenizer, start: dict, arm: str, seed: int) -> tuple[list[dict], dict]:
    """The arm's training prompts: BCQ prompts of the hard questions with a usable wrong starting rollout, or plain
    prompts of the same questions plus the easy ones."""
    hard_ids, bcq_rows, not_built = [], [], {}
    for row in student.train_questions:
        if row["family"] not in student.hard_families:
            continue
        rollouts = start["rollouts"][row["prompt_id"]]
        wrong = wrong_rollouts(rollouts["completions"], rollouts["scores"])
        try:
            prompt = bcq_prompt(student, tokenizer, row, wrong, random.Random(f"{seed}-{row['prompt_id']}"))
        except HintNotBuilt as err:
            not_built[err.reason] = not_built.get(err.reason, 0) + 1
            continue
        hard_ids.append(row["prompt_id"])
        bcq_rows.append({"prompt": prompt, "answer": row["answer"], "prompt_id": row["prompt_id"],
                         "family": row["family"]})  # fmt: skip
    if arm == "bcq":
        rows = bcq_rows
    else:
        chosen = set(hard_ids)
        rows = [{"prompt": plain_prompt(student, r), "answer": r["answer"], "prompt_id": r["prompt_id"],
                 "family": r["family"]} for r in student.train_questions
                if r["prompt_id"] in chosen or r["family"] in student.easy_families]  # fmt: skip
    families = {}
    for row in rows:
        families[row["family"]] = families.get(row["family"], 0) + 1
    return rows, {"prompts": len(rows), "by_family": families, "hints_not_built": not_built}


def grpo_config(student: Student, steps: int, seed: int, output_dir: str):
    """The paper's update recipe on TRL's GRPOConfig: 4 optimizer updates per rollout step of
    `prompts_per_step` x `num_generations` completions, each update over a quarter of them."""
    from trl import GRPOConfig

    completions = student.prompts_per_step * student.num_generations
    per_update = completions // PAPER_UPDATES_PER_ROLLOUT
    if per_update * PAPER_UPDATES_PER_ROLLOUT != completions or per_update % student.micro_batch:
        raise ValueError(f"{completions} completions per rollout step do not split into {PAPER_UPDATES_PER_ROLLOUT} "
                         f"updates of whole micro-batches of {student.micro_batch}")  # fmt: skip
    accumulation = per_update // student.micro_batch
    return GRPOConfig(
        output_dir=output_dir, per_device_train_batch_size=student.micro_batch,
        gradient_accumulation_steps=accumulation, steps_per_generation=PAPER_UPDATES_PER_ROLLOUT * accumulation,
        num_generations=student.num_generations, max_completion_length=student.max_completion_length,
        max_steps=PAPER_UPDATES_PER_ROLLOUT * steps, learning_rate=student.learning_rate,
        lr_scheduler_type=PAPER_UPDATE_RECIPE["lr_scheduler_type"], weight_decay=PAPER_UPDATE_RECIPE["weight_decay"],
        max_grad_norm=PAPER_UPDATE_RECIPE["max_grad_norm"], warmup_steps=0, beta=0.0, loss_type="dapo",
        epsilon=EPSILON, epsilon_high=EPSILON_HIGH, temperature=1.0, top_p=1.0, top_k=0, min_p=None,
        logging_steps=1, report_to="none", save_strategy="no", seed=seed, data_seed=seed, disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(), bf16=False,
    )  # fmt: skip


class RolloutStepPrinter(TrainerCallback):
    """Prints the training reward of each rollout step (TRL logs it with the first update that trains on it) and,
    every `trace_every` rollout steps, measures the held-out plain gold log-prob (cheap: one teacher-forced pass per
    question), so that one run shows how the change grows with K. The trace's time is kept out of the step time."""

    def __init__(self, label: str, steps: int, trace=None, trace_every: int = 0):
        self.label, self.steps, self.step, self.began = label, steps, 0, time.perf_counter()
        self.trace, self.trace_every, self.points = trace, trace_every, []
        self.trace_seconds = self.trace_cpu_seconds = 0.0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "reward" in logs:
            self.step += 1
            print(f"[gate] {self.label}: rollout step {self.step}/{self.steps}, reward {logs['reward']:.3f}, "
                  f"{time.perf_counter() - self.began - self.trace_seconds:.0f} s", flush=True)  # fmt: skip

    def on_step_end(self, args, state, control, **kwargs):
        updates = PAPER_UPDATES_PER_ROLLOUT * self.trace_every
        if self.trace is not None and updates and state.global_step % updates == 0:
            began, began_cpu = time.perf_counter(), time.process_time()
            solution, answer = self.trace()
            self.points.append([state.global_step // PAPER_UPDATES_PER_ROLLOUT, solution, answer])
            self.trace_seconds += time.perf_counter() - began
            self.trace_cpu_seconds += time.process_time() - began_cpu
            print(f"[gate] {self.label}: after {self.points[-1][0]} rollout steps, held-out gold log-prob "
                  f"{solution:.4f} (answer tokens {answer:.4f})", flush=True)  # fmt: skip


def run_arm(
    student: Student, start: dict, arm: str, seed: int, steps: int, out_dir: str, trace_every: int = 0,
    save_adapter: bool = False,
) -> dict:  # fmt: skip
    from datasets import Dataset
    from trl import GRPOTrainer

    model, tokenizer = student.load()
    rows, data = arm_dataset(student, tokenizer, start, arm, seed)
    args = grpo_config(student, steps, seed, os.path.join(out_dir, "trainer"))
    torch.manual_seed(seed)  # the LoRA initialisation
    peft_config = student.lora() if student.lora else None
    trainer = GRPOTrainer(model=model, reward_funcs=student.reward, args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer, peft_config=peft_config)  # fmt: skip
    trainer.remove_callback(PrinterCallback)  # one line per rollout step instead of one dict per update

    def trace():
        values = gold_logprobs(student, trainer.model, tokenizer, student.held_out_questions).values()
        return mean(v["solution"] for v in values), mean(v["answer"] for v in values)

    printer = RolloutStepPrinter(f"seed {seed}, arm {arm}", steps, trace, trace_every)
    trainer.add_callback(printer)
    began, began_cpu = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
    seconds, cpu_seconds = seconds - printer.trace_seconds, cpu_seconds - printer.trace_cpu_seconds
    if save_adapter:  # for looking at a trained student later
        trainer.model.save_pretrained(os.path.join(out_dir, f"adapter-seed{seed}-{arm}"))
    after = measure_held_out(student, trainer.model, tokenizer, training_sampler(args))
    eval_seconds = time.perf_counter() - began - seconds
    history = trainer.state.log_history
    clip = {name: [h[f"clip_ratio/{name}_mean"] for h in history if f"clip_ratio/{name}_mean" in h]
            for name in ("region", "low", "high")}  # fmt: skip
    rewards = [h["reward"] for h in history if "reward" in h]
    # every optimizer step logs; the reward of a rollout step is logged with the first update that trains on it
    per_rollout_reward = rewards[::PAPER_UPDATES_PER_ROLLOUT] if len(rewards) == args.max_steps else rewards
    return {
        "arm": arm, "seed": seed, "dataset": data, "after": after,
        "gold_logprob_change": after["gold_logprob"] - start["before"]["gold_logprob"],
        "gold_answer_logprob_change": after["gold_answer_logprob"] - start["before"]["gold_answer_logprob"],
        "accuracy_change": after["accuracy"] - start["before"]["accuracy"],
        "clip_fractions": {"region_mean": mean(clip["region"]), "low_mean": mean(clip["low"]),
                           "high_mean": mean(clip["high"]), "region_max": max(clip["region"], default=None),
                           "per_update_region": clip["region"]},
        "train_reward_per_rollout_step": per_rollout_reward, "optimizer_steps": trainer.state.global_step,
        "gold_logprob_trace": printer.points,  # [rollout step, gold log-prob, answer-token log-prob]
        "train_seconds": seconds, "seconds_per_rollout_step": seconds / steps, "eval_seconds": eval_seconds,
        # CPU time of this process: what the wall time would be on an otherwise idle core
        "train_cpu_seconds": cpu_seconds, "cpu_seconds_per_rollout_step": cpu_seconds / steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# statistics and the report

# two-sided 95% Student t quantiles by degrees of freedom (scipy is not a dependency of this project)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}  # fmt: skip


def t_quantile(df: int) -> float:
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, df))
    except ImportError:  # between listed dfs the smaller df: a slightly wider, never a narrower interval
        return T975[max(k for k in T975 if k <= df)]


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def interval(values: list[float]) -> dict:
    """Mean of per-seed values and its 95% t-interval (null with fewer than 2 seeds)."""
    n, centre = len(values), mean(values)
    if n < 2:
        return {"mean": centre, "ci95": None, "sd": None, "n": n}
    sd = math.sqrt(sum((v - centre) ** 2 for v in values) / (n - 1))
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return {"mean": centre, "ci95": [centre - half, centre + half], "sd": sd, "n": n}


def summarise_arm(start: dict, runs: list[dict]) -> dict:
    before = start["before"]

    def per_question(key):  # the mean over seeds of each held-out question's change
        return {pid: mean(r["after"][key][pid] - value for r in runs if value is not None)
                for pid, value in before[key].items()}  # fmt: skip

    def share_up(changes):
        return ratio(sum(v > 0 for v in changes.values() if v is not None), len(changes))

    solution, answer = per_question("gold_logprob_per_question"), per_question("gold_answer_logprob_per_question")
    return {
        "num_questions": len(before["gold_logprob_per_question"]),
        "num_training_prompts": runs[0]["dataset"]["prompts"],
        "training_prompts_by_family": runs[0]["dataset"]["by_family"],
        "held_out_gold_logprob_before": before["gold_logprob"],
        "held_out_gold_logprob_after": mean(r["after"]["gold_logprob"] for r in runs),
        "held_out_accuracy_before": before["accuracy"],
        "held_out_accuracy_after": mean(r["after"]["accuracy"] for r in runs),
        "held_out_gold_answer_logprob_before": before["gold_answer_logprob"],
        "held_out_gold_answer_logprob_after": mean(r["after"]["gold_answer_logprob"] for r in runs),
        "gold_logprob_change": interval([r["gold_logprob_change"] for r in runs]),
        "gold_answer_logprob_change": interval([r["gold_answer_logprob_change"] for r in runs]),
        "accuracy_change": interval([r["accuracy_change"] for r in runs]),
        "gold_logprob_change_per_question": solution,
        "gold_answer_logprob_change_per_question": answer,
        "questions_with_gold_logprob_up": share_up(solution),
        "questions_with_gold_answer_logprob_up": share_up(answer),
        "clip_fractions": {k: mean(r["clip_fractions"][k] for r in runs)
                           for k in ("region_mean", "low_mean", "high_mean")}
                          | {"region_max": max(r["clip_fractions"]["region_max"] or 0.0 for r in runs)},
        "train_reward_first_rollout_step": mean(r["train_reward_per_rollout_step"][0] for r in runs
                                                if r["train_reward_per_rollout_step"]),
        "train_reward_last_rollout_step": mean(r["train_reward_per_rollout_step"][-1] for r in runs
                                               if r["train_reward_per_rollout_step"]),
        "seconds_per_rollout_step": mean(r["seconds_per_rollout_step"] for r in runs),
        "cpu_seconds_per_rollout_step": mean(r["cpu_seconds_per_rollout_step"] for r in runs),
        "eval_seconds": mean(r["eval_seconds"] for r in runs),
        "per_seed": {str(r["seed"]): {k: v for k, v in r.items() if k not in ("arm", "seed")} for r in runs},
    }  # fmt: skip


def difference(runs: dict[str, list[dict]]) -> dict:
    """bcq change - plain change, paired by seed."""
    plain = {r["seed"]: r for r in runs["plain"]}
    paired = [(r, plain[r["seed"]]) for r in runs["bcq"] if r["seed"] in plain]
    out = {"seeds": [b["seed"] for b, _ in paired]}
    for key in ("gold_logprob_change", "gold_answer_logprob_change", "accuracy_change"):
        values = [b[key] - p[key] for b, p in paired]
        out[key.removesuffix("_change")] = interval(values) | {"per_seed": values}
    return out


def fmt_change(summary: dict, digits: int = 4) -> str:
    ci = summary["ci95"]
    text = f"{summary['mean']:+.{digits}f}"
    return f"{text} [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]" if ci else text


def table(report: dict) -> str:
    lines = ["| arm | gold log-prob before -> after | change [95% CI] | answer-token log-prob change [95% CI] "
             "| accuracy before -> after | change [95% CI] | clip region/low/high | s per rollout step |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for arm in ARMS:
        a = report["arms"][arm]
        clip = a["clip_fractions"]
        lines.append(
            f"| {arm} | {a['held_out_gold_logprob_before']:.4f} -> {a['held_out_gold_logprob_after']:.4f} "
            f"| {fmt_change(a['gold_logprob_change'])} | {fmt_change(a['gold_answer_logprob_change'])} "
            f"| {a['held_out_accuracy_before']:.3f} -> {a['held_out_accuracy_after']:.3f} "
            f"| {fmt_change(a['accuracy_change'], 3)} "
            f"| {clip['region_mean']:.4f}/{clip['low_mean']:.4f}/{clip['high_mean']:.4f} "
            f"| {a['seconds_per_rollout_step']:.1f} |"
        )
    d = report["difference"]
    lines.append(f"| bcq - plain (paired by seed) | | {fmt_change(d['gold_logprob'])} "
                 f"| {fmt_change(d['gold_answer_logprob'])} | | {fmt_change(d['accuracy'], 3)} | | |")  # fmt: skip
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------------
# the run


def write_json(path: str, value) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
    os.replace(tmp, path)  # atomic: an interrupted write never leaves a half file for the resume to trust


def cached(path: str, config: dict):
    """The cached result at `path`, or None; a result of another configuration stops the run."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        value = json.load(f)
    if value.get("config") != config:
        raise SystemExit(f"{path} holds results of another configuration ({value.get('config')}); this run is "
                         f"{config}. Use another --out folder.")  # fmt: skip
    return value


START_KEYS = ("student", "model", "max_completion_length", "eval_samples", "zone_samples", "candidate_max_tokens",
              "hint_prompt_max_tokens", "instruction", "hard_families", "easy_families", "train_per_family",
              "easy_per_family", "held_out_per_family")  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--student", default="smollm2", choices=sorted(STUDENTS))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--steps", type=int, default=None, help="rollout steps per arm (K); 4 updates each")
    parser.add_argument("--out", default="runs/transfer-gate")
    parser.add_argument("--smoke", action="store_true", help="CI: the tiny random student, 2 steps, 2 seeds")
    parser.add_argument("--learning_rate", type=float, default=None)
    parser.add_argument("--lora_r", type=int, default=None)
    parser.add_argument("--prompts_per_step", type=int, default=None)
    parser.add_argument("--num_generations", type=int, default=None)
    parser.add_argument("--eval_samples", type=int, default=None)
    parser.add_argument("--train_per_family", type=int, default=16, help="hard training questions per family")
    parser.add_argument("--easy_per_family", type=int, default=12, help="easy questions per family (control arm)")
    parser.add_argument("--held_out_per_family", type=int, default=16)
    parser.add_argument("--arms", default=",".join(ARMS), help="a pilot may run one arm; the report needs both")
    parser.add_argument(
        "--trace_every",
        type=int,
        default=0,
        help="measure the held-out gold log-prob every N rollout steps too (0: only at the end)",
    )
    parser.add_argument("--save_adapters", action="store_true", help="keep each trained student in OUT")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if not set(args.arms.split(",")) <= set(ARMS):
        parser.error(f"--arms takes a comma-separated subset of {ARMS}")
    if args.smoke:
        args.student, args.seeds, args.steps = "tiny", "0,1", args.steps or 2
    args.steps = args.steps or 12
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    student = STUDENTS[args.student](args)
    seeds = [int(s) for s in args.seeds.split(",")]
    os.makedirs(args.out, exist_ok=True)
    config = {"student": student.name, "steps": args.steps, "learning_rate": student.learning_rate,
              "prompts_per_step": student.prompts_per_step, "num_generations": student.num_generations,
              "max_completion_length": student.max_completion_length, "eval_samples": student.eval_samples,
              "zone_samples": student.zone_samples, "candidate_max_tokens": student.candidate_max_tokens,
              "hint_prompt_max_tokens": student.hint_prompt_max_tokens, "instruction": student.instruction,
              "hard_families": list(student.hard_families), "easy_families": list(student.easy_families),
              **student.settings}  # fmt: skip
    recipe_args = grpo_config(student, args.steps, seeds[0], os.path.join(args.out, "trainer"))
    sampler = training_sampler(recipe_args)
    start_path = os.path.join(args.out, "start.json")
    # the start depends on the student, its questions and the sampling, not on the training settings: a pilot with
    # another learning rate or K reuses it
    start_config = {k: v for k, v in config.items() if k in START_KEYS}
    start = cached(start_path, start_config)
    if start is None:
        print(f"[gate] start of run: {student.name}'s rollouts on {len(student.train_questions)} training questions, "
              f"zone, held-out 'before' on {len(student.held_out_questions)} questions", flush=True)  # fmt: skip
        model, tokenizer = student.load()
        start = start_of_run(student, model, tokenizer, sampler) | {"config": start_config}
        write_json(start_path, start)
        del model
    arms = args.arms.split(",")
    runs: dict[str, list[dict]] = {arm: [] for arm in arms}
    for seed in seeds:
        for arm in arms:
            path = os.path.join(args.out, f"seed{seed}-{arm}.json")
            result = cached(path, config)
            if result is None:
                print(f"[gate] seed {seed}, arm {arm}: {args.steps} rollout steps", flush=True)
                result = run_arm(student, start, arm, seed, args.steps, args.out, args.trace_every, args.save_adapters)
                result |= {"config": config}
                write_json(path, result)
                print(f"[gate] seed {seed}, arm {arm}: gold log-prob change {result['gold_logprob_change']:+.4f}, "
                      f"accuracy change {result['accuracy_change']:+.3f}, "
                      f"{result['seconds_per_rollout_step']:.1f} s per rollout step", flush=True)  # fmt: skip
            runs[arm].append({k: v for k, v in result.items() if k != "config"})
    if set(arms) != set(ARMS):
        print(f"[gate] only {arms} run: the results are in {args.out}/seed*-*.json; no gate.json without both arms")
        return {"runs": runs}
    before = start["before"]
    report = {
        "student": student.name,
        "config": config,
        "seeds": seeds,
        "recipe": {
            "updates_per_rollout": updates_per_rollout(recipe_args),
            "steps_per_generation": recipe_args.steps_per_generation,
            "gradient_accumulation_steps": recipe_args.gradient_accumulation_steps,
            "lr_scheduler_type": getattr(recipe_args.lr_scheduler_type, "value", recipe_args.lr_scheduler_type),
            "weight_decay": recipe_args.weight_decay, "max_grad_norm": recipe_args.max_grad_norm,
            "learning_rate": recipe_args.learning_rate, "epsilon": recipe_args.epsilon,
            "epsilon_high": recipe_args.epsilon_high, "beta": recipe_args.beta, "loss_type": recipe_args.loss_type,
            "rollout_steps": args.steps, "optimizer_steps": recipe_args.max_steps,
            "prompts_per_rollout_step": student.prompts_per_step, "num_generations": student.num_generations,
            "sampler": sampler,
        },
        "zone": start["zone"],
        "held_out_before": {k: v for k, v in before.items() if k != "examples"}
        | {"questions": len(student.held_out_questions), "samples_per_question": student.eval_samples},
        "arms": {arm: summarise_arm(start, runs[arm]) for arm in ARMS},
        "difference": difference(runs),
        "seconds": {"start_of_run": start["seconds"], "start_of_run_cpu": start.get("cpu_seconds"),
                    "arms_train": {arm: sum(r["train_seconds"] for r in runs[arm]) for arm in ARMS},
                    "arms_train_cpu": {arm: sum(r["train_cpu_seconds"] for r in runs[arm]) for arm in ARMS},
                    "arms_eval": {arm: sum(r["eval_seconds"] for r in runs[arm]) for arm in ARMS},
                    "this_invocation": time.perf_counter() - began},
    }  # fmt: skip
    write_json(os.path.join(args.out, "gate.json"), report)
    zone = start["zone"]["hard"]
    print(f"[gate] zone (hard training questions): plain {zone['plain_accuracy']:.3f}, BCQ {zone['bcq_accuracy']:.3f}")
    print(table(report))
    print(f"[gate] wrote {os.path.join(args.out, 'gate.json')}")
    return report


if __name__ == "__main__":
    main()
