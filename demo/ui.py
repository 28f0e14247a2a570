"""The Gradio app: parse a photo, correct its labels exactly, save them as training data.

:func:`build_demo` lays out the ``gr.Blocks`` and wires its events; the handlers live
in one module per panel (``demo.panel_photo``, ``demo.panel_edit``,
``demo.panel_gallery``, ``demo.panel_models``, ``demo.panel_finetune``, and
:class:`demo.queue_ui.QueuePanel`), all working on one :class:`demo.context.AppContext`.
Each user's work lives in a ``gr.State`` holding a :class:`demo.session.Session`, and
the loaded models are shared through :class:`demo.models.Predictors`. Every event
has an API name, so the app can be driven with ``gradio_client`` as well as from
the browser.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import gradio as gr
import numpy as np
from PIL import Image

from ssfnet.data.review import APPROVED, REVIEW_STATUSES

from .context import EXAMPLES_DIR, AppContext, Thumbnails, status_text
from .finetune_ui import finetune_panel, wire_finetune
from .keys import KEYS_JS, SHORTCUTS_MD
from .memory import expire_closed_sessions, start_trimmer
from .models import Predictors, set_model_threads
from .panel_edit import TOOLS, ZOOM_CHOICES, EditHandlers
from .panel_finetune import FinetuneHandlers
from .panel_gallery import EXPORT_FORMATS, GalleryHandlers
from .panel_models import ModelHandlers
from .panel_photo import PhotoHandlers
from .paths import page_roots, shown_path
from .queue_ui import QueuePanel
from .render import label_choices, legend_html
from .settings import Settings
from .superpixels import DEFAULT_SEGMENTS, MAX_SEGMENTS, MIN_SEGMENTS
from .widgets import (
    BRUSH_MAX,
    bound_layers,
    brush,
    brush_size,
    documented_as_text,
    editor_max_pixels,
    hidden_choices,
    mistake,
    painting_html,
    pending_strokes,
)

# Re-exported: these lived here before the handlers moved to their panels' modules.
__all__ = ["Thumbnails", "brush_size", "build_demo", "launch_kwargs", "mistake", "pending_strokes"]

INTRO = """\
# SSFNet human parsing
Upload a photo of a person (or pick an example) to parse it into body parts and clothes.
Correct the result with the click tools on the overlay or paint in **Paint labels**, then
**Save correction** to store image + exact label map as training data.
"""
PAINT_HELP = (
    "The brush paints the label chosen in **Label to apply**, in its colour (see the "
    "legend); each painted pixel becomes exactly one label. The eraser removes paint not "
    "yet applied. Apply strokes before using the click tools: other edits redraw this canvas. "
    "Zoom with the canvas's zoom controls."
)


# Gradio 6 takes a page's CSS only in launch(): the app's own few rules come with the page instead,
# so that every way of launching it (app.py, a Space, the tests) gets them. Gallery captions wrap:
# Gradio's are cut to one line, which hid the record id and the edits of every saved correction.
PAGE_CSS = "#gallery .caption-label { white-space: normal; overflow-wrap: anywhere; max-width: calc(100% - 8px); }"
STYLE_JS = (
    "() => { if (!document.getElementById('ssfnet-style')) { const style = document.createElement('style');"
    f" style.id = 'ssfnet-style'; style.textContent = {json.dumps(PAGE_CSS)}; document.head.appendChild(style); }}"
    " return []; }"
)


@dataclass
class Handlers:
    """The handlers of every panel, all on the same app context."""

    photo: PhotoHandlers
    edit: EditHandlers
    gallery: GalleryHandlers
    models: ModelHandlers
    finetune: FinetuneHandlers | None

    @classmethod
    def create(cls, app: AppContext) -> Handlers:
        models = ModelHandlers(app)
        # Beyond localhost only with --finetune-remote: else the panel and its API are absent.
        finetune = app.runner is not None and app.settings.finetune_offered
        return cls(
            photo=PhotoHandlers(app),
            edit=EditHandlers(app),
            gallery=GalleryHandlers(app),
            models=models,
            finetune=FinetuneHandlers(app, models) if finetune else None,
        )


def build_demo(settings: Settings | None = None, predictors: Predictors | None = None) -> gr.Blocks:
    """Assemble the app.

    Args:
        settings: App settings (defaults: :class:`Settings`).
        predictors: Checkpoints and loaded models; default: from ``settings``.

    Returns:
        The ``gr.Blocks`` (queued; call ``launch`` on it, see :func:`launch_kwargs`).
    """
    settings = settings or Settings()
    predictors = predictors or Predictors(
        settings.checkpoints_dir, settings.checkpoint, settings.device, backend=settings.backend
    )
    app = AppContext.create(settings, predictors)
    handlers = Handlers.create(app)
    queue_panel = QueuePanel(app.photo_queue, settings, predictors, handlers.photo.open_photo)
    if app.examples:
        # Served as they are (never copied or moved), and accepted back as input when picked.
        gr.set_static_paths([EXAMPLES_DIR])

    # Gradio's cache of served files is pruned hourly, so a long-running server keeps a bounded disk.
    with gr.Blocks(title="SSFNet human parsing", delete_cache=(3600, 3600)) as demo:
        ui = app.ui
        # Per-user state is forgotten after the idle time (drafts keep the unsaved work).
        ttl = settings.session_minutes * 60
        ui.session = gr.State(None, time_to_live=ttl)
        ui.record_ids = gr.State([], time_to_live=ttl)
        ui.zoom = gr.State(None, time_to_live=ttl)  # the overlay's zoom (demo.zoom.Zoom); None: whole
        ui.label_last = gr.State(0, time_to_live=ttl)  # the last label the list named (typed text may name none)
        expire_closed_sessions(demo, ttl)  # also when the tab is closed (Gradio would keep it an hour)
        gr.Markdown(INTRO)
        # Labels name these outputs in the API (gradio_client): unlabelled ones would be "value_<id>".
        ui.model_md = gr.Markdown(handlers.models.model_status(), label="Model status", elem_id="model-status")
        ui.message = gr.Markdown("", label="Message", elem_id="message")
        with gr.Row():
            with gr.Column(scale=2, min_width=280):
                _photo_column(app, queue_panel)
            with gr.Column(scale=5):
                _edit_column(app, handlers.edit)
                _saved_panel(app)
                _drafts_panel(app)
                _compare_panel(app)
                if handlers.finetune is not None:
                    finetune_panel(app)

        _wire_opening(app, handlers, queue_panel)
        _wire_editing(demo, app, handlers.edit)
        saves = _wire_saved(demo, app, handlers, queue_panel)
        refresh_event = _wire_models(demo, app, handlers.models)
        if handlers.finetune is not None:
            wire_finetune(demo, app, handlers.finetune, saves, refresh_event)
        demo.load(handlers.gallery.refresh_gallery, None, [ui.gallery, ui.record_ids], api_visibility="private")
        demo.load(None, js=STYLE_JS)
    # A bounded queue: beyond it a request is refused at once ("queue is full") instead of piling up memory.
    demo.queue(default_concurrency_limit=4, max_size=settings.queue_size)
    # What expired sessions and large photos freed goes back to the system.
    start_trimmer()
    set_model_threads(settings.concurrency)
    return demo


def launch_kwargs(settings: Settings) -> dict:
    """Keyword arguments of ``demo.launch`` for ``settings`` (``auth``: the login list, None without one).

    Raises:
        ValueError: the login list is malformed (:func:`demo.settings.parse_args` has said so already).
    """
    return {
        "server_name": settings.host,
        "server_port": settings.port,
        "share": settings.share,
        "max_file_size": settings.max_file_size,
        "show_error": True,
        "auth": settings.credentials() or None,
    }


# ---- layout: one function per panel, each creating its components at the current place ----


def _photo_column(app: AppContext, queue_panel: QueuePanel) -> None:
    """The upload, the examples, the queue, the model options and the overlay's look."""
    ui, examples = app.ui, app.examples
    ui.upload = gr.File(label="Photo", file_types=["image"], type="filepath", elem_id="upload")
    if examples:
        # Two rows of two: four in a row in this column left three behind a scrollbar.
        ui.example_gallery = gr.Gallery(
            value=[(np.asarray(Image.open(p).convert("RGB").resize((96, 144))), p.stem) for p in examples],
            label="Examples (click one)",
            columns=2,
            rows=(len(examples) + 1) // 2,
            height=150 * ((len(examples) + 1) // 2) + 40,
            object_fit="contain",
            allow_preview=False,
            format="png",
            elem_id="examples",
        )
    ui.parse_btn = gr.Button("Parse", variant="primary", elem_id="parse")
    queue_panel.layout()
    with gr.Accordion("Model options", open=False):
        ui.checkpoint = app.checkpoint_list("Checkpoint", elem_id="checkpoint")
        ui.refresh_ckpt = gr.Button("Refresh checkpoint list", size="sm")
        ui.multiscale = gr.Checkbox(False, label="Multi-scale (slower, usually better)")
        ui.flip = gr.Checkbox(False, label="Also parse the mirrored image (flip)")
    ui.opacity = gr.Slider(0.0, 1.0, value=0.55, step=0.05, label="Overlay opacity", elem_id="opacity")
    ui.legend = gr.HTML(legend_html(None, app.initial_set, {0}), label="Legend", elem_id="legend")
    with gr.Accordion("Show / hide labels", open=False):
        ui.hidden = gr.CheckboxGroup(
            choices=hidden_choices(app.initial_set), value=["0"], label="Hidden in the overlay"
        )


def _edit_column(app: AppContext, edit: EditHandlers) -> None:
    """The status, the label to apply, the overlay and paint tabs, the edit buttons and the downloads."""
    ui = app.ui
    ui.status = gr.Markdown(status_text(None), label="Status", elem_id="status")
    # Custom values let the API's documented string ids ("2") through; handlers check them.
    ui.label = gr.Dropdown(
        choices=label_choices(app.initial_set),
        value=0,
        label="Label to apply (click tools and brush colour)",
        allow_custom_value=True,
        elem_id="label",
    )
    # The label being applied, in its colour, in view above the canvas while painting.
    ui.painting = gr.HTML(painting_html(app.initial_set, 0, None), elem_id="painting")
    with gr.Row():
        # The width of the paint brush and of the dot tool, in working pixels; [ and ] step it.
        ui.brush_px = gr.Slider(
            0, BRUSH_MAX, value=0, step=1, scale=4, elem_id="brush-size",
            label="Brush size in pixels (0: 1/40 of the photo's longer side; keys [ and ])",
        )  # fmt: skip
        ui.brush_smaller_btn = gr.Button("Brush −", size="sm", min_width=60, elem_id="brush-smaller")
        ui.brush_bigger_btn = gr.Button("Brush +", size="sm", min_width=60, elem_id="brush-bigger")
    with gr.Tabs():
        with gr.Tab("Overlay & click tools", id="view"):
            _overlay_tab(app)
        with gr.Tab("Paint labels", id="paint") as ui.paint_tab:
            gr.Markdown(PAINT_HELP)
            ui.editor = gr.ImageEditor(
                type="numpy",
                image_mode="RGBA",
                format="png",
                sources=(),
                transforms=(),
                layers=False,
                brush=brush(app.initial_set),
                eraser=gr.Eraser(),
                label="Paint labels",
                height=640,
                elem_id="editor",
            )
            bound_layers(ui.editor, editor_max_pixels(app.settings.max_side))
            with gr.Row():
                ui.apply_btn = gr.Button("Apply strokes", variant="primary", elem_id="apply-strokes")
                ui.snap_btn = gr.Button("Apply strokes snapped to edges (GrabCut)")
    with gr.Row():
        ui.undo_btn = gr.Button("↶ Undo", elem_id="undo")
        ui.redo_btn = gr.Button("↷ Redo", elem_id="redo")
        ui.reset_btn = gr.Button("Reset to proposal", elem_id="reset")
        ui.save_btn = gr.Button("Save correction", variant="primary", elem_id="save")
        ui.accept_btn = gr.Button("Accept proposal as correct", elem_id="accept")
    with gr.Row():
        # A reviewer's verdict on the saved record of the open photo (a fine-tune may use approved ones only).
        ui.review_status = gr.Radio(
            list(REVIEW_STATUSES), value=APPROVED, label="Review of the open photo's saved correction",
            scale=2, elem_id="review-status",
        )  # fmt: skip
        ui.review_note = gr.Textbox(label="Review note (needed to reject)", scale=2, elem_id="review-note")
        ui.review_btn = gr.Button("Set review", elem_id="review")
    ui.downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")


def _overlay_tab(app: AppContext) -> None:
    """The overlay with the click tools."""
    ui = app.ui
    ui.view = gr.Image(
        label="Overlay (click to apply the click tool; zoom with the Zoom in tool, the zoom choice or + / -)",
        type="numpy",
        format="png",
        interactive=False,
        height=600,
        buttons=["fullscreen", "download"],
        elem_id="overlay",
    )
    with gr.Row():
        # Picking is the default: a stray click must not change labels.
        ui.tool = gr.Radio(list(TOOLS), value=TOOLS[0], label="Click tool", scale=2, elem_id="tool")
        ui.tolerance = gr.Slider(0, 128, value=24, step=1, label="Flood-fill colour tolerance")
    with gr.Row():
        ui.coarseness = gr.Slider(
            MIN_SEGMENTS, MAX_SEGMENTS, value=DEFAULT_SEGMENTS, step=50, scale=2, elem_id="coarseness",
            label="Superpixel coarseness: about how many superpixels per photo (fewer: larger)",
        )  # fmt: skip
        # Shift held on the overlay ticks it for the click (demo.keys): Gradio's select event has no modifiers.
        ui.add_to_last = gr.Checkbox(False, label="Add to the last click's edit (Shift)", elem_id="add-to-last")
        ui.polygon_close_btn = gr.Button("Close polygon", size="sm", elem_id="polygon-close")
        ui.polygon_cancel_btn = gr.Button("Cancel polygon", size="sm", elem_id="polygon-cancel")
        ui.show_persons = gr.Checkbox(False, label="Outline the people (person ids)", elem_id="show-persons")
    ui.tool_note = gr.Markdown("", label="Tool", elem_id="tool-note")
    with gr.Row():
        # Zoomed on the server (demo.zoom): the overlay shows an enlarged crop, so clicks stay exact.
        ui.zoom_level = gr.Radio(ZOOM_CHOICES, value="1", label="Zoom (around the last click)", scale=2, elem_id="zoom")
        ui.zoom_in_btn = gr.Button("Zoom in +", size="sm", elem_id="zoom-in")
        ui.zoom_out_btn = gr.Button("Zoom out -", size="sm", elem_id="zoom-out")
    # Out of the annotator's way, kept for typing a point and for the API's apply_click.
    with gr.Accordion("Apply at a typed point (x, y)", open=False):
        with gr.Row():
            ui.click_x = gr.Number(label="x", precision=0, minimum=0, elem_id="click-x")
            ui.click_y = gr.Number(label="y", precision=0, minimum=0, elem_id="click-y")
            ui.apply_click_btn = gr.Button("Apply at x, y", size="sm")


def _saved_panel(app: AppContext) -> None:
    """The saved corrections: gallery, reopen, delete, export."""
    ui = app.ui
    with gr.Accordion("Saved corrections", open=False):
        gr.Markdown(f"Folder: `{shown_path(app.corrections_dir, page_roots(app.settings))}`")
        ui.gallery = gr.Gallery(
            label="Saved corrections (newest first)",
            columns=4,
            height=420,
            fit_columns=False,
            object_fit="contain",
            allow_preview=False,
            format="png",
            elem_id="gallery",
        )
        with gr.Row():
            ui.record_id = gr.Textbox(label="Correction id", scale=3, elem_id="record-id")
            ui.reopen_btn = gr.Button("Reopen for editing")
            ui.trash_btn = gr.Button("Delete (to the trash folder)", elem_id="trash")
            ui.refresh_btn = gr.Button("Refresh list")
            ui.show_old = gr.Checkbox(False, label="Show superseded versions")
        with gr.Row():
            ui.export_btn = gr.Button("Export all as zip")
            ui.export_format = gr.Dropdown(
                list(EXPORT_FORMATS.items()),
                value="store",
                label="Export format",
                info="The latest record of each edit chain; every record while superseded versions are shown.",
                elem_id="export-format",
            )
            ui.export_as_btn = gr.Button("Export in this format", elem_id="export-as")
            ui.export_file = gr.File(label="Zip of the corrections folder", interactive=False)


def _drafts_panel(app: AppContext) -> None:
    """The kept drafts, the keyboard shortcuts and the hidden box the number keys write to."""
    ui = app.ui
    with gr.Accordion("Drafts (unsaved work, autosaved)", open=False):
        with gr.Row():
            # Custom values: a draft id from the API's drafts call is taken in a session that has not
            # listed them (the handler looks it up among the sender's own drafts).
            ui.draft_dd = documented_as_text(
                gr.Dropdown(choices=[], label="Draft", scale=3, allow_custom_value=True, elem_id="drafts"),
                "a draft id, as the drafts call lists them",
            )
            ui.restore_btn = gr.Button("Restore draft", elem_id="restore-draft")
            ui.drafts_refresh_btn = gr.Button("Refresh drafts")
    with gr.Accordion("Keyboard shortcuts", open=False):
        gr.Markdown(SHORTCUTS_MD)
    # Written by the number-key handler (demo.keys); hidden, but in the page.
    ui.key_box = gr.Textbox(visible="hidden", elem_id="key-label", label="Label key")


def _compare_panel(app: AppContext) -> None:
    """Two checkpoints' proposals for the current photo, side by side."""
    ui = app.ui
    with gr.Accordion("Compare models", open=False):
        gr.Markdown(
            "Parse the current photo with two checkpoints, e.g. a base and its fine-tuned version "
            "on a reopened correction; agreement is measured against the current labels."
        )
        with gr.Row():
            ui.compare_a = app.checkpoint_list("Model A", scale=3)
            ui.compare_b = app.checkpoint_list("Model B", scale=3)
            ui.compare_btn = gr.Button("Compare on this photo", scale=1, elem_id="compare")
        with gr.Row():
            ui.compare_view_a = gr.Image(label="Model A", type="numpy", format="png", interactive=False)
            ui.compare_view_b = gr.Image(label="Model B", type="numpy", format="png", interactive=False)
        ui.compare_md = gr.Markdown("", label="Agreement", elem_id="compare-agreement")


# ---- events: one function per panel ---------------------------------------------------------


def _model_queue(app: AppContext) -> dict:
    """Model runs share one limit, so a busy CPU/GPU queues them instead of thrashing."""
    return {"concurrency_limit": app.settings.concurrency, "concurrency_id": "model"}


def _stash_io(app: AppContext) -> tuple[list, list]:
    """Inputs and outputs of ``stash_strokes``."""
    return [app.ui.session, app.ui.editor], [app.ui.session]


def _wire_opening(app: AppContext, handlers: Handlers, queue_panel: QueuePanel) -> None:
    """Parse an upload, an example or a queued photo."""
    ui, photo = app.ui, handlers.photo
    open_inputs = [ui.checkpoint, ui.multiscale, ui.flip, ui.opacity, ui.hidden, ui.label, ui.session]
    parse_event = dict(fn=photo.parse, inputs=[ui.upload, *open_inputs], outputs=ui.start_outputs, **_model_queue(app))
    # Strokes not yet applied go into the draft before another photo replaces the session.
    stash_io = _stash_io(app)
    ui.parse_btn.click(photo.stash_strokes, *stash_io, api_visibility="private").then(api_name="parse", **parse_event)
    ui.upload.upload(photo.stash_strokes, *stash_io, api_visibility="private").then(
        api_visibility="private", **parse_event
    )
    # Another checkpoint parses the open photo again (its edits carry over through its draft).
    reparse_inputs = [ui.checkpoint, ui.multiscale, ui.flip, ui.opacity, ui.hidden, ui.label, ui.session]
    ui.checkpoint.input(photo.stash_strokes, *stash_io, api_visibility="private").then(
        photo.reparse, reparse_inputs, ui.start_outputs, api_name="reparse", **_model_queue(app)
    )
    if app.examples:
        ui.example_gallery.select(photo.pick_example, None, ui.upload, api_visibility="private").then(
            photo.stash_strokes, *stash_io, api_visibility="private"
        ).then(api_visibility="private", **parse_event)
    queue_panel.wire(
        open_inputs=open_inputs,
        start_outputs=ui.start_outputs,
        stash=photo.stash_strokes,
        stash_io=stash_io,
        concurrency=_model_queue(app),
    )


def _wire_editing(demo: gr.Blocks, app: AppContext, edit: EditHandlers) -> None:
    """The overlay's redraws, the click tools, the zoom, the label and brush, the strokes and undo / redo."""
    ui = app.ui
    # The zoom (a State) is no parameter of the API: every redraw keeps it.
    view_inputs = [ui.session, ui.zoom, ui.opacity, ui.hidden]
    _wire_clicks(app, edit, view_inputs)
    _wire_zoom(app, edit)
    _wire_label_and_brush(demo, app, edit)
    paint_inputs = [ui.session, ui.zoom, ui.editor, ui.opacity, ui.hidden]
    ui.apply_btn.click(edit.apply_strokes, paint_inputs, ui.view_outputs, api_name="apply_strokes")
    ui.snap_btn.click(edit.snap_strokes, paint_inputs, ui.view_outputs, api_name="snap_strokes")
    ui.undo_btn.click(edit.undo, view_inputs, ui.view_outputs, api_name="undo")
    ui.redo_btn.click(edit.redo, view_inputs, ui.view_outputs, api_name="redo")
    ui.reset_btn.click(edit.reset, view_inputs, ui.view_outputs, api_name="reset")


def _wire_clicks(app: AppContext, edit: EditHandlers, view_inputs: list) -> None:
    """The overlay's redraws (opacity, hidden classes) and the click tools (polygon, persons, superpixels)."""
    ui = app.ui
    # Change, not release: typing a value in the slider's box (Enter) releases nothing. Dragging
    # changes it many times: always_last runs the latest value once the running redraw ends.
    ui.opacity.change(
        edit.rerender,
        view_inputs,
        [ui.view, ui.downloads],
        api_name="rerender",
        trigger_mode="always_last",
        show_progress="hidden",
    )
    ui.hidden.input(edit.rerender, view_inputs, [ui.view, ui.downloads], api_visibility="private").then(
        edit.legend_for, [ui.session, ui.hidden], ui.legend, api_visibility="private"
    )

    point = [ui.click_x, ui.click_y]
    click_inputs = [ui.session, ui.zoom, *point, ui.tool, ui.label, ui.tolerance, ui.opacity, ui.hidden]
    click_inputs += [ui.coarseness, ui.add_to_last]
    click_outputs = ui.view_outputs + [ui.label, ui.zoom]
    # A click on a zoomed overlay is mapped back to working pixels: x, y are always those.
    ui.view.select(edit.record_click, [ui.session, ui.zoom], point, api_visibility="private").then(
        edit.click_in_browser, click_inputs + [ui.editor], click_outputs, api_visibility="private"
    )
    ui.apply_click_btn.click(edit.apply_click, click_inputs, click_outputs, api_name="apply_click")
    ui.polygon_close_btn.click(
        edit.close_polygon,
        [ui.session, ui.zoom, ui.label, ui.opacity, ui.hidden, ui.editor],
        ui.view_outputs,
        api_name="close_polygon",
    )
    ui.polygon_cancel_btn.click(edit.cancel_polygon, view_inputs, ui.view, api_name="cancel_polygon")
    persons_inputs = [ui.session, ui.zoom, ui.show_persons, ui.opacity, ui.hidden]
    ui.show_persons.input(edit.show_persons, persons_inputs, ui.view, api_name="show_persons")
    # The superpixels are computed when the tool or the coarseness is chosen, or a photo opens with
    # the tool chosen, so that the first click finds them (the note says what they cost).
    # Then the overlay is redrawn with their borders (or without, for another tool); a redraw runs the
    # note again but not the redraw, so the two never call each other in a loop.
    note_inputs = [ui.session, ui.tool, ui.coarseness]
    for event in (
        ui.tool.change(edit.tool_note, note_inputs, ui.tool_note, api_visibility="private", show_progress="minimal"),
        ui.coarseness.change(
            edit.tool_note,
            note_inputs,
            ui.tool_note,
            api_name="coarseness",
            trigger_mode="always_last",
            show_progress="minimal",
        ),
    ):
        event.then(edit.tool_view, view_inputs, ui.view, api_visibility="private", show_progress="hidden")
    ui.view.change(edit.tool_note, note_inputs, ui.tool_note, api_visibility="private", show_progress="hidden")


def _wire_zoom(app: AppContext, edit: EditHandlers) -> None:
    """The overlay's zoom: a level, in, out, and the choice following what the overlay shows."""
    ui = app.ui
    point = [ui.click_x, ui.click_y]
    zoom_view = [ui.opacity, ui.hidden]
    zoomed = [ui.zoom, ui.view]
    ui.zoom_level.input(edit.zoom_to, [ui.session, ui.zoom, ui.zoom_level, *point, *zoom_view], zoomed, api_name="zoom")
    ui.zoom_in_btn.click(edit.zoom_in, [ui.session, ui.zoom, *point, *zoom_view], zoomed, api_visibility="private")
    ui.zoom_out_btn.click(edit.zoom_out, [ui.session, ui.zoom, *zoom_view], zoomed, api_visibility="private")
    # Every redraw (an opened photo shows whole) sets the zoom choice to what the overlay shows.
    ui.view.change(
        edit.zoom_shown, [ui.session, ui.zoom], ui.zoom_level, api_visibility="private", show_progress="hidden"
    )


def _wire_label_and_brush(demo: gr.Blocks, app: AppContext, edit: EditHandlers) -> None:
    """The label (typed, keys, the painting chip) and the brush (size, steps, the paint tab)."""
    ui = app.ui
    ui.label.input(
        edit.label_typed, [ui.session, ui.label, ui.label_last], [ui.label, ui.editor], api_visibility="private"
    )
    ui.label.change(
        edit.painting_chip,
        [ui.session, ui.label],
        [ui.painting, ui.label_last],
        api_visibility="private",
        show_progress="hidden",
    )
    ui.key_box.change(
        edit.key_label, [ui.session, ui.key_box, ui.label], [ui.label, ui.editor], api_visibility="private"
    )
    demo.load(None, js=KEYS_JS)
    brush_inputs = [ui.session, ui.brush_px, ui.label]
    ui.brush_px.change(
        edit.set_brush_size,
        brush_inputs,
        [ui.session, ui.editor],
        api_name="brush_size",
        trigger_mode="always_last",
        show_progress="hidden",
    ).then(edit.painting_chip, [ui.session, ui.label], [ui.painting, ui.label_last], api_visibility="private")
    # A photo just opened (a redraw) takes the slider's size: opening sets the proportional one.
    ui.view.change(
        edit.brush_follow, brush_inputs, [ui.editor, ui.painting], api_visibility="private", show_progress="hidden"
    )
    for button, steps in ((ui.brush_smaller_btn, -1), (ui.brush_bigger_btn, 1)):
        button.click(
            lambda session, size, steps=steps: edit.brush_step(session, size, steps),
            [ui.session, ui.brush_px],
            ui.brush_px,
            api_visibility="private",
            show_progress="hidden",
        )
    # A canvas given its picture while its tab was hidden can stay blank: opening the tab sends it again.
    ui.paint_tab.select(
        edit.paint_opened,
        [ui.session, ui.editor, ui.opacity, ui.hidden],
        ui.editor,
        api_visibility="private",
        show_progress="hidden",
    )


def _wire_saved(demo: gr.Blocks, app: AppContext, handlers: Handlers, queue_panel: QueuePanel) -> list:
    """Save and accept, the saved corrections, the drafts and the export; returns the two save events."""
    ui, gallery, photo = app.ui, handlers.gallery, handlers.photo
    save_outputs = [ui.session, ui.gallery, ui.record_ids, ui.message, ui.status]
    saves = [
        ui.save_btn.click(gallery.save, [ui.session], save_outputs, api_name="save"),
        ui.accept_btn.click(gallery.accept_proposal, [ui.session], save_outputs, api_name="accept_proposal"),
    ]
    for event in saves:
        event.then(queue_panel.show, queue_panel.position, queue_panel.table, api_visibility="private")
    listing = [ui.gallery, ui.record_ids]
    ui.refresh_btn.click(gallery.refresh_gallery, ui.show_old, listing, api_name="list_corrections")
    ui.show_old.input(gallery.refresh_gallery, ui.show_old, listing, api_visibility="private")
    ui.gallery.select(gallery.select_record, [ui.record_ids], ui.record_id, api_visibility="private")
    ui.trash_btn.click(
        gallery.trash, [ui.record_id, ui.show_old], [*listing, ui.record_id, ui.message], api_name="trash"
    )
    stash_io = _stash_io(app)
    reopen_inputs = [ui.record_id, ui.opacity, ui.hidden, ui.label, ui.session]
    ui.reopen_btn.click(photo.stash_strokes, *stash_io, api_visibility="private").then(
        gallery.reopen, reopen_inputs, ui.start_outputs, api_name="reopen"
    )
    restore_inputs = [ui.draft_dd, ui.session, ui.opacity, ui.hidden, ui.label]
    ui.restore_btn.click(photo.stash_strokes, *stash_io, api_visibility="private").then(
        photo.restore_draft, restore_inputs, ui.start_outputs, api_name="restore_draft"
    )
    ui.drafts_refresh_btn.click(photo.draft_choices, ui.draft_dd, ui.draft_dd, api_name="drafts")
    demo.load(photo.draft_choices, None, ui.draft_dd, api_visibility="private")
    ui.export_btn.click(gallery.export, None, ui.export_file, api_name="export_zip")
    ui.export_as_btn.click(
        gallery.export_as, [ui.export_format, ui.show_old], [ui.export_file, ui.message], api_name="export_corrections"
    )
    ui.review_btn.click(
        gallery.set_review,
        [ui.session, ui.review_status, ui.review_note, ui.show_old],
        [*listing, ui.message],
        api_name="set_review",
    ).then(queue_panel.show, queue_panel.position, queue_panel.table, api_visibility="private")
    return saves


def _wire_models(demo: gr.Blocks, app: AppContext, models: ModelHandlers):
    """The checkpoint lists and the comparison; returns the checkpoint refresh's event."""
    ui = app.ui
    pair = [ui.compare_a, ui.compare_b]
    refresh_event = ui.refresh_ckpt.click(
        models.refresh_checkpoints, [ui.checkpoint], [ui.checkpoint, ui.model_md], api_name="checkpoints"
    ).then(models.compare_choices, pair, pair, api_visibility="private")
    demo.load(models.refresh_checkpoints, [ui.checkpoint], [ui.checkpoint, ui.model_md], api_visibility="private")
    demo.load(models.compare_choices, pair, pair, api_visibility="private")
    ui.compare_btn.click(
        models.compare,
        [ui.session, *pair, ui.multiscale, ui.flip, ui.opacity, ui.hidden],
        [ui.compare_view_a, ui.compare_view_b, ui.compare_md],
        api_name="compare",
        **_model_queue(app),
    )
    return refresh_event
