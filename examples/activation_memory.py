"""Measure training activation memory per token (LoRA forward + backward through TRL's ZPPO loss path) and turn it
into a micro-batch / hint_ratio budget for a GPU of a given size.

    python examples/activation_memory.py                 # the embedded SmolLM2-135M on CPU (fp32)
    python examples/activation_memory.py --model PATH    # any local causal LM; on a GPU it also reports CUDA peaks
    python examples/activation_memory.py --trainer       # a plain-only and a mixed micro-batch through ZPPOTrainer

Method: peak memory of one LoRA forward+backward at T and 2T tokens (batch x length), minus the idle baseline; the
slope is the per-token activation cost. On CPU it is read from the allocator statistics of a fresh process per
size (peak RSS); on CUDA from torch.cuda.max_memory_allocated. The budget then is
    tokens per micro-batch <= (GPU memory - weights - LoRA optimizer state - headroom) / bytes per token
and a ZPPO micro-batch holds plain rows (prompt + completion tokens) plus hint rows (question + 2 candidates +
completion), which is what `hint_ratio` and `candidate_max_tokens` trade against `per_device_train_batch_size`.
"""

import argparse
import json
import os
import resource
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def measure(model_path: str | None, batch: int, length: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from zppo_trl.models import embedded_model_path

    torch.set_num_threads(2)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path or embedded_model_path(), dtype=dtype).to(device)
    model = get_peft_model(model, LoraConfig(r=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    ids = torch.randint(10, 1000, (batch, length), device=device)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    logits = model(input_ids=ids).logits  # full logits: an upper bound on TRL's fused-lm-head path
    logps = torch.log_softmax(logits.float(), -1).gather(-1, ids.unsqueeze(-1)).sum()
    logps.backward()
    out = {"tokens": batch * length, "dtype": str(dtype), "device": device,
           "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "base_rss_bytes": base_rss,
           "weights_bytes": sum(p.numel() * p.element_size() for p in model.parameters())}  # fmt: skip
    if device == "cuda":
        out["peak_cuda_bytes"] = torch.cuda.max_memory_allocated() - base_cuda
    return out


def zppo_trainer(model_path: str | None, case: str, output_dir: str):
    """A ZPPOTrainer on the demo questions (LoRA r=16) whose one micro-batch per round is the whole round: `plain`
    (hint_ratio 0: 8 plain rows) or `mixed` (hint_ratio 1: the plain rows plus one BCQ and one NCQ group). The reward
    is 0 for every rollout, so every question is hard and the hint groups are always built."""
    import torch
    from peft import LoraConfig

    from zppo_trl import ZPPOConfig, ZPPOTrainer
    from zppo_trl.demo_tasks import load_demo_tasks
    from zppo_trl.models import embedded_model_path

    torch.set_num_threads(2)
    cuda = torch.cuda.is_available()

    def never_right(completions, **kwargs):
        return [0.0] * len(completions)

    args = ZPPOConfig(
        output_dir=output_dir, per_device_train_batch_size=8, num_generations=4, gradient_accumulation_steps=1,
        max_completion_length=64, max_steps=1, hint_ratio=0.0 if case == "plain" else 1.0, replay_ratio=0.0,
        teacher_column="solution", candidate_max_tokens=64, hint_prompt_max_tokens=256, report_to="none",
        use_cpu=not cuda, bf16=cuda, activation_checkpointing=False, save_strategy="no", seed=0,
    )  # fmt: skip
    return ZPPOTrainer(
        model=model_path or embedded_model_path(), reward_funcs=never_right, args=args,
        train_dataset=load_demo_tasks("train"),
        peft_config=LoraConfig(r=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
    )  # fmt: skip


def dump_micro_batch(model_path: str | None, case: str, path: str) -> None:
    """Generate one round (plain, or plain + hint groups) and save the micro-batch TRL would train on."""
    import torch

    trainer = zppo_trainer(model_path, case, os.path.dirname(path))
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    torch.save({k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}, path)


def measure_micro_batch(model_path: str | None, case: str, path: str) -> dict:
    """In a fresh process: build the same trainer (no generation), then one `compute_loss` + backward of the saved
    micro-batch through ZPPOTrainer (its split forward for a mixed micro-batch); peak memory over the step."""
    import torch

    trainer = zppo_trainer(model_path, case, os.path.dirname(path))
    device = trainer.accelerator.device
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in torch.load(path).items()}
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by transformers' training loop, which is not running
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    trainer.compute_loss(trainer.model, inputs).backward()
    rows = inputs["prompt_ids"].shape[0]
    hint = inputs.get("zppo_is_hint", torch.zeros(rows, dtype=torch.bool, device=device))
    out = {"case": case, "rows": rows, "hint_rows": int(hint.sum()), "device": device.type,
           "prompt_width": inputs["prompt_ids"].shape[1], "completion_width": inputs["completion_ids"].shape[1],
           "tokens": int(inputs["prompt_mask"].sum() + inputs["completion_mask"].sum()),
           "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "base_rss_bytes": base_rss}  # fmt: skip
    if device.type == "cuda":
        out["peak_cuda_bytes"] = torch.cuda.max_memory_allocated() - base_cuda
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--trainer", action="store_true", help="plain-only vs mixed micro-batch through ZPPOTrainer")
    parser.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dump", nargs=2, help=argparse.SUPPRESS)  # case path
    parser.add_argument("--step", nargs=2, help=argparse.SUPPRESS)  # case path
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.model, *args.one)))
        return
    if args.dump:
        dump_micro_batch(args.model, *args.dump)
        return
    if args.step:
        print(json.dumps(measure_micro_batch(args.model, *args.step)))
        return
    if args.trainer:
        import tempfile

        model = ["--model", args.model] if args.model else []
        results = []
        with tempfile.TemporaryDirectory() as tmp:
            for case in ("plain", "mixed"):
                path = os.path.join(tmp, f"{case}.pt")
                subprocess.run([sys.executable, __file__, "--dump", case, path, *model], check=True,
                               capture_output=True)  # fmt: skip
                done = subprocess.run([sys.executable, __file__, "--step", case, path, *model], check=True,
                                      capture_output=True, text=True)  # fmt: skip
                results.append(json.loads(done.stdout.splitlines()[-1]))
        for r in results:
            key = "peak_cuda_bytes" if "peak_cuda_bytes" in r else "peak_rss_bytes"
            step = r[key] - (0 if key == "peak_cuda_bytes" else r["base_rss_bytes"])
            print(
                f"{r['case']:>5} micro-batch: {r['rows']} rows ({r['hint_rows']} hint), prompt width "
                f"{r['prompt_width']}, completion width {r['completion_width']}, {r['tokens']} tokens: one "
                f"forward+backward adds {step / 2**20:.0f} MiB over the loaded trainer ({r['device']})"
            )
        print(json.dumps(results))
        return
    runs = []
    for batch in (2, 4):
        cmd = [sys.executable, __file__, "--one", str(batch), str(args.length)] + (
            ["--model", args.model] if args.model else []
        )
        runs.append(
            json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        )
    key = "peak_cuda_bytes" if "peak_cuda_bytes" in runs[0] else "peak_rss_bytes"
    per_token = (runs[1][key] - runs[0][key]) / (runs[1]["tokens"] - runs[0]["tokens"])
    print(
        f"device {runs[0]['device']}, {runs[0]['dtype']}: {per_token / 2**20:.3f} MiB per trained token "
        f"(LoRA r=16, full logits), weights {runs[0]['weights_bytes'] / 2**30:.2f} GiB"
    )
    for gib in (16, 24):
        free = gib * 2**30 * 0.8 - runs[0]["weights_bytes"]  # 20% headroom for the allocator, CUDA context, vLLM off
        print(f"  {gib} GB GPU: about {int(free / per_token):,} tokens per micro-batch at this per-token cost")
    print(json.dumps({"per_token_bytes": per_token, "runs": runs}))


if __name__ == "__main__":
    main()
