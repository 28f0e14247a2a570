"""Inference and training speed of the project's variants beside torchvision's peers, in one run.

    python -m train.bench --device cpu                 # the CPU speed table (writes runs/bench-cpu.md)
    python -m train.bench --device cpu --kernels       # depthwise vs pointwise convolutions, fp32 vs bf16
    python -m train.bench                              # plus CUDA: batch 1 / 16, fp32 / bf16, training

For every model: parameters, fp16 weight size and forward FLOPs per image (``torch.utils.flop_counter``
on the meta device, so counting costs no compute). On the CPU:

- inference latency at batch 1 (``--size``, 473 x 473) in fp32 and under bf16 autocast (in
  channels_last: each as :class:`ssfnet.predictor.Predictor` runs it), each with its ratio to
  ``deeplabv3_resnet50``'s fp32 latency in the same run;
- training images/s at ``--cpu-train-size`` (256 x 192) and ``--cpu-train-batch`` (16) in fp32 and
  bf16: whole steps as the trainer takes them (channels_last, ``aux=True, native=True``, the paper's
  loss on LIP-20 labels with some coarse values, backward, SGD);
- the share of the CPU's peak those figures reach, the peak being a large fp32 and a large bf16
  (autocast) matmul timed in the same run, and a training step counted as 3x its forward FLOPs.

bf16 is timed only where oneDNN has native bf16 kernels (:func:`ssfnet.precision.cpu_has_fast_bf16`);
elsewhere it is emulated, far slower than fp32 and never used, so its columns read "n/a". The
timings of all models are interleaved (inference) or alternated (training: fp32 and bf16 steps in
turn), so a change of machine load affects the compared figures alike.

``--kernels`` instead times the depthwise convolutions of EfficientNet-Lite0 at 256 x 192 against
the pointwise expansions that feed them (forward + backward, batch 16, channels_last): the evidence
for running the depthwise ones in fp32 under bf16 autocast (:mod:`ssfnet.modeling.efficientnet`).

On CUDA also batch-1 latency and batch-16 throughput in fp32 and bf16, training throughput (bf16
autocast, SGD, batch 8, the same step) and the share of a measured bf16 matmul peak that batch-16
bf16 inference reaches. The tables are printed and written (Markdown) with a JSON copy.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ssfnet import VARIANTS, build_model, get_label_set, list_models, precision
from ssfnet.losses import ParsingLoss

ALL_MODELS = tuple(list_models())
DEFAULT_MODELS = (*VARIANTS, "lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50")
REFERENCE = "deeplabv3_resnet50"
LITE = "ssfnet_lite0"
LITE_MAX_RATIO = 0.15
LITE_TRAIN_TARGET_IPS = 25.0
LABEL_SET = "lip-20"
# Share of training pixels given a coarse (partial) label value, so the loss's set-valued path is
# part of the timed step as it is with PASCAL-Person-Part in the training mix.
COARSE_FRACTION = 0.1
DTYPES = ("fp32", "bf16")

# ---------------------------------------------------------------------------------------------
# Model facts


def fp16_megabytes(model: nn.Module) -> float:
    """Size of the state dict with floating tensors stored as fp16, in MB (10^6 bytes)."""
    total = 0
    for tensor in model.state_dict().values():
        total += tensor.numel() * (2 if tensor.is_floating_point() else tensor.element_size())
    return total / 1e6


@cache
def _meta_model(variant: str, num_classes: int) -> nn.Module:
    """``variant`` built on the meta device (no storage), kept: building one takes a second."""
    with torch.device("meta"):
        return build_model(variant, num_classes).eval()


def forward_flops(
    variant: str, num_classes: int, height: int, width: int | None = None, *, aux: bool = False, native: bool = False
) -> int:
    """Forward FLOPs of one ``height`` x ``width`` image (``width`` defaults to ``height``).

    Counted on the meta device, so nothing is computed. ``aux=False`` is inference (main head
    only); ``aux=True, native=True`` is the forward of a training step.
    """
    width = height if width is None else width
    model = _meta_model(variant, num_classes)
    image = torch.empty(1, 3, height, width, dtype=torch.uint8, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image, aux=aux, native=native)
    return counter.get_total_flops()


# ---------------------------------------------------------------------------------------------
# Timing


def time_call(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Median seconds of ``fn()`` after ``warmup`` calls (CUDA work is synchronised)."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    samples = []
    for _ in range(iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1000)
        else:
            began = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def interleaved_medians(calls: dict, warmup: int, iters: int) -> dict:
    """Median seconds of each CPU call, timed in rounds that call each once.

    Each round times every call once, so a change of machine load (a shared CPU) affects all of
    them alike and the ratios between them stay fair.

    Args:
        calls: Key -> function of no arguments.
        warmup: Untimed calls of each function first.
        iters: Timed rounds.

    Returns:
        Key -> median seconds.
    """
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    samples = {key: [] for key in calls}
    for _ in range(max(1, iters)):
        for key, fn in calls.items():
            began = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - began)
    return {key: statistics.median(values) for key, values in samples.items()}


def matmul_peak_gflops(device: torch.device, *, bf16: bool, n: int, warmup: int, iters: int) -> float:
    """Measured matmul throughput (GFLOP/s) of an n x n x n product, fp32 or under bf16 autocast.

    The bf16 product runs as the networks' layers do: fp32 operands cast by autocast.
    """
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)

    def product() -> None:
        with precision.autocast(device, bf16):
            torch.mm(a, b)

    seconds = time_call(product, device, warmup, iters)
    return 2 * n**3 / seconds / 1e9


def matmul_peak_tflops(device: torch.device, n: int = 8192, iters: int = 20) -> float:
    """Measured bf16 matmul throughput (TFLOP/s) of an n x n x n product of bf16 tensors (the GPU's peak)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    seconds = time_call(lambda: a @ b, device, 5, iters)
    return 2 * n**3 / seconds / 1e12


def cpu_inference_ms(
    models: dict[str, dict[str, nn.Module]], size: int, *, warmup: int, iters: int
) -> dict[tuple[str, str], float]:
    """Median batch-1 CPU latency (ms) of each model in each precision, interleaved.

    Args:
        models: Name -> precision (``fp32`` / ``bf16``) -> the model to time in it. As
            :class:`ssfnet.predictor.Predictor` runs them: fp32 in the default memory format,
            bf16 in channels_last, which oneDNN's bf16 kernels want.
        size: Square input size.
        warmup: Untimed calls of each first.
        iters: Timed rounds.

    Returns:
        (model name, ``fp32`` / ``bf16``) -> ms.
    """
    image = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)

    def call(model: nn.Module, bf16: bool) -> Callable[[], None]:
        batch = image.contiguous(memory_format=torch.channels_last) if bf16 else image

        def run() -> None:
            with torch.inference_mode(), precision.autocast("cpu", bf16):
                model(batch, aux=False)

        return run

    calls = {
        (name, dtype): call(model, dtype == "bf16")
        for name, by_dtype in models.items()
        for dtype, model in by_dtype.items()
    }
    return {key: 1000 * seconds for key, seconds in interleaved_medians(calls, warmup, iters).items()}


def random_targets(batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """B x H x W LIP-20 label values: mostly exact classes, :data:`COARSE_FRACTION` coarse ones."""
    label_set = get_label_set(LABEL_SET)
    num_values = label_set.membership.shape[0]
    targets = torch.randint(0, label_set.num_classes, (batch, height, width), device=device)
    coarse = torch.rand(batch, height, width, device=device) < COARSE_FRACTION
    coarse_values = torch.randint(label_set.num_classes, num_values, (batch, height, width), device=device)
    return torch.where(coarse, coarse_values, targets)


def make_train_step(
    model: nn.Module, device: torch.device, batch: int, height: int, width: int
) -> Callable[[bool], None]:
    """A function taking one whole training step, as ``train.engine.train_one_epoch`` does.

    channels_last model and images, the forward under bf16 autocast or not (its argument),
    logits at the heads' resolution (``native=True``), the loss in fp32, backward, SGD. The
    model is put in channels_last and train mode.
    """
    model.to(device).to(memory_format=torch.channels_last).train()
    criterion = ParsingLoss(get_label_set(LABEL_SET)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    images = torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    targets = random_targets(batch, height, width, device)

    def step(bf16: bool) -> None:
        with precision.autocast(device, bf16):
            outputs = model(images, aux=True, native=True)
        loss, _ = criterion({k: v.float() for k, v in outputs.items()}, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def cpu_train_images_per_second(
    model: nn.Module,
    batch: int,
    height: int,
    width: int,
    dtypes: Sequence[str],
    *,
    warmup: int,
    iters: int,
    budget_s: float,
) -> dict[str, float]:
    """Training images/s on the CPU in each of ``dtypes`` (median step after warm-up).

    After ``warmup`` steps per dtype, the dtypes take steps in turn until ``iters`` steps each
    or, once every dtype has one timed step, until ``budget_s`` seconds of timed steps: a heavy
    network's step takes a minute on two cores, a light one's under a second.

    Returns:
        ``fp32`` / ``bf16`` -> images per second.
    """
    cpu = torch.device("cpu")
    step = make_train_step(model, cpu, batch, height, width)
    for dtype in dtypes:
        for _ in range(warmup):
            step(dtype == "bf16")
    samples: dict[str, list[float]] = {dtype: [] for dtype in dtypes}
    spent = 0.0
    for _ in range(max(1, iters)):
        for dtype in dtypes:
            began = time.perf_counter()
            step(dtype == "bf16")
            samples[dtype].append(time.perf_counter() - began)
            spent += samples[dtype][-1]
        if spent >= budget_s:
            break
    # Drop the gradients so the next model's step has the memory.
    model.zero_grad(set_to_none=True)
    model.eval()
    return {dtype: batch / statistics.median(values) for dtype, values in samples.items()}


# ---------------------------------------------------------------------------------------------
# CUDA


def inference_seconds(
    model: nn.Module, device: torch.device, batch: int, size: int, *, bf16: bool, warmup: int, iters: int
) -> float:
    """Median seconds of one inference forward of a ``batch`` of uint8 images."""
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)

    def run() -> None:
        with torch.inference_mode(), precision.autocast(device, bf16):
            model(images, aux=False)

    return time_call(run, device, warmup, iters)


def train_images_per_second(
    model: nn.Module, device: torch.device, size: int, batch: int, *, bf16: bool, warmup: int, iters: int
) -> float:
    """Images per second of whole ``size`` x ``size`` training steps (see :func:`make_train_step`)."""
    step = make_train_step(model, device, batch, size, size)
    seconds = time_call(lambda: step(bf16), device, warmup, iters)
    model.eval()
    return batch / seconds


def cuda_row(model: nn.Module, args: argparse.Namespace, device: torch.device) -> dict:
    """GPU latency (batch 1), throughput (batch ``args.batch``) in fp32 and bf16, and training throughput."""
    model.to(device).to(memory_format=torch.channels_last)
    warm, iters, b = args.cuda_warmup, args.cuda_iters, args.batch
    row = {}
    for dtype in DTYPES:
        seconds = inference_seconds(model, device, 1, args.size, bf16=dtype == "bf16", warmup=warm, iters=iters)
        row[f"cuda_b1_{dtype}_ms"] = 1000 * seconds
    for dtype in DTYPES:
        seconds = inference_seconds(model, device, b, args.size, bf16=dtype == "bf16", warmup=warm, iters=iters)
        row[f"cuda_b16_{dtype}_ips"] = b / seconds
    row["cuda_train_ips"] = train_images_per_second(
        model, device, args.size, args.train_batch, bf16=True, warmup=warm, iters=iters
    )
    model.to("cpu")
    torch.cuda.empty_cache()
    return row


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


# ---------------------------------------------------------------------------------------------
# Tables and checks

MODEL_TABLES = (
    (
        "CPU inference",
        (
            ("variant", "model", "{}"),
            ("params_m", "params (M)", "{:.1f}"),
            ("fp16_mb", "fp16 MB", "{:.1f}"),
            ("gflops", "GFLOPs/img", "{:.1f}"),
            ("cpu_fp32_ms", "fp32 ms", "{:.0f}"),
            ("cpu_bf16_ms", "bf16 ms", "{:.0f}"),
            ("cpu_fp32_ratio", "fp32 vs DLv3-R50 fp32", "{:.2f}"),
            ("cpu_bf16_ratio", "bf16 vs DLv3-R50 fp32", "{:.2f}"),
            ("cpu_fp32_peak_share", "fp32 peak share", "{:.1%}"),
            ("cpu_bf16_peak_share", "bf16 peak share", "{:.1%}"),
        ),
    ),
    (
        "CPU training",
        (
            ("variant", "model", "{}"),
            ("train_gflops", "train GFLOPs/img", "{:.1f}"),
            ("train_fp32_ips", "fp32 img/s", "{:.2f}"),
            ("train_bf16_ips", "bf16 img/s", "{:.2f}"),
            ("train_fp32_peak_share", "fp32 peak share", "{:.1%}"),
            ("train_bf16_peak_share", "bf16 peak share", "{:.1%}"),
        ),
    ),
    (
        "CUDA",
        (
            ("variant", "model", "{}"),
            ("cuda_b1_fp32_ms", "GPU b1 fp32 ms", "{:.2f}"),
            ("cuda_b1_bf16_ms", "GPU b1 bf16 ms", "{:.2f}"),
            ("cuda_b16_fp32_ips", "GPU b16 fp32 img/s", "{:.0f}"),
            ("cuda_b16_bf16_ips", "GPU b16 bf16 img/s", "{:.0f}"),
            ("cuda_train_ips", "GPU train img/s", "{:.0f}"),
            ("bf16_peak_fraction", "bf16 peak share", "{:.1%}"),
        ),
    ),
)
COLUMNS = tuple(dict.fromkeys(c for _, columns in MODEL_TABLES for c in columns))

KERNEL_COLUMNS = (
    ("block", "block", "{}"),
    ("kind", "kind", "{}"),
    ("conv", "convolution", "{}"),
    ("input", "input (B x C x H x W)", "{}"),
    ("fp32_ms", "fp32 ms", "{:.2f}"),
    ("bf16_ms", "bf16 ms", "{:.2f}"),
    ("bf16_over_fp32", "bf16 / fp32 time", "{:.2f}"),
    ("fp32_gflops", "fp32 GFLOP/s", "{:.1f}"),
    ("bf16_gflops", "bf16 GFLOP/s", "{:.1f}"),
)


def format_table(rows: list[dict], columns: Sequence[tuple[str, str, str]] = COLUMNS) -> str:
    """Markdown table of the ``columns`` present in ``rows``.

    A cell reads ``-`` where the row lacks the column (not measured: another device, or
    ``--skip-train``) and ``n/a`` where its value is ``None`` (bf16 on a CPU without native bf16).
    """
    present = [c for c in columns if any(c[0] in r for r in rows)]
    header = "| " + " | ".join(title for _, title, _ in present) + " |"
    rule = "|" + "|".join("---" for _ in present) + "|"
    lines = [header, rule]
    for r in rows:
        cells = [("-" if key not in r else "n/a" if r[key] is None else fmt.format(r[key])) for key, _, fmt in present]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_model_tables(rows: list[dict]) -> str:
    """One Markdown table per group of :data:`MODEL_TABLES` that has a measured column."""
    parts = []
    for title, columns in MODEL_TABLES:
        if any(key in r for r in rows for key, _, _ in columns[1:]):
            parts.append(f"{title}:\n\n{format_table(rows, columns)}")
    return "\n\n".join(parts)


def lite_checks(rows: list[dict]) -> list[str]:
    """The CPU variant's targets, as PASS / FAIL lines (reported, not enforced).

    Inference at ``--size`` at most :data:`LITE_MAX_RATIO` x ``deeplabv3_resnet50``'s fp32 latency
    (each measured precision), and bf16 training at least :data:`LITE_TRAIN_TARGET_IPS` images/s
    (fp32 where bf16 was not measured).
    """
    lite = next((r for r in rows if r["variant"] == LITE), None)
    if lite is None:
        return []
    lines = []
    for dtype in DTYPES:
        ratio = lite.get(f"cpu_{dtype}_ratio")
        if ratio is not None:
            verdict = "PASS" if ratio <= LITE_MAX_RATIO else "FAIL"
            lines.append(
                f"{LITE} inference {dtype}: {ratio:.3f} x {REFERENCE} fp32 (limit {LITE_MAX_RATIO}): {verdict}"
            )
    dtype = "bf16" if lite.get("train_bf16_ips") is not None else "fp32"
    ips = lite.get(f"train_{dtype}_ips")
    if ips is not None:
        verdict = "PASS" if ips >= LITE_TRAIN_TARGET_IPS else "FAIL"
        lines.append(f"{LITE} training {dtype}: {ips:.1f} img/s (target {LITE_TRAIN_TARGET_IPS:.0f}): {verdict}")
    return lines


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` or ``lscpu``), else :func:`platform.processor`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if shutil.which("lscpu"):
        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m train.bench",
        description="Benchmark SSFNet variants against torchvision's segmentation networks.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_MODELS), choices=ALL_MODELS, metavar="MODEL")
    p.add_argument("--size", type=int, default=473, help="square input size of inference and FLOPs")
    p.add_argument("--device", choices=("all", "cpu", "cuda"), default="all", help="all = CPU and, when present, CUDA")
    p.add_argument(
        "--cpu-train-size", type=int, nargs=2, default=(256, 192), metavar=("H", "W"), help="CPU training input"
    )
    p.add_argument("--cpu-train-batch", type=int, default=16, help="batch of the CPU training columns")
    p.add_argument("--train-warmup", type=int, default=1, help="untimed CPU training steps per precision")
    p.add_argument("--train-iters", type=int, default=3, help="most timed CPU training steps per precision")
    p.add_argument(
        "--train-seconds",
        type=float,
        default=40.0,
        help="stop a model's timed CPU training steps after this long (at least one per precision)",
    )
    p.add_argument(
        "--skip-train",
        nargs="+",
        default=[],
        choices=ALL_MODELS,
        metavar="MODEL",
        help="no CPU training columns for these",
    )
    p.add_argument("--cpu-warmup", type=int, default=1)
    p.add_argument("--cpu-iters", type=int, default=5, help="interleaved rounds of CPU inference")
    p.add_argument("--batch", type=int, default=16, help="batch of the GPU throughput columns")
    p.add_argument("--train-batch", type=int, default=8, help="batch of the GPU training column")
    p.add_argument("--cuda-warmup", type=int, default=5)
    p.add_argument("--cuda-iters", type=int, default=20)
    p.add_argument("--peak-size", type=int, default=2048, help="n of the CPU's n x n x n peak matmuls")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    p.add_argument(
        "--kernels",
        action="store_true",
        help="instead: EfficientNet-Lite0's depthwise vs pointwise convolutions, fp32 vs bf16 (CPU)",
    )
    p.add_argument("--kernel-batch", type=int, default=16, help="batch of --kernels")
    p.add_argument("--kernel-iters", type=int, default=10, help="interleaved rounds of --kernels")
    p.add_argument("--quick", action="store_true", help="one timed call per setting (smoke test)")
    p.add_argument(
        "--out",
        default=None,
        help="Markdown tables, a .json copy beside them (default: runs/bench-kernels.md with --kernels, "
        "runs/bench-cpu.md with --device cpu, else runs/bench.md)",
    )
    args = p.parse_args(argv)
    args.kernel_warmup = 2
    if args.quick:
        args.cpu_warmup, args.cpu_iters, args.cuda_warmup, args.cuda_iters = 0, 1, 1, 2
        args.train_warmup, args.train_iters, args.kernel_warmup, args.kernel_iters = 0, 1, 0, 1
        args.peak_size = min(args.peak_size, 512)
    if args.out is None:
        args.out = (
            "runs/bench-kernels.md"
            if args.kernels
            else "runs/bench-cpu.md"
            if args.device == "cpu"
            else "runs/bench.md"
        )
    return args


def machine_line(cuda: torch.device | None) -> str:
    """The machine, its cores and threads, torch's version and the date."""
    now = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    bf16 = "native bf16" if precision.cpu_has_fast_bf16() else "no native bf16"
    gpu = f"; GPU {torch.cuda.get_device_name(cuda)}" if cuda is not None else ""
    return (
        f"Machine: {cpu_name()} ({platform.machine()}, {os.cpu_count()} cores, {bf16}), "
        f"{torch.get_num_threads()} torch threads{gpu}; torch {torch.__version__}; {now}"
    )


def write_outputs(args: argparse.Namespace, text: str, record: dict) -> None:
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")


def run_kernels(args: argparse.Namespace, command: str) -> list[dict]:
    """The ``--kernels`` table: time, write and return its rows."""
    dtypes = DTYPES if precision.cpu_has_fast_bf16() else ("fp32",)
    rows = kernel_rows(args.kernel_batch, dtypes, warmup=args.kernel_warmup, iters=args.kernel_iters)
    summary = kernel_summary(rows)
    header = [
        machine_line(None),
        f"Command: {command}",
        f"EfficientNet-Lite0 convolutions at a 256 x 192 input, forward + backward, batch {args.kernel_batch}, "
        f"channels_last, fp32 vs bf16 autocast; median of {args.kernel_iters} interleaved rounds.",
    ]
    text = "\n".join([*header, "", format_table(rows, KERNEL_COLUMNS), "", *summary]) + "\n"
    write_outputs(args, text, {"command": command, "header": header, "kernels": rows, "summary": summary})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark; returns the model rows (``--kernels``: the kernel rows)."""
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "train.bench", *(sys.argv[1:] if argv is None else argv)])
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.kernels:
        return run_kernels(args, command)
    cpu = args.device in ("all", "cpu")
    cuda = None
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            cuda = torch.device("cuda")
            torch.backends.cudnn.benchmark = True
        elif args.device == "cuda":
            raise SystemExit("--device cuda: no CUDA device is available")
    fast_bf16 = precision.cpu_has_fast_bf16()
    cpu_dtypes = DTYPES if fast_bf16 else ("fp32",)
    peaks: dict[str, float | None] = {}
    if cpu:
        for dtype in DTYPES:
            peaks[dtype] = (
                matmul_peak_gflops(
                    torch.device("cpu"),
                    bf16=dtype == "bf16",
                    n=args.peak_size,
                    warmup=1 if args.quick else 2,
                    iters=2 if args.quick else 5,
                )
                if dtype in cpu_dtypes
                else None
            )
    cuda_peak = None
    if cuda is not None:
        cuda_peak = matmul_peak_tflops(cuda, n=2048 if args.quick else 8192)
    num_classes = get_label_set(LABEL_SET).num_classes
    train_h, train_w = args.cpu_train_size
    models, rows = {}, []
    for variant in dict.fromkeys(args.variants):
        torch.manual_seed(0)
        models[variant] = build_model(variant, num_classes).eval()
        rows.append(
            {
                "variant": variant,
                "params_m": sum(p.numel() for p in models[variant].parameters()) / 1e6,
                "fp16_mb": fp16_megabytes(models[variant]),
                "gflops": forward_flops(variant, num_classes, args.size) / 1e9,
            }
        )
        if cpu:
            # A training step ~ forward + twice its FLOPs for the backward (input and weight grads).
            flops = forward_flops(variant, num_classes, train_h, train_w, aux=True, native=True)
            rows[-1]["train_gflops"] = 3 * flops / 1e9
    if cpu:
        # fp32 in the default memory format, bf16 in channels_last: each as the predictor runs it.
        timed = {name: {"fp32": model} for name, model in models.items()}
        if "bf16" in cpu_dtypes:
            for name, model in models.items():
                timed[name]["bf16"] = copy.deepcopy(model).to(memory_format=torch.channels_last)
        latencies = cpu_inference_ms(timed, args.size, warmup=args.cpu_warmup, iters=args.cpu_iters)
        del timed
        reference = latencies.get((REFERENCE, "fp32"))
        for row in rows:
            for dtype in DTYPES:
                ms = latencies.get((row["variant"], dtype))
                row[f"cpu_{dtype}_ms"] = ms
                if reference is not None:
                    row[f"cpu_{dtype}_ratio"] = ms / reference if ms is not None else None
                row[f"cpu_{dtype}_peak_share"] = row["gflops"] * 1000 / ms / peaks[dtype] if ms is not None else None
        for row in rows:
            if row["variant"] in args.skip_train:
                continue
            began = time.perf_counter()
            ips = cpu_train_images_per_second(
                models[row["variant"]],
                args.cpu_train_batch,
                train_h,
                train_w,
                cpu_dtypes,
                warmup=args.train_warmup,
                iters=args.train_iters,
                budget_s=args.train_seconds,
            )
            for dtype in DTYPES:
                row[f"train_{dtype}_ips"] = ips.get(dtype)
                row[f"train_{dtype}_peak_share"] = (
                    row["train_gflops"] * ips[dtype] / peaks[dtype] if dtype in ips else None
                )
            # Free the optimizer's and autograd's memory before the next (maybe larger) model.
            gc.collect()
            print(f"{row['variant']} CPU training: {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
    if cuda is not None:
        for row in rows:
            began = time.perf_counter()
            row.update(cuda_row(models[row["variant"]], args, cuda))
            row["bf16_peak_fraction"] = row["gflops"] * 1e9 * row["cuda_b16_bf16_ips"] / (cuda_peak * 1e12)
            print(f"{row['variant']} on CUDA: {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
    env = {
        "size": args.size,
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_native_bf16": fast_bf16,
        "cpu_train_size": [train_h, train_w],
        "cpu_train_batch": args.cpu_train_batch,
        "fp32_matmul_peak_gflops": peaks.get("fp32"),
        "bf16_matmul_peak_gflops": peaks.get("bf16"),
        "gpu": torch.cuda.get_device_name(cuda) if cuda is not None else None,
        "bf16_matmul_peak_tflops": cuda_peak,
        "quick": args.quick,
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    header = [machine_line(cuda), f"Command: {command}"]
    if cpu:
        peak_text = ", ".join(f"{d} {peaks[d]:.0f}" if peaks[d] is not None else f"{d} n/a" for d in DTYPES)
        header.append(
            f"CPU inference: {args.size} x {args.size}, batch 1 (fp32 contiguous, bf16 channels_last, as the "
            f"predictor runs them), median of {args.cpu_iters} "
            f"interleaved rounds. CPU training: {train_h} x {train_w} (H x W), batch {args.cpu_train_batch}, "
            f"whole steps (aux + native heads, {LABEL_SET} loss, SGD), median after {args.train_warmup} warm-up; "
            f"training FLOPs = 3 x forward. Peak ({args.peak_size}^3 matmul, GFLOP/s): {peak_text}."
        )
    if cuda_peak is not None:
        header.append(f"GPU: measured bf16 matmul peak {cuda_peak:.0f} TFLOP/s.")
    checks = lite_checks(rows)
    text = "\n".join([*header, "", format_model_tables(rows), "", *checks]) + "\n"
    write_outputs(args, text, {"env": env, "command": command, "header": header, "rows": rows, "checks": checks})
    return rows


if __name__ == "__main__":
    main()
