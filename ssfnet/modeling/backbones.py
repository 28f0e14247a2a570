"""The backbones SSFNet can be built on: one entry of :data:`BACKBONES` each.

An entry says how to build the backbone (a module whose ``forward`` returns the features
``stem``, ``layer1`` ... ``layer4`` and whose ``channels`` names their widths), the pixel mean and
standard deviation its ImageNet weights expect, the output strides it can give, and how to load
those weights from a file. Adding a backbone is adding an entry here; the network, the model
registry, the checkpoint schema and the command lines read the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .backbone import DilatedResNet
from .efficientnet import LITE_MEAN, LITE_STD, EfficientNetLite0, packaged_weights_path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    """One backbone of :data:`BACKBONES`.

    Attributes:
        build: ``build(deep_stem=, stem_width=, output_stride=)`` -> the module.
        mean, std: RGB pixel statistics (0-1 scale) the ImageNet weights were trained with.
        output_strides: The strides ``build`` accepts.
        load_weights: ``load_weights(module, path)`` loads ImageNet weights from a local file.
        packaged_weights: The weights file an installed package provides (``"auto"``), or None
            where none can be had offline.
    """

    build: Callable[..., nn.Module]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output_strides: tuple[int, ...]
    load_weights: Callable[[nn.Module, str | Path], object]
    packaged_weights: Callable[[], Path] | None = None


def _resnet(name: str) -> Backbone:
    def build(*, deep_stem: bool, stem_width: int, output_stride: int) -> nn.Module:
        return DilatedResNet(name, deep_stem=deep_stem, stem_width=stem_width, output_stride=output_stride)

    return Backbone(
        build=build,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        output_strides=(8, 16, 32),
        load_weights=lambda module, path: module.load_torchvision_weights(path),
    )


def _efficientnet_lite0(*, deep_stem: bool, stem_width: int, output_stride: int) -> nn.Module:
    return EfficientNetLite0()  # its own stem; output stride 32 only


BACKBONES: dict[str, Backbone] = {
    **{name: _resnet(name) for name in ("resnet18", "resnet34", "resnet50", "resnet101")},
    "efficientnet_lite0": Backbone(
        build=_efficientnet_lite0,
        mean=LITE_MEAN,
        std=LITE_STD,
        output_strides=(32,),
        load_weights=lambda module, path: module.load_imagenet_weights(path),
        packaged_weights=packaged_weights_path,
    ),
}


def get_backbone(name: str) -> Backbone:
    """The entry of ``name``; ValueError naming the choices if there is none."""
    try:
        return BACKBONES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown backbone {name!r}; choose one of {tuple(BACKBONES)}") from None


def build_backbone(name: str, *, deep_stem: bool, stem_width: int, output_stride: int) -> nn.Module:
    """Build backbone ``name`` (ValueError for an unknown name or a stride it cannot give)."""
    spec = get_backbone(name)
    if output_stride not in spec.output_strides:
        raise ValueError(f"{name} has output stride {' or '.join(map(str, spec.output_strides))}, not {output_stride}")
    return spec.build(deep_stem=deep_stem, stem_width=stem_width, output_stride=output_stride)


def load_backbone_weights(name: str, module: nn.Module, weights: str | Path) -> None:
    """Load ImageNet weights into ``module`` (backbone ``name``): a local file, or ``"auto"`` for
    the file an installed package provides (nothing where there is none)."""
    spec = get_backbone(name)
    if str(weights) == "auto":
        if spec.packaged_weights is None:
            return
        weights = spec.packaged_weights()
    spec.load_weights(module, weights)
