"""The run folder: its config, split and summary files, logs, curves and the ``last/`` and ``best/`` writes."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ssfnet.checkpoint import save_checkpoint

from .engine import TrainState, save_run_checkpoint
from .plots import plot_curves
from .utils import DistInfo, JsonlWriter, write_json


class RunFolder:
    """The files of one training run; only the main process writes (the others' calls do nothing).

    Args:
        out: The run folder.
        info: The process's place in a distributed run.
        checkpoint_kwargs: ``variant``, ``label_set`` and ``options`` of every checkpoint written.
        metadata: What every checkpoint's metadata starts with (input size, data, split, run).
    """

    def __init__(self, out: Path, info: DistInfo, checkpoint_kwargs: dict, metadata: dict) -> None:
        self.out = out
        self.is_main = info.is_main
        self.checkpoint_kwargs = checkpoint_kwargs
        self.metadata = metadata
        self.log: JsonlWriter | None = None
        self.val_log: JsonlWriter | None = None
        self.tensorboard = None

    def start(self, config: dict, split: dict, iteration: int, *, tensorboard: bool = False) -> None:
        """Write ``config.json`` and ``split.json``; open the logs, dropping lines after ``iteration``."""
        if not self.is_main:
            return
        write_json(self.out / "config.json", config)
        write_json(self.out / "split.json", split)
        self.log, self.val_log = JsonlWriter(self.out / "log.jsonl"), JsonlWriter(self.out / "val.jsonl")
        self.log.truncate_after("iteration", iteration)
        self.val_log.truncate_after("iteration", iteration)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ImportError("--tensorboard needs the tensorboard package (pip install tensorboard)") from err
            self.tensorboard = SummaryWriter(str(self.out / "tensorboard"))

    def _meta(self, state: TrainState, metrics: dict) -> dict:
        return {**self.metadata, "iteration": state.iteration, "epoch": state.epoch, "metrics": metrics}

    def save_last(self, model: nn.Module, optimizer, state: TrainState, rng_states: list) -> None:
        """``last/``: weights, optimizer and training state, for ``--resume``."""
        if not self.is_main:
            return
        meta = self._meta(state, {"val_miou": state.last_miou, "best_val_miou": state.best_miou})
        save_run_checkpoint(self.out, model, optimizer, state, rng_states, metadata=meta, **self.checkpoint_kwargs)

    def record_validation(self, row: dict, metrics: dict, model: nn.Module, state: TrainState, improved: bool) -> None:
        """One line of ``val.jsonl`` (and tensorboard); ``best/`` when the mIoU improved."""
        if not self.is_main:
            return
        self.val_log.write(row)
        if self.tensorboard is not None:
            self.tensorboard.add_scalar("val/miou", metrics["miou"], state.iteration)
        if improved:
            meta = self._meta(state, {"val_miou": metrics["miou"], "val_pixel_acc": metrics["pixel_acc"]})
            save_checkpoint(model, self.out / "best", overwrite=True, metadata=meta, **self.checkpoint_kwargs)

    def finish(self, summary: dict) -> None:
        """Close the logs, draw ``curves.png`` and write ``summary.json``."""
        if not self.is_main:
            return
        if self.log is not None:
            self.log.close()
            self.val_log.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        plot_curves(self.out)
        write_json(self.out / "summary.json", summary)
