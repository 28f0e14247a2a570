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
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

from ssfnet import VARIANTS, build_model, get_label_set, list_models, precision

from .kernels import KERNEL_COLUMNS, kernel_rows, kernel_summary, precision_pair
from .timing import (
    DTYPES,
    LABEL_SET,
    TRAIN_REFERENCE,
    bench_model,
    cpu_inference_ms,
    cpu_train_images_per_second,
    cuda_row,
    forward_flops,
    fp16_megabytes,
    matmul_peak_gflops,
    matmul_peak_tflops,
)

ALL_MODELS = tuple(list_models())
DEFAULT_MODELS = (*VARIANTS, "lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50")
REFERENCE = "deeplabv3_resnet50"
LITE = "ssfnet_lite0"
LITE_MAX_RATIO = 0.15
LITE_TRAIN_TARGET_IPS = 25.0
# A plain ResNet-18 (output stride 32) training step where the 25 img/s target was set (256 x 192,
# batch 16, bf16 on this 2-core machine, as recorded in the project's CPU-training measurements).
REFERENCE_TRAIN_IPS = 60.0

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
            *precision_pair("cpu_{}_ms", "{} ms", "{:.0f}"),
            *precision_pair("cpu_{}_ratio", "{} vs DLv3-R50 fp32", "{:.2f}"),
            *precision_pair("cpu_{}_peak_share", "{} peak share", "{:.1%}"),
        ),
    ),
    (
        "CPU training",
        (
            ("variant", "model", "{}"),
            ("train_gflops", "train GFLOPs/img", "{:.1f}"),
            *precision_pair("train_{}_ips", "{} img/s", "{:.2f}"),
            *precision_pair("train_{}_peak_share", "{} peak share", "{:.1%}"),
        ),
    ),
    (
        "CUDA",
        (
            ("variant", "model", "{}"),
            *precision_pair("cuda_b1_{}_ms", "GPU b1 {} ms", "{:.2f}"),
            *precision_pair("cuda_b16_{}_ips", "GPU b16 {} img/s", "{:.0f}"),
            ("cuda_train_ips", "GPU train img/s", "{:.0f}"),
            ("bf16_peak_fraction", "bf16 peak share", "{:.1%}"),
        ),
    ),
)
COLUMNS = tuple(dict.fromkeys(c for _, columns in MODEL_TABLES for c in columns))


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
        # The training yardstick has a row in the training table only.
        shown = [r for r in rows if title == "CPU training" or not r.get("train_only")]
        if any(key in r for r in shown for key, _, _ in columns[1:]):
            parts.append(f"{title}:\n\n{format_table(shown, columns)}")
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
        yardstick = next((r for r in rows if r["variant"] == TRAIN_REFERENCE), {}).get(f"train_{dtype}_ips")
        if yardstick:
            # The target was written where a plain ResNet-18 step ran at REFERENCE_TRAIN_IPS: as a ratio
            # it holds on a machine of any speed, measured in the same run.
            target = LITE_TRAIN_TARGET_IPS / REFERENCE_TRAIN_IPS
            verdict = "PASS" if ips / yardstick >= target else "FAIL"
            lines.append(
                f"{LITE} training {dtype}: {ips / yardstick:.2f} x {TRAIN_REFERENCE} ({yardstick:.1f} img/s) "
                f"(target {LITE_TRAIN_TARGET_IPS:.0f} / {REFERENCE_TRAIN_IPS:.0f} = {target:.2f}): {verdict}"
            )
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
    p.add_argument(
        "--train-reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"time {TRAIN_REFERENCE}'s training step too, the yardstick of the training target",
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
    # The command the tables say they were made by.
    args.command = shlex.join(["python", "-m", "train.bench", *(sys.argv[1:] if argv is None else argv)])
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


def cpu_peaks(args: argparse.Namespace, cpu_dtypes: Sequence[str]) -> dict[str, float | None]:
    """The CPU's measured matmul peak (GFLOP/s) per dtype; None for a dtype not timed."""
    device = torch.device("cpu")
    warmup, iters = (1, 2) if args.quick else (2, 5)
    return {
        dtype: matmul_peak_gflops(device, bf16=dtype == "bf16", n=args.peak_size, warmup=warmup, iters=iters)
        if dtype in cpu_dtypes
        else None
        for dtype in DTYPES
    }


def model_rows(args: argparse.Namespace, num_classes: int, cpu: bool) -> tuple[dict[str, nn.Module], list[dict]]:
    """Every model built once (seed 0) and its row of facts: parameters, fp16 size, FLOPs."""
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
    if cpu and args.train_reference:
        torch.manual_seed(0)
        models[TRAIN_REFERENCE] = bench_model(TRAIN_REFERENCE, num_classes).eval()
        flops = forward_flops(TRAIN_REFERENCE, num_classes, train_h, train_w, aux=True, native=True)
        rows.append({"variant": TRAIN_REFERENCE, "train_only": True, "train_gflops": 3 * flops / 1e9})
    return models, rows


def add_cpu_inference(rows: list[dict], models: dict, args, cpu_dtypes: Sequence[str], peaks: dict) -> None:
    """The CPU latency columns, their ratio to the reference's fp32 latency and their peak share."""
    # fp32 in the default memory format, bf16 in channels_last: each as the predictor runs it.
    inferred = {row["variant"] for row in rows if not row.get("train_only")}
    timed = {name: {"fp32": model} for name, model in models.items() if name in inferred}
    if "bf16" in cpu_dtypes:
        for name in timed:
            timed[name]["bf16"] = copy.deepcopy(models[name]).to(memory_format=torch.channels_last)
    latencies = cpu_inference_ms(timed, args.size, warmup=args.cpu_warmup, iters=args.cpu_iters)
    del timed
    reference = latencies.get((REFERENCE, "fp32"))
    for row in rows:
        if row.get("train_only"):
            continue
        for dtype in DTYPES:
            ms = latencies.get((row["variant"], dtype))
            row[f"cpu_{dtype}_ms"] = ms
            if reference is not None:
                row[f"cpu_{dtype}_ratio"] = ms / reference if ms is not None else None
            row[f"cpu_{dtype}_peak_share"] = row["gflops"] * 1000 / ms / peaks[dtype] if ms is not None else None


def add_cpu_training(rows: list[dict], models: dict, args, cpu_dtypes: Sequence[str], peaks: dict) -> None:
    """The CPU training columns (images/s and peak share), model after model."""
    train_h, train_w = args.cpu_train_size
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
            row[f"train_{dtype}_peak_share"] = row["train_gflops"] * ips[dtype] / peaks[dtype] if dtype in ips else None
        # Free the optimizer's and autograd's memory before the next (maybe larger) model.
        gc.collect()
        print(f"{row['variant']} CPU training: {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)


def run_environment(args, peaks: dict, cuda: torch.device | None, cuda_peak: float | None) -> dict:
    """What the JSON copy records of the machine and the settings."""
    return {
        "size": args.size,
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_native_bf16": precision.cpu_has_fast_bf16(),
        "cpu_train_size": list(args.cpu_train_size),
        "cpu_train_batch": args.cpu_train_batch,
        "fp32_matmul_peak_gflops": peaks.get("fp32"),
        "bf16_matmul_peak_gflops": peaks.get("bf16"),
        "gpu": torch.cuda.get_device_name(cuda) if cuda is not None else None,
        "bf16_matmul_peak_tflops": cuda_peak,
        "quick": args.quick,
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def header_lines(args, command: str, peaks: dict, cuda: torch.device | None, cuda_peak: float | None) -> list[str]:
    """The machine, the command and how each table was measured."""
    header = [machine_line(cuda), f"Command: {command}"]
    if peaks:
        train_h, train_w = args.cpu_train_size
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
    return header


def cuda_device(choice: str) -> torch.device | None:
    """The CUDA device ``--device`` asks for, None when it asks for none or (with ``all``) has none."""
    if choice not in ("all", "cuda"):
        return None
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        return torch.device("cuda")
    if choice == "cuda":
        raise SystemExit("--device cuda: no CUDA device is available")
    return None


def bench(args: argparse.Namespace) -> list[dict]:
    """Run the benchmark ``args`` (of :func:`parse_args`) describe; the model rows (``--kernels``: the kernel rows)."""
    command = args.command
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.kernels:
        return run_kernels(args, command)
    cpu = args.device in ("all", "cpu")
    cuda = cuda_device(args.device)
    cpu_dtypes = DTYPES if precision.cpu_has_fast_bf16() else ("fp32",)
    peaks = cpu_peaks(args, cpu_dtypes) if cpu else {}
    cuda_peak = matmul_peak_tflops(cuda, n=2048 if args.quick else 8192) if cuda is not None else None
    models, rows = model_rows(args, get_label_set(LABEL_SET).num_classes, cpu)
    if cpu:
        add_cpu_inference(rows, models, args, cpu_dtypes, peaks)
        add_cpu_training(rows, models, args, cpu_dtypes, peaks)
    if cuda is not None:
        for row in (r for r in rows if not r.get("train_only")):
            began = time.perf_counter()
            row.update(cuda_row(models[row["variant"]], args, cuda))
            row["bf16_peak_fraction"] = row["gflops"] * 1e9 * row["cuda_b16_bf16_ips"] / (cuda_peak * 1e12)
            print(f"{row['variant']} on CUDA: {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
    header = header_lines(args, command, peaks, cuda, cuda_peak)
    checks = lite_checks(rows)
    text = "\n".join([*header, "", format_model_tables(rows), "", *checks]) + "\n"
    env = run_environment(args, peaks, cuda, cuda_peak)
    write_outputs(args, text, {"env": env, "command": command, "header": header, "rows": rows, "checks": checks})
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m train.bench``: the speed tables ``argv`` asks for; the exit status."""
    bench(parse_args(argv))
    return 0
