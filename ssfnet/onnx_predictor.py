"""Parse images with an exported ONNX model on onnxruntime, without PyTorch.

:class:`OnnxPredictor` is :class:`ssfnet.Predictor`'s twin for a model written by
``python -m ssfnet.export``: the same numpy image in, numpy label map out, and the same resizing,
multi-scale, flip and body-part steering, computed with numpy and OpenCV around an onnxruntime
session. Nothing here imports torch (a test runs it with torch unimportable), so a deployment
needs only ``onnxruntime``, ``numpy``, ``opencv-python-headless`` and this package.

The exported graph (see :mod:`ssfnet.export`) takes ``images``, B x 3 x H x W uint8 RGB of any
size (normalisation is inside), and returns the logits ``out`` (B x K x H x W) and, for a model
with a body-part head, ``parts`` (B x P x H x W). Its metadata names the label set, its classes
and palette, the input size and the checkpoint it came from (:func:`read_metadata`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .label_sets import LabelSet, get_label_set
from .parsing import ImageParser, check_image  # noqa: F401  (check_image: as before)

# The metadata keys :mod:`ssfnet.export` writes (all values are strings; JSON where structured).
FORMAT = "ssfnet-onnx"
INPUT_NAME = "images"


class OnnxModelError(ValueError):
    """The file is not an ONNX model written by ``python -m ssfnet.export`` (the message says why)."""


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over axis 1 of B x K x H x W logits, in float32."""
    logits = logits.astype(np.float32, copy=False)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def combine_parts(class_prob: np.ndarray, part_prob: np.ndarray, admits: np.ndarray) -> np.ndarray:
    """Class probabilities steered by the body-part head, as :func:`ssfnet.parts.combine` computes them.

    Args:
        class_prob: B x K x H x W softmax of ``out`` (class 0 = background).
        part_prob: B x P x H x W softmax of ``parts`` (part 0 = background).
        admits: P x K matrix, 1 where a part admits a class.

    Returns:
        B x K x H x W probabilities: background from the part head, each person class in
        proportion to ``p_out(c) * sum_k p_parts(k) * admits[k, c]`` over the body parts.
    """
    gate = np.einsum("bphw,pk->bkhw", part_prob[:, 1:], admits[1:].astype(np.float32))
    person = class_prob[:, 1:] * gate[:, 1:]
    person = person / np.maximum(person.sum(1, keepdims=True), 1e-12)
    background = part_prob[:, :1]
    return np.concatenate([background, (1.0 - background) * person], axis=1)


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("the onnxruntime backend needs onnxruntime: `pip install onnxruntime`") from None
    return onnxruntime


def read_metadata(session_or_path) -> dict:
    """The model's metadata as :mod:`ssfnet.export` wrote it, structured values decoded.

    Args:
        session_or_path: An ``onnxruntime.InferenceSession`` or the path of an ``.onnx`` file.

    Raises:
        OnnxModelError: the file is not one this package exported.
    """
    session = session_or_path
    if not hasattr(session, "get_modelmeta"):
        session = _session(Path(session_or_path), threads=1)
    raw = dict(session.get_modelmeta().custom_metadata_map)
    if raw.get("format") != FORMAT:
        raise OnnxModelError(
            "not an SSFNet ONNX model (its metadata has no format 'ssfnet-onnx'): export one with "
            "`python -m ssfnet.export --checkpoint DIR --out model.onnx`"
        )
    meta: dict = {}
    for key, value in raw.items():
        try:
            meta[key] = json.loads(value)
        except ValueError:
            meta[key] = value
    return meta


def _session(path: Path, *, threads: int | None):
    """An onnxruntime CPU session of ``path`` with ``threads`` intra-op threads (``None``: onnxruntime's choice)."""
    ort = _import_onnxruntime()
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {path} does not exist")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 0 if threads is None else int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for unreadable files
        raise OnnxModelError(f"{path} cannot be loaded by onnxruntime: {err}") from None


class OnnxPredictor(ImageParser):
    """Parses RGB images with an exported model on onnxruntime (CPU).

    The same contract as :class:`ssfnet.Predictor`: :meth:`predict`, :meth:`predict_batch` and
    :meth:`predict_proba` take H x W x 3 uint8 images and give H x W uint8 label maps.

    Args:
        path: The ``.onnx`` file (written by ``python -m ssfnet.export`` or ``train.quantize``).
        input_size: The longer image side fed to the network at scale 1 (default: the model's).
        scales: Scales used by multi-scale testing.
        threads: onnxruntime's intra-op threads (``None``: one per physical core).
        name: Human-readable name (default: the checkpoint name in the metadata).
        part_gate: For a model with a body-part head, let it decide background and which classes
            each body region admits; ``False`` reads the class output alone; ``None`` (the default)
            does as the checkpoint's release chose (its ``part_gate``, else the class output alone).
        output: ``"classes"`` or ``"parts"`` (the body-part head's regions; models with that head only).
    """

    backend = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        *,
        input_size: int | None = None,
        scales: Sequence[float] = (0.75, 1.0, 1.25),
        threads: int | None = None,
        name: str = "",
        part_gate: bool | None = None,
        output: str = "classes",
    ) -> None:
        self.path = Path(path)
        self.session = _session(self.path, threads=threads)
        self.onnx_metadata = read_metadata(self.session)
        meta = self.onnx_metadata
        self.metadata = meta.get("checkpoint_metadata") or {}
        self.outputs = [o.name for o in self.session.get_outputs()]
        if output not in ("classes", "parts"):
            raise ValueError(f"output must be 'classes' or 'parts', got {output!r}")
        if output == "parts" and "parts" not in self.outputs:
            raise ValueError(f"{self.path.name} has no body-part head")
        self.output = output
        self.label_set: LabelSet = get_label_set("pascal-person-part-7" if output == "parts" else meta["label_set"])
        if output == "classes" and list(meta.get("label_names", self.label_set.names)) != list(self.label_set.names):
            raise OnnxModelError(
                f"{self.path.name} names other classes than this version's label set {self.label_set.name}"
            )
        self.input_size = int(input_size or meta.get("input_size", 473))
        self.scales = tuple(scales)
        self.name = name or str(meta.get("name", self.path.stem))
        self.precision = str(meta.get("precision", "fp32"))
        self.threads = threads
        self.device = "cpu"
        self._flip_perm = self.label_set.flip_lut[: self.label_set.num_classes].astype(np.int64)
        admits = meta.get("part_admission")
        if part_gate is None:
            part_gate = bool(self.metadata.get("part_gate", False))
        use_gate = part_gate and output == "classes" and "parts" in self.outputs and admits is not None
        self._admits = np.asarray(admits, dtype=np.float32) if use_gate else None

    @property
    def num_classes(self) -> int:
        return self.label_set.num_classes

    def _softmax(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        if self.output == "parts":
            return softmax(outputs["parts"])
        prob = softmax(outputs["out"])
        if self._admits is None:
            return prob
        return combine_parts(prob, softmax(outputs["parts"]), self._admits)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        wanted = ["out"] if self.output == "classes" and self._admits is None else self.outputs
        values = self.session.run(wanted, {INPUT_NAME: batch})
        return self._softmax(dict(zip(wanted, values)))

    def _probabilities(self, batch: np.ndarray, flip: bool) -> np.ndarray:
        """Softmax of the network for a B x 3 x h x w uint8 batch, flip-averaged."""
        prob = self._run(batch)
        if flip:
            flipped = self._run(np.ascontiguousarray(batch[..., ::-1]))
            prob = (prob + flipped[..., ::-1][:, self._flip_perm]) / 2
        return prob

    def _batch_probabilities(self, batch: np.ndarray, flip: bool) -> np.ndarray:
        return self._probabilities(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)), flip)

    def _resize_probabilities(self, prob: np.ndarray, index: int, size: tuple[int, int]) -> np.ndarray:
        return _resize_probabilities(prob[index], size)

    def _labels_and_proba(self, mean: np.ndarray, proba: bool) -> np.ndarray:
        if proba:
            return mean.transpose(2, 0, 1).astype(np.float32)
        return mean.argmax(2).astype(np.uint8)


def _resize_probabilities(prob: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """K x h x w probabilities -> H x W x K at ``size``: bilinear at pixel centres (torch's ``align_corners=False``)."""
    hwk = np.ascontiguousarray(prob.transpose(1, 2, 0))
    if hwk.shape[:2] == tuple(size):
        return hwk
    # OpenCV resizes at most 512 channels at once (CV_CN_MAX); label sets are far smaller.
    resized = cv2.resize(hwk, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return resized.reshape(size[0], size[1], -1)
