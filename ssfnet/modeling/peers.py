"""torchvision's DeepLabV3, wrapped to the project's model contract.

The peer a user would otherwise pick, trained and benchmarked through the same
code: normalisation inside the model, a dict of logits out (``out``, and the
layer3 FCN head as ``aux2``). Built with ``weights=None``: nothing is downloaded.
"""

from __future__ import annotations

import torch
from torch import nn

from .network import IMAGENET_MEAN, IMAGENET_STD

PEERS = ("deeplabv3_resnet50", "deeplabv3_resnet101")


class DeepLabV3(nn.Module):
    """DeepLabV3 (ResNet-50/101, output stride 8) with the SSFNet call signature."""

    def __init__(self, *, num_classes: int, backbone: str = "resnet50") -> None:
        super().__init__()
        from torchvision.models import segmentation

        build = {"resnet50": segmentation.deeplabv3_resnet50, "resnet101": segmentation.deeplabv3_resnet101}
        if backbone not in build:
            raise ValueError(f"DeepLabV3 backbone must be one of {sorted(build)}")
        self.num_classes = num_classes
        self.net = build[backbone](weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=True)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        return (images - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)

    def forward(self, images: torch.Tensor, aux: bool = True) -> dict[str, torch.Tensor]:
        x = self.preprocess(images)
        if not aux:
            # Skip the auxiliary FCN head at inference.
            feats = self.net.backbone(x)
            out = self.net.classifier(feats["out"])
            return {"out": nn.functional.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)}
        result = self.net(x)
        return {"out": result["out"], "aux2": result["aux"]}
