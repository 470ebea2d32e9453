"""GRPO vs GRPO† vs hints-only vs ZPPO on a CPU task with a zone of proximal development: same student, same steps.

    python examples/graduation_benchmark.py --quick --out runs/bench          # 1 seed, fewer steps
    python examples/graduation_benchmark.py --seeds 0,1,2 --out runs/bench    # the default run
    python examples/graduation_benchmark.py --smoke --out runs/bench-smoke    # CI: a few steps, fills every field

Writes DIR/report.json and DIR/graduation.png (cumulative graduations by entry bin over steps, per method).

Design (why a hard family exists that hints can open and replay alone cannot):
- Questions `k=bad s=4?`: a 3-letter key over a..j and a check digit `s`. The answer maps each letter to a digit:
  easy family `a->0 ... j->9` ("bad" -> "103"); hard family, marked `h` (`k=bad s=5 h?`), uses the shifted map
  `a->1 ... j->0` ("bad" -> "214"). The check digit `s` is the answer's last digit.
- The student (a ~1M-parameter char-level Llama) is pretrained inside the run, fixed seed and fixed step count, on
  (i) easy questions with their answers, and (ii) the exact BCQ prompt format over *random* candidate pairs, easy
  and hard markers alike, where the target is the candidate whose last digit is `s` (with some label noise, so it
  stays imperfect). The hard map is never a pretraining target. So plain hard accuracy is 0 (the student answers
  with the easy map, whose last digit contradicts `s`), replay alone has nothing to reinforce, but a BCQ prompt is
  solvable by checking the last digit against `s` — a skill the student has, and that its own default answer fails.
- Whether solving hinted prompts teaches the plain hard map (graduation) is what the benchmark measures.
- Methods, all with ZPPOTrainer so the buffer statistics are tracked the same way: `grpo` (replay 0, hints 0: the
  buffer only records), `grpo_replay` (GRPO†: replay, no hints), `hints_only` (hints, no replay), `zppo` (both).
Status (measured once, seed 0, 1200 pretraining steps, ~30 min on the 2-core machine): easy plain accuracy 99.6%,
hard plain 0% (as designed), but hard BCQ 0% too, so there is no zone yet. Likely cause: in pretraining the wrong
candidate differs from the right one only in its last digit, while a real BCQ wrong candidate (the student's own
easy-map answer) differs in every digit; the next attempt should draw pretraining wrong candidates like real ones,
and shorten pretraining so `--quick` fits its 15 minutes. No report.json from this design has been published.
Report fields per method (averaged over seeds, per-seed values under `per_seed`): graduation_rate,
admissions_by_bin, graduations_by_bin, heldout(_hard)_accuracy_before/after, bcq/ncq_accuracy,
seconds_per_completion, peak_rss_mb, steps. Ratios are reported only where each side has >= 10 admissions.
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

LETTERS = "abcdefghij"
METHODS = {  # (replay_ratio, hint_ratio)
    "grpo": (0.0, 0.0),
    "grpo_replay": (0.5, 0.0),
    "hints_only": (0.0, 0.5),
    "zppo": (0.5, 0.5),
}
PROFILES = {  # pretrain steps, RL steps, new prompts per RL step
    "default": (1200, 60, 8),
    "quick": (1200, 30, 8),
    "smoke": (30, 2, 4),
}


def answer(key: str, hard: bool) -> str:
    return "".join(str((LETTERS.index(c) + hard) % 10) for c in key)


def question(key: str, hard: bool) -> str:
    return f"k={key} s={answer(key, hard)[-1]}{' h' if hard else ''}?"


def make_dataset(n: int, hard_share: float, seed: int):
    from datasets import Dataset

    rng, rows, seen = random.Random(seed), [], set()
    while len(rows) < n:
        key, hard = "".join(rng.choice(LETTERS) for _ in range(3)), rng.random() < hard_share
        if (key, hard) in seen:
            continue
        seen.add((key, hard))
        rows.append({"prompt": question(key, hard), "answer": answer(key, hard), "solution": answer(key, hard),
                     "family": "hard" if hard else "easy"})  # fmt: skip
    return Dataset.from_list(rows)


def exact_answer_reward(completions, answer, **kwargs):
    return [float(c.strip() == a) for c, a in zip(completions, answer)]


def pretrain(tokenizer, steps: int, seed: int):
    """Supervised pretraining of the student, fixed seed and step count (never a time budget)."""
    import torch

    from zppo_trl.prompts import append_to_prompt, build_bcq_hint
    from zppo_trl.tiny import build_tiny_llama

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = build_tiny_llama(tokenizer, hidden_size=128, num_layers=4, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    eos = tokenizer.eos_token

    def example():
        key = "".join(rng.choice(LETTERS) for _ in range(3))
        if rng.random() < 0.5:  # (i) easy plain question
            return question(key, False), answer(key, False)
        hard = rng.random() < 0.5
        target = "".join(rng.choice("0123456789") for _ in range(3))
        check = target[-1]
        wrong = target[:2] + rng.choice([d for d in "0123456789" if d != check])
        prompt = f"k={key} s={check}{' h' if hard else ''}?"
        label = target if rng.random() < 0.85 else wrong  # label noise keeps the selector imperfect
        return append_to_prompt(prompt, build_bcq_hint(target, wrong, rng)), label

    model.train()
    for _ in range(steps):
        batch = [example() for _ in range(32)]
        ids, labels = [], []
        for prompt, target in batch:
            p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            t = tokenizer(target + eos, add_special_tokens=False)["input_ids"]
            ids.append(p + t)
            labels.append([-100] * len(p) + t)
        width = max(map(len, ids))
        input_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(x)) + x for x in ids])
        label_ids = torch.tensor([[-100] * (width - len(x)) + x for x in labels])
        mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(x) for x in ids])[:, None]).long()
        loss = model(input_ids=input_ids, attention_mask=mask, labels=label_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, float(loss)


def run_method(method: str, seed: int, profile: str, out_dir: str) -> dict:
    import torch
    from transformers import LlamaForCausalLM

    from zppo_trl import ZPPOConfig, ZPPOTrainer
    from zppo_trl.evaluation import plain_accuracy
    from zppo_trl.tiny import build_char_tokenizer

    torch.set_num_threads(1)
    _, rl_steps, new_prompts = PROFILES[profile]
    tokenizer = build_char_tokenizer()
    student_dir = os.path.join(out_dir, f"student-seed{seed}")  # the same checkpoint for every method of a seed
    model = LlamaForCausalLM.from_pretrained(student_dir)
    with open(os.path.join(student_dir, "pretrain.json")) as f:
        pretrain_loss = json.load(f)["loss"]
    train, heldout = make_dataset(400, 0.5, seed), make_dataset(60, 0.5, 10_000 + seed)
    heldout_hard = heldout.filter(lambda r: r["family"] == "hard")

    def accuracy(data):
        return plain_accuracy(model, tokenizer, data, num_samples=4, max_new_tokens=4, reward=exact_answer_reward,
                              batch_size=32, seed=seed)["accuracy"]  # fmt: skip

    before, before_hard = accuracy(heldout), accuracy(heldout_hard)
    replay, hints = METHODS[method]
    args = ZPPOConfig(
        output_dir=os.path.join(out_dir, f"{method}-seed{seed}"), per_device_train_batch_size=new_prompts * 8,
        num_generations=8, max_completion_length=4, max_steps=rl_steps, learning_rate=3e-4, logging_steps=1,
        report_to="none", use_cpu=True, bf16=False, gradient_checkpointing=False, save_strategy="no", seed=seed,
        disable_tqdm=True, teacher_column="solution", replay_ratio=replay, hint_ratio=hints, use_ncq=False,
        candidate_max_tokens=16, hint_prompt_max_tokens=512, temperature=1.0, beta=0.0,
    )  # fmt: skip
    completions = []
    trainer = ZPPOTrainer(model=model, reward_funcs=exact_answer_reward, args=args, train_dataset=train,
                          processing_class=tokenizer)  # fmt: skip
    original = trainer._generate

    def counting(prompts):
        completions.append(len(prompts))
        return original(prompts)

    trainer._generate = counting
    start = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - start
    after, after_hard = accuracy(heldout), accuracy(heldout_hard)
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
        "bcq_accuracy": mean_of("zppo/bcq_accuracy"), "ncq_accuracy": mean_of("zppo/ncq_accuracy"),
        "seconds_per_completion": elapsed / max(1, sum(completions)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "steps": rl_steps,
        "graduation_curves": curves,
    }  # fmt: skip


AVERAGED = ("graduation_rate", "heldout_accuracy_before", "heldout_accuracy_after", "heldout_hard_accuracy_before",
            "heldout_hard_accuracy_after", "bcq_accuracy", "ncq_accuracy", "seconds_per_completion", "peak_rss_mb")  # fmt: skip


def summarise(per_seed: list[dict]) -> dict:
    out = {}
    for key in AVERAGED:
        values = [r[key] for r in per_seed if r[key] is not None]
        out[key] = sum(values) / len(values) if values else None
    for key in ("admissions_by_bin", "graduations_by_bin"):
        bins = sorted({b for r in per_seed for b in r[key]}, key=int)
        out[key] = {b: sum(r[key].get(b, 0) for r in per_seed) / len(per_seed) for b in bins}
    out["admitted"] = sum(r["admitted"] for r in per_seed)
    out["steps"] = per_seed[0]["steps"]
    out["per_seed"] = per_seed
    return out


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(report["methods"]), figsize=(3.2 * len(report["methods"]), 3), dpi=90,
                             sharey=True)  # fmt: skip
    for ax, (method, summary) in zip(axes, report["methods"].items()):
        first = summary["per_seed"][0]
        for k, curve in sorted(first["graduation_curves"].items(), key=lambda kv: int(kv[0])):
            ax.plot(range(1, len(curve) + 1), curve, label=f"entry bin {k}/8")
        ax.set(title=method, xlabel="step")
    axes[0].set_ylabel("cumulative graduations (seed 0)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, fewer steps (~15 minutes)")
    parser.add_argument("--smoke", action="store_true", help="a few steps only (CI)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", required=True)
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # internal: method seed profile
    parser.add_argument("--pretrain", nargs=2, help=argparse.SUPPRESS)  # internal: seed profile
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.pretrain:
        import torch

        from zppo_trl.tiny import build_char_tokenizer

        torch.set_num_threads(1)
        seed, profile = int(args.pretrain[0]), args.pretrain[1]
        model, loss = pretrain(build_char_tokenizer(), PROFILES[profile][0], seed)
        folder = os.path.join(args.out, f"student-seed{seed}")
        model.save_pretrained(folder)
        with open(os.path.join(folder, "pretrain.json"), "w") as f:
            json.dump({"loss": loss, "steps": PROFILES[profile][0], "seed": seed}, f)
        return
    if args.one:
        method, seed, profile = args.one
        print(json.dumps(run_method(method, int(seed), profile, args.out)))
        return
    profile = "smoke" if args.smoke else "quick" if args.quick else "default"
    seeds = [0] if (args.quick or args.smoke) else [int(s) for s in args.seeds.split(",")]
    report = {"profile": profile, "seeds": seeds, "methods": {}}
    for seed in seeds:  # pretrain each seed's student once, fixed steps; every method starts from it
        subprocess.run([sys.executable, __file__, "--pretrain", str(seed), profile, "--out", args.out], check=True)
    for method in METHODS:
        per_seed = []
        for seed in seeds:  # one process per run: peak RSS is per method
            out = subprocess.run([sys.executable, __file__, "--one", method, str(seed), profile, "--out", args.out],
                                 capture_output=True, text=True, check=True)  # fmt: skip
            per_seed.append(json.loads(out.stdout.strip().splitlines()[-1]))
        report["methods"][method] = summarise(per_seed)
        s = report["methods"][method]
        print(f"{method:<12} graduation rate {s['graduation_rate']} hard held-out "
              f"{s['heldout_hard_accuracy_before']:.3f} -> {s['heldout_hard_accuracy_after']:.3f} "
              f"bcq {s['bcq_accuracy']} s/completion {s['seconds_per_completion']:.4f}", flush=True)  # fmt: skip
    base, zppo = report["methods"]["grpo_replay"], report["methods"]["zppo"]
    if base["admitted"] >= 10 and zppo["admitted"] >= 10 and base["graduation_rate"]:
        report["zppo_vs_grpo_replay_graduation_ratio"] = zppo["graduation_rate"] / base["graduation_rate"]
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    plot(report, os.path.join(args.out, "graduation.png"))
    print(f"wrote {args.out}/report.json and {args.out}/graduation.png")


if __name__ == "__main__":
    main()
