"""Parse images from the command line.

    python -m ssfnet.predict photo.jpg more_photos/ --out parsed/ [--checkpoint DIR] [--multiscale]

For each image writes ``<name>.png`` (indexed label map with the label set's
palette) and ``<name>_overlay.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from .io import ImageError, atomic_write_bytes, label_png_bytes, overlay, png_bytes, read_image
from .predictor import load_predictor

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def collect_images(inputs: list[str]) -> list[Path]:
    """Files given directly plus image files found (recursively) in given folders."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path} is neither a file nor a folder")
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ssfnet.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="image files or folders of images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the embedded one)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    parser.add_argument("--multiscale", action="store_true", help="multi-scale + flip testing")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        images = collect_images(args.inputs)
        predictor = load_predictor(args.checkpoint, args.device)
    except (FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in tqdm(images, desc="parsing", unit="img"):
        try:
            image = read_image(path)
        except ImageError as err:
            tqdm.write(f"skipped: {err}")
            failed += 1
            continue
        labels = predictor.predict(image, multiscale=args.multiscale)
        atomic_write_bytes(out / f"{path.stem}.png", label_png_bytes(labels, predictor.label_set))
        blended = overlay(image, labels, predictor.label_set, alpha=args.alpha)
        atomic_write_bytes(out / f"{path.stem}_overlay.png", png_bytes(blended))
    print(f"parsed {len(images) - failed} of {len(images)} images into {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
