"""The least time budget a fine-tune from the page needs on this server, worked out before starting it.

A fine-tune's budget covers its start, the evaluation before training, the one after and publishing;
training gets what is left, and ``train.finetune`` refuses to train when less than
:data:`train.finetune_budget.MIN_TRAIN_S` would be left. Those costs depend on this machine, on the
base (the model scored) and on how many images are scored, so the page estimates them from the
newest run here that recorded its timings (``timing.json``, of the same base where one is): its
start-up, its model loading and its scoring time per image, for the images the next run would
score (the held-out corrections, the trained-on ones up to that run's cap, and the base's original
validation images as that run scored them). The page shows that least budget in the form and
refuses a smaller one before starting. Without a run timed here it counts no start-up and no
evaluation: the least budget that could ever train.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ssfnet.data.corrections import list_corrections, photo_of
from train.finetune_budget import MIN_TRAIN_S, Timing, least_minutes, read_timing
from train.finetune_defaults import HOLDOUT

if TYPE_CHECKING:
    from .context import AppContext

# Run folders looked at, newest first (their names start with a UTC time stamp).
_RUNS_READ = 20


@dataclass(frozen=True)
class LeastBudget:
    """The least budget, in minutes, for ``images`` scored; ``run`` names the run folder whose timings
    it is estimated from (None: no run here has timed its evaluation yet)."""

    minutes: float
    images: int
    run: str | None = None


def newest_timing(runs_dir: str | Path, base: str | None) -> tuple[str, Timing] | None:
    """``(run folder name, timing)`` of the newest run in ``runs_dir`` that recorded one, preferring the
    newest of the base ``base`` (a folder name) among the latest runs; None when none did."""
    runs = sorted((p for p in Path(runs_dir).glob("finetune-*") if p.is_dir()), key=lambda p: p.name, reverse=True)
    newest = None
    for run in runs[:_RUNS_READ]:
        timing = read_timing(run)
        if timing is None:
            continue
        if timing.base == base:
            return run.name, timing
        newest = newest or (run.name, timing)
    return newest


def scored_images(photos: int, holdout: float, timing: Timing | None, same_base: bool) -> int:
    """How many images a fine-tune on ``photos`` corrected photos would score before training.

    The held-out photos (their expected share, at least one of two or more), the trained-on ones up
    to the cap ``timing``'s run had, and the original validation images that run scored when it was
    of the same base (the base's training data); an estimate, as the held-out choice is by hash.
    """
    held = 0 if photos < 2 or holdout <= 0 else min(photos - 1, max(1, round(holdout * photos)))
    trained = photos - held
    if timing is not None and timing.val_max_images is not None:
        trained = min(trained, timing.val_max_images)
    originals = timing.images.get("original_val", 0) if timing is not None and same_base else 0
    return held + trained + originals


def least_budget(runs_dir: str | Path, base: str | None, photos: int, holdout: float) -> LeastBudget:
    """The least budget (minutes) a fine-tune of ``base`` (a checkpoint folder name) on ``photos``
    corrected photos, ``holdout`` of them held out, needs here: less leaves no time to train.

    The same arithmetic as ``train.finetune`` refuses by (:func:`train.finetune_budget.least_minutes`
    with :data:`~train.finetune_budget.MIN_TRAIN_S` of training), on the timings of the newest run
    here (see the module's docstring).
    """
    measured = newest_timing(runs_dir, base)
    if measured is None:
        images = scored_images(photos, holdout, None, same_base=False)
        return LeastBudget(least_minutes(0.0, 0.0, train_s=MIN_TRAIN_S), images)
    run, timing = measured
    images = scored_images(photos, holdout, timing, same_base=timing.base == base)
    per_image = max(0.0, timing.eval_s - timing.load_s) / max(1, timing.scored)
    eval_s = timing.load_s + per_image * images
    return LeastBudget(least_minutes(timing.setup_s + eval_s, eval_s, train_s=MIN_TRAIN_S), images, run)


def form_least_budget(app: AppContext, base, holdout) -> LeastBudget:
    """The least budget for the fine-tune form of ``app``: its base (a choice of the checkpoint list)
    and held-out share, on the photos saved now (each photo once, as a fine-tune counts them)."""
    try:
        name = app.predictors.folder(base).name if base else None
    except (FileNotFoundError, OSError):
        name = None  # a base no longer offered: start() says so
    try:
        share = float(holdout)
    except (TypeError, ValueError):
        share = HOLDOUT
    photos = len({photo_of(meta) for meta in list_corrections(app.corrections_dir)})
    return least_budget(app.settings.runs_dir, name, photos, share)


def budget_label(longest: int, least: LeastBudget) -> str:
    """The budget box's label: the most the server allows and the least that trains here."""
    if least.run is None:
        return (
            f"Time budget (minutes, at most {longest}; at least {least.minutes:g}, more once a fine-tune "
            "here has timed its evaluation)"
        )
    return (
        f"Time budget (minutes, at most {longest}; at least {least.minutes:g} here to score "
        f"{least.images} images, as {least.run} timed them)"
    )


def too_small(minutes: float, least: LeastBudget) -> str | None:
    """Why ``minutes`` is refused before starting (a message for the page), or None."""
    if minutes >= least.minutes:
        return None
    if least.run is None:
        why = "publishing and the evaluations before and after training take at least that"
    else:
        why = (
            f"start-up, scoring {least.images} images before and after training and publishing take most "
            f"of that, as {least.run} timed them"
        )
    return (
        f"A fine-tune here needs at least {least.minutes:g} minutes (asked: {minutes:g}): {why}, and "
        "less would leave no time to train. Ask for more, or hold out fewer corrections, or score "
        "fewer images on the server (--finetune-args '--val-max-images N')."
    )
