"""Small building blocks shared by the model parts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """Convolution, batch norm and ReLU: the paper's generic "conv".

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size (padding keeps the size at stride 1).
        stride: Stride; 2 halves the size, rounding up, like the backbone does.
        dilation: Dilation of the kernel.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def resize_to(x: torch.Tensor, like: torch.Tensor | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``x`` (B x C x h x w) to the spatial size of ``like``.

    Every up-sampling in the network goes through here with an explicit target
    size, so odd input sizes (where a stride-2 step rounds up) line up exactly.
    """
    size = tuple(like.shape[-2:]) if isinstance(like, torch.Tensor) else tuple(like)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def add_pixel_stats(module: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """Give ``module`` the RGB ``pixel_mean`` and ``pixel_std`` buffers (1 x 3 x 1 x 1) its input is normalised with.

    Not persistent: the statistics belong to the architecture, not to the trained weights.
    """
    module.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
    module.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)


def normalise_pixels(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Normalise RGB images, B x 3 x H x W uint8 (0-255) or float in [0, 1]: ``(x - mean) / std``.

    The one input normalisation of every model family (SSFNet variants and torchvision peers),
    so training, the predictor and the app cannot disagree about it.
    """
    if images.dtype == torch.uint8:
        images = images.float().div_(255.0)
    images = images.to(mean.dtype) if not images.is_floating_point() else images
    return (images - mean.to(images.dtype)) / std.to(images.dtype)


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convolutions, unit batch norms: the usual ResNet start."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
