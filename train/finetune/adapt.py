"""The fine-tune's settings chosen from what it sees: how its base parses the corrections.

The evaluation before training scores the base on the corrections (held out and trained on: the
base has seen none of them). Their mIoU against the base's own validation figure is a measure of
how far the corrections lie from the photos the base knows, and
:func:`train.finetune.defaults.choose_settings` turns it, with the number of corrections, into the
corrections' share of every batch and the share of the change published. Options the user gave
stay as given. The choice is said in one line, written to ``finetune.json`` and recorded in the new
checkpoint's metadata (``finetune.settings``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ..utils import write_json
from .data import FinetuneRun, Plan, trainer_data
from .defaults import Choice, choose_settings, reference_miou
from .status import PLAN_FILE

# The evaluation sets whose images are corrections the base has never trained on.
CORRECTION_SETS = ("held_out_corrections", "train_corrections")


def corrections_miou(before: dict) -> tuple[float | None, int]:
    """The base's mIoU on the corrections scored before training (each set weighted by its images), and how many."""
    scored = [before[n] for n in CORRECTION_SETS if before.get(n) and before[n].get("images")]
    images = sum(m["images"] for m in scored)
    if not images:
        return None, 0
    return sum(m["miou"] * m["images"] for m in scored) / images, images


def base_reference(base_meta: dict, before: dict) -> tuple[float | None, str]:
    """The base's validation mIoU from its metadata (:func:`~train.finetune.defaults.reference_miou`);
    without one, its score on the original validation photos in this run's evaluation."""
    value, where = reference_miou(base_meta)
    if value is not None:
        return value, where
    original = before.get("original_val") or {}
    if original.get("images"):
        return float(original["miou"]), "original validation photos scored here"
    return None, ""


def adapt_settings(
    run: FinetuneRun, plan: Plan, before: dict, say: Callable[[str], None]
) -> tuple[FinetuneRun, Plan, Choice]:
    """The run and plan with the share and blend chosen from ``before`` (the base's scores), and the choice.

    The trainer's mix is written again when the share changes; ``finetune.json`` records the choice.
    """
    config = run.config
    measured, images = corrections_miou(before)
    reference, where = base_reference(run.base_meta, before)
    trained_on = sum(len(c.train_ids) for c in plan.corrections)
    originals = sum(len(o.train_ids) for o in plan.originals)
    choice = choose_settings(
        measured,
        reference,
        corrections=trained_on,
        originals=originals,
        reference=where,
        share=config.corrections_share,
        blend=config.blend,
    )
    say(choice.reason + (f" (from {images} corrections scored)" if images else ""))
    data, share = trainer_data(plan.corrections, plan.originals, choice.corrections_share, run.run_dir / "sources")
    record = dict(plan.record)
    record["mix"] = dict(record["mix"], corrections_share=share, trainer_data=[d.to_record() for d in data])
    record["settings"] = choice.to_dict()
    write_json(run.run_dir / PLAN_FILE, record)
    config = dataclasses.replace(config, corrections_share=choice.corrections_share, blend=choice.blend)
    run = dataclasses.replace(run, config=config)
    return run, dataclasses.replace(plan, data=data, share=share, record=record), choice
