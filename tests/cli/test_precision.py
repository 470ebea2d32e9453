"""Precision by device (zppo_trl/precision.py, the CLI) and QLoRA adapters in the dtype the run trains in.

No GPU here: the device rule is checked with the capability checks patched (a T4 answers
`is_bf16_supported()` True, because bf16 is emulated, and False with `including_emulation=False`). The adapter dtype
is checked on a real 4-bit model on CPU (bitsandbytes' CPU backend): TRL 1.16 casts QLoRA adapters to bfloat16 under
any precision, and an optimizer step at lr 1e-5 then leaves most of their weights where they were."""

import importlib.util

import pytest
import torch

from zppo_trl.cli import device_flags
from zppo_trl.precision import Precision, model_dtype_name, pick_precision

LORA_TARGETS = ["q_proj", "v_proj"]


def pretend_gpu(monkeypatch, name: str, native_bf16: bool) -> None:
    """CUDA present; bf16 native on Ampere and later, emulated (True only with the default argument) before."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: name)
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: native_bf16 or including_emulation
    )


@pytest.mark.parametrize(
    "gpu, native_bf16, expected",
    [("NVIDIA A100-SXM4-40GB", True, "bf16"),  # compute capability 8.0: bf16 in hardware
     ("Tesla T4", False, "fp16"),  # 7.5: bf16 only emulated, though is_bf16_supported() says True
     (None, False, "fp32")],  # no GPU: CPU
)  # fmt: skip
def test_the_device_picks_the_precision(monkeypatch, gpu, native_bf16, expected):
    if gpu is None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
        if getattr(torch, "xpu", None) is not None:
            monkeypatch.setattr(torch.xpu, "is_available", lambda: False)
    else:
        pretend_gpu(monkeypatch, gpu, native_bf16)
    precision = pick_precision()
    assert precision.name == expected
    flags = precision.training_flags()
    assert (flags["bf16"], flags["fp16"], flags.get("use_cpu", False)) == (
        expected == "bf16", expected == "fp16", expected == "fp32"
    )  # fmt: skip
    # a frozen base (LoRA, QLoRA) loads in the 16-bit format; weights that train stay float32
    assert precision.model_dtype(frozen_base=True) == {"bf16": torch.bfloat16, "fp16": torch.float16}.get(
        expected, torch.float32
    )
    assert precision.model_dtype(frozen_base=False) == torch.float32


def test_the_cli_adds_device_flags_only_for_settings_not_given(monkeypatch):
    pretend_gpu(monkeypatch, "Tesla T4", native_bf16=False)
    t4 = pick_precision()
    assert device_flags(t4, set()) == ["--bf16", "false", "--fp16", "true"]
    for given in ({"bf16"}, {"fp16"}, {"use_cpu"}):  # a flag or YAML key names the choice: it wins
        assert device_flags(t4, given) == []
    assert device_flags(Precision("bf16", "cuda", "A100"), set()) == ["--bf16", "true", "--fp16", "false"]
    cpu = Precision("fp32", "cpu", "no GPU found")
    assert device_flags(cpu, set()) == ["--use_cpu", "true", "--bf16", "false", "--fp16", "false"]
    assert device_flags(cpu, {"bf16"}) == ["--use_cpu", "true"]  # bf16 on CPU, as asked
    assert device_flags(Precision(None, "mps", "TRL's default"), set()) == []
    assert [model_dtype_name(p, frozen) for p in ("bf16", "fp16", "fp32") for frozen in (True, False)] == [
        "bfloat16", "float32", "float16", "float32", "float32", "float32"
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# QLoRA adapters

needs_bitsandbytes = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="no bitsandbytes")


def load_4bit(folder):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(folder, quantization_config=quant, device_map="cpu")


def alternating_reward(completions, **kwargs):  # rewards 0, 1, 0, 1 in every group: every advantage is non-zero
    return [float(i % 2) for i in range(len(completions))]


def adapters(model) -> dict:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def moved_fraction(before: dict, model) -> float:
    """Share of the LoRA A weights an optimizer step changed."""
    after = adapters(model)
    names = [n for n in before if "lora_A" in n]
    changed = sum(int((after[n].detach().float() != before[n]).sum()) for n in names)
    return changed / sum(before[n].numel() for n in names)


def lora_config():
    from peft import LoraConfig

    # init_lora_weights=False: B != 0, so A gets a gradient in the first step
    return LoraConfig(r=4, target_modules=LORA_TARGETS, init_lora_weights=False, task_type="CAUSAL_LM")


@needs_bitsandbytes
def test_trl_leaves_qlora_adapters_in_bfloat16_where_a_small_step_is_lost(tiny_dir, tmp_path):
    """What the fix is for: TRL's GRPOTrainer itself, fp32 training, lr 1e-5."""
    from trl import GRPOConfig, GRPOTrainer

    from zppo_trl.quantization import disable_cpu_inference_repacking
    from zppo_trl.tiny import addition_dataset

    # conftest.tiny_config's sizes, for TRL's own config
    args = GRPOConfig(str(tmp_path), per_device_train_batch_size=8, num_generations=4, max_completion_length=8,
                      max_steps=1, learning_rate=1e-5, report_to="none", use_cpu=True, bf16=False, save_strategy="no",
                      seed=0, disable_tqdm=True)  # fmt: skip
    trainer = GRPOTrainer(model=load_4bit(tiny_dir), reward_funcs=alternating_reward, args=args,
                          train_dataset=addition_dataset(8), peft_config=lora_config())  # fmt: skip
    disable_cpu_inference_repacking(trainer.model)
    assert {p.dtype for p in adapters(trainer.model).values()} == {torch.bfloat16}
    before = {n: p.detach().float().clone() for n, p in adapters(trainer.model).items()}
    trainer.train()
    # bfloat16 keeps 8 significant bits: a step of ~1e-5 moves only weights below ~2.5e-3 in size
    assert moved_fraction(before, trainer.model) < 0.2


@needs_bitsandbytes
def test_zppo_keeps_qlora_adapters_in_float32_unless_training_in_bf16(tiny_dir, make_trainer):
    from zppo_trl.quantization import upcast_quantized_adapters

    trainer = make_trainer(alternating_reward, model=load_4bit(tiny_dir), peft_config=lora_config(), max_steps=1,
                           learning_rate=1e-5)  # fmt: skip
    upcast_quantized_adapters(trainer.model, trainer.args)  # idempotent: the trainer may have done it already
    assert {p.dtype for p in adapters(trainer.model).values()} == {torch.float32}
    before = {n: p.detach().float().clone() for n, p in adapters(trainer.model).items()}
    trainer.train()
    assert trainer.state.global_step == 1
    assert moved_fraction(before, trainer.model) > 0.9

    # bf16 training keeps TRL's bfloat16 adapters (the QLoRA paper's recipe); a model that is not quantised is not
    # touched (PEFT's own dtype rules hold)
    class Args:
        bf16, fp16 = True, False

    model = trainer.model
    for p in adapters(model).values():
        p.data = p.data.to(torch.bfloat16)
    assert upcast_quantized_adapters(model, Args) == 0
    assert {p.dtype for p in adapters(model).values()} == {torch.bfloat16}
    Args.bf16 = False
    assert upcast_quantized_adapters(model, Args) == len(adapters(model))
    plain = torch.nn.Linear(2, 2).to(torch.bfloat16)
    assert upcast_quantized_adapters(plain, Args) == 0 and plain.weight.dtype == torch.bfloat16


@needs_bitsandbytes
def test_fp16_with_bf16_compute_in_the_4bit_layers_is_warned(tiny_dir, caplog):
    import logging

    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from zppo_trl import quantization

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_dir, quantization_config=quant, device_map="cpu"), lora_config()
    )

    class Args:  # a T4 run: fp16, while the 4-bit layers were loaded to compute in bfloat16
        bf16, fp16 = False, True

    with caplog.at_level(logging.WARNING, logger=quantization.__name__):
        quantization.upcast_quantized_adapters(model, Args)
    assert "bnb_4bit_compute_dtype=torch.float16" in caplog.text and "--dtype float16" in caplog.text
