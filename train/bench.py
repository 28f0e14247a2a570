"""Inference and training speed of the project's variants beside torchvision's DeepLabV3, in one run.

    python -m train.bench --device cpu                 # CPU latency, batch 1, 473 x 473
    python -m train.bench                              # plus CUDA: batch 1 / 16, fp32 / bf16, training

For every model: parameters, fp16 weight size, forward FLOPs per image (``torch.utils.flop_counter``
on the meta device, so counting costs no compute), CPU latency at batch 1 and its ratio to
``deeplabv3_resnet50``'s in the same run. On CUDA also batch-1 latency and batch-16 throughput in
fp32 and bf16, training throughput (bf16 autocast, SGD, batch 8) and the share of a measured bf16
matmul peak that batch-16 bf16 inference reaches. Prints a table and writes it (Markdown) with a
JSON copy.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ssfnet import VARIANTS, build_model, get_label_set
from ssfnet.losses import ParsingLoss
from ssfnet.modeling.peers import PEERS

ALL_MODELS = (*VARIANTS, *PEERS)
REFERENCE = "deeplabv3_resnet50"
LITE = "ssfnet_lite"
LITE_MAX_MB = 40.0
LITE_MAX_RATIO = 0.5


def fp16_megabytes(model: torch.nn.Module) -> float:
    """Size of the state dict with floating tensors stored as fp16, in MB (10^6 bytes)."""
    total = 0
    for tensor in model.state_dict().values():
        total += tensor.numel() * (2 if tensor.is_floating_point() else tensor.element_size())
    return total / 1e6


def forward_flops(variant: str, num_classes: int, size: int) -> int:
    """Forward FLOPs of one ``size`` x ``size`` image (inference, no auxiliary heads)."""
    with torch.device("meta"):
        model = build_model(variant, num_classes).eval()
        image = torch.empty(1, 3, size, size, dtype=torch.uint8)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image, aux=False)
    return counter.get_total_flops()


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


def inference_seconds(
    model: torch.nn.Module, device: torch.device, batch: int, size: int, *, bf16: bool, warmup: int, iters: int
) -> float:
    """Median seconds of one inference forward of a ``batch`` of uint8 images."""
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    def run() -> None:
        with torch.inference_mode(), autocast:
            model(images, aux=False)

    return time_call(run, device, warmup, iters)


def train_images_per_second(
    model: torch.nn.Module, device: torch.device, num_classes: int, size: int, batch: int, *, warmup: int, iters: int
) -> float:
    """Images per second of full training steps (bf16 autocast on CUDA, SGD, the paper's loss)."""
    model.train()
    criterion = ParsingLoss(get_label_set("lip-20")).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, num_classes, (batch, size, size), device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    def step() -> None:
        with autocast:
            outputs = model(images, aux=True)
        loss, _ = criterion({k: v.float() for k, v in outputs.items()}, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds = time_call(step, device, warmup, iters)
    model.eval()
    return batch / seconds


def matmul_peak_tflops(device: torch.device, n: int = 8192, iters: int = 20) -> float:
    """Measured bf16 matmul throughput (TFLOP/s) of an n x n x n product."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    seconds = time_call(lambda: a @ b, device, 5, iters)
    return 2 * n**3 / seconds / 1e12


def cpu_latencies_ms(models: dict[str, torch.nn.Module], size: int, *, warmup: int, iters: int) -> dict[str, float]:
    """Median batch-1 CPU latency of each model, timed in interleaved rounds.

    Each round times every model once, so a change of machine load (a shared CPU) affects all
    models alike and the ratios between them stay fair.
    """
    image = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
    samples: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            for _ in range(warmup):
                model(image, aux=False)
        for _ in range(iters):
            for name, model in models.items():
                began = time.perf_counter()
                model(image, aux=False)
                samples[name].append(time.perf_counter() - began)
    return {name: 1000 * statistics.median(values) for name, values in samples.items()}


def cuda_row(model: torch.nn.Module, args: argparse.Namespace, device: torch.device, num_classes: int) -> dict:
    """GPU latency (batch 1), throughput (batch ``args.batch``) in fp32 and bf16, and training throughput."""
    model.to(device).to(memory_format=torch.channels_last)
    warm, iters, b = args.cuda_warmup, args.cuda_iters, args.batch
    row = {}
    for dtype, bf16 in (("fp32", False), ("bf16", True)):
        seconds = inference_seconds(model, device, 1, args.size, bf16=bf16, warmup=warm, iters=iters)
        row[f"cuda_b1_{dtype}_ms"] = 1000 * seconds
    for dtype, bf16 in (("fp32", False), ("bf16", True)):
        seconds = inference_seconds(model, device, b, args.size, bf16=bf16, warmup=warm, iters=iters)
        row[f"cuda_b16_{dtype}_ips"] = b / seconds
    row["cuda_train_ips"] = train_images_per_second(
        model, device, num_classes, args.size, args.train_batch, warmup=warm, iters=iters
    )
    model.to("cpu")
    torch.cuda.empty_cache()
    return row


COLUMNS = (
    ("variant", "model", "{}"),
    ("params_m", "params (M)", "{:.1f}"),
    ("fp16_mb", "fp16 MB", "{:.1f}"),
    ("gflops", "GFLOPs/img", "{:.1f}"),
    ("cpu_b1_ms", "CPU b1 ms", "{:.0f}"),
    ("cpu_ratio", "CPU ratio vs DLv3-R50", "{:.2f}"),
    ("cuda_b1_fp32_ms", "GPU b1 fp32 ms", "{:.2f}"),
    ("cuda_b1_bf16_ms", "GPU b1 bf16 ms", "{:.2f}"),
    ("cuda_b16_fp32_ips", "GPU b16 fp32 img/s", "{:.0f}"),
    ("cuda_b16_bf16_ips", "GPU b16 bf16 img/s", "{:.0f}"),
    ("cuda_train_ips", "GPU train img/s", "{:.0f}"),
    ("bf16_peak_fraction", "bf16 peak share", "{:.1%}"),
)


def format_table(rows: list[dict]) -> str:
    """Markdown table of the columns present in ``rows``."""
    present = [c for c in COLUMNS if any(c[0] in r for r in rows)]
    header = "| " + " | ".join(title for _, title, _ in present) + " |"
    rule = "|" + "|".join("---" for _ in present) + "|"
    lines = [header, rule]
    for r in rows:
        cells = [fmt.format(r[key]) if r.get(key) is not None else "-" for key, _, fmt in present]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def lite_checks(rows: list[dict]) -> list[str]:
    """The light variant's limits: fp16 size <= 40 MB and CPU latency <= 0.5 x DeepLabV3-R50's."""
    by_name = {r["variant"]: r for r in rows}
    lite = by_name.get(LITE)
    if lite is None:
        return []
    ok = lite["fp16_mb"] <= LITE_MAX_MB
    lines = [f"{LITE} fp16 weights {lite['fp16_mb']:.1f} MB (limit {LITE_MAX_MB:.0f}): {'ok' if ok else 'OVER'}"]
    if lite.get("cpu_ratio") is not None:
        ok = lite["cpu_ratio"] <= LITE_MAX_RATIO
        lines.append(
            f"{LITE} CPU latency {lite['cpu_ratio']:.2f} x {REFERENCE}'s (limit {LITE_MAX_RATIO}): "
            f"{'ok' if ok else 'OVER'}"
        )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark SSFNet variants against torchvision's DeepLabV3.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--variants", nargs="+", default=list(ALL_MODELS), choices=ALL_MODELS)
    p.add_argument("--size", type=int, default=473, help="square input size")
    p.add_argument("--device", choices=("all", "cpu", "cuda"), default="all", help="all = CPU and, when present, CUDA")
    p.add_argument("--batch", type=int, default=16, help="batch of the GPU throughput columns")
    p.add_argument("--train-batch", type=int, default=8, help="batch of the GPU training column")
    p.add_argument("--cpu-warmup", type=int, default=1)
    p.add_argument("--cpu-iters", type=int, default=5)
    p.add_argument("--cuda-warmup", type=int, default=5)
    p.add_argument("--cuda-iters", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="one timed call per setting (smoke test)")
    p.add_argument("--out", default="runs/bench.md", help="Markdown table; a .json copy is written beside it")
    args = p.parse_args(argv)
    if args.quick:
        args.cpu_warmup, args.cpu_iters, args.cuda_warmup, args.cuda_iters = 0, 1, 1, 2
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = args.device in ("all", "cpu")
    cuda = None
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            cuda = torch.device("cuda")
            torch.backends.cudnn.benchmark = True
        elif args.device == "cuda":
            raise SystemExit("--device cuda: no CUDA device is available")
    peak = matmul_peak_tflops(cuda, n=2048 if args.quick else 8192) if cuda is not None else None
    num_classes = 20
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
        latencies = cpu_latencies_ms(models, args.size, warmup=args.cpu_warmup, iters=args.cpu_iters)
        for row in rows:
            row["cpu_b1_ms"] = latencies[row["variant"]]
            if REFERENCE in latencies:
                row["cpu_ratio"] = row["cpu_b1_ms"] / latencies[REFERENCE]
    if cuda is not None:
        for row in rows:
            began = time.perf_counter()
            row.update(cuda_row(models[row["variant"]], args, cuda, num_classes))
            row["bf16_peak_fraction"] = row["gflops"] * 1e9 * row["cuda_b16_bf16_ips"] / (peak * 1e12)
            print(f"{row['variant']} on CUDA: {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
    env = {
        "size": args.size,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(cuda) if cuda is not None else None,
        "bf16_matmul_peak_tflops": peak,
        "quick": args.quick,
    }
    table = format_table(rows)
    checks = lite_checks(rows)
    header = (
        f"Input {args.size} x {args.size}; torch {env['torch']}; CPU {env['cpu']} with {env['cpu_threads']} "
        f"threads" + (f"; GPU {env['gpu']}, measured bf16 matmul peak {peak:.0f} TFLOP/s" if peak else "")
    )
    text = "\n".join([header, "", table, "", *checks]) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"env": env, "rows": rows, "checks": checks}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
