"""What a fine-tune's time budget buys on this server, told in the form before starting it.

A fine-tune's budget covers its start, the evaluation before training, the one after and publishing;
the evaluations get a share sized to the budget and training the rest (:mod:`train.finetune.budget`).
How many images fit in that share depends on this machine, on the base (the model scored) and on
the images there are to score, so the page estimates it from the newest run here that recorded its
timings (``timing.json``, of the same base where one is): its start-up, its model loading and its
scoring time per image, for the images the next run would have (the held-out corrections, the
trained-on ones up to that run's cap, and the base's original validation photos as that run had
them). Without a run timed here it says the rule alone. No budget of a minute or more is refused
for lack of time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ssfnet.data.corrections import list_corrections, photo_of
from train.finetune.budget import EVAL_SHARE, MIN_BUDGET_MINUTES, Forecast, Timing, forecast, read_timing
from train.finetune.defaults import HOLDOUT

if TYPE_CHECKING:
    from .context import AppContext

# Run folders looked at, newest first (their names start with a UTC time stamp).
_RUNS_READ = 20


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


def available_images(photos: int, holdout: float, timing: Timing | None, same_base: bool) -> dict[str, int]:
    """The images a fine-tune on ``photos`` corrected photos would have to score, per evaluation set.

    The held-out photos (their expected share, at least one of two or more), the trained-on ones up
    to the cap ``timing``'s run had, and the original validation photos that run had when it was of
    the same base (the base's training data); an estimate, as the held-out choice is by hash.
    """
    held = 0 if photos < 2 or holdout <= 0 else min(photos - 1, max(1, round(holdout * photos)))
    trained = photos - held
    if timing is not None and timing.val_max_images is not None:
        trained = min(trained, timing.val_max_images)
    originals = timing.available.get("original_val", 0) if timing is not None and same_base else 0
    return {"held_out_corrections": held, "original_val": originals, "train_corrections": trained}


def budget_forecast(
    runs_dir: str | Path, base: str | None, photos: int, holdout: float, minutes: float
) -> tuple[Forecast, str] | None:
    """What ``minutes`` buy a fine-tune of ``base`` (a checkpoint folder name) on ``photos`` corrected
    photos, ``holdout`` of them held out, with the timings of the newest run here (and its name);
    None when no run here has timed its evaluation yet."""
    measured = newest_timing(runs_dir, base)
    if measured is None:
        return None
    run, timing = measured
    per_image = max(0.0, timing.eval_s - timing.load_s) / max(1, timing.scored)
    available = available_images(photos, holdout, timing, same_base=timing.base == base)
    return forecast(minutes, timing.setup_s, timing.load_s, per_image, available), run


def form_forecast(app: AppContext, base, holdout, minutes) -> tuple[Forecast, str] | None:
    """:func:`budget_forecast` for the fine-tune form of ``app``: its base (a choice of the checkpoint list),
    held-out share and budget, on the photos saved now (each photo once, as a fine-tune counts them)."""
    try:
        name = app.predictors.folder(base).name if base else None
    except (FileNotFoundError, OSError):
        name = None  # a base no longer offered: start() says so
    try:
        share = float(holdout)
    except (TypeError, ValueError):
        share = HOLDOUT
    try:
        minutes = max(MIN_BUDGET_MINUTES, float(minutes))
    except (TypeError, ValueError):
        minutes = 10.0
    photos = len({photo_of(meta) for meta in list_corrections(app.corrections_dir)})
    return budget_forecast(app.settings.runs_dir, name, photos, share, minutes)


def budget_label(longest: int, estimate: tuple[Forecast, str] | None) -> str:
    """The budget box's label: the budgets allowed and what the one in the box buys here."""
    allowed = f"Time budget (minutes, {MIN_BUDGET_MINUTES:g} to {longest})"
    if estimate is None:
        return (
            f"{allowed}: training gets most of it; the evaluations before and after score as many images as "
            f"fit in {EVAL_SHARE:.0%} of it, the held-out corrections first (what it buys here shows once a "
            "fine-tune here has timed its evaluation)"
        )
    buys, run = estimate
    images = buys.images
    scored = [f"{images['held_out_corrections']} held-out corrections"]
    if buys.available.get("original_val"):
        scored.append(f"{images['original_val']} validation photos")
    if images.get("train_corrections"):
        scored.append(f"{images['train_corrections']} corrections trained on")
    return (
        f"{allowed}. {buys.minutes:g} min: about {buys.train_minutes:g} min of training, scoring "
        f"{' + '.join(scored)} (as {run} timed them)"
    )
