"""Keep bitsandbytes 4-bit layers trainable on CPU (QLoRA), and QLoRA adapters in the dtype the run trains in.

Measured with bitsandbytes 0.50.2: a `Linear4bit` whose `support_avx512bf16_for_cpu` is true (bitsandbytes sets it on
CPUs with AVX512-BF16) repacks its weight into a CPU inference layout the first time it runs in eval mode without
grad (e.g. `generate` right after loading, since HF models load in eval mode). Afterwards its LoRA gradients are
silently wrong (layer-0 `lora_A` grad norm 0.00045 instead of ~0.85), or the step crashes for layers with a bias.

`disable_cpu_inference_repacking` clears that flag on every 4-bit layer, so a model it has seen is never repacked:
ZPPOTrainer calls it before any forward of its own. A layer already repacked (the user ran `generate` before building
the trainer) is restored, but not exactly: the repack keeps only a bfloat16 copy of each block's float32 scale
(`absmax`) and drops the float32 one, so the restored weights differ from the loaded ones by up to 2**-8 relative.
bitsandbytes' own inverse is worse: without double quantisation it leaves `absmax` in bfloat16 and in the repacked
[K / blocksize, N] order, which scrambles the scales of any layer with more inputs than one block (max relative
weight error 121% on the tiny Llama's `down_proj`); with double quantisation it quantises the rounded scales again
(0.84%). We restore the scales ourselves, in float32 and load order, without double quantisation.

On GPUs the flag is never consulted; the function is then a cheap no-op. bitsandbytes stays optional: a model can only
hold a `Linear4bit` once bitsandbytes is imported, so the function imports nothing.

Importing this module also drops one bitsandbytes log line, "Failed to load CPU gemm_4bit_forward from
kernels-community", logged when bitsandbytes is imported on a CPU with AVX512-BF16 without the optional `kernels`
package (or without the Hub, from which `kernels` downloads it). transformers imports bitsandbytes through PEFT
whenever both are installed, so every run printed it, quantised or not; the kernel only speeds up the inference layout
that ZPPO turns off. The filter acts only if this module is imported before bitsandbytes. For the same reason this
module imports bitsandbytes itself with `kernels` hidden, so that the import makes no request to the Hub.

`upcast_quantized_adapters` undoes TRL's bfloat16 cast of QLoRA adapters when the run does not train in bf16 (fp16 on
a T4, or fp32): ZPPOTrainer calls it once TRL has built the PEFT model, before the optimizer exists.
"""

from __future__ import annotations

import importlib.util
import logging
import sys

import torch

logger = logging.getLogger(__name__)

# Largest relative change of a dequantised weight after a restore: each block's scale was rounded to bfloat16 (8
# significant bits, round to nearest: 2**-8 = 0.39%). Measured on the tiny Llama (tests/cli/test_quantization.py):
# 0.38%, with and without double quantisation.
RESTORED_WEIGHT_MAX_RELATIVE_ERROR = 2.0**-8
_warned_lossy_restore = False


class _DropOptionalCpuKernelWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward from kernels-community")


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropOptionalCpuKernelWarning())


def _import_bitsandbytes_without_kernels() -> None:
    """Import bitsandbytes (if installed and not imported yet) with the optional `kernels` package hidden from it.

    On a CPU with AVX512-BF16, importing bitsandbytes 0.50 calls `kernels.get_kernel("kernels-community/...")`, which
    asks the Hub for that kernel whenever `kernels` is installed: a network request in every run, since PEFT imports
    bitsandbytes. Hidden, bitsandbytes' own `try` falls back to its built-in CPU code (its log line is dropped above).
    """
    if "bitsandbytes" in sys.modules or importlib.util.find_spec("bitsandbytes") is None:
        return
    kernels = sys.modules.get("kernels")
    sys.modules["kernels"] = None  # makes `from kernels import ...` raise ImportError
    try:
        import bitsandbytes  # noqa: F401
    finally:
        if kernels is None:
            sys.modules.pop("kernels", None)
        else:
            sys.modules["kernels"] = kernels


_import_bitsandbytes_without_kernels()


def disable_cpu_inference_repacking(model) -> int:
    """Turn off bitsandbytes' CPU inference repacking on every `Linear4bit` of `model`; returns how many layers
    had a weight already repacked (and were restored to the trainable layout, up to bfloat16 rounding of the scales:
    warned once per process)."""
    bnb_modules = sys.modules.get("bitsandbytes.nn.modules")
    if bnb_modules is None:  # no bitsandbytes layer can exist yet
        return 0

    restored = 0
    for module in model.modules():
        if not isinstance(module, bnb_modules.Linear4bit):
            continue
        module.support_avx512bf16_for_cpu = False
        state = getattr(module.weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            _restore_trainable_layout(module, bnb_modules._convert_weight_packed_for_cpu_inverse)
            restored += 1
    if restored:
        _warn_lossy_restore_once(restored)
    return restored


def _restore_trainable_layout(module, convert_weight_packed_for_cpu_inverse) -> None:
    """Undo bitsandbytes' CPU inference repack of one `Linear4bit`: the packed 4-bit codes come back byte-identical
    (bitsandbytes' inverse); the scales come back as float32 in load order, no longer double-quantised."""
    state = module.weight.quant_state
    # the repack stored absmax as bfloat16 [K / blocksize, N] (transposed); load order is N-major, flat
    absmax = state.absmax.T.reshape(-1).to(torch.float32)
    state.original_nested = False  # keep bitsandbytes' inverse from quantising the rounded scales again
    module.weight.data, state = convert_weight_packed_for_cpu_inverse(module.weight.data, state)
    state.absmax, state.nested, state.offset = absmax, False, None


def _warn_lossy_restore_once(count: int) -> None:
    global _warned_lossy_restore
    if _warned_lossy_restore:
        return
    _warned_lossy_restore = True
    logger.warning(
        "%d 4-bit layers had been repacked by bitsandbytes for CPU inference (an eval-mode forward, e.g. `generate`, "
        "ran on a CPU with AVX512-BF16 before ZPPO saw the model). They are restored for training, but bitsandbytes "
        "kept only bfloat16 copies of their scales: the weights differ from the loaded ones by up to %.2f%%. "
        "To train on exactly the loaded weights, load the model, build the ZPPOTrainer, then generate.",
        count,
        100 * RESTORED_WEIGHT_MAX_RELATIVE_ERROR,
    )


# --------------------------------------------------------------------------------------------------------------------
# adapter dtype of a quantised model


def upcast_quantized_adapters(model, args) -> int:
    """Keep the trainable weights (LoRA adapters) of a quantised model in float32 unless the run trains in bf16;
    returns how many tensors were cast.

    TRL 1.16's GRPOTrainer casts every trainable parameter of a 4- or 8-bit model to bfloat16 (the QLoRA paper's
    recipe, written for bf16 training), whatever `bf16`/`fp16` say. Under `fp16=True` (a T4) or fp32 that leaves
    bfloat16 master weights: an optimizer step smaller than 2**-8 of a weight is rounded away (AdamW's steps are about
    the learning rate, so at 1e-5 LoRA A's ~0.1 weights never move), and the adapters compute in a format the card
    emulates. PEFT's own default (`autocast_adapter_dtype=True`) is float32 adapters, as fp16 autocast expects; this
    restores it. Also warns when the 4-bit layers compute in bf16 under fp16 (`bnb_4bit_compute_dtype`).
    """
    if not (getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)):
        return 0
    cast = 0
    if not args.bf16:
        for param in model.parameters():
            if param.requires_grad and param.dtype == torch.bfloat16:
                param.data = param.data.float()
                cast += 1
    bnb_modules = sys.modules.get("bitsandbytes.nn.modules")
    if args.fp16 and bnb_modules is not None:
        bf16_compute = [
            m
            for m in model.modules()
            if isinstance(m, bnb_modules.Linear4bit) and getattr(m, "compute_dtype", None) == torch.bfloat16
        ]
        if bf16_compute:
            logger.warning(
                "fp16=True, but %d 4-bit layers compute in bfloat16 (bnb_4bit_compute_dtype=torch.bfloat16), which a "
                "GPU without native bf16 only emulates, slowly. Load the model with "
                "BitsAndBytesConfig(bnb_4bit_compute_dtype=torch.float16) (CLI: --dtype float16).",
                len(bf16_compute),
            )
    return cast
