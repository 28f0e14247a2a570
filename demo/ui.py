"""The Gradio app: parse a photo, correct its labels exactly, save them as training data.

:func:`build_demo` assembles the ``gr.Blocks``; each user's work lives in a
``gr.State`` holding a :class:`demo.session.Session`, and the loaded models are
shared through :class:`demo.models.Predictors`. Every event has an API name,
so the app can be driven with ``gradio_client`` as well as from the browser.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import shutil
import weakref
from collections.abc import Iterable
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from ssfnet import CheckpointError
from ssfnet.checkpoint import read_metadata
from ssfnet.data.corrections import export_zip, latest_ids, list_corrections, load_correction, trash_correction
from ssfnet.io import ImageError, atomic_write_bytes, overlay, png_bytes
from ssfnet.labels import IGNORE_INDEX, LabelSet, get_label_set

from . import editing
from .cleanup import make_temp_dir
from .drafts import Drafts
from .drafts import describe as describe_draft
from .finetune import FinetuneBusy, FinetuneRequest, FinetuneRunner, agreement, status_html
from .keys import KEYS_JS, SHORTCUTS_MD
from .models import Predictors, run_predictor
from .queue import PhotoQueue
from .queue_ui import QueuePanel
from .render import Scratch, hex_colour, label_choices, label_name, legend_html, write_downloads
from .session import Session, open_correction, read_upload
from .settings import Settings

logger = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
EXAMPLES_DIR = ASSETS_DIR / "examples"
DEFAULT_LABEL_SET = "lip-20"
GALLERY_SIZE = 48
TOOLS = ("Pick label", "Relabel region", "Flood fill (similar colour)")
INTRO = """\
# SSFNet human parsing
Upload a photo of a person (or pick an example) to parse it into body parts and clothes.
Correct the result with the click tools on the overlay or paint in **Paint labels**, then
**Save correction** to store image + exact label map as training data.
"""
FINETUNE_HELP = """\
Fine-tune a checkpoint on the saved corrections (mixed with the original training data, if the
server has it) in a background process. A share of the corrections is held out and scored before
and after, with the original validation images, so both an improvement and any forgetting show.
The new checkpoint appears in the checkpoint lists when it is done; the base is never changed.
"""


def _example_paths() -> list[Path]:
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
            image, labels, _ = load_correction(root, meta["id"])
            label_set = get_label_set(meta.get("label_set", DEFAULT_LABEL_SET))
            picture = overlay(image, labels, label_set, alpha=0.5)
        except (OSError, ValueError, KeyError):
            # A broken record still gets a tile, so that it can be selected and its problem shown.
            picture = np.full((self.size, self.size, 3), 200, dtype=np.uint8)
        thumb = Image.fromarray(picture)
        thumb.thumbnail((self.size, self.size))
        # Written atomically: another user's request may serve the file meanwhile.
        return atomic_write_bytes(path, png_bytes(np.asarray(thumb)))


def mistake(message: str) -> gr.Error:
    """A ``gr.Error`` for a user's mistake: shown to the user, not logged as a server fault with a traceback."""
    return gr.Error(message, print_exception=False)


def _as_int(value, name: str) -> int:
    try:
        return int(round(float(value)))
    except (TypeError, ValueError):
        raise mistake(f"{name} must be a number, got {value!r}") from None


def _hidden_choices(label_set: LabelSet) -> list[tuple[str, str]]:
    """The hide-labels checkboxes: label ids as strings, the type Gradio's API documents for choices.

    (With int values the API refused the documented ``"0"``; the label dropdown takes custom
    values instead, so both ``2`` and ``"2"`` reach its handlers, which check them.)
    """
    return [(name, str(value)) for name, value in label_choices(label_set)]


def _hidden_set(hidden: Iterable | None) -> set[int]:
    return {int(v) for v in hidden or []}


def _label_value(label_set: LabelSet, value) -> int:
    """``value`` as a paintable id of ``label_set``; background (0) when it is none."""
    try:
        value = int(value)
    except (TypeError, ValueError):
        return 0
    return value if value in editing.paint_ids(label_set)[0] else 0


def _brush(label_set: LabelSet, selected: int = 0, size: int | None = None) -> gr.Brush:
    """A brush of the one colour of label ``selected``, ``size`` pixels wide (default: Gradio's).

    Only that colour is offered: a palette of every label let the brush be switched in the
    editor (or be reset by an update) apart from the "Label to apply" list, so strokes were
    applied as a label other than the one shown. The list is the one way to change it.
    """
    ids, colours = editing.paint_ids(label_set)
    colour = hex_colour(colours[list(ids).index(_label_value(label_set, selected))])
    return gr.Brush(default_size=size or "auto", colors=[colour], default_color=colour, color_mode="fixed")


def brush_size(session: Session | None) -> int | None:
    """A brush width proportional to the photo: 1/40 of its longer side (Gradio's fixed 25 px is
    a hair on a 1600 px photo and a smear on a 300 px one)."""
    if session is None:
        return None
    return max(3, round(max(session.labels.shape) / 40))


def pending_strokes(editor_value) -> list[np.ndarray]:
    """The editor's painted layers that hold strokes not yet applied (pixels at least half opaque)."""
    layers = [np.asarray(layer) for layer in (editor_value or {}).get("layers") or []]
    return [
        layer
        for layer in layers
        if layer.ndim == 3 and layer.shape[2] == 4 and (layer[..., 3] >= editing.ALPHA_THRESHOLD).any()
    ]


def build_demo(settings: Settings | None = None, predictors: Predictors | None = None) -> gr.Blocks:
    """Assemble the app.

    Args:
        settings: App settings (defaults: :class:`Settings`).
        predictors: Checkpoints and loaded models; default: from ``settings``.

    Returns:
        The ``gr.Blocks`` (queued; call ``launch`` on it, see :func:`launch_kwargs`).
    """
    settings = settings or Settings()
    predictors = predictors or Predictors(settings.checkpoints_dir, settings.checkpoint, settings.device)
    corrections_dir = Path(settings.corrections_dir)
    thumbnails = Thumbnails()
    scratch = Scratch()
    drafts = Drafts(corrections_dir / "drafts")
    photo_queue = PhotoQueue(corrections_dir / "queue", corrections_dir, drafts)
    # One fine-tune process per app: a server resource that every tab watches (see demo.finetune).
    runner = (
        FinetuneRunner(
            corrections_dir=corrections_dir,
            checkpoints_dir=predictors.checkpoints_dir,
            runs_dir=settings.runs_dir,
            device=settings.device,
            extra_args=settings.finetune_args,
        )
        if settings.finetune
        else None
    )
    examples = _example_paths()
    if examples:
        # Served as they are (never copied or moved), and accepted back as input when picked.
        gr.set_static_paths([EXAMPLES_DIR])

    def start_label_set() -> LabelSet:
        choice = predictors.default()
        if choice:
            try:
                return get_label_set(read_metadata(choice)["label_set"])
            except (CheckpointError, KeyError):
                pass
        return get_label_set(DEFAULT_LABEL_SET)

    initial_set = start_label_set()

    # ---- shared helpers -------------------------------------------------------------

    def status_text(session: Session | None) -> str:
        if session is None:
            return "No photo yet."
        n = session.changed_pixels
        share = 100 * n / max(1, session.labels.size)
        h, w = session.labels.shape
        if not session.unsaved:
            saved = f"saved as `{session.parent}`"
        else:
            saved = "not saved yet" if session.parent is None else "unsaved changes"
        return (
            f"**{n:,} pixels changed** from the proposal ({share:.2f}%) · {len(session.history)} undo step(s) · "
            f"{saved} · working size {w}x{h}"
        )

    def views(session: Session, opacity: float, hidden):
        """The outputs every edit refreshes (see ``view_outputs``): the overlay download is also what is shown.

        Each refresh also autosaves the session's draft (or removes it when nothing is left unsaved).
        """
        hide = _hidden_set(hidden)
        files = [str(p) for p in write_downloads(session, opacity, hide, scratch.new())]
        picture = files[2]
        editor_value = {"background": picture, "layers": [], "composite": None}
        autosave(session)
        legend = legend_html(session, session.label_set, hide)
        return session, picture, editor_value, legend, files, status_text(session)

    def autosave(session: Session) -> None:
        try:
            drafts.keep(session)
        except OSError as err:
            logger.warning("could not write the draft of %s: %s", session.source.name, err)
            gr.Warning(f"Could not autosave a draft: {err}")

    def leave(session: Session | None) -> str | None:
        """Before another photo replaces ``session``: keep its unsaved work as a draft; a note saying so."""
        if session is None or not session.has_work:
            return None
        autosave(session)
        name = session.source.name or "the previous photo"
        return (
            f"your unsaved edits of {name} are kept as a draft: open {name} again "
            "(queue, upload or **Drafts**) to continue"
        )

    def continue_draft(session: Session) -> str | None:
        """Continue a photo just opened from its draft, if it has one; a note saying so."""
        if not drafts.restore_into(session):
            return None
        return (
            f"continued from your unsaved draft ({session.changed_pixels:,} pixels edited); "
            "**Reset to proposal** drops it"
        )

    def require(session: Session | None) -> Session:
        if session is None:
            raise mistake("Parse a photo (or reopen a saved correction) first.")
        return session

    def label_set_updates(label_set: LabelSet, hidden, label, size: int | None = None) -> tuple:
        """New choices for the label dropdown, the hidden-labels checkboxes and the brush.

        The label chosen stays chosen (background where the new label set lacks it), and the
        brush gets its colour: the dropdown and the brush always name the same label.
        """
        keep = [str(v) for v in sorted(_hidden_set(hidden)) if v < label_set.num_ids or v == IGNORE_INDEX]
        value = _label_value(label_set, label)
        return (
            gr.Dropdown(choices=label_choices(label_set), value=value),
            gr.CheckboxGroup(choices=_hidden_choices(label_set), value=keep),
            _brush(label_set, value, size),
        )

    # ---- handlers --------------------------------------------------------------------

    def open_photo(path, checkpoint, multiscale, flip, opacity, hidden, label, session, progress) -> tuple:
        """Read the photo at ``path``, run the model and start a new session (the ``start_outputs``).

        Unsaved work on the photo being replaced is kept as a draft; a photo with a draft
        continues from it.
        """
        progress(0.05, desc="Reading the photo")
        name = Path(path).name
        try:
            full, source = read_upload(path, name=name)
        except ImageError as err:
            message = f"**Could not use this file:** {err}. Nothing was changed."
            gr.Warning(str(err))
            return (gr.skip(),) * 9 + (message,)
        h, w = full.shape[:2]
        size = editing.working_size(h, w, settings.max_side)
        image = editing.resize_image(full, size)
        notes = list(source.notes)
        if size != (h, w):
            notes.append(
                f"{w}x{h} is larger than {settings.max_side} px: parsed and edited at {size[1]}x{size[0]}; "
                "saving stores the full-resolution image with the labels enlarged to it"
            )
        details = {"multiscale": bool(multiscale), "flip": bool(flip)}
        opened = f"Parsed **{name}**"
        try:
            progress(0.2, desc="Loading the model")
            folder = predictors.resolve(checkpoint)
            predictor = predictors.get(folder)
            progress(0.4, desc=f"Parsing on {predictor.device}")
            proposal = run_predictor(predictor, image, bool(multiscale), bool(flip))
            label_set, model = predictor.label_set, predictor.name
            details |= {"checkpoint": folder, "device": str(predictor.device)}
        except (FileNotFoundError, CheckpointError) as err:
            # Said once, here: the model status above names the cause when no model exists at all.
            opened = f"Opened **{name}**"
            why = "" if predictors.problem() else f" ({err})"
            notes.insert(0, f"no model could be used{why}, so every pixel starts as background: label it by hand")
            label_set, model = get_label_set(DEFAULT_LABEL_SET), ""
            proposal = np.zeros(size, dtype=np.uint8)
        progress(0.9, desc="Drawing")
        kept = leave(session)
        session = Session.start(image, source, proposal, label_set, model=model, details=details)
        for note in (continue_draft(session), kept):
            if note:
                notes.append(note)
        message = opened + (f" with `{model}`." if model else ".")
        if notes:
            message += " Notes: " + "; ".join(notes) + "."
        label_dd, hidden_cb, brush = label_set_updates(label_set, hidden, label, brush_size(session))
        out = views(session, opacity, hidden)
        editor_update = gr.ImageEditor(value=out[2], brush=brush)
        return out[0], out[1], editor_update, out[3], out[4], out[5], label_dd, hidden_cb, gr.skip(), message

    # Gradio finds the progress tracker by this default value, hence the call in the signature.
    def parse(upload, checkpoint, multiscale, flip, opacity, hidden, label, session, progress=gr.Progress()):  # noqa: B008
        """Read the photo, run the model and start a new session from its proposal."""
        if not upload:
            gr.Warning("Upload a photo first.")
            return (gr.skip(),) * 10
        return open_photo(upload, checkpoint, multiscale, flip, opacity, hidden, label, session, progress)

    def stash_strokes(session, editor_value):
        """Before another photo replaces the session: apply the strokes not yet applied, so the draft keeps them."""
        layers = pending_strokes(editor_value)
        if session is None or not layers:
            return gr.skip()
        new = session.labels
        for layer in layers:
            if layer.shape[:2] != new.shape:
                layer = editing.resize_labels(layer, new.shape)
            new = editing.apply_strokes(new, layer, session.label_set)
        session.edit(new, "strokes not yet applied (kept in the draft)")
        autosave(session)
        return session

    def legend_for(session, hidden):
        """The legend with the hidden labels marked."""
        return legend_html(session, session.label_set if session else initial_set, _hidden_set(hidden))

    def rerender(session, opacity, hidden):
        """Redraw the overlay (opacity / hidden labels changed); the editor keeps its strokes."""
        if session is None:
            return gr.skip(), gr.skip()
        files = [str(p) for p in write_downloads(session, opacity, _hidden_set(hidden), scratch.new())]
        return files[2], files

    def record_click(evt: gr.SelectData):
        x, y = evt.index
        return int(x), int(y)

    def apply_click(session, x, y, tool, label, tolerance, opacity, hidden):
        """Apply a click tool at pixel (x, y) of the working image."""
        session = require(session)
        x, y = _as_int(x, "x"), _as_int(y, "y")
        h, w = session.labels.shape
        if not (0 <= x < w and 0 <= y < h):
            raise mistake(f"({x}, {y}) lies outside the {w}x{h} image")
        if tool == "Pick label":
            value = int(session.labels[y, x])
            gr.Info(f"Picked {label_name(session.label_set, value)}")
            brush = gr.ImageEditor(brush=_brush(session.label_set, value, brush_size(session)))
            return gr.skip(), gr.skip(), brush, gr.skip(), gr.skip(), gr.skip(), value
        value = _as_int(label, "label")
        if value not in editing.paint_ids(session.label_set)[0]:
            raise mistake(f"{value} is not a label of {session.label_set.name}")
        if tool == "Relabel region":
            mask = editing.connected_region(session.labels, x, y)
        elif tool == "Flood fill (similar colour)":
            # Only within the clicked label: a black skirt refilled must not take the black coat with it.
            mask = editing.colour_region(session.image, x, y, _as_int(tolerance, "tolerance"), session.labels)
        else:
            raise mistake(f"unknown tool {tool!r}; choose one of {', '.join(TOOLS)}")
        new = session.labels.copy()
        new[mask] = value
        changed = session.edit(new, f"{tool} at ({x}, {y})")
        if not changed:
            gr.Info("Nothing changed: that region already has this label.")
        return views(session, opacity, hidden) + (gr.skip(),)

    def click_in_browser(session, x, y, tool, label, tolerance, opacity, hidden, editor_value):
        """A click on the overlay; refused while the editor holds strokes that the redraw would drop."""
        if tool != "Pick label" and session is not None and pending_strokes(editor_value):
            gr.Warning(
                "Unapplied strokes in Paint labels: Apply strokes (or erase them) first; "
                f"the {tool.lower()} click would have discarded them, so it was not applied."
            )
            return (gr.skip(),) * 7
        return apply_click(session, x, y, tool, label, tolerance, opacity, hidden)

    def strokes(session, editor_value, opacity, hidden, snap: bool):
        session = require(session)
        layers = [np.asarray(layer) for layer in (editor_value or {}).get("layers") or []]
        if not layers:
            gr.Info("Paint on the image first: nothing to apply.")
            return (gr.skip(),) * 6
        h, w = session.labels.shape
        new = session.labels
        for layer in layers:
            if layer.ndim != 3 or layer.shape[2] != 4:
                raise gr.Error(f"the editor sent a layer of shape {layer.shape}; expected RGBA")
            if layer.shape[:2] != (h, w):
                gr.Warning(
                    f"The painted layer is {layer.shape[1]}x{layer.shape[0]} but the image {w}x{h}; "
                    "it was scaled to fit."
                )
                layer = editing.resize_labels(layer, (h, w))
            if snap:
                new = editing.apply_strokes_snapped(new, session.image, layer, session.label_set)
            else:
                new = editing.apply_strokes(new, layer, session.label_set)
        changed = session.edit(new, "snapped strokes" if snap else "strokes")
        if not changed:
            gr.Info("The strokes changed no label.")
        return views(session, opacity, hidden)

    def apply_strokes(session, editor_value, opacity, hidden):
        """Set every painted pixel to the label of its (snapped) brush colour."""
        return strokes(session, editor_value, opacity, hidden, snap=False)

    def snap_strokes(session, editor_value, opacity, hidden):
        """Like apply_strokes, but each colour's strokes are first fitted to image edges (GrabCut)."""
        return strokes(session, editor_value, opacity, hidden, snap=True)

    def undo(session, opacity, hidden):
        """Undo the last edit."""
        session = require(session)
        if session.undo() is None:
            gr.Info("Nothing to undo.")
        return views(session, opacity, hidden)

    def redo(session, opacity, hidden):
        """Redo the last undone edit."""
        session = require(session)
        if session.redo() is None:
            gr.Info("Nothing to redo.")
        return views(session, opacity, hidden)

    def reset(session, opacity, hidden):
        """Go back to the model's proposal (undoable)."""
        session = require(session)
        session.reset()
        return views(session, opacity, hidden)

    def gallery_items(show_superseded: bool = False) -> tuple[list[tuple[str, str]], list[str]]:
        records = list_corrections(corrections_dir)
        if not show_superseded:
            # A record reopened and saved again lives on in its child: only the latest of each chain.
            latest = set(latest_ids(records))
            records = [m for m in records if m["id"] in latest]
        items, ids = [], []
        for meta in records[:GALLERY_SIZE]:
            thumb = thumbnails.get(corrections_dir, meta)
            when = str(meta.get("created", ""))[:16].replace("T", " ")
            review = (meta.get("extra") or {}).get("review") if isinstance(meta.get("extra"), dict) else None
            what = (
                "accepted as proposed"
                if review == "accepted proposal"
                else f"{meta.get('edited_pixels', 0):,} px edited"
            )
            caption = f"{meta.get('source_name') or meta['id']} · {when} UTC · {what} · {meta['id']}"
            items.append((str(thumb), caption))
            ids.append(meta["id"])
        return items, ids

    def save(session, accept: bool = False):
        """Write the image, the label map and the metadata as a new correction record."""
        session = require(session)
        if not session.unsaved:
            gr.Info(f"Nothing changed since this was saved as {session.parent}; not saved again.")
            return (gr.skip(),) * 4 + (status_text(session),)
        if session.unreviewed and not accept:
            message = (
                "**Not saved:** these are the model's labels, unedited. Correct them, or press "
                "**Accept proposal as correct** if they need no correction (recorded as such)."
            )
            gr.Warning("Not saved: the proposal is unedited; correct it or accept it as correct.")
            return gr.skip(), gr.skip(), gr.skip(), message, status_text(session)
        try:
            record_id = session.save(corrections_dir, accept_proposal=accept)
        except (ValueError, OSError) as err:
            logger.warning("saving to %s failed: %s", corrections_dir, err)
            gr.Warning(f"Not saved: {err}")
            return gr.skip(), gr.skip(), gr.skip(), f"**Not saved:** {err}", status_text(session)
        logger.info("saved correction %s (%d pixels changed) in %s", record_id, session.changed_pixels, corrections_dir)
        gr.Info(f"Saved correction {record_id}")
        autosave(session)  # removes the draft: nothing is left unsaved
        items, ids = gallery_items()
        where = corrections_dir.resolve()
        how = " (the proposal, accepted as correct)" if accept else ""
        return session, items, ids, f"Saved as `{record_id}`{how} in `{where}`.", status_text(session)

    def accept_proposal(session):
        """Save the model's proposal unedited, recorded in the metadata as reviewed and accepted as correct."""
        session = require(session)
        if not session.unreviewed:
            raise mistake("The labels were edited (or saved before): use Save correction.")
        return save(session, accept=True)

    def refresh_gallery(show_old=False):
        """List the saved corrections (newest first; superseded versions only if asked)."""
        items, ids = gallery_items(bool(show_old))
        return items, ids

    def trash(record_id, show_old=False):
        """Move a saved correction into the trash folder (recoverable: move its files back)."""
        record_id = (record_id or "").strip()
        try:
            folder = trash_correction(corrections_dir, record_id)
        except (FileNotFoundError, ValueError) as err:
            raise mistake(f"Cannot delete {record_id!r}: {err}") from None
        gr.Info(f"Moved {record_id} to the trash")
        items, ids = gallery_items(bool(show_old))
        message = f"Moved `{record_id}` to `{folder}`; move its three files back to restore it."
        return items, ids, "", message

    def select_record(ids, evt: gr.SelectData):
        index = evt.index if isinstance(evt.index, int) else evt.index[0]
        return ids[index] if 0 <= index < len(ids) else gr.skip()

    def reopen(record_id, opacity, hidden, label, session):
        """Continue editing a saved correction; saving again writes a new record with it as parent."""
        record_id = (record_id or "").strip()
        if not record_id:
            gr.Warning("Choose a saved correction first.")
            return (gr.skip(),) * 10
        try:
            reopened = open_correction(corrections_dir, record_id, max_side=settings.max_side)
        except (FileNotFoundError, ValueError, OSError) as err:
            gr.Warning(f"Cannot reopen {record_id}: {err}")
            return (gr.skip(),) * 9 + (f"**Cannot reopen `{record_id}`:** {err}. Nothing was changed.",)
        kept = leave(session)
        session = reopened
        label_dd, hidden_cb, brush = label_set_updates(session.label_set, hidden, label, brush_size(session))
        out = views(session, opacity, hidden)
        editor_update = gr.ImageEditor(value=out[2], brush=brush)
        message = f"Reopened `{record_id}`; saving writes a new record with this one as its parent."
        if session.downscaled:
            h, w = session.source.size
            message += f" It is {w}x{h}: edited at {session.image.shape[1]}x{session.image.shape[0]}."
        if kept:
            message += f" Note: {kept}."
        return out[0], out[1], editor_update, out[3], out[4], out[5], label_dd, hidden_cb, gr.skip(), message

    def export():
        """Zip the corrections (images/, labels/, meta/, label_sets.json, LIP-style id.txt and list.txt)."""
        if not list_corrections(corrections_dir):
            gr.Warning(f"No saved corrections in {corrections_dir} yet.")
            return gr.skip()
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        dest = scratch.new() / f"corrections-{stamp}.zip"
        return str(export_zip(corrections_dir, dest))

    def refresh_checkpoints(current):
        """Re-scan the checkpoints folder (new fine-tuned checkpoints appear without a restart)."""
        choices = predictors.choices()
        folders = [folder for _, folder in choices]
        value = current if current in folders else (folders[0] if folders else None)
        return gr.Dropdown(choices=choices, value=value), model_status()

    def model_status() -> str:
        problem = predictors.problem()
        device = f"Device: **{predictors.device_description()}**."
        broken = predictors.unusable_note()
        if problem:
            return f"⚠️ **{problem}** You can still label photos by hand and reopen saved corrections. {device} {broken}"
        return f"{device} {broken}".strip()

    def brush_for(session, value):
        """Make the chosen label the brush colour, so the dropdown drives both the click tools and the brush."""
        label_set = session.label_set if session is not None else initial_set
        try:
            return gr.ImageEditor(brush=_brush(label_set, int(value), brush_size(session)))
        except (TypeError, ValueError):
            return gr.skip()

    def painting_chip(session, value):
        """What the brush paints, shown above the canvas: colour, id and name."""
        label_set = session.label_set if session is not None else initial_set
        value = _label_value(label_set, value)
        ids, colours = editing.paint_ids(label_set)
        colour = hex_colour(colours[list(ids).index(value)])
        size = brush_size(session)
        width = f" · brush {size} px" if size else ""
        name = html.escape(label_name(label_set, value))
        return (
            f"<div>Painting: <span style='display:inline-block;width:1.1em;height:1.1em;vertical-align:middle;"
            f"border:1px solid #888;background:{colour}'></span> <b>{value}: {name}</b>{width}</div>"
        )

    def key_label(session, key, current):
        """A label picked with the number keys (see demo.keys): the dropdown, brush and chip follow."""
        label_set = session.label_set if session is not None else initial_set
        try:
            value = int(str(key).split("#")[0])
        except ValueError:
            return (gr.skip(),) * 2
        if value not in editing.paint_ids(label_set)[0]:
            gr.Info(f"No label {value} in {label_set.name}")
            return (gr.skip(),) * 2
        return value, gr.ImageEditor(brush=_brush(label_set, value, brush_size(session)))

    def restore_draft(sha, session, opacity, hidden, label):
        """Continue a kept draft (the photo's bytes are kept with it)."""
        if not sha:
            raise mistake("Choose a draft first.")
        try:
            restored = drafts.load(sha)
        except (FileNotFoundError, ValueError) as err:
            raise mistake(str(err)) from None
        kept = leave(session) if session is None or session.source.sha256 != sha else None
        label_dd, hidden_cb, brush = label_set_updates(restored.label_set, hidden, label, brush_size(restored))
        out = views(restored, opacity, hidden)
        message = f"Restored the draft of **{restored.source.name}** ({restored.changed_pixels:,} pixels edited)."
        if kept:
            message += f" Note: {kept}."
        editor_update = gr.ImageEditor(value=out[2], brush=brush)
        return out[0], out[1], editor_update, out[3], out[4], out[5], label_dd, hidden_cb, gr.skip(), message

    def draft_choices(current=None):
        choices = [(describe_draft(meta), sha) for sha, meta in drafts.listing()]
        shas = [sha for _, sha in choices]
        return gr.Dropdown(choices=choices, value=current if current in shas else (shas[0] if shas else None))

    def pick_example(evt: gr.SelectData):
        index = evt.index if isinstance(evt.index, int) else evt.index[0]
        return str(examples[index]) if 0 <= index < len(examples) else gr.skip()

    # ---- model comparison and fine-tuning ----------------------------------------------

    def compare(session, first, second, multiscale, flip, opacity, hidden):
        """Parse the current photo with two checkpoints and show both proposals side by side."""
        session = require(session)
        pictures, notes = [], []
        for choice in (first, second):
            try:
                predictor = predictors.get(predictors.resolve(choice))
            except (FileNotFoundError, CheckpointError) as err:
                raise mistake(f"Cannot compare: {err}") from None
            labels = run_predictor(predictor, session.image, bool(multiscale), bool(flip))
            hide = frozenset(_hidden_set(hidden))
            pictures.append(overlay(session.image, labels, predictor.label_set, alpha=float(opacity), hidden=hide))
            if predictor.label_set.name == session.label_set.name:
                share = agreement(labels, session.labels, session.label_set)
                notes.append(f"`{predictor.name}` agrees with the current labels on **{share:.1f}%** of the pixels")
            else:
                notes.append(f"`{predictor.name}` predicts {predictor.label_set.name}, not {session.label_set.name}")
        return pictures[0], pictures[1], "; ".join(notes) + "."

    def compare_choices(first, second):
        """Offer the current checkpoints in both comparison lists (keeping the picks that still exist)."""
        choices = predictors.choices()
        folders = [folder for _, folder in choices]
        first = first if first in folders else (folders[0] if folders else None)
        second = second if second in folders else (folders[1] if len(folders) > 1 else first)
        return gr.Dropdown(choices=choices, value=first), gr.Dropdown(choices=choices, value=second)

    def base_choices(base):
        """Offer the current checkpoints as fine-tune bases (the pick kept while it exists, else the default)."""
        choices = predictors.choices()
        folders = [folder for _, folder in choices]
        return gr.Dropdown(choices=choices, value=base if base in folders else (folders[0] if folders else None))

    def finetune_view(checkpoint_value, first, second, base, select_new: bool):
        """Status, log and polling state of the app's fine-tune, and the checkpoint lists as they are now.

        Polling (``select_new``) leaves the lists alone until the fine-tune has finished (a list
        redrawn every two seconds would close under the user's pointer), then offers the new
        checkpoint beside its base; a refresh always re-reads them.
        """
        job = runner.job
        if job is None:
            info = None
            text, log, running = status_html(None, corrections=len(list_corrections(corrections_dir))), "", False
        else:
            info = job.progress()
            text, log, running = status_html(job, info=info), job.log_tail(), job.running
        finished = info is not None and info["status"] == "finished"
        if select_new and not finished:
            return (text, log, gr.Timer(active=running)) + (gr.skip(),) * 4
        choices = predictors.choices()
        folders = [folder for _, folder in choices]
        new = (info.get("report") or {}).get("checkpoint") if finished else None
        if select_new and new in folders:
            # The base and its fine-tuned successor, ready to compare on the current photo.
            first, second = job.request.base, new
        value = checkpoint_value if checkpoint_value in folders else (folders[0] if folders else None)
        first = first if first in folders else value
        second = second if second in folders else value
        return (
            text,
            log,
            gr.Timer(active=running),
            gr.Dropdown(choices=choices, value=value),
            gr.Dropdown(choices=choices, value=first),
            gr.Dropdown(choices=choices, value=second),
            gr.Dropdown(choices=choices, value=base if base in folders else value),
        )

    def finetune_poll(checkpoint_value, first, second, base):
        return finetune_view(checkpoint_value, first, second, base, select_new=True)

    def finetune_status(checkpoint_value, first, second, base):
        """The fine-tune's status and log, and the checkpoint lists (re-read from disk)."""
        text, log, _, *lists = finetune_view(checkpoint_value, first, second, base, select_new=False)
        return text, log, *lists

    def finetune_polling():
        """Poll (the panel's timer) while a fine-tune runs; kept out of the API, where it means nothing."""
        job = runner.job
        return gr.Timer(active=job is not None and job.running)

    def finetune_start(base, minutes, lr, share, holdout, freeze):
        """Start fine-tuning ``base`` on the saved corrections in a background process."""
        if not base:
            # Never a silent default: the run must be of the checkpoint the panel shows.
            problem = predictors.problem()
            raise mistake(problem or "Choose a base checkpoint first (Refresh lists the checkpoints there are now).")
        if not list_corrections(corrections_dir):
            raise mistake(f"No saved corrections in {corrections_dir} yet: correct and save some photos first.")
        try:
            request = FinetuneRequest(
                predictors.resolve(base), float(minutes), float(lr), float(share), float(holdout), bool(freeze)
            )
        except (FileNotFoundError, TypeError, ValueError) as err:
            raise mistake(str(err)) from None
        try:
            job = runner.start(request)
        except FinetuneBusy as err:
            gr.Warning(str(err))
            job = runner.job
        except OSError as err:
            raise gr.Error(f"Could not start the fine-tune: {err}") from None
        else:
            logger.info("fine-tune %s started: %s", job.name, " ".join(job.command))
            gr.Info(f"Fine-tuning started ({job.name}).")
        return status_html(job), job.log_tail()

    def finetune_corrections():
        """After a save: the panel's count of saved corrections, unless a fine-tune's status is shown."""
        if runner.job is not None:
            return gr.skip()
        return status_html(None, corrections=len(list_corrections(corrections_dir)))

    def finetune_cancel():
        """Stop the running fine-tune; nothing is published."""
        if runner.cancel():
            gr.Info("Cancelling the fine-tune…")
        else:
            gr.Info("No fine-tune is running.")
        job = runner.job
        return status_html(job, corrections=len(list_corrections(corrections_dir))), job.log_tail() if job else ""

    # ---- layout ----------------------------------------------------------------------

    queue_panel = QueuePanel(photo_queue, settings, predictors, open_photo)

    # Gradio's cache of served files is pruned hourly, so a long-running server keeps a bounded disk.
    with gr.Blocks(title="SSFNet human parsing", delete_cache=(3600, 3600)) as demo:
        session_state = gr.State(None)
        record_ids = gr.State([])
        gr.Markdown(INTRO)
        # Labels name these outputs in the API (gradio_client): unlabelled ones would be "value_<id>".
        model_md = gr.Markdown(model_status(), label="Model status", elem_id="model-status")
        message = gr.Markdown("", label="Message", elem_id="message")
        with gr.Row():
            with gr.Column(scale=2, min_width=280):
                upload = gr.File(label="Photo", file_types=["image"], type="filepath", elem_id="upload")
                if examples:
                    # Two rows of two: four in a row in this column left three behind a scrollbar.
                    example_gallery = gr.Gallery(
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
                parse_btn = gr.Button("Parse", variant="primary", elem_id="parse")
                queue_panel.layout()
                with gr.Accordion("Model options", open=False):
                    # Custom values: a checkpoint added since the page was built is a valid pick (the
                    # handlers accept only folders offered at that moment, see Predictors.resolve).
                    checkpoint = gr.Dropdown(
                        choices=predictors.choices(),
                        value=predictors.default(),
                        label="Checkpoint",
                        allow_custom_value=True,
                    )
                    refresh_ckpt = gr.Button("Refresh checkpoint list", size="sm")
                    multiscale = gr.Checkbox(False, label="Multi-scale (slower, usually better)")
                    flip = gr.Checkbox(False, label="Also parse the mirrored image (flip)")
                opacity = gr.Slider(0.0, 1.0, value=0.55, step=0.05, label="Overlay opacity", elem_id="opacity")
                legend = gr.HTML(legend_html(None, initial_set, {0}), label="Legend", elem_id="legend")
                with gr.Accordion("Show / hide labels", open=False):
                    hidden = gr.CheckboxGroup(
                        choices=_hidden_choices(initial_set), value=["0"], label="Hidden in the overlay"
                    )
            with gr.Column(scale=5):
                status = gr.Markdown(status_text(None), label="Status", elem_id="status")
                # Custom values let the API's documented string ids ("2") through; handlers check them.
                label = gr.Dropdown(
                    choices=label_choices(initial_set),
                    value=0,
                    label="Label to apply (click tools and brush colour)",
                    allow_custom_value=True,
                    elem_id="label",
                )
                # The label being applied, in its colour, in view above the canvas while painting.
                painting = gr.HTML(painting_chip(None, 0), elem_id="painting")
                with gr.Tabs():
                    with gr.Tab("Overlay & click tools", id="view"):
                        view = gr.Image(
                            label="Overlay (click to apply the click tool; full screen to zoom)",
                            type="numpy",
                            format="png",
                            interactive=False,
                            height=600,
                            buttons=["fullscreen", "download"],
                            elem_id="overlay",
                        )
                        with gr.Row():
                            # Picking is the default: a stray click must not change labels.
                            tool = gr.Radio(list(TOOLS), value=TOOLS[0], label="Click tool", scale=2, elem_id="tool")
                            tolerance = gr.Slider(0, 128, value=24, step=1, label="Flood-fill colour tolerance")
                        # Out of the annotator's way, kept for typing a point and for the API's apply_click.
                        with gr.Accordion("Apply at a typed point (x, y)", open=False):
                            with gr.Row():
                                click_x = gr.Number(label="x", precision=0, minimum=0)
                                click_y = gr.Number(label="y", precision=0, minimum=0)
                                apply_click_btn = gr.Button("Apply at x, y", size="sm")
                    with gr.Tab("Paint labels", id="paint"):
                        gr.Markdown(
                            "The brush paints the label chosen in **Label to apply**, in its colour (see the "
                            "legend); each painted pixel becomes exactly one label. The eraser removes paint not "
                            "yet applied. Apply strokes before using the click tools: other edits redraw this canvas. "
                            "Zoom with the canvas's zoom controls."
                        )
                        editor = gr.ImageEditor(
                            type="numpy",
                            image_mode="RGBA",
                            format="png",
                            sources=(),
                            transforms=(),
                            layers=False,
                            brush=_brush(initial_set),
                            eraser=gr.Eraser(),
                            label="Paint labels",
                            height=640,
                            elem_id="editor",
                        )
                        with gr.Row():
                            apply_btn = gr.Button("Apply strokes", variant="primary", elem_id="apply-strokes")
                            snap_btn = gr.Button("Apply strokes snapped to edges (GrabCut)")
                with gr.Row():
                    undo_btn = gr.Button("↶ Undo", elem_id="undo")
                    redo_btn = gr.Button("↷ Redo", elem_id="redo")
                    reset_btn = gr.Button("Reset to proposal", elem_id="reset")
                    save_btn = gr.Button("Save correction", variant="primary", elem_id="save")
                    accept_btn = gr.Button("Accept proposal as correct", elem_id="accept")
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
                with gr.Accordion("Saved corrections", open=False):
                    gr.Markdown(f"Folder: `{corrections_dir.resolve()}`")
                    gallery = gr.Gallery(
                        label="Saved corrections (newest first)",
                        columns=6,
                        height=300,
                        fit_columns=False,
                        object_fit="contain",
                        allow_preview=False,
                        format="png",
                        elem_id="gallery",
                    )
                    with gr.Row():
                        record_id = gr.Textbox(label="Correction id", scale=3, elem_id="record-id")
                        reopen_btn = gr.Button("Reopen for editing")
                        trash_btn = gr.Button("Delete (to the trash folder)", elem_id="trash")
                        refresh_btn = gr.Button("Refresh list")
                        show_old = gr.Checkbox(False, label="Show superseded versions")
                    with gr.Row():
                        export_btn = gr.Button("Export all as zip")
                        export_file = gr.File(label="Zip of the corrections folder", interactive=False)
                with gr.Accordion("Drafts (unsaved work, autosaved)", open=False):
                    with gr.Row():
                        draft_dd = gr.Dropdown(choices=[], label="Draft", scale=3, elem_id="drafts")
                        restore_btn = gr.Button("Restore draft", elem_id="restore-draft")
                        drafts_refresh_btn = gr.Button("Refresh drafts")
                with gr.Accordion("Keyboard shortcuts", open=False):
                    gr.Markdown(SHORTCUTS_MD)
                # Written by the number-key handler (demo.keys); hidden, but in the page.
                key_box = gr.Textbox(visible="hidden", elem_id="key-label", label="Label key")
                with gr.Accordion("Compare models", open=False):
                    gr.Markdown(
                        "Parse the current photo with two checkpoints, e.g. a base and its fine-tuned version "
                        "on a reopened correction; agreement is measured against the current labels."
                    )
                    with gr.Row():
                        compare_a = gr.Dropdown(
                            choices=predictors.choices(),
                            value=predictors.default(),
                            label="Model A",
                            scale=3,
                            allow_custom_value=True,
                        )
                        compare_b = gr.Dropdown(
                            choices=predictors.choices(),
                            value=predictors.default(),
                            label="Model B",
                            scale=3,
                            allow_custom_value=True,
                        )
                        compare_btn = gr.Button("Compare on this photo", scale=1, elem_id="compare")
                    with gr.Row():
                        compare_view_a = gr.Image(label="Model A", type="numpy", format="png", interactive=False)
                        compare_view_b = gr.Image(label="Model B", type="numpy", format="png", interactive=False)
                    compare_md = gr.Markdown("", label="Agreement", elem_id="compare-agreement")
                if runner is not None:
                    with gr.Accordion("Fine-tune on saved corrections", open=False):
                        gr.Markdown(FINETUNE_HELP)
                        with gr.Row():
                            finetune_base = gr.Dropdown(
                                choices=predictors.choices(),
                                value=predictors.default(),
                                label="Base checkpoint",
                                allow_custom_value=True,
                                elem_id="finetune-base",
                            )
                            finetune_minutes = gr.Number(10, label="Time budget (minutes)", minimum=0.1)
                            finetune_lr = gr.Number(1e-3, label="Learning rate", minimum=0)
                        with gr.Row():
                            finetune_share = gr.Slider(0.05, 1.0, value=0.5, step=0.05, label="Corrections' share")
                            finetune_holdout = gr.Slider(0.0, 0.5, value=0.2, step=0.05, label="Held out")
                            finetune_freeze = gr.Checkbox(False, label="Freeze the backbone (faster, less forgetting)")
                        with gr.Row():
                            finetune_btn = gr.Button("Start fine-tuning", variant="primary", elem_id="finetune-start")
                            finetune_cancel_btn = gr.Button("Cancel", elem_id="finetune-cancel")
                            finetune_refresh_btn = gr.Button("Refresh", elem_id="finetune-refresh")
                        finetune_html = gr.HTML(
                            status_html(None, corrections=len(list_corrections(corrections_dir))),
                            label="Fine-tune status",
                            elem_id="finetune-status",
                        )
                        finetune_log = gr.Textbox(
                            label="Log", lines=10, max_lines=10, interactive=False, elem_id="finetune-log"
                        )
                        finetune_timer = gr.Timer(2.0, active=False)

        view_outputs = [session_state, view, editor, legend, downloads, status]
        start_outputs = view_outputs + [label, hidden, upload, message]

        parse_event = dict(
            fn=parse,
            inputs=[upload, checkpoint, multiscale, flip, opacity, hidden, label, session_state],
            outputs=start_outputs,
            # Model runs share one limit, so a busy CPU/GPU queues parses instead of thrashing.
            concurrency_limit=settings.concurrency,
            concurrency_id="model",
        )
        # Strokes not yet applied go into the draft before another photo replaces the session.
        stash_io = ([session_state, editor], [session_state])
        parse_btn.click(stash_strokes, *stash_io, api_visibility="private").then(api_name="parse", **parse_event)
        upload.upload(stash_strokes, *stash_io, api_visibility="private").then(api_visibility="private", **parse_event)
        if examples:
            example_gallery.select(pick_example, None, upload, api_visibility="private").then(
                stash_strokes, *stash_io, api_visibility="private"
            ).then(api_visibility="private", **parse_event)
        queue_panel.wire(
            open_inputs=[checkpoint, multiscale, flip, opacity, hidden, label, session_state],
            start_outputs=start_outputs,
            stash=stash_strokes,
            stash_io=stash_io,
            concurrency={"concurrency_limit": settings.concurrency, "concurrency_id": "model"},
        )
        # Change, not release: typing a value in the slider's box (Enter) releases nothing. Dragging
        # changes it many times: always_last runs the latest value once the running redraw ends.
        opacity.change(
            rerender,
            [session_state, opacity, hidden],
            [view, downloads],
            api_name="rerender",
            trigger_mode="always_last",
            show_progress="hidden",
        )
        hidden.input(rerender, [session_state, opacity, hidden], [view, downloads], api_visibility="private").then(
            legend_for, [session_state, hidden], legend, api_visibility="private"
        )

        click_inputs = [session_state, click_x, click_y, tool, label, tolerance, opacity, hidden]
        view.select(record_click, None, [click_x, click_y], api_visibility="private").then(
            click_in_browser, click_inputs + [editor], view_outputs + [label], api_visibility="private"
        )
        apply_click_btn.click(apply_click, click_inputs, view_outputs + [label], api_name="apply_click")

        label.input(brush_for, [session_state, label], editor, api_visibility="private")
        label.change(painting_chip, [session_state, label], painting, api_visibility="private", show_progress="hidden")
        key_box.change(key_label, [session_state, key_box, label], [label, editor], api_visibility="private")
        demo.load(None, js=KEYS_JS)
        paint_inputs = [session_state, editor, opacity, hidden]
        apply_btn.click(apply_strokes, paint_inputs, view_outputs, api_name="apply_strokes")
        snap_btn.click(snap_strokes, paint_inputs, view_outputs, api_name="snap_strokes")
        undo_btn.click(undo, [session_state, opacity, hidden], view_outputs, api_name="undo")
        redo_btn.click(redo, [session_state, opacity, hidden], view_outputs, api_name="redo")
        reset_btn.click(reset, [session_state, opacity, hidden], view_outputs, api_name="reset")

        save_outputs = [session_state, gallery, record_ids, message, status]
        save_event = save_btn.click(save, [session_state], save_outputs, api_name="save")
        accept_event = accept_btn.click(accept_proposal, [session_state], save_outputs, api_name="accept_proposal")
        for event in (save_event, accept_event):
            event.then(queue_panel.show, queue_panel.position, queue_panel.table, api_visibility="private")
        refresh_btn.click(refresh_gallery, show_old, [gallery, record_ids], api_name="list_corrections")
        show_old.input(refresh_gallery, show_old, [gallery, record_ids], api_visibility="private")
        gallery.select(select_record, [record_ids], record_id, api_visibility="private")
        trash_btn.click(trash, [record_id, show_old], [gallery, record_ids, record_id, message], api_name="trash")
        reopen_btn.click(stash_strokes, *stash_io, api_visibility="private").then(
            reopen, [record_id, opacity, hidden, label, session_state], start_outputs, api_name="reopen"
        )
        restore_btn.click(stash_strokes, *stash_io, api_visibility="private").then(
            restore_draft, [draft_dd, session_state, opacity, hidden, label], start_outputs, api_name="restore_draft"
        )
        drafts_refresh_btn.click(draft_choices, draft_dd, draft_dd, api_name="drafts")
        demo.load(draft_choices, None, draft_dd, api_visibility="private")
        export_btn.click(export, None, export_file, api_name="export_zip")
        refresh_event = refresh_ckpt.click(
            refresh_checkpoints, [checkpoint], [checkpoint, model_md], api_name="checkpoints"
        ).then(compare_choices, [compare_a, compare_b], [compare_a, compare_b], api_visibility="private")
        demo.load(refresh_checkpoints, [checkpoint], [checkpoint, model_md], api_visibility="private")
        demo.load(compare_choices, [compare_a, compare_b], [compare_a, compare_b], api_visibility="private")
        compare_btn.click(
            compare,
            [session_state, compare_a, compare_b, multiscale, flip, opacity, hidden],
            [compare_view_a, compare_view_b, compare_md],
            api_name="compare",
            concurrency_limit=settings.concurrency,
            concurrency_id="model",
        )
        if runner is not None:
            finetune_inputs = [checkpoint, compare_a, compare_b, finetune_base]
            finetune_outputs = [finetune_html, finetune_log, *finetune_inputs]
            finetune_btn.click(
                finetune_start,
                [finetune_base, finetune_minutes, finetune_lr, finetune_share, finetune_holdout, finetune_freeze],
                [finetune_html, finetune_log],
                api_name="finetune_start",
            ).then(finetune_polling, None, finetune_timer, api_visibility="private")
            finetune_cancel_btn.click(finetune_cancel, None, [finetune_html, finetune_log], api_name="finetune_cancel")
            for event in (save_event, accept_event):
                event.then(finetune_corrections, None, finetune_html, api_visibility="private")
            refresh_event.then(base_choices, finetune_base, finetune_base, api_visibility="private")
            finetune_refresh_btn.click(
                finetune_status, finetune_inputs, finetune_outputs, api_name="finetune_status"
            ).then(finetune_polling, None, finetune_timer, api_visibility="private")
            # Polling shows no progress overlay: it runs every two seconds while a fine-tune is on.
            finetune_timer.tick(
                finetune_poll,
                finetune_inputs,
                [finetune_html, finetune_log, finetune_timer, *finetune_inputs],
                api_visibility="private",
                show_progress="hidden",
            )
            # A tab opened during a fine-tune starts polling; every tab sees the checkpoints offered now.
            demo.load(finetune_status, finetune_inputs, finetune_outputs, api_visibility="private").then(
                finetune_polling, None, finetune_timer, api_visibility="private"
            )
        demo.load(refresh_gallery, None, [gallery, record_ids], api_visibility="private")
    demo.queue(default_concurrency_limit=4)
    return demo


def launch_kwargs(settings: Settings) -> dict:
    """Keyword arguments of ``demo.launch`` for ``settings``."""
    return {
        "server_name": settings.host,
        "server_port": settings.port,
        "share": settings.share,
        "max_file_size": settings.max_file_size,
        "show_error": True,
    }
