"""Model parts: backbone, pyramid pooling, hourglass, SMM, RAM and the network."""

from .backbone import DilatedResNet
from .hourglass import Hourglass
from .network import SSFBlock, SSFNet
from .ppm import PyramidPooling
from .ram import ResolutionAware
from .smm import SemanticModulation

__all__ = [
    "DilatedResNet",
    "Hourglass",
    "PyramidPooling",
    "ResolutionAware",
    "SSFBlock",
    "SSFNet",
    "SemanticModulation",
]
