"""Train an SSFNet (or torchvision's DeepLabV3 for comparison) on one or more human-parsing sources.

    python -m train.train --data viton:../shared/datasets/viton --data ccp:../shared/datasets/ccp:0.5 \\
        --variant ssfnet_r101 --epochs 100 --out runs/r101

    torchrun --nproc_per_node 8 -m train.train --config run.yaml       # several GPUs (or nodes)

The run folder holds ``config.json``, ``split.json`` (the held-out ids), ``augment_grid.png``,
``log.jsonl`` (one line per iteration), ``val.jsonl`` (one line per validation), ``curves.png``,
``summary.json`` and two checkpoints: ``last/`` (with the training state, for ``--resume``) and
``best/`` (best validation mIoU). Both load with :func:`ssfnet.load_checkpoint`.

:func:`run_training` is the recipe; the data live in :mod:`train.data`, the run folder's files in
:mod:`train.run_folder`, the epoch loop in :mod:`train.engine`.
"""

from __future__ import annotations

import dataclasses
import errno
import sys
import threading
import time
from pathlib import Path

import torch
from torch import nn

from ssfnet import ABLATIONS, get_label_set
from ssfnet.build import build_model, get_model_spec, model_options
from ssfnet.checkpoint import load_into, load_state_dict
from ssfnet.data import SubsetSpec, as_source, source_record
from ssfnet.labels import LabelSet
from ssfnet.losses import ParsingLoss
from ssfnet.parts import part_targets, region_membership, region_values
from ssfnet.precision import choose_bf16, use_bf16

from .augment import batch_generator, save_augment_grid
from .balance import mixture_value_weights
from .config import TrainConfig
from .config import parse_args as parse_config
from .data import TrainData, build_datasets, build_train_dataset, make_data, pad_collate
from .engine import (
    LoopContext,
    Saving,
    Schedule,
    SessionCap,
    StepReport,
    StepSettings,
    StepTimes,
    TrainState,
    evaluate,
    find_run_checkpoint,
    freeze_backbone,
    load_run_checkpoint,
    make_optimizer,
    train_one_epoch,
)
from .plots import plot_curves
from .run_folder import RunFolder
from .utils import (
    DistInfo,
    StopControl,
    Stopwatch,
    barrier,
    broadcast_buffers,
    gather_rng_states,
    hardware,
    init_distributed,
    restore_rng_state,
    seed_everything,
    write_json,
)

__all__ = [
    "TrainSummary",
    "build_datasets",
    "build_train_dataset",
    "main",
    "pad_collate",
    "parse_args",
    "plot_curves",
    "resolve_model",
    "run_training",
    "transferred_state",
]

DEFAULT_VARIANT = "ssfnet_r101"
DEFAULT_LABEL_SET = "lip-20"


# ---------------------------------------------------------------------------------------------
# Model


@dataclasses.dataclass
class ModelSetup:
    variant: str
    options: dict
    label_set: LabelSet
    init_state: dict | None
    init_meta: dict | None


def resolve_model(config: TrainConfig) -> ModelSetup:
    """Variant, options and label set from the config and, if given, the init checkpoint."""
    init_state = init_meta = None
    if config.init_checkpoint:
        init_state, init_meta = load_state_dict(config.init_checkpoint)
    variant = config.variant or (init_meta["variant"] if init_meta else DEFAULT_VARIANT)
    label_set = get_label_set(config.label_set or (init_meta["label_set"] if init_meta else DEFAULT_LABEL_SET))
    if init_meta is not None:
        if variant != init_meta["variant"]:
            raise ValueError(f"--variant {variant} differs from the init checkpoint's {init_meta['variant']}")
    options = dict(init_meta.get("options", {})) if init_meta else {}
    if config.ablation:
        options.update(ABLATIONS[config.ablation])
    options.update(config.model_options)
    if not get_model_spec(variant).takes_options and options:
        raise ValueError(f"{variant} has no ablation switches or model options (got {sorted(options)})")
    return ModelSetup(variant, model_options(variant, **options), label_set, init_state, init_meta)


def transferred_state(model: nn.Module, setup: ModelSetup) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The init checkpoint's weights for ``model``, with its class outputs left to ``model`` when the label sets differ.

    Starting a model of another label set from a checkpoint (a body-part model from the LIP-20
    default, say) keeps every weight but the layers that emit one channel per class: those have
    the new label set's shape and keep ``model``'s fresh initialisation. Any other difference is
    left for :func:`ssfnet.checkpoint.load_into` to report.

    Returns:
        ``(state, reinitialised)``: the state to load strictly, and the names taken from ``model``
        (a part head the checkpoint lacks among them).
    """
    state = dict(setup.init_state)
    own = model.state_dict()
    # A part head added to a checkpoint that had none starts afresh; everything else is kept.
    fresh_parts = [key for key in own if key.startswith("part_head.") and key not in state]
    for key in fresh_parts:
        state[key] = own[key]
    if get_label_set(setup.init_meta["label_set"]).name == setup.label_set.name:
        return state, fresh_parts
    old_classes, new_classes = setup.init_meta["num_classes"], setup.label_set.num_classes
    reinitialised = [
        key
        for key, value in own.items()
        if key in state
        and tuple(state[key].shape) != tuple(value.shape)
        and state[key].ndim >= 1
        and state[key].shape[0] == old_classes
        and value.shape[0] == new_classes
        and tuple(state[key].shape[1:]) == tuple(value.shape[1:])
    ]
    if not reinitialised:
        raise ValueError(
            f"--label-set {setup.label_set.name} differs from the init checkpoint's {setup.init_meta['label_set']}, "
            "and the model has no class-output layer to start afresh"
        )
    for key in reinitialised:
        state[key] = own[key]
    return state, fresh_parts + reinitialised


def build(setup: ModelSetup, config: TrainConfig) -> nn.Module:
    # A checkpoint to start from carries the whole backbone: no ImageNet file is needed then.
    weights = None if setup.init_state is not None else config.backbone_weights
    model = build_model(setup.variant, setup.label_set.num_classes, backbone_weights=weights, **setup.options)
    if setup.init_state is not None:
        state, reinitialised = transferred_state(model, setup)
        fresh_parts = [key for key in reinitialised if key.startswith("part_head.")]
        reinitialised = [key for key in reinitialised if key not in fresh_parts]
        if fresh_parts:
            print(f"init checkpoint {config.init_checkpoint} has no part head: it starts afresh", flush=True)
        if reinitialised:
            print(
                f"init checkpoint {config.init_checkpoint} ({setup.init_meta['label_set']}) -> "
                f"{setup.label_set.name}: every weight kept but the class outputs, started afresh: "
                + ", ".join(reinitialised),
                flush=True,
            )
        load_into(model, state, source=str(config.init_checkpoint))
    return model


# ---------------------------------------------------------------------------------------------
# The run's hooks


@dataclasses.dataclass
class RunContext:
    """One training run under way: its options and processes, model, optimizer, data, state, clock and folder.

    ``amp`` (bf16 autocast) and ``channels_last`` are what was chosen for ``device``.
    """

    config: TrainConfig
    info: DistInfo
    device: torch.device
    setup: ModelSetup
    model: nn.Module
    optimizer: torch.optim.Optimizer
    state: TrainState
    clock: Stopwatch
    folder: RunFolder
    data: TrainData
    amp: bool
    channels_last: bool

    @property
    def label_set(self) -> LabelSet:
        return self.setup.label_set


@dataclasses.dataclass
class Hooks:
    """What the epoch loop calls back: save ``last/``, validate (and write ``best/``), time to reserve."""

    run: RunContext
    ctx: LoopContext | None = None
    save_seconds: list[float] = dataclasses.field(default_factory=list)
    val_seconds: list[float] = dataclasses.field(default_factory=list)

    def save_last(self) -> None:
        run = self.run
        began = time.perf_counter()
        rng_states = gather_rng_states(run.info)
        if run.info.is_main:
            run.state.elapsed = run.clock()
        run.folder.save_last(run.model, run.optimizer, run.state, rng_states)
        barrier(run.info)
        self.ctx.saving.last = time.perf_counter()
        self.save_seconds.append(self.ctx.saving.last - began)

    def validate(self) -> dict | None:
        run = self.run
        if run.data.val_loader is None:
            return None
        began = time.perf_counter()
        broadcast_buffers(run.model, run.info)
        metrics = evaluate(
            run.model,
            run.data.val_loader,
            run.device,
            run.label_set.num_classes,
            dist_info=run.info,
            label_set=run.label_set,
            amp=run.amp,
            channels_last=run.channels_last,
        )
        self.val_seconds.append(time.perf_counter() - began)
        state = run.state
        state.last_miou = metrics["miou"]
        improved = metrics["miou"] > state.best_miou
        if improved:
            state.best_miou, state.best_iteration = metrics["miou"], state.iteration
        row = {
            "iteration": state.iteration,
            "epoch": state.epoch,
            "miou": metrics["miou"],
            "pixel_acc": metrics["pixel_acc"],
            "mean_acc": metrics["mean_acc"],
            "iou": metrics["iou"],
            "elapsed_s": round(run.clock(), 2),
            "seconds": round(self.val_seconds[-1], 2),
        }
        _print(
            run.info,
            f"validation at iteration {state.iteration}: mIoU {metrics['miou']:.2f}  "
            f"pixel acc {metrics['pixel_acc']:.2f}" + ("  (best)" if improved else ""),
        )
        run.folder.record_validation(row, metrics, run.model, state, improved)
        barrier(run.info)
        return metrics

    def reserve(self, times: StepTimes) -> float:
        """Seconds the final validation and checkpoint will take (measured once they have run)."""
        val_loader = self.run.data.val_loader
        val_batches = len(val_loader) if val_loader is not None else 0
        # Before the first validation: an inference batch costs about a third of a training step.
        val_s = max(self.val_seconds) if self.val_seconds else val_batches * times.step_s * 0.4
        save_s = max(self.save_seconds) if self.save_seconds else 2.0
        return val_s + save_s


def _print(info: DistInfo, *message: object) -> None:
    if info.is_main:
        print(*message, flush=True)


# ---------------------------------------------------------------------------------------------
# Main


def run_training(config: TrainConfig, *, cancel: threading.Event | None = None) -> TrainSummary:
    """Run (or resume) training as configured; returns its summary (``summary.json`` holds its ``to_dict()``).

    Args:
        config: The run's configuration.
        cancel: Optional event that stops the run cleanly when set (e.g. from a UI thread); the
            stop-file and SIGTERM do the same from outside the process.
    """
    info = init_distributed(config.device)
    try:
        return _run(config, info, info.device, Path(config.out), cancel)
    finally:
        if info.initialised_here:
            torch.distributed.destroy_process_group()


def _resume_point(config: TrainConfig, info: DistInfo, out: Path) -> Path | None:
    """The run checkpoint to resume from (None for a new run); refuses to overwrite one unasked."""
    resume_from = find_run_checkpoint(out) if out.exists() else None
    if resume_from is not None and not config.resume:
        raise FileExistsError(
            f"{out} already holds a run checkpoint ({resume_from.name}); pass --resume to "
            "continue it or choose another --out"
        )
    if config.resume and resume_from is None:
        _print(info, f"nothing to resume in {out}: starting a new run")
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    barrier(info)
    return resume_from if config.resume else None


def _record_subsets(config: TrainConfig, info: DistInfo, out: Path) -> TrainConfig:
    """``config`` with each subset held only in memory written to ``OUT/subsets/NN.json`` and named by it.

    The run's records (``config.json``, ``split.json``, the checkpoints' ``training.data``) then name
    every source in text, as ``subset:FILE:WEIGHT``; training still reads the ids it was given.
    """
    data = list(config.data)
    for k, entry in enumerate(data):
        if isinstance(entry, SubsetSpec) and entry.path is None:
            path = (out / "subsets" / f"{k:02d}.json").resolve()
            if info.is_main:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_json(path, {"source": entry.source.to_text(), "ids": list(entry.ids)})
            data[k] = dataclasses.replace(entry, path=path)
    barrier(info)
    return dataclasses.replace(config, data=data)


def _placement(model: nn.Module, config: TrainConfig, device: torch.device, distributed: bool) -> tuple[bool, bool]:
    """Move the model to ``device``; returns (bf16 autocast, channels_last)."""
    use_cuda = device.type == "cuda"
    if config.amp == "auto" and device.type == "cpu" and not distributed:
        # Timed on this machine at the crop size (ssfnet.precision.choose_bf16). Ranks of a
        # distributed run keep the flags' answer, so that they cannot disagree.
        amp = choose_bf16(model, (2, 3, config.crop_size, config.crop_size), device, train=True)
    else:
        amp = use_bf16(config.amp, device)
    channels_last = config.channels_last == "on" or (config.channels_last == "auto" and (use_cuda or amp))
    if use_cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return amp, channels_last


def _criterion(
    config: TrainConfig, label_set: LabelSet, data: TrainData, part_classes: int = 0
) -> tuple[ParsingLoss, dict | None]:
    """The loss (class-balanced with ``--class-balance``) and, if balanced, its value weights by name.

    ``--set-loss-weight`` scales PASCAL-Person-Part's regions in the class output's loss; a model
    with a part head (``part_classes``) also learns the regions there (:mod:`ssfnet.parts`).
    """
    value_weights = None
    table = None
    if config.class_balance > 0:
        value_weights, shares = mixture_value_weights(data.sources, label_set.num_ids, config.class_balance)
        names = list(label_set.names) + [name for name, _ in label_set.coarse]
        table = {
            name: {"share": round(float(share), 6), "weight": round(float(weight), 4)}
            for name, share, weight in zip(names, shares, value_weights.tolist())
        }
    regions = region_values(label_set)
    membership, silenced = region_membership(label_set, config.region_sets)
    if regions and (config.set_loss_weight != 1.0 or silenced):
        if value_weights is None:
            value_weights = torch.ones(label_set.num_ids)
        value_weights = torch.as_tensor(value_weights, dtype=torch.float32).clone()
        value_weights[regions] *= config.set_loss_weight
        value_weights[silenced] = 0.0
    targets = part_targets(label_set) if part_classes else None
    if part_classes and targets is None:
        raise ValueError(f"a part head needs part regions, which label set {label_set.name} does not have")
    criterion = ParsingLoss(
        label_set,
        weights=config.loss_weights,
        value_weights=value_weights,
        part_targets=targets,
        part_weight=config.part_loss_weight,
        membership=membership,
    )
    return criterion, table


def _checkpoint_metadata(config: TrainConfig, out: Path) -> dict:
    """What every checkpoint of the run records about its training."""
    metadata = {
        "input_size": config.crop_size,
        "training": {
            "data": [source_record(d) for d in config.data],
            "split_seed": config.split_seed,
            "val_fraction": config.val_fraction,
            "init_checkpoint": config.init_checkpoint,
            "run": str(out),
        },
    }
    if any(as_source(s).kind == "viton" for s in config.data):
        metadata["data_terms"] = "trained on VITON (research use only)"
    return metadata


def _schedule(config: TrainConfig, batches_per_epoch: int) -> Schedule:
    """The learning-rate schedule: over ``--max-minutes`` of training where given, else over ``--epochs``."""
    schedule = Schedule(config.lr, config.lr_power)
    if config.max_minutes is not None:
        schedule.budget_s = config.max_minutes * 60
    else:
        schedule.total_iters = config.epochs * batches_per_epoch
    return schedule


def _training_module(model: nn.Module, config: TrainConfig, info: DistInfo, device: torch.device) -> nn.Module:
    """``model`` as the loop calls it: wrapped in DistributedDataParallel when distributed, compiled if asked."""
    train_model = model
    if info.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        train_model = torch.compile(train_model)
    return train_model


def _loop_context(hooks: Hooks, schedule: Schedule, stop: StopControl) -> LoopContext:
    """What the training loop needs of the run, its callbacks (``hooks``) included."""
    run = hooks.run
    config, data, state, folder = run.config, run.data, run.state, run.folder
    gpu_augment = None
    if data.gpu_augment:
        gpu_augment = lambda images, iteration: data.photometric(images, batch_generator(config.seed, iteration))
    return LoopContext(
        device=run.device,
        dist=run.info,
        schedule=schedule,
        state=state,
        clock=run.clock,
        stop=stop,
        step=StepSettings(
            amp=run.amp,
            channels_last=run.channels_last,
            native_loss=config.loss_at == "native",
            frozen_backbone=config.freeze_backbone,
            frozen_bn=config.freeze_bn,
            gpu_augment=gpu_augment,
        ),
        report=StepReport(log=folder.log, tensorboard=folder.tensorboard, print_freq=config.print_freq),
        saving=Saving(save=hooks.save_last, every_s=config.checkpoint_minutes * 60, last=time.perf_counter()),
        cap=SessionCap(iterations=config.stop_after_iters, start=state.iteration),
        estimate_reserve=hooks.reserve if schedule.budget_s is not None else None,
    )


def _run(
    config: TrainConfig, info: DistInfo, device: torch.device, out: Path, cancel: threading.Event | None
) -> TrainSummary:
    # The budget of --max-minutes covers the setup too, so the whole command ends on time.
    clock = Stopwatch()
    resume_from = _resume_point(config, info, out)
    config = _record_subsets(config, info, out)
    seed_everything(config.seed + info.rank)
    run, criterion, value_weights = _build_run(config, info, device, clock, resume_from)
    schedule = _schedule(config, run.data.batches_per_epoch)
    train_model = _training_module(run.model, config, info, device)
    _start_folder(run, schedule, value_weights)

    clock.already = run.state.elapsed
    stop = StopControl(config.stop_file or out / "STOP", cancel)
    if info.is_main and stop.stop_file is not None and stop.stop_file.exists():
        stop.stop_file.unlink()  # a stop-file left by the previous session must not end this one
    barrier(info)

    # The epoch loop
    hooks = Hooks(run)
    hooks.ctx = _loop_context(hooks, schedule, stop)
    times = StepTimes()
    session_start = time.perf_counter()
    status = _epochs(hooks, train_model, criterion, times)
    return _finish(hooks, times, status, session_start)


def _build_run(
    config: TrainConfig, info: DistInfo, device: torch.device, clock: Stopwatch, resume_from: Path | None
) -> tuple[RunContext, nn.Module, dict | None]:
    """Model, data, loss, optimizer, state (resumed from ``resume_from``) and run folder; the loss's class weights."""
    setup = resolve_model(config)
    label_set = setup.label_set
    model = build(setup, config)
    if config.freeze_backbone:
        freeze_backbone(model)
    if config.sync_bn and info.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    amp, channels_last = _placement(model, config, device, info.distributed)
    data = make_data(config, info, label_set, device.type == "cuda")
    criterion, value_weights = _criterion(config, label_set, data, setup.options.get("part_classes", 0))
    criterion = criterion.to(device)
    optimizer = make_optimizer(model, config)
    state = TrainState()
    if resume_from is not None:
        state, rng, _ = load_run_checkpoint(resume_from, model, optimizer, info)
        if rng is not None:
            restore_rng_state(*rng)
        _print(info, f"resumed from {resume_from} at epoch {state.epoch}, iteration {state.iteration}")
    out = Path(config.out)
    folder = RunFolder(
        out,
        info,
        {"variant": setup.variant, "label_set": label_set.name, "options": setup.options},
        _checkpoint_metadata(config, out),
    )
    run = RunContext(config, info, device, setup, model, optimizer, state, clock, folder, data, amp, channels_last)
    return run, criterion, value_weights


def _start_folder(run: RunContext, schedule: Schedule, value_weights: dict | None) -> None:
    """``config.json`` (with what was resolved), ``split.json``, the logs, the augmentation grid; the opening line."""
    config, info, device, data, state = run.config, run.info, run.device, run.data, run.state
    setup, label_set = run.setup, run.label_set
    resolved = {
        "variant": setup.variant,
        "label_set": label_set.name,
        "model_options": setup.options,
        "world_size": info.world_size,
        "device": str(device),
        "hardware": hardware(device, info.world_size),
        "amp_bf16": run.amp,
        "channels_last": run.channels_last,
        "gpu_augment": data.gpu_augment,
        "workers": data.workers,
        "batches_per_epoch": data.batches_per_epoch,
        "total_iters": schedule.total_iters,
        "budget_s": schedule.budget_s,
        "train_sizes": [len(d) for d, _ in data.sources],
        **({"value_weights": value_weights} if value_weights is not None else {}),
    }
    run.folder.start(
        {**config.to_dict(), "resolved": resolved}, data.split, state.iteration, tensorboard=config.tensorboard
    )
    if info.is_main and config.augment_grid:
        data.train_set.set_epoch(state.epoch)
        grid_photometric = data.photometric if data.gpu_augment else None
        save_augment_grid(data.train_set, label_set, run.folder.out / "augment_grid.png", photometric=grid_photometric)
    _print(
        info,
        f"{setup.variant} ({label_set.name}, {sum(p.numel() for p in run.model.parameters()) / 1e6:.1f} M "
        f"parameters) on {device} x{info.world_size}; {sum(len(d) for d, _ in data.sources)} training "
        f"and {data.split['val_images_scored']} validation images; {data.batches_per_epoch} steps per epoch; "
        + (f"{config.max_minutes} minutes" if schedule.budget_s else f"{schedule.total_iters} iterations"),
    )


def _epochs(hooks: Hooks, train_model: nn.Module, criterion: nn.Module, times: StepTimes) -> str:
    """Epochs until the schedule ends ("done") or the run is stopped; validates and saves between them."""
    run, ctx = hooks.run, hooks.ctx
    config, data, state = run.config, run.data, run.state
    status = "done" if state.finished else "epoch"
    validated_at = -1
    with ctx.stop:
        while status == "epoch":
            if ctx.schedule.total_iters is not None and state.epoch >= config.epochs:
                status = "done"
                break
            loader = data.epoch_loader(state, config)
            status = train_one_epoch(train_model, criterion, run.optimizer, loader, ctx, times)
            if status != "epoch":
                break
            state.epoch += 1
            state.step_in_epoch = 0
            if state.epoch % config.val_every == 0:
                hooks.validate()
                validated_at = state.iteration
            hooks.save_last()

        if status == "done":
            if validated_at != state.iteration and not state.finished:
                hooks.validate()
            state.finished = True
        hooks.save_last()
    return status


@dataclasses.dataclass(frozen=True)
class TrainSummary:
    """How a training session ended: what :func:`run_training` returns; :meth:`to_dict` is ``summary.json``.

    Attributes:
        status: ``finished`` (the epochs or the time budget ran out) or ``stopped`` (stop file,
            signal, cancel event or ``--stop-after-iters``).
        stop_reason: What stopped it (None when it finished).
        variant: The model variant trained.
        label_set: Its label set's name.
        epoch: Epochs completed.
        iteration: Iterations done, over every session of the run.
        elapsed_s: Training time over every session of the run.
        session_s: This session's time in the loop.
        best_val_miou: The best validation mIoU (None: never validated).
        best_iteration: The iteration of the best validation (-1: none).
        last_val_miou: The last validation mIoU (None: never validated).
        data_wait_fraction: Share of step time spent waiting for data.
        mean_step_s: Mean seconds per step.
        images_per_s: Training images per second over every process (None: no step this session).
        world_size: Processes that trained.
        last: The ``last/`` checkpoint folder.
        best: The ``best/`` checkpoint folder (None: not written).
    """

    status: str
    stop_reason: str | None
    variant: str
    label_set: str
    epoch: int
    iteration: int
    elapsed_s: float
    session_s: float
    best_val_miou: float | None
    best_iteration: int
    last_val_miou: float | None
    data_wait_fraction: float
    mean_step_s: float
    images_per_s: float | None
    world_size: int
    last: str
    best: str | None

    def to_dict(self) -> dict:
        """The summary as ``summary.json`` holds it (the fields, in order)."""
        return dataclasses.asdict(self)


def _finish(hooks: Hooks, times: StepTimes, status: str, session_start: float) -> TrainSummary:
    """The summary, written to ``summary.json`` with the curves, and the closing line."""
    run = hooks.run
    config, info, state, clock, folder = run.config, run.info, run.state, run.clock, run.folder
    stop, label_set, out = hooks.ctx.stop, run.label_set, folder.out
    summary = TrainSummary(
        status={"done": "finished", "stopped": "stopped"}.get(status, status),
        stop_reason=stop.reason,
        variant=run.setup.variant,
        label_set=label_set.name,
        epoch=state.epoch,
        iteration=state.iteration,
        elapsed_s=round(clock(), 1),
        session_s=round(time.perf_counter() - session_start, 1),
        best_val_miou=state.best_miou if state.best_miou >= 0 else None,
        best_iteration=state.best_iteration,
        last_val_miou=state.last_miou,
        data_wait_fraction=round(times.wait_fraction, 4),
        mean_step_s=round(times.step_s, 4),
        images_per_s=round(config.batch_size * info.world_size / times.step_s, 2) if times.steps else None,
        world_size=info.world_size,
        last=str(out / "last"),
        best=str(out / "best") if (out / "best").is_dir() else None,
    )
    folder.finish(summary.to_dict())
    wait_note = (
        "  (the loader is the bottleneck: raise --workers or use --gpu-augment on)"
        if (times.wait_fraction > 0.1 and times.steps > 5)
        else ""
    )
    _print(
        info,
        f"{summary.status} at iteration {state.iteration} after {summary.elapsed_s} s; "
        + (
            f"best val mIoU {summary.best_val_miou:.2f} at iteration {summary.best_iteration}, "
            f"weights in {summary.best}"
            if summary.best_val_miou is not None and summary.best
            else "no validation, no best/ written"
        )
        + f"; data wait {times.wait_fraction:.1%} of step time{wait_note}",
    )
    return summary


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """The command line of ``python -m train.train`` (``--config FILE`` holds options too)."""
    return parse_config(argv, prog="python -m train.train")


def main(argv: list[str] | None = None) -> int:
    """``python -m train.train``: train as ``argv`` says; the exit status (0: finished or stopped)."""
    config = parse_args(argv)
    try:
        summary = run_training(config)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # The message names the folder and the space needed; last/ is the previous complete one.
        print(f"error: {err.strerror}", file=sys.stderr)
        return 1
    return 0 if summary.status in ("finished", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
