"""Pseudo-labels inside PASCAL-Person-Part's regions: a fine LIP-20 class for each region pixel.

PASCAL-Person-Part says where the head, torso and limbs are, not what covers them. Learnt as sets
of LIP-20 classes, any member satisfies the loss, and the default learnt to answer coat for every
body pixel and face for every head pixel. Pseudo-labels pick one member instead: for each region
pixel, the class a teacher finds most likely among those the region admits, after taking out the
teacher's own bias (each class's probability divided by the teacher's mean probability of it over
PASCAL's person pixels, and multiplied by the class's share of person pixels in fine ground
truth). Pixels where the choice is not clear keep their region's value, so the set loss still
covers them; background stays background.

    python -m train.pseudo --teacher checkpoints/ssfnet_lite0-lip20 \\
        --data pascal-person-part:../shared/datasets/pascal-person-part \\
        --prior viton:../shared/datasets/viton --prior ccp:../shared/datasets/ccp \\
        --exclude train/splits/pascal-person-part-val.txt --out runs/pseudo-pascal

writes ``OUT/images/<id>.jpg``, ``OUT/labels/<id>.png`` (LIP-20 ids, region values where
unsure) and ``OUT/pseudo.json`` (teacher, priors, shares): train on it as ``folder:OUT``. The
held-out photos (``--exclude``) are never labelled, so validation stays clean.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ssfnet.checkpoint import CheckpointError
from ssfnet.data import open_source
from ssfnet.labels import LIP_20
from ssfnet.predictor import load_predictor

from .evaluate import spread
from .utils import write_json

# Teacher probability a chosen class must have, after the prior and the region's set, for its
# pixel to take it; below, the pixel keeps its region's value (set supervision).
MIN_CONFIDENCE = 0.5


def region_admission(label_set=LIP_20) -> dict[int, np.ndarray]:
    """Region value -> boolean K vector of the classes it admits (the label set's membership)."""
    k = label_set.num_classes
    return {value: label_set.membership[value, :k].copy() for value in range(k, label_set.num_ids)}


def class_prior(specs: Sequence[str], *, limit: int | None = 200) -> np.ndarray:
    """Each LIP-20 class's share of person pixels in the fine ground truth of ``specs`` (K vector,
    background 0, a floor of 1e-4 so that no class is ruled out)."""
    k = LIP_20.num_classes
    counts = np.zeros(k, dtype=np.float64)
    for spec in specs:
        dataset = open_source(spec, LIP_20)
        for i in spread(len(dataset), limit):
            _, label = dataset.load(int(i))
            fine = label[label < k]
            counts += np.bincount(fine.ravel(), minlength=k)[:k]
    counts[0] = 0.0
    prior = counts / max(counts.sum(), 1.0)
    prior = np.maximum(prior, 1e-4)
    prior[0] = 0.0
    return prior


def teacher_marginal(probs: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> np.ndarray:
    """The teacher's mean class probability over the region (person) pixels of the photos given."""
    k = LIP_20.num_classes
    total, count = np.zeros(k, dtype=np.float64), 0
    for prob, label in zip(probs, labels):
        person = label >= k
        person &= label != 255
        total += prob[:, person].sum(1)
        count += int(person.sum())
    marginal = total / max(count, 1)
    return np.maximum(marginal, 1e-6)


def pseudo_label(
    prob: np.ndarray,
    label: np.ndarray,
    admits: dict[int, np.ndarray],
    weights: np.ndarray,
    *,
    min_confidence: float = MIN_CONFIDENCE,
) -> np.ndarray:
    """LIP-20 pseudo-labels for one photo.

    Args:
        prob: K x H x W teacher probabilities.
        label: H x W stored labels (0 background, region values >= K, 255 ignore, fine ids kept).
        admits: :func:`region_admission`.
        weights: K vector multiplying the teacher's probabilities (prior / teacher's marginal).
        min_confidence: Below this renormalised probability a pixel keeps its region value.

    Returns:
        H x W uint8: the chosen class where sure, else the input label.
    """
    out = label.copy()
    for value, allowed in admits.items():
        where = label == value
        if not where.any():
            continue
        p = prob[:, where] * (weights * allowed)[:, None]
        total = p.sum(0)
        best = p.argmax(0)
        confidence = p.max(0) / np.maximum(total, 1e-12)
        sure = (confidence >= min_confidence) & (total > 0)
        chosen = out[where]
        chosen[sure] = best[sure]
        out[where] = chosen
    return out.astype(np.uint8)


def make_pseudo_labels(
    teacher: str | Path,
    data: str,
    out: Path,
    *,
    priors: Sequence[str] = (),
    exclude: Sequence[str] = (),
    limit: int | None = None,
    min_confidence: float = MIN_CONFIDENCE,
    input_size: int | None = None,
) -> dict:
    """Label ``data``'s region photos (all but ``exclude``) with ``teacher``; writes ``out`` (see the module)."""
    predictor = load_predictor(teacher, device="cpu", **({"input_size": input_size} if input_size else {}))
    if predictor.label_set.name != LIP_20.name:
        raise ValueError(f"the teacher must predict {LIP_20.name}, not {predictor.label_set.name}")
    dataset = open_source(data, LIP_20)
    skip = set(exclude)
    indices = [i for i in spread(len(dataset), limit) if dataset.ids[int(i)] not in skip]
    if not indices:
        raise ValueError(f"no photos of {data} left to label")
    admits = region_admission()
    # The teacher's bias: its mean probabilities over person pixels of an even sample first.
    sample = indices[:: max(1, len(indices) // 60)]
    probs, labels = [], []
    for i in sample:
        image, label = dataset.load(int(i))
        probs.append(_at(predictor.predict_proba(image), label.shape))
        labels.append(label)
    marginal = teacher_marginal(probs, labels)
    prior = class_prior(priors) if priors else np.where(np.arange(LIP_20.num_classes) > 0, 1.0, 0.0)
    weights = prior / marginal
    weights[0] = 0.0
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    k = LIP_20.num_classes
    counts = np.zeros(k + 1, dtype=np.int64)  # the last: region pixels left as sets
    for i in indices:
        sample_id = dataset.ids[int(i)]
        image, label = dataset.load(int(i))
        prob = _at(predictor.predict_proba(image), label.shape)
        fine = pseudo_label(prob, label, admits, weights, min_confidence=min_confidence)
        region = label >= k
        region &= label != 255
        counts[:k] += np.bincount(fine[region & (fine < k)], minlength=k)[:k]
        counts[k] += int((region & (fine >= k)).sum())
        source = dataset.image_path(sample_id)
        shutil.copyfile(source, out / "images" / f"{sample_id}{source.suffix.lower()}")
        Image.fromarray(fine).save(out / "labels" / f"{sample_id}.png")
    region_pixels = max(int(counts.sum()), 1)
    record = {
        "teacher": str(teacher),
        "data": data,
        "photos": len(indices),
        "excluded": len(skip),
        "priors": list(priors),
        "min_confidence": min_confidence,
        "weights": {LIP_20.names[c]: round(float(weights[c]), 4) for c in range(1, k)},
        "shares_of_region_pixels": {
            **{LIP_20.names[c]: round(100.0 * counts[c] / region_pixels, 2) for c in range(1, k) if counts[c]},
            "left as sets": round(100.0 * counts[k] / region_pixels, 2),
        },
    }
    write_json(out / "pseudo.json", record)
    return record


def _at(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """K x h x w probabilities at the label's H x W (nearest: only which class wins matters)."""
    if prob.shape[1:] == tuple(shape):
        return prob
    rows = (np.arange(shape[0]) * prob.shape[1] // shape[0]).clip(0, prob.shape[1] - 1)
    cols = (np.arange(shape[1]) * prob.shape[2] // shape[1]).clip(0, prob.shape[2] - 1)
    return prob[:, rows][:, :, cols]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m train.pseudo",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--teacher", required=True, help="LIP-20 checkpoint folder")
    p.add_argument("--data", required=True, help="source with PASCAL-Person-Part's regions (pascal-person-part:PATH)")
    p.add_argument("--prior", action="append", default=[], help="fine-labelled source(s) whose class shares to aim at")
    p.add_argument("--exclude", default=None, help="file of ids never to label (the held-out photos)")
    p.add_argument("--limit", type=int, default=None, help="label at most this many photos (evenly spread)")
    p.add_argument("--min-confidence", type=float, default=MIN_CONFIDENCE)
    p.add_argument("--input-size", type=int, default=None, help="default: the teacher's")
    p.add_argument("--out", required=True, help="folder to write (must not exist)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if out.exists():
        print(f"error: {out} exists; name a new folder", file=sys.stderr)
        return 1
    try:
        exclude = Path(args.exclude).read_text().split() if args.exclude else []
        record = make_pseudo_labels(
            args.teacher, args.data, out, priors=args.prior, exclude=exclude, limit=args.limit,
            min_confidence=args.min_confidence, input_size=args.input_size,
        )  # fmt: skip
    except (OSError, ValueError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    shares = ", ".join(f"{name} {share}" for name, share in record["shares_of_region_pixels"].items())
    print(f"labelled {record['photos']} photos into {out}; shares of region pixels (%): {shares}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
