"""A fine-tune's options: the trainer's recipe with a fine-tune's defaults, plus its own options."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from ssfnet.predictor import CHECKPOINTS_DIR

from ..config import TrainConfig
from .defaults import FINETUNED_DIR, HOLDOUT

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# The trainer's recipe, changed where a fine-tune differs: a tenth of the learning rate, a short
# wall-clock budget, a lighter validation and no augmentation grid.
FINETUNE_DEFAULTS = dataclasses.replace(
    TrainConfig(),
    lr=1e-3,
    max_minutes=10.0,
    epochs=2,
    val_max_images=100,
    workers=2,
    print_freq=10,
    augment_grid=False,
    out="runs/finetune-{timestamp}",
)
# What a fine-tune takes from the recipe its base recorded (a released checkpoint's metadata), unless
# given: it goes on with the base's training (crop, optimizer, loss) at LR_SHARE of its learning rate.
INHERITED = (
    "crop_size",
    "optimizer",
    "head_lr_mult",
    "weight_decay",
    "class_balance",
    "loss_at",
    "scale_range",
    # A base with a body-part head goes on learning PASCAL-Person-Part's regions as it was trained to.
    "part_loss_weight",
    "set_loss_weight",
    "region_sets",
)
LR_SHARE = 0.1


@dataclass
class FinetuneConfig:
    """A fine-tune: the trainer's options (``train``) plus what only fine-tuning has.

    Args:
        train: Trainer options; ``data`` are the original sources, ``seed`` also seeds the
            held-out choice, ``max_minutes`` is the whole command's budget (None: ``epochs``).
        base: Checkpoint folder to start from; None = the embedded default checkpoint.
        corrections: Corrections folders (as the app writes them).
        corrections_share: Share of every epoch's samples drawn from the corrections; None: chosen
            by the fine-tune from how its base parses the corrections
            (:func:`~train.finetune.defaults.choose_settings`).
        holdout: Expected share of each corrections folder held out for scoring (at least one
            record is held out when a folder has two or more).
        name: Name of the new checkpoint (a UTC timestamp is appended); default: the base's + ``-ft``.
        checkpoints_dir: Where the new checkpoint is published; default the ``finetuned/`` folder of
            the project's checkpoints folder, which git ignores and the app lists.
        keep_run_checkpoint: Keep the run folder's ``last/`` (weights + optimizer state) after
            publishing; by default it is removed, the published checkpoint has the same weights.
        blend: Share of the fine-tune's change kept: the published weights (BatchNorm statistics
            included) are ``base + blend * (trained - base)``; 1 publishes the trained weights.
            None: chosen with ``corrections_share``.
        publish_anyway: Publish even when the fine-tuned model scores lower than its base on the
            corrections it trained on or on the held-out ones (by default such a run publishes
            nothing and says so).
        approved_only: Train and score on the photos whose latest record a reviewer approved
            (:mod:`ssfnet.data.review`); by default on every saved correction.
        given: Trainer options set by the user (command line or ``--config`` file); the others of
            :data:`INHERITED`, and ``lr``, come from the base's recorded recipe where it has one.
    """

    train: TrainConfig = field(default_factory=lambda: dataclasses.replace(FINETUNE_DEFAULTS, data=[]))
    base: str | None = None
    corrections: list[str] = field(default_factory=lambda: ["corrections"])
    corrections_share: float | None = None
    holdout: float = HOLDOUT
    name: str | None = None
    checkpoints_dir: str = str(CHECKPOINTS_DIR / FINETUNED_DIR)
    keep_run_checkpoint: bool = False
    blend: float | None = None
    publish_anyway: bool = False
    approved_only: bool = False
    given: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.corrections_share is not None and not 0.0 < self.corrections_share <= 1.0:
            raise ValueError(f"corrections_share must be in (0, 1], got {self.corrections_share}")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")
        if self.blend is not None and not 0.0 < self.blend <= 1.0:
            raise ValueError(f"blend must be in (0, 1], got {self.blend}")
        if not self.corrections:
            raise ValueError("at least one corrections folder is needed")
        if self.name is not None and not _NAME.match(self.name):
            raise ValueError(f"--name {self.name!r} must be a plain folder name (letters, digits, _ . -)")
        if self.train.resume:
            raise ValueError("fine-tuning does not resume: start a new run (it starts from --base)")

    def to_dict(self) -> dict:
        return {**{k: v for k, v in dataclasses.asdict(self).items() if k != "train"}, "train": self.train.to_dict()}
