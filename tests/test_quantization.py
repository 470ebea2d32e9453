"""QLoRA on CPU (bitsandbytes optional): LoRA gradients after an eval-mode generate are non-zero and equal those of
a freshly loaded model, for 4-bit and 8-bit loads, once ZPPOTrainer (or disable_cpu_inference_repacking) ran."""

import importlib.util

import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes not installed")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer):
    from zppo_trl.tiny import build_tiny_llama

    folder = tmp_path_factory.mktemp("tiny")
    build_tiny_llama(tokenizer, hidden_size=64, num_layers=2).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def lora_grads(folder, tokenizer, bits, generate_first):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from zppo_trl.quantization import disable_cpu_inference_repacking

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32) if bits == 4 else \
        BitsAndBytesConfig(load_in_8bit=True)  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=quant, device_map="cpu")
    batch = tokenizer(["What is 1 + 1?"], return_tensors="pt")
    if generate_first:  # HF models load in eval mode: this is where bitsandbytes may repack for CPU inference
        model.generate(**batch, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    disable_cpu_inference_repacking(model)
    torch.manual_seed(0)  # the same LoRA initialisation in both loads
    model = get_peft_model(
        model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )  # B != 0: A gets a gradient
    model.train()
    out = model(**batch, labels=batch["input_ids"])
    out.loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("bits", [4, 8])
def test_lora_gradients_after_an_eval_mode_generate_are_right(tiny_dir, tokenizer, bits):
    fresh = lora_grads(tiny_dir, tokenizer, bits, generate_first=False)
    after_generate = lora_grads(tiny_dir, tokenizer, bits, generate_first=True)
    first_a = next(n for n in fresh if "layers.0" in n and "lora_A" in n)
    assert fresh[first_a].norm() > 1e-3  # non-zero, of a real magnitude
    for name, grad in fresh.items():
        assert torch.allclose(grad, after_generate[name], rtol=1e-3, atol=1e-6), name


def test_every_4bit_layer_has_cpu_repacking_off(tiny_dir):
    from bitsandbytes.nn import Linear4bit
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from zppo_trl.quantization import disable_cpu_inference_repacking

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, quantization_config=BitsAndBytesConfig(load_in_4bit=True),
                                                 device_map="cpu")  # fmt: skip
    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    for m in layers:
        m.support_avx512bf16_for_cpu = True  # what bitsandbytes sets on AVX512-BF16 CPUs
    assert disable_cpu_inference_repacking(model) == 0 and layers
    assert not any(m.support_avx512bf16_for_cpu for m in layers)
