"""Predictor: numpy image in, numpy label map out.

Resizing, padding, multi-scale and flip testing, device and dtype are handled
here, so the app and the scripts never touch tensors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from .labels import LabelSet, get_label_set
from .parsing import MAX_PROB_SIDE, ImageParser  # noqa: F401  (MAX_PROB_SIDE: as before)
from .parts import class_probabilities, part_admission
from .precision import autocast, choose_bf16, resolve_device, use_bf16

CHECKPOINTS_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINTS_DIR / "ssfnet_lite0-lip20"


def resolve_checkpoint(checkpoint: str | Path | None = None) -> Path:
    """The checkpoint folder to use: the argument, ``$SSFNET_CHECKPOINT`` or the embedded default.

    Raises:
        FileNotFoundError: with a message that says what to do.
    """
    if checkpoint is None:
        checkpoint = os.environ.get("SSFNET_CHECKPOINT") or DEFAULT_CHECKPOINT
    path = Path(checkpoint)
    if not path.is_dir():
        if path.resolve() == DEFAULT_CHECKPOINT.resolve():
            raise FileNotFoundError(_no_default_message())
        raise FileNotFoundError(f"checkpoint folder {path} does not exist")
    return path


def _no_default_message() -> str:
    """Why the default checkpoint is missing, naming the checkpoint folders there are and how to pick one."""
    folder = DEFAULT_CHECKPOINT.parent
    message = f"the embedded default checkpoint ({DEFAULT_CHECKPOINT}) is not in this copy yet. "
    found = [path for path, _ in list_checkpoints(folder)]
    if found:
        names = ", ".join(path.name for path in found)
        return message + (
            f"Checkpoint folders in {folder}: {names}. Pick one with --checkpoint {found[0]} "
            "(or set SSFNET_CHECKPOINT to its folder)."
        )
    others = sorted(p.name for p in folder.glob("*") if p.is_dir() and not p.name.startswith("."))
    if others:
        message += f"{folder} holds {', '.join(others)}, but none is a checkpoint (metadata.json and weights). "
    return message + (
        "Train one with `python -m train.train` and pass its folder (--checkpoint / SSFNET_CHECKPOINT), "
        f"or put a checkpoint folder in {folder}."
    )


class Predictor(ImageParser):
    """Parses RGB images with a loaded model.

    Args:
        model: A network returning ``{"out": B x K x H x W}`` (eval mode is set here).
        label_set: Label set of the model's classes.
        device: Where to run; ``None`` picks CUDA when available.
        input_size: The longer image side fed to the network at scale 1.
        scales: Scales used by multi-scale testing.
        name: Human-readable name (checkpoint folder name).
        metadata: The checkpoint's metadata.
        precision: ``auto`` (bf16 autocast on CUDA; on a CPU with native bf16 whichever of bf16
            and fp32 a short timing at ``input_size`` finds faster, see
            :func:`ssfnet.precision.choose_bf16`; else fp32), ``bf16`` or ``fp32``. bf16 gives
            the same labels as fp32 on all but a few boundary pixels (tested on real photos).
        part_gate: For a model with a body-part head, let it decide background and which
            classes each body region admits (:func:`ssfnet.parts.combine`); by default the class
            output is read alone (a young part head costs more than it steers right: see
            ``docs/results/in-the-wild.md``). A checkpoint records the choice made at release.
        output: ``"classes"`` (the label set's classes) or ``"parts"``: the body-part head's
            PASCAL-Person-Part regions (``label_set`` is then ignored; models with that head only).
    """

    def __init__(
        self,
        model: nn.Module,
        label_set: LabelSet | str,
        *,
        device: str | torch.device | None = None,
        input_size: int = 473,
        scales: Sequence[float] = (0.75, 1.0, 1.25),
        name: str = "",
        metadata: dict | None = None,
        precision: str = "auto",
        part_gate: bool = False,
        output: str = "classes",
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.precision = precision
        if precision == "auto" and self.device.type == "cpu":
            self.bf16 = choose_bf16(self.model, (1, 3, int(input_size), int(input_size)), self.device)
        else:
            self.bf16 = use_bf16(precision, self.device)
        self.channels_last = self.device.type == "cuda" or self.bf16
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if output not in ("classes", "parts"):
            raise ValueError(f"output must be 'classes' or 'parts', got {output!r}")
        if output == "parts" and getattr(self.model, "part_head", None) is None:
            raise ValueError(f"{name or 'this model'} has no body-part head")
        self.output = output
        self.label_set = get_label_set("pascal-person-part-7" if output == "parts" else label_set)
        self.input_size = int(input_size)
        self.scales = tuple(scales)
        self.name = name
        self.metadata = metadata or {}
        flip = self.label_set.flip_lut[: self.label_set.num_classes].astype(np.int64)
        self._flip_perm = torch.from_numpy(flip).to(self.device)
        # A model with a body-part head: background and each pixel's region come from it.
        self.part_gate = part_gate
        self._admits = part_admission(self.model, self.label_set) if part_gate and output == "classes" else None

    @property
    def num_classes(self) -> int:
        return self.label_set.num_classes

    def _autocast(self):
        return autocast(self.device, self.bf16)

    def _softmax(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.output == "parts":
            return outputs["parts"].float().softmax(1)
        return class_probabilities(outputs, self._admits)

    @torch.inference_mode()
    def _probabilities(self, batch: torch.Tensor, flip: bool) -> torch.Tensor:
        """Softmax of the network for a B x 3 x h x w uint8 batch, flip-averaged."""
        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            prob = self._softmax(self.model(batch, aux=False))
            if flip:
                flipped = self._softmax(self.model(batch.flip(-1), aux=False))
                prob = prob + flipped.flip(-1)[:, self._flip_perm]
                prob = prob / 2
        return prob

    @torch.inference_mode()
    def _batch_probabilities(self, batch: np.ndarray, flip: bool) -> torch.Tensor:
        return self._probabilities(torch.from_numpy(batch).permute(0, 3, 1, 2), flip)

    def _resize_probabilities(self, prob: torch.Tensor, index: int, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(prob[index : index + 1], size=size, mode="bilinear", align_corners=False)

    def _labels_and_proba(self, mean: torch.Tensor, proba: bool) -> np.ndarray:
        if proba:
            return mean[0].cpu().numpy().astype(np.float32)
        return mean[0].argmax(0).to(torch.uint8).cpu().numpy()


BACKENDS = ("torch", "onnxruntime")


def load_predictor(
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    *,
    backend: str = "torch",
    **kwargs,
) -> Predictor:
    """Load a checkpoint folder into a :class:`Predictor` (or an ONNX model into an ``OnnxPredictor``).

    Args:
        checkpoint: Checkpoint folder; ``None`` = ``$SSFNET_CHECKPOINT`` or the
            embedded default in ``checkpoints/``. With ``backend="onnxruntime"`` also an
            ``.onnx`` file written by ``python -m ssfnet.export``.
        device: ``"cpu"``, ``"cuda"``, ...; ``None`` picks CUDA when available (the
            onnxruntime backend runs on the CPU).
        backend: ``"torch"`` or ``"onnxruntime"`` (:class:`ssfnet.onnx_predictor.OnnxPredictor`,
            on the checkpoint's ONNX export, made on first use and cached, see
            :func:`ssfnet.export.cached_export`).
        **kwargs: Passed to :class:`Predictor` (``input_size``, ``scales``, ``precision``) or to
            ``OnnxPredictor`` (``input_size``, ``scales``, ``threads``; ``precision`` may be
            ``auto`` or ``fp32`` there: the file decides).

    Raises:
        FileNotFoundError: no such checkpoint (the message says what to do).
        ssfnet.checkpoint.CheckpointError: the checkpoint is corrupt or does not fit.
        ValueError: an unknown backend, or options the onnxruntime backend does not have.
    """
    if backend == "onnxruntime":
        return _load_onnx(checkpoint, device, **kwargs)
    if backend != "torch":
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    path = resolve_checkpoint(checkpoint)
    model, meta = load_checkpoint(path)
    kwargs.setdefault("input_size", meta.get("input_size", 473))
    # Whether the body-part head steers the classes was measured at release (train.release --part-gate).
    kwargs.setdefault("part_gate", meta.get("part_gate", False))
    return Predictor(model, meta["label_set"], device=device, name=path.name, metadata=meta, **kwargs)


def _load_onnx(checkpoint: str | Path | None, device: str | torch.device | None, **kwargs):
    """An ``OnnxPredictor`` on an ``.onnx`` file, or on the cached export of a checkpoint folder."""
    from .export import cached_export
    from .onnx_predictor import OnnxPredictor

    if device is not None and str(device) not in ("cpu", "auto"):
        raise ValueError(f"the onnxruntime backend runs on the CPU here, not on {device}")
    precision = kwargs.pop("precision", "auto")
    if precision not in ("auto", "fp32"):
        raise ValueError(f"precision {precision!r} is for the torch backend; an ONNX file has its own")
    if checkpoint is not None and Path(checkpoint).suffix == ".onnx":
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"ONNX model {checkpoint} does not exist")
        return OnnxPredictor(checkpoint, **kwargs)
    path = resolve_checkpoint(checkpoint)
    kwargs.setdefault("name", path.name)
    try:
        exported = cached_export(path)
    except (CheckpointError, OSError):
        raise
    except Exception as err:  # the exporter's own errors: say which checkpoint could not be exported
        raise CheckpointError(f"checkpoint {path} could not be exported to ONNX: {err}") from err
    return OnnxPredictor(exported, **kwargs)
