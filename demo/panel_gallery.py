"""Handlers of the saved corrections: save, accept, list, delete, reopen and export."""

from __future__ import annotations

import datetime as dt
import errno
import logging
import shutil
import zipfile
from pathlib import Path

import gradio as gr

from ssfnet.data.corrections import export_zip, latest_ids, list_corrections, trash_correction
from ssfnet.data.review import APPROVED, REVIEW_STATUSES, set_review
from ssfnet.interop import InteropError, export_corrections

from .context import AppContext, status_text
from .paths import page_roots, shown_path, shown_text
from .queue import review_caption
from .session import open_correction
from .widgets import mistake, require, selected_index

logger = logging.getLogger(__name__)

GALLERY_SIZE = 48
# The export choices as the page names them -> the format, the value the API takes (GalleryHandlers.export_as).
EXPORT_FORMATS = {
    "This app's zip (images, labels, meta, person ids)": "store",
    "COCO instances JSON (RLE masks, one per person and label)": "coco",
    "CVAT Segmentation mask 1.1": "cvat",
    "Label Studio tasks JSON (brush RLE)": "labelstudio",
    "CIHP (part labels + person ids)": "cihp",
}
# Where the exports that are a JSON file with the images beside it are written, inside their zip.
_JSON_EXPORTS = {"coco": "instances.json", "labelstudio": "tasks.json"}


class GalleryHandlers:
    """The corrections folder as the app shows it, for the app ``app``."""

    def __init__(self, app: AppContext) -> None:
        self.app = app
        self.roots = page_roots(app.settings)  # the page names folders relative to these

    def gallery_items(self, show_superseded: bool = False) -> tuple[list[tuple[str, str]], list[str]]:
        """The gallery's (thumbnail, caption) items, newest first, and their record ids."""
        root = self.app.corrections_dir
        records = list_corrections(root)
        if not show_superseded:
            # A record reopened and saved again lives on in its child: only the latest of each chain.
            latest = set(latest_ids(records))
            records = [m for m in records if m["id"] in latest]
        items, ids = [], []
        for meta in records[:GALLERY_SIZE]:
            thumb = self.app.thumbnails.get(root, meta)
            when = str(meta.get("created", ""))[:16].replace("T", " ")
            extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
            what = f"{meta.get('edited_pixels', 0):,} px edited"
            if extra.get("review") == "accepted proposal":
                what = "accepted as proposed"
            elif str(extra.get("edited_from") or ("record" if meta.get("parent") else "proposal")).startswith("record"):
                # Reopened and saved again: counted from the record reopened (the model's output is not stored).
                what += " from its parent"
            caption = (
                f"{meta.get('source_name') or meta['id']} · {when} UTC · {what} · {review_caption(meta)} · {meta['id']}"
            )
            items.append((str(thumb), caption))
            ids.append(meta["id"])
        return items, ids

    def save(self, session, accept: bool = False) -> dict:
        """Write the image, the label map and the metadata as a new correction record."""
        app, ui = self.app, self.app.ui
        root = app.corrections_dir
        session = require(session)
        if not session.unsaved:
            note = f"Nothing changed since this was saved as `{session.parent}`; not saved again."
            gr.Info(note.replace("`", ""))
            return {ui.message: note, ui.status: status_text(session)}
        if session.unreviewed and not accept:
            message = (
                "**Not saved:** these are the model's labels, unedited. Correct them, or press "
                "**Accept proposal as correct** if they need no correction (recorded as such)."
            )
            gr.Warning("Not saved: the proposal is unedited; correct it or accept it as correct.")
            return {ui.message: message, ui.status: status_text(session)}
        try:
            record_id = session.save(root, accept_proposal=accept)
        except (ValueError, OSError) as err:
            logger.warning("saving to %s failed: %s", root, err)
            problem = shown_text(str(err), self.roots)
            gr.Warning(f"Not saved: {problem}")
            return {ui.message: f"**Not saved:** {problem}", ui.status: status_text(session)}
        logger.info("saved correction %s (%d pixels changed) in %s", record_id, session.changed_pixels, root)
        gr.Info(f"Saved correction {record_id}")
        app.autosave(session)  # removes the draft: nothing is left unsaved
        items, ids = self.gallery_items()
        how = " (the proposal, accepted as correct)" if accept else ""
        return {
            ui.session: session,
            ui.gallery: items,
            ui.record_ids: ids,
            ui.message: f"Saved as `{record_id}`{how} in `{shown_path(root, self.roots)}`.",
            ui.status: status_text(session),
        }

    def accept_proposal(self, session) -> dict:
        """Save the model's proposal unedited, recorded in the metadata as reviewed and accepted as correct."""
        session = require(session)
        if not session.unreviewed:
            raise mistake("The labels were edited (or saved before): use Save correction.")
        return self.save(session, accept=True)

    def set_review(self, session, status, note, show_old=False, request: gr.Request = None) -> dict:
        """Set the review (to review, approved, rejected with a note) of the open photo's saved record."""
        session = require(session)
        if session.parent is None:
            raise mistake("Save this photo first: a review is of a saved correction.")
        if status == APPROVED and session.unsaved:
            raise mistake(
                f"The open labels differ from the saved record `{session.parent}`: save them (a new version, "
                "to review) or undo the edits before approving."
            )
        if status not in REVIEW_STATUSES:
            raise mistake(f"Choose a review: {', '.join(REVIEW_STATUSES)} (got {status!r}).")
        try:
            meta = set_review(
                self.app.corrections_dir, session.parent, status, note or "", by=getattr(request, "username", None)
            )
        except (ValueError, OSError) as err:  # FileNotFoundError: trashed meanwhile
            raise mistake(shown_text(f"Review not stored: {err}", self.roots)) from None
        logger.info("review of correction %s: %s", session.parent, status)
        ui = self.app.ui
        return self.refresh_gallery(show_old) | {
            ui.message: f"`{session.parent}` is now {review_caption(meta)}.",
        }

    def refresh_gallery(self, show_old=False) -> dict:
        """List the saved corrections (newest first; superseded versions only if asked)."""
        items, ids = self.gallery_items(bool(show_old))
        ui = self.app.ui
        return {ui.gallery: items, ui.record_ids: ids}

    def trash(self, record_id, show_old=False) -> dict:
        """Move a saved correction into the trash folder (recoverable: move its files back)."""
        record_id = (record_id or "").strip()
        try:
            folder = trash_correction(self.app.corrections_dir, record_id)
        except (FileNotFoundError, ValueError) as err:
            raise mistake(shown_text(f"Cannot delete {record_id!r}: {err}", self.roots)) from None
        gr.Info(f"Moved {record_id} to the trash")
        message = f"Moved `{record_id}` to `{shown_path(folder, self.roots)}`; move its three files back to restore it."
        ui = self.app.ui
        return self.refresh_gallery(show_old) | {ui.record_id: "", ui.message: message}

    def select_record(self, ids, evt: gr.SelectData):
        index = selected_index(evt)
        return ids[index] if 0 <= index < len(ids) else gr.skip()

    def reopen(self, record_id, opacity, hidden, label, session, request: gr.Request = None) -> dict:
        """Continue editing a saved correction; saving again writes a new record with it as parent."""
        app = self.app
        record_id = (record_id or "").strip()
        if not record_id:
            gr.Warning("Choose a saved correction first.")
            return gr.skip()
        try:
            reopened = open_correction(app.corrections_dir, record_id, max_side=app.settings.max_side)
        except (FileNotFoundError, ValueError, OSError) as err:
            problem = shown_text(str(err), self.roots)
            gr.Warning(f"Cannot reopen {record_id}: {problem}")
            return {app.ui.message: f"**Cannot reopen `{record_id}`:** {problem}. Nothing was changed."}
        reopened.owner = app.draft_owner(request)
        kept = app.leave(session)
        message = f"Reopened `{record_id}`; saving writes a new record with this one as its parent."
        if reopened.downscaled:
            h, w = reopened.source.size
            message += f" It is {w}x{h}: edited at {reopened.image.shape[1]}x{reopened.image.shape[0]}."
        if kept:
            message += f" Note: {kept}."
        return app.opened(reopened, opacity, hidden, label, message)

    def export_as(self, choice, all_versions=False) -> dict:
        """Export the corrections store in the format ``choice`` (a key or value of :data:`EXPORT_FORMATS`)
        as one zip to download: the latest record of each edit chain, or every record with ``all_versions``.

        The store is only read; the zip is written in the app's scratch folder under a temporary name
        and renamed, and a failed export (an empty store, a full disk, a record that cannot be read)
        removes what it wrote and says why on the page, the download left as it was.
        """
        ui = self.app.ui
        fmt = EXPORT_FORMATS.get(choice, choice)
        if fmt not in EXPORT_FORMATS.values():
            raise mistake(f"unknown export format {choice!r}: choose one of {', '.join(EXPORT_FORMATS)}")
        root = self.app.corrections_dir
        shown_root = shown_path(root, self.roots)
        if not list_corrections(root):
            message = f"No saved corrections in {shown_root} yet: save a correction first, then export."
            gr.Warning(message)
            return {ui.export_file: gr.skip(), ui.message: f"**Nothing to export.** {message}"}
        folder = self.app.scratch.new()
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        dest = folder / f"corrections-{fmt}-{stamp}.zip"
        try:
            count = self._export(root, fmt, dest, bool(all_versions))
        except (InteropError, OSError) as err:
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(err, OSError) and err.errno == errno.ENOSPC:
                problem = (
                    f"the disk of the app's scratch folder is full ({shown_path(folder.parent, self.roots)}). "
                    "Free some space and export again"
                )
            else:
                problem = shown_text(str(err.args[0] if isinstance(err, InteropError) else err), self.roots)
            gr.Warning(f"Export failed: {problem}")
            return {
                ui.export_file: gr.skip(),
                ui.message: f"**Export failed:** {problem}. The corrections in {shown_root} are unchanged.",
            }
        what = "record" if count == 1 else "records"
        named = next(label for label, value in EXPORT_FORMATS.items() if value == fmt)
        return {ui.export_file: str(dest), ui.message: f"Exported {count} {what} as {named}: `{dest.name}`."}

    @staticmethod
    def _export(root: Path, fmt: str, dest: Path, all_versions: bool) -> int:
        """Write the zip ``dest`` of ``root``'s records in format ``fmt``; returns how many records it holds."""
        if fmt == "store":  # every record, its id.txt naming the latest of each chain
            export_zip(root, dest)
            return len(list_corrections(root))
        if fmt not in _JSON_EXPORTS:
            return export_corrections(root, fmt, dest, all_versions=all_versions)[1]
        # A JSON with its images beside it: written in a folder of its own, then zipped.
        inside = dest.parent / f".{dest.stem}"
        _, count = export_corrections(root, fmt, inside / _JSON_EXPORTS[fmt], all_versions=all_versions)
        temporary = dest.with_name(f".{dest.name}.tmp")
        try:
            with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(inside.rglob("*")):
                    if path.is_file():
                        archive.write(path, path.relative_to(inside).as_posix())
            temporary.replace(dest)
        finally:
            temporary.unlink(missing_ok=True)
            shutil.rmtree(inside, ignore_errors=True)
        return count

    def export(self):
        """Zip the corrections (images/, labels/, meta/, label_sets.json, LIP-style id.txt and list.txt)."""
        root = self.app.corrections_dir
        if not list_corrections(root):
            gr.Warning(f"No saved corrections in {shown_path(root, self.roots)} yet.")
            return gr.skip()
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        dest = self.app.scratch.new() / f"corrections-{stamp}.zip"
        return str(export_zip(root, dest))
