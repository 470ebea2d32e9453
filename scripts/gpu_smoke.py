"""GPU check of what CI cannot run, nothing downloaded: every model is built in code at random init.

    python scripts/gpu_smoke.py            # checks + the full scale plan: about 8 min on one H200
    python scripts/gpu_smoke.py --quick    # checks + the 0.5B runs only: about 3 min
    python scripts/gpu_smoke.py --dry-run  # no GPU: the configs, the run plan and one tiny CPU step of the harness
    python scripts/gpu_smoke.py --cpu      # the checks' non-quantised configuration on CPU (fp32)
    python scripts/gpu_smoke.py --liger    # adds a run with use_liger_kernel=True (needs liger-kernel)

1. Checks (a 4-layer Llama): QLoRA (bitsandbytes 4-bit) and LoRA through `ZPPOTrainer.train()` with replay and hint
   groups; per configuration the 4-bit layers are on the GPU, every logged loss is finite, LoRA weights moved, the
   buffer admitted questions and hint (or baseline) groups were rolled out. One PASS/FAIL line each.
2. Scale (`plan`): the Qwen2.5-0.5B and -1.5B architectures (their configs written out below) with a 151,936-token
   vocabulary, LoRA and QLoRA (NF4), bf16 and a forced fp16 path as a T4 runs it (fp16 weights and 4-bit compute,
   float32 adapters), 8 questions x 4 completions of exactly 512 tokens (`min_new_tokens` through
   `generation_kwargs`), GRPO with the buffer (`ZPPOConfig(hint_ratio=0)`: replay, no hints) against ZPPO (replay and
   hints at the paper's 0.25). Each run prints its peak GPU memory and the time of each step; a final table is ready
   for docs/scaling.md. Runs that would pass the time budget (`--budget`, seconds) are skipped, and said so.

A random model solves nothing and its 512 tokens are noise, so the reward is a fixed hash of the completion (about a
third of completions "correct"): groups then have variance, some questions are admitted and the hint pass runs, as in
a real run. Time and memory are what this measures; learning is not.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402

GiB = 2**30
# Qwen2.5-0.5B-Instruct and Qwen2.5-1.5B-Instruct, as their config.json on the Hub states them
QWEN25 = {
    "0.5B": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2),
    "1.5B": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2),
}  # fmt: skip
QWEN25_SHARED = dict(vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                     tie_word_embeddings=True, hidden_act="silu", use_sliding_window=False)  # fmt: skip
COMPLETION_TOKENS = 512  # every completion is exactly this long: min_new_tokens = max_completion_length
QUESTIONS, GENERATIONS = 8, 4  # per step: 32 plain rollouts, plus replayed and hint groups
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
METHODS = {"grpo+buffer": dict(hint_ratio=0.0), "zppo": dict()}  # GRPO† keeps the buffer and replay; ZPPO all


@dataclass(frozen=True)
class Run:
    model: str  # a QWEN25 key
    quant: bool  # QLoRA (NF4) or LoRA on 16-bit weights
    precision: str  # "bf16" or "fp16" (the T4 path)
    method: str  # a METHODS key
    liger: bool = False

    @property
    def name(self) -> str:
        kind = "qlora" if self.quant else "lora"
        return f"qwen2.5-{self.model}-{kind}-{self.precision}-{self.method}" + ("-liger" if self.liger else "")


def plan(quick: bool = False, liger: bool = False) -> list[Run]:
    """The scale runs, most informative first (a budget cut drops the tail): per model, both methods on one
    configuration; both precisions and both quantisations appear for each model size over the two sizes."""
    pairs = [("0.5B", False, "bf16"), ("0.5B", True, "fp16")]
    if not quick:
        pairs += [("1.5B", True, "bf16"), ("1.5B", False, "fp16")]
    runs = [Run(model, quant, precision, method) for model, quant, precision in pairs for method in METHODS]
    return runs + ([Run("0.5B", False, "bf16", "zppo", liger=True)] if liger else [])


def qwen25_config(size: str):
    from transformers import Qwen2Config

    return Qwen2Config(**QWEN25[size], **QWEN25_SHARED)


def parameter_count(size: str) -> int:
    """Parameters of the architecture, counted on the meta device (nothing allocated)."""
    from transformers import Qwen2ForCausalLM

    with torch.device("meta"):
        model = Qwen2ForCausalLM(qwen25_config(size))
    return sum(p.numel() for p in model.parameters())


def build_tokenizer(vocab_size: int):
    """zppo_trl.tiny's character tokenizer padded with filler tokens to `vocab_size`, so that every id a random
    151,936-way model samples decodes."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from zppo_trl.tiny import CHATML_TEMPLATE, SPECIAL_TOKENS

    chars = [chr(i) for i in range(32, 127)] + ["\n"]
    tokens = SPECIAL_TOKENS + chars + ["<unk>"]
    tokens += [f"<t{i}>" for i in range(vocab_size - len(tokens))]
    tok = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(tokens)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|im_end|>",
                                        bos_token="<|im_start|>", unk_token="<unk>", padding_side="left")  # fmt: skip
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def hashed_reward(completions, **kwargs):
    """About a third of completions 'correct', fixed by their text: groups with variance, at no model's skill."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [float(hashlib.sha256(t.encode()).digest()[0] % 3 == 0) for t in texts]


def run_args(run: Run, output_dir: str, cpu: bool = False, completion_tokens: int = COMPLETION_TOKENS):
    """The ZPPOConfig of a scale run (`cpu=True`: the same settings on CPU, for --dry-run)."""
    from transformers import BitsAndBytesConfig

    from zppo_trl import ZPPOConfig

    dtype = torch.bfloat16 if run.precision == "bf16" else torch.float16
    init = {"dtype": dtype}
    if run.quant:
        init["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                         bnb_4bit_compute_dtype=dtype,
                                                         bnb_4bit_use_double_quant=True)  # fmt: skip
    return ZPPOConfig(
        output_dir=output_dir, bf16=run.precision == "bf16", fp16=run.precision == "fp16", use_cpu=cpu,
        per_device_train_batch_size=QUESTIONS * GENERATIONS, num_generations=GENERATIONS,
        max_completion_length=completion_tokens, generation_kwargs={"min_new_tokens": completion_tokens},
        candidate_max_tokens=512, hint_prompt_max_tokens=2048, teacher_column="solution",
        activation_checkpointing=True, learning_rate=1e-5, max_steps=2, logging_steps=1, report_to="none",
        save_strategy="no", seed=0, disable_tqdm=True, model_init_kwargs=init, use_liger_kernel=run.liger,
        **METHODS[run.method],
    )  # fmt: skip


class StepClock:
    """Wall time and peak GPU memory of each optimizer step (a TrainerCallback, built lazily: transformers import)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Clock(TrainerCallback):
            def __init__(self):
                self.seconds, self.peaks, self._start = [], [], None

            def on_step_begin(self, args, state, control, **kwargs):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self._start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                    self.peaks.append(torch.cuda.max_memory_allocated() / GiB)
                self.seconds.append(time.perf_counter() - self._start)

        return _Clock()


def save_random_model(size: str, dtype, folder: str, device: str) -> str:
    """A random Qwen2.5 model of `size` saved to `folder` (QLoRA loads it through bitsandbytes from there)."""
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(qwen25_config(size)).to(dtype)
    model.save_pretrained(folder)
    del model
    gc.collect()
    return folder


def dataset(n: int = 64):
    from zppo_trl.tiny import addition_dataset

    return addition_dataset(n)


def scale_run(run: Run, model_folder: str, tokenizer, output_dir: str, cpu: bool = False, completion_tokens=None):
    """Train `run` for its steps; returns a result dict (peak GiB, step seconds, checks)."""
    from peft import LoraConfig

    from zppo_trl import ZPPOTrainer
    from zppo_trl.quantization import upcast_quantized_adapters

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    args = run_args(run, output_dir, cpu=cpu, completion_tokens=completion_tokens or COMPLETION_TOKENS)
    clock = StepClock()
    start = time.perf_counter()
    trainer = ZPPOTrainer(model=model_folder, reward_funcs=hashed_reward, args=args, train_dataset=dataset(),
                          processing_class=tokenizer, callbacks=[clock],
                          peft_config=LoraConfig(r=16, lora_alpha=32, target_modules=LORA_TARGETS))  # fmt: skip
    upcast_quantized_adapters(trainer.model, args)  # idempotent: the fp16 path trains float32 adapters
    adapter_dtypes = sorted(
        {str(p.dtype).removeprefix("torch.") for p in trainer.model.parameters() if p.requires_grad}
    )
    built = time.perf_counter() - start
    trainer.train()
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    completion_lengths = [h["completions/mean_length"] for h in history if "completions/mean_length" in h]
    hints = sum(h.get("zppo/bcq_prompts", 0) + h.get("zppo/ncq_prompts", 0) for h in history)
    result = {
        "run": run.name,
        "peak_gib": max(clock.peaks, default=0.0),
        "step_seconds": clock.seconds,
        "build_seconds": built,
        "adapter_dtypes": adapter_dtypes,
        "finite_losses": bool(losses) and all(math.isfinite(x) for x in losses),
        "completion_length": max(completion_lengths, default=0),
        "admitted": trainer.replay_buffer.total_admitted,
        "hint_prompts": hints,
    }
    del trainer
    gc.collect()
    return result


def result_line(r: dict) -> str:
    steps = ", ".join(f"{s:.1f}" for s in r["step_seconds"])
    return (f"{r['run']}: peak GPU {r['peak_gib']:.2f} GiB, seconds per step [{steps}], built in "
            f"{r['build_seconds']:.0f} s, adapters {'/'.join(r['adapter_dtypes'])}, completion length "
            f"{r['completion_length']:.0f}, admitted {r['admitted']}, hint prompts {r['hint_prompts']:.0f}, finite "
            f"losses {r['finite_losses']}")  # fmt: skip


def summary_table(results: list[dict]) -> str:
    lines = ["| run | peak GPU (GiB) | s/step (last) | s/step (first) |", "|---|---|---|---|"]
    for r in results:
        last, first = r["step_seconds"][-1], r["step_seconds"][0]
        lines.append(f"| {r['run']} | {r['peak_gib']:.2f} | {last:.1f} | {first:.1f} |")
    return "\n".join(lines)


def run_scale(runs: list[Run], budget: float) -> int:
    """The scale plan on the GPU; skips what would pass `budget` seconds (estimated from the runs done)."""
    tokenizer = build_tokenizer(QWEN25_SHARED["vocab_size"])
    folder = tempfile.mkdtemp()
    start, results, failed = time.perf_counter(), [], 0
    for run in runs:
        spent = time.perf_counter() - start
        typical = spent / len(results) if results else 0.0
        if results and spent + typical > budget:
            print(f"SKIPPED {run.name}: the budget of {budget:.0f} s would be passed ({spent:.0f} s spent)")
            continue
        if run.liger and __import__("importlib").util.find_spec("liger_kernel") is None:
            print(f"SKIPPED {run.name}: liger-kernel is not installed")
            continue
        dtype = torch.bfloat16 if run.precision == "bf16" else torch.float16
        model_folder = os.path.join(folder, f"{run.model}-{run.precision}")
        if not os.path.isdir(model_folder):
            save_random_model(run.model, dtype, model_folder, "cuda")
        try:
            result = scale_run(run, model_folder, tokenizer, os.path.join(folder, run.name))
        except Exception as err:  # report and go on to the next run
            import traceback

            traceback.print_exc()
            print(f"FAIL {run.name}: {type(err).__name__}: {err}")
            failed += 1
            continue
        ok = result["finite_losses"] and result["completion_length"] == COMPLETION_TOKENS
        ok = ok and (run.precision == "bf16" or result["adapter_dtypes"] == ["float32"])
        print(f"{'PASS' if ok else 'FAIL'} {result_line(result)}", flush=True)
        failed += not ok
        results.append(result)
    print(f"\nscale runs on {torch.cuda.get_device_name()}, {time.perf_counter() - start:.0f} s in all:")
    print(summary_table(results))
    return failed


# --------------------------------------------------------------------------------------------------------------------
# checks on a tiny model


def run_checks(cpu: bool) -> int:
    import bitsandbytes
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig

    from zppo_trl import ZPPOConfig, ZPPOTrainer
    from zppo_trl.tiny import addition_dataset, build_char_tokenizer, build_tiny_llama

    tokenizer = build_char_tokenizer()
    folder = tempfile.mkdtemp()
    build_tiny_llama(tokenizer, hidden_size=128, num_layers=4).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    hard = set(range(0, 32, 2))
    # worked solutions with a sentence free of the answer, so the Hint baseline has something to show
    data = addition_dataset(32).map(lambda r: {"solution": "Add the tens first, then the ones. " + r["solution"]})

    def reward(completions, prompt_id, trainer_state, **kwargs):  # even ids hard until step 3, odd ones mixed
        return [float(pid not in hard or trainer_state.global_step >= 3) * float(i % 2 == 0 or pid % 4 == 1)
                for i, pid in enumerate(prompt_id)]  # fmt: skip

    configs = {
        "qlora-4bit-bf16-zppo": dict(quant=True, hint_type="bcq_ncq"),
        "qlora-4bit-bf16-prefix-exclude": dict(quant=True, hint_type="prefix", exclude_zero_variance_groups=True),
        "lora-bf16-hint-ga2": dict(quant=False, hint_type="hint", gradient_accumulation_steps=2),
    }
    failed = 0
    for name, options in configs.items():
        quant = options.pop("quant")
        if cpu and quant:
            continue
        init = {"dtype": torch.float32 if cpu else torch.bfloat16}
        if quant:
            init["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                             bnb_4bit_compute_dtype=torch.bfloat16)  # fmt: skip
        args = ZPPOConfig(
            output_dir=os.path.join(folder, name), bf16=not cpu, use_cpu=cpu, per_device_train_batch_size=16,
            num_generations=4, max_completion_length=16, max_steps=6, learning_rate=5e-3, logging_steps=1,
            report_to="none", save_strategy="no", teacher_column="solution", hint_ratio=1.0, replay_ratio=0.5,
            seed=0, model_init_kwargs=init, disable_tqdm=True, **options,
        )  # fmt: skip
        start = time.time()
        try:
            trainer = ZPPOTrainer(model=folder, reward_funcs=reward, args=args, train_dataset=data,
                                  processing_class=tokenizer,
                                  peft_config=LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))  # fmt: skip
            lora = {n: p.detach().float().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
            trainer.train()
            moved = max((p.detach().float() - lora[n]).abs().max().item()
                        for n, p in trainer.model.named_parameters() if n in lora)  # fmt: skip
            losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
            kinds = {k.split("/")[1].removesuffix("_prompts") for h in trainer.state.log_history for k in h
                     if k.startswith("zppo/") and k.endswith("_prompts") and h[k] > 0}  # fmt: skip
            four_bit = [m for m in trainer.model.modules() if isinstance(m, bitsandbytes.nn.Linear4bit)]
            checks = {
                "device": next(trainer.model.parameters()).device.type == ("cpu" if cpu else "cuda"),
                "4-bit layers": bool(four_bit) == quant,
                "finite losses": bool(losses) and all(math.isfinite(x) for x in losses),
                "LoRA moved": moved > 0,
                "buffer admitted": trainer.replay_buffer.total_admitted > 0,
                "hint groups": bool(kinds),
            }
            ok = all(checks.values())
            peak = 0 if cpu else torch.cuda.max_memory_allocated() / 2**20
            print(f"{'PASS' if ok else 'FAIL'} {name}: {checks}, kinds {sorted(kinds)}, graduated "
                  f"{trainer.replay_buffer.total_graduated}, max LoRA change {moved:.2e}, peak GPU {peak:.0f} MiB, "
                  f"{time.time() - start:.1f} s")  # fmt: skip
            failed += not ok
        except Exception as err:  # report and go on to the next configuration
            import traceback

            traceback.print_exc()
            print(f"FAIL {name}: {type(err).__name__}: {err}")
            failed += 1
        if not cpu:
            torch.cuda.reset_peak_memory_stats()
    return failed


# --------------------------------------------------------------------------------------------------------------------
# --dry-run: what CPU can check


def dry_run(runs: list[Run]) -> int:
    """Build every run's config (on CPU), print the plan with each architecture's parameter count, and run the
    harness (random model folder, tokenizer, reward, step clock, result line) for one tiny step on CPU."""
    from zppo_trl.tiny import build_char_tokenizer, build_tiny_llama

    for size in sorted({r.model for r in runs}):
        print(f"Qwen2.5-{size}: {parameter_count(size) / 1e9:.3f}B parameters, {QWEN25[size]}")
    folder = tempfile.mkdtemp()
    for run in runs:
        args = run_args(run, os.path.join(folder, run.name), cpu=True)
        print(f"PLAN {run.name}: bf16={args.bf16} fp16={args.fp16} hint_ratio={args.hint_ratio} "
              f"replay_ratio={args.replay_ratio} completions {args.max_completion_length} tokens "
              f"(min_new_tokens {args.generation_kwargs['min_new_tokens']}), {QUESTIONS} questions x {GENERATIONS}, "
              f"{'NF4 ' if 'quantization_config' in args.model_init_kwargs else ''}"
              f"{args.model_init_kwargs['dtype']}")  # fmt: skip
    tokenizer = build_char_tokenizer()
    build_tiny_llama(tokenizer).save_pretrained(os.path.join(folder, "tiny"))
    tiny = Run("0.5B", quant=False, precision="bf16", method="zppo")  # bf16 autocast runs on CPU too
    result = scale_run(tiny, os.path.join(folder, "tiny"), tokenizer, os.path.join(folder, "tiny-run"), cpu=True,
                       completion_tokens=8)  # fmt: skip
    print(f"HARNESS (tiny model, CPU, 8 tokens) {result_line(result)}")
    return 0 if result["finite_losses"] and len(result["step_seconds"]) == 2 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the 0.5B runs (about 3 min on one H200)")
    parser.add_argument("--dry-run", action="store_true", help="no GPU: configs, plan and one tiny CPU step")
    parser.add_argument("--cpu", action="store_true", help="the checks' non-quantised configuration on CPU")
    parser.add_argument("--liger", action="store_true", help="add a ZPPO run with use_liger_kernel=True")
    parser.add_argument("--skip-checks", action="store_true", help="only the scale runs")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for the scale runs (default 420)")
    options = parser.parse_args(argv)
    runs = plan(quick=options.quick, liger=options.liger)
    if options.dry_run:
        return dry_run(runs)
    if not options.cpu and not torch.cuda.is_available():
        print("FAIL no CUDA device (use --dry-run or --cpu on a machine without one)")
        return 1
    import bitsandbytes
    import peft
    import transformers
    import trl

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, peft "
          f"{peft.__version__}, bitsandbytes {bitsandbytes.__version__}, "
          f"GPU {'none (--cpu)' if options.cpu else torch.cuda.get_device_name()}")  # fmt: skip
    failed = 0 if options.skip_checks else run_checks(options.cpu)
    if not options.cpu:
        failed += run_scale(runs, options.budget)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
