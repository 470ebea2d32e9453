"""Measure training activation memory per token (LoRA forward + backward through TRL's ZPPO loss path) and turn it
into a micro-batch / hint_ratio budget for a GPU of a given size.

    python examples/activation_memory.py                 # the embedded SmolLM2-135M on CPU (fp32)
    python examples/activation_memory.py --model PATH    # any local causal LM; on a GPU it also reports CUDA peaks

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.model, *args.one)))
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
