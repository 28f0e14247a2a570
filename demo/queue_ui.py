"""The queue panel of the app: load a folder or many uploads, next / previous, rank by uncertainty.

:class:`QueuePanel` lays out its components where :meth:`QueuePanel.layout` is
called inside the ``gr.Blocks`` and wires their events in :meth:`QueuePanel.wire`
(which needs the app's other components). Opening a photo goes through the app's
own ``open_photo``, so a queued photo is parsed, drafted and saved like an upload.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gradio as gr

from ssfnet import CheckpointError
from ssfnet.checkpoint import METADATA_FILE
from ssfnet.io import ImageError

from .access import Access
from .drafts import Drafts
from .models import Predictors, in_model_thread
from .paths import page_roots, shown_text
from .queue import PhotoQueue, mean_entropy
from .session import read_upload
from .settings import Settings


def _mistake(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)


class QueuePanel:
    """The queue's components and handlers.

    Args:
        queue: The app's photo queue.
        settings: App settings (``photos_dir``, who may type a folder, working size).
        predictors: Checkpoints, for ranking.
        open_photo: The app's ``open_photo(path, checkpoint, multiscale, flip, opacity, hidden,
            label, session, progress, record=...)``, returning ``{component: value}`` for its start
            outputs (``record``: the photo's saved correction to continue from).
    """

    def __init__(
        self, queue: PhotoQueue, settings: Settings, predictors: Predictors, open_photo: Callable[..., dict]
    ) -> None:
        self.queue = queue
        self.settings = settings
        self.predictors = predictors
        self.open_photo = open_photo
        self.access = Access(settings)

    def layout(self) -> None:
        """Create the panel's components at the current place of the Blocks."""
        with gr.Accordion("Queue of photos", open=True, elem_id="queue"):
            self.position = gr.State(-1, time_to_live=self.settings.session_minutes * 60)
            folder = self.settings.photos_dir
            self.folder = gr.Textbox(
                str(folder) if folder else "",
                label="Folder of photos" + ("" if self.settings.local_only else " (set by the server)"),
                interactive=self.settings.local_only or folder is None,
                elem_id="queue-folder",
            )
            with gr.Row():
                self.load_btn = gr.Button("Load folder", size="sm", elem_id="queue-load")
                self.rank_btn = gr.Button("Rank by uncertainty", size="sm", elem_id="queue-rank")
            self.uploads = gr.File(
                label="… or add many photos", file_count="multiple", file_types=["image"], elem_id="queue-upload"
            )
            with gr.Row():
                self.prev_btn = gr.Button("◀ Previous", size="sm", elem_id="queue-prev")
                self.next_btn = gr.Button("Next ▶", size="sm", elem_id="queue-next")
            self.table = gr.HTML(self.queue.table_html(None, self._drafts(None)), label="Queue", elem_id="queue-table")

    # ---- handlers -------------------------------------------------------------------

    def _drafts(self, request: gr.Request | None) -> Drafts:
        """The drafts ``request``'s sender sees: a photo shows "draft" only to whoever has its draft."""
        return self.queue.drafts.of(self.access.draft_owner(request))

    def _allowed(self, folder: Path) -> bool:
        if self.settings.local_only:
            return True
        base = self.settings.photos_dir
        return base is not None and folder.resolve().is_relative_to(Path(base).resolve())

    def load_folder(self, folder: str, request: gr.Request = None):
        """Queue the photos of a folder (by name); the first opens with Next."""
        folder = (folder or "").strip()
        if not folder:
            raise _mistake("Type the folder of the photos first.")
        path = Path(folder).expanduser()
        if not self._allowed(path):
            raise _mistake("This app serves other machines: it queues only the folder it was started with.")
        if not path.is_dir():
            raise _mistake(f"{folder} is not a folder")
        photos = self.queue.load_folder(path)
        if not photos:
            gr.Warning(f"No photos in {folder}")
        return self._table(-1, request)

    def _table(self, position: int | None, request: gr.Request | None) -> dict:
        """The queue's table with ``position`` marked (None: keep the position as it is)."""
        updates = {self.table: self.queue.table_html(position, self._drafts(request))}
        if position is not None:
            updates[self.position] = position
        return updates

    def add_uploads(self, files, request: gr.Request = None):
        """Append uploaded photos to the queue (copied into the queue's folder)."""
        if not files:
            return gr.skip()
        self.queue.add_uploads(files)
        return self._table(None, request)

    def show(self, position, request: gr.Request = None):
        return self.queue.table_html(position, self._drafts(request))

    def step(
        self, delta: int, position, checkpoint, multiscale, flip, opacity, hidden, label, session, progress, request
    ):
        photos = self.queue.photos()
        if not photos:
            raise _mistake("The queue is empty: load a folder of photos or add some first.")
        target = int(position if position is not None else -1) + delta
        if target < 0 or target >= len(photos):
            gr.Info("That was the last photo of the queue." if delta > 0 else "This is the first photo of the queue.")
            return gr.skip()
        # A photo saved before opens its latest saved labels, as Reopen would: saving again makes
        # a new version of that record, not a second record of the photo.
        record = self.queue.latest_record(self.queue.digest(photos[target]))
        outputs = self.open_photo(
            str(photos[target]),
            checkpoint,
            multiscale,
            flip,
            opacity,
            hidden,
            label,
            session,
            progress,
            record=record,
            request=request,
        )
        return {**outputs, **self._table(target, request)}

    # Gradio finds the progress tracker by this default value, hence the call in the signature.
    def next(
        self,
        position,
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
        """Open the next photo of the queue."""
        return self.step(1, position, checkpoint, multiscale, flip, opacity, hidden, label, session, progress, request)

    def previous(
        self,
        position,
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
        """Open the previous photo of the queue."""
        return self.step(-1, position, checkpoint, multiscale, flip, opacity, hidden, label, session, progress, request)

    def rank(self, checkpoint, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        """Order the queue by the model's uncertainty (mean pixel entropy), most uncertain first."""
        if not self.queue.photos():
            raise _mistake("The queue is empty: load a folder of photos or add some first.")
        try:
            name = self.predictors.resolve(checkpoint)
            folder = self.predictors.folder(name)
            predictor = self.predictors.get(name)
            stamp = (folder / METADATA_FILE).stat().st_mtime_ns
        except (FileNotFoundError, CheckpointError) as err:
            raise _mistake(shown_text(f"Ranking needs a model: {err}", page_roots(self.settings))) from None
        model_key = f"{name}@{stamp}"

        def score(path: Path) -> float:
            try:
                image, _ = read_upload(path, max_side=self.settings.max_side)
            except ImageError:
                return -1.0  # unreadable photos go last
            return mean_entropy(in_model_thread(predictor.predict_proba, image))

        def report(done: int, total: int, name: str) -> None:
            progress((done, total), desc=f"Scoring {name}", unit="photos")

        self.queue.rank(model_key, score, report)
        return self._table(-1, request)

    # ---- events ---------------------------------------------------------------------

    def wire(self, *, open_inputs: list, start_outputs: list, stash: Callable, stash_io: tuple, concurrency: dict):
        """Connect the panel's events.

        Args:
            open_inputs: The inputs of ``open_photo`` after ``path`` (checkpoint ... session).
            start_outputs: The outputs of ``open_photo``.
            stash: The app's ``stash_strokes``, run before a photo is replaced.
            stash_io: Its ``(inputs, outputs)``.
            concurrency: Keyword arguments that put model runs in the app's model queue.
        """
        outputs = [*start_outputs, self.table, self.position]
        step_inputs = [self.position, *open_inputs]
        for button, fn, name in (
            (self.next_btn, self.next, "queue_next"),
            (self.prev_btn, self.previous, "queue_prev"),
        ):
            button.click(stash, *stash_io, api_visibility="private").then(
                fn, step_inputs, outputs, api_name=name, **concurrency
            )
        self.load_btn.click(self.load_folder, self.folder, [self.table, self.position], api_name="queue_folder")
        self.uploads.upload(self.add_uploads, self.uploads, [self.table, self.position], api_visibility="private")
        self.rank_btn.click(
            self.rank, open_inputs[0], [self.table, self.position], api_name="queue_rank", **concurrency
        )
