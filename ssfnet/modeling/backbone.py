"""Dilated ResNet backbone (PSPNet style) that returns the features SSFNet needs.

The layer names mirror torchvision's ResNet (``conv1``, ``bn1``, ``layer1`` ...,
``downsample.0``), so torchvision-format ImageNet weights load by name. With the
deep stem (three 3x3 convolutions, as in PSPNet) the stem has other names
(``stem.*``) and starts from random weights even when the rest is loaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .common import init_weights

_DEPTHS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, dilation: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, dilation: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# Output stride -> (stride, dilation) of layer3 and layer4.
_OUTPUT_STRIDES = {8: ((1, 2), (1, 4)), 16: ((2, 1), (1, 2)), 32: ((2, 1), (2, 1))}


class DilatedResNet(nn.Module):
    """ResNet with layer3 and layer4 dilated (2, 4): output stride 8 (PSPNet), or 16 / 32.

    Args:
        name: One of ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``.
        deep_stem: Three 3x3 convolutions (PSPNet) instead of one 7x7.
        stem_width: Width of the deep stem's first two convolutions; its
            third gives ``2 * stem_width`` channels (64/128 in PSPNet).
        output_stride: 8 dilates layer3 and layer4 (2, 4) as PSPNet does; 16 strides layer3
            and dilates layer4 (2); 32 is the plain ResNet. Fewer dilated pixels are much
            cheaper on a CPU.

    Forward returns a dict of features for an input B x 3 x H x W:
        ``stem`` (1/2, before max-pooling: SSFNet's branch-1),
        ``layer1`` (1/4: branch-2), ``layer2`` (1/8), ``layer3`` (1/8 at output stride 8,
        else 1/16: the auxiliary head's input), ``layer4`` (1/output_stride: the pyramid
        pooling's input).
    """

    def __init__(
        self, name: str = "resnet101", *, deep_stem: bool = True, stem_width: int = 64, output_stride: int = 8
    ) -> None:
        super().__init__()
        if name not in _DEPTHS:
            raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(_DEPTHS)}")
        if output_stride not in _OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {sorted(_OUTPUT_STRIDES)}, got {output_stride}")
        self.output_stride = output_stride
        (s3, d3), (s4, d4) = _OUTPUT_STRIDES[output_stride]
        kind, layers = _DEPTHS[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.deep_stem = deep_stem
        if deep_stem:
            self.stem = nn.Sequential(
                nn.Conv2d(3, stem_width, 3, 2, 1, bias=False),
                nn.BatchNorm2d(stem_width),
                nn.ReLU(inplace=True),
                nn.Conv2d(stem_width, stem_width, 3, 1, 1, bias=False),
                nn.BatchNorm2d(stem_width),
                nn.ReLU(inplace=True),
                nn.Conv2d(stem_width, 2 * stem_width, 3, 1, 1, bias=False),
                nn.BatchNorm2d(2 * stem_width),
                nn.ReLU(inplace=True),
            )
            self.inplanes = 2 * stem_width
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.inplanes = 64
        self.stem_channels = self.inplanes
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0], stride=1, dilation=1)
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, dilation=1)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=s3, dilation=d3)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=s4, dilation=d4)
        self.channels = {
            "stem": self.stem_channels,
            "layer1": 64 * block.expansion,
            "layer2": 128 * block.expansion,
            "layer3": 256 * block.expansion,
            "layer4": 512 * block.expansion,
        }
        init_weights(self)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        # As in PSPNet/DeepLab, the first block of a dilated layer uses half the
        # layer's dilation so the receptive field grows without a gap.
        first = max(1, dilation // 2)
        layers = [block(self.inplanes, planes, stride, first, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, dilation, None) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        stem = self.stem(x) if self.deep_stem else self.relu(self.bn1(self.conv1(x)))
        c1 = self.layer1(self.maxpool(stem))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return {"stem": stem, "layer1": c1, "layer2": c2, "layer3": c3, "layer4": c4}

    def load_torchvision_weights(self, path: str | Path) -> list[str]:
        """Load a torchvision ResNet state dict (ImageNet weights) from a local file.

        Accepts ``.pth`` (tensors only, loaded with ``weights_only=True``) or
        ``.safetensors``. The classifier (``fc``) is ignored; with the deep stem
        the 7x7 stem has no counterpart and the stem stays random.

        Returns:
            The names of this backbone's parameters that the file did not fill.

        Raises:
            ValueError: if a tensor's shape disagrees (wrong depth) or nothing matched.
        """
        path = Path(path)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        own = self.state_dict()
        if self.deep_stem:
            state = {k: v for k, v in state.items() if not k.startswith(("conv1.", "bn1."))}
        matched = {k: v for k, v in state.items() if k in own}
        for k, v in matched.items():
            if own[k].shape != v.shape:
                raise ValueError(f"{path}: {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
        if not matched:
            raise ValueError(f"{path}: no tensor matches a torchvision ResNet layout")
        self.load_state_dict(matched, strict=False)
        return sorted(k for k in own if k not in matched)
