"""The fine-tune panel: its layout and its events (the handlers are :mod:`demo.panel_finetune`'s)."""

from __future__ import annotations

import gradio as gr

from ssfnet.data.corrections import list_corrections
from train.finetune.defaults import HOLDOUT

from .context import AppContext
from .finetune_budget import budget_label, form_forecast
from .finetune_runner import status_html
from .panel_finetune import FinetuneHandlers

FINETUNE_HELP = """\
Fine-tune a checkpoint on the saved corrections (mixed with the original training data, if the
server has it) in a background process. A share of the corrections is held out and scored before
and after, with the original validation images, so both an improvement and any forgetting show.
The new checkpoint appears in the checkpoint lists when it is done (in `finetuned/`); the base
is never changed. A result that scores lower than the base on the corrections (those it trained on,
or the held-out ones) is not published unless you tick *Publish even if worse*. The budget is
training's: the scoring before and after gets a fifth of it and scores as many images as fit (the
held-out corrections first); the status says how many it scored and how long training got.
*Compare on a held-out correction* opens one of the corrections the fine-tune held out and compares
the base with the new checkpoint on it, before you switch to it.
"""


def finetune_panel(app: AppContext) -> None:
    """The fine-tune's options, buttons, status and log."""
    ui = app.ui
    with gr.Accordion("Fine-tune on saved corrections", open=False):
        gr.Markdown(FINETUNE_HELP)
        with gr.Row():
            ui.finetune_base = app.checkpoint_list("Base checkpoint", elem_id="finetune-base")
            longest = app.settings.finetune_max_minutes
            minutes = min(10, longest)
            ui.finetune_minutes = gr.Number(
                minutes,
                label=budget_label(longest, form_forecast(app, app.predictors.default(), HOLDOUT, minutes)),
                minimum=1,
                elem_id="finetune-minutes",
            )
            # A text box: a number box shows 0 when empty, and empty is what leaves the rate to the fine-tune.
            ui.finetune_lr = gr.Textbox(
                "",
                label="Learning rate (empty: a tenth of the rate the base was trained at)",
                placeholder="empty: a tenth of the base's rate",
                elem_id="finetune-lr",
            )
        with gr.Row():
            # 0 (the default) leaves the share and the blend to the fine-tune: it chooses them from how the
            # base parses the corrections (train.finetune.adapt) and says what it chose and why.
            ui.finetune_share = gr.Slider(
                0.0, 1.0, value=0.0, step=0.01, label="Corrections' share (0: chosen from how the base parses them)"
            )
            ui.finetune_holdout = gr.Slider(0.0, 0.5, value=HOLDOUT, step=0.05, label="Held out")
            ui.finetune_blend = gr.Slider(
                0.0, 1.0, value=0.0, step=0.05,
                label="Share of the change kept (1: the trained weights; less: nearer the base; 0: chosen "
                "with the share)",
            )  # fmt: skip
            ui.finetune_freeze = gr.Checkbox(False, label="Freeze the backbone (faster, less forgetting)")
            ui.finetune_anyway = gr.Checkbox(
                False,
                label="Publish even if worse (by default a result that scores lower than the base on the "
                "corrections, trained-on or held-out, is not published)",
                elem_id="finetune-anyway",
            )
            ui.finetune_approved = gr.Checkbox(
                False,
                label="Approved corrections only (photos whose latest correction was approved under Review)",
                elem_id="finetune-approved",
            )
        with gr.Row():
            ui.finetune_btn = gr.Button("Start fine-tuning", variant="primary", elem_id="finetune-start")
            ui.finetune_cancel_btn = gr.Button("Cancel", elem_id="finetune-cancel")
            ui.finetune_refresh_btn = gr.Button("Refresh", elem_id="finetune-refresh")
            ui.finetune_compare_btn = gr.Button("Compare on a held-out correction", elem_id="finetune-compare")
        ui.finetune_html = gr.HTML(
            status_html(None, corrections=len(list_corrections(app.corrections_dir))),
            label="Fine-tune status",
            elem_id="finetune-status",
        )
        ui.finetune_log = gr.Textbox(label="Log", lines=10, max_lines=10, interactive=False, elem_id="finetune-log")
        ui.finetune_timer = gr.Timer(2.0, active=False)


def wire_finetune(demo: gr.Blocks, app: AppContext, finetune: FinetuneHandlers, saves: list, refresh_event) -> None:
    """Start, cancel and watch the fine-tune; the lists follow new checkpoints."""
    ui = app.ui
    lists = [ui.checkpoint, ui.compare_a, ui.compare_b, ui.finetune_base]
    shown = [ui.finetune_html, ui.finetune_log]
    options = [ui.finetune_base, ui.finetune_minutes, ui.finetune_lr, ui.finetune_share, ui.finetune_holdout]
    private = {"api_visibility": "private"}
    inputs = [*options, ui.finetune_freeze, ui.finetune_blend, ui.finetune_anyway, ui.finetune_approved]
    ui.finetune_btn.click(finetune.start, inputs, shown, api_name="finetune_start").then(
        finetune.polling, None, ui.finetune_timer, **private
    )
    ui.finetune_cancel_btn.click(finetune.cancel, None, shown, api_name="finetune_cancel")
    for event in saves:
        event.then(finetune.corrections, None, ui.finetune_html, **private)
    refresh_event.then(finetune.base_choices, ui.finetune_base, ui.finetune_base, **private)
    ui.finetune_refresh_btn.click(finetune.status, lists, [*shown, *lists], api_name="finetune_status").then(
        finetune.polling, None, ui.finetune_timer, **private
    )
    # Polling shows no progress overlay: it runs every two seconds while a fine-tune is on.
    ui.finetune_timer.tick(finetune.poll, lists, [*shown, ui.finetune_timer, *lists], show_progress="hidden", **private)
    # A tab opened during a fine-tune starts polling; every tab sees the checkpoints offered now.
    demo.load(finetune.status, lists, [*shown, *lists], **private).then(
        finetune.polling, None, ui.finetune_timer, **private
    )

    # The base and its new checkpoint on a held-out correction: the strokes not yet applied go into
    # the open photo's draft first, as before reopening.
    held_inputs = [ui.session, ui.opacity, ui.hidden, ui.label, ui.multiscale, ui.flip]
    compared = [ui.compare_view_a, ui.compare_view_b, ui.compare_md, ui.compare_a, ui.compare_b, ui.record_id]
    ui.finetune_compare_btn.click(finetune.photo.stash_strokes, [ui.session, ui.editor], [ui.session], **private).then(
        finetune.compare_held_out,
        held_inputs,
        [*ui.start_outputs, *compared],
        api_name="finetune_compare",
        concurrency_limit=app.settings.concurrency,
        concurrency_id="model",
    )

    # What the budget buys follows the budget, the base, the held-out share, the saves and the runs
    # that time their evaluation (a fine-tune that ends): the budget box's label says it.
    def budget_box(base, holdout, minutes):
        estimate = form_forecast(app, base, holdout, minutes)
        return gr.Number(label=budget_label(app.settings.finetune_max_minutes, estimate))

    budget = {
        "fn": budget_box,
        "inputs": [ui.finetune_base, ui.finetune_holdout, ui.finetune_minutes],
        "outputs": ui.finetune_minutes,
    }
    triggers = [ui.finetune_timer.tick, ui.finetune_refresh_btn.click, demo.load, ui.finetune_base.change]
    edits = [ui.finetune_holdout.release, ui.finetune_minutes.blur, ui.finetune_minutes.submit]
    for trigger in [*triggers, *edits, *(event.then for event in saves)]:
        trigger(**budget, show_progress="hidden", **private)
