"""GPU smoke check of the code paths CI cannot run: QLoRA (bitsandbytes 4-bit, bf16) and LoRA in bf16 on CUDA,
through `ZPPOTrainer.train()` with replay and hint groups, on a tiny model built in code (nothing downloaded).

    python scripts/gpu_smoke.py          # needs a CUDA GPU and bitsandbytes; prints one PASS/FAIL line per check
    python scripts/gpu_smoke.py --cpu    # dry run of the non-quantised configuration on CPU (fp32)

Checks per configuration: the model's 4-bit layers are on the GPU, every logged loss is finite, LoRA weights moved,
the buffer admitted questions, hint (or baseline) groups were rolled out. Not a test: CI has no GPU.
"""

import math
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402


def main() -> int:
    cpu = "--cpu" in sys.argv
    if not cpu and not torch.cuda.is_available():
        print("FAIL no CUDA device")
        return 1
    import bitsandbytes
    import peft
    import transformers
    import trl
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig

    from zppo_trl import ZPPOConfig, ZPPOTrainer
    from zppo_trl.tiny import addition_dataset, build_char_tokenizer, build_tiny_llama

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, peft "
          f"{peft.__version__}, bitsandbytes {bitsandbytes.__version__}, "
          f"GPU {'none (--cpu)' if cpu else torch.cuda.get_device_name()}")  # fmt: skip
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
            output_dir=os.path.join(folder, name), bf16=not cpu, use_cpu=cpu, per_device_train_batch_size=16, num_generations=4,
            max_completion_length=16, max_steps=6, learning_rate=5e-3, logging_steps=1, report_to="none",
            save_strategy="no", teacher_column="solution", hint_ratio=1.0, replay_ratio=0.5, seed=0,
            model_init_kwargs=init, disable_tqdm=True, **options,
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
            print(f"{'PASS' if ok else 'FAIL'} {name}: {checks}, kinds {sorted(kinds)}, graduated "
                  f"{trainer.replay_buffer.total_graduated}, max LoRA change {moved:.2e}, peak GPU "
                  f"{0 if cpu else torch.cuda.max_memory_allocated() / 2**20:.0f} MiB, {time.time() - start:.1f} s")  # fmt: skip
            failed += not ok
        except Exception as err:  # report and go on to the next configuration
            import traceback

            traceback.print_exc()
            print(f"FAIL {name}: {type(err).__name__}: {err}")
            failed += 1
        if not cpu:
            torch.cuda.reset_peak_memory_stats()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
