"""Where and in which number format to compute: the device (:func:`resolve_device`), and bf16
autocast where it is faster on this machine, else fp32.

bf16 autocast can halve the time of a training step and of a forward pass on CPUs with
AVX-512-BF16 or AMX (oneDNN kernels), and on CUDA GPUs; on other CPUs oneDNN emulates it and it
is slower than fp32. Native support is not enough, though: at small inputs, or for depthwise
convolutions on some CPUs, bf16 buys nothing. So on a CPU with native bf16, ``auto`` times both
(:func:`choose_bf16`: a few forward passes, or forward and backward for training, at the size
that will be used) and keeps the faster, remembering the choice per machine, model and size in
``$SSFNET_CACHE_DIR/precision.json`` (default ``~/.cache/ssfnet``) with the machine's CPU model,
flags and library versions and both timings.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import time
from contextlib import nullcontext
from functools import cache
from pathlib import Path

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


# CPU flags that decide how fast bf16 and fp32 convolutions run.
_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
# bf16 must win by this fraction to be chosen: a tie keeps fp32's exact numbers.
MARGIN = 0.05


def cpu_info() -> tuple[str, set[str]]:
    """The CPU's model name and flags (``/proc/cpuinfo``), or what the platform says and no flags."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    return model, flags


def machine() -> dict:
    """The CPU model, its flags that matter here, the thread count and the library versions."""
    model, flags = cpu_info()
    onednn = getattr(torch.backends.mkldnn, "version", None)
    return {
        "cpu": model,
        "flags": [f for f in _FLAGS if f in flags],
        "native_bf16": cpu_has_fast_bf16(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onednn": ".".join(str(v) for v in onednn()) if callable(onednn) else None,
    }


def cache_path() -> Path:
    """``$SSFNET_CACHE_DIR/precision.json`` (default ``~/.cache/ssfnet/precision.json``)."""
    root = os.environ.get("SSFNET_CACHE_DIR") or Path.home() / ".cache" / "ssfnet"
    return Path(root) / "precision.json"


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, unreadable or damaged: measure again
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: dict) -> None:
    """Replace the cache file atomically; a failure (read-only home, full disk) only costs a re-measure."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def time_pass(model: torch.nn.Module, shape: tuple[int, ...], bf16: bool, *, train: bool, repeats: int = 3) -> float:
    """Best of ``repeats`` milliseconds for a pass of ``model`` (a copy, so that nothing it holds
    changes) on a random CPU input of ``shape``: forward in eval mode without gradients, or
    forward and backward in train mode when ``train``."""
    model = copy.deepcopy(model).cpu()
    model.train(train)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(shape)
    if bf16:
        x = x.contiguous(memory_format=torch.channels_last)
    best = float("inf")
    for i in range(repeats + 1):  # the first pass warms oneDNN's kernels up and is not counted
        start = time.perf_counter()
        with torch.set_grad_enabled(train), autocast("cpu", bf16):
            out = model(x)
            out = out["out"] if isinstance(out, dict) else out
            if train:
                out.float().mean().backward()
        if i:
            best = min(best, (time.perf_counter() - start) * 1000)
    return best


def choose_bf16(
    model: torch.nn.Module, shape: tuple[int, ...], device: torch.device | str, *, train: bool = False
) -> bool:
    """``precision="auto"`` resolved for ``model`` at input ``shape`` on ``device``.

    CUDA: bf16. A CPU without native bf16: fp32 (emulated bf16 is slower). A CPU with it: the
    faster of the two by :func:`time_pass` (bf16 only when at least :data:`MARGIN` faster),
    measured once per machine, model and shape and remembered (:func:`cache_path`).
    """
    device = torch.device(device)
    if device.type == "cuda":
        return True
    if device.type != "cpu" or not cpu_has_fast_bf16():
        return False
    here = machine()
    machine_key = hashlib.sha256(json.dumps(here, sort_keys=True).encode()).hexdigest()[:16]
    params = sum(p.numel() for p in model.parameters())
    key = f"{type(model).__name__}-{params}-{'train' if train else 'infer'}-{'x'.join(map(str, shape))}"
    path = cache_path()
    data = _read_cache(path)
    known = data.get(machine_key, {}).get("choices", {}).get(key)
    if isinstance(known, dict) and isinstance(known.get("bf16"), bool):
        return known["bf16"]
    fp32_ms = time_pass(model, shape, False, train=train)
    bf16_ms = time_pass(model, shape, True, train=train)
    choice = bf16_ms < fp32_ms * (1 - MARGIN)
    entry = data.setdefault(machine_key, {"machine": here, "choices": {}})
    entry.setdefault("choices", {})[key] = {
        "bf16": choice,
        "fp32_ms": round(fp32_ms, 2),
        "bf16_ms": round(bf16_ms, 2),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_cache(path, data)
    return choice
