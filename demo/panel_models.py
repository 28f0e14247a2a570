"""Handlers of the checkpoints on offer: the model status, the checkpoint lists and the comparison of two models."""

from __future__ import annotations

import gradio as gr

from ssfnet import CheckpointError
from ssfnet.io import overlay

from .context import AppContext
from .finetune_runner import agreement
from .models import run_predictor
from .paths import page_roots, shown_text
from .widgets import hidden_set, mistake, require


class ModelHandlers:
    """The checkpoints of the app ``app``."""

    def __init__(self, app: AppContext) -> None:
        self.app = app
        self.roots = page_roots(app.settings)  # the page names folders relative to these

    def model_status(self) -> str:
        """The device, and what is wrong with the checkpoints, if anything."""
        predictors = self.app.predictors
        problem = predictors.problem()
        device = f"Device: **{predictors.device_description()}**."
        broken = predictors.unusable_note()
        if problem:
            text = f"⚠️ **{problem}** You can still label photos by hand and reopen saved corrections. {device} {broken}"
        else:
            text = f"{device} {broken}".strip()
        return shown_text(text, self.roots)

    def choices(self, *picks) -> tuple[list[tuple[str, str]], list[str | None]]:
        """The checkpoints on offer now, and each pick kept while it is one of them (else the default)."""
        choices = self.app.predictors.choices()
        folders = [folder for _, folder in choices]
        default = folders[0] if folders else None
        return choices, [pick if pick in folders else default for pick in picks]

    def refresh_checkpoints(self, current) -> dict:
        """Re-scan the checkpoints folder (new fine-tuned checkpoints appear without a restart)."""
        choices, (value,) = self.choices(current)
        ui = self.app.ui
        return {ui.checkpoint: gr.Dropdown(choices=choices, value=value), ui.model_md: self.model_status()}

    def compare_choices(self, first, second) -> dict:
        """Offer the current checkpoints in both comparison lists (keeping the picks that still exist)."""
        choices = self.app.predictors.choices()
        folders = [folder for _, folder in choices]
        first = first if first in folders else (folders[0] if folders else None)
        second = second if second in folders else (folders[1] if len(folders) > 1 else first)
        ui = self.app.ui
        return {
            ui.compare_a: gr.Dropdown(choices=choices, value=first),
            ui.compare_b: gr.Dropdown(choices=choices, value=second),
        }

    def compare(self, session, first, second, multiscale, flip, opacity, hidden) -> dict:
        """Parse the current photo with two checkpoints and show both proposals side by side."""
        predictors = self.app.predictors
        session = require(session)
        pictures, notes = [], []
        for choice in (first, second):
            try:
                predictor = predictors.get(predictors.resolve(choice))
            except (FileNotFoundError, CheckpointError) as err:
                raise mistake(shown_text(f"Cannot compare: {err}", self.roots)) from None
            labels = run_predictor(predictor, session.image, bool(multiscale), bool(flip))
            hide = frozenset(hidden_set(hidden))
            pictures.append(overlay(session.image, labels, predictor.label_set, alpha=float(opacity), hidden=hide))
            if predictor.label_set.name == session.label_set.name:
                share = agreement(labels, session.labels, session.label_set)
                notes.append(f"`{predictor.name}` agrees with the current labels on **{share:.1f}%** of the pixels")
            else:
                notes.append(f"`{predictor.name}` predicts {predictor.label_set.name}, not {session.label_set.name}")
        ui = self.app.ui
        return {ui.compare_view_a: pictures[0], ui.compare_view_b: pictures[1], ui.compare_md: "; ".join(notes) + "."}
