"""SSFNet human parsing: model, label sets, data, losses, metrics, predictor, checkpoints."""

from .build import ABLATIONS, MODELS, VARIANTS, ModelConfig, build_model, list_models
from .checkpoint import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from .labels import IGNORE_INDEX, LABEL_SETS, LabelSet, get_label_set
from .predictor import Predictor, load_predictor

__all__ = [
    "ABLATIONS",
    "IGNORE_INDEX",
    "LABEL_SETS",
    "VARIANTS",
    "MODELS",
    "list_models",
    "CheckpointError",
    "LabelSet",
    "ModelConfig",
    "Predictor",
    "build_model",
    "get_label_set",
    "list_checkpoints",
    "load_checkpoint",
    "load_predictor",
    "save_checkpoint",
]
