"""Semantic modulation model (SMM), Sec. 3.2 and Eq. 1-2 of the paper."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .common import ConvBNReLU, resize_to

Fusion = Literal["h", "hl", "smm"]


class SemanticModulation(nn.Module):
    """Fuse high-level low-resolution ``H`` with low-level high-resolution ``Lo``.

    With ``fusion="smm"`` (the paper's model), in the notation of Eq. 1-2:

    - low-resolution branch: ``Lo_l = conv_s2(Lo)``, ``beta_ll = W_ll * H + b_ll``,
      ``S_L = Lo_l x beta_ll + H``;
    - high-resolution branch: ``H_h = up2(H)``, ``beta_hh = W_hh * H_h + b_hh``,
      ``S_H = Lo x beta_hh + H_h``.

    ``beta`` is a full C x h x w tensor (a plain convolution with bias, no norm
    or activation, exactly as Eq. 2 writes it) and ``x`` is element-wise.

    The Table-2 ablations keep the same outputs without the modulation:
    ``"hl"`` (dual branch: ``S_L = Lo_l + H``, ``S_H = Lo + H_h``) and ``"h"``
    (only up-sample high and add: ``S_H = Lo + H_h``, ``S_L = H``).

    Args:
        channels: Channel count C of both inputs (after the adapting convs).
        fusion: ``"smm"``, ``"hl"`` or ``"h"``.

    Shapes: ``high`` B x C x s, ``low`` B x C x 2s -> (``S_H`` B x C x 2s, ``S_L`` B x C x s).
    """

    def __init__(self, channels: int, fusion: Fusion = "smm") -> None:
        super().__init__()
        if fusion not in ("h", "hl", "smm"):
            raise ValueError(f"fusion must be 'h', 'hl' or 'smm', got {fusion!r}")
        self.fusion = fusion
        if fusion in ("hl", "smm"):
            self.down = ConvBNReLU(channels, channels, 3, stride=2)
        if fusion == "smm":
            self.beta_ll = nn.Conv2d(channels, channels, 3, padding=1, bias=True)
            self.beta_hh = nn.Conv2d(channels, channels, 3, padding=1, bias=True)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        high_up = resize_to(high, low)
        if self.fusion == "h":
            return low + high_up, high
        low_down = resize_to(self.down(low), high)
        if self.fusion == "hl":
            return low + high_up, low_down + high
        s_low = low_down * self.beta_ll(high) + high
        s_high = low * self.beta_hh(high_up) + high_up
        return s_high, s_low
