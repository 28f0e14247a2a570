"""The trainer's data: sources and their held-out split, the augmented mixture, samplers and loaders."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler, Sampler, Subset

from ssfnet.data import EvalTransform, MixedDataset, TrainTransform, as_source, open_source, source_record, split_ids
from ssfnet.data.transforms import MEAN_COLOUR
from ssfnet.labels import IGNORE_INDEX, LabelSet

from .augment import CopyPaste, Photometric, TrainDataset
from .config import TrainConfig
from .engine import TrainState
from .utils import DistInfo


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


def worker_init(_: int) -> None:
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
    for entry in config.data:
        spec, text = as_source(entry), source_record(entry)
        everything = open_source(spec, label_set)
        train_ids, val_ids = split_ids(everything.ids, config.val_fraction, config.split_seed)
        if not train_ids:
            raise ValueError(f"source {spec_name(text)} has no training samples left after the validation split")
        train_sources.append((open_source(spec, label_set, ids=train_ids), spec.weight))
        if val_ids:
            val_sets.append(open_source(spec, label_set, ids=val_ids, transform=EvalTransform(val_size, label_set)))
        record.append(
            {
                "spec": text,
                "kind": spec.kind,
                "path": str(Path(spec.path).resolve()) if spec.path is not None else None,
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


def spec_name(record: str | dict) -> str:
    """A data entry in a message: its text, or the source of a subset held in memory."""
    return record if isinstance(record, str) else f"subset of {record['source']}"


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


@dataclass
class TrainData:
    """Everything the epoch loop draws from: the training mixture, its sampler, the validation loader."""

    sources: list[tuple[Dataset, float]]
    train_set: TrainDataset
    val_loader: DataLoader | None
    split: dict
    base_sampler: DistributedSampler
    loader_kwargs: dict
    batches_per_epoch: int
    photometric: Photometric
    gpu_augment: bool
    workers: int

    def epoch_loader(self, state: TrainState, config: TrainConfig) -> DataLoader:
        """The loader of ``state.epoch``, skipping the batches a resumed epoch has already taken."""
        self.train_set.set_epoch(state.epoch)
        self.base_sampler.set_epoch(state.epoch)
        return DataLoader(
            self.train_set,
            batch_size=config.batch_size,
            sampler=SkipSampler(self.base_sampler, state.step_in_epoch * config.batch_size),
            drop_last=True,
            generator=torch.Generator().manual_seed(config.seed + state.epoch),
            **self.loader_kwargs,
        )


def make_data(config: TrainConfig, info: DistInfo, label_set: LabelSet, use_cuda: bool) -> TrainData:
    """Open the sources, split them, build the augmented training set and the loaders' settings."""
    train_sources, val_set, split = build_datasets(config, label_set)
    photometric = Photometric(config.colour_jitter, config.blur, config.jpeg)
    gpu_augment = photometric.active and (config.gpu_augment == "on" or (config.gpu_augment == "auto" and use_cuda))
    train_set = build_train_dataset(config, train_sources, label_set, None if gpu_augment else photometric)
    workers = max(0, min(config.workers, torch.multiprocessing.cpu_count()))
    loader_kwargs = {"num_workers": workers, "pin_memory": use_cuda, "worker_init_fn": worker_init}
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
    return TrainData(
        train_sources,
        train_set,
        val_loader,
        split,
        base_sampler,
        loader_kwargs,
        batches_per_epoch,
        photometric,
        gpu_augment,
        workers,
    )
