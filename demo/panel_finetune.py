"""Handlers of the fine-tune panel: start, cancel and watch the app's one background fine-tune.

The job itself (its process, status file and log) is :class:`demo.finetune_runner.FinetuneRunner`'s;
these handlers only turn it into the panel's status, log, polling timer and checkpoint lists, and
compare the last fine-tune's new checkpoint with its base on one of its held-out corrections
(through the saved corrections' reopen and the models' comparison). They also keep the server's
rules: a time budget of at least a minute and at most ``--finetune-max-minutes``, and a cancel only
from whoever started the fine-tune or an admin (:mod:`demo.access`). The page sees paths relative to
the app's folders (:mod:`demo.paths`).
"""

from __future__ import annotations

import html
import logging

import gradio as gr

from ssfnet.data.corrections import list_corrections, photo_of
from ssfnet.data.review import is_approved
from train.finetune.budget import budget_problem

from .access import Access, requester
from .context import AppContext
from .finetune_runner import (
    FinetuneBusy,
    FinetuneNotYours,
    FinetuneRequest,
    FinetuneRunner,
    figures_html,
    status_html,
)
from .panel_gallery import GalleryHandlers
from .panel_models import ModelHandlers
from .panel_photo import PhotoHandlers
from .paths import page_roots, shown_path, shown_text
from .widgets import mistake

logger = logging.getLogger(__name__)


class FinetuneHandlers:
    """The fine-tune panel of the app ``app`` (which offers it: ``app.runner`` is set)."""

    def __init__(self, app: AppContext, models: ModelHandlers) -> None:
        self.app = app
        self.models = models
        # Stateless handlers of other panels whose steps the held-out comparison takes.
        self.gallery = GalleryHandlers(app)
        self.photo = PhotoHandlers(app)
        self.access = Access(app.settings)
        self.roots = page_roots(app.settings)

    def _shown(self, text: str) -> str:
        return shown_text(text, self.roots)

    @property
    def runner(self) -> FinetuneRunner:
        assert self.app.runner is not None, "the fine-tune panel is off"
        return self.app.runner

    def _corrections(self) -> int:
        return len(list_corrections(self.app.corrections_dir))

    def _approved(self) -> int:
        """How many photos a fine-tune on approved corrections only would use.

        Those whose latest record is approved, the latest chosen as the fine-tune chooses it (by
        photo, not only by edit chain: :func:`train.finetune.data.latest_per_photo`).
        """
        latest: dict[str, dict] = {}
        for meta in list_corrections(self.app.corrections_dir):  # newest first: a photo's first is its latest
            latest.setdefault(photo_of(meta), meta)
        return sum(1 for meta in latest.values() if is_approved(meta))

    def base_choices(self, base):
        """Offer the current checkpoints as fine-tune bases (the pick kept while it exists, else the default)."""
        choices, (value,) = self.models.choices(base)
        return gr.Dropdown(choices=choices, value=value)

    def view(self, checkpoint_value, first, second, base, select_new: bool) -> dict:
        """Status, log and polling state of the app's fine-tune, and the checkpoint lists as they are now.

        Polling (``select_new``) leaves the lists alone until the fine-tune has finished (a list
        redrawn every two seconds would close under the user's pointer), then offers the new
        checkpoint beside its base; a refresh always re-reads them.
        """
        ui = self.app.ui
        job = self.runner.job
        if job is None:
            info = None
            text, log, running = status_html(None, corrections=self._corrections()), "", False
            if last := self.runner.last_report():  # a fine-tune before the app's restart
                name, report = last
                text += self._shown(f"<p>The last fine-tune here ({html.escape(name)}):</p>{figures_html(report)}")
        else:
            info = job.progress()
            text, log, running = self._shown(status_html(job, info=info)), self._shown(job.log_tail()), job.running
        shown = {ui.finetune_html: text, ui.finetune_log: log, ui.finetune_timer: gr.Timer(active=running)}
        finished = info is not None and info["status"] == "finished"
        if select_new and not finished:
            return shown
        choices, (value,) = self.models.choices(checkpoint_value)
        folders = [folder for _, folder in choices]
        new = (info.get("report") or {}).get("checkpoint") if finished else None
        if select_new and new:
            # The base and its fine-tuned successor, ready to compare on the current photo (the
            # report names folders by their server paths, the lists by their names).
            try:
                first, second = self.app.predictors.resolve(job.request.base), self.app.predictors.resolve(new)
            except FileNotFoundError:
                pass
        lists = {ui.checkpoint: value, ui.compare_a: first, ui.compare_b: second, ui.finetune_base: base}
        return shown | {
            component: gr.Dropdown(choices=choices, value=pick if pick in folders else value)
            for component, pick in lists.items()
        }

    def poll(self, checkpoint_value, first, second, base) -> dict:
        return self.view(checkpoint_value, first, second, base, select_new=True)

    def status(self, checkpoint_value, first, second, base) -> dict:
        """The fine-tune's status and log, and the checkpoint lists (re-read from disk)."""
        outputs = self.view(checkpoint_value, first, second, base, select_new=False)
        del outputs[self.app.ui.finetune_timer]  # not an output of this call: see ``polling``
        return outputs

    def polling(self):
        """Poll (the panel's timer) while a fine-tune runs; kept out of the API, where it means nothing."""
        job = self.runner.job
        return gr.Timer(active=job is not None and job.running)

    def start(
        self,
        base,
        minutes,
        lr,
        share,
        holdout,
        freeze,
        blend,
        anyway=False,
        approved_only=False,
        request: gr.Request | None = None,
    ) -> dict:
        """Start fine-tuning ``base`` on the saved corrections in the background, owned by ``request``'s sender.

        With ``approved_only`` only the photos whose latest correction a reviewer approved are used.
        """
        app = self.app
        if not base:
            # Never a silent default: the run must be of the checkpoint the panel shows.
            problem = app.predictors.problem()
            raise mistake(problem or "Choose a base checkpoint first (Refresh lists the checkpoints there are now).")
        if not self._corrections():
            folder = shown_path(app.corrections_dir, self.roots)
            raise mistake(f"No saved corrections in {folder} yet: correct and save some photos first.")
        if approved_only and not self._approved():
            raise mistake(
                "No approved corrections yet: approve saved photos under **Review** (or untick *Approved "
                "corrections only*)."
            )
        try:
            # An empty (or zero) learning rate, share or blend leaves the choice to the fine-tune (see FinetuneRequest).
            options = FinetuneRequest(
                str(app.predictors.folder(base)), float(minutes), float(lr) if lr else None,
                float(share) if share else None, float(holdout), bool(freeze), float(blend) if blend else None,
                bool(anyway), bool(approved_only),
            )  # fmt: skip
        except (FileNotFoundError, TypeError, ValueError) as err:
            raise mistake(self._shown(str(err))) from None
        longest = app.settings.finetune_max_minutes
        if options.minutes > longest:
            raise mistake(
                f"A fine-tune from this page may take at most {longest} minutes (asked: {options.minutes:g}); "
                "ask for less, or run python -m train.finetune on the server."
            )
        if problem := budget_problem(options.minutes):
            raise mistake(problem[0].upper() + problem[1:] + ".")
        try:
            job = self.runner.start(options, owner=requester(request))
        except FinetuneBusy as err:
            gr.Warning(str(err))
            job = self.runner.job
        except OSError as err:
            raise gr.Error(self._shown(f"Could not start the fine-tune: {err}")) from None
        else:
            logger.info("fine-tune %s started for %s: %s", job.name, job.owner or "?", " ".join(job.command))
            gr.Info(f"Fine-tuning started ({job.name}).")
        ui = app.ui
        return {ui.finetune_html: self._shown(status_html(job)), ui.finetune_log: self._shown(job.log_tail())}

    def compare_held_out(
        self, session, opacity, hidden, label, multiscale, flip, request: gr.Request | None = None
    ) -> dict:
        """Open a held-out correction of the last fine-tune and compare its base with the new checkpoint on it.

        What *Reopen for editing* and *Compare models* do, in one click: the correction (one the
        fine-tune never trained on; the next of them on each click) becomes the open photo, and both
        models' proposals are shown beside each other with their agreement with its labels.
        """
        app, ui = self.app, self.app.ui
        last = self.runner.last_report()
        if last is None:
            raise mistake("No fine-tune has finished here yet: start one above, and compare once it is done.")
        name, report = last
        if not report.get("checkpoint"):
            raise mistake(f"The last fine-tune ({name}) published no checkpoint: there is nothing to compare.")
        try:
            first, second = app.predictors.resolve(report.get("base")), app.predictors.resolve(report["checkpoint"])
        except FileNotFoundError:
            raise mistake(
                f"The base or the new checkpoint of {name} is no longer offered (Refresh lists the checkpoints)."
            ) from None
        meta = app.corrections_dir / "meta"
        held = [i for i in report.get("held_out_ids") or [] if (meta / f"{i}.json").is_file()]
        if not held:
            raise mistake(f"{name} has no held-out correction left to compare on (none held out, or all deleted).")
        current = getattr(session, "parent", None)
        record = held[(held.index(current) + 1) % len(held)] if current in held else held[0]
        opened = self.gallery.reopen(record, opacity, hidden, label, session, request)
        if not isinstance(opened, dict) or opened.get(ui.session) is None:
            raise mistake(f"Could not open the held-out correction {record}.")
        compared = self.models.compare(opened[ui.session], first, second, multiscale, flip, opacity, hidden)
        choices, _ = self.models.choices()
        note = f"On the held-out correction `{record}` ({held.index(record) + 1} of {len(held)}, never trained on): "
        return (
            opened
            | compared
            | {
                ui.record_id: record,
                ui.compare_a: gr.Dropdown(choices=choices, value=first),
                ui.compare_b: gr.Dropdown(choices=choices, value=second),
                ui.compare_md: note + compared[ui.compare_md],
            }
        )

    def corrections(self):
        """After a save: the panel's count of saved corrections, unless a fine-tune's status is shown."""
        if self.runner.job is not None:
            return gr.skip()
        return status_html(None, corrections=self._corrections())

    def cancel(self, request: gr.Request | None = None) -> dict:
        """Stop the running fine-tune (only for whoever started it, or an admin); nothing is published."""
        try:
            cancelled = self.runner.cancel(requester(request), admin=self.access.is_admin(request))
        except FinetuneNotYours as err:
            raise mistake(f"Not cancelled: {err}. {self._who_may_cancel()}") from None
        gr.Info("Cancelling the fine-tune…" if cancelled else "No fine-tune is running.")
        job = self.runner.job
        ui = self.app.ui
        return {
            ui.finetune_html: self._shown(status_html(job, corrections=self._corrections())),
            ui.finetune_log: self._shown(job.log_tail()) if job else "",
        }

    def _who_may_cancel(self) -> str:
        if self.access.logins:
            return "Only the user who started it or the admin can cancel it; it stops by itself within its time budget."
        # Without logins a user is a page load: reloading the page loses the right to cancel.
        return "Only the page that started it can cancel it; it stops by itself within its time budget."
