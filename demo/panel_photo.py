"""Handlers that open a photo: an upload, an example, a queued photo or a kept draft.

Each one starts a new session in place of the current one, whose unsaved work is kept
as a draft first; all of them return the ``start_outputs`` (see
:meth:`demo.context.AppContext.opened`).
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np

from ssfnet import CheckpointError
from ssfnet.io import ImageError
from ssfnet.labels import get_label_set

from . import editing
from .context import DEFAULT_LABEL_SET, AppContext
from .drafts import describe as describe_draft
from .models import run_predictor
from .session import Session, read_upload
from .widgets import mistake, pending_strokes, selected_index


class PhotoHandlers:
    """Opening photos and drafts, for the app ``app``."""

    def __init__(self, app: AppContext) -> None:
        self.app = app

    def open_photo(
        self,
        path,
        checkpoint,
        multiscale,
        flip,
        opacity,
        hidden,
        label,
        session,
        progress,
        *,
        record=None,
        name=None,
        request: gr.Request | None = None,
    ) -> dict:
        """Read the photo at ``path``, run the model and start a new session (the ``start_outputs``).

        Unsaved work on the photo being replaced is kept as a draft; a photo with a draft
        continues from it, else one with a saved correction ``record`` (the queue's, or the
        record a photo being parsed again continued) from that record's labels.

        Args:
            name: The photo's name (default: the file's).
            request: Who opens it: their drafts are the ones continued and written (see
                :meth:`demo.access.Access.draft_owner`).
        """
        app = self.app
        progress(0.05, desc="Reading the photo")
        name = name or Path(path).name
        max_side = app.settings.max_side
        try:
            # Decoded reduced to the working size: memory follows it, not the upload's size.
            image, source = read_upload(path, name=name, max_side=max_side)
        except ImageError as err:
            gr.Warning(str(err))
            message = f"**Could not use this file:** {err}. Nothing was changed."
            return app.refused(session, opacity, hidden, label, message)
        h, w = source.size
        size = image.shape[:2]
        notes = list(source.notes)
        if size != (h, w):
            notes.append(
                f"{w}x{h} is larger than {max_side} px: parsed and edited at {size[1]}x{size[0]}; "
                "saving stores the full-resolution image with the labels enlarged to it"
            )
        details = {"multiscale": bool(multiscale), "flip": bool(flip)}
        opened = f"Parsed **{name}**"
        try:
            progress(0.2, desc="Loading the model")
            folder = app.predictors.resolve(checkpoint)
            predictor = app.predictors.get(folder)
            progress(0.4, desc=f"Parsing on {predictor.device}")
            proposal = run_predictor(predictor, image, bool(multiscale), bool(flip))
            label_set, model = predictor.label_set, predictor.name
            details |= {"checkpoint": folder, "device": str(predictor.device)}
        except (FileNotFoundError, CheckpointError) as err:
            # Said once, here: the model status above names the cause when no model exists at all.
            opened = f"Opened **{name}**"
            why = "" if app.predictors.problem() else f" ({err})"
            notes.insert(0, f"no model could be used{why}, so every pixel starts as background: label it by hand")
            label_set, model = get_label_set(DEFAULT_LABEL_SET), ""
            proposal = np.zeros(size, dtype=np.uint8)
        progress(0.9, desc="Drawing")
        kept = app.leave(session)
        session = Session.start(image, source, proposal, label_set, model=model, details=details)
        session.owner = app.draft_owner(request)
        continued = self._continue(session, record)
        for note in (continued, kept):
            if note:
                notes.append(note)
        message = opened + (f" with `{model}`." if model else ".")
        if notes:
            message += " Notes: " + "; ".join(notes) + "."
        return app.opened(session, opacity, hidden, label, message)

    def _continue(self, session: Session, record: str | None) -> str | None:
        """Continue a new ``session`` from its photo's draft, else from the saved ``record``; what to tell the user.

        A photo saved before without a ``record`` to continue keeps the model's proposal, and the note says how
        to continue from the saved labels instead.
        """
        app = self.app
        continued = app.continue_draft(session)
        if continued is None and record:
            return app.continue_saved(session, record)
        if continued is None and (saved := app.photo_queue.latest_record(session.source.sha256)):
            return (
                f"this photo was saved before as `{saved}`: this is the model's proposal; **Reopen** the record "
                "under Saved corrections (or open the photo from the queue) to continue from its labels"
            )
        return continued

    # Gradio finds the progress tracker by this default value, hence the call in the signature.
    def parse(
        self,
        upload,
        checkpoint,
        multiscale,
        flip,
        opacity,
        hidden,
        label,
        session,
        request: gr.Request,
        progress=gr.Progress(),  # noqa: B008
    ):
        """Read the photo, run the model and start a new session from its proposal."""
        if not upload:
            gr.Warning("Upload a photo first.")
            return gr.skip()
        return self.open_photo(
            upload, checkpoint, multiscale, flip, opacity, hidden, label, session, progress, request=request
        )

    # Gradio finds the progress tracker by this default value, hence the call in the signature.
    def reparse(
        self,
        checkpoint,
        multiscale,
        flip,
        opacity,
        hidden,
        label,
        session,
        request: gr.Request,
        progress=gr.Progress(),  # noqa: B008
    ):
        """Parse the open photo again (another checkpoint or options); its edits and saved labels carry over.

        Its unsaved edits go into its draft, which the photo then continues from (the new proposal
        becomes what the edits count from); a photo continuing a saved correction continues it.
        """
        if session is None:
            return gr.skip()
        path = self.app.photo_file(session)
        name = session.source.name or Path(path).name
        return self.open_photo(
            path,
            checkpoint,
            multiscale,
            flip,
            opacity,
            hidden,
            label,
            session,
            progress,
            record=session.parent,
            name=name,
            request=request,
        )

    def stash_strokes(self, session, editor_value):
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
        self.app.autosave(session)
        return session

    def pick_example(self, evt: gr.SelectData):
        examples = self.app.examples
        index = selected_index(evt)
        return str(examples[index]) if 0 <= index < len(examples) else gr.skip()

    def restore_draft(self, sha, session, opacity, hidden, label, request: gr.Request) -> dict:
        """Continue one of the sender's kept drafts (the photo's bytes are kept with it)."""
        app = self.app
        if not sha:
            raise mistake("Choose a draft first.")
        try:
            restored = app.drafts_of(request).load(sha)
        except (FileNotFoundError, ValueError) as err:
            raise mistake(str(err)) from None
        restored.owner = app.draft_owner(request)
        kept = app.leave(session) if session is None or session.source.sha256 != sha else None
        message = f"Restored the draft of **{restored.source.name}** ({restored.changed_pixels:,} pixels edited)."
        if kept:
            message += f" Note: {kept}."
        return app.opened(restored, opacity, hidden, label, message)

    def draft_choices(self, current=None, request: gr.Request = None):
        """The sender's drafts, newest first (the pick kept while it exists)."""
        choices = [(describe_draft(meta), sha) for sha, meta in self.app.drafts_of(request).listing()]
        shas = [sha for _, sha in choices]
        return gr.Dropdown(choices=choices, value=current if current in shas else (shas[0] if shas else None))
