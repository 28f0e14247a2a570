"""The assembled network: PSPNet + hourglass (branch-3), SSFNet-2, SSFNet-1, fusion."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .backbone import DilatedResNet
from .common import ConvBNReLU, init_weights, resize_to
from .hourglass import Hourglass
from .ppm import PyramidPooling
from .ram import Refinement, ResolutionAware
from .smm import SemanticModulation

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SSFBlock(nn.Module):
    """One SSFNet block: semantic modulation model followed by resolution-aware model.

    The adapting convolutions bring both inputs to ``channels`` first.

    Shapes: ``high`` B x C_high x s, ``low`` B x C_low x 2s -> B x channels x 2s.
    """

    def __init__(
        self,
        high_channels: int,
        low_channels: int,
        channels: int,
        fusion: Literal["h", "hl", "smm"],
        refinement: Refinement,
    ) -> None:
        super().__init__()
        self.adapt_high = ConvBNReLU(high_channels, channels, 1)
        self.adapt_low = ConvBNReLU(low_channels, channels, 3)
        self.smm = SemanticModulation(channels, fusion)
        self.ram = ResolutionAware(channels, refinement)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        s_high, s_low = self.smm(self.adapt_high(high), self.adapt_low(low))
        return self.ram(s_high, s_low)


class SSFNet(nn.Module):
    """Semantic-Spatial Fusion Network (Zhang et al., Neurocomputing 2020), Fig. 2a.

    branch-3: dilated ResNet -> pyramid pooling -> adapting conv -> hourglass (1/8).
    SSFNet-2: high = hourglass output, low = layer1 (1/4) -> 1/4.
    SSFNet-1: high = SSFNet-2 output, low = stem before max-pooling (1/2) -> 1/2.
    The three branch outputs are brought to 1/2, concatenated and classified; the
    logits are then up-sampled x2 to the input size. The paper up-samples the
    features to full size before fusing; fusing at 1/2 and up-sampling the
    logits is the same fusion at a quarter of the memory and compute.

    Heads: ``out`` (the fusion), ``aux1`` (the Baseline's output: a classifier on
    the hourglass features) and ``aux2`` (an FCN head on layer3, PSPNet's
    auxiliary branch at res4b22).

    Ablations (Table 2): ``fusion="none"`` drops both SSFNet blocks (the
    Baseline, PSPNet + hourglass; ``out`` is then classified from branch-3 only);
    ``fusion`` in ``h``/``hl``/``smm`` and ``refinement`` in
    ``none``/``hourglass``/``l``/``ram`` select the block's parts.

    Args:
        num_classes: Number of output classes.
        backbone: ResNet depth name (``resnet18`` ... ``resnet101``).
        deep_stem: PSPNet's three-conv stem instead of torchvision's 7x7.
        stem_width: Width of the deep stem.
        ppm_bin_channels: Channels of each pyramid pooling bin.
        ppm_channels: Channels after pyramid pooling.
        top_channels: Width of branch-3 (hourglass).
        mid_channels: Width of SSFNet-2 (1/4).
        high_channels: Width of SSFNet-1 (1/2) and of the fusion head.
        hourglass_depth: Halvings inside the branch-3 hourglass.
        aux_channels: Width of the layer3 auxiliary head.
        fusion: ``"smm"``, ``"hl"``, ``"h"`` or ``"none"`` (Baseline).
        refinement: ``"ram"``, ``"l"``, ``"hourglass"`` or ``"none"``.
        dropout: Dropout before each classifier.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        backbone: str = "resnet101",
        deep_stem: bool = True,
        stem_width: int = 64,
        ppm_bin_channels: int = 512,
        ppm_channels: int = 512,
        top_channels: int = 512,
        mid_channels: int = 256,
        high_channels: int = 128,
        hourglass_depth: int = 3,
        aux_channels: int = 256,
        fusion: Literal["none", "h", "hl", "smm"] = "smm",
        refinement: Refinement = "ram",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if fusion == "none" and refinement != "none":
            raise ValueError("the Baseline (fusion='none') has no SSFNet block to refine: use refinement='none'")
        self.num_classes = num_classes
        self.fusion = fusion
        self.backbone = DilatedResNet(backbone, deep_stem=deep_stem, stem_width=stem_width)
        ch = self.backbone.channels
        self.ppm = PyramidPooling(ch["layer4"], ppm_bin_channels, ppm_channels)
        self.adapt_top = ConvBNReLU(ppm_channels, top_channels, 1)
        self.hourglass = Hourglass(top_channels, hourglass_depth)
        if fusion != "none":
            self.ssf2 = SSFBlock(top_channels, ch["layer1"], mid_channels, fusion, refinement)
            self.ssf1 = SSFBlock(mid_channels, ch["stem"], high_channels, fusion, refinement)
            fused_in = top_channels + mid_channels + high_channels
        else:
            fused_in = top_channels
        self.head = nn.Sequential(
            ConvBNReLU(fused_in, high_channels, 1),
            ConvBNReLU(high_channels, high_channels, 3),
            nn.Dropout2d(dropout),
            nn.Conv2d(high_channels, num_classes, 1),
        )
        self.aux1_head = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(top_channels, num_classes, 1))
        self.aux2_head = nn.Sequential(
            ConvBNReLU(ch["layer3"], aux_channels, 3),
            nn.Dropout2d(dropout),
            nn.Conv2d(aux_channels, num_classes, 1),
        )
        for part in (self.ppm, self.adapt_top, self.hourglass, self.head, self.aux1_head, self.aux2_head):
            init_weights(part)
        if fusion != "none":
            init_weights(self.ssf2)
            init_weights(self.ssf1)
        for classifier in (self.head[-1], self.aux1_head[-1], self.aux2_head[-1]):
            # Small logits at the start: the first loss is about log(K), not tens.
            nn.init.normal_(classifier.weight, std=0.01)
            nn.init.zeros_(classifier.bias)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise RGB images: uint8 (0-255) or float in [0, 1], B x 3 x H x W."""
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        images = images.to(self.pixel_mean.dtype) if not images.is_floating_point() else images
        return (images - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)

    def forward(self, images: torch.Tensor, aux: bool = True) -> dict[str, torch.Tensor]:
        """Parse a batch of images.

        Args:
            images: B x 3 x H x W RGB, uint8 or float in [0, 1]; any H, W >= 1.
            aux: Also compute the auxiliary heads (needed for the training loss).

        Returns:
            ``{"out": B x K x H x W}`` plus ``aux1`` and ``aux2`` (same shape) when ``aux``.
        """
        x = self.preprocess(images)
        feats = self.backbone(x)
        top = self.hourglass(self.adapt_top(self.ppm(feats["layer4"])))
        if self.fusion == "none":
            logits = self.head(top)
        else:
            mid = self.ssf2(top, feats["layer1"])
            high = self.ssf1(mid, feats["stem"])
            logits = self.head(torch.cat([resize_to(top, high), resize_to(mid, high), high], dim=1))
        size = images.shape[-2:]
        result = {"out": resize_to(logits, size)}
        if aux:
            result["aux1"] = resize_to(self.aux1_head(top), size)
            result["aux2"] = resize_to(self.aux2_head(feats["layer3"]), size)
        return result
