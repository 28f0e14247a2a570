"""``python -m train.bench --kernels``: EfficientNet-Lite0's depthwise vs pointwise convolutions, fp32 vs bf16."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ssfnet import precision

from .timing import DTYPES, interleaved_medians

# ---------------------------------------------------------------------------------------------
# Kernels: depthwise vs pointwise convolutions of EfficientNet-Lite0 at 256 x 192

# (block, input channels, expanded channels, H, W, depthwise kernel, depthwise stride): the
# depthwise convolution at C x H x W and the 1x1 expansion (input -> C channels) that feeds it.
KERNEL_SHAPES = (
    ("blocks.1.0", 16, 96, 128, 96, 3, 2),
    ("blocks.2.0", 24, 144, 64, 48, 5, 2),
    ("blocks.2.1", 40, 240, 32, 24, 5, 1),
    ("blocks.4.1", 112, 672, 16, 12, 5, 1),
    ("blocks.5.1", 192, 1152, 8, 6, 5, 1),
)


def kernel_cases(batch: int) -> list[dict]:
    """One entry per convolution of :data:`KERNEL_SHAPES`: its description and module."""
    cases = []
    for block, c_in, c, h, w, k, s in KERNEL_SHAPES:
        ho, wo = (h + 2 * (k // 2) - k) // s + 1, (w + 2 * (k // 2) - k) // s + 1
        cases.append(
            {
                "block": block,
                "kind": "depthwise",
                "conv": f"{c}ch {k}x{k} s{s}",
                "input": [batch, c, h, w],
                "gflop": 3 * 2 * batch * c * k * k * ho * wo / 1e9,
                "module": nn.Conv2d(c, c, k, s, k // 2, groups=c, bias=False),
            }
        )
        cases.append(
            {
                "block": block,
                "kind": "pointwise",
                "conv": f"{c_in}->{c}ch 1x1",
                "input": [batch, c_in, h, w],
                "gflop": 3 * 2 * batch * c_in * c * h * w / 1e9,
                "module": nn.Conv2d(c_in, c, 1, bias=False),
            }
        )
    return cases


def kernel_call(conv: nn.Module, shape: Sequence[int], bf16: bool) -> Callable[[], None]:
    """Forward + backward of ``conv`` on a channels_last input, in fp32 or under bf16 autocast.

    Under bf16 the input arrives in bf16, as it would from the bf16 layer before it.
    """
    conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(*shape).contiguous(memory_format=torch.channels_last)
    x = x.to(torch.bfloat16) if bf16 else x
    x.requires_grad_(True)
    with precision.autocast("cpu", bf16):
        grad = torch.ones_like(conv(x))

    def run() -> None:
        x.grad = None
        conv.weight.grad = None
        with precision.autocast("cpu", bf16):
            y = conv(x)
        y.backward(grad)

    return run


def kernel_rows(batch: int, dtypes: Sequence[str], *, warmup: int, iters: int) -> list[dict]:
    """Median forward + backward time and GFLOP/s of each convolution in each of ``dtypes``."""
    torch.manual_seed(0)
    cases = kernel_cases(batch)
    calls = {
        (i, dtype): kernel_call(case["module"], case["input"], dtype == "bf16")
        for i, case in enumerate(cases)
        for dtype in dtypes
    }
    seconds = interleaved_medians(calls, warmup, iters)
    rows = []
    for i, case in enumerate(cases):
        row = {k: v for k, v in case.items() if k != "module"}
        row["input"] = " x ".join(map(str, case["input"]))
        for dtype in DTYPES:
            if dtype in dtypes:
                row[f"{dtype}_ms"] = 1000 * seconds[(i, dtype)]
                row[f"{dtype}_gflops"] = case["gflop"] / seconds[(i, dtype)]
            else:
                row[f"{dtype}_ms"] = row[f"{dtype}_gflops"] = None
        row["bf16_over_fp32"] = row["bf16_ms"] / row["fp32_ms"] if row["bf16_ms"] is not None else None
        rows.append(row)
    return rows


def kernel_summary(rows: list[dict]) -> list[str]:
    """The range of bf16 / fp32 time of the depthwise and of the pointwise convolutions."""
    lines = []
    for kind in ("depthwise", "pointwise"):
        ratios = [r["bf16_over_fp32"] for r in rows if r["kind"] == kind and r["bf16_over_fp32"] is not None]
        if ratios:
            lines.append(f"{kind} bf16 / fp32 time: {min(ratios):.2f}x to {max(ratios):.2f}x")
    return lines or ["bf16: n/a (no native bf16 on this CPU)"]


def precision_pair(key: str, title: str, fmt: str) -> tuple[tuple[str, str, str], ...]:
    """The fp32 and the bf16 column of one measure: ``key`` and ``title`` hold ``{}`` for the precision."""
    return tuple((key.format(p), title.format(p), fmt) for p in ("fp32", "bf16"))


KERNEL_COLUMNS = (
    ("block", "block", "{}"),
    ("kind", "kind", "{}"),
    ("conv", "convolution", "{}"),
    ("input", "input (B x C x H x W)", "{}"),
    *precision_pair("{}_ms", "{} ms", "{:.2f}"),
    ("bf16_over_fp32", "bf16 / fp32 time", "{:.2f}"),
    *precision_pair("{}_gflops", "{} GFLOP/s", "{:.1f}"),
)
