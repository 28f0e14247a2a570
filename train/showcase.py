"""A grid of a checkpoint's predictions on held-out photos of every source, for the README.

    python -m train.showcase --checkpoint checkpoints/ssfnet_lite0-lip20 \\
        --split runs/default-s1/split.json --per-source 4 --out assets/predictions.jpg

Each row shows one held-out photo (a photo the model never trained on, from the run's
``split.json``), the model's parse blended over it, and the parse alone; a legend lists the
labels that appear. Photos are taken evenly spread over each source's held-out ids.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ssfnet.data import open_source
from ssfnet.geometry import resize_image, resize_labels
from ssfnet.io import overlay
from ssfnet.labels import LabelSet
from ssfnet.predictor import load_predictor

from .evaluate import held_out_ids, spread

TILE_HEIGHT = 300


def _fit(image: np.ndarray, height: int) -> np.ndarray:
    """``image`` (a photo, or a label map: H x W) at ``height`` rows, its aspect kept."""
    h, w = image.shape[:2]
    size = (height, max(1, round(w * height / h)))
    return resize_labels(image, size) if image.ndim == 2 else resize_image(image, size)


def render_grid(
    rows: list[tuple[str, np.ndarray, np.ndarray | tuple[np.ndarray, ...]]],
    label_set: LabelSet,
    path: str | Path,
    captions: tuple[str, ...] | None = None,
) -> Path:
    """Draw ``(title, image, labels)`` rows as photo | overlay | parse, with a legend of used labels.

    With ``labels`` a tuple of maps (several models' parses of one photo), each row is the photo
    and one overlay per map, headed by ``captions``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    tiles = []
    for _, image, labels in rows:
        small = _fit(image, TILE_HEIGHT)
        if isinstance(labels, tuple):
            maps = [_fit(one, TILE_HEIGHT) for one in labels]
            tiles.append((small, *(overlay(small, one, label_set, alpha=0.6) for one in maps)))
        else:
            small_labels = _fit(labels, TILE_HEIGHT)
            tiles.append((small, overlay(small, small_labels, label_set, alpha=0.6), label_set.colourise(small_labels)))
    captions = captions or ("parse over photo", "parse")
    panels = len(tiles[0])
    per_row = 2 if len(rows) > 3 and panels <= 3 else 1 if len(rows) > 3 else len(rows)
    grid_rows = (len(rows) + per_row - 1) // per_row
    fig, axes = plt.subplots(grid_rows, per_row * panels, figsize=(per_row * panels * 1.6, grid_rows * 2.6))
    axes = np.atleast_2d(axes)
    for ax in axes.flat:
        ax.axis("off")
    for k, ((title, _, _), images) in enumerate(zip(rows, tiles)):
        r, c = divmod(k, per_row)
        for j, (img, caption) in enumerate(zip(images, ("photo", *captions))):
            ax = axes[r, c * panels + j]
            ax.imshow(img)
            ax.set_title(f"{title}" if j == 0 else caption, fontsize=7)
    maps = [one for _, _, labels in rows for one in (labels if isinstance(labels, tuple) else (labels,))]
    used = sorted({int(v) for labels in maps for v in np.unique(labels) if v < label_set.num_classes})
    handles = [Patch(color=np.asarray(label_set.palette[v]) / 255.0, label=label_set.names[v]) for v in used]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 10), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def showcase(
    checkpoint: str | Path,
    split: str | Path,
    out: str | Path,
    *,
    per_source: int = 4,
    data: list[str] | None = None,
    device: str = "cpu",
) -> Path:
    """Predict ``per_source`` held-out photos of each source in ``split`` and draw the grid."""
    import json

    predictor = load_predictor(checkpoint, device)
    specs = data or [f"{s['kind']}:{s['path']}" for s in json.loads(Path(split).read_text())["sources"] if s["val_ids"]]
    rows = []
    for text in specs:
        ids = held_out_ids(split, text)
        dataset = open_source(text, predictor.label_set, ids=ids)
        for index in spread(len(dataset), per_source):
            image, _ = dataset.load(int(index))
            labels = predictor.predict(image)
            rows.append((f"{text.split(':')[0]} {dataset.ids[int(index)]}", image, labels))
    return render_grid(rows, predictor.label_set, out)


def before_after(
    before: str | Path,
    after: str | Path,
    out: str | Path,
    *,
    data: str,
    ids: list[str],
    count: int = 6,
    device: str = "cpu",
) -> Path:
    """Two checkpoints' parses of ``count`` photos of ``data`` (its ``ids``), side by side."""
    first, second = load_predictor(before, device), load_predictor(after, device)
    if first.label_set.name != second.label_set.name:
        raise ValueError(f"{before} parses {first.label_set.name} and {after} {second.label_set.name}")
    dataset = open_source(data, first.label_set, ids=ids)
    rows = []
    for index in spread(len(dataset), count):
        image, _ = dataset.load(int(index))
        rows.append(
            (f"{data.split(':')[0]} {dataset.ids[int(index)]}", image, (first.predict(image), second.predict(image)))
        )
    return render_grid(rows, first.label_set, out, captions=(Path(before).name, Path(after).name))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m train.showcase",
        description="Draw a checkpoint's predictions on held-out photos of every source.",
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", required=True, help="the training run's split.json")
    p.add_argument("--data", action="append", default=None, help="sources (default: every source in the split)")
    p.add_argument("--per-source", type=int, default=4)
    p.add_argument("--out", default="assets/predictions.jpg")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--before",
        default=None,
        help="instead: draw this checkpoint's parses beside --checkpoint's on --per-source held-out photos of the "
        "first --data source (default PASCAL-Person-Part)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.before:
            data = (args.data or ["pascal-person-part:../shared/datasets/pascal-person-part"])[0]
            path = before_after(
                args.before,
                args.checkpoint,
                args.out,
                data=data,
                ids=held_out_ids(args.split, data),
                count=args.per_source,
                device=args.device,
            )
            print(f"wrote {path}")
            return 0
        path = showcase(
            args.checkpoint, args.split, args.out, per_source=args.per_source, data=args.data, device=args.device
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
