"""torchvision's segmentation networks, wrapped to the project's model contract.

The peers a user would otherwise pick, trained and benchmarked through the same code:
normalisation inside the model, a dict of logits out (``out``, and the auxiliary FCN head as
``aux2`` where the network has one). Built with ``weights=None``: nothing is downloaded.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import IMAGENET_MEAN, IMAGENET_STD
from .common import add_pixel_stats, normalise_pixels

# Variant name -> (torchvision builder name, has an auxiliary head).
_PEER_BUILDERS = {
    "deeplabv3_resnet50": ("deeplabv3_resnet50", True),
    "deeplabv3_resnet101": ("deeplabv3_resnet101", True),
    "deeplabv3_mobilenet_v3_large": ("deeplabv3_mobilenet_v3_large", True),
    "lraspp_mobilenet_v3_large": ("lraspp_mobilenet_v3_large", False),
}
PEERS = tuple(_PEER_BUILDERS)


class TorchvisionSegmenter(nn.Module):
    """A torchvision segmentation network (randomly initialised) with the SSFNet call signature.

    Args:
        num_classes: Output classes.
        name: One of :data:`PEERS`.
    """

    def __init__(self, *, num_classes: int, name: str = "deeplabv3_resnet50") -> None:
        super().__init__()
        from torchvision.models import segmentation

        if name not in _PEER_BUILDERS:
            raise ValueError(f"unknown torchvision peer {name!r}; choose one of {PEERS}")
        builder, self.has_aux = _PEER_BUILDERS[name]
        kwargs = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
        if self.has_aux:
            kwargs["aux_loss"] = True
        self.num_classes = num_classes
        self.net = getattr(segmentation, builder)(**kwargs)
        self.is_lraspp = isinstance(self.net, segmentation.LRASPP)
        add_pixel_stats(self, IMAGENET_MEAN, IMAGENET_STD)

    @property
    def backbone(self) -> nn.Module:
        return self.net.backbone

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise RGB images: uint8 (0-255) or float in [0, 1], B x 3 x H x W."""
        return normalise_pixels(images, self.pixel_mean, self.pixel_std)

    def forward(self, images: torch.Tensor, aux: bool = True, native: bool = False) -> dict[str, torch.Tensor]:
        """B x 3 x H x W uint8 or [0, 1] float -> ``{"out": B x K x H x W}`` (+ ``aux2`` when ``aux``).

        ``native`` is accepted for the common contract; torchvision's heads always up-sample.
        """
        x = self.preprocess(images)
        if not (aux and self.has_aux):
            # Skip the auxiliary FCN head at inference.
            feats = self.net.backbone(x)
            # LR-ASPP's head reads two feature levels; the DeepLabV3 heads read the top one.
            out = self.net.classifier(feats if self.is_lraspp else feats["out"])
            return {"out": nn.functional.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)}
        result = self.net(x)
        return {"out": result["out"], "aux2": result["aux"]}


# The name older code and checkpoints use.
DeepLabV3 = TorchvisionSegmenter
