"""QLoRA on CPU (bitsandbytes optional).

bitsandbytes repacks a 4-bit layer for CPU inference in its first eval-mode, no-grad forward when the layer's
`support_avx512bf16_for_cpu` is true, which bitsandbytes sets on CPUs with AVX512-BF16. The tests set that flag
themselves, so both ZPPO paths run through bitsandbytes' own repack on every CPU, with or without AVX512-BF16:
- prevented: the trainer is built before the generate; LoRA gradients equal a fresh load's;
- restored: the generate ran first; the weights come back within bfloat16 rounding of their scales and the LoRA
  gradients close to a fresh load's, in size and direction.
8-bit layers have no such repack: their LoRA gradients after a generate equal a fresh load's.
"""

import importlib.util
import logging

import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes not installed")


@pytest.fixture
def build_lora_trainer(make_trainer):
    """A ZPPOTrainer with the same LoRA initialisation every time (GRPOTrainer seeds before wrapping the model)."""
    from peft import LoraConfig

    from zppo_trl.rewards import boxed_accuracy_reward

    def build(model):  # init_lora_weights=False: B != 0, so A gets a gradient
        lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        return make_trainer(boxed_accuracy_reward, model=model, peft_config=lora, max_steps=1)

    return build


def load(folder, bits, double_quant=False):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if bits == 4:
        quant = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32, bnb_4bit_use_double_quant=double_quant
        )
    else:
        quant = BitsAndBytesConfig(load_in_8bit=True)
    return AutoModelForCausalLM.from_pretrained(folder, quantization_config=quant, device_map="cpu")


def linear_4bit_layers(model) -> dict:
    from bitsandbytes.nn import Linear4bit

    return {
        name.removeprefix("base_model.model."): m for name, m in model.named_modules() if isinstance(m, Linear4bit)
    }


def flag_as_on_an_avx512_bf16_cpu(model) -> dict:
    layers = linear_4bit_layers(model)
    for layer in layers.values():
        layer.support_avx512bf16_for_cpu = True  # what bitsandbytes sets there: the next eval no-grad forward repacks
    return layers


def is_repacked(layer) -> bool:
    return getattr(layer.weight.quant_state, "packing_format_for_cpu", False)


def greedy_generate(model, tokenizer):
    """What a user does right after loading (HF models load in eval mode; generate runs without grad)."""
    batch = tokenizer(["What is 1 + 1?"], return_tensors="pt")
    model.generate(**batch, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)


def lora_grads(model, tokenizer) -> dict:
    batch = tokenizer(["What is 1 + 1?"], return_tensors="pt")
    model.train()
    model(**batch, labels=batch["input_ids"]).loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def flat(grads: dict) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads.values()]).double()  # one precision whatever the adapters train in


def test_building_the_trainer_first_prevents_the_repack_and_gradients_equal_a_fresh_load(
    tiny_dir, tokenizer, build_lora_trainer
):
    fresh = lora_grads(build_lora_trainer(load(tiny_dir, 4)).model, tokenizer)
    first_a = next(n for n in fresh if "layers.0" in n and "lora_A" in n)
    assert fresh[first_a].norm() > 1e-3  # non-zero, of a real magnitude

    model = load(tiny_dir, 4)
    layers = flag_as_on_an_avx512_bf16_cpu(model)
    trainer = build_lora_trainer(model)
    assert layers and not any(layer.support_avx512bf16_for_cpu for layer in layers.values())
    trainer.model.eval()  # as in evaluation, or a user's generate
    greedy_generate(trainer.model, tokenizer)  # eval mode, no grad: would repack every layer without the trainer
    assert not any(is_repacked(layer) for layer in layers.values())
    after_generate = lora_grads(trainer.model, tokenizer)
    assert fresh.keys() == after_generate.keys()
    for name, grad in fresh.items():
        assert torch.equal(grad, after_generate[name]), name

    trainer.train()  # and the loop runs on it
    assert trainer.state.global_step == 1


@pytest.mark.parametrize("double_quant", [False, True])
def test_a_model_repacked_before_the_trainer_is_restored_within_bfloat16_rounding(
    tiny_dir, tokenizer, build_lora_trainer, caplog, monkeypatch, double_quant
):
    import bitsandbytes.functional as F

    from zppo_trl import quantization

    fresh_trainer = build_lora_trainer(load(tiny_dir, 4, double_quant))
    fresh_layers = linear_4bit_layers(fresh_trainer.model)
    fresh = lora_grads(fresh_trainer.model, tokenizer)

    model = load(tiny_dir, 4, double_quant)
    layers = flag_as_on_an_avx512_bf16_cpu(model)
    greedy_generate(model, tokenizer)
    assert all(is_repacked(layer) for layer in layers.values())  # bitsandbytes' own repack ran
    monkeypatch.setattr(quantization, "_warned_lossy_restore", False)
    with caplog.at_level(logging.WARNING, logger=quantization.__name__):
        trainer = build_lora_trainer(model)
    warnings = [r.getMessage() for r in caplog.records if r.name == quantization.__name__]
    assert len(warnings) == 1 and f"{len(layers)} 4-bit layers" in warnings[0]
    assert "load the model, build the ZPPOTrainer, then generate" in warnings[0]

    # the 4-bit codes come back byte-identical; each weight within bfloat16 rounding of its block's scale
    bound = quantization.RESTORED_WEIGHT_MAX_RELATIVE_ERROR
    worst = 0.0
    for name, layer in linear_4bit_layers(trainer.model).items():
        loaded, restored = fresh_layers[name].weight, layer.weight
        assert not is_repacked(layer) and torch.equal(restored.data, loaded.data), name
        w_loaded = F.dequantize_4bit(loaded.data, loaded.quant_state)
        w_restored = F.dequantize_4bit(restored.data, restored.quant_state)
        assert w_restored.dtype == w_loaded.dtype == torch.float32
        nonzero = w_loaded != 0
        worst = max(worst, ((w_restored - w_loaded)[nonzero] / w_loaded[nonzero]).abs().max().item())
    assert worst <= bound

    # LoRA gradients: close to a fresh load's, in direction and size; the faults this guards against gave norms
    # ~1000x too small (no restore) or components off by 2x (bitsandbytes' inverse, scales in the wrong order)
    g_fresh, g_restored = flat(fresh), flat(lora_grads(trainer.model, tokenizer))
    assert g_fresh.norm() > 1e-3
    assert torch.nn.functional.cosine_similarity(g_fresh, g_restored, dim=0) > 0.99
    assert abs(g_restored.norm() / g_fresh.norm() - 1) < 0.03
    # weights off by up to `bound` relative, and gradients rounded to bfloat16 (TRL's QLoRA adapters) on both sides:
    # measured 0.60% (0.48% with double quantisation) of the gradient's norm, against 4.8% for bitsandbytes' own
    # inverse
    assert (g_restored - g_fresh).norm() / g_fresh.norm() < 4 * bound

    # warned once per process
    layer = next(iter(layers.values()))
    layer.support_avx512bf16_for_cpu = True
    with torch.no_grad():
        layer.eval()(torch.randn(1, layer.in_features))
    assert is_repacked(layer)
    caplog.clear()
    assert quantization.disable_cpu_inference_repacking(trainer.model) == 1 and not is_repacked(layer)
    assert not [r for r in caplog.records if r.name == quantization.__name__]


def test_8bit_lora_gradients_after_an_eval_mode_generate_equal_a_fresh_load(tiny_dir, tokenizer, build_lora_trainer):
    fresh = lora_grads(build_lora_trainer(load(tiny_dir, 8)).model, tokenizer)
    model = load(tiny_dir, 8)
    greedy_generate(model, tokenizer)
    after_generate = lora_grads(build_lora_trainer(model).model, tokenizer)
    first_a = next(n for n in fresh if "layers.0" in n and "lora_A" in n)
    assert fresh[first_a].norm() > 1e-3
    for name, grad in fresh.items():
        assert torch.equal(grad, after_generate[name]), name


def test_the_optional_cpu_kernel_warning_of_bitsandbytes_is_dropped(caplog):
    import zppo_trl.quantization  # noqa: F401  (installs the filter)

    bnb_cpu = logging.getLogger("bitsandbytes.backends.cpu.ops")  # bitsandbytes logs it there, on AVX512-BF16 CPUs
    with caplog.at_level(logging.WARNING):
        bnb_cpu.warning(
            "Failed to load CPU gemm_4bit_forward from kernels-community: %s.", "No module named 'kernels'"
        )
        bnb_cpu.warning("any other warning")
    assert [r.getMessage() for r in caplog.records] == ["any other warning"]
