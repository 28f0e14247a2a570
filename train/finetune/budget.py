"""A fine-tune's time budget: training gets most of it, the evaluations a share sized to it.

``--max-minutes`` covers the whole command: the start-up (interpreter, imports, reading the
corrections and sources), the evaluation before training, training, the evaluation after (planned
as :data:`EVAL_AFTER_FACTOR` times the first) and publishing. The budget belongs to training: both
evaluations together get :data:`EVAL_SHARE` of what the start-up leaves (:func:`evaluation_s`), and
the evaluation before scores as many images as fit in its part of that (:func:`before_deadline_s`),
the held-out corrections first, then the original sources' validation photos, then the corrections
trained on (:data:`SCORING_ORDER`), each time from the scoring time per image measured so far; the
evaluation after scores the same images. A budget of :data:`MIN_BUDGET_MINUTES` or more is never
refused for lack of time (:func:`budget_problem`). Each run records what its start-up and first
evaluation took in ``timing.json`` (:func:`write_timing`), so that the app can tell what a budget
buys before starting the next run (:func:`forecast`); like ``train.finetune.status`` it loads no torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ssfnet.files import atomic_write_bytes, json_bytes

# Reserved in a time budget, besides the second evaluation, for publishing (checkpoint, report,
# plot) and for the trainer's start and exit; and the least training time a run gets (a budget
# overrun by the start-up alone still trains this long rather than refuse).
PUBLISH_RESERVE_S = 10.0
MIN_TRAIN_S = 5.0
# The evaluation after training scores the same images as the one before: planned as long, with a margin.
EVAL_AFTER_FACTOR = 1.15
# Share of the budget, once the start-up is spent, that both evaluations get together. Training gets
# (1 - EVAL_SHARE) x (budget - start-up) - PUBLISH_RESERVE_S: 7.4 of 10 minutes with a 25 s start-up,
# and at least 70 % of any budget of 5 minutes or more whose start-up takes under 25 s.
EVAL_SHARE = 0.2
# The least budget asked for: below it the start-up (some 10-30 s on a 2-core CPU) is most of it.
MIN_BUDGET_MINUTES = 1.0
# The order in which a budget's evaluation scores its sets, as many images of each as fit: the
# held-out corrections (what the fine-tune is for), the original validation photos (forgetting),
# then the corrections trained on.
SCORING_ORDER = ("held_out_corrections", "original_val", "train_corrections")
TIMING_FILE = "timing.json"


def reserve_s(eval_s: float) -> float:
    """Seconds set aside after training: the evaluation after (``eval_s`` took the one before) and publishing."""
    return EVAL_AFTER_FACTOR * eval_s + PUBLISH_RESERVE_S


def budget_problem(minutes: float | None) -> str | None:
    """Why a budget of ``minutes`` is refused (None: it is not; None minutes is no budget)."""
    if minutes is None or minutes >= MIN_BUDGET_MINUTES:
        return None
    return (
        f"a fine-tune's time budget must be at least {MIN_BUDGET_MINUTES:g} minute (asked: {minutes:g}): "
        "starting the process and loading the model alone take some 10 to 30 seconds"
    )


def evaluation_s(budget_s: float, spent_s: float) -> float:
    """Seconds both evaluations (before and after training) get of a ``budget_s`` once ``spent_s`` are spent."""
    return EVAL_SHARE * max(0.0, budget_s - spent_s)


def before_deadline_s(budget_s: float, spent_s: float) -> float:
    """Seconds the evaluation before training (loading the model included) may take: its part of
    :func:`evaluation_s`, the one after being planned as :data:`EVAL_AFTER_FACTOR` times as long."""
    return evaluation_s(budget_s, spent_s) / (1.0 + EVAL_AFTER_FACTOR)


def training_s(budget_s: float, spent_s: float, eval_s: float) -> float:
    """Seconds of training a budget leaves once ``spent_s`` (start-up and the evaluation before, which
    took ``eval_s``) are spent and the evaluation after and publishing are set aside; at least
    :data:`MIN_TRAIN_S`."""
    return max(MIN_TRAIN_S, budget_s - spent_s - reserve_s(eval_s))


def images_that_fit(available: dict[str, int], seconds: float, per_image_s: float) -> dict[str, int]:
    """How many images of each set fit in ``seconds`` of scoring, in :data:`SCORING_ORDER`.

    Args:
        available: Images per evaluation set.
        seconds: Scoring time (model loading not included).
        per_image_s: Seconds an image takes to score.
    """
    left = max(0, int(seconds / per_image_s)) if per_image_s > 0 else sum(available.values())
    counts = {}
    for name in (*SCORING_ORDER, *(n for n in available if n not in SCORING_ORDER)):
        counts[name] = min(available.get(name, 0), left)
        left -= counts[name]
    return {name: counts[name] for name in available}


@dataclass(frozen=True)
class Forecast:
    """What a budget buys: minutes of training and the images of each set scored before and after."""

    minutes: float
    train_minutes: float
    images: dict[str, int]
    available: dict[str, int]


def forecast(minutes: float, setup_s: float, load_s: float, per_image_s: float, available: dict[str, int]) -> Forecast:
    """What a fine-tune of ``minutes`` would do with the start-up, model loading and scoring time per
    image of an earlier run, with ``available`` images per evaluation set (the arithmetic of
    :mod:`train.finetune`: :func:`before_deadline_s`, :func:`images_that_fit`, :func:`training_s`)."""
    budget_s = 60.0 * minutes
    scoring_s = before_deadline_s(budget_s, setup_s) - load_s
    images = images_that_fit(available, scoring_s, per_image_s)
    if not any(images.values()):  # the evaluation scores at least its first image, whatever the budget
        first = next((n for n in SCORING_ORDER if available.get(n)), None)
        images = {n: int(n == first) for n in available}
    eval_s = load_s + per_image_s * sum(images.values())
    train = training_s(budget_s, setup_s + eval_s, eval_s)
    return Forecast(minutes, round(train / 60, 1), images, dict(available))


@dataclass(frozen=True)
class Timing:
    """What a run's start-up and first evaluation took (``timing.json``).

    Args:
        base: The base checkpoint's folder name (the model scored).
        setup_s: Seconds from the command's start to the evaluation's.
        load_s: Seconds the evaluation spent loading the model.
        eval_s: Seconds the whole evaluation took (projected from its first images when it was
            stopped for leaving no time to train: ``projected``).
        images: Images scored per evaluation set (``held_out_corrections``, ``train_corrections``,
            ``original_val``).
        val_max_images: The cap on scored images per set that the run had (None: none).
        projected: Whether ``eval_s`` is a projection (runs before the budget sized the evaluation).
        available: Images each set had before the budget sized the evaluation (empty in runs
            before that: then ``images``).
    """

    base: str
    setup_s: float
    load_s: float
    eval_s: float
    images: dict[str, int] = field(default_factory=dict)
    val_max_images: int | None = None
    projected: bool = False
    available: dict[str, int] = field(default_factory=dict)

    @property
    def scored(self) -> int:
        return sum(self.images.values())


def write_timing(run_dir: Path, timing: Timing) -> None:
    atomic_write_bytes(Path(run_dir) / TIMING_FILE, json_bytes(dataclasses.asdict(timing)))


def read_timing(run_dir: Path) -> Timing | None:
    """The run's recorded timing; None when it has none or it is unreadable."""
    try:
        data = json.loads((Path(run_dir) / TIMING_FILE).read_text())
        timing = Timing(**data)
        images = {str(k): int(v) for k, v in dict(timing.images).items()}
        available = {str(k): int(v) for k, v in dict(timing.available).items()} or dict(images)
        numbers = [float(timing.setup_s), float(timing.load_s), float(timing.eval_s)]
    except (OSError, UnicodeDecodeError, ValueError, TypeError):
        return None
    if not all(math.isfinite(n) and n >= 0 for n in numbers) or min(images.values(), default=0) < 0:
        return None
    return dataclasses.replace(
        timing, setup_s=numbers[0], load_s=numbers[1], eval_s=numbers[2], images=images, available=available
    )
