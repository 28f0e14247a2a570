"""The assembled network: PSPNet + hourglass (branch-3), SSFNet-2, SSFNet-1, fusion."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, build_backbone, get_backbone
from .common import ConvBNReLU, add_pixel_stats, init_weights, normalise_pixels, resize_to
from .hourglass import Hourglass
from .ppm import PyramidPooling
from .ram import Refinement, ResolutionAware
from .smm import SemanticModulation

__all__ = ["BACKBONES", "IMAGENET_MEAN", "IMAGENET_STD", "SSFBlock", "SSFNet"]


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

    Lighter backbones (for CPUs): with an output stride of 16 or 32 (a ResNet with fewer dilated
    layers, or EfficientNet-Lite0, which is 32), the pyramid pooling runs on the coarse top
    features and its output is brought to 1/8 by a small top-down step (up-sample, concatenate
    with the backbone's 1/8 features, 3x3 conv), so branch-3 is still delivered at 1/8 and the
    SSFNet-2 (1/4) and SSFNet-1 (1/2) blocks and the fusion stay as the paper draws them. At
    output stride 8 (the paper's PSPNet) there is no such step.

    Ablations (Table 2): ``fusion="none"`` drops both SSFNet blocks (the
    Baseline, PSPNet + hourglass; ``out`` is then classified from branch-3 only);
    ``fusion`` in ``h``/``hl``/``smm`` and ``refinement`` in
    ``none``/``hourglass``/``l``/``ram`` select the block's parts.

    Args:
        num_classes: Number of output classes.
        backbone: ResNet depth name (``resnet18`` ... ``resnet101``) or ``efficientnet_lite0``.
        deep_stem: PSPNet's three-conv stem instead of torchvision's 7x7 (ResNets only).
        stem_width: Width of the deep stem.
        output_stride: 8 (the paper), 16 or 32 for ResNets; EfficientNet-Lite0 is always 32.
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
        part_classes: With a number > 0, a second classifier beside ``out`` on the same
            features, ``parts``: body regions (PASCAL-Person-Part's background + 6 parts) learnt
            from exact part labels, so that in-the-wild photos labelled only with parts teach the
            shared features without rewarding any one clothing class (see :mod:`ssfnet.parts`).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        backbone: str = "resnet101",
        deep_stem: bool = True,
        stem_width: int = 64,
        output_stride: int = 8,
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
        part_classes: int = 0,
    ) -> None:
        super().__init__()
        if fusion == "none" and refinement != "none":
            raise ValueError("the Baseline (fusion='none') has no SSFNet block to refine: use refinement='none'")
        self.num_classes = num_classes
        self.fusion = fusion
        self.backbone = build_backbone(
            backbone, deep_stem=deep_stem, stem_width=stem_width, output_stride=output_stride
        )
        mean, std = get_backbone(backbone).mean, get_backbone(backbone).std
        ch = self.backbone.channels
        self.ppm = PyramidPooling(ch["layer4"], ppm_bin_channels, ppm_channels)
        # Coarser than 1/8: bring the context down to 1/8 with the backbone's 1/8 features.
        self.to_eighth = ConvBNReLU(ppm_channels + ch["layer2"], ppm_channels, 3) if output_stride > 8 else None
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
        self.part_head = None
        if part_classes:
            self.part_head = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(high_channels, part_classes, 1))
        self.aux1_head = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(top_channels, num_classes, 1))
        self.aux2_head = nn.Sequential(
            ConvBNReLU(ch["layer3"], aux_channels, 3),
            nn.Dropout2d(dropout),
            nn.Conv2d(aux_channels, num_classes, 1),
        )
        if self.to_eighth is not None:
            init_weights(self.to_eighth)
        for part in (self.ppm, self.adapt_top, self.hourglass, self.head, self.aux1_head, self.aux2_head):
            init_weights(part)
        if fusion != "none":
            init_weights(self.ssf2)
            init_weights(self.ssf1)
        classifiers = [self.head[-1], self.aux1_head[-1], self.aux2_head[-1]]
        if self.part_head is not None:
            classifiers.append(self.part_head[-1])
        for classifier in classifiers:
            # Small logits at the start: the first loss is about log(K), not tens.
            nn.init.normal_(classifier.weight, std=0.01)
            nn.init.zeros_(classifier.bias)
        add_pixel_stats(self, mean, std)

    def _fuse(self, top: torch.Tensor, mid: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """The head's first layer (1x1 conv, BN, ReLU) on ``cat(up(top), up(mid), high)`` at 1/2.

        A 1x1 convolution commutes with bilinear up-sampling (both are linear), so each
        branch is projected by its slice of the one weight at its own resolution and only the
        projections are up-sampled: the same function as convolving the concatenation, with
        far less up-sampling and memory traffic at 1/2 resolution.
        """
        conv, bn, relu = self.head[0]
        weights = torch.split(conv.weight, [top.shape[1], mid.shape[1], high.shape[1]], dim=1)
        fused = F.conv2d(high, weights[2])
        fused = fused + resize_to(F.conv2d(mid, weights[1]), fused) + resize_to(F.conv2d(top, weights[0]), fused)
        return relu(bn(fused))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise RGB images: uint8 (0-255) or float in [0, 1], B x 3 x H x W."""
        return normalise_pixels(images, self.pixel_mean, self.pixel_std)

    def forward(self, images: torch.Tensor, aux: bool = True, native: bool = False) -> dict[str, torch.Tensor]:
        """Parse a batch of images.

        Args:
            images: B x 3 x H x W RGB, uint8 or float in [0, 1]; any H, W >= 1.
            aux: Also compute the auxiliary heads (needed for the training loss).
            native: Return each head's logits at the resolution it is computed at (``out``
                at 1/2, ``aux1`` at 1/8, ``aux2`` at layer3's stride) instead of up-sampling
                them to H x W; the training loss then brings the labels down, which is far
                cheaper on a CPU than scoring up-sampled logits.

        Returns:
            ``{"out": B x K x H x W}`` plus ``aux1`` and ``aux2`` (same shape) when ``aux``, and
            ``parts`` (B x P x H x W) when the model has a part head.
        """
        x = self.preprocess(images)
        feats = self.backbone(x)
        context = self.ppm(feats["layer4"])
        if self.to_eighth is not None:
            eighth = feats["layer2"]
            context = self.to_eighth(torch.cat([resize_to(context, eighth), eighth], dim=1))
        top = self.hourglass(self.adapt_top(context))
        if self.fusion == "none":
            features = self.head[:2](top)
        else:
            mid = self.ssf2(top, feats["layer1"])
            high = self.ssf1(mid, feats["stem"])
            features = self.head[1](self._fuse(top, mid, high))
        result = {"out": self.head[2:](features)}
        if self.part_head is not None:
            result["parts"] = self.part_head(features)
        if aux:
            result["aux1"] = self.aux1_head(top)
            result["aux2"] = self.aux2_head(feats["layer3"])
        if not native:
            size = images.shape[-2:]
            result = {k: resize_to(v, size) for k, v in result.items()}
        return result
