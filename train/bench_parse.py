"""Time how long a checkpoint takes to parse one photo, as the app calls it.

The app's parse is :meth:`ssfnet.Predictor.predict` on a decoded photo: resize to the checkpoint's
input size, the network, the resize back and the argmax, single scale or multi-scale + flip. This
times exactly that call, for each input size and precision asked for, with the settings interleaved
round by round so that a change in the machine's load falls on all of them alike; the table gives
the median of the rounds and each setting's time relative to the first one::

    python -m train.bench_parse --checkpoint checkpoints/ssfnet_lite0-lip20 \\
        --photo assets/examples/ccp_0490.jpg --input-sizes 256 320 --iters 5

writes ``runs/bench-parse.md`` (and a ``.json`` copy beside it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ssfnet import load_predictor
from ssfnet.checkpoint import CheckpointError
from ssfnet.io import read_image
from ssfnet.precision import cpu_has_fast_bf16

PRECISIONS = ("fp32", "bf16")


def time_parses(
    checkpoint: str | Path | None,
    photo: np.ndarray,
    input_sizes: Sequence[int],
    precisions: Sequence[str],
    *,
    iters: int = 5,
    warmup: int = 1,
) -> list[dict]:
    """Median milliseconds of single-scale and multi-scale + flip parses for every setting.

    Args:
        checkpoint: Checkpoint folder (``None``: the embedded default).
        photo: H x W x 3 uint8 RGB.
        input_sizes: Longer sides at scale 1 to time.
        precisions: ``fp32`` and/or ``bf16``.
        iters: Timed rounds; each round times every setting once, in turn.
        warmup: Untimed calls per setting before the first round.

    Returns:
        One row per (input size, precision): ``input_size``, ``precision``, ``single_ms``,
        ``multiscale_ms`` and the two relative to the first row (``single_rel``, ``multiscale_rel``).
    """
    settings = [(size, prec) for size in input_sizes for prec in precisions]
    predictors = {s: load_predictor(checkpoint, device="cpu", input_size=s[0], precision=s[1]) for s in settings}
    for predictor in predictors.values():
        for _ in range(warmup):
            predictor.predict(photo)
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
        rows.append({"input_size": size, "precision": prec, "single_ms": single, "multiscale_ms": multi})
    for row in rows:
        row["single_rel"] = row["single_ms"] / rows[0]["single_ms"]
        row["multiscale_rel"] = row["multiscale_ms"] / rows[0]["multiscale_ms"]
    return rows


def format_table(rows: list[dict], *, photo_shape: tuple[int, ...], iters: int) -> str:
    """Markdown table of :func:`time_parses`'s rows, with a line saying what was timed."""
    first = rows[0]
    lines = [
        f"Parse of one {photo_shape[1]}x{photo_shape[0]} photo (`Predictor.predict`), median of {iters} "
        f"interleaved rounds, {torch.get_num_threads()} threads, torch {torch.__version__}; relative: "
        f"against input {first['input_size']} {first['precision']}.",
        "",
        "| input size | precision | single scale ms | relative | multi-scale 0.75/1/1.25 + flip ms | relative |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['input_size']} | {row['precision']} | {row['single_ms']:.0f} | {row['single_rel']:.2f} "
            f"| {row['multiscale_ms']:.0f} | {row['multiscale_rel']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m train.bench_parse",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the embedded default)")
    p.add_argument("--photo", default="assets/examples/ccp_0490.jpg", help="photo to parse")
    p.add_argument("--input-sizes", type=int, nargs="+", default=None, help="default: the checkpoint's")
    p.add_argument(
        "--precisions",
        nargs="+",
        choices=PRECISIONS,
        default=None,
        help="default: fp32, and bf16 where the CPU has native bf16",
    )
    p.add_argument("--iters", type=int, default=5, help="timed rounds")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", default="runs/bench-parse.md", help="Markdown table, a .json copy beside it")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        photo = read_image(args.photo)  # as the app reads an upload: upright H x W x 3 uint8 RGB
        sizes = args.input_sizes or [load_predictor(args.checkpoint, device="cpu").input_size]
        precisions = args.precisions or (["fp32", "bf16"] if cpu_has_fast_bf16() else ["fp32"])
        rows = time_parses(args.checkpoint, photo, sizes, precisions, iters=args.iters, warmup=args.warmup)
    except (OSError, ValueError, CheckpointError) as err:  # a missing or unreadable photo or checkpoint
        print(f"error: {err}", file=sys.stderr)
        return 1
    table = format_table(rows, photo_shape=photo.shape, iters=args.iters)
    print(table, end="")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    out.with_suffix(".json").write_text(json.dumps({"photo": str(args.photo), "rows": rows}, indent=1))
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
