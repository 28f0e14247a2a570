"""Export a checkpoint to ONNX, for onnxruntime and other runtimes that have no PyTorch.

    python -m ssfnet.export --checkpoint checkpoints/ssfnet_lite0-lip20 --out ssfnet_lite0-lip20.onnx

The graph takes ``images``: B x 3 x H x W uint8 RGB, any batch, height and width (the
normalisation is inside, as in the PyTorch model), and returns the logits ``out``: B x K x H x W
at the input's size, plus ``parts`` (B x P x H x W) for a model with a body-part head; softmax,
flip and multi-scale averaging are left to the caller (:class:`ssfnet.onnx_predictor.OnnxPredictor`
does them as :class:`ssfnet.Predictor` does). The model's metadata (string values, JSON where
structured) says what a caller needs: ``label_set``, ``label_names``, ``palette``, ``flip_pairs``,
``input_size``, ``name`` (the checkpoint), ``outputs`` and, with a part head, ``part_admission``.

Two things differ from the training graph, each giving the same numbers: the pyramid pooling's
adaptive average pools become products with pooling matrices built from the input's size (ONNX's
pooling operators take fixed windows, which would hold for one input size only), and the graph is
traced at a size where every resize in the network is a real one, so that none is left out at
sizes where it is not the identity.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .checkpoint import CheckpointError, load_checkpoint
from .files import current_umask
from .labels import get_label_set
from .onnx_predictor import FORMAT, INPUT_NAME

# Bump when the exported graph or its metadata change, so cached exports are made again.
EXPORT_VERSION = 1
OPSET = 17
# Traced at this size: the backbone's 1/32 features are then 10 x 7, matching none of the pyramid
# pooling's bins (1, 2, 3, 6) in both sides, so every resize the network can make is traced.
TRACE_SIZE = (320, 224)


def _pooling_matrix(length: int | torch.Tensor, bins: int) -> torch.Tensor:
    """``bins x length`` matrix averaging the windows of PyTorch's adaptive average pooling.

    Window ``i`` covers ``[floor(i * n / bins), ceil((i + 1) * n / bins))``, as ``adaptive_avg_pool2d``.
    ``length`` is the size as the tracer gives it (a traced value, so the graph computes it per input).
    """
    i = torch.arange(bins)
    start = torch.div(i * length, bins, rounding_mode="floor")
    end = torch.div((i + 1) * length + bins - 1, bins, rounding_mode="floor")
    j = torch.arange(length)
    inside = (j[None] >= start[:, None]) & (j[None] < end[:, None])
    return inside.float() / (end - start)[:, None].float()


class MatrixAdaptivePool(nn.Module):
    """``nn.AdaptiveAvgPool2d(bins)`` written as two matrix products, for any input size in ONNX.

    Shapes: B x C x H x W -> B x C x bins x bins.
    """

    def __init__(self, bins: int) -> None:
        super().__init__()
        self.bins = bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = _pooling_matrix(x.shape[2], self.bins)
        cols = _pooling_matrix(x.shape[3], self.bins)
        return torch.matmul(torch.matmul(rows, x), cols.t())


def exportable(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode whose adaptive average pools are :class:`MatrixAdaptivePool`."""
    model = copy.deepcopy(model).float().eval()
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.AdaptiveAvgPool2d):
                size = child.output_size
                bins = size if isinstance(size, int) else size[0]
                if not isinstance(size, int) and (len(set(size)) != 1 or None in size):
                    raise ValueError(f"cannot export an adaptive pool to {size}: only square bins are supported")
                setattr(parent, name, MatrixAdaptivePool(bins))
    return model


class _Outputs(nn.Module):
    """The network's inference outputs as a tuple (``out`` first), for the exporter."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(images, aux=False)
        return tuple(outputs[name] for name in self.names)


def output_names(model: nn.Module) -> list[str]:
    """The heads a parse reads, ``out`` first: every key the model returns without its auxiliary heads."""
    with torch.inference_mode():
        outputs = model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), aux=False)
    return ["out", *sorted(k for k in outputs if k != "out")]


def onnx_metadata(meta: dict, name: str, outputs: list[str], input_size: int) -> dict[str, str]:
    """The strings stored in the ONNX model's metadata for a checkpoint's ``meta``."""
    label_set = get_label_set(meta["label_set"])
    values = {
        "format": FORMAT,
        "format_version": EXPORT_VERSION,
        "name": name,
        "variant": meta.get("variant", ""),
        "label_set": label_set.name,
        "label_names": list(label_set.names),
        "palette": [list(c) for c in label_set.palette],
        "flip_pairs": [list(p) for p in label_set.flip_pairs],
        "input_size": int(input_size),
        "input": f"{INPUT_NAME}: B x 3 x H x W uint8 RGB (normalised inside)",
        "outputs": outputs,
        "precision": "fp32",
        "checkpoint_sha256": [s.get("sha256") for s in meta.get("shards", [])],
        "checkpoint_metadata": {
            k: meta[k] for k in ("variant", "label_set", "input_size", "part_gate", "metrics") if k in meta
        },
        "exported_with": f"torch {torch.__version__}, opset {OPSET}",
    }
    if "parts" in outputs and label_set.name == "lip-20":
        from .parts import admission

        values["part_admission"] = admission(label_set).tolist()
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def set_metadata(path: Path, values: dict[str, str]) -> None:
    """Replace the metadata of the ONNX model at ``path`` by ``values``."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def export_model(
    model: nn.Module, meta: dict, out: str | Path, *, name: str = "", input_size: int | None = None
) -> Path:
    """Write ``model`` (with its checkpoint metadata ``meta``) as an ONNX file at ``out``.

    The file is written beside ``out`` under a temporary name and renamed into place.

    Returns:
        ``out`` as a path.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = exportable(model.to("cpu"))
    names = output_names(model)
    axes = {"batch": 0, "height": 2, "width": 3}
    dynamic = {key: {i: axis for axis, i in axes.items()} for key in [INPUT_NAME, *names]}
    example = torch.zeros(1, 3, *TRACE_SIZE, dtype=torch.uint8)
    size = int(input_size or meta.get("input_size", 473))
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            # The TorchScript exporter: it traces the resizes' target sizes from the input's shape.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Outputs(model, names),
                (example,),
                tmp,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=names,
                dynamic_axes=dynamic,
                opset_version=OPSET,
            )
        set_metadata(Path(tmp), onnx_metadata(meta, name or meta.get("name", out.stem), names, size))
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's file is private; the export is not
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, input_size: int | None = None) -> Path:
    """Export a checkpoint folder to ``out`` (see :func:`export_model`).

    Raises:
        CheckpointError: the checkpoint cannot be loaded.
    """
    model, meta = load_checkpoint(checkpoint)
    return export_model(model, meta, out, name=Path(checkpoint).name, input_size=input_size)


def cache_dir() -> Path:
    """Where exports made on demand are kept: ``$SSFNET_CACHE_DIR/onnx`` or ``~/.cache/ssfnet/onnx``."""
    root = os.environ.get("SSFNET_CACHE_DIR") or Path.home() / ".cache" / "ssfnet"
    return Path(root) / "onnx"


def cached_export(checkpoint: str | Path, *, folder: str | Path | None = None) -> Path:
    """The ONNX export of a checkpoint folder, made on first use and kept in ``folder`` (:func:`cache_dir`).

    The file is named after the checkpoint and a hash of its weights (the shards' SHA-256 in its
    metadata), the export version and the torch version, so a replaced checkpoint is exported anew.

    Raises:
        CheckpointError: the checkpoint cannot be read.
    """
    from .checkpoint import read_metadata

    checkpoint = Path(checkpoint)
    meta = read_metadata(checkpoint)
    key = json.dumps([[s["sha256"] for s in meta["shards"]], EXPORT_VERSION, torch.__version__, meta.get("options")])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = Path(folder or cache_dir()) / f"{checkpoint.name}-{digest}.onnx"
    if not path.is_file():
        export_checkpoint(checkpoint, path)
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ssfnet.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder")
    parser.add_argument("--out", required=True, help="ONNX file to write")
    parser.add_argument("--input-size", type=int, default=None, help="recorded input size (default: the checkpoint's)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        path = export_checkpoint(args.checkpoint, args.out, input_size=args.input_size)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
