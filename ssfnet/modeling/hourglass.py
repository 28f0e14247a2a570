"""The common hourglass network (Newell et al., ECCV 2016), one stack."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import resize_to


class Residual(nn.Module):
    """Bottleneck residual module of the hourglass (1x1 -> 3x3 -> 1x1 + identity)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = max(channels // 2, 1)
        self.body = nn.Sequential(
            nn.Conv2d(channels, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.body(x))


class Hourglass(nn.Module):
    """Recursive hourglass: a skip branch at each scale plus a pooled branch.

    Args:
        channels: Width, kept constant through the hourglass.
        depth: Number of times the pooled branch halves the resolution.

    Shapes: B x C x h x w -> B x C x h x w (any h, w; odd sizes round up).
    """

    def __init__(self, channels: int, depth: int) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError("hourglass depth must be at least 1")
        self.skip = Residual(channels)
        self.down = Residual(channels)
        self.inner = Hourglass(channels, depth - 1) if depth > 1 else Residual(channels)
        self.up = Residual(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = F.max_pool2d(x, 2, 2, ceil_mode=True)
        low = self.up(self.inner(self.down(low)))
        return self.skip(x) + resize_to(low, x)
