"""Where and in which number format to compute: the device (:func:`resolve_device`), and bf16
autocast where the hardware runs it natively, else fp32.

bf16 autocast roughly halves the time of a training step and of a forward pass on CPUs with
AVX-512-BF16 or AMX (oneDNN kernels), and on CUDA GPUs; on other CPUs oneDNN emulates it and it
is slower than fp32, so ``auto`` falls back to fp32 there.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import cache

import torch

PRECISIONS = ("auto", "bf16", "fp32")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) -> CUDA when available, else the CPU; anything else as ``torch.device`` reads it."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@cache
def cpu_has_fast_bf16() -> bool:
    """True when oneDNN reports native bf16 support on this CPU (AVX-512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def use_bf16(precision: str, device: torch.device | str) -> bool:
    """Resolve ``precision`` (``auto``, ``bf16`` or ``fp32``; ``off`` = fp32) for ``device``."""
    device = torch.device(device)
    if precision in ("fp32", "off"):
        return False
    if precision == "bf16":
        return True
    if precision != "auto":
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if device.type == "cuda":
        return True
    return device.type == "cpu" and cpu_has_fast_bf16()


def autocast(device: torch.device | str, bf16: bool):
    """bf16 autocast on ``device`` when ``bf16``; a no-op otherwise."""
    device = torch.device(device)
    if not bf16 or device.type not in ("cuda", "cpu"):
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
