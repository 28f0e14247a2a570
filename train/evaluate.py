"""Score a checkpoint on labelled data: per-class IoU, mIoU, pixel accuracy, JSON and plots.

    python -m train.evaluate --checkpoint runs/r101/best --data ccp:../shared/datasets/ccp
    python -m train.evaluate --checkpoint runs/r101/best --data ccp:../shared/datasets/ccp \\
        --gt-label-set fashion-17 --multiscale --flip --out runs/r101/eval-ccp
    python -m train.evaluate --checkpoint runs/r101/best \\
        --data pascal-person-part:../shared/datasets/pascal-person-part --gt-label-set person-head-3

Predictions come from :class:`ssfnet.Predictor` at the image's full resolution, single-scale or
multi-scale with flip. ``--gt-label-set`` loads the ground truth in another label set and scores
through :func:`ssfnet.labels.eval_mapping`:

- ``fashion-17``: a LIP-20 model against CCP (face, arms and legs count as skin; bag, belt and
  accessories are not scored);
- ``person-head-3``: a LIP-20 model against PASCAL-Person-Part, whose parts are body regions
  rather than clothes (hat, hair, sunglasses and face count as head, every other class as body);
  person IoU (head and body against background) and head IoU are reported too;
- ``cihp-20``: a LIP-20 model against CIHP in CIHP's ids (its torso-skin is not scored and a
  predicted jumpsuits counts as wrong; without the option, CIHP loaded as LIP-20 ignores
  torso-skin the same way).

``--split runs/X/split.json`` restricts each source to the ids a training run held out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ssfnet.data import open_source, parse_source
from ssfnet.labels import EvalMapping, LabelSet, eval_mapping, get_label_set
from ssfnet.metrics import ConfusionMatrix
from ssfnet.predictor import load_predictor

from .plots import plot_results
from .utils import write_json


def score_source(
    predictor,
    text: str,
    gt_set: LabelSet,
    ids: list[str] | None,
    **kwargs,
) -> tuple[ConfusionMatrix, int]:
    """``predictor``'s confusion matrix on source ``text`` (its ``ids``, or all) in ``gt_set``'s terms, and its size.

    The model's labels are mapped onto ``gt_set``'s where the two differ (:func:`ssfnet.labels.eval_mapping`);
    ``kwargs`` go to :func:`evaluate_dataset` (multiscale, flip, batch_size, limit, progress).
    """
    mapping = None if gt_set is predictor.label_set else eval_mapping(predictor.label_set, gt_set)
    dataset = open_source(text, gt_set, ids=ids)
    cm = evaluate_dataset(predictor, dataset, gt_set.num_classes, mapping=mapping, label_set=gt_set, **kwargs)
    return cm, len(dataset)


def evaluate_dataset(
    predictor,
    dataset,
    num_classes: int,
    *,
    mapping: EvalMapping | None = None,
    label_set: LabelSet | None = None,
    multiscale: bool = False,
    flip: bool = False,
    batch_size: int = 4,
    limit: int | None = None,
    progress: bool = True,
    per_item: list[np.ndarray] | None = None,
) -> ConfusionMatrix:
    """Accumulate the confusion matrix of ``predictor`` over ``dataset``.

    Args:
        predictor: Has ``predict_batch(images, multiscale=, flip=)`` returning H x W label maps
            (e.g. :class:`ssfnet.Predictor`).
        dataset: Follows the :mod:`ssfnet.data` contract (``load(i) -> (image, label)``).
        num_classes: Classes of the ground-truth label set.
        mapping: Cross-set mapping (predicted ids -> ground-truth ids), if the sets differ.
        label_set: Ground-truth label set, to score its coarse values.
        multiscale: Multi-scale testing.
        flip: Flip testing.
        batch_size: Images per predictor call.
        limit: Score at most this many images (an even spread over the dataset).
        progress: Show a progress bar.
        per_item: Receives each image's own matrix (see :func:`confusion_over`).
    """
    indices = spread(len(dataset), limit)
    with tqdm(total=len(indices), disable=not progress, desc="evaluate") as bar:
        return confusion_over(
            predictor,
            [(dataset, int(i)) for i in indices],
            num_classes,
            mapping=mapping,
            label_set=label_set,
            multiscale=multiscale,
            flip=flip,
            batch_size=batch_size,
            on_batch=bar.update,
            per_item=per_item,
        )


def confusion_over(
    predictor,
    items: Sequence[tuple[Any, int]],
    num_classes: int,
    *,
    mapping: EvalMapping | None = None,
    label_set: LabelSet | None = None,
    multiscale: bool = False,
    flip: bool = False,
    batch_size: int = 4,
    on_batch: Callable[[int], object] | None = None,
    per_item: list[np.ndarray] | None = None,
) -> ConfusionMatrix:
    """The confusion matrix of ``predictor`` over ``(dataset, index)`` items: the one scoring loop.

    :func:`evaluate_dataset`, the fine-tuner and the app's model comparison score through it.

    Args:
        items: Samples as (dataset following the :mod:`ssfnet.data` contract, index).
        on_batch: Called with the number of images after every batch.
        per_item: Where given, each item's own K x K matrix is appended to it, in item order
            (for :func:`paired_bootstrap`); the returned matrix is their sum.
        Others: as :func:`evaluate_dataset`.
    """
    cm = ConfusionMatrix(num_classes, mapping=mapping, label_set=label_set)
    for start in range(0, len(items), batch_size):
        pairs = [dataset.load(index) for dataset, index in items[start : start + batch_size]]
        preds = predictor.predict_batch([image for image, _ in pairs], multiscale=multiscale, flip=flip)
        for pred, (_, gt) in zip(preds, pairs):
            if per_item is None:
                cm.update(pred, gt)
                continue
            one = ConfusionMatrix(num_classes, mapping=mapping, label_set=label_set)
            one.update(pred, gt)
            per_item.append(one.matrix)
            cm.merge(one)
        if on_batch is not None:
            on_batch(len(pairs))
    return cm


def _stacks(before: Sequence[np.ndarray], after: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(before, dtype=np.int64)
    b = np.asarray(after, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 3 or len(a) == 0:
        raise ValueError(f"need two equal non-empty stacks of per-image matrices, got {a.shape} and {b.shape}")
    return a, b


def _resampled_deltas(
    a: np.ndarray, b: np.ndarray, score: Callable[[np.ndarray], float], rng: np.random.Generator, draws: int
) -> np.ndarray:
    """``draws`` paired-bootstrap deltas: the images resampled, the same draw for both stacks."""
    n, k = len(a), a.shape[1]
    flat_a, flat_b = a.reshape(n, -1), b.reshape(n, -1)
    deltas = np.empty(draws)
    for d in range(draws):
        counts = np.bincount(rng.integers(0, n, n), minlength=n)
        deltas[d] = score((counts @ flat_b).reshape(k, k)) - score((counts @ flat_a).reshape(k, k))
    return deltas


def _summary(delta: float, deltas: np.ndarray, **extra) -> dict:
    low, high = np.percentile(deltas, [2.5, 97.5])
    return {
        "delta": round(float(delta), 2),
        "low": round(float(low), 2),
        "high": round(float(high), 2),
        "p_gain": round(float((deltas > 0).mean()), 3),
        **extra,
        "draws": len(deltas),
    }


def paired_bootstrap(
    before: Sequence[np.ndarray],
    after: Sequence[np.ndarray],
    score: Callable[[np.ndarray], float],
    *,
    draws: int = 2000,
    seed: int = 0,
) -> dict:
    """How much a dataset-level score changed between two models scored on the same images, and how surely.

    The images are resampled with replacement, the same draw for both models (a paired
    bootstrap); each draw sums the drawn images' confusion matrices and scores the two sums.

    Args:
        before: Per-image K x K confusion matrices of the first model.
        after: The second model's, for the same images in the same order.
        score: A summed matrix -> the score (e.g. its mIoU).
        draws: Bootstrap draws.
        seed: Seed of the draws.

    Returns:
        ``delta`` (after - before on all images), ``low`` and ``high`` (the 2.5 and 97.5
        percentiles of the resampled deltas), ``p_gain`` (share of draws in which the score
        rose), ``images`` and ``draws``.
    """
    a, b = _stacks(before, after)
    deltas = _resampled_deltas(a, b, score, np.random.default_rng(seed), draws)
    return _summary(score(b.sum(0)) - score(a.sum(0)), deltas, images=len(a))


def pooled_paired_bootstrap(
    pairs: Sequence[tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
    score: Callable[[np.ndarray], float],
    *,
    ids: Sequence[Sequence[str]] | None = None,
    draws: int = 2000,
    seed: int = 0,
) -> dict:
    """The mean change over several experiments (e.g. a fine-tune repeated with other seeds), and how surely.

    Two things vary from one experiment to the next: the photos it is scored on and the experiment
    itself (another fine-tune). Every draw resamples both, as a bootstrap over two crossed factors
    does (Owen, "The pigeonhole bootstrap", Ann. Appl. Stat. 2007): the experiments with replacement,
    and the photos. With ``ids`` the photos are drawn once per draw from all the experiments' photos
    together, and each drawn experiment sums the drawn photos it scored, so that experiments sharing
    photos share their luck; without, each drawn experiment resamples its own photos, as
    :func:`paired_bootstrap` does (right only when the experiments' photos are distinct). With one
    experiment, the result is :func:`paired_bootstrap`'s.

    Args:
        pairs: Per experiment, the (before, after) per-image matrices.
        score, draws, seed: As :func:`paired_bootstrap`.
        ids: Per experiment, the photo of each of its matrices (distinct within an experiment).

    Returns:
        As :func:`paired_bootstrap`, ``delta`` being the mean of the experiments' changes, plus
        ``runs`` (how many), ``rose`` (how many of them rose) and ``images`` (per experiment).

    Raises:
        ValueError: No experiments, unequal stacks, or ``ids`` that do not match the matrices.
    """
    if not pairs:
        raise ValueError("no experiments to pool")
    stacks = [_stacks(before, after) for before, after in pairs]
    changes = [score(b.sum(0)) - score(a.sum(0)) for a, b in stacks]
    rows = None if ids is None else _photo_rows(ids, [len(a) for a, _ in stacks])
    photos = 0 if rows is None else 1 + max(int(r.max()) for r in rows)
    flats = [(a.reshape(len(a), -1), b.reshape(len(b), -1)) for a, b in stacks]
    k, runs = stacks[0][0].shape[1], len(stacks)
    rng = np.random.default_rng(seed)
    deltas = np.full(draws, np.nan)
    for d in range(draws):
        drawn = rng.integers(0, runs, runs) if runs > 1 else np.zeros(1, dtype=int)
        counts = None if rows is None else np.bincount(rng.integers(0, photos, photos), minlength=photos)
        cache: dict[int, float] = {}
        found = []
        for r in drawn:
            flat_a, flat_b = flats[r]
            if counts is None:
                weights = np.bincount(rng.integers(0, len(flat_a), len(flat_a)), minlength=len(flat_a))
            elif r in cache:
                found.append(cache[r])
                continue
            else:
                weights = counts[rows[r]]
            if not weights.any():  # none of this experiment's photos was drawn
                continue
            change = score((weights @ flat_b).reshape(k, k)) - score((weights @ flat_a).reshape(k, k))
            cache[r] = change
            found.append(change)
        if found:
            deltas[d] = np.mean(found)
    rose = sum(change > 0 for change in changes)
    return _summary(
        float(np.mean(changes)), deltas[np.isfinite(deltas)], runs=runs, rose=rose, images=[len(a) for a, _ in stacks]
    )


def _photo_rows(ids: Sequence[Sequence[str]], lengths: list[int]) -> list[np.ndarray]:
    """Each experiment's photos as indices into all the experiments' photos together."""
    if len(ids) != len(lengths):
        raise ValueError(f"ids for {len(ids)} experiments, matrices for {len(lengths)}")
    for photo_ids, length in zip(ids, lengths):
        if len(photo_ids) != length or len(set(photo_ids)) != length:
            raise ValueError(f"{len(photo_ids)} ids ({len(set(photo_ids))} distinct) for {length} matrices")
    index = {photo: i for i, photo in enumerate(sorted({str(p) for photo_ids in ids for p in photo_ids}))}
    return [np.array([index[str(p)] for p in photo_ids], dtype=np.int64) for photo_ids in ids]


def matrix_score(model_set: LabelSet | str, gt_set: LabelSet | str, key: str = "miou") -> Callable[[np.ndarray], float]:
    """A function scoring a summed confusion matrix as :func:`evaluate_checkpoint` scores it (``key`` of
    :meth:`ssfnet.metrics.ConfusionMatrix.compute`), for a model in ``model_set`` and ground truth in ``gt_set``."""
    model_set, gt_set = get_label_set(model_set), get_label_set(gt_set)
    mapping = None if gt_set is model_set else eval_mapping(model_set, gt_set)

    def score(matrix: np.ndarray) -> float:
        cm = ConfusionMatrix(gt_set.num_classes, mapping=mapping, label_set=gt_set)
        cm.merge(matrix)
        return cm.compute()[key]

    return score


def spread(length: int, limit: int | None) -> np.ndarray:
    """Indices of at most ``limit`` items evenly spread over ``length`` (all of them without a limit)."""
    if limit is None or limit >= length:
        return np.arange(length)
    return np.unique(np.linspace(0, length - 1, limit).round().astype(int))


# Extra IoUs some ground-truth sets add to ConfusionMatrix.compute() (key, table label).
SUMMARY_IOUS = (("person_iou", "person IoU"), ("head_iou", "head IoU"))


def per_class_table(metrics: dict, names: tuple[str, ...]) -> list[dict]:
    """One row per class of the ground-truth set: name, IoU (None if absent), whether it is scored."""
    scored = set(metrics["scored_classes"])
    return [{"class": name, "iou": metrics["iou"][k], "scored": k in scored} for k, name in enumerate(names)]


def format_table(metrics: dict, names: tuple[str, ...]) -> str:
    """The per-class IoU table and the summary numbers as text."""
    width = max(len(n) for n in names) + 2
    lines = [f"{'class':<{width}}{'IoU':>8}"]
    for row in per_class_table(metrics, names):
        value = "-" if row["iou"] is None else f"{row['iou']:.2f}"
        note = "" if row["scored"] else "  (not scored)"
        lines.append(f"{row['class']:<{width}}{value:>8}{note}")
    lines.append(f"{'mIoU':<{width}}{metrics['miou']:>8.2f}")
    if metrics.get("miou_present", metrics["miou"]) != metrics["miou"]:
        # A class predicted but absent from every ground-truth map scores 0 in the mIoU above.
        lines.append(f"{'mIoU, classes in GT':<{width}}{metrics['miou_present']:>8.2f}")
    lines.append(f"{'pixel acc':<{width}}{metrics['pixel_acc']:>8.2f}")
    lines.append(f"{'mean acc':<{width}}{metrics['mean_acc']:>8.2f}")
    for key, label in SUMMARY_IOUS:
        if key in metrics:
            value = "-" if metrics[key] is None else f"{metrics[key]:.2f}"
            lines.append(f"{label:<{width}}{value:>8}")
    return "\n".join(lines)


def held_out_ids(split_file: str | Path, spec_text: str) -> list[str]:
    """The validation ids a training run's ``split.json`` lists for a source."""
    split = json.loads(Path(split_file).read_text())
    spec = parse_source(spec_text)
    path = str(Path(spec.path).resolve())
    for source in split["sources"]:
        if source["kind"] == spec.kind and source["path"] == path and source.get("split") == spec.split:
            return list(source["val_ids"])
    raise ValueError(f"{split_file} lists no source {spec.kind}:{path}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m train.evaluate",
        description="Evaluate a human-parsing checkpoint.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint folder")
    p.add_argument("--data", action="append", required=True, help="source KIND:PATH (repeat for several)")
    p.add_argument(
        "--gt-label-set",
        default=None,
        help="label set of the ground truth (default: the model's); scored through eval_mapping",
    )
    p.add_argument("--split", default=None, help="a run's split.json: score only the ids it held out")
    p.add_argument("--multiscale", action="store_true", help="average the scales of --scales")
    p.add_argument("--flip", action="store_true", help="also average the mirrored image")
    p.add_argument("--scales", type=float, nargs="+", default=[0.75, 1.0, 1.25])
    p.add_argument("--input-size", type=int, default=None, help="longer side at scale 1 (default: the checkpoint's)")
    p.add_argument("--limit", type=int, default=None, help="score at most this many images per source")
    p.add_argument("-b", "--batch-size", type=int, default=4)
    p.add_argument("--device", default=None, help="cpu, cuda (default: CUDA when available)")
    p.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="bf16 autocast (auto: on CUDA and on CPUs with native bf16) or fp32",
    )
    p.add_argument("--out", default=None, help="folder for metrics.json and confusion.png")
    return p.parse_args(argv)


def score_fields(metrics: dict, names: tuple[str, ...]) -> dict:
    """The scores a result records: mIoU (over all classes and over those present), accuracies, per class."""
    return {
        "miou": metrics["miou"],
        "miou_present": metrics["miou_present"],
        "pixel_acc": metrics["pixel_acc"],
        "mean_acc": metrics["mean_acc"],
        **{key: metrics[key] for key, _ in SUMMARY_IOUS if key in metrics},
        "per_class": per_class_table(metrics, names),
    }


def _report(result: dict, metrics: dict, names: tuple[str, ...], seconds: float, out: str | Path | None) -> None:
    """Print the table of ``result``; with ``out``, write ``metrics.json`` and ``confusion.png`` there."""
    print(format_table(metrics, names))
    print(f"{result['images']} images in {seconds:.1f} s")
    if not out:
        return
    out = Path(out)
    write_json(out / "metrics.json", result)
    mode = {(True, True): "multi-scale + flip", (True, False): "multi-scale", (False, True): "single-scale + flip"}
    plot_results(
        np.asarray(result["matrix"]),
        metrics,
        names,
        out / "confusion.png",
        title=f"{Path(result['checkpoint']).name} on {', '.join(result['data'])} "
        f"({mode.get((result['multiscale'], result['flip']), 'single-scale')})",
    )
    print(f"wrote {out / 'metrics.json'} and {out / 'confusion.png'}")


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: list[str],
    *,
    gt_label_set: str | None = None,
    split: str | Path | None = None,
    multiscale: bool = False,
    flip: bool = False,
    scales: tuple[float, ...] = (0.75, 1.0, 1.25),
    input_size: int | None = None,
    limit: int | None = None,
    batch_size: int = 4,
    device: str | None = None,
    precision: str = "auto",
    out: str | Path | None = None,
    progress: bool = True,
    per_image: bool = False,
) -> dict:
    """Score a checkpoint on labelled sources; the result dict is also written to ``out/metrics.json``.

    Args:
        checkpoint: Checkpoint folder.
        data: Sources ``KIND:PATH``.
        gt_label_set: Label set of the ground truth (default: the model's), scored through
            :func:`ssfnet.labels.eval_mapping`.
        split: A run's ``split.json``: score only the ids it held out.
        multiscale: Average ``scales``.
        flip: Also average the mirrored image.
        scales: Scales of multi-scale testing.
        input_size: Longer side at scale 1 (default: the checkpoint's).
        limit: Score at most this many images per source (an even spread).
        batch_size: Images per predictor call.
        device: ``cpu``, ``cuda`` (default: CUDA when available).
        precision: ``auto``, ``bf16`` or ``fp32``.
        out: Folder for ``metrics.json`` and ``confusion.png`` (nothing written if None).
        progress: Show progress bars.
        per_image: Also return ``per_image``: each scored image's K x K matrix, in scoring
            order (not written to ``metrics.json``).

    Returns:
        mIoU, pixel and mean accuracy, per-class IoU, the confusion matrix and what was scored.
    """
    sized = {"input_size": input_size} if input_size else {}
    predictor = load_predictor(checkpoint, device, precision=precision, scales=tuple(scales), **sized)
    model_set = predictor.label_set
    gt_set = get_label_set(gt_label_set) if gt_label_set else model_set
    mapping = None if gt_set is model_set else eval_mapping(model_set, gt_set)
    total = ConfusionMatrix(gt_set.num_classes, mapping=mapping, label_set=gt_set)
    began = time.perf_counter()
    images = 0
    matrices: list[np.ndarray] | None = [] if per_image else None
    for text in data:
        ids = held_out_ids(split, text) if split else None
        cm, size = score_source(
            predictor, text, gt_set, ids, multiscale=multiscale, flip=flip, batch_size=batch_size, limit=limit,
            progress=progress, per_item=matrices,
        )  # fmt: skip
        total.merge(cm)
        images += len(spread(size, limit))
    seconds = time.perf_counter() - began
    metrics = total.compute()
    result = {
        "checkpoint": str(checkpoint),
        "data": list(data),
        "split": None if split is None else str(split),
        "images": images,
        "model_label_set": model_set.name,
        "gt_label_set": gt_set.name,
        "mapping": None if mapping is None else f"{model_set.name} -> {gt_set.name}",
        "multiscale": multiscale,
        "flip": flip,
        "scales": list(predictor.scales) if multiscale else [1.0],
        "input_size": predictor.input_size,
        "device": str(predictor.device),
        "seconds": round(seconds, 2),
        **score_fields(metrics, gt_set.names),
        "matrix": total.matrix.tolist(),
    }
    _report(result, metrics, gt_set.names, seconds, out)
    return result if matrices is None else {**result, "per_image": matrices}


def evaluate_args(args: argparse.Namespace) -> dict:
    """:func:`evaluate_checkpoint` as the command line ``args`` describe it; its result."""
    return evaluate_checkpoint(
        args.checkpoint,
        args.data,
        gt_label_set=args.gt_label_set,
        split=args.split,
        multiscale=args.multiscale,
        flip=args.flip,
        scales=tuple(args.scales),
        input_size=args.input_size,
        limit=args.limit,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        out=args.out,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m train.evaluate``: score the checkpoint ``argv`` names; the exit status."""
    evaluate_args(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
