"""Pseudo-labels inside PASCAL-Person-Part's regions: a fine LIP-20 class for each region pixel.

PASCAL-Person-Part says where the head, torso and limbs are, not what covers them. Learnt as sets
of LIP-20 classes, any member satisfies the loss, and the default learnt to answer coat for every
body pixel and face for every head pixel. Pseudo-labels pick one member instead: for each region
pixel, the class a teacher finds most likely among those the region admits, after taking out the
teacher's own bias, region by region (each class's probability divided by the teacher's mean
probability of it inside that region of PASCAL's photos, and multiplied by the class's share, in
fine ground truth, of the pixels whose class the region admits). Pixels where the choice is not
clear keep their region's value, so the set loss still covers them; background stays background.
A left and right pair (arms, legs, shoes) is one class for that choice, and its side is the side
of the person's torso the pixel lies on: a teacher that splits a foot between its two shoes is
still sure it is a shoe.

The teacher alone never names a limb: on PASCAL's photos it gives bare arms and legs a few per
cent of its probability (the shortcut it was trained out of is still in its features), so no
prior lifts them. Bare skin has a cue of its own, though: its colour is the face's. With
``skin=True`` (the default), each photo's face pixels (the teacher's face inside PASCAL's head)
give a chroma model (YCrCb's Cr and Cb: mean and covariance), and inside the arm and leg regions
a pixel close to it is labelled an arm or a leg, one far from it is never one, and one between
keeps its region. Left against right is decided per connected patch of skin: by the teacher where
it is sure, else by the side of the person's torso the patch lies on (a person facing the camera
has the left arm on the photo's right). On VITON's ground truth (80 photos, face from the labels), the distance
threshold used here finds 83 % of the arm and leg pixels among the clothes with 92 % precision.
The same cue settles face against hair inside the head: hair the teacher painted over pixels of
the face's colour becomes face, and face painted far from it goes back to the head's set.

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

import cv2
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
# Squared Mahalanobis distance (chroma, from the photo's face) under which a limb-region pixel is
# bare skin, and over which it is certainly not; between, it keeps its region. A face needs this
# many pixels to give a colour model.
SKIN_IN, SKIN_OUT, MIN_FACE_PIXELS = 6.0, 16.0, 150
SKIN_MIN_CR = 133.0
# Inside the head, a pixel the teacher calls hair is face where its chroma distance is under this
# and its brightness within this fraction of the face's (see _face_by_colour).
FACE_SKIN, FACE_BRIGHTNESS = 3.0, 0.25
# Left or right: the teacher decides a patch of skin where it favours one side this many times
# over the other; elsewhere the side of the torso the patch lies on does (see label_skin). At 4,
# the default's leaning towards the right arm made right arms 2.8 times as common as left ones
# in 1,276 PASCAL photos; at 20 the two are even (2.39 % and 2.49 % of region pixels in 36).
SIDE_RATIO = 20.0
# Limb region -> its (left, right) LIP-20 classes.
LIMB_CLASSES = {
    "upper-arm": ("left-arm", "right-arm"),
    "lower-arm": ("left-arm", "right-arm"),
    "upper-leg": ("left-leg", "right-leg"),
    "lower-leg": ("left-leg", "right-leg"),
}


def region_admission(label_set=LIP_20) -> dict[int, np.ndarray]:
    """Region value -> boolean K vector of the classes it admits (the label set's membership)."""
    k = label_set.num_classes
    return {value: label_set.membership[value, :k].copy() for value in range(k, label_set.num_ids)}


def class_prior(specs: Sequence[str], *, limit: int | None = 200) -> np.ndarray:
    """Each LIP-20 class's share of person pixels in the ground truth of ``specs`` (K vector,
    background 0, a floor of 1e-4 so that no class is ruled out).

    A pixel labelled with a set (CCP's skin and shoes, which name no side and no limb) counts
    evenly towards the set's members: without it, shoes and legs, which studio photos seldom
    show, would take the floor and never be chosen."""
    k = LIP_20.num_classes
    counts = np.zeros(k, dtype=np.float64)
    members = LIP_20.membership[:, :k].astype(np.float64)
    members /= np.maximum(members.sum(1, keepdims=True), 1.0)
    for spec in specs:
        dataset = open_source(spec, LIP_20)
        for i in spread(len(dataset), limit):
            _, label = dataset.load(int(i))
            values = np.bincount(label[label < LIP_20.num_ids].ravel(), minlength=LIP_20.num_ids)
            counts += values @ members
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


def region_weights(
    probs: Sequence[np.ndarray], labels: Sequence[np.ndarray], prior: np.ndarray, admits: dict[int, np.ndarray]
) -> dict[int, np.ndarray]:
    """Region value -> K vector of weights: the prior's shares among the classes the region admits,
    over the teacher's mean probabilities of them inside that region (each renormalised over the
    admitted classes).

    Inside a region, only the admitted classes compete, so that is where the teacher's leaning is
    measured: over all person pixels, a photo set whose people show more head than the prior's
    (PASCAL's against studio photos) would read as a leaning towards face and push heads to hair.
    A region with no pixels in the sample falls back to the marginal over all person pixels.
    """
    overall = teacher_marginal(probs, labels)
    weights = {}
    for value, allowed in admits.items():
        total, count = np.zeros(len(prior), dtype=np.float64), 0
        for prob, label in zip(probs, labels):
            where = label == value
            total += prob[:, where].sum(1)
            count += int(where.sum())
        marginal = total / count if count else overall
        marginal = np.maximum(marginal * allowed, 1e-6)
        shares = prior * allowed
        weights[value] = (shares / max(shares.sum(), 1e-12)) / (marginal / marginal[allowed].sum())
        weights[value][~allowed] = 0.0
    return weights


def pseudo_label(
    prob: np.ndarray,
    label: np.ndarray,
    admits: dict[int, np.ndarray],
    weights: np.ndarray | dict[int, np.ndarray],
    *,
    min_confidence: float = MIN_CONFIDENCE,
    persons_left: np.ndarray | None = None,
) -> np.ndarray:
    """LIP-20 pseudo-labels for one photo.

    A left and right pair (arms, legs, shoes) counts as one class for the confidence: a teacher
    sure of a shoe but split over which is still sure of a shoe. The side then comes from
    ``persons_left`` unless the teacher favours one side :data:`SIDE_RATIO` times over the other
    (from the teacher alone where ``persons_left`` is not given).

    Args:
        prob: K x H x W teacher probabilities.
        label: H x W stored labels (0 background, region values >= K, 255 ignore, fine ids kept).
        admits: :func:`region_admission`.
        weights: K vector multiplying the teacher's probabilities (prior / teacher's marginal), or
            one per region value (:func:`region_weights`).
        min_confidence: Below this renormalised probability a pixel keeps its region value.
        persons_left: H x W bool, True where a pixel lies on its person's left (see :func:`_columns`).

    Returns:
        H x W uint8: the chosen class where sure, else the input label.
    """
    k = prob.shape[0]
    partner = np.arange(k)
    for a, b in LIP_20.flip_pairs:
        partner[a], partner[b] = b, a
    out = label.copy()
    for value, allowed in admits.items():
        where = label == value
        if not where.any():
            continue
        w = weights[value] if isinstance(weights, dict) else weights
        p = prob[:, where] * (w * allowed)[:, None]
        total = p.sum(0)
        merged = p + np.where((partner != np.arange(k))[:, None], p[partner], 0.0)
        best = merged.argmax(0)
        confidence = merged.max(0) / np.maximum(total, 1e-12)
        paired = partner[best] != best
        if paired.any():
            cols = np.flatnonzero(paired)
            left, right = np.minimum(best, partner[best])[cols], np.maximum(best, partner[best])[cols]
            to_left, to_right = p[left, cols], p[right, cols]
            side = np.where(to_left >= to_right, left, right)
            if persons_left is not None:
                side = np.where(persons_left[where][cols], left, right)
                side = np.where(to_left > SIDE_RATIO * to_right, left, side)
                side = np.where(to_right > SIDE_RATIO * to_left, right, side)
            best[cols] = side
        sure = (confidence >= min_confidence) & (total > 0)
        chosen = out[where]
        chosen[sure] = best[sure]
        out[where] = chosen
    return out.astype(np.uint8)


def skin_distance(image: np.ndarray, face: np.ndarray) -> np.ndarray | None:
    """Squared Mahalanobis distance of every pixel's chroma from the face pixels' (H x W float32).

    Chroma is YCrCb's (Cr, Cb), which changes little with shading; the covariance gets a floor
    (4 on the 0-255 scale) so that an evenly lit face still admits its own shadows. ``None`` where
    ``face`` has fewer than :data:`MIN_FACE_PIXELS` pixels: no colour model then.
    """
    if int(face.sum()) < MIN_FACE_PIXELS:
        return None
    ycrcb = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2YCrCb).astype(np.float32)
    chroma = ycrcb[..., 1:]
    samples = chroma[face].astype(np.float64)
    centre = np.median(samples, axis=0)
    inverse = np.linalg.inv(np.cov((samples - centre).T) + 4.0 * np.eye(2)).astype(np.float32)
    d = chroma - centre.astype(np.float32)
    distance = np.einsum("hwi,ij,hwj->hw", d, inverse, d)
    # Grey, black and white have no skin colour, whatever a washed-out face says: dark jackets and
    # faded jeans in dim light lie close to a pale face's chroma. Skin is red of neutral
    # (Cr above 133) and within a wide band of the face's brightness.
    brightness = float(np.median(ycrcb[..., 0][face]))
    grey = (ycrcb[..., 1] < SKIN_MIN_CR) | (ycrcb[..., 0] < 0.4 * brightness) | (ycrcb[..., 0] > 1.6 * brightness + 20)
    distance[grey] = np.float32(np.inf)
    return distance


def label_skin(fine: np.ndarray, label: np.ndarray, prob: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Arms and legs from skin colour inside PASCAL's limb regions, and face against hair inside its
    head (see the module).

    Args:
        fine: H x W pseudo-labels from :func:`pseudo_label` (changed copy returned).
        label: H x W stored region labels.
        prob: K x H x W teacher probabilities (they pick left or right per patch of skin).
        image: H x W x 3 RGB uint8 photo.
    """
    face = (fine == LIP_20.id_of("face")) & (label == LIP_20.id_of("head"))
    distance = skin_distance(image, face)
    if distance is None:
        return fine
    out = fine.copy()
    xs, middle = _columns(label)
    for region, sides in LIMB_CLASSES.items():
        value = LIP_20.id_of(region)
        where = label == value
        if not where.any():
            continue
        left, right = (LIP_20.id_of(name) for name in sides)
        skin = where & (distance < SKIN_IN)
        count, patches = cv2.connectedComponents(skin.astype(np.uint8), connectivity=8)
        if count > 1:
            inside = patches[skin]
            to_left = np.bincount(inside, prob[left][skin], minlength=count)
            to_right = np.bincount(inside, prob[right][skin], minlength=count)
            # Facing the camera, a person's left limb is on the photo's right of their torso.
            image_right = np.bincount(inside, xs[skin], minlength=count) > np.bincount(
                inside, middle[skin], minlength=count
            )
            side = np.where(image_right, left, right)
            side = np.where(to_left > SIDE_RATIO * to_right, left, side)
            side = np.where(to_right > SIDE_RATIO * to_left, right, side)
            out[skin] = side[inside]
        unsure = where & ~skin & (distance <= SKIN_OUT)
        out[unsure] = value
        clothed_limb = where & (distance > SKIN_OUT) & np.isin(out, (left, right))
        out[clothed_limb] = value
    return _face_by_colour(out, label, distance, image, face)


def _face_by_colour(
    fine: np.ndarray, label: np.ndarray, distance: np.ndarray, image: np.ndarray, face: np.ndarray
) -> np.ndarray:
    """Inside PASCAL's head, hair the teacher painted over pixels of the face's colour and
    brightness is face, and face it painted far from the face's colour goes back to the head's set.

    The default paints hair about twice as often as people label it on everyday photos, over a
    quarter of their faces. Hair's chroma is often close to the face's (blond and brown hair),
    its brightness rarely: on 120 VITON photos (face model from the labels), chroma distance under
    :data:`FACE_SKIN` with brightness within :data:`FACE_BRIGHTNESS` of the face's takes in 69 % of
    face pixels and 4.4 % of hair pixels (the limbs' distance alone: 93 % and 28 %).
    """
    head = label == LIP_20.id_of("head")
    hair, face_id = LIP_20.id_of("hair"), LIP_20.id_of("face")
    luma = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float32)
    level = float(np.median(luma[face]))
    like_face = (distance < FACE_SKIN) & (np.abs(luma - level) < FACE_BRIGHTNESS * level)
    fine[head & (fine == hair) & like_face] = face_id
    fine[head & (fine == face_id) & (distance > SKIN_OUT)] = LIP_20.id_of("head")
    return fine


def _columns(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's column, and the middle column of its person (H x W float32 both).

    A person is a connected patch of PASCAL's regions; its middle is the mean column of its torso
    (of all its pixels where the torso is missing)."""
    k = LIP_20.num_classes
    person = (label >= k) & (label != 255)
    count, people = cv2.connectedComponents(person.astype(np.uint8), connectivity=8)
    xs = np.broadcast_to(np.arange(label.shape[1], dtype=np.float32), label.shape)
    torso = label == LIP_20.id_of("torso")
    ids = people[person]
    middle_all = np.bincount(ids, xs[person], minlength=count) / np.maximum(np.bincount(ids, minlength=count), 1)
    t_ids = people[torso]
    torso_sum = np.bincount(t_ids, xs[torso], minlength=count)
    torso_count = np.bincount(t_ids, minlength=count)
    middle = np.where(torso_count > 0, torso_sum / np.maximum(torso_count, 1), middle_all).astype(np.float32)
    return xs, middle[people]


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
    skin: bool = True,
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
    prior = class_prior(priors) if priors else np.where(np.arange(LIP_20.num_classes) > 0, 1.0, 0.0)
    weights = region_weights(probs, labels, prior, admits)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    k = LIP_20.num_classes
    counts = np.zeros(k + 1, dtype=np.int64)  # the last: region pixels left as sets
    for i in indices:
        sample_id = dataset.ids[int(i)]
        image, label = dataset.load(int(i))
        prob = _at(predictor.predict_proba(image), label.shape)
        xs, middle = _columns(label)
        # Facing the camera, a person's left is on the photo's right of their torso.
        fine = pseudo_label(prob, label, admits, weights, min_confidence=min_confidence, persons_left=xs > middle)
        if skin:
            fine = label_skin(fine, label, prob, image)
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
        "skin": skin,
        "weights": {
            LIP_20.all_names[value]: {LIP_20.names[c]: round(float(w[c]), 4) for c in np.flatnonzero(w)}
            for value, w in weights.items()
        },
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
    p.add_argument(
        "--skin", action=argparse.BooleanOptionalAction, default=True,
        help="label bare arms and legs by the face's colour inside PASCAL's limb regions",
    )  # fmt: skip
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
            min_confidence=args.min_confidence, input_size=args.input_size, skin=args.skin,
        )  # fmt: skip
    except (OSError, ValueError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    shares = ", ".join(f"{name} {share}" for name, share in record["shares_of_region_pixels"].items())
    print(f"labelled {record['photos']} photos into {out}; shares of region pixels (%): {shares}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
