"""Resolution-aware model (RAM), Sec. 3.3 and Eq. 3-4 of the paper."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .common import ConvBNReLU, resize_to
from .hourglass import Hourglass

Refinement = Literal["none", "hourglass", "l", "ram"]


class ResolutionAware(nn.Module):
    """Refine the SMM outputs into high-resolution features.

    With ``refinement="ram"`` (the paper's model), for ``S_H`` (2s) and ``S_L`` (s):

    - bottom-up (Eq. 3): ``D_H = conv(S_H)``, ``D_L = conv(S_L)``,
      ``D_L2 = conv(concat(D_L, conv_s2(D_H)))`` (s), ``D_min = conv_s2(D_L2)`` (s/2);
    - top-down (Eq. 4): ``U_L = up(D_min)`` (s), ``U_H = up(concat(U_L, D_L2))`` (2s),
      ``U_S = up(D_L2)`` (2s), ``out = conv1x1(conv1x1(concat(D_H, U_H, U_S)))``.

    The Table-2 ablations: ``"l"`` is the same without ``U_S`` (low-resolution
    features only at the first concatenation); ``"hourglass"`` is a common
    hourglass (two halvings, the same lowest resolution as RAM) over the merged
    SMM outputs; ``"none"`` only merges ``S_H`` with the up-sampled ``S_L``.
    Every variant consumes both inputs, so no parameter sits unused (which
    DistributedDataParallel would reject).

    Args:
        channels: Channel count C of the inputs and of the output.
        refinement: ``"ram"``, ``"l"``, ``"hourglass"`` or ``"none"``.

    Shapes: (``s_high`` B x C x 2s, ``s_low`` B x C x s) -> B x C x 2s.
    """

    def __init__(self, channels: int, refinement: Refinement = "ram") -> None:
        super().__init__()
        if refinement not in ("none", "hourglass", "l", "ram"):
            raise ValueError(f"refinement must be 'none', 'hourglass', 'l' or 'ram', got {refinement!r}")
        self.refinement = refinement
        c = channels
        if refinement in ("none", "hourglass"):
            self.merge = ConvBNReLU(2 * c, c, 1)
            self.hourglass = Hourglass(c, depth=2) if refinement == "hourglass" else None
            return
        self.d_high = ConvBNReLU(c, c, 3)
        self.d_low = ConvBNReLU(c, c, 3)
        self.d_high_down = ConvBNReLU(c, c, 3, stride=2)
        self.d_low2 = ConvBNReLU(2 * c, c, 3)
        self.d_min = ConvBNReLU(c, c, 3, stride=2)
        n_in = 4 * c if refinement == "ram" else 3 * c
        self.out = nn.Sequential(ConvBNReLU(n_in, c, 1), ConvBNReLU(c, c, 1))

    def forward(self, s_high: torch.Tensor, s_low: torch.Tensor) -> torch.Tensor:
        if self.refinement in ("none", "hourglass"):
            x = self.merge(torch.cat([s_high, resize_to(s_low, s_high)], dim=1))
            return x if self.hourglass is None else self.hourglass(x)
        d_high = self.d_high(s_high)
        d_low = self.d_low(s_low)
        d_low2 = self.d_low2(torch.cat([d_low, resize_to(self.d_high_down(d_high), d_low)], dim=1))
        d_min = self.d_min(d_low2)
        u_low = resize_to(d_min, d_low2)
        u_high = resize_to(torch.cat([u_low, d_low2], dim=1), d_high)
        parts = [d_high, u_high]
        if self.refinement == "ram":
            parts.append(resize_to(d_low2, d_high))
        return self.out(torch.cat(parts, dim=1))
