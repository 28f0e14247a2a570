"""Train an SSFNet (or torchvision's DeepLabV3 for comparison) on one or more human-parsing sources.

    python -m train.train --data viton:../shared/datasets/viton --data ccp:../shared/datasets/ccp:0.5 \\
        --variant ssfnet_r101 --epochs 100 --out runs/r101

    torchrun --nproc_per_node 8 -m train.train --config run.yaml       # several GPUs (or nodes)

The run folder holds ``config.json``, ``split.json`` (the held-out ids), ``augment_grid.png``,
``log.jsonl`` (one line per iteration), ``val.jsonl`` (one line per validation), ``curves.png``,
``summary.json`` and two checkpoints: ``last/`` (with the training state, for ``--resume``) and
``best/`` (best validation mIoU). Both load with :func:`ssfnet.load_checkpoint`.
"""

from __future__ import annotations

import dataclasses
import errno
import signal
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler, Sampler, Subset

from ssfnet import ABLATIONS, get_label_set
from ssfnet.build import build_model, get_model_spec, model_options
from ssfnet.checkpoint import load_into, load_state_dict, save_checkpoint
from ssfnet.data import EvalTransform, MixedDataset, TrainTransform, open_source, parse_source, split_ids
from ssfnet.data.transforms import MEAN_COLOUR
from ssfnet.labels import IGNORE_INDEX, LabelSet
from ssfnet.losses import ParsingLoss
from ssfnet.precision import use_bf16

from . import pack  # noqa: F401  (registers the "pack" source kind)
from .augment import CopyPaste, Photometric, TrainDataset, batch_generator, save_augment_grid
from .balance import mixture_value_weights
from .config import TrainConfig, parse_args
from .engine import (
    LoopContext,
    Schedule,
    StepTimes,
    TrainState,
    evaluate,
    find_run_checkpoint,
    freeze_backbone,
    load_run_checkpoint,
    param_groups,
    save_run_checkpoint,
    train_one_epoch,
)
from .utils import (
    DistInfo,
    JsonlWriter,
    StopControl,
    Stopwatch,
    barrier,
    broadcast_buffers,
    gather_rng_states,
    init_distributed,
    read_jsonl,
    restore_rng_state,
    seed_everything,
    write_json,
)

DEFAULT_VARIANT = "ssfnet_r101"
DEFAULT_LABEL_SET = "lip-20"


# ---------------------------------------------------------------------------------------------
# Data


def pad_collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images of different sizes, padding with the mean colour (labels with ignore)."""
    h = max(image.shape[1] for image, _ in batch)
    w = max(image.shape[2] for image, _ in batch)
    images = torch.empty(len(batch), 3, h, w, dtype=torch.uint8)
    images[:] = torch.tensor(MEAN_COLOUR, dtype=torch.uint8).view(1, 3, 1, 1)
    labels = torch.full((len(batch), h, w), IGNORE_INDEX, dtype=torch.int64)
    for i, (image, label) in enumerate(batch):
        images[i, :, : image.shape[1], : image.shape[2]] = image
        labels[i, : label.shape[0], : label.shape[1]] = label
    return images, labels


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...``: each process scores a disjoint share, none twice."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class SkipSampler(Sampler[int]):
    """Drops the first ``skip`` indices of another sampler (the samples a resumed epoch already saw)."""

    def __init__(self, sampler: Sampler[int], skip: int) -> None:
        self.sampler = sampler
        self.skip = skip

    def __iter__(self):
        for k, index in enumerate(self.sampler):
            if k >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


def _worker_init(_: int) -> None:
    # Each loader process augments one sample at a time: extra threads only oversubscribe the cores.
    # (Safe here: workers start by forkserver, with no thread pool inherited from the trainer.)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    # Ctrl-C reaches the whole process group; the main process stops the run cleanly, which needs
    # the workers alive until it does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def build_datasets(
    config: TrainConfig, label_set: LabelSet
) -> tuple[list[tuple[Dataset, float]], Dataset | None, dict]:
    """Open every source, hold out its validation ids and return (train sources, validation set, split record)."""
    if not config.data:
        raise ValueError("no training data: pass --data KIND:PATH[:WEIGHT] (e.g. viton:../shared/datasets/viton)")
    val_size = config.val_size or config.crop_size
    train_sources, val_sets, record = [], [], []
    for text in config.data:
        spec = parse_source(text)
        everything = open_source(spec, label_set)
        train_ids, val_ids = split_ids(everything.ids, config.val_fraction, config.split_seed)
        if not train_ids:
            raise ValueError(f"source {text} has no training samples left after the validation split")
        train_sources.append((open_source(spec, label_set, ids=train_ids), spec.weight))
        if val_ids:
            val_sets.append(open_source(spec, label_set, ids=val_ids, transform=EvalTransform(val_size, label_set)))
        record.append(
            {
                "spec": text,
                "kind": spec.kind,
                "path": str(Path(spec.path).resolve()),
                "split": spec.split,
                "weight": spec.weight,
                "train_count": len(train_ids),
                "val_count": len(val_ids),
                "val_ids": val_ids,
            }
        )
    val_set: Dataset | None = ConcatDataset(val_sets) if val_sets else None
    if val_set is not None and config.val_max_images is not None and len(val_set) > config.val_max_images:
        # An even spread over the concatenation keeps every source's share.
        keep = np.unique(np.linspace(0, len(val_set) - 1, config.val_max_images).round().astype(int))
        val_set = Subset(val_set, keep.tolist())
    split = {
        "seed": config.split_seed,
        "val_fraction": config.val_fraction,
        "val_images_scored": len(val_set) if val_set is not None else 0,
        "sources": record,
    }
    return train_sources, val_set, split


def build_train_dataset(
    config: TrainConfig,
    sources: list[tuple[Dataset, float]],
    label_set: LabelSet,
    photometric_in_loader: Photometric | None,
) -> TrainDataset:
    mixed = MixedDataset(sources, length=config.epoch_size, seed=config.seed)
    transform = TrainTransform(config.crop_size, config.scale_range, config.flip, label_set, seed=config.seed)
    copy_paste = CopyPaste(label_set, round(1.25 * config.crop_size)) if config.copy_paste > 0 else None
    return TrainDataset(
        mixed,
        transform,
        copy_paste=copy_paste,
        copy_paste_prob=config.copy_paste,
        photometric=photometric_in_loader,
        seed=config.seed,
    )


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
        if label_set.name != get_label_set(init_meta["label_set"]).name:
            raise ValueError(
                f"--label-set {label_set.name} differs from the init checkpoint's "
                f"{init_meta['label_set']} (the classifier would not fit)"
            )
    options = dict(init_meta.get("options", {})) if init_meta else {}
    if config.ablation:
        options.update(ABLATIONS[config.ablation])
    options.update(config.model_options)
    if not get_model_spec(variant).takes_options and options:
        raise ValueError(f"{variant} has no ablation switches or model options (got {sorted(options)})")
    return ModelSetup(variant, model_options(variant, **options), label_set, init_state, init_meta)


def build(setup: ModelSetup, config: TrainConfig) -> nn.Module:
    # A checkpoint to start from carries the whole backbone: no ImageNet file is needed then.
    weights = None if setup.init_state is not None else config.backbone_weights
    model = build_model(setup.variant, setup.label_set.num_classes, backbone_weights=weights, **setup.options)
    if setup.init_state is not None:
        load_into(model, setup.init_state, source=str(config.init_checkpoint))
    return model


# ---------------------------------------------------------------------------------------------
# Outputs


def plot_curves(out: Path) -> Path | None:
    """``curves.png``: training loss per iteration (raw and smoothed) and validation mIoU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log, val = read_jsonl(out / "log.jsonl"), read_jsonl(out / "val.jsonl")
    if not log:
        return None
    it = np.array([r["iteration"] for r in log])
    loss = np.array([r["loss"] for r in log])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(it, loss, color="0.75", lw=0.8, label="loss")
    if len(loss) > 5:
        window = max(3, len(loss) // 20)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax1.plot(it[window - 1 :], smooth, color="C0", label=f"mean of {window}")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("training loss (weighted sum of the heads)")
    ax1.legend()
    lr_ax = ax1.twinx()
    lr_ax.plot(it, [r["lr"] for r in log], color="C3", lw=0.8, alpha=0.6)
    lr_ax.set_ylabel("learning rate", color="C3")
    if val:
        ax2.plot([r["iteration"] for r in val], [r["miou"] for r in val], "o-", color="C2")
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("validation mIoU (%)")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _print(info: DistInfo, *message: object) -> None:
    if info.is_main:
        print(*message, flush=True)


# ---------------------------------------------------------------------------------------------
# Main


def main(config: TrainConfig, *, cancel: threading.Event | None = None) -> dict:
    """Run (or resume) training as configured; returns the summary also written to ``summary.json``.

    Args:
        config: The run's configuration.
        cancel: Optional event that stops the run cleanly when set (e.g. from a UI thread); the
            stop-file and SIGTERM do the same from outside the process.
    """
    info = init_distributed(config.device)
    device = info.device
    out = Path(config.out)
    try:
        return _run(config, info, device, out, cancel)
    finally:
        if info.initialised_here:
            torch.distributed.destroy_process_group()


def _run(config: TrainConfig, info: DistInfo, device: torch.device, out: Path, cancel: threading.Event | None) -> dict:
    # The budget of --max-minutes covers the setup too, so the whole command ends on time.
    clock = Stopwatch()
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
    seed_everything(config.seed + info.rank)

    setup = resolve_model(config)
    label_set = setup.label_set
    model = build(setup, config)
    if config.freeze_backbone:
        freeze_backbone(model)
    if config.sync_bn and info.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    use_cuda = device.type == "cuda"
    # bf16 autocast on CUDA and on CPUs that run it natively (about 2.5x faster on AVX-512-BF16).
    amp = use_bf16(config.amp, device)
    channels_last = config.channels_last == "on" or (config.channels_last == "auto" and (use_cuda or amp))
    if use_cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)

    # Data
    train_sources, val_set, split = build_datasets(config, label_set)
    photometric = Photometric(config.colour_jitter, config.blur, config.jpeg)
    gpu_augment = photometric.active and (config.gpu_augment == "on" or (config.gpu_augment == "auto" and use_cuda))
    train_set = build_train_dataset(config, train_sources, label_set, None if gpu_augment else photometric)
    workers = max(0, min(config.workers, torch.multiprocessing.cpu_count()))
    loader_kwargs = {"num_workers": workers, "pin_memory": use_cuda, "worker_init_fn": _worker_init}
    if workers > 0:
        loader_kwargs["prefetch_factor"] = 4
        # A forked worker inherits OpenCV's and OpenMP's thread pools without their threads and
        # can hang on its first call into them; forkserver workers start from a clean process.
        loader_kwargs["multiprocessing_context"] = "forkserver"
    base_sampler = DistributedSampler(
        train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=config.seed, drop_last=True
    )
    batches_per_epoch = len(base_sampler) // config.batch_size
    if batches_per_epoch == 0:
        raise ValueError(
            f"an epoch of {len(train_set)} samples gives no full batch of {config.batch_size} per "
            f"process; raise --epoch-size"
        )
    val_loader = None
    if val_set is not None and len(val_set) > 0:
        val_loader = DataLoader(
            val_set,
            batch_size=config.batch_size,
            sampler=ShardSampler(len(val_set), info.rank, info.world_size),
            collate_fn=pad_collate,
            **loader_kwargs,
        )

    # Optimisation
    value_weights = value_shares = None
    if config.class_balance > 0:
        value_weights, value_shares = mixture_value_weights(train_sources, label_set.num_ids, config.class_balance)
    criterion = ParsingLoss(label_set, weights=config.loss_weights, value_weights=value_weights).to(device)
    optimizer = torch.optim.SGD(
        param_groups(model, config.lr, config.head_lr_mult),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    state = TrainState()
    if resume_from is not None and config.resume:
        state, rng, _ = load_run_checkpoint(resume_from, model, optimizer, info)
        if rng is not None:
            restore_rng_state(*rng)
        _print(info, f"resumed from {resume_from} at epoch {state.epoch}, iteration {state.iteration}")
    schedule = Schedule(config.lr, config.lr_power)
    if config.max_minutes is not None:
        schedule.budget_s = config.max_minutes * 60
    else:
        schedule.total_iters = config.epochs * batches_per_epoch

    train_model: nn.Module = model
    if info.distributed:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if use_cuda else None)
    if config.compile:
        train_model = torch.compile(train_model)

    metadata_base = {
        "input_size": config.crop_size,
        "training": {
            "data": list(config.data),
            "split_seed": config.split_seed,
            "val_fraction": config.val_fraction,
            "init_checkpoint": config.init_checkpoint,
            "run": str(out),
        },
    }
    if any(parse_source(s).kind == "viton" for s in config.data):
        metadata_base["data_terms"] = "trained on VITON (research use only)"

    # Run-folder files (main process)
    log = val_log = tensorboard = None
    if info.is_main:
        resolved = {
            "variant": setup.variant,
            "label_set": label_set.name,
            "model_options": setup.options,
            "world_size": info.world_size,
            "device": str(device),
            "amp_bf16": amp,
            "channels_last": channels_last,
            "gpu_augment": gpu_augment,
            "workers": workers,
            "batches_per_epoch": batches_per_epoch,
            "total_iters": schedule.total_iters,
            "budget_s": schedule.budget_s,
            "train_sizes": [len(d) for d, _ in train_sources],
        }
        if value_weights is not None:
            names = list(label_set.names) + [name for name, _ in label_set.coarse]
            resolved["value_weights"] = {
                name: {"share": round(float(share), 6), "weight": round(float(weight), 4)}
                for name, share, weight in zip(names, value_shares, value_weights.tolist())
            }
        write_json(out / "config.json", {**config.to_dict(), "resolved": resolved})
        write_json(out / "split.json", split)
        log, val_log = JsonlWriter(out / "log.jsonl"), JsonlWriter(out / "val.jsonl")
        log.truncate_after("iteration", state.iteration)
        val_log.truncate_after("iteration", state.iteration)
        if config.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ImportError("--tensorboard needs the tensorboard package (pip install tensorboard)") from err
            tensorboard = SummaryWriter(str(out / "tensorboard"))
        if config.augment_grid:
            train_set.set_epoch(state.epoch)
            save_augment_grid(
                train_set, label_set, out / "augment_grid.png", photometric=photometric if gpu_augment else None
            )
        _print(
            info,
            f"{setup.variant} ({label_set.name}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
            f"parameters) on {device} x{info.world_size}; {sum(len(d) for d, _ in train_sources)} training "
            f"and {split['val_images_scored']} validation images; {batches_per_epoch} steps per epoch; "
            + (f"{config.max_minutes} minutes" if schedule.budget_s else f"{schedule.total_iters} iterations"),
        )

    clock.already = state.elapsed
    stop = StopControl(config.stop_file or out / "STOP", cancel)
    if info.is_main and stop.stop_file is not None and stop.stop_file.exists():
        stop.stop_file.unlink()  # a stop-file left by the previous session must not end this one
    barrier(info)

    ckpt_kwargs = {"variant": setup.variant, "label_set": label_set.name, "options": setup.options}
    save_seconds: list[float] = []
    val_seconds: list[float] = []

    def save_last() -> None:
        began = time.perf_counter()
        rng_states = gather_rng_states(info)
        if info.is_main:
            state.elapsed = clock()
            meta = {
                **metadata_base,
                "iteration": state.iteration,
                "epoch": state.epoch,
                "metrics": {"val_miou": state.last_miou, "best_val_miou": state.best_miou},
            }
            save_run_checkpoint(out, model, optimizer, state, rng_states, metadata=meta, **ckpt_kwargs)
        barrier(info)
        ctx.last_save = time.perf_counter()
        save_seconds.append(ctx.last_save - began)

    def validate() -> dict | None:
        if val_loader is None:
            return None
        began = time.perf_counter()
        broadcast_buffers(model, info)
        metrics = evaluate(
            model,
            val_loader,
            device,
            label_set.num_classes,
            dist_info=info,
            label_set=label_set,
            amp=amp,
            channels_last=channels_last,
        )
        val_seconds.append(time.perf_counter() - began)
        state.last_miou = metrics["miou"]
        improved = metrics["miou"] > state.best_miou
        if improved:
            state.best_miou, state.best_iteration = metrics["miou"], state.iteration
        if info.is_main:
            val_log.write(
                {
                    "iteration": state.iteration,
                    "epoch": state.epoch,
                    "miou": metrics["miou"],
                    "pixel_acc": metrics["pixel_acc"],
                    "mean_acc": metrics["mean_acc"],
                    "iou": metrics["iou"],
                    "elapsed_s": round(clock(), 2),
                    "seconds": round(val_seconds[-1], 2),
                }
            )
            if tensorboard is not None:
                tensorboard.add_scalar("val/miou", metrics["miou"], state.iteration)
            _print(
                info,
                f"validation at iteration {state.iteration}: mIoU {metrics['miou']:.2f}  "
                f"pixel acc {metrics['pixel_acc']:.2f}" + ("  (best)" if improved else ""),
            )
            if improved:
                meta = {
                    **metadata_base,
                    "iteration": state.iteration,
                    "epoch": state.epoch,
                    "metrics": {"val_miou": metrics["miou"], "val_pixel_acc": metrics["pixel_acc"]},
                }
                save_checkpoint(model, out / "best", overwrite=True, metadata=meta, **ckpt_kwargs)
        barrier(info)
        return metrics

    val_batches = len(val_loader) if val_loader is not None else 0

    def reserve(times: StepTimes) -> float:
        """Seconds the final validation and checkpoint will take (measured once they have run)."""
        # Before the first validation: an inference batch costs about a third of a training step.
        val_s = max(val_seconds) if val_seconds else val_batches * times.step_s * 0.4
        save_s = max(save_seconds) if save_seconds else 2.0
        return val_s + save_s

    ctx = LoopContext(
        device=device,
        dist=info,
        schedule=schedule,
        state=state,
        clock=clock,
        stop=stop,
        log=log,
        amp=amp,
        channels_last=channels_last,
        frozen_backbone=config.freeze_backbone,
        checkpoint_every_s=config.checkpoint_minutes * 60,
        save=save_last,
        stop_after_iters=config.stop_after_iters,
        print_freq=config.print_freq,
        tensorboard=tensorboard,
        session_start_iteration=state.iteration,
        last_save=time.perf_counter(),
        native_loss=config.loss_at == "native",
    )
    if gpu_augment:
        ctx.gpu_augment = lambda images, iteration: photometric(images, batch_generator(config.seed, iteration))
    if schedule.budget_s is not None:
        ctx.estimate_reserve = reserve

    times = StepTimes()
    status = "done" if state.finished else "epoch"
    validated_at = -1
    session_start = time.perf_counter()
    with stop:
        while status == "epoch":
            if schedule.total_iters is not None and state.epoch >= config.epochs:
                status = "done"
                break
            train_set.set_epoch(state.epoch)
            base_sampler.set_epoch(state.epoch)
            loader = DataLoader(
                train_set,
                batch_size=config.batch_size,
                sampler=SkipSampler(base_sampler, state.step_in_epoch * config.batch_size),
                drop_last=True,
                generator=torch.Generator().manual_seed(config.seed + state.epoch),
                **loader_kwargs,
            )
            status = train_one_epoch(train_model, criterion, optimizer, loader, ctx, times)
            if status != "epoch":
                break
            state.epoch += 1
            state.step_in_epoch = 0
            if state.epoch % config.val_every == 0:
                validate()
                validated_at = state.iteration
            save_last()

        if status == "done":
            if validated_at != state.iteration and not state.finished:
                validate()
            state.finished = True
        save_last()
    session_s = time.perf_counter() - session_start

    summary = {
        "status": {"done": "finished", "stopped": "stopped"}.get(status, status),
        "stop_reason": stop.reason,
        "variant": setup.variant,
        "label_set": label_set.name,
        "epoch": state.epoch,
        "iteration": state.iteration,
        "elapsed_s": round(clock(), 1),
        "session_s": round(session_s, 1),
        "best_val_miou": state.best_miou if state.best_miou >= 0 else None,
        "best_iteration": state.best_iteration,
        "last_val_miou": state.last_miou,
        "data_wait_fraction": round(times.wait_fraction, 4),
        "mean_step_s": round(times.step_s, 4),
        "images_per_s": round(config.batch_size * info.world_size / times.step_s, 2) if times.steps else None,
        "world_size": info.world_size,
        "last": str(out / "last"),
        "best": str(out / "best") if (out / "best").is_dir() else None,
    }
    if info.is_main:
        if log is not None:
            log.close()
            val_log.close()
        if tensorboard is not None:
            tensorboard.close()
        plot_curves(out)
        write_json(out / "summary.json", summary)
        wait_note = (
            "  (the loader is the bottleneck: raise --workers or use --gpu-augment on)"
            if (times.wait_fraction > 0.1 and times.steps > 5)
            else ""
        )
        _print(
            info,
            f"{summary['status']} at iteration {state.iteration} after {summary['elapsed_s']} s; "
            + (
                f"best val mIoU {summary['best_val_miou']:.2f} at iteration {summary['best_iteration']}, "
                f"weights in {summary['best']}"
                if summary["best_val_miou"] is not None and summary["best"]
                else "no validation, no best/ written"
            )
            + f"; data wait {times.wait_fraction:.1%} of step time{wait_note}",
        )
    return summary


def cli(argv: list[str] | None = None) -> int:
    config = parse_args(argv, prog="python -m train.train")
    try:
        summary = main(config)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # The message names the folder and the space needed; last/ is the previous complete one.
        print(f"error: {err.strerror}", file=sys.stderr)
        return 1
    return 0 if summary["status"] in ("finished", "stopped") else 1


if __name__ == "__main__":
    sys.exit(cli())
