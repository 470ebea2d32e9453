"""What ZPPO costs over GRPO and GRPO†, as a function of completion length.

    python examples/benchmark_overhead.py --out overhead.json --table overhead.md --plot overhead.png --profile
    python examples/benchmark_overhead.py --steps 2 --completion-lengths 8,16   # a quick check (~2 minutes)

The default run (3 lengths x 3 methods x 8 steps, 9 processes) is estimated at 8-9 minutes on one thread, from short
runs at L <= 64; L=512 is most of it.

The paper reports ZPPO at 1.1-1.2x GRPO† per step with 12k-token completions (Tab. 9); with 32-token completions
this script used to measure 1.8x GRPO per completion. This version measures the same three trainers at several
completion lengths L (`--completion-lengths`, default 32,128,512), so the trend towards long completions is measured
rather than argued:

- `grpo`: TRL's `GRPOTrainer`.
- `grpo_replay` (GRPO†): `ZPPOTrainer` with `hint_ratio=0` and the paper's `replay_ratio=0.25` (replay, no hints).
- `zppo`: `ZPPOTrainer` with the paper's defaults (replay 0.25, BCQ/NCQ hint prompts for 0.25 of the new prompts).
- `zppo_next_round`: ZPPO with `hint_schedule="next_round"`: a round's hint groups are rolled out with the next
  round's plain prompts, in one generation pass per step instead of two.
- `zppo_one_forward` (only with `--methods`): ZPPO with the plain/hint split forward switched off, so every row of a
  mixed micro-batch is padded to the longest hint prompt (the cost the split forward avoids).

Setup, identical for every method: a tiny random Llama built in code (`--model-size`), the char-level tokenizer,
`--prompts-per-step` new addition questions x `--num-generations` rollouts per step, one generation round per
optimizer step, 1 torch thread, seed 0, each (method, L) in its own fresh process, one at a time (so peak RSS is that
run's). Every completion is exactly L tokens (`max_completion_length=L` and `generation_kwargs={"min_new_tokens": L}`,
which masks EOS until L; checked on every row, the run fails otherwise). The reward is 0 for even question ids, so the
replay buffer and the hint prompts are busy from round 1. Hint prompts are sized to about 10x the plain prompt: the
plain prompt's templated token length P is measured here, the hint budget (`hint_prompt_max_tokens`, and
`candidate_max_tokens` equal to it) is 10·P minus the chat template's tokens, and the teacher's reference solution is
long enough not to limit BCQ. The hint/plain ratio actually fed to the model is measured from the rollout masks and
reported; it falls short of 10 only when the student's own completions (the wrong candidates) are shorter than the
budget, i.e. at small L.

Reported per method and L, over the steady steps (step 1, with its one-off warm-up, excluded): seconds per step (and
its standard deviation over steps), completions per step, processed tokens per step (prompt + completion tokens of
every generated row, summed from the `prompt_mask`/`completion_mask` that `_generate_and_score_completions` returns,
not estimated), seconds per completion and per processed token, peak RSS, and the ratios to GRPO at the same L (and
ZPPO to GRPO†). `--profile` splits each steady step into: the plain generation pass and the hint (second) generation
pass (`trainer._generate`, told apart by the round's rollout pass it runs in, `trainer.round_seams.rollout`), reward scoring (`trainer._calculate_rewards`), the
rest of the round (`_generate_and_score_completions` minus those: tokenizing, buffer, hint prompts, joining), the loss
forward (`compute_loss`) and backward (`accelerator.backward`), and the rest (optimizer, callbacks, logging); and the
padding share of the loss forward (padded positions / all positions fed to the model inside `compute_loss`) and of
generation (the same over every generation forward: prefill and decode steps). All of
it by wrapping methods on the trainer instance; the library is not changed.

On this CPU setup with a tiny model, generation is mostly latency-bound (each of the L decode steps costs nearly the
same whatever the batch: in a 2-step check at L=16 the 4-row hint pass took 0.18 s, the 20-row plain pass 0.22 s), so
ZPPO's second generation pass costs close to a whole plain pass although it holds a fifth as many rows; the profile
shows how much of the overhead that is. At the paper's scale (384 x 8 rollouts per step) a decode step is far closer
to throughput-bound, so this is expected to overstate the hint pass's share (not measured here).

Writes JSON (`--out`), prints a table, and optionally writes a markdown table (`--table`) and a figure (`--plot`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SIZES = {"1m": (128, 4), "10m": (320, 8)}  # hidden size, layers
METHODS = ("grpo", "grpo_replay", "zppo", "zppo_next_round", "zppo_one_forward")
DEFAULT_METHODS = "grpo,grpo_replay,zppo,zppo_next_round"
LABELS = {"grpo": "GRPO (TRL)", "grpo_replay": "GRPO† (replay, no hints)", "zppo": "ZPPO",
          "zppo_next_round": "ZPPO, one pass (next_round)", "zppo_one_forward": "ZPPO, split forward off"}  # fmt: skip
HINT_TO_PLAIN = 10  # target length of a hint prompt, in plain prompts
PROFILE_PARTS = ("generation_plain", "generation_hint", "rewards", "round_other", "loss_forward", "loss_backward",
                 "step_other")  # fmt: skip


def plain_prompt_tokens(tokenizer, dataset) -> tuple[float, int]:
    """Mean templated token length of the plain prompts, and the chat template's share of it."""
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    templated = [count(tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False)) for p in
                 dataset["prompt"]]  # fmt: skip
    content = [count(p[-1]["content"]) for p in dataset["prompt"]]
    return sum(templated) / len(templated), round(sum(t - c for t, c in zip(templated, content)) / len(content))


def long_solution(solution: str, chars: int) -> str:
    """The reference solution's worked line repeated to at least `chars` characters, then its final answer: a teacher
    candidate long enough that BCQ's same-length rule is bound by the hint budget, not by the teacher."""
    worked, answer = solution.split(" The answer is ")
    return (worked + " ") * (chars // (len(worked) + 1) + 1) + "The answer is " + answer


def run_one(method: str, length: int, steps: int, size: str, prompts: int, generations: int, profile: bool) -> dict:
    import torch
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from zppo_trl import ZPPOConfig, ZPPOTrainer
    from zppo_trl.round.batching import HINT_FLAG
    from zppo_trl.tiny import addition_dataset, build_char_tokenizer, build_tiny_llama

    torch.set_num_threads(1)
    tokenizer = build_char_tokenizer()
    hidden, layers = SIZES[size]
    model = build_tiny_llama(tokenizer, hidden_size=hidden, num_layers=layers)
    data = addition_dataset(max(64, prompts * steps))
    plain_tokens, template_tokens = plain_prompt_tokens(tokenizer, data)
    hint_budget = round(HINT_TO_PLAIN * plain_tokens) - template_tokens  # counted on the text, template aside
    data = data.map(lambda row: {"solution": long_solution(row["solution"], 2 * hint_budget)})

    def reward(completions, prompt_id, **kwargs):
        return [float(pid % 2 == 1) for pid in prompt_id]

    common = dict(output_dir=os.path.join(tempfile.gettempdir(), f"zppo-bench-{method}-{length}"),
                  per_device_train_batch_size=prompts * generations, num_generations=generations,
                  max_completion_length=length, generation_kwargs={"min_new_tokens": length}, max_steps=steps,
                  learning_rate=1e-4, logging_steps=1, report_to="none", use_cpu=True, bf16=False,
                  activation_checkpointing=False, save_strategy="no", seed=0, disable_tqdm=True)  # fmt: skip
    steps_seen: list[dict] = []

    class StepRecorder(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            steps_seen.append({"rows": 0, "plain_rows": 0, "hint_rows": 0, "prompt_tokens": 0,
                               "plain_prompt_tokens": 0, "hint_prompt_tokens": 0, "completion_tokens": 0,
                               "completion_length_min": None, "completion_length_max": None,
                               **{f"{part}_s": 0.0 for part in PROFILE_PARTS}, "round_s": 0.0,
                               "loss_positions": 0, "loss_padded_positions": 0, "generation_positions": 0,
                               "generation_padded_positions": 0,
                               "start": time.perf_counter()})  # fmt: skip

        def on_step_end(self, args, state, control, **kwargs):
            step = steps_seen[-1]
            step["seconds"] = time.perf_counter() - step.pop("start")

    if method == "grpo":
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=GRPOConfig(**common), train_dataset=data,
                              processing_class=tokenizer, callbacks=[StepRecorder()])  # fmt: skip
    else:
        hints = {} if method != "grpo_replay" else {"hint_ratio": 0.0}  # GRPO†: replay at the paper's 0.25, no hints
        if method == "zppo_next_round":
            hints = {"hint_schedule": "next_round"}
        args = ZPPOConfig(**common, teacher_column="solution", candidate_max_tokens=hint_budget,
                          hint_prompt_max_tokens=hint_budget, **hints)  # fmt: skip
        trainer = ZPPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=data,
                              processing_class=tokenizer, callbacks=[StepRecorder()])  # fmt: skip
        if method == "zppo_one_forward":  # one forward over every row of a micro-batch, padded to the longest prompt
            trainer._split_forward = lambda *a, **kw: GRPOTrainer._get_per_token_logps_and_entropies(trainer, *a, **kw)

    def wrap(name, around, owner=trainer):
        original = getattr(owner, name)
        setattr(owner, name, lambda *a, **kw: around(original, *a, **kw))

    def timed(part):  # adds the call's wall time to the current step's `part`
        def around(original, *a, **kw):
            start = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                steps_seen[-1][f"{part}_s"] += time.perf_counter() - start

        return around

    def counted_round(original, inputs):
        start = time.perf_counter()
        output = original(inputs)
        step = steps_seen[-1]
        step["round_s"] += time.perf_counter() - start
        prompt_mask, completion_mask = output["prompt_mask"], output["completion_mask"]
        lengths = completion_mask.sum(dim=1)
        if completion_mask.shape[1] != length or not bool((lengths == length).all()):
            raise RuntimeError(f"completions must be exactly {length} tokens; got {sorted(set(lengths.tolist()))} "
                               f"(padded to {completion_mask.shape[1]})")  # fmt: skip
        hint = output.get(HINT_FLAG, torch.zeros(len(lengths), dtype=torch.bool))
        prompt_lengths = prompt_mask.sum(dim=1)
        step["rows"] += len(lengths)
        step["hint_rows"] += int(hint.sum())
        step["plain_rows"] += int((~hint).sum())
        step["prompt_tokens"] += int(prompt_lengths.sum())
        step["hint_prompt_tokens"] += int(prompt_lengths[hint].sum())
        step["plain_prompt_tokens"] += int(prompt_lengths[~hint].sum())
        step["completion_tokens"] += int(lengths.sum())
        step["completion_length_min"], step["completion_length_max"] = int(lengths.min()), int(lengths.max())
        return output

    wrap("_generate_and_score_completions", counted_round)
    if profile:
        in_hint_pass, in_loss, in_generation = [False], [False], [False]

        def rollout_pass(original, groups, metrics_prefix=None, **kw):  # an extra (hint) pass logs under a prefix
            in_hint_pass[0] = metrics_prefix is not None
            try:
                return original(groups, metrics_prefix=metrics_prefix, **kw)
            finally:
                in_hint_pass[0] = False

        def generation(original, *a, **kw):
            in_generation[0] = True
            try:
                return timed("generation_hint" if in_hint_pass[0] else "generation_plain")(original, *a, **kw)
            finally:
                in_generation[0] = False

        def loss_forward(original, *a, **kw):
            in_loss[0] = True
            try:
                return timed("loss_forward")(original, *a, **kw)
            finally:
                in_loss[0] = False

        def count_positions(module, args, kwargs):  # every model forward in the loss or in generation: its inputs
            mask = kwargs.get("attention_mask")
            where = "loss" if in_loss[0] else "generation" if in_generation[0] else None
            if where and mask is not None:
                steps_seen[-1][f"{where}_positions"] += mask.numel()
                steps_seen[-1][f"{where}_padded_positions"] += int(mask.numel() - mask.sum())

        if hasattr(trainer, "round_seams"):  # ZPPOTrainer (TRL's GRPOTrainer runs one pass per step)
            wrap("rollout", rollout_pass, owner=trainer.round_seams)
        wrap("_generate", generation)
        wrap("_calculate_rewards", timed("rewards"))
        wrap("compute_loss", loss_forward)
        original_backward = trainer.accelerator.backward
        trainer.accelerator.backward = lambda *a, **kw: timed("loss_backward")(original_backward, *a, **kw)
        trainer.model.register_forward_pre_hook(count_positions, with_kwargs=True)

    trainer.train()
    steady = steps_seen[1:] or steps_seen  # step 1 includes one-off warm-up
    mean = lambda key: sum(s[key] for s in steady) / len(steady)  # noqa: E731
    per_step = mean("seconds")
    tokens = mean("prompt_tokens") + mean("completion_tokens")
    plain_prompt = sum(s["plain_prompt_tokens"] for s in steady) / max(1, sum(s["plain_rows"] for s in steady))
    hint_rows = sum(s["hint_rows"] for s in steady)
    hint_prompt = sum(s["hint_prompt_tokens"] for s in steady) / hint_rows if hint_rows else None
    if method.startswith("zppo") and not hint_rows:  # a ZPPO run without hint rows would measure GRPO†
        raise RuntimeError(f"no hint prompt was rolled out in the steady steps (hint budget {hint_budget} tokens)")
    result = {
        "method": method,
        "completion_length": length,
        "steps": steps,
        "steady_steps": len(steady),
        "seconds_per_step": per_step,
        "seconds_per_step_std": statistics.stdev([s["seconds"] for s in steady]) if len(steady) > 1 else 0.0,
        "completions_per_step": mean("rows"),
        "hint_completions_per_step": mean("hint_rows"),
        "prompt_tokens_per_step": mean("prompt_tokens"),
        "completion_tokens_per_step": mean("completion_tokens"),
        "processed_tokens_per_step": tokens,
        "seconds_per_completion": per_step / mean("rows"),
        "seconds_per_processed_token": per_step / tokens,
        "completion_length_min": min(s["completion_length_min"] for s in steps_seen),
        "completion_length_max": max(s["completion_length_max"] for s in steps_seen),
        "plain_prompt_tokens_dataset": plain_tokens,
        "plain_prompt_tokens": plain_prompt,
        "hint_prompt_tokens": hint_prompt,
        "hint_to_plain_ratio": hint_prompt / plain_prompt if hint_prompt else None,
        "hint_prompt_max_tokens": hint_budget if method != "grpo" else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "step_seconds": [s["seconds"] for s in steps_seen],
    }
    if profile:
        for s in steady:
            s["round_other_s"] = s["round_s"] - s["generation_plain_s"] - s["generation_hint_s"] - s["rewards_s"]
            s["step_other_s"] = s["seconds"] - s["round_s"] - s["loss_forward_s"] - s["loss_backward_s"]
        positions = sum(s["loss_positions"] for s in steady)
        generated = sum(s["generation_positions"] for s in steady)
        result["profile"] = {
            **{f"{part}_s": mean(f"{part}_s") for part in PROFILE_PARTS},
            "loss_forward_positions_per_step": positions / len(steady),
            "loss_forward_padding_share": sum(s["loss_padded_positions"] for s in steady) / max(1, positions),
            # attention positions the generation forwards see (prefill and every decode step) that are padding
            "generation_padding_share": sum(s["generation_padded_positions"] for s in steady) / max(1, generated),
        }
    return result


def add_ratios(results: list[dict]) -> None:
    """Each result's cost relative to GRPO at the same completion length (and ZPPO's to GRPO†), in place."""
    by_key = {(r["method"], r["completion_length"]): r for r in results}
    for r in results:
        for base_name, prefix in (("grpo", "x_grpo"), ("grpo_replay", "x_grpo_replay")):
            base = by_key.get((base_name, r["completion_length"]))
            if base is None or (prefix == "x_grpo_replay" and not r["method"].startswith("zppo")):
                continue
            for unit in ("step", "completion", "processed_token"):
                key = f"seconds_per_{unit}"
                r[f"{prefix}_per_{unit}"] = r[key] / base[key]


def table_rows(results: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["L", "method", "s/step", "± s", "compl/step", "tokens/step", "s/compl", "ms/token", "× GRPO step",
              "× GRPO compl", "× GRPO token", "× GRPO† step", "× GRPO† token", "hint/plain", "peak RSS MB"]  # fmt: skip
    fmt = lambda value, spec: "" if value is None else format(value, spec)  # noqa: E731
    rows = [[str(r["completion_length"]), r["method"], fmt(r["seconds_per_step"], ".3f"),
             fmt(r["seconds_per_step_std"], ".3f"), fmt(r["completions_per_step"], ".0f"),
             fmt(r["processed_tokens_per_step"], ".0f"), fmt(r["seconds_per_completion"], ".4f"),
             fmt(1000 * r["seconds_per_processed_token"], ".4f"), fmt(r.get("x_grpo_per_step"), ".2f"),
             fmt(r.get("x_grpo_per_completion"), ".2f"), fmt(r.get("x_grpo_per_processed_token"), ".2f"),
             fmt(r.get("x_grpo_replay_per_step"), ".2f"), fmt(r.get("x_grpo_replay_per_processed_token"), ".2f"), fmt(r["hint_to_plain_ratio"], ".1f"),
             fmt(r["peak_rss_mb"], ".0f")] for r in results]  # fmt: skip
    return header, rows


def profile_rows(results: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["L", "method", "s/step", *(f"{part} s" for part in PROFILE_PARTS), "loss padding share",
              "generation padding share"]  # fmt: skip
    rows = [[str(r["completion_length"]), r["method"], f"{r['seconds_per_step']:.3f}",
             *(f"{r['profile'][f'{part}_s']:.3f}" for part in PROFILE_PARTS),
             f"{r['profile']['loss_forward_padding_share']:.2f}",
             f"{r['profile']['generation_padding_share']:.2f}"] for r in results if "profile" in r]  # fmt: skip
    return header, rows


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    for row in [header, *rows]:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7.5, 2.8), sharey=True)
    methods = [m for m in METHODS if m != "grpo" and any(r["method"] == m for r in results)]
    for ax, unit, title in zip(axes, ("processed_token", "step"), ("per processed token", "per step")):
        for method in methods:
            points = sorted((r["completion_length"], r[f"x_grpo_per_{unit}"]) for r in results
                            if r["method"] == method and f"x_grpo_per_{unit}" in r)  # fmt: skip
            if points:
                ax.plot(*zip(*points), marker="o", label=LABELS[method])
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        lengths = sorted({r["completion_length"] for r in results})
        ax.set_xticks(lengths, [str(length) for length in lengths])
        ax.minorticks_off()
        ax.set_xlabel("completion length (tokens)")
        ax.set_title(f"cost × GRPO, {title}", fontsize=9)
    # the target is against GRPO per processed token; the paper's 1.1-1.2x (Tab. 9, 12k-token completions) is
    # ZPPO against GRPO† per step, so it is drawn only next to that series
    axes[0].axhline(1.1, color="tab:red", ls=":", lw=1, label="target at 512 tokens")
    points = sorted((r["completion_length"], r["x_grpo_replay_per_step"]) for r in results
                    if "x_grpo_replay_per_step" in r)  # fmt: skip
    if points:
        axes[1].plot(*zip(*points), marker="s", ls="--", color="black", label="ZPPO × GRPO†")
        axes[1].axhspan(1.1, 1.2, color="tab:green", alpha=0.15, label="paper: ZPPO × GRPO†, 12k tokens")
    axes[0].set_ylabel("× GRPO")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--completion-lengths", default="32,128,512", help="comma-separated completion lengths")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated, from {','.join(METHODS)}")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run; step 1 is not counted")
    parser.add_argument("--prompts-per-step", type=int, default=4, help="new prompts per step (one round)")
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--model-size", choices=sorted(SIZES), default="1m")
    parser.add_argument("--profile", action="store_true", help="split each step into generation, rewards, loss")
    parser.add_argument("--out", default="overhead.json")
    parser.add_argument("--table", help="write the tables as markdown to this path")
    parser.add_argument("--plot", help="write the figure (PNG) to this path")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one (method, length) in this process
    args = parser.parse_args()
    lengths = [int(x) for x in args.completion_lengths.split(",")]
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    if args.steps < 2:
        parser.error(f"--steps {args.steps}: needs at least 2 (step 1 is warm-up and not counted)")
    if args.one:
        print(json.dumps(run_one(args.one, lengths[0], args.steps, args.model_size, args.prompts_per_step,
                                 args.num_generations, args.profile)))  # fmt: skip
        return
    results = []
    for length in lengths:  # every method at one length before the next: machine drift hits all methods alike
        for method in methods:
            command = [sys.executable, __file__, "--one", method, "--completion-lengths", str(length), "--steps",
                       str(args.steps), "--prompts-per-step", str(args.prompts_per_step), "--num-generations",
                       str(args.num_generations), "--model-size", args.model_size] + ["--profile"] * args.profile  # fmt: skip
            start = time.perf_counter()
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{method} at L={length} failed:\n{out.stderr[-4000:]}")
            results.append({**json.loads(out.stdout.strip().splitlines()[-1]),
                            "process_seconds": time.perf_counter() - start})  # fmt: skip
            print(f"L={length} {method}: {results[-1]['seconds_per_step']:.3f} s/step "
                  f"({results[-1]['process_seconds']:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    add_ratios(results)
    tables = [table_rows(results)] + ([profile_rows(results)] if args.profile else [])
    for header, rows in tables:
        print_table(header, rows)
        print()
    setup = {"model_size": args.model_size, "steps": args.steps, "prompts_per_step": args.prompts_per_step,
             "num_generations": args.num_generations, "completion_lengths": lengths, "methods": methods,
             "hint_to_plain_target": HINT_TO_PLAIN, "torch_threads": 1}  # fmt: skip
    with open(args.out, "w") as f:
        json.dump({**setup, "results": results}, f, indent=2)
    if args.table:
        with open(args.table, "w") as f:
            f.write("\n".join(markdown(header, rows) for header, rows in tables))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
