"""SSFNet human parsing: model, label sets, data, losses, metrics, predictor, checkpoints.

The names below are imported on first use, so that ``ssfnet.onnx_predictor`` (onnxruntime, no
PyTorch) can be used where torch is not installed.
"""

from __future__ import annotations

import importlib

# Public name -> the submodule that defines it.
_EXPORTS = {
    "ABLATIONS": "build",
    "MODELS": "build",
    "VARIANTS": "build",
    "ModelConfig": "build",
    "build_model": "build",
    "list_models": "build",
    "CheckpointError": "checkpoint",
    "list_checkpoints": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "IGNORE_INDEX": "labels",
    "LABEL_SETS": "labels",
    "LabelSet": "labels",
    "get_label_set": "labels",
    "Predictor": "predictor",
    "load_predictor": "predictor",
    "OnnxPredictor": "onnx_predictor",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
