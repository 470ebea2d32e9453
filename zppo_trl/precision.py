"""Which float format to train in, picked by the device; settings the user gives always win.

- CUDA with native bf16 (compute capability 8.0 and later: A100, L4, H100; and ROCm): bf16.
- CUDA without it (T4, V100): fp16. `torch.cuda.is_bf16_supported()` answers True on a T4 too, because bf16 is
  emulated there (slowly), so the check asks for native support (`including_emulation=False`).
- No accelerator: fp32 on CPU.
- Other accelerators (Apple MPS, Intel XPU): TRL's default (bf16), not checked here.

The model's weights follow (`model_dtype`): a frozen base (LoRA, QLoRA, or evaluation) is loaded in the 16-bit format
the GPU computes in, and a 4-bit model computes in it; weights that train stay float32, because fp16 autocast's
gradient scaler refuses fp16 gradients and bf16 weights round away updates smaller than 2**-8 of their size (an
update of lr 1e-6 on a weight of 0.02 is lost).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PRECISIONS = ("bf16", "fp16", "fp32")
_DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def has_accelerator() -> bool:
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(xpu and xpu.is_available()) or torch.backends.mps.is_available()


@dataclass(frozen=True)
class Precision:
    """A device and the float format picked for it.

    Args:
        name (`str` or `None`): `"bf16"`, `"fp16"` or `"fp32"`; `None` leaves TRL's default (other accelerators).
        device (`str`): `"cuda"`, `"cpu"`, `"mps"` or `"xpu"`.
        reason (`str`): why, in a few words, for the line the CLI prints.
    """

    name: str | None
    device: str
    reason: str

    def training_flags(self) -> dict:
        """ZPPOConfig/GRPOConfig keyword arguments for this precision: `bf16`, `fp16` (and `use_cpu` on CPU)."""
        if self.name is None:
            return {}
        flags = {"bf16": self.name == "bf16", "fp16": self.name == "fp16"}
        return {**flags, "use_cpu": True} if self.device == "cpu" else flags

    def model_dtype(self, frozen_base: bool = True) -> torch.dtype:
        """The dtype to load the model in: this precision's 16-bit format for a frozen base, float32 otherwise."""
        return getattr(torch, model_dtype_name(self.name, frozen_base))


def pick_precision() -> Precision:
    """The precision this machine trains in by default (see the module docstring)."""
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return Precision("bf16", "cuda", f"{gpu} computes bf16 natively")
        return Precision("fp16", "cuda", f"{gpu} has no native bf16 (only emulated, slow)")
    if has_accelerator():
        device = "mps" if torch.backends.mps.is_available() else "xpu"
        return Precision(None, device, f"{device}: TRL's default")
    return Precision("fp32", "cpu", "no GPU found")


def model_dtype_name(precision: str | None, frozen_base: bool) -> str:
    """`"bfloat16"`/`"float16"` for a frozen base under bf16/fp16, `"float32"` for weights that train or for fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    return _DTYPE_NAMES[precision] if frozen_base else "float32"


def precision_of(args) -> str:
    """`"bf16"`, `"fp16"` or `"fp32"`: what a TrainingArguments-like `args` trains in."""
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
