"""What :mod:`train.bench` measures: model facts (size, FLOPs) and timed calls (CPU and CUDA)."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from functools import cache

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from ssfnet import build_model, get_label_set, precision
from ssfnet.losses import ParsingLoss
from ssfnet.modeling.common import add_pixel_stats, normalise_pixels
from ssfnet.modeling.network import IMAGENET_MEAN, IMAGENET_STD

LABEL_SET = "lip-20"
# Share of training pixels given a coarse (partial) label value, so the loss's set-valued path is
# part of the timed step as it is with PASCAL-Person-Part in the training mix.
COARSE_FRACTION = 0.1
DTYPES = ("fp32", "bf16")
# A training-speed yardstick timed beside the models: ResNet-18 at output stride 32 with a 1x1
# classifier, the "plain ResNet-18" whose step the CPU targets were written against.
TRAIN_REFERENCE = "resnet18_os32 (reference)"


class PlainResNet18(nn.Module):
    """torchvision's ResNet-18 trunk (output stride 32) and a 1x1 classifier, with the models' call.

    Only a yardstick for training speed: it segments at 1/32 and is not offered for training.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        self.trunk = nn.Sequential(*list(net.children())[:-2])
        self.classifier = nn.Conv2d(512, num_classes, 1)
        add_pixel_stats(self, IMAGENET_MEAN, IMAGENET_STD)

    def forward(self, images: torch.Tensor, aux: bool = False, native: bool = False) -> dict[str, torch.Tensor]:
        """B x 3 x H x W uint8 -> ``{"out": logits}`` at 1/32 (``native``) or at the input size."""
        logits = self.classifier(self.trunk(normalise_pixels(images, self.pixel_mean, self.pixel_std)))
        if not native:
            logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return {"out": logits}


def bench_model(name: str, num_classes: int) -> nn.Module:
    """A model of the registry by name, or the training yardstick :data:`TRAIN_REFERENCE`."""
    return PlainResNet18(num_classes) if name == TRAIN_REFERENCE else build_model(name, num_classes)


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
        return bench_model(variant, num_classes).eval()


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
