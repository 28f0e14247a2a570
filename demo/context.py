"""What every handler of the app works on: one :class:`AppContext` per ``gr.Blocks``.

The context holds the server-wide parts (settings, the loaded models, the stores of
corrections, drafts and queued photos, the fine-tune runner) and the app's components
(:class:`Components`, filled in by the layout in :mod:`demo.ui`). Handlers in the
``demo.panel_*`` modules return ``{component: value}`` dicts keyed by those components;
each user's own work stays in the ``gr.State`` holding their :class:`demo.session.Session`.
"""

from __future__ import annotations

import logging
import re
import shutil
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np

from ssfnet.data.corrections import load_correction, load_persons
from ssfnet.files import atomic_write_bytes
from ssfnet.io import overlay, png_bytes
from ssfnet.labels import LabelSet, get_label_set

from .access import Access
from .cleanup import make_temp_dir
from .drafts import Drafts
from .finetune_runner import FinetuneRunner
from .models import Predictors
from .queue import PhotoQueue
from .render import (
    Scratch,
    draw_borders,
    draw_persons,
    draw_vertices,
    fast_png,
    legend_html,
    write_downloads,
    zoomed_overlay,
)
from .session import Session
from .settings import Settings
from .widgets import brush_size, hidden_set, label_widgets
from .zoom import Zoom, display_window

logger = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
EXAMPLES_DIR = ASSETS_DIR / "examples"
DEFAULT_LABEL_SET = "lip-20"
# How often writing a draft also looks for anonymous pages' drafts past the session lifetime.
DRAFTS_EXPIRY_S = 300.0


def example_paths() -> list[Path]:
    """The example photos offered under the upload."""
    return sorted(p for p in EXAMPLES_DIR.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


class Thumbnails:
    """Small overlay thumbnails of saved corrections, made once per record id (records never change)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.folder = make_temp_dir("ssfnet-thumbs-")
        weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)

    def get(self, root: Path, meta: dict) -> Path:
        path = self.folder / f"{meta['id']}.png"
        if path.exists():
            return path
        try:
            # Decoded reduced to the tile's size: a 60-megapixel record costs no more than a small one.
            image, labels, _ = load_correction(root, meta["id"], max_side=self.size)
            label_set = get_label_set(meta.get("label_set", DEFAULT_LABEL_SET))
            picture = overlay(image, labels, label_set, alpha=0.5)
        except (OSError, ValueError, KeyError):
            # A broken record still gets a tile, so that it can be selected and its problem shown.
            picture = np.full((self.size, self.size, 3), 200, dtype=np.uint8)
        # Written atomically: another user's request may serve the file meanwhile.
        return atomic_write_bytes(path, png_bytes(picture))


class Components:
    """The app's components, set by the layout (:mod:`demo.ui`) as it creates them.

    The fine-tune ones exist only when the panel is offered, ``examples`` only when there are
    example photos (``example_gallery``).
    """

    # Per-user state.
    session: gr.State
    record_ids: gr.State
    # Page-wide messages.
    model_md: gr.Markdown
    message: gr.Markdown
    # Opening a photo and the model options.
    upload: gr.File
    example_gallery: gr.Gallery
    parse_btn: gr.Button
    checkpoint: gr.Dropdown
    refresh_ckpt: gr.Button
    multiscale: gr.Checkbox
    flip: gr.Checkbox
    opacity: gr.Slider
    legend: gr.HTML
    hidden: gr.CheckboxGroup
    # Editing.
    status: gr.Markdown
    label: gr.Dropdown
    painting: gr.HTML
    brush_px: gr.Slider
    brush_smaller_btn: gr.Button
    brush_bigger_btn: gr.Button
    view: gr.Image
    tool: gr.Radio
    tolerance: gr.Slider
    coarseness: gr.Slider
    add_to_last: gr.Checkbox
    tool_note: gr.Markdown
    polygon_close_btn: gr.Button
    polygon_cancel_btn: gr.Button
    show_persons: gr.Checkbox
    click_x: gr.Number
    click_y: gr.Number
    apply_click_btn: gr.Button
    zoom: gr.State
    label_last: gr.State
    zoom_level: gr.Radio
    zoom_in_btn: gr.Button
    zoom_out_btn: gr.Button
    paint_tab: gr.Tab
    editor: gr.ImageEditor
    apply_btn: gr.Button
    snap_btn: gr.Button
    undo_btn: gr.Button
    redo_btn: gr.Button
    reset_btn: gr.Button
    save_btn: gr.Button
    accept_btn: gr.Button
    review_status: gr.Radio
    review_note: gr.Textbox
    review_btn: gr.Button
    downloads: gr.File
    key_box: gr.Textbox
    # Saved corrections.
    gallery: gr.Gallery
    record_id: gr.Textbox
    reopen_btn: gr.Button
    trash_btn: gr.Button
    refresh_btn: gr.Button
    show_old: gr.Checkbox
    export_btn: gr.Button
    export_file: gr.File
    export_format: gr.Dropdown
    export_as_btn: gr.Button
    # Drafts.
    draft_dd: gr.Dropdown
    restore_btn: gr.Button
    drafts_refresh_btn: gr.Button
    # Model comparison.
    compare_a: gr.Dropdown
    compare_b: gr.Dropdown
    compare_btn: gr.Button
    compare_view_a: gr.Image
    compare_view_b: gr.Image
    compare_md: gr.Markdown
    # Fine-tuning.
    finetune_base: gr.Dropdown
    finetune_minutes: gr.Number
    finetune_lr: gr.Number
    finetune_share: gr.Slider
    finetune_holdout: gr.Slider
    finetune_blend: gr.Slider
    finetune_freeze: gr.Checkbox
    finetune_anyway: gr.Checkbox
    finetune_approved: gr.Checkbox
    finetune_btn: gr.Button
    finetune_cancel_btn: gr.Button
    finetune_refresh_btn: gr.Button
    finetune_compare_btn: gr.Button
    finetune_html: gr.HTML
    finetune_log: gr.Textbox
    finetune_timer: gr.Timer

    @property
    def view_outputs(self) -> list:
        """What every edit refreshes (see :meth:`AppContext.views`)."""
        return [self.session, self.view, self.editor, self.legend, self.downloads, self.status]

    @property
    def start_outputs(self) -> list:
        """What opening a photo (or a saved correction, or a draft) sets (see :meth:`AppContext.opened`).

        The zoom (a State, no output of the API) comes last: a photo opens whole.
        """
        return self.view_outputs + [self.label, self.hidden, self.upload, self.message, self.zoom]


def status_text(session: Session | None) -> str:
    """The status line: pixels changed, undo steps, saved or not, working size."""
    if session is None:
        return "No photo yet."
    n = session.changed_pixels
    share = 100 * n / max(1, session.labels.size)
    h, w = session.labels.shape
    if not session.unsaved:
        saved = f"saved as `{session.parent}`"
    else:
        saved = "not saved yet" if session.parent is None else "unsaved changes"
    # A reopened record's proposal is its own labels (the model's output is not stored): say so.
    since = "the proposal" if session.proposal_record is None else f"the reopened record `{session.proposal_record}`"
    return (
        f"**{n:,} pixels changed** from {since} ({share:.2f}%) · {len(session.history)} undo step(s) · "
        f"{saved} · working size {w}x{h}"
    )


def start_label_set(predictors: Predictors) -> LabelSet:
    """The label set of the checkpoint selected at start (the default one when there is none)."""
    offered = predictors.offered()
    for _, meta in offered.values():
        try:
            return get_label_set(meta["label_set"])
        except KeyError:
            break
    return get_label_set(DEFAULT_LABEL_SET)


def expire_page_drafts(drafts: Drafts, settings: Settings, every_s: float) -> None:
    """Remove anonymous pages' drafts once the session lifetime has passed since their last write
    (:meth:`demo.drafts.Drafts.expire_pages`); looks at most every ``every_s`` seconds."""
    try:
        removed = drafts.expire_pages(settings.session_minutes * 60, every_s=every_s)
    except OSError as err:
        logger.warning("could not expire the drafts of ended sessions in %s: %s", drafts.root, err)
        return
    if removed:
        logger.info("removed %d draft(s) of page sessions idle for over %d minutes", removed, settings.session_minutes)


@dataclass
class AppContext:
    """The server-wide parts of one app and its components; see the module's docstring."""

    settings: Settings
    predictors: Predictors
    thumbnails: Thumbnails
    scratch: Scratch
    drafts: Drafts
    photo_queue: PhotoQueue
    runner: FinetuneRunner | None
    examples: list[Path]
    initial_set: LabelSet
    access: Access
    ui: Components = field(default_factory=Components)

    @classmethod
    def create(cls, settings: Settings, predictors: Predictors) -> AppContext:
        """The stores and the fine-tune runner of ``settings``; components come later, from the layout."""
        corrections_dir = Path(settings.corrections_dir)
        drafts = Drafts(corrections_dir / "drafts")
        expire_page_drafts(drafts, settings, every_s=0.0)
        # One fine-tune process per app: a server resource that every tab watches (see demo.finetune_runner).
        runner = (
            FinetuneRunner(
                corrections_dir=corrections_dir,
                checkpoints_dir=predictors.checkpoints_dir,
                runs_dir=settings.runs_dir,
                device=settings.device,
                extra_args=settings.finetune_args,
            )
            if settings.finetune_offered
            else None
        )
        return cls(
            settings=settings,
            predictors=predictors,
            thumbnails=Thumbnails(),
            scratch=Scratch(),
            drafts=drafts,
            photo_queue=PhotoQueue(corrections_dir / "queue", corrections_dir, drafts),
            runner=runner,
            examples=example_paths(),
            initial_set=start_label_set(predictors),
            access=Access(settings),
        )

    @property
    def corrections_dir(self) -> Path:
        return Path(self.settings.corrections_dir)

    def checkpoint_list(self, label: str, **kwargs) -> gr.Dropdown:
        """A dropdown of the checkpoints offered, the start one chosen."""
        # Custom values: a checkpoint added since the page was built is a valid pick (the
        # handlers accept only folders offered at that moment, see Predictors.resolve).
        predictors = self.predictors
        return gr.Dropdown(
            choices=predictors.choices(), value=predictors.default(), label=label, allow_custom_value=True, **kwargs
        )

    def label_set_of(self, session: Session | None) -> LabelSet:
        """The label set being edited: the session's, or the start one before any photo."""
        return session.label_set if session is not None else self.initial_set

    def draft_owner(self, request: gr.Request | None) -> str | None:
        """Whose drafts the work of ``request``'s sender goes to (see :meth:`demo.access.Access.draft_owner`)."""
        return self.access.draft_owner(request)

    def drafts_of(self, request: gr.Request | None) -> Drafts:
        """The drafts ``request``'s sender may see and continue."""
        return self.drafts.of(self.draft_owner(request))

    def autosave(self, session: Session) -> None:
        """Keep ``session``'s draft up to date (removed when nothing is left unsaved); a warning if it fails."""
        try:
            self.drafts.of(session.owner).keep(session)
        except OSError as err:
            logger.warning("could not write the draft of %s: %s", session.source.name, err)
            gr.Warning(f"Could not autosave a draft: {err}")
        expire_page_drafts(self.drafts, self.settings, every_s=DRAFTS_EXPIRY_S)

    def shown(self, session: Session, zoom: Zoom | None, opacity: float, hidden, full: str | None = None) -> str:
        """The overlay file to show at the user's zoom (:func:`demo.zoom.display_window`): ``full`` (the
        whole overlay) when neither zoomed nor enlarged to fill the box.

        Any other view is written as a picture of its own: the downloads stay the whole overlay. The
        superpixels' borders (while the tool is chosen), the polygon tool's vertices and the people's
        outlines (while shown or a person tool is chosen) are drawn on the picture shown, never on the
        downloads.
        """
        view = display_window(zoom, session)
        segments = session.superpixels.latest if session.show_superpixels else None
        persons = session.show_persons or session.person_tool
        if view.factor == 1 and full is not None and not session.polygon and segments is None and not persons:
            return full
        picture = zoomed_overlay(session, view, opacity, hidden_set(hidden))
        if segments is not None:
            picture = draw_borders(picture, segments.ids, view)
        if session.polygon:
            picture = draw_vertices(picture, session.polygon, view)
        if persons:
            pick = session.person_pick[1:] if session.person_pick else None
            picture = draw_persons(picture, session.person_ids(), view, pick)
        return str(atomic_write_bytes(self.scratch.new() / f"overlay_{view.factor}x.png", fast_png(picture)))

    def views(self, session: Session, opacity: float, hidden, zoom: Zoom | None = None) -> dict:
        """The outputs every edit refreshes (``view_outputs``); the overlay shown at ``zoom`` (see :meth:`shown`).

        The editor's background is the whole overlay, at the working size its strokes are taken at.
        Each refresh also autosaves the session's draft (or removes it when nothing is left unsaved).
        """
        hide = hidden_set(hidden)
        files = [str(p) for p in write_downloads(session, opacity, hide, self.scratch.new())]
        picture = files[2]
        self.autosave(session)
        ui = self.ui
        return {
            ui.session: session,
            ui.view: self.shown(session, zoom, opacity, hidden, full=picture),
            ui.editor: {"background": picture, "layers": [], "composite": None},
            ui.legend: legend_html(session, session.label_set, hide),
            ui.downloads: files,
            ui.status: status_text(session),
        }

    def opened(self, session: Session, opacity: float, hidden, label, message: str) -> dict:
        """The ``start_outputs`` of a session just opened: its views, its label set's widgets, ``message``.

        The Photo box shows the photo opened (also one from the queue, a saved correction or a
        draft), and the overlay shows it whole.
        """
        label_dd, hidden_cb, brush = label_widgets(session.label_set, hidden, label, brush_size(session))
        out = self.views(session, opacity, hidden)
        ui = self.ui
        return out | {
            ui.editor: gr.ImageEditor(value=out[ui.editor], brush=brush),
            ui.label: label_dd,
            ui.hidden: hidden_cb,
            ui.upload: self.photo_file(session),
            ui.message: message,
            ui.zoom: None,
        }

    def refused(self, session: Session | None, opacity: float, hidden, label, message: str) -> dict:
        """The ``start_outputs`` when a photo could not be opened: the open one (if any) shown as it is.

        Every output gets a value, so that an API caller gets the overlay of the photo still open
        (None without one) and the Photo box never shows a refused file beside another photo.
        """
        if session is not None:
            return self.opened(session, opacity, hidden, label, message)
        label_dd, hidden_cb, _ = label_widgets(self.initial_set, hidden, label)
        ui = self.ui
        return {
            ui.session: None,
            ui.view: None,
            ui.editor: None,
            ui.legend: legend_html(None, self.initial_set, hidden_set(hidden)),
            ui.downloads: None,
            ui.status: status_text(None),
            ui.label: label_dd,
            ui.hidden: hidden_cb,
            ui.upload: None,
            ui.message: message,
            ui.zoom: None,
        }

    def photo_file(self, session: Session) -> str:
        """The open photo's bytes as a file named after it, for the Photo box."""
        source = session.source
        name = Path(source.name or "").name
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem)[:60] or "photo"
        suffix = Path(name).suffix.lower()
        suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else f".{source.ext}"
        return str(atomic_write_bytes(self.scratch.new() / f"{stem}{suffix}", source.data))

    def leave(self, session: Session | None) -> str | None:
        """Before another photo replaces ``session``: keep its unsaved work as a draft; a note saying so."""
        if session is None or not session.has_work:
            return None
        self.autosave(session)
        name = session.source.name or "the previous photo"
        return (
            f"your unsaved edits of {name} are kept as a draft: open {name} again "
            "(queue, upload or **Drafts**) to continue"
        )

    def continue_saved(self, session: Session, record_id: str) -> str | None:
        """Continue a photo just opened from its saved correction ``record_id``, if it fits; a note saying so.

        The model's proposal stays the proposal, so the status counts the pixels the saved labels
        differ from it; saving writes a record whose parent is ``record_id``.
        """
        try:
            _, labels, meta = load_correction(self.corrections_dir, record_id, max_side=self.settings.max_side)
            if meta.get("label_set") != session.label_set.name:
                raise ValueError(f"it holds {meta.get('label_set')} labels, the model {session.label_set.name}")
            persons = load_persons(self.corrections_dir, record_id, labels.shape)
            session.continue_saved(labels, record_id, persons)
        except (FileNotFoundError, ValueError, OSError) as err:
            logger.warning("could not continue %s from correction %s: %s", session.source.name, record_id, err)
            return (
                f"its saved correction `{record_id}` could not be continued ({err}), so the model's "
                "proposal is shown: **Reopen** the record under Saved corrections to edit it"
            )
        return (
            f"continued from its saved correction `{record_id}` ({session.changed_pixels:,} pixels differ from "
            "the model's proposal); saving writes a new version of it, **Reset to proposal** shows the model's"
        )

    def continue_draft(self, session: Session) -> str | None:
        """Continue a photo just opened from its draft, if it has one; a note saying so."""
        if not self.drafts.of(session.owner).restore_into(session):
            return None
        return (
            f"continued from your unsaved draft ({session.changed_pixels:,} pixels edited); "
            "**Reset to proposal** drops it"
        )
