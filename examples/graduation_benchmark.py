"""GRPO vs GRPO† vs hints-only vs ZPPO on a CPU task with a zone of proximal development: same student, same steps.

    python examples/graduation_benchmark.py --quick --out runs/bench          # 1 seed, fewer steps
    python examples/graduation_benchmark.py --seeds 0,1,2 --out runs/bench    # the default run
    python examples/graduation_benchmark.py --smoke --out runs/bench-smoke    # CI: a few steps, fills every field

Writes DIR/report.json and DIR/graduation.png (cumulative graduations by entry bin over steps, per method).

Task and student (why a zone of proximal development exists, and what is and is not shown):
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

Report fields per method (averaged over seeds, per-seed values under `per_seed`): graduation_rate,
admissions_by_bin, graduations_by_bin, heldout(_hard)_accuracy_before/after, heldout_hard_bcq_accuracy_before/after,
heldout_hard_gold_logprob_before/after, bcq/ncq_accuracy, seconds_per_completion, seconds_per_step, peak_rss_mb,
steps, cost_vs_grpo (ratios to GRPO in the same run). ZPPO/GRPO† graduation ratios (overall and entry bin 0) are
reported only where each side has >= 10 admissions and GRPO† graduated at least one, else null.
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

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
    "hints_only": dict(replay_ratio=0.0, hint_ratio=0.5),
    "zppo": dict(replay_ratio=0.5, hint_ratio=0.5),
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
    from zppo_trl.prompts import append_to_prompt, build_bcq_hint

    rng = random.Random(seed)

    def hinted(row):
        return {"prompt": append_to_prompt(row["prompt"], build_bcq_hint(row["answer"], answer(row["key"], "A"), rng))}

    return dataset.filter(lambda r: r["family"] == "hard").map(hinted)


def exact_answer_reward(completions, answer, **kwargs):
    return [float(c.strip() == a) for c, a in zip(completions, answer)]


def pretraining_example(rng: random.Random) -> tuple[str, str, str]:
    """(prompt, target, kind): plain easy / practice / hard-with-the-misconception, or a BCQ selection example."""
    from zppo_trl.prompts import append_to_prompt, build_bcq_hint

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


def pretrain(tokenizer, steps: int, seed: int):
    """Supervised pretraining of the student, fixed seed and step count (never a time budget)."""
    import torch

    from zppo_trl.tiny import build_tiny_llama

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = build_tiny_llama(tokenizer, hidden_size=128, num_layers=4, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    eos = tokenizer.eos_token
    model.train()
    for _ in range(steps):
        examples, total = [pretraining_example(rng) for _ in range(32)], 0.0
        for kind in ("plain", "bcq"):  # two padded batches: short plain rows are not padded to BCQ length
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


def run_method(method: str, seed: int, profile: str, out_dir: str, lr_scale: float = 1.0) -> dict:
    import torch
    from transformers import LlamaForCausalLM

    from zppo_trl import ZPPOConfig, ZPPOTrainer
    from zppo_trl.batching import HINT_FLAG
    from zppo_trl.evaluation import plain_accuracy
    from zppo_trl.tiny import build_char_tokenizer

    torch.set_num_threads(1)
    _, rl_steps, new_prompts, train_keys, heldout_keys = PROFILES[profile]
    tokenizer = build_char_tokenizer()
    student_dir = os.path.join(out_dir, f"student-seed{seed}")  # the same checkpoint for every method of a seed
    model = LlamaForCausalLM.from_pretrained(student_dir)
    with open(os.path.join(student_dir, "pretrain.json")) as f:
        pretrain_loss = json.load(f)["loss"]
    train, heldout = make_datasets(seed, train_keys, heldout_keys)
    heldout_hard = heldout.filter(lambda r: r["family"] == "hard")
    heldout_hard_bcq = with_bcq_hint(heldout, seed)

    def accuracy(data):
        return plain_accuracy(model, tokenizer, data, num_samples=8, max_new_tokens=6, reward=exact_answer_reward,
                              batch_size=32, seed=seed)["accuracy"]  # fmt: skip

    @torch.no_grad()
    def gold_logprob(data):  # mean log-probability of the gold answer: moves before any sample is right
        model.eval()
        total = 0.0
        for row in data:
            p = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
            t = tokenizer(row["answer"], add_special_tokens=False)["input_ids"]
            logits = model(input_ids=torch.tensor([p + t])).logits[0, len(p) - 1 : -1]
            total += logits.log_softmax(-1).gather(1, torch.tensor(t)[:, None]).sum().item()
        model.train()
        return total / len(data)

    bcq_before, logp_before = accuracy(heldout_hard_bcq), gold_logprob(heldout_hard)
    before, before_hard = accuracy(heldout), accuracy(heldout_hard)
    args = ZPPOConfig(
        output_dir=os.path.join(out_dir, f"{method}-seed{seed}"), per_device_train_batch_size=new_prompts * 8,
        num_generations=8, max_completion_length=6, max_steps=rl_steps, learning_rate=LR * lr_scale, logging_steps=1,
        report_to="none", use_cpu=True, bf16=False, activation_checkpointing=False, save_strategy="no", seed=seed,
        disable_tqdm=True, teacher_column="solution", use_ncq=METHODS[method].get("hint_type") is not None,
        candidate_max_tokens=16, hint_prompt_max_tokens=512, temperature=1.0, min_p=MIN_P, beta=0.0,
        **METHODS[method],
    )  # fmt: skip
    completions = []
    trainer = ZPPOTrainer(model=model, reward_funcs=exact_answer_reward, args=args, train_dataset=train,
                          processing_class=tokenizer)  # fmt: skip
    original = trainer._generate

    def counting(prompts):
        completions.append(len(prompts))
        return original(prompts)

    trainer._generate = counting
    tokens = {"plain": 0, "all": 0}  # loss tokens of plain (new + replayed + experience) rows, and of all rows
    generate_round = trainer._generate_and_score_completions

    def counting_tokens(inputs):
        output = generate_round(inputs)
        if trainer.model.training:
            mask = output["completion_mask"]
            hint = output.get(HINT_FLAG, torch.zeros(mask.shape[0], dtype=torch.bool))
            tokens["plain"] += int(mask[~hint].sum())
            tokens["all"] += int(mask.sum())
        return output

    trainer._generate_and_score_completions = counting_tokens
    start = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - start
    after, after_hard, bcq_after = accuracy(heldout), accuracy(heldout_hard), accuracy(heldout_hard_bcq)
    logp_after = gold_logprob(heldout_hard)
    buf = trainer.replay_buffer
    history = [h for h in trainer.state.log_history if "zppo/buffer_size" in h]

    def mean_of(key):
        values = [h[key] for h in history if h.get(key) is not None]
        return sum(values) / len(values) if values else None

    curves = {k: [h.get(f"zppo/total_graduated_bin_{k}", 0.0) for h in history] for k in buf.admitted_by_bin}
    return {
        "method": method, "seed": seed, "pretrain_loss": pretrain_loss,
        "graduation_rate": buf.graduation_rate(), "admitted": buf.total_admitted, "graduated": buf.total_graduated,
        "admissions_by_bin": {str(k): v for k, v in sorted(buf.admitted_by_bin.items())},
        "graduations_by_bin": {str(k): buf.graduated_by_bin.get(k, 0) for k in sorted(buf.admitted_by_bin)},
        "heldout_accuracy_before": before, "heldout_accuracy_after": after,
        "heldout_hard_accuracy_before": before_hard, "heldout_hard_accuracy_after": after_hard,
        "heldout_hard_bcq_accuracy_before": bcq_before, "heldout_hard_bcq_accuracy_after": bcq_after,
        "heldout_hard_gold_logprob_before": logp_before, "heldout_hard_gold_logprob_after": logp_after,
        "bcq_accuracy": mean_of("zppo/bcq_accuracy"), "ncq_accuracy": mean_of("zppo/ncq_accuracy"),
        "seconds_per_completion": elapsed / max(1, sum(completions)), "seconds_per_step": elapsed / rl_steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "steps": rl_steps,
        "graduation_curves": curves, "generated_completions": sum(completions),
        "hint_prompts": sum(h.get(f"zppo/{k}_prompts", 0) for h in history for k in ("bcq", "ncq", "hint", "prefix")),
        "injected_responses": sum(h.get("zppo/injected_responses", 0) for h in history),
        "hints_not_built": sum(h.get("zppo/hints_not_built", 0) for h in history),
        "zero_variance_share": {k: mean_of(f"zppo/zero_variance/{k}") for k in ("plain", "replay", "bcq", "hint",
                                                                                   "prefix", "experience",
                                                                                   "retrospective")},
        "informative_token_share": mean_of("zppo/informative_token_share"),
        "plain_token_share": tokens["plain"] / max(1, tokens["all"]), "learning_rate": LR * lr_scale,
        "experience_replayed": sum(h.get("zppo/experience/replayed", 0) for h in history),
        "experience_stored_trajectories": trainer.experience_buffer.counters()["stored_trajectories"],
        "experience_retired": trainer.experience_buffer.counters()["retired"],
        "experience_importance_weight_mean": mean_of("zppo/experience/importance_weight_mean"),
        "retrospective": trainer.retrospective_report() | {"stored": trainer.retrospective_buffer.counters()["stored"]},
    }  # fmt: skip


AVERAGED = ("graduation_rate", "heldout_accuracy_before", "heldout_accuracy_after", "heldout_hard_accuracy_before",
            "heldout_hard_accuracy_after", "heldout_hard_bcq_accuracy_before", "heldout_hard_bcq_accuracy_after",
            "heldout_hard_gold_logprob_before", "heldout_hard_gold_logprob_after", "bcq_accuracy", "ncq_accuracy",
            "seconds_per_completion", "seconds_per_step", "peak_rss_mb")  # fmt: skip


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def summarise(per_seed: list[dict]) -> dict:
    out = {}
    for key in AVERAGED:
        values = [r[key] for r in per_seed if r[key] is not None]
        out[key] = sum(values) / len(values) if values else None
    for key in ("admissions_by_bin", "graduations_by_bin"):
        bins = sorted({b for r in per_seed for b in r[key]}, key=int)
        out[key] = {b: sum(r[key].get(b, 0) for r in per_seed) / len(per_seed) for b in bins}
    out["admitted"] = sum(r["admitted"] for r in per_seed)
    out["graduated"] = sum(r["graduated"] for r in per_seed)
    out["steps"] = per_seed[0]["steps"]
    out["generated_completions"] = sum(r["generated_completions"] for r in per_seed)
    out["informative_token_share"] = _mean([r["informative_token_share"] for r in per_seed])
    out["per_seed"] = per_seed
    return out


def markdown_table(report: dict) -> str:
    """The README's table: one row per method, sums over seeds for counts, means for the rest."""

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    def times(x):
        return "" if x is None else f" ({x:.2f}x)"

    rows = ["| method | graduated / admitted | entry bin 0: graduated / admitted | hard plain held-out before -> after "
            "| hard gold log-prob before -> after | hard BCQ held-out before -> after | BCQ rollouts correct "
            "| s per completion (x GRPO) | peak RSS MB (x GRPO) |", "|---" * 9 + "|"]  # fmt: skip
    for method, s in report["methods"].items():
        runs, cost = s["per_seed"], s["cost_vs_grpo"]
        bin0 = (sum(r["graduations_by_bin"].get("0", 0) for r in runs), sum(r["admissions_by_bin"].get("0", 0)
                                                                               for r in runs))  # fmt: skip
        rows.append(
            f"| {method} | {s['graduated']} / {s['admitted']} | {bin0[0]} / {bin0[1]} "
            f"| {pct(s['heldout_hard_accuracy_before'])} -> {pct(s['heldout_hard_accuracy_after'])} "
            f"| {s['heldout_hard_gold_logprob_before']:.2f} -> {s['heldout_hard_gold_logprob_after']:.2f} "
            f"| {pct(s['heldout_hard_bcq_accuracy_before'])} -> {pct(s['heldout_hard_bcq_accuracy_after'])} "
            f"| {pct(s['bcq_accuracy'])} | {s['seconds_per_completion']:.4f}{times(cost['seconds_per_completion'])} "
            f"| {s['peak_rss_mb']:.0f}{times(cost['peak_rss_mb'])} |"
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
    return "\n".join(rows) + "\n"


def plot(report: dict, path: str) -> None:
    """Cumulative graduations by entry bin over steps, one panel per method, averaged over seeds (paper Fig. 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(report["methods"]), figsize=(2.8 * len(report["methods"]), 2.9), dpi=80,
                             sharey=True)  # fmt: skip
    colors = plt.get_cmap("viridis")
    for ax, (method, summary) in zip(axes, report["methods"].items()):
        runs = summary["per_seed"]
        for k in sorted({k for r in runs for k in r["graduation_curves"]}, key=int):
            curves = [r["graduation_curves"].get(k) or [0.0] * r["steps"] for r in runs]
            mean = [sum(values) / len(values) for values in zip(*curves)]
            ax.plot(range(1, len(mean) + 1), mean, color=colors(int(k) / 8), label=f"entry bin {k}/8")
        ax.set_title(f"{method}\n{summary['graduated']}/{summary['admitted']} graduated", fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7, loc="center right")
    axes[0].set_ylabel(f"cum. graduations\n(mean of {len(report['seeds'])} seed(s))")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def pretrain_once(me: list[str], seed: int, profile: str, out: str) -> None:
    if not os.path.exists(os.path.join(out, f"student-seed{seed}", "pretrain.json")):
        subprocess.run([*me, "--pretrain", str(seed), profile], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, fewer steps (~15 minutes)")
    parser.add_argument("--smoke", action="store_true", help="a few steps only (CI)")
    parser.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2; --quick and --smoke: 0)")
    parser.add_argument("--no-core", action="store_true", help=f"run only --methods, not also {list(CORE_METHODS)}")
    parser.add_argument("--out", required=True)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one CPU thread each")
    parser.add_argument("--methods", default="", help=f"extra methods after {list(CORE_METHODS)}, comma-separated, "
                        f"from {[m for m in METHODS if m not in CORE_METHODS]}, or 'all'")  # fmt: skip
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)  # internal: method seed profile [lr_scale]
    parser.add_argument("--pretrain", nargs=2, help=argparse.SUPPRESS)  # internal: seed profile
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.pretrain:
        import torch

        from zppo_trl.tiny import build_char_tokenizer

        # one thread, as the runs; BENCH_PRETRAIN_THREADS lets a many-core machine pretrain the seeds faster
        torch.set_num_threads(int(os.environ.get("BENCH_PRETRAIN_THREADS", "1")))
        seed, profile = int(args.pretrain[0]), args.pretrain[1]
        model, loss = pretrain(build_char_tokenizer(), PROFILES[profile][0], seed)
        folder = os.path.join(args.out, f"student-seed{seed}")
        model.save_pretrained(folder)
        with open(os.path.join(folder, "pretrain.json"), "w") as f:
            json.dump({"loss": loss, "steps": PROFILES[profile][0], "seed": seed}, f)
        return
    if args.one:
        method, seed, profile, *scale = args.one
        print(json.dumps(run_method(method, int(seed), profile, args.out, float(scale[0]) if scale else 1.0)))
        return
    profile = "smoke" if args.smoke else "quick" if args.quick else "default"
    default_seeds = "0" if (args.quick or args.smoke) else "0,1,2"
    seeds = [int(s) for s in (args.seeds or default_seeds).split(",")]
    extra = (
        [m for m in METHODS if m not in CORE_METHODS]
        if args.methods == "all"
        else [m for m in args.methods.split(",") if m]
    )
    unknown = [m for m in extra if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    methods = extra if args.no_core else [*CORE_METHODS, *[m for m in extra if m not in CORE_METHODS]]
    if "grpo_replay_lr_matched" in methods and "zppo" not in methods:
        parser.error("--methods: grpo_replay_lr_matched needs zppo (its learning rate uses ZPPO's plain-token share)")
    report = {"profile": profile, "seeds": seeds, "methods": {}}
    me = [sys.executable, __file__, "--out", args.out]
    with ThreadPoolExecutor(args.jobs) as pool:  # each run is its own 1-thread process: peak RSS is per run
        # a student or a run already in --out (an interrupted benchmark, or students made elsewhere) is reused
        students = {s: pool.submit(pretrain_once, me, s, profile, args.out) for s in seeds}

        runs = {}

        def run(method, seed):  # queued after every pretraining, so waiting here never holds a slot for long
            students[seed].result()
            scale = []
            if method == "grpo_replay_lr_matched":  # needs the same seed's ZPPO run (queued before it)
                scale = [str(runs["zppo", seed].result()["plain_token_share"])]
            saved = os.path.join(args.out, f"run-{method}-seed{seed}.json")
            if os.path.exists(saved):
                with open(saved) as f:
                    return json.load(f)
            done = subprocess.run([*me, "--one", method, str(seed), profile, *scale], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"{method} seed {seed} failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            with open(saved, "w") as f:  # each run as soon as it ends: a benchmark cut short keeps what finished
                json.dump(result, f)
            return result

        # method by method in the order given (all seeds of one before the next), the matched run last: a benchmark
        # cut short has every seed of the methods listed first
        for m in sorted(methods, key=lambda m: m == "grpo_replay_lr_matched"):
            for s in seeds:
                runs[m, s] = pool.submit(run, m, s)
    for method in methods:
        per_seed = [runs[method, s].result() for s in seeds]
        report["methods"][method] = summarise(per_seed)
        s = report["methods"][method]
        print(f"{method:<12} graduated {s['graduated']}/{s['admitted']} hard held-out "
              f"{s['heldout_hard_accuracy_before']:.3f} -> {s['heldout_hard_accuracy_after']:.3f} "
              f"hard BCQ {s['heldout_hard_bcq_accuracy_before']:.3f} -> {s['heldout_hard_bcq_accuracy_after']:.3f} "
              f"s/completion {s['seconds_per_completion']:.4f}", flush=True)  # fmt: skip
    grpo = report["methods"].get("grpo")
    for summary in report["methods"].values():  # cost as ratios to GRPO measured in the same run
        summary["cost_vs_grpo"] = {k: summary[k] / grpo[k] if grpo else None for k in ("seconds_per_completion",
                                   "seconds_per_step", "peak_rss_mb")}  # fmt: skip
    base, zppo = report["methods"].get("grpo_replay"), report["methods"].get("zppo")
    sides = (("graduation", lambda s: (s["admitted"], s["graduated"])),
             ("bin0_graduation", lambda s: (s["admissions_by_bin"].get("0", 0) * len(seeds),
                                            s["graduations_by_bin"].get("0", 0) * len(seeds))))  # fmt: skip
    for name, side in sides if base and zppo else ():
        (n_base, g_base), (n_zppo, g_zppo) = side(base), side(zppo)
        ok = n_base >= 10 and n_zppo >= 10 and g_base > 0  # a ratio only with >= 10 admissions on each side
        report[f"zppo_vs_grpo_replay_{name}_ratio"] = (g_zppo / n_zppo) / (g_base / n_base) if ok else None
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    plot(report, os.path.join(args.out, "graduation.png"))
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(markdown_table(report))
    print(markdown_table(report))
    print(f"wrote {args.out}/report.json, {args.out}/graduation.png and {args.out}/table.md")


if __name__ == "__main__":
    main()
