"""The least time budget a fine-tune from the page needs on this server, as earlier fine-tunes here measured it.

A fine-tune's budget covers its start, the evaluation before training, the one after and publishing;
training gets what is left, and ``train.finetune`` refuses to start training when too little is
left, saying the least budget that would do ("Give at least 3.1 minutes"). Those costs depend on
this machine and on the images scored, so nothing but a run here measures them: the app reads that
least budget from the newest run folder that was refused, and offers and checks it before starting
another, so that a budget known to be too small is refused at once instead of a minute later. A
run that finished since (on a budget that sufficed) is newer knowledge: then no least budget is known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from train.finetune_status import REPORT_FILE, read_json

# How train.finetune words the least budget when it refuses one.
_LEAST = re.compile(r"give at least ([0-9]+(?:\.[0-9]+)?) minutes", re.IGNORECASE)
# Run folders looked at, newest first (their names start with a UTC time stamp).
_RUNS_READ = 20


@dataclass(frozen=True)
class LeastBudget:
    """The least budget, in minutes, and the run folder (its name) that measured it."""

    minutes: float
    run: str


def least_budget(runs_dir: str | Path) -> LeastBudget | None:
    """The least budget the newest refused fine-tune in ``runs_dir`` asked for; None when none is known.

    Runs without a report (running, or killed) are passed over; a finished run newer than the
    newest refused one means the budget that refused run asked for is out of date.
    """
    runs = sorted((p for p in Path(runs_dir).glob("finetune-*") if p.is_dir()), key=lambda p: p.name, reverse=True)
    for run in runs[:_RUNS_READ]:
        report = read_json(run / REPORT_FILE)
        if report is None:
            continue
        if report.get("status") == "finished":
            return None
        found = _LEAST.search(str(report.get("error") or ""))
        if report.get("status") == "failed" and found:
            return LeastBudget(float(found.group(1)), run.name)
    return None


def budget_label(longest: int, least: LeastBudget | None) -> str:
    """The budget box's label: the most the server allows and, when measured, the least that trains."""
    if least is None:
        return f"Time budget (minutes, at most {longest})"
    return f"Time budget (minutes, at most {longest}; at least {least.minutes:g} here, as {least.run} measured)"


def too_small(minutes: float, least: LeastBudget | None) -> str | None:
    """Why ``minutes`` is refused before starting (a message for the page), or None."""
    if least is None or minutes >= least.minutes:
        return None
    return (
        f"A fine-tune here needs at least {least.minutes:g} minutes (asked: {minutes:g}): start-up, the "
        f"evaluations before and after and publishing take most of that, as {least.run} measured, and "
        "less would leave no time to train. Ask for more, or score fewer images on the server "
        "(--finetune-args '--val-max-images N')."
    )
