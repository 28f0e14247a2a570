"""Quantize an exported model to int8 (onnxruntime static quantization) calibrated on training photos.

    python -m ssfnet.export --checkpoint checkpoints/ssfnet_lite0-lip20 --out runs/onnx/lip20.onnx
    python -m train.quantize --model runs/onnx/lip20.onnx --out runs/onnx/lip20-int8.onnx \\
        --data viton:../shared/datasets/viton --data ccp:../shared/datasets/ccp \\
        --data pascal-person-part:../shared/datasets/pascal-person-part --count 16

The activations' ranges are measured on ``--count`` photos of each source, brought to the model's
input size as the predictor brings them. Calibration photos are training photos only: the ids
that ``train/splits/<source>-val.txt`` holds out are never used, and a source that is validation
data as a whole (``lip-val74``) is refused. Weights are int8 per output channel, activations uint8,
in the QDQ format; the file keeps the fp32 model's metadata with ``precision`` set to ``int8``
and a ``calibration`` entry saying on what it was calibrated.

Whether an int8 model is good enough is for ``python -m train.score_onnx`` to say (it scores
fp32 and int8 side by side on the held-out photos).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ssfnet.data import open_source, parse_source
from ssfnet.geometry import long_side_size, resize_image
from ssfnet.onnx_predictor import INPUT_NAME, read_metadata

from .evaluate import spread

SPLITS = Path(__file__).resolve().parent / "splits"
# Folders that hold validation photos only (their names), never calibration material.
VALIDATION_ONLY = ("lip-val74",)
METHODS = ("minmax", "entropy", "percentile")


def held_out(kind: str) -> set[str]:
    """The ids ``train/splits/<kind>-val.txt`` holds out (empty when the source has no such list)."""
    path = SPLITS / f"{kind}-val.txt"
    return set(path.read_text().split()) if path.is_file() else set()


def calibration_photos(specs: list[str], label_set: str, count: int) -> list[tuple[str, str, np.ndarray]]:
    """``count`` training photos of each source (an even spread over its ids, held-out ids left out).

    Returns:
        ``(source kind, id, H x W x 3 uint8)`` per photo.

    Raises:
        ValueError: a source that is validation data only.
    """
    photos = []
    for text in specs:
        spec = parse_source(text)
        if Path(spec.path).name in VALIDATION_ONLY:
            raise ValueError(f"{spec.path} holds validation photos only: calibrate on training photos")
        dataset = open_source(text, label_set)
        excluded = held_out(spec.kind)
        train_ids = [i for i in dataset.ids if i not in excluded]
        if not train_ids:
            raise ValueError(f"{text}: no training photos (every id is held out)")
        dataset = open_source(text, label_set, ids=train_ids)
        for index in spread(len(dataset), count):
            image, _ = dataset.load(int(index))
            photos.append((spec.kind, dataset.ids[int(index)], image))
    return photos


class _Reader:
    """onnxruntime's calibration data reader: one photo at a time, at the model's input size."""

    def __init__(self, images: list[np.ndarray], input_size: int) -> None:
        self._batches = iter([self._batch(image, input_size) for image in images])

    @staticmethod
    def _batch(image: np.ndarray, input_size: int) -> dict[str, np.ndarray]:
        resized = resize_image(image, long_side_size(*image.shape[:2], input_size))
        return {INPUT_NAME: np.ascontiguousarray(resized.transpose(2, 0, 1)[None])}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.get_next, None)


def quantize(
    model: str | Path,
    out: str | Path,
    specs: list[str],
    *,
    count: int = 16,
    method: str = "minmax",
    exclude_head: bool = False,
) -> dict:
    """Write the int8 version of the exported ``model`` to ``out``.

    Args:
        model: fp32 ONNX file written by ``python -m ssfnet.export``.
        out: Where the int8 file goes.
        specs: Training sources ``KIND:PATH`` to calibrate on.
        count: Photos per source.
        method: ``minmax``, ``entropy`` or ``percentile`` (onnxruntime's calibration methods).
        exclude_head: Keep the classifier and the resizes after it in fp32.

    Returns:
        The ``calibration`` entry written into the file's metadata.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ssfnet.export import set_metadata

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    meta = read_metadata(model)
    photos = calibration_photos(specs, meta["label_set"], count)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared))
        excluded = shape_nodes(graph) + (_head_nodes(graph) if exclude_head else [])
        quantize_static(
            str(prepared),
            str(out),
            _Reader([image for _, _, image in photos], int(meta["input_size"])),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, {"minmax": "MinMax"}.get(method, method.capitalize())),
            nodes_to_exclude=excluded,
        )
    calibration = {
        "sources": [parse_source(text).kind for text in specs],
        "photos_per_source": count,
        "photos": len(photos),
        "ids": [f"{kind}:{sample}" for kind, sample, _ in photos],
        "method": method,
        "excluded_nodes": len(excluded),
        "format": "QDQ, weights int8 per channel, activations uint8",
    }
    strings = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    strings |= {"precision": "int8", "calibration": json.dumps(calibration)}
    set_metadata(out, strings)
    return calibration


def shape_nodes(graph) -> list[str]:
    """Names of the nodes that compute sizes from the input's shape rather than from its pixels.

    The exported graph works out padding, resize targets and pooling windows in float arithmetic
    on ``Shape`` outputs (``ceil(h / 2)`` ...). Quantized, those numbers would be rounded to the
    calibration's steps (40 turns into 39) and the feature maps would no longer line up, so they
    stay in float: only nodes with an input that depends on the pixel values are quantized.
    """
    pixels = {i.name for i in graph.graph.input}
    for node in graph.graph.node:  # topological order
        if node.op_type != "Shape" and any(i in pixels for i in node.input):
            pixels.update(node.output)
    return [n.name for n in graph.graph.node if not any(i in pixels for i in n.input)]


def _head_nodes(graph) -> list[str]:
    """Names of the nodes after the last convolution that produces an output's logits (the classifier and resizes)."""
    producers = {out: node for node in graph.graph.node for out in node.output}
    names = []
    for output in graph.graph.output:
        node = producers.get(output.name)
        while node is not None:
            names.append(node.name)
            if node.op_type == "Conv":
                break
            node = producers.get(node.input[0])
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m train.quantize",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", required=True, help="fp32 ONNX file (python -m ssfnet.export)")
    p.add_argument("--out", required=True, help="int8 ONNX file to write")
    p.add_argument("--data", action="append", required=True, help="training source KIND:PATH (repeat)")
    p.add_argument("--count", type=int, default=16, help="calibration photos per source")
    p.add_argument("--method", choices=METHODS, default="minmax")
    p.add_argument("--exclude-head", action="store_true", help="keep the classifier and final resizes in fp32")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        calibration = quantize(
            args.model, args.out, args.data, count=args.count, method=args.method, exclude_head=args.exclude_head
        )
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    size = Path(args.out).stat().st_size / 1e6
    print(f"wrote {args.out} ({size:.1f} MB), calibrated on {calibration['photos']} training photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
