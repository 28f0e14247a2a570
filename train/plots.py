"""The tooling's plots: training curves, confusion matrices, fine-tune reports, release histories.

Each takes the data and the paths it reads and writes as arguments; matplotlib draws off-screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .utils import read_jsonl


def _pyplot():
    """matplotlib's pyplot on the off-screen backend (imported when a plot is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(out: Path) -> Path | None:
    """``curves.png``: training loss per iteration (raw and smoothed) and validation mIoU."""
    plt = _pyplot()
    log, val = read_jsonl(out / "log.jsonl"), read_jsonl(out / "val.jsonl")
    if not log:
        return None
    it = np.array([r["iteration"] for r in log])
    loss = np.array([r["loss"] for r in log])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(it, loss, color="0.75", lw=0.8, label="loss")
    if len(loss) > 5:
        window = max(3, len(loss) // 20)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax1.plot(it[window - 1 :], smooth, color="C0", label=f"mean of {window}")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("training loss (weighted sum of the heads)")
    ax1.legend()
    lr_ax = ax1.twinx()
    lr_ax.plot(it, [r["lr"] for r in log], color="C3", lw=0.8, alpha=0.6)
    lr_ax.set_ylabel("learning rate", color="C3")
    if val:
        ax2.plot([r["iteration"] for r in val], [r["miou"] for r in val], "o-", color="C2")
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("validation mIoU (%)")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_results(matrix: np.ndarray, metrics: dict, names: tuple[str, ...], path: str | Path, title: str = "") -> Path:
    """A PNG with the row-normalised confusion matrix and a per-class IoU bar chart."""
    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = matrix / matrix.sum(1, keepdims=True)
    k = len(names)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8 + 0.45 * k, 0.4 * k + 3), gridspec_kw={"width_ratios": [3, 2]})
    im = ax1.imshow(np.nan_to_num(normalised), cmap="Blues", vmin=0, vmax=1)
    ax1.set_xticks(range(k), names, rotation=90, fontsize=8)
    ax1.set_yticks(range(k), names, fontsize=8)
    ax1.set_xlabel("predicted")
    ax1.set_ylabel("ground truth")
    ax1.set_title("confusion (rows sum to 1)")
    fig.colorbar(im, ax=ax1, fraction=0.046, pad=0.04)
    ious = [v if v is not None else 0.0 for v in metrics["iou"]]
    scored = set(metrics["scored_classes"])
    colours = ["C0" if i in scored else "0.7" for i in range(k)]
    ax2.barh(range(k), ious, color=colours)
    ax2.axvline(metrics["miou"], color="C3", ls="--", label=f"mIoU {metrics['miou']:.1f}")
    ax2.set_yticks(range(k), names, fontsize=8)
    ax2.invert_yaxis()
    ax2.set_xlim(0, 100)
    ax2.set_xlabel("IoU (%)")
    ax2.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_report(report: dict, set_names: Sequence[str], log_file: Path, path: Path) -> Path:
    """A fine-tune's plot: mIoU before and after on each evaluation set, and the training loss.

    Args:
        report: With ``metrics.before`` and ``metrics.after``: set name -> ``{"miou", ...}`` or None.
        set_names: The sets to show, in order (those scored both times).
        log_file: The trainer's ``log.jsonl``.
        path: Where to write the PNG.
    """
    plt = _pyplot()
    before, after = report["metrics"]["before"], report["metrics"]["after"]
    names = [n for n in set_names if before.get(n) and after.get(n)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    x = np.arange(len(names))
    for offset, (label, values, colour) in zip((-0.2, 0.2), (("before", before, "0.6"), ("after", after, "C0"))):
        heights = [values[n]["miou"] for n in names]
        bars = ax1.bar(x + offset, heights, width=0.4, label=label, color=colour)
        ax1.bar_label(bars, fmt="%.1f", fontsize=8)
    ax1.set_xticks(x, [n.replace("_", "\n") for n in names], fontsize=8)
    ax1.set_ylabel("mIoU (%)")
    ax1.set_ylim(0, 100)
    ax1.legend()
    ax1.set_title("before / after fine-tuning")
    log = read_jsonl(log_file)
    if log:
        # Markers keep a short run (a few steps) visible.
        marker = "o" if len(log) < 30 else None
        ax2.plot([r["iteration"] for r in log], [r["loss"] for r in log], color="C1", lw=0.9, marker=marker, ms=3)
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("training loss")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def history_series(history: list[dict], figures: dict[str, str]) -> dict[str, tuple[list[float], list[float]]]:
    """One line per source and label set it was scored with: legend -> (cumulative minutes, scores).

    A model started from a checkpoint of another label set (a body-part model from the LIP-20
    default) carries that checkpoint's runs in its history; their scores measure something else
    (PASCAL person IoU, say, rather than its body-part mIoU) and get a line of their own.
    """
    series: dict[str, tuple[list[float], list[float]]] = {}
    for entry in history:
        for kind, score in sorted(entry["scores"].items()):
            label_set = score["label_set"]
            figure = figures[label_set].replace("_", " ").replace("miou", "mIoU").replace("iou", "IoU")
            xs, ys = series.setdefault(f"{kind} ({label_set} {figure})", ([], []))
            xs.append(entry["cumulative_minutes"])
            ys.append(score["main"])
    return series


def plot_history(
    history: list[dict],
    path: str | Path,
    figures: dict[str, str],
    title: str = "",
    unreleased: Sequence[dict] = (),
) -> Path:
    """Each source's main figure against cumulative training minutes, one point per released run.

    Args:
        history: Entries ``{"cumulative_minutes", "scores": {source: {"label_set", "main"}}}``.
        path: Where to write the PNG.
        figures: Label set -> the name of its main figure (e.g. ``miou``, ``person_iou``).
        title: Plot title.
        unreleased: Runs in the same form that were scored but not released (they scored lower
            than the checkpoint they started from); drawn as hollow markers in their source's colour.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    colours = {}
    for legend, (xs, ys) in sorted(history_series(history, figures).items()):
        (line,) = ax.plot(xs, ys, marker="o", label=legend)
        colours[legend] = line.get_color()
    hollow = {"ls": "none", "marker": "o", "mfc": "none", "ms": 7}
    for legend, (xs, ys) in sorted(history_series(list(unreleased), figures).items()):
        colour = colours.get(legend) or ax.plot([], [])[0].get_color()
        ax.plot(xs, ys, mec=colour, **hollow)
    if unreleased:
        ax.plot([], [], mec="0.4", label="scored, not released", **hollow)
    ax.set_xlabel("cumulative CPU training minutes")
    ax.set_ylabel("validation score (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
