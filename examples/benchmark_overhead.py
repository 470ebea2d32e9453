"""What ZPPO costs over GRPO, measured: seconds per step, seconds per generated completion, peak RSS.

    python examples/benchmark_overhead.py [--steps 8] [--model-size 1m|10m] [--out overhead.json]

Same tiny random Llama (built in code), same data, same seed, 1 torch thread, one process per method (so peak RSS
is per method). Methods: `grpo` (TRL's GRPOTrainer), `zppo` (ZPPOTrainer), and `zppo_one_forward` (ZPPOTrainer with
the plain/hint split forward switched off, i.e. every row padded to the longest hint prompt: the cost trap of
TRL_SEAMS §7). The reward is 0 for even question ids, so the buffer and hint prompts are busy from round 1; hint
prompts carry two 128-token candidates, about 10x the plain prompt length. Runs ~2 minutes on 2 CPU cores.
Prints a table and writes JSON; the numbers in docs/measurements.md come from this script.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

SIZES = {"1m": (128, 4), "10m": (320, 8)}  # hidden size, layers


def run_one(method: str, steps: int, size: str) -> dict:
    import torch
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from zppo_trl import ZPPOConfig, ZPPOTrainer
    from zppo_trl.tiny import addition_dataset, build_char_tokenizer, build_tiny_llama

    torch.set_num_threads(1)
    tokenizer = build_char_tokenizer()
    hidden, layers = SIZES[size]
    model = build_tiny_llama(tokenizer, hidden_size=hidden, num_layers=layers)

    def reward(completions, prompt_id, **kwargs):
        return [float(pid % 2 == 1) for pid in prompt_id]

    common = dict(output_dir=os.path.join(tempfile.gettempdir(), f"zppo-bench-{method}"), per_device_train_batch_size=16, num_generations=4,
                  max_completion_length=32, max_steps=steps, learning_rate=1e-4, logging_steps=1, report_to="none",
                  use_cpu=True, bf16=False, activation_checkpointing=False, save_strategy="no", seed=0,
                  disable_tqdm=True)  # fmt: skip
    times = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.t)

    data = addition_dataset(64)
    if method == "grpo":
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=GRPOConfig(**common), train_dataset=data,
                              processing_class=tokenizer, callbacks=[Timer()])  # fmt: skip
    else:
        args = ZPPOConfig(**common, teacher_column="solution", candidate_max_tokens=128,
                          hint_prompt_max_tokens=512)  # fmt: skip
        trainer = ZPPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=data,
                              processing_class=tokenizer, callbacks=[Timer()])  # fmt: skip
        if method == "zppo_one_forward":  # the split forward off: plain rows padded to hint-prompt length
            trainer._micro_batch_hint_flags = None
            trainer._compute_loss = lambda model, inputs: GRPOTrainer._compute_loss(trainer, model, inputs)
    completions = []
    original = trainer._generate

    def counting_generate(prompts):
        result = original(prompts)
        completions.append(len(prompts))
        return result

    trainer._generate = counting_generate
    trainer.train()
    steady = times[1:] or times  # step 1 includes one-off warm-up
    per_step = sum(steady) / len(steady)
    generated = sum(completions) / steps
    return {"method": method, "seconds_per_step": per_step, "completions_per_step": generated,
            "seconds_per_completion": per_step / generated,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--model-size", choices=sorted(SIZES), default="1m")
    parser.add_argument("--out", default="overhead.json")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one method in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.steps, args.model_size)))
        return
    results = []
    for method in ("grpo", "zppo", "zppo_one_forward"):
        out = subprocess.run([sys.executable, __file__, "--one", method, "--steps", str(args.steps),
                              "--model-size", args.model_size], capture_output=True, text=True, check=True)  # fmt: skip
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = results[0]
    print(f"{'method':<18}{'s/step':>9}{'compl/step':>12}{'s/compl':>10}{'x GRPO s/compl':>16}{'peak RSS MB':>13}")
    for r in results:
        ratio = r["seconds_per_completion"] / base["seconds_per_completion"]
        print(f"{r['method']:<18}{r['seconds_per_step']:>9.3f}{r['completions_per_step']:>12.0f}"
              f"{r['seconds_per_completion']:>10.4f}{ratio:>16.2f}{r['peak_rss_mb']:>13.0f}")  # fmt: skip
    with open(args.out, "w") as f:
        json.dump({"model_size": args.model_size, "steps": args.steps, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
