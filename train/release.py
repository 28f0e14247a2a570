"""Publish a training run's best weights as a shipped checkpoint, scored on every held-out source.

    python -m train.release --run runs/default-s1 --out checkpoints/ssfnet_lite0-lip20
    python -m train.release --run runs/default-s2 --out checkpoints/ssfnet_lite0-lip20 --multiscale

Each source the run trained on is scored on the photos its ``split.json`` held out, in the ground
truth's own label set: VITON in LIP-20 (mIoU), CCP in the CCP-coarse set ``fashion-17`` (mIoU),
PASCAL-Person-Part in ``person-head-3`` (person-vs-background IoU and head IoU) for a LIP-20
model, or in its own 7 parts for a body-part model. The checkpoint is written in fp16 shards of
under 10 MB with metadata naming the variant, label set, data and their terms, the hardware, the
cumulative training minutes over every run that led to it (runs that warm-start from a released
checkpoint add to its total) and the scores, plus a history of those scores per run from which
:func:`train.plots.plot_history` draws the model card's curve. An existing checkpoint at ``--out`` is replaced
only when the new one scores better on the sources' main figures (``--force`` overrides), both at the
inference size being released (a checkpoint shipped at another size is re-scored at this one); a run that
does not replace it is still recorded there, weights untouched, under ``training.unreleased``, so that
the curve shows every run that was scored and not only those that won.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ssfnet.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
    storage_dtype,
    verify_round_trip,
)
from ssfnet.data import parse_source
from ssfnet.labels import get_label_set
from ssfnet.predictor import Predictor

from .evaluate import held_out_ids, per_class_table, score_source
from .plots import plot_history
from .utils import hardware
from .wild import format_report, wild_report

# (model label set, source kind) -> the label set its ground truth is scored in.
SCORED_AS = {
    ("lip-20", "viton"): "lip-20",
    ("lip-20", "ccp"): "fashion-17",
    ("lip-20", "pascal-person-part"): "person-head-3",
    ("pascal-person-part-7", "pascal-person-part"): "pascal-person-part-7",
}
# The figure that stands for a source in comparisons and plots.
MAIN_FIGURE = {"fashion-17": "miou", "lip-20": "miou", "person-head-3": "person_iou", "pascal-person-part-7": "miou"}
TERMS = {
    "viton": "VITON: research use only",
    "ccp": "Clothing Co-Parsing (CCP): Apache-2.0",
    "pascal-person-part": "PASCAL-Person-Part (PASCAL VOC / Flickr photos): research use only",
}

# The training options a released checkpoint's metadata records as its recipe.
RECIPE_KEYS = (
    "crop_size",
    "batch_size",
    "lr",
    "optimizer",
    "head_lr_mult",
    "weight_decay",
    "scale_range",
    "copy_paste",
    "colour_jitter",
    "blur",
    "jpeg",
    "backbone_weights",
    "class_balance",
    "loss_at",
    "val_fraction",
    "split_seed",
    "part_loss_weight",
    "set_loss_weight",
    "region_sets",
)


def score_sources(
    predictor: Predictor,
    split_file: Path,
    specs: list[str],
    *,
    multiscale: bool = False,
    flip: bool = False,
    limit: int | None = None,
) -> dict[str, dict]:
    """Score ``predictor`` on each source's held-out ids.

    Returns:
        source kind -> ``{"label_set", "images", "miou", "pixel_acc", "per_class", ...}`` (and
        ``person_iou`` / ``head_iou`` for ``person-head-3``). Sources without a known scoring set
        for the model's labels are skipped with a message.
    """
    model_set = predictor.label_set
    results = {}
    for text in specs:
        kind = parse_source(text).kind
        gt_name = SCORED_AS.get((model_set.name, kind))
        if gt_name is None:
            print(f"note: no scoring of {kind} for a {model_set.name} model; skipped", file=sys.stderr)
            continue
        gt_set = get_label_set(gt_name)
        ids = held_out_ids(split_file, text)
        if not ids:
            continue
        options = {"multiscale": multiscale, "flip": flip, "limit": limit, "progress": False}
        cm, size = score_source(predictor, text, gt_set, ids, **options)
        metrics = cm.compute()
        row = {
            "label_set": gt_set.name,
            "images": min(size, limit) if limit else size,
            "miou": round(metrics["miou"], 2),
            "pixel_acc": round(metrics["pixel_acc"], 2),
            "per_class": {
                r["class"]: None if r["iou"] is None else round(r["iou"], 2)
                for r in per_class_table(metrics, gt_set.names)
                if r["scored"]
            },
        }
        for key in ("person_iou", "head_iou"):
            if key in metrics:
                row[key] = round(metrics[key], 2)
        row["main"] = row[MAIN_FIGURE[gt_set.name]]
        results[kind] = row
    return results


def extra_figures(
    predictor: Predictor, run: Path, specs: list[str], data_root: Path | None, limit: int | None = None
) -> dict:
    """Figures beyond the sources' own: everyday photos and the shortcut's proxies (:mod:`train.wild`),
    and, for a model with a body-part head, that head's 7-part mIoU on PASCAL's held-out photos."""
    figures = {}
    if data_root is not None and data_root.is_dir():
        figures.update(wild_report(predictor, data_root, pascal_limit=limit))
    pascal = [text for text in specs if parse_source(text).kind == "pascal-person-part"]
    if pascal and getattr(predictor.model, "part_head", None) is not None:
        parts = Predictor(
            predictor.model,
            predictor.label_set,
            device=predictor.device,
            input_size=predictor.input_size,
            output="parts",
            precision=predictor.precision,
        )
        ids = held_out_ids(run / "split.json", pascal[0])
        cm, size = score_source(parts, pascal[0], parts.label_set, ids, progress=False, limit=limit)
        images = min(size, limit) if limit else size
        figures["parts"] = {"label_set": parts.label_set.name, "images": images, "miou": round(cm.compute()["miou"], 2)}
    return figures


def run_minutes(run: Path) -> float:
    """Training minutes of a run folder (its ``summary.json``, else its last checkpoint's state)."""
    summary = run / "summary.json"
    if summary.is_file():
        return json.loads(summary.read_text())["elapsed_s"] / 60.0
    state = run / "last" / "training_state.json"
    if state.is_file():
        return json.loads(state.read_text())["state"]["elapsed"] / 60.0
    raise FileNotFoundError(f"{run} has neither summary.json nor last/training_state.json")


def resolve_init(run: Path, init: str) -> Path:
    """The folder a run warm-started from: as recorded, or relative to the folder the run was started in.

    Runs live in ``WORKDIR/runs/NAME`` and record ``--init-checkpoint`` as typed, often relative
    to ``WORKDIR`` (e.g. a separate git worktree the run was started from).
    """
    for candidate in (Path(init), run.resolve().parent.parent / init):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"{run} warm-started from {init}, which is not found (from here or {run.parent.parent})")


def prior_training(run: Path, out: Path | None = None) -> tuple[float, list[dict]]:
    """Minutes and history of everything before ``run``: 0 and [] if it started from scratch.

    A run may warm-start from a released checkpoint (its metadata carries the minutes and history)
    or from another run's ``last/`` or ``best/``: then that run's minutes count too, with what came
    before it, and the history comes from ``out`` when that run was released there.
    """
    config = json.loads((run / "config.json").read_text())
    init = config.get("init_checkpoint")
    if not init:
        return 0.0, []
    path = resolve_init(run, init)
    parent_run = path.parent
    if path.name in ("last", "best") and (parent_run / "config.json").is_file():
        minutes, history = prior_training(parent_run, out)
        minutes += run_minutes(parent_run)
        if out is not None and out.is_dir():
            try:
                training = read_metadata(out).get("training", {})
            except CheckpointError:
                training = {}
            released = with_machine(training)
            names = [h.get("run") for h in released]
            if parent_run.name in names:
                return minutes, released[: names.index(parent_run.name) + 1]
        # A run never released (a race run continued by this one) still trained these weights.
        return minutes, [*history, unreleased_entry(parent_run, minutes)]
    meta = read_metadata(path)
    training = meta.get("training", {})
    return float(training.get("cumulative_minutes", 0.0)), with_machine(training)


def unreleased_entry(run: Path, cumulative: float) -> dict:
    """A history entry for a run that was never released: where and how long it trained, no scores."""
    config = json.loads((run / "config.json").read_text())
    machine = run_machine(config, "not recorded")
    return {
        "run": run.name,
        "released": False,
        "hardware": machine["hardware"],
        "precision": machine["precision"],
        "minutes": round(run_minutes(run), 1),
        "cumulative_minutes": round(cumulative, 1),
        "scores": {},
        "recipe": {key: config.get(key) for key in RECIPE_KEYS},
    }


def run_machine(config: dict, unrecorded: str) -> dict:
    """The hardware and precision a run's ``config.json`` records (``unrecorded`` for runs from
    before the trainer recorded its machine)."""
    resolved = config.get("resolved", {})
    return {
        "hardware": resolved.get("hardware") or unrecorded,
        "precision": "bf16 autocast" if resolved.get("amp_bf16") else "fp32",
    }


def with_machine(training: dict) -> list[dict]:
    """A released checkpoint's history, each run with its hardware and precision.

    Runs released before each entry recorded its own machine ran on the checkpoint's.
    """
    machine = {k: training[k] for k in ("hardware", "precision") if k in training}
    return [{**machine, **entry} for entry in training.get("history", [])]


def summary(history: list[dict], key: str) -> str:
    """``key`` (hardware, precision) of every run: one value, or each value with the runs it holds for."""
    runs: dict[str, list[str]] = {}
    for entry in history:
        runs.setdefault(str(entry.get(key, "not recorded")), []).append(str(entry.get("run")))
    if len(runs) == 1:
        return next(iter(runs))
    return "; ".join(f"{value} ({', '.join(names)})" for value, names in runs.items())


def better(new: dict[str, dict], old: dict[str, dict]) -> bool:
    """True when the new scores' mean main figure beats the old one's over the sources both have."""
    common = [k for k in new if k in old]
    if not common:
        return True
    return sum(new[k]["main"] for k in common) > sum(old[k]["main"] for k in common)


def score_run(
    predictor: Predictor,
    run: Path,
    specs: list[str],
    multiscale: bool,
    limit: int | None,
    multiscale_limit: int | None,
) -> tuple[dict[str, dict], dict[str, dict] | None]:
    """Single-scale scores on ``run``'s held-out photos, and multi-scale + flip ones if ``multiscale``."""
    split = run / "split.json"
    scores = score_sources(predictor, split, specs, limit=limit)
    if not multiscale:
        return scores, None
    return scores, score_sources(predictor, split, specs, multiscale=True, flip=True, limit=multiscale_limit or limit)


def training_history(run: Path, out: Path, meta: dict, config: dict, size: int, scores: dict[str, dict]) -> list[dict]:
    """The shipped checkpoint's training history with ``run``'s entry last: where and how it trained, what it scored."""
    minutes = run_minutes(run)
    prior_minutes, history = prior_training(run, out)
    machine = run_machine(config, hardware())  # runs trained before it was recorded: here
    entry = {
        "run": run.name,
        "label_set": meta["label_set"],
        **machine,
        "minutes": round(minutes, 1),
        "cumulative_minutes": round(prior_minutes + minutes, 1),
        "iteration": meta.get("iteration"),
        # The scores below are at this inference size; a later run may ship at another one.
        "input_size": size,
        "scores": {k: {"label_set": v["label_set"], "main": v["main"]} for k, v in scores.items()},
        # Runs warm-started from one another may change the recipe (a lower learning rate, say):
        # each entry keeps its own, the top-level ``recipe`` is the latest run's.
        "recipe": {key: config.get(key) for key in RECIPE_KEYS},
    }
    return [*history, entry]


def shipped_metadata(out: Path) -> dict:
    """The metadata of the checkpoint ``out`` holds; empty when there is none or it is unreadable."""
    if not out.is_dir():
        return {}
    try:
        return read_metadata(out)
    except CheckpointError:
        return {}


def data_terms(specs: list[str]) -> list[str]:
    """The terms of use of the datasets ``specs`` name, in their order."""
    return [TERMS[kind] for kind in (parse_source(s).kind for s in specs) if kind in TERMS]


def training_record(config: dict, meta: dict, history: list[dict], unreleased: list[dict]) -> dict:
    """The checkpoint's ``training`` metadata; ``history`` ends with this run's entry."""
    return {
        "data": list(config["data"]),
        "data_terms": data_terms(config["data"]),
        "recipe": history[-1]["recipe"],
        "precision": summary(history, "precision"),
        "hardware": summary(history, "hardware"),
        "cumulative_minutes": history[-1]["cumulative_minutes"],
        "init_checkpoint": config.get("init_checkpoint"),
        "runs": len(history),
        "history": history,
        "unreleased": unreleased,
        "iteration": meta.get("iteration"),
    }


def metrics_record(config: dict, scores: dict, scores_ms: dict | None, extra: dict) -> dict:
    """The checkpoint's ``metrics``: the held-out scores (multi-scale + flip too, if scored) and ``extra``."""
    return {
        "split": "held-out photos of each source (split.json of the run, seed "
        f"{config.get('split_seed')}, fraction {config.get('val_fraction')})",
        "sources": scores,
        **({"sources_multiscale_flip": scores_ms} if scores_ms else {}),
        **extra,
    }


def shipped_baseline(
    out: Path, old_meta: dict, run: Path, specs: list[str], size: int, device: str, limit: int | None, *, force: bool
) -> tuple[dict | None, bool]:
    """The scores the run must beat (None: nothing shipped), and whether they were scored here.

    When the shipped weights parse at another size than ``size``, they are re-scored at ``size`` on
    ``run``'s held-out photos: comparing like with like keeps what the size alone changes from being
    credited to the run (or held against it).
    """
    old_scores = old_meta.get("metrics", {}).get("sources")
    old_size = old_meta.get("input_size")
    if old_scores is None or force or old_size is None or int(old_size) == size:
        return old_scores, False
    model, meta = load_checkpoint(out)
    shipped = Predictor(model, meta["label_set"], device=device, input_size=size, name=out.name)
    return score_sources(shipped, run / "split.json", specs, limit=limit), True


def plot_training(training: dict, path: str | Path, name: str) -> None:
    """The model card's curve: each run's validation score (released or not) by cumulative CPU minutes."""
    plot_history(
        training["history"],
        path,
        MAIN_FIGURE,
        title=f"{name}: validation by CPU minutes",
        unreleased=training.get("unreleased", []),
    )


@dataclass(frozen=True)
class ReleaseResult:
    """What :func:`release` did: the run's scores, what it had to beat, and the metadata it was given.

    Attributes:
        published: Whether the run's weights were written to the shipped folder.
        scores: Held-out scores per source, single scale.
        scores_multiscale: The same, multi-scale + flip (None unless asked for).
        extra: The figures beyond the sources' own (:func:`extra_figures`; empty if none).
        compared_with: The scores the run had to beat (None: nothing shipped there yet).
        rescored_shipped: Whether ``compared_with`` are the shipped weights re-scored at the run's input size.
        metadata: The checkpoint metadata written (or, not published, that would have been).
    """

    published: bool
    scores: dict[str, dict]
    scores_multiscale: dict[str, dict] | None
    extra: dict
    compared_with: dict | None
    rescored_shipped: bool
    metadata: dict


def release(
    run: str | Path,
    out: str | Path,
    *,
    checkpoint: str | Path | None = None,
    multiscale: bool = False,
    limit: int | None = None,
    multiscale_limit: int | None = None,
    input_size: int | None = None,
    force: bool = False,
    plot: str | Path | None = None,
    device: str = "cpu",
    data_root: str | Path | None = None,
    part_gate: bool = False,
) -> ReleaseResult:
    """Score a run's best checkpoint and, if it beats what ``out`` holds, write it there in fp16.

    Args:
        run: The training run folder (``config.json``, ``split.json``, ``best/``).
        out: The shipped checkpoint folder.
        checkpoint: Weights to publish (default ``run/best``).
        multiscale: Also score multi-scale + flip (slower).
        limit: Score at most this many held-out images per source.
        multiscale_limit: The same for the (six times slower) multi-scale + flip scores.
        input_size: Longer side at inference (default: the run's crop size).
        force: Replace ``out`` even if it scores better.
        plot: Where to draw the history curve (PNG), if anywhere.
        device: Where to score.
        data_root: The datasets folder, for :func:`extra_figures` (everyday photos, shortcut proxies).
        part_gate: For a model with a body-part head, whether it steers the classes at inference
            (:func:`ssfnet.parts.combine`); scored and recorded (``part_gate``) as chosen.

    Returns:
        What it did: ``compared_with`` are the scores the run had to beat, those of ``out``
        re-scored at ``input_size`` (``rescored_shipped``) when it was shipped at another size.
    """
    run, out = Path(run), Path(out)
    source = Path(checkpoint) if checkpoint else run / "best"
    model, meta = load_checkpoint(source)
    config = json.loads((run / "config.json").read_text())
    size = input_size or int(meta.get("input_size", config["crop_size"]))
    predictor = Predictor(model, meta["label_set"], device=device, input_size=size, name=out.name, part_gate=part_gate)
    specs = list(config["data"])
    scores, scores_ms = score_run(predictor, run, specs, multiscale, limit, multiscale_limit)
    extra = extra_figures(predictor, run, specs, None if data_root is None else Path(data_root), limit)
    history = training_history(run, out, meta, config, size, scores)
    old_meta = shipped_metadata(out)
    unreleased = [u for u in old_meta.get("training", {}).get("unreleased", []) if u.get("run") != run.name]
    baseline, rescored = shipped_baseline(out, old_meta, run, specs, size, device, limit, force=force)
    published = force or baseline is None or better(scores, baseline)
    metadata = {
        "input_size": size,
        **({"part_gate": part_gate} if getattr(model, "part_head", None) is not None else {}),
        "training": training_record(config, meta, history, unreleased),
        "metrics": metrics_record(config, scores, scores_ms, extra),
        "data_terms": "; ".join(data_terms(config["data"])),
    }
    if published:
        write_shipped(model, out, meta, metadata, torch.float16)
        shipped = metadata["training"]
    else:
        against = {k: v.get("main") for k, v in baseline.items()}
        lost = {**history[-1], "published": False, "scored_against": against, "scored_against_input_size": size}
        shipped = record_unreleased(out, unreleased + [lost])
    if plot:
        plot_training(shipped, plot, out.name)
    return ReleaseResult(
        published=published,
        scores=scores,
        scores_multiscale=scores_ms,
        extra=extra,
        compared_with=baseline,
        rescored_shipped=rescored,
        metadata=metadata,
    )


# Fields :func:`ssfnet.checkpoint.save_checkpoint` writes itself; the rest of a checkpoint's metadata
# (``created`` too: the weights are the ones written then) is carried over as it is.
_WRITTEN_BY_SAVE = (
    "format",
    "format_version",
    "name",
    "variant",
    "options",
    "num_classes",
    "label_set",
    "dtype",
    "parameters",
    "shards",
    "split_tensors",
)


def resize_shipped(
    run: str | Path,
    out: str | Path,
    input_size: int,
    *,
    multiscale: bool = False,
    limit: int | None = None,
    multiscale_limit: int | None = None,
    force: bool = False,
    device: str = "cpu",
) -> dict:
    """Re-score the weights shipped in ``out`` at another inference size and ship them at it if they gain.

    The weights and their training history stay as they are; ``input_size``, the scores (those of
    multi-scale + flip only when ``multiscale``, else they are dropped: they were taken at the old
    size) and a ``training.input_size_changes`` entry with the figures before and after change.

    Args:
        run: A run folder of the checkpoint's data (its ``config.json`` and ``split.json`` say which
            sources and which held-out photos to score).
        out: The shipped checkpoint folder.
        input_size: The longer side to parse at from now on.
        multiscale, limit, multiscale_limit, device: As for :func:`release`.
        force: Change the size even if the scores do not rise.

    Returns:
        ``{"changed": bool, "scores", "scores_multiscale", "before": the shipped scores, "metadata"}``.
    """
    run, out = Path(run), Path(out)
    model, meta = load_checkpoint(out)
    config = json.loads((run / "config.json").read_text())
    specs = list(config["data"])
    predictor = Predictor(model, meta["label_set"], device=device, input_size=input_size, name=out.name)
    scores, scores_ms = score_run(predictor, run, specs, multiscale, limit, multiscale_limit)
    before = meta.get("metrics", {}).get("sources") or {}
    changed = force or not before or better(scores, before)
    extra = {k: v for k, v in meta.items() if k not in _WRITTEN_BY_SAVE}
    if changed:
        training = extra.setdefault("training", {})
        training["input_size_changes"] = [
            *training.get("input_size_changes", []),
            {
                "from": meta.get("input_size"),
                "to": input_size,
                "date": _dt.date.today().isoformat(),
                "before": {k: v.get("main") for k, v in before.items()},
                "after": {k: v["main"] for k, v in scores.items()},
            },
        ]
        metrics = {k: v for k, v in extra.get("metrics", {}).items() if k != "sources_multiscale_flip"}
        extra["metrics"] = {**metrics, "sources": scores}
        if scores_ms:
            extra["metrics"]["sources_multiscale_flip"] = scores_ms
        extra["input_size"] = input_size
        write_shipped(model, out, meta, extra, storage_dtype(meta))
    return {"changed": changed, "scores": scores, "scores_multiscale": scores_ms, "before": before, "metadata": extra}


def record_unreleased(out: Path, unreleased: list[dict]) -> dict:
    """Set ``out``'s ``training.unreleased`` list of runs that did not beat it; the weights stay as they are.

    The folder is rewritten the way every checkpoint is written (aside, then renamed into place), with
    the same weights in the same storage type, so an interrupted write leaves the old folder whole.

    Returns:
        The ``training`` metadata now in ``out``.
    """
    model, meta = load_checkpoint(out)
    extra = {k: v for k, v in meta.items() if k not in _WRITTEN_BY_SAVE}
    training = {**extra.get("training", {}), "unreleased": unreleased}
    extra["training"] = training
    write_shipped(model, out, meta, extra, storage_dtype(meta))
    return training


def write_shipped(model: torch.nn.Module, out: Path, meta: dict, metadata: dict, dtype: torch.dtype | None) -> None:
    """Replace ``out`` with ``model`` (variant, label set and options from ``meta``) and load it back strictly."""
    save_checkpoint(
        model,
        out,
        variant=meta["variant"],
        label_set=meta["label_set"],
        options=meta.get("options", {}),
        metadata=metadata,
        dtype=dtype,
        overwrite=True,
    )
    # The round trip: the shipped weights load strictly (hashes, shapes, dtypes).
    verify_round_trip(out)


def format_scores(scores: dict[str, dict]) -> str:
    lines = []
    for kind, row in scores.items():
        extra = "".join(f"  {k} {row[k]:.2f}" for k in ("person_iou", "head_iou") if k in row)
        lines.append(f"{kind:20s} {row['label_set']:22s} {row['images']:5d} images  mIoU {row['miou']:.2f}{extra}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m train.release",
        description="Score a run's best weights on every held-out source and publish them as a checkpoint.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--run", required=True, help="training run folder")
    p.add_argument("--out", required=True, help="shipped checkpoint folder, e.g. checkpoints/ssfnet_lite0-lip20")
    p.add_argument("--checkpoint", default=None, help="weights to publish (default: RUN/best)")
    p.add_argument("--multiscale", action="store_true", help="also score multi-scale + flip")
    p.add_argument("--limit", type=int, default=None, help="score at most this many images per source")
    p.add_argument("--multiscale-limit", type=int, default=None, help="the same for multi-scale + flip")
    p.add_argument("--input-size", type=int, default=None, help="longer side at inference (default: crop size)")
    p.add_argument("--force", action="store_true", help="replace OUT even if it scores better")
    p.add_argument(
        "--resize-shipped",
        action="store_true",
        help="instead: re-score OUT's own weights at --input-size on RUN's held-out photos and ship them at "
        "that size if they score better there",
    )
    p.add_argument("--plot", default=None, help="PNG of the scores against cumulative minutes")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--data-root",
        default="../shared/datasets",
        help="datasets folder for the everyday-photo scores and shortcut proxies (train.wild); skipped if absent",
    )
    p.add_argument(
        "--part-gate",
        action="store_true",
        help="a model with a body-part head lets it steer the classes at inference (recorded in the checkpoint; "
        "default: the class output alone)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.resize_shipped:
        return resize_main(args)
    try:
        result = release(
            args.run,
            args.out,
            checkpoint=args.checkpoint,
            input_size=args.input_size,
            plot=args.plot,
            data_root=args.data_root,
            part_gate=args.part_gate,
            **scoring(args),
        )
    except (FileNotFoundError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("single scale:\n" + format_scores(result.scores))
    if result.scores_multiscale:
        print("multi-scale + flip:\n" + format_scores(result.scores_multiscale))
    if result.extra:
        print(format_report(result.extra))
    if "parts" in result.extra:
        print(f"body-part head on PASCAL held out: 7-part mIoU {result.extra['parts']['miou']:.2f}")
    training = result.metadata["training"]
    if result.rescored_shipped:
        size = result.metadata["input_size"]
        print(f"against the weights in {args.out} at input size {size}:\n" + format_scores(result.compared_with))
    print(f"cumulative training: {training['cumulative_minutes']} minutes over {training['runs']} run(s)")
    if result.published:
        print(f"published to {args.out}")
    else:
        print(f"not published: {args.out} scores better; the run is recorded there under training.unreleased")
    return 0


def scoring(args: argparse.Namespace) -> dict:
    """The options :func:`release` and :func:`resize_shipped` share, from the command line."""
    keys = ("multiscale", "limit", "multiscale_limit", "force", "device")
    return {key: getattr(args, key) for key in keys}


def resize_main(args: argparse.Namespace) -> int:
    """``--resize-shipped``: :func:`resize_shipped` from the command line."""
    if not args.input_size:
        print("error: --resize-shipped needs --input-size", file=sys.stderr)
        return 2
    try:
        result = resize_shipped(args.run, args.out, args.input_size, **scoring(args))
    except (FileNotFoundError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"at input size {args.input_size}, single scale:\n" + format_scores(result["scores"]))
    if result["scores_multiscale"]:
        print("multi-scale + flip:\n" + format_scores(result["scores_multiscale"]))
    if result["changed"]:
        print(f"{args.out} now parses at input size {args.input_size}")
    else:
        print(f"unchanged: {args.out} scores better at its own input size")
    return 0


if __name__ == "__main__":
    sys.exit(main())
