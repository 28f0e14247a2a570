"""How many clicks, and seconds of compute, each click tool takes to fix a wrong region (issue 36 item 1).

    python -m experiments.click_cost [--dataset ccp] [--photos 10] [--label upper-clothes]
        [--out docs/results/click-cost.md]

On real photos with ground truth (CCP's pixel-level annotations, or VITON's parses, as LIP-20),
the default model (``ssfnet.load_predictor()``) proposes the labels; then a simulated annotator
fixes one class with one tool at a time, starting each tool from the proposal. Each step it finds
the largest wrongly-labelled region of the class (missed pixels of it, or pixels wrongly given
it: one 4-connected component), and clicks at its centre (the pixel farthest from the region's
border) with the label the ground truth has there (for wrongly given pixels, the region's most
common true label). With the polygon tool it clicks the region's outline simplified to a polygon
(``cv2.approxPolyDP``, 3 px) and closes it: each vertex and the close count as clicks. A step
that does not raise the class's IoU is undone (its clicks and the undo count) and that region is
left for the next largest; the annotator stops when the IoU reaches ``--target``, after
``--patience`` such failures in a row, or after ``--max-steps`` steps.

The tools are the app's own (:data:`demo.panel_edit.MASK_TOOLS`, ``Session.relabel``, the
polygon's fill), at the app's default settings (flood-fill tolerance 24, brush 1/40 of the longer
side, about 600 superpixels); compute is the time of the tool's mask and the edit, the
superpixels' one computation per photo included (reported apart too). Rendering and the browser's
round trip are not counted (see ``experiments.profile_edits`` for those).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from demo import editing
from demo.panel_edit import DOT_TOOL, MASK_TOOLS, SUPERPIXEL_TOOL, segments_of
from demo.session import Session, Source
from ssfnet.labels import IGNORE_INDEX, LabelSet, get_label_set

POLYGON = "Polygon"
FINE = 1200  # a finer coarseness, measured beside the default
FINE_SUPERPIXEL = f"{SUPERPIXEL_TOOL} ({FINE})"
TOOLS = ("Relabel region", "Flood fill (similar colour)", SUPERPIXEL_TOOL, FINE_SUPERPIXEL, POLYGON, DOT_TOOL)
TOLERANCE = 24
# The outline's simplification for the polygon's vertices, in pixels: about a careful annotator's clicks.
POLYGON_EPSILON = 3.0
# The annotator looks at this many of the largest wrong regions at most.
MAX_REGIONS = 8


def iou(labels: np.ndarray, truth: np.ndarray, value: int) -> float:
    """IoU of label ``value`` between ``labels`` and ``truth`` (H x W), over pixels the truth labels."""
    valid = truth != IGNORE_INDEX
    ours, theirs = (labels == value) & valid, truth == value
    union = np.count_nonzero(ours | theirs)
    return np.count_nonzero(ours & theirs) / union if union else 1.0


@dataclass(frozen=True)
class Region:
    """A wrongly-labelled region: its mask, the label it should have and the point to click (x, y)."""

    mask: np.ndarray
    label: int
    point: tuple[int, int]


def wrong_regions(labels: np.ndarray, truth: np.ndarray, value: int) -> list[Region]:
    """The 4-connected regions wrong about ``value`` (missed, or wrongly given it), largest first."""
    valid = truth != IGNORE_INDEX
    found = []
    for wrong in ((truth == value) & (labels != value), (labels == value) & (truth != value) & valid):
        count, components, stats, _ = cv2.connectedComponentsWithStats(wrong.astype(np.uint8), connectivity=4)
        for index in np.argsort(-stats[1:, cv2.CC_STAT_AREA])[:MAX_REGIONS] + 1:
            found.append((int(stats[index, cv2.CC_STAT_AREA]), components == index))
    regions = []
    for _, mask in sorted(found, key=lambda item: -item[0])[:MAX_REGIONS]:
        inside = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(inside)), mask.shape)
        true = np.bincount(truth[mask], minlength=256)
        true[IGNORE_INDEX] = 0
        regions.append(Region(mask, int(np.argmax(true)), (int(x), int(y))))
    return regions


def polygon_of(mask: np.ndarray) -> list[tuple[int, int]]:
    """The vertices an annotator would click around ``mask``: its outer outline, simplified."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=cv2.contourArea)
    points = cv2.approxPolyDP(outline, POLYGON_EPSILON, True).reshape(-1, 2)
    return [(int(x), int(y)) for x, y in points]


@dataclass
class Outcome:
    """What fixing one class of one photo with one tool took."""

    clicks: int = 0
    steps: int = 0
    seconds: float = 0.0
    setup_seconds: float = 0.0  # the superpixels' computation, within ``seconds``
    iou_before: float = 0.0
    iou_after: float = 0.0


def fix(
    session: Session, truth: np.ndarray, value: int, tool: str, *, target: float, max_steps: int, patience: int
) -> Outcome:
    """Fix label ``value`` of ``session`` (its labels: the proposal) with ``tool`` as the simulated annotator does."""
    out = Outcome(iou_before=iou(session.labels, truth, value))
    best, failures, given_up = out.iou_before, 0, set()
    while best < target and out.steps < max_steps and failures < patience:
        region = next((r for r in wrong_regions(session.labels, truth, value) if r.point not in given_up), None)
        if region is None:
            break
        x, y = region.point
        began = time.perf_counter()
        if tool == POLYGON:
            vertices = polygon_of(region.mask)
            if len(vertices) < 3:
                given_up.add(region.point)
                continue
            session.relabel(editing.polygon_mask(session.labels.shape, vertices), region.label, "polygon")
            clicks = len(vertices) + 1
        else:
            superpixel = tool in (SUPERPIXEL_TOOL, FINE_SUPERPIXEL)
            fresh = superpixel and not session.superpixels.ready(segments_of(session))
            mask = MASK_TOOLS[SUPERPIXEL_TOOL if superpixel else tool](session, x, y, TOLERANCE)
            if fresh:
                out.setup_seconds = time.perf_counter() - began
            session.relabel(mask, region.label, tool)
            clicks = 1
        out.seconds += time.perf_counter() - began
        out.steps += 1
        out.clicks += clicks
        now = iou(session.labels, truth, value)
        if now > best + 1e-6:
            best, failures = now, 0
            continue
        session.undo()  # it did not help: undone (one more click), and this region left alone
        out.clicks += 1
        failures += 1
        given_up.add(region.point)
    out.iou_after = best
    return out


def new_session(image: np.ndarray, proposal: np.ndarray, label_set: LabelSet) -> Session:
    h, w = proposal.shape
    source = Source(name="photo", data=b"", ext="png", size=(h, w), keep_bytes=False)
    return Session.start(image, source, proposal, label_set)


def photos(dataset: str, root: Path, count: int, value: int, min_share: float):
    """``(id, image, truth)`` of the first ``count`` photos whose truth gives ``value`` at least ``min_share``."""
    from ssfnet.data.layouts import CCPDataset, VitonDataset

    data = (CCPDataset if dataset == "ccp" else VitonDataset)(root, "lip-20")
    found = 0
    for index, sample_id in enumerate(data.ids):
        image, truth = data.load(index)
        if np.mean(truth == value) < min_share:
            continue
        yield sample_id, image, truth
        found += 1
        if found == count:
            return


def cpu_name() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")), "?")


def table(results: dict[str, list[Outcome]]) -> str:
    rows = [
        "| tool | photos | clicks (median / mean) | fixed steps (mean) | IoU before → after (mean) "
        "| compute s per photo (mean; superpixels) | compute ms per click (median) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for tool, outs in results.items():
        clicks = [o.clicks for o in outs]
        per_click = [1000 * o.seconds / max(1, o.clicks) for o in outs if o.clicks]
        setup = statistics.mean(o.setup_seconds for o in outs)
        rows.append(
            f"| {tool} | {len(outs)} | {statistics.median(clicks):g} / {statistics.mean(clicks):.1f} "
            f"| {statistics.mean(o.steps for o in outs):.1f} "
            f"| {statistics.mean(o.iou_before for o in outs):.3f} → {statistics.mean(o.iou_after for o in outs):.3f} "
            f"| {statistics.mean(o.seconds for o in outs):.2f}" + (f" ({setup:.2f})" if setup else "") + " "
            f"| {statistics.median(per_click) if per_click else 0:.0f} |"
        )
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.click_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=("ccp", "viton"), default="ccp")
    parser.add_argument("--root", type=Path, help="the dataset folder (default ../shared/datasets/<dataset>)")
    parser.add_argument("--photos", type=int, default=10)
    parser.add_argument("--label", default="upper-clothes", help="the LIP-20 class to fix")
    parser.add_argument("--min-share", type=float, default=0.02, help="photos where the class covers less are skipped")
    parser.add_argument("--target", type=float, default=0.95, help="IoU at which the annotator stops")
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--patience", type=int, default=3, help="failed steps in a row before the annotator stops")
    parser.add_argument("--checkpoint", help="default: ssfnet.load_predictor()'s")
    parser.add_argument("--out", type=Path, help="write the markdown here (default: print it)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import torch

    from ssfnet import load_predictor
    from ssfnet.predictor import resolve_checkpoint

    torch.set_num_threads(1)
    root = args.root or Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / args.dataset
    lip = get_label_set("lip-20")
    value = lip.id_of(args.label)
    predictor = load_predictor(args.checkpoint, "cpu")
    results: dict[str, list[Outcome]] = {tool: [] for tool in TOOLS}
    lines = []
    for sample_id, image, truth in photos(args.dataset, root.resolve(), args.photos, value, args.min_share):
        proposal = predictor.predict(image)
        line = [sample_id, f"{iou(proposal, truth, value):.3f}"]
        for tool in TOOLS:
            session = new_session(image, proposal, lip)
            session.superpixel_segments = FINE if tool == FINE_SUPERPIXEL else None
            out = fix(session, truth, value, tool, target=args.target, max_steps=args.max_steps, patience=args.patience)
            results[tool].append(out)
            line.append(f"{out.clicks} / {out.iou_after:.3f}")
        lines.append("| " + " | ".join(line) + " |")
        print(lines[-1], file=sys.stderr, flush=True)
    command = "python -m experiments.click_cost " + " ".join(argv if argv is not None else sys.argv[1:])
    per_photo = "\n".join(
        [
            "| photo | IoU of the proposal | " + " | ".join(f"{t}: clicks / IoU" for t in TOOLS) + " |",
            "| --- | ---: | " + " | ".join("---:" for _ in TOOLS) + " |",
            *lines,
        ]
    )
    text = (
        f"# Click cost of the click tools: fixing `{args.label}` on {args.dataset.upper()}\n\n"
        f"`{command.strip()}` (OMP_NUM_THREADS=1), on {cpu_name()}; model: the default checkpoint "
        f"(`{resolve_checkpoint(args.checkpoint).name}`).\n\n"
        f"A simulated annotator (see `experiments/click_cost.py`) clicks the centre of the largest region wrong "
        f"about `{args.label}` until its IoU reaches {args.target}, after {args.patience} steps in a row that "
        f"do not raise it (each undone: its clicks and the undo count), or after {args.max_steps} steps. "
        "Clicks: the polygon counts each vertex and the close. Compute: the tools' masks and edits on the CPU, "
        "the superpixels' one computation per photo included (in brackets).\n\n"
        f"{table(results)}\n\nPer photo:\n\n{per_photo}\n"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
