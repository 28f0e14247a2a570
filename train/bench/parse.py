"""Time how long a checkpoint takes to parse one photo, as the app calls it.

The app's parse is :meth:`ssfnet.Predictor.predict` on a decoded photo: resize to the checkpoint's
input size, the network, the resize back and the argmax, single scale or multi-scale + flip. This
times exactly that call, for each input size and runtime asked for, with the settings interleaved
round by round so that a change in the machine's load falls on all of them alike; the table gives
the first call's time, the median of the rounds and each setting's time relative to the first one::

    python -m train.bench.parse --checkpoint checkpoints/ssfnet_lite0-lip20 \\
        --photo assets/examples/ccp_0490.jpg --input-sizes 256 320 --iters 5

writes ``runs/bench-parse.md`` (and a ``.json`` copy beside it). The runtimes (``--precisions``):
``fp32`` and ``bf16`` (torch), ``onnx-fp32`` (onnxruntime on the checkpoint's ONNX export, made
in a temporary folder) and ``onnx-int8`` (onnxruntime on the file ``--int8-model`` names, from
``train.quantize``). The table names the CPU and the library versions it ran with.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ssfnet import load_predictor
from ssfnet.checkpoint import CheckpointError
from ssfnet.io import read_image
from ssfnet.precision import cpu_has_fast_bf16

PRECISIONS = ("fp32", "bf16", "onnx-fp32", "onnx-int8")


def time_parses(
    checkpoint: str | Path | None,
    photo: np.ndarray,
    input_sizes: Sequence[int],
    precisions: Sequence[str],
    *,
    iters: int = 5,
    warmup: int = 1,
    int8_model: str | Path | None = None,
    threads: int | None = None,
) -> list[dict]:
    """Median milliseconds of single-scale and multi-scale + flip parses for every setting.

    Args:
        checkpoint: Checkpoint folder (``None``: the embedded default).
        photo: H x W x 3 uint8 RGB.
        input_sizes: Longer sides at scale 1 to time.
        precisions: Runtimes of :data:`PRECISIONS`.
        iters: Timed rounds; each round times every setting once, in turn.
        warmup: Untimed calls per setting before the first round (the first of them is the
            ``first_ms`` figure).
        int8_model: The int8 ONNX file ``onnx-int8`` times.
        threads: onnxruntime's threads (``None``: as many as torch uses).

    Returns:
        One row per (input size, precision): ``input_size``, ``precision``, ``first_ms`` (the
        first single-scale call of a freshly loaded model), ``single_ms``, ``multiscale_ms`` and
        the two relative to the first row (``single_rel``, ``multiscale_rel``).
    """
    settings = [(size, prec) for size in input_sizes for prec in precisions]
    threads = threads or torch.get_num_threads()
    with tempfile.TemporaryDirectory() as cache:
        predictors = {s: _load(checkpoint, s, int8_model, threads, cache) for s in settings}
    first: dict[tuple, float] = {}
    for setting, predictor in predictors.items():
        for i in range(warmup):
            start = time.perf_counter()
            predictor.predict(photo)
            if i == 0:
                first[setting] = (time.perf_counter() - start) * 1000
            predictor.predict(photo, multiscale=True, flip=True)
    times: dict[tuple, list[float]] = {(s, ms): [] for s in settings for ms in (False, True)}
    for _ in range(iters):
        for setting, predictor in predictors.items():
            for multiscale in (False, True):
                start = time.perf_counter()
                predictor.predict(photo, multiscale=multiscale, flip=multiscale)
                times[setting, multiscale].append((time.perf_counter() - start) * 1000)
    rows = []
    for size, prec in settings:
        single = statistics.median(times[(size, prec), False])
        multi = statistics.median(times[(size, prec), True])
        first_ms = first.get((size, prec), times[(size, prec), False][0])
        row = {"input_size": size, "precision": prec, "first_ms": first_ms, "single_ms": single}
        rows.append(row | {"multiscale_ms": multi})
    for row in rows:
        row["single_rel"] = row["single_ms"] / rows[0]["single_ms"]
        row["multiscale_rel"] = row["multiscale_ms"] / rows[0]["multiscale_ms"]
    return rows


def _load(checkpoint, setting: tuple[int, str], int8_model, threads: int, cache: str):
    """The predictor of one (input size, runtime) setting."""
    size, precision = setting
    if precision == "onnx-int8":
        if int8_model is None:
            raise ValueError("onnx-int8 needs --int8-model (an int8 file from python -m train.quantize)")
        return load_predictor(int8_model, backend="onnxruntime", input_size=size, threads=threads)
    if precision == "onnx-fp32":
        from ssfnet.export import export_checkpoint
        from ssfnet.predictor import resolve_checkpoint

        folder = resolve_checkpoint(checkpoint)
        path = Path(cache) / f"{folder.name}.onnx"
        if not path.is_file():
            export_checkpoint(folder, path)
        return load_predictor(path, backend="onnxruntime", input_size=size, threads=threads)
    return load_predictor(checkpoint, device="cpu", input_size=size, precision=precision)


def machine() -> str:
    """The CPU model, its bf16 support, and the versions of torch (oneDNN) and onnxruntime."""
    from ..score_onnx import cpu_model

    parts = [cpu_model(), f"native bf16: {'yes' if cpu_has_fast_bf16() else 'no'}", f"torch {torch.__version__}"]
    onednn = getattr(torch.backends.mkldnn, "version", None)
    if callable(onednn):
        parts.append(f"oneDNN {'.'.join(str(v) for v in onednn())}")
    try:
        import onnxruntime

        parts.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        pass
    return ", ".join(parts)


def format_table(rows: list[dict], *, photo_shape: tuple[int, ...], iters: int) -> str:
    """Markdown table of :func:`time_parses`'s rows, with lines saying what was timed and on which machine."""
    first = rows[0]
    lines = [
        f"Parse of one {photo_shape[1]}x{photo_shape[0]} photo (`Predictor.predict`), median of {iters} "
        f"interleaved rounds, {torch.get_num_threads()} threads; relative: against input "
        f"{first['input_size']} {first['precision']}.",
        f"Machine: {machine()}.",
        "",
        "| input size | precision | first call ms | single scale ms | relative "
        "| multi-scale 0.75/1/1.25 + flip ms | relative |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['input_size']} | {row['precision']} | {row['first_ms']:.0f} | {row['single_ms']:.0f} "
            f"| {row['single_rel']:.2f} | {row['multiscale_ms']:.0f} | {row['multiscale_rel']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m train.bench.parse",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the embedded default)")
    p.add_argument(
        "--photo",
        nargs="+",
        default=["assets/examples/ccp_0490.jpg"],
        help="photo(s) to parse; several of different sizes give a table each",
    )
    p.add_argument("--input-sizes", type=int, nargs="+", default=None, help="default: the checkpoint's")
    p.add_argument(
        "--precisions",
        nargs="+",
        choices=PRECISIONS,
        default=None,
        help="default: fp32, bf16 where the CPU has native bf16, onnx-fp32, and onnx-int8 with --int8-model",
    )
    p.add_argument("--int8-model", default=None, help="int8 ONNX file (python -m train.quantize) for onnx-int8")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: torch's)")
    p.add_argument("--iters", type=int, default=5, help="timed rounds")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", default="runs/bench-parse.md", help="Markdown table, a .json copy beside it")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tables, records = [], []
    try:
        photos = [read_image(p) for p in args.photo]  # as the app reads an upload: upright H x W x 3 uint8 RGB
        sizes = args.input_sizes or [load_predictor(args.checkpoint, device="cpu").input_size]
        precisions = args.precisions or [
            *(["fp32", "bf16"] if cpu_has_fast_bf16() else ["fp32"]),
            "onnx-fp32",
            *(["onnx-int8"] if args.int8_model else []),
        ]
        options = {"iters": args.iters, "warmup": args.warmup, "int8_model": args.int8_model, "threads": args.threads}
        for path, photo in zip(args.photo, photos):
            rows = time_parses(args.checkpoint, photo, sizes, precisions, **options)
            tables.append(format_table(rows, photo_shape=photo.shape, iters=args.iters))
            records.append({"photo": str(path), "shape": list(photo.shape[:2]), "rows": rows})
    except (OSError, ValueError, CheckpointError, ImportError) as err:  # a missing or unreadable photo or checkpoint
        print(f"error: {err}", file=sys.stderr)
        return 1
    table = "\n".join(tables)
    print(table, end="")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    record = {"photo": records[0]["photo"], "machine": machine(), "rows": records[0]["rows"], "photos": records}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
