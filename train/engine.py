"""The training loop's parts: schedule, ``train_one_epoch``, ``evaluate`` and resumable run checkpoints.

A run checkpoint (``last/``) is an ordinary :mod:`ssfnet.checkpoint` folder (loadable on its own)
with two more files: ``training_state.safetensors`` (optimizer tensors, every rank's RNG states as
uint8 tensors) and ``training_state.json`` (epoch, iteration, elapsed time, best score, optimizer
hyper-parameters, RNG scalars). Nothing in it needs unpickling. It is written into a staging
folder that is renamed into place, so an interruption leaves either the old or the new one.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from ssfnet.checkpoint import CheckpointError, load_into, load_state_dict, save_checkpoint, unwrap_model
from ssfnet.files import json_safe, replace_dir, writer_alive
from ssfnet.metrics import ConfusionMatrix
from ssfnet.precision import autocast

from .utils import DistInfo, JsonlWriter, StopControl, Stopwatch, all_reduce_max, all_reduce_sum_array

STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"
STATE_FORMAT = "ssfnet-training-state"

# ---------------------------------------------------------------------------------------------
# Model helpers


def backbone_of(model: nn.Module) -> nn.Module:
    """The backbone of an SSFNet or of the torchvision DeepLabV3 wrapper."""
    net = unwrap_model(model)
    if hasattr(net, "backbone"):
        return net.backbone
    if hasattr(net, "net") and hasattr(net.net, "backbone"):
        return net.net.backbone
    raise AttributeError(f"{type(net).__name__} has no backbone attribute")


def freeze_backbone(model: nn.Module) -> None:
    """Stop gradients into the backbone (its BN statistics are kept fixed by :func:`set_train_mode`)."""
    for p in backbone_of(model).parameters():
        p.requires_grad_(False)


def set_train_mode(model: nn.Module, frozen_backbone: bool, frozen_bn: bool = False) -> None:
    """``model.train()``, but a frozen backbone stays in eval mode so its BN statistics do not drift.

    ``frozen_bn`` keeps every BatchNorm layer's running statistics as they are (the layers normalise
    with them, their weights still train); dropout stays on.
    """
    model.train()
    if frozen_backbone:
        backbone_of(model).eval()
    if frozen_bn:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def param_groups(model: nn.Module, lr: float, head_lr_mult: float) -> list[dict]:
    """SGD groups: the backbone at ``lr`` and the rest at ``lr * head_lr_mult`` (trainable params only)."""
    backbone_ids = {id(p) for p in backbone_of(model).parameters()}
    backbone = [p for p in model.parameters() if p.requires_grad and id(p) in backbone_ids]
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone_ids]
    groups = []
    if backbone:
        groups.append({"params": backbone, "lr": lr, "lr_mult": 1.0, "name": "backbone"})
    if head:
        groups.append({"params": head, "lr": lr * head_lr_mult, "lr_mult": head_lr_mult, "name": "head"})
    return groups


def make_optimizer(model: nn.Module, config) -> torch.optim.Optimizer:
    """``config.optimizer`` over :func:`param_groups`: ``sgd`` (the paper's, with momentum) or ``adamw``."""
    groups = param_groups(model, config.lr, config.head_lr_mult)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


# ---------------------------------------------------------------------------------------------
# Schedule and state


def poly_factor(progress: float, power: float) -> float:
    """PSPNet's poly schedule, ``(1 - progress) ** power`` for progress in [0, 1]."""
    return max(0.0, 1.0 - min(max(progress, 0.0), 1.0)) ** power


@dataclass
class TrainState:
    """Where a run is; saved with every run checkpoint."""

    epoch: int = 0
    step_in_epoch: int = 0
    iteration: int = 0
    elapsed: float = 0.0
    best_miou: float = -1.0
    best_iteration: int = -1
    last_miou: float | None = None
    finished: bool = False


@dataclass
class Schedule:
    """How far a run is: by iterations (``total_iters``) or by wall-clock time (``budget_s``).

    On time, progress is the elapsed training time over the budget less ``reserve_s``, the time
    the final validation and checkpoint will take, so the learning rate reaches zero when the
    budget, not the last epoch, runs out.
    """

    base_lr: float
    power: float = 0.9
    total_iters: int | None = None
    budget_s: float | None = None
    reserve_s: float = 0.0

    def progress(self, state: TrainState) -> float:
        if self.budget_s is not None:
            return state.elapsed / max(1e-6, self.budget_s - self.reserve_s)
        return state.iteration / max(1, self.total_iters or 1)

    def lr(self, progress: float) -> float:
        return self.base_lr * poly_factor(progress, self.power)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)


@dataclass
class StepTimes:
    """Time spent waiting for the loader versus whole steps (the first steps of an epoch excluded)."""

    wait: float = 0.0
    total: float = 0.0
    steps: int = 0

    @property
    def wait_fraction(self) -> float:
        return self.wait / self.total if self.total > 0 else 0.0

    @property
    def step_s(self) -> float:
        return self.total / self.steps if self.steps else 0.0


# ---------------------------------------------------------------------------------------------
# Training and evaluation


def autocast_for(device: torch.device, amp: bool):
    """bf16 autocast (CUDA or CPU) when ``amp``; a no-op otherwise."""
    return autocast(device, amp)


@dataclass
class StepSettings:
    """How each step runs: bf16 autocast, memory format, where the loss is taken, frozen parts, GPU augmentation.

    ``gpu_augment(images, iteration)`` augments a batch on the device (None: the loader did).
    """

    amp: bool = False
    channels_last: bool = False
    native_loss: bool = True
    frozen_backbone: bool = False
    frozen_bn: bool = False
    gpu_augment: Callable[[torch.Tensor, int], torch.Tensor] | None = None


@dataclass
class StepReport:
    """Where each step is reported: the run's log, TensorBoard, and a console line every ``print_freq`` steps."""

    log: JsonlWriter | None = None
    tensorboard: object | None = None
    print_freq: int = 20


@dataclass
class Saving:
    """Periodic saves of ``last/``: ``save()`` once ``every_s`` seconds have passed since ``last`` (a perf_counter)."""

    save: Callable[[], None] | None = None
    every_s: float = 600.0
    last: float = 0.0

    def due(self) -> bool:
        return time.perf_counter() - self.last >= self.every_s


@dataclass
class SessionCap:
    """Stop as if asked to after ``iterations`` steps of this session (None: no cap), counted from ``start``."""

    iterations: int | None = None
    start: int = 0

    def reached(self, iteration: int) -> bool:
        return self.iterations is not None and iteration - self.start >= self.iterations


@dataclass
class LoopContext:
    """What the loop needs beyond the model, loss, optimizer and data.

    ``estimate_reserve(times)``, on a time budget, says how many seconds the final validation and
    checkpoint will take; the schedule ends that much before the budget.
    """

    device: torch.device
    dist: DistInfo
    schedule: Schedule
    state: TrainState
    clock: Stopwatch
    stop: StopControl
    step: StepSettings = field(default_factory=StepSettings)
    report: StepReport = field(default_factory=StepReport)
    saving: Saving = field(default_factory=Saving)
    cap: SessionCap = field(default_factory=SessionCap)
    estimate_reserve: Callable[[StepTimes], float] | None = None


def _epoch_bar(loader: torch.utils.data.DataLoader, ctx: LoopContext) -> tqdm:
    """The epoch's progress bar (shown by the main process only)."""
    state = ctx.state
    return tqdm(
        total=len(loader) + state.step_in_epoch,
        initial=state.step_in_epoch,
        disable=not ctx.dist.is_main,
        desc=f"epoch {state.epoch}",
        dynamic_ncols=True,
        leave=False,
        # On a time budget the epoch's ETA means nothing (the run ends with the budget): show time left.
        bar_format="{desc}: {n_fmt}/{total_fmt} [{elapsed}{postfix}]" if ctx.schedule.budget_s is not None else None,
    )


def _agree(ctx: LoopContext) -> tuple[float, float, float]:
    """The schedule's progress, whether to stop and whether a checkpoint is due, agreed by every process."""
    state = ctx.state
    stop_local = ctx.stop.requested() or ctx.cap.reached(state.iteration)
    save_local = ctx.saving.due()
    local = [ctx.schedule.progress(state), float(stop_local), float(save_local)]
    progress, stop, save = all_reduce_max(local, ctx.dist)
    return progress, stop, save


def _optimizer_step(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    targets: torch.Tensor,
    ctx: LoopContext,
) -> tuple[float, dict[str, float]]:
    """One step on a batch (B x 3 x H x W images, B x H x W labels): the loss and its parts.

    Raises:
        FloatingPointError: the loss is not finite.
    """
    settings = ctx.step
    images = images.to(ctx.device, non_blocking=True)
    targets = targets.to(ctx.device, non_blocking=True)
    if settings.gpu_augment is not None:
        images = settings.gpu_augment(images, ctx.state.iteration)
    if settings.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast_for(ctx.device, settings.amp):
        # Logits at the heads' own resolutions: the loss brings the labels down to them.
        outputs = model(images, aux=True, native=settings.native_loss)
    # The loss in fp32: the partial-label log-sum-exp is not bf16-safe.
    loss, parts = criterion({k: v.float() for k, v in outputs.items()}, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    loss_value = float(loss.detach())
    if not math.isfinite(loss_value):
        raise FloatingPointError(f"loss is {loss_value} at iteration {ctx.state.iteration}; lower --lr")
    return loss_value, parts


def _log_step(ctx: LoopContext, record: dict, parts: dict[str, float]) -> None:
    """Write a step's record to the run's log and TensorBoard."""
    report = ctx.report
    if report.log is not None:
        report.log.write(record)
    if report.tensorboard is not None:
        for key in ("loss", "lr", *parts):
            report.tensorboard.add_scalar(f"train/{key}", record[key], ctx.state.iteration)


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: torch.utils.data.DataLoader,
    ctx: LoopContext,
    times: StepTimes,
) -> str:
    """Train until the epoch ends, the schedule is complete or a stop is requested.

    Before every step all processes agree (one all-reduce) on the schedule's progress, whether to
    stop and whether a periodic checkpoint is due, so they leave the loop at the same step.

    Returns:
        ``"epoch"`` (the loader ran out), ``"done"`` (schedule complete) or ``"stopped"``.
    """
    state = ctx.state
    set_train_mode(model, ctx.step.frozen_backbone, ctx.step.frozen_bn)
    show = ctx.dist.is_main
    on_time = ctx.schedule.budget_s is not None
    bar = _epoch_bar(loader, ctx)
    end = time.perf_counter()
    first_step = True
    try:
        for images, targets in loader:
            wait = time.perf_counter() - end
            state.elapsed = ctx.clock()
            progress, stop, save = _agree(ctx)
            if stop:
                return "stopped"
            if progress >= 1.0:
                return "done"
            if save and ctx.saving.save is not None:
                began = time.perf_counter()
                ctx.saving.save()
                end += time.perf_counter() - began  # a checkpoint is not part of the step's time
            lr = ctx.schedule.lr(progress)
            set_lr(optimizer, lr)
            loss_value, parts = _optimizer_step(model, criterion, optimizer, images, targets, ctx)
            state.iteration += 1
            state.step_in_epoch += 1
            step = time.perf_counter() - end
            end = time.perf_counter()
            # The first batch of an epoch waits for the workers to start: not steady state.
            if not first_step:
                times.wait += wait
                times.total += step
                times.steps += 1
            first_step = False
            if ctx.estimate_reserve is not None and times.steps:
                # Never plan more than half the budget for the final validation and save.
                budget = ctx.schedule.budget_s or 0.0
                ctx.schedule.reserve_s = min(0.5 * budget, ctx.estimate_reserve(times))
            record = {
                "iteration": state.iteration,
                "epoch": state.epoch,
                "lr": lr,
                "loss": loss_value,
                **parts,
                "data_s": round(wait, 5),
                "step_s": round(step, 5),
                "images_per_s": round(images.shape[0] * ctx.dist.world_size / max(step, 1e-9), 2),
                "elapsed_s": round(ctx.clock(), 2),
            }
            _log_step(ctx, record, parts)
            bar.update(1)
            if show and state.iteration % ctx.report.print_freq == 0:
                left = {"left": f"{max(0.0, ctx.schedule.budget_s - ctx.clock()) / 60:.1f} min"} if on_time else {}
                bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}", wait=f"{times.wait_fraction:.0%}", **left)
                tqdm.write(
                    f"it {state.iteration:6d}  epoch {state.epoch}  loss {loss_value:.4f}  lr {lr:.3e}  "
                    f"step {step:.2f}s  data wait {times.wait_fraction:.1%}"
                )
        return "epoch"
    finally:
        bar.close()


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    num_classes: int,
    *,
    dist_info: DistInfo | None = None,
    label_set=None,
    mapping=None,
    amp: bool = False,
    channels_last: bool = False,
) -> dict:
    """Score a model on a loader of (B x 3 x H x W uint8, B x H x W int64) batches (255 = ignore).

    Each process scores its own share; the confusion matrices are summed over processes.

    Returns:
        :meth:`ssfnet.metrics.ConfusionMatrix.compute`'s dict plus ``matrix`` (nested lists).
    """
    model.eval()
    cm = ConfusionMatrix(num_classes, mapping=mapping, label_set=label_set)
    for images, targets in loader:
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_for(device, amp):
            logits = model(images, aux=False)["out"]
        cm.update(logits.argmax(1).cpu(), targets)
    if dist_info is not None:
        cm.matrix = all_reduce_sum_array(cm.matrix, dist_info)
    metrics = cm.compute()
    metrics["matrix"] = cm.matrix.tolist()
    return metrics


# ---------------------------------------------------------------------------------------------
# Run checkpoints (model + optimizer + state + RNG)


def _optimizer_to_plain(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for index, entries in sd["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "state": scalars}


def _optimizer_from_plain(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state: dict[int, dict] = {int(i): dict(v) for i, v in plain["state"].items()}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def save_run_checkpoint(
    out: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    rng_states: list[tuple[dict[str, torch.Tensor], dict]],
    *,
    variant: str,
    label_set: str,
    options: dict,
    metadata: dict,
    name: str = "last",
) -> Path:
    """Write ``out/name`` (a loadable checkpoint plus the training state) atomically.

    Call on the main process only; ``rng_states`` holds every rank's state (see
    :func:`train.utils.gather_rng_states`).
    """
    out = Path(out)
    staging = out / f".{name}.staging-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    tensors, plain = _optimizer_to_plain(optimizer)
    rng_fields = []
    for rank, (rng_tensors, fields) in enumerate(rng_states):
        for key, value in rng_tensors.items():
            tensors[f"rng.{rank}.{key}"] = value.to(torch.uint8).contiguous()
        rng_fields.append(fields)
    try:
        save_checkpoint(model, staging, variant=variant, label_set=label_set, options=options, metadata=metadata)
        save_file(tensors, str(staging / STATE_TENSORS))
        payload = {
            "format": STATE_FORMAT,
            "version": 1,
            "state": json_safe(asdict(state)),
            "optimizer": plain,
            "rng": rng_fields,
            "world_size": len(rng_states),
        }
        # The JSON goes last: its presence marks a complete folder (see find_run_checkpoint).
        with open(staging / STATE_JSON, "w") as f:
            json.dump(payload, f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as err:
        # Whatever the staging folder holds is incomplete; out/name stays as it was.
        shutil.rmtree(staging, ignore_errors=True)
        if (isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)) or "No space left" in str(err):
            needed = sum(t.numel() * t.element_size() for t in tensors.values())
            needed += sum(t.numel() * t.element_size() for t in unwrap_model(model).state_dict().values())
            free = shutil.disk_usage(out).free
            raise OSError(
                errno.ENOSPC,
                f"no space left to write the run checkpoint {out / name}: it needs about {needed / 1e6:.1f} MB, "
                f"{free / 1e6:.1f} MB are free in {out}; {name}/ is unchanged",
            ) from err
        raise
    target = replace_dir(staging, out / name)
    # Copies a killed earlier session left (one of them may have been resumed from) are older
    # than the folder just written: remove those whose writer is gone.
    for stale in [*out.glob(f".{name}.staging-*"), *out.glob(f".{name}.old-*")]:
        pid = stale.name.rsplit("-", 1)[-1]
        try:
            made_at = stale.lstat().st_mtime
        except OSError:
            continue
        if pid.isdigit() and not writer_alive(int(pid), made_at):
            shutil.rmtree(stale, ignore_errors=True)
    return target


def find_run_checkpoint(out: Path, name: str = "last") -> Path | None:
    """The newest complete run checkpoint in ``out``: ``name/``, or a staging / old copy that an
    interruption during the final renames left behind."""
    out = Path(out)
    candidates = [out / name] + sorted(out.glob(f".{name}.staging-*")) + sorted(out.glob(f".{name}.old-*"))
    best, best_iteration = None, -1
    for path in candidates:
        try:
            payload = json.loads((path / STATE_JSON).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        iteration = payload.get("state", {}).get("iteration", -1)
        if iteration > best_iteration:
            best, best_iteration = path, iteration
    return best


def load_run_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None, dist_info: DistInfo
) -> tuple[TrainState, tuple[dict, dict] | None, dict]:
    """Load weights and optimizer state from a run checkpoint.

    Returns:
        ``(state, rng, metadata)``: ``rng`` is this rank's ``(tensors, fields)`` when the run had as
        many processes as this one (else None: the RNG streams cannot be matched), ``metadata``
        the checkpoint's metadata.
    """
    path = Path(path)
    weights, meta = load_state_dict(path)
    load_into(model, weights, source=str(path))
    try:
        payload = json.loads((path / STATE_JSON).read_text())
        tensors = load_file(str(path / STATE_TENSORS))
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} has no readable training state: {err}") from None
    if payload.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path / STATE_JSON} is not a training state")
    if optimizer is not None:
        opt_tensors = {k: v for k, v in tensors.items() if k.startswith("optimizer.")}
        saved = _optimizer_from_plain(opt_tensors, payload["optimizer"])
        # torch moves each buffer to its parameter's device and dtype.
        optimizer.load_state_dict(saved)
    rng = None
    if payload.get("world_size") == dist_info.world_size:
        prefix = f"rng.{dist_info.rank}."
        rng = (
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)},
            payload["rng"][dist_info.rank],
        )
    return TrainState(**payload["state"]), rng, meta
