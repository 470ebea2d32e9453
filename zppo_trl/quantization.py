"""Keep bitsandbytes 4-bit layers trainable on CPU (QLoRA).

Measured with bitsandbytes 0.50.2: a `Linear4bit` that runs once in eval mode without grad on a CPU with
AVX512-BF16 (e.g. `generate` right after loading, since HF models load in eval mode) repacks its weight into a CPU
inference layout. Afterwards its LoRA gradients are silently wrong (layer-0 `lora_A` grad norm 0.00045 instead of
~0.85), or the step crashes for layers with a bias. `disable_cpu_inference_repacking` turns that path off on every
4-bit layer and restores any weight already repacked, so QLoRA training is correct whatever ran before. On GPUs the
flag is never consulted; the function is then a cheap no-op. bitsandbytes stays optional: without it, nothing to do.
"""

from __future__ import annotations

import importlib.util
import logging

logger = logging.getLogger(__name__)


def disable_cpu_inference_repacking(model) -> int:
    """Turn off bitsandbytes' CPU inference repacking on every `Linear4bit` of `model`; returns how many layers
    had a weight already repacked (and were restored to the trainable layout)."""
    if importlib.util.find_spec("bitsandbytes") is None:
        return 0
    from bitsandbytes.nn import Linear4bit

    restored = 0
    for module in model.modules():
        if not isinstance(module, Linear4bit):
            continue
        module.support_avx512bf16_for_cpu = False
        state = getattr(module.weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            from bitsandbytes.nn.modules import _convert_weight_packed_for_cpu_inverse

            module.weight.data, module.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                module.weight.data, state
            )
            restored += 1
    if restored:
        logger.warning(
            "restored %d 4-bit layers repacked for CPU inference, so their LoRA gradients are right", restored
        )
    return restored
