"""Parse images from the command line.

    python -m ssfnet.predict photo.jpg more_photos/ --out parsed/ [--checkpoint DIR] [--multiscale]
    python -m ssfnet.predict photos/ --out parsed/ --backend onnxruntime [--checkpoint DIR or model.onnx]

For each image writes ``<name>.png`` (indexed label map with the label set's
palette) and ``<name>_overlay.png`` into ``--out``, in the subfolders the image
had under a folder given. Inputs that share a name there (``a.jpg`` and
``a.png``) are told apart by their extension (``a_jpg.png``, ``a_png.png``), and
an output never replaces an input. Every file that is not parsed is reported
with the reason; the exit status is then 1 (2: no model, or an input that does
not exist).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .files import atomic_write_bytes
from .io import ImageError, frame_count, label_png_bytes, overlay, png_bytes, read_image
from .predictor import BACKENDS, load_predictor

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".avif"}
# Tried too (read_image says when the format cannot be read here, rather than skipping them quietly).
MAYBE_IMAGE_SUFFIXES = {".heic", ".heif"}
OVERLAY_SUFFIX = "_overlay.png"


@dataclass(frozen=True)
class Job:
    """One input image and where its label map and overlay go."""

    source: Path
    labels: Path
    overlay: Path


def collect_images(inputs: list[str]) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """The images to parse and the files passed over.

    Returns:
        ``(images, skipped)``: ``(path, relative output folder)`` of files given directly (any
        name: the user asked for them) and of image files found (recursively) in given
        folders; and ``(path, reason)`` of the other files in those folders.

    Raises:
        FileNotFoundError: an input is neither a file nor a folder.
    """
    found: list[tuple[Path, Path]] = []
    skipped: list[tuple[Path, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = file.relative_to(path).parent
                if file.suffix.lower() in IMAGE_SUFFIXES | MAYBE_IMAGE_SUFFIXES:
                    found.append((file, relative))
                else:
                    skipped.append((file, f"not an image file ({file.suffix or 'no extension'})"))
        elif path.is_file():
            found.append((path, Path()))
        else:
            raise FileNotFoundError(f"{path} is neither a file nor a folder")
    return found, skipped


def plan_outputs(images: list[tuple[Path, Path]], out: Path) -> list[Job]:
    """Output paths for ``images`` that never collide with each other nor with an input.

    An image's outputs are named after it (``<stem>.png``); images that would share that name
    in one output folder all add their extension (``<stem>_<ext>.png``), and a name still taken
    (by another output, or by an input file when ``out`` is an input folder) gets ``-2``, ``-3`` ...
    """
    inputs = {source.resolve() for source, _ in images}
    stems = Counter((folder, source.stem) for source, folder in images)
    taken: set[Path] = set()
    jobs = []
    for source, folder in images:
        base = source.stem
        if stems[(folder, base)] > 1:
            base += "_" + source.suffix.lstrip(".").lower()
        candidate, n = base, 1
        while True:
            labels = out / folder / f"{candidate}.png"
            over = out / folder / f"{candidate}{OVERLAY_SUFFIX}"
            paths = {labels.resolve(), over.resolve()}
            if not paths & (taken | inputs):
                break
            n += 1
            candidate = f"{base}-{n}"
        taken |= paths
        jobs.append(Job(source, labels, over))
    return jobs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ssfnet.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="image files or folders of images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint folder (default: the embedded one); with --backend onnxruntime also an exported .onnx file",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="torch, or onnxruntime (a checkpoint folder is exported to ONNX on first use and cached)",
    )
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime's threads (default: one per core)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    parser.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="bf16 autocast (auto: on CUDA and on CPUs with native bf16) or fp32",
    )
    parser.add_argument("--multiscale", action="store_true", help="multi-scale + flip testing")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        images, skipped = collect_images(args.inputs)
        options = {"threads": args.threads} if args.backend == "onnxruntime" else {}
        predictor = load_predictor(
            args.checkpoint, args.device, backend=args.backend, precision=args.precision, **options
        )
    except (FileNotFoundError, RuntimeError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = plan_outputs(images, out)
    for path, reason in skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    failed = 0
    for job in tqdm(jobs, desc="parsing", unit="img"):
        try:
            image = read_image(job.source)
        except ImageError as err:
            tqdm.write(f"skipped {job.source}: {err}", file=sys.stderr)
            failed += 1
            continue
        labels = predictor.predict(image, multiscale=args.multiscale)
        atomic_write_bytes(job.labels, label_png_bytes(labels, predictor.label_set))
        blended = overlay(image, labels, predictor.label_set, alpha=args.alpha)
        atomic_write_bytes(job.overlay, png_bytes(blended))
        frames = frame_count(job.source)
        if frames > 1:
            tqdm.write(f"note: {job.source} is animated ({frames} frames): its first frame was parsed")
        if job.labels.stem != job.source.stem:
            tqdm.write(
                f"note: {job.source} written as {job.labels.name}: {job.source.stem}.png is another input "
                "or another image's output"
            )
    total = len(jobs) + len(skipped)
    summary = f"parsed {len(jobs) - failed} of {total} files into {out}"
    if failed or skipped:
        summary += f"; {failed + len(skipped)} skipped (reasons above)"
    print(summary)
    return 1 if failed or skipped else 0


if __name__ == "__main__":
    sys.exit(main())
