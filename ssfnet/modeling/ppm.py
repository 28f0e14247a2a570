"""Pyramid pooling module (PSPNet)."""

from __future__ import annotations

import torch
from torch import nn

from .common import ConvBNReLU, resize_to


class PyramidPooling(nn.Module):
    """Average-pool into bins (1, 2, 3, 6), reduce, up-sample, concatenate, fuse.

    Args:
        in_channels: Channels of the backbone's top features (2048 for ResNet-101).
        bin_channels: Channels of each pooled branch (512 in PSPNet).
        out_channels: Channels after the fusing 3x3 convolution (512 in PSPNet).
        bins: Pooling grid sizes.

    Shapes: B x in_channels x h x w -> B x out_channels x h x w.
    """

    def __init__(
        self,
        in_channels: int,
        bin_channels: int,
        out_channels: int,
        bins: tuple[int, ...] = (1, 2, 3, 6),
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), ConvBNReLU(in_channels, bin_channels, 1)) for b in bins
        )
        self.fuse = ConvBNReLU(in_channels + len(bins) * bin_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [resize_to(stage(x), x) for stage in self.stages]
        return self.fuse(torch.cat([x, *pooled], dim=1))
