"""Autosaved drafts: unsaved edits kept on disk, one per photo, so that no work is lost.

Every edit writes the session's labels to ``<corrections>/drafts/<photo sha>/``
(the photo's bytes once, the label maps and a small JSON); saving a correction,
or editing back to the proposal, removes the draft. Opening the same photo
again (an upload, an example, the queue) continues from its draft, and the
drafts list restores one without the photo at hand.

Drafts belong to their owner (:meth:`demo.access.Access.draft_owner`): a logged-in user's are theirs,
a page's are its own where the app serves other machines without logins, and only a
local-only app without logins shares them (one person, maybe in several tabs). An owner's
drafts live in a folder of their own under ``users/`` or ``pages/`` (:meth:`Drafts.of`),
named by a digest of the owner, so that no user's name becomes a path.

A page's drafts can be continued from that page alone: once its session has ended they are
nobody's work, so they expire after the session lifetime (:meth:`Drafts.expire_pages`, which the
app runs at start and then every few minutes as drafts are written). A logged-in user's drafts
and the shared ones of a local-only app are kept until saved or edited back to the proposal.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ssfnet.files import atomic_write_bytes
from ssfnet.io import read_image
from ssfnet.labels import get_label_set

from .session import Session, Source

LABELS_FILE = "labels.npz"
META_FILE = "draft.json"
# The folders of owners' drafts: logged-in users' and pages' (anonymous browser sessions).
USERS_DIR, PAGES_DIR = "users", "pages"


def _last_write(folder: Path) -> float:
    """The newest modification time of ``folder`` and the files in it; infinity when it is gone."""
    try:
        return max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.iterdir()])
    except (FileNotFoundError, NotADirectoryError):
        return float("inf")


class Drafts:
    """The drafts folder.

    Args:
        root: Folder of the drafts (created on the first write).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._expired_at = float("-inf")  # when expire_pages last looked (see its ``every_s``)

    def of(self, owner: str | None) -> Drafts:
        """The drafts of ``owner`` (``"user <name>"``, ``"page <id>"``, ...); None: the shared ones, these."""
        if owner is None:
            return self
        kind = USERS_DIR if owner.startswith("user ") else PAGES_DIR
        return Drafts(self.root / kind / hashlib.sha256(owner.encode()).hexdigest()[:32])

    def expire_pages(self, max_age_s: float, now: float | None = None, every_s: float = 0.0) -> int:
        """Remove the drafts of pages (anonymous sessions) not written for ``max_age_s`` seconds.

        Only the ``pages/`` folder of these drafts (the root ones) is looked at: a logged-in user's
        drafts and the shared ones are never removed here. A page folder left empty goes too.

        Args:
            max_age_s: How long a page's draft outlives its last write (the session lifetime).
            now: The time to measure against (``time.time()``; tests pass their own).
            every_s: Look only if the last look was at least this long ago (a call on every
                draft written stays cheap).

        Returns:
            How many drafts were removed.
        """
        now = time.time() if now is None else now
        if now - self._expired_at < every_s:
            return 0
        self._expired_at = now
        pages = self.root / PAGES_DIR
        if not pages.is_dir():
            return 0
        cutoff = now - max_age_s
        removed = 0
        for owner in [p for p in pages.iterdir() if p.is_dir()]:
            for draft in [p for p in owner.iterdir() if p.is_dir()]:
                if _last_write(draft) < cutoff:
                    shutil.rmtree(draft, ignore_errors=True)
                    removed += 1
            with contextlib.suppress(OSError):
                owner.rmdir()  # only when empty: the page may still write another draft
        return removed

    def folder(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a photo digest: {sha256!r}")
        return self.root / sha256

    def exists(self, sha256: str) -> bool:
        return (self.folder(sha256) / META_FILE).is_file()

    def keep(self, session: Session) -> bool:
        """Write ``session``'s draft if it has unsaved edits; remove the photo's draft once its work is done.

        The work is done when the session was saved or edited back to its proposal; a photo
        just opened (nothing done yet) leaves an existing draft alone, e.g. one it could not
        continue from because it was drawn with another label set.

        Returns:
            Whether a draft of the photo exists now.
        """
        if not session.has_work:
            if len(session.history) or not session.unsaved:
                self.remove(session.source.sha256)
            return self.exists(session.source.sha256)
        folder = self.folder(session.source.sha256)
        photo = folder / f"photo.{session.source.ext}"
        if not photo.is_file():
            atomic_write_bytes(photo, session.source.data)
        buffer = io.BytesIO()
        # Edited person ids travel with the labels; unedited ones are derived again on restoring.
        persons = {"persons": session.persons} if session.persons_edited else {}
        np.savez_compressed(buffer, labels=session.labels, proposal=session.proposal, **persons)
        atomic_write_bytes(folder / LABELS_FILE, buffer.getvalue())
        meta = {
            "source_name": session.source.name,
            "source_ext": session.source.ext,
            "source_size": list(session.source.size),
            "keep_bytes": session.source.keep_bytes,
            "label_set": session.label_set.name,
            "model": session.model,
            "details": session.details,
            "parent": session.parent,
            "proposal_record": session.proposal_record,
            "pixels_changed": session.changed_pixels,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        # The JSON is written last: a draft counts once it exists (see ``exists``).
        atomic_write_bytes(folder / META_FILE, json.dumps(meta, indent=2).encode())
        return True

    def remove(self, sha256: str) -> None:
        folder = self.folder(sha256)
        with contextlib.suppress(FileNotFoundError):
            (folder / META_FILE).unlink()
        shutil.rmtree(folder, ignore_errors=True)

    def meta(self, sha256: str) -> dict | None:
        try:
            return json.loads((self.folder(sha256) / META_FILE).read_text())
        except (OSError, ValueError):
            return None

    def load(self, sha256: str) -> Session:
        """The session kept in the draft of photo ``sha256`` (its edit history starts afresh).

        Raises:
            FileNotFoundError: no such draft.
            ValueError: the draft is unreadable.
        """
        folder = self.folder(sha256)
        meta = self.meta(sha256)
        if meta is None:
            raise FileNotFoundError(f"no draft of photo {sha256[:12]}")
        try:
            data = (folder / f"photo.{meta['source_ext']}").read_bytes()
            with np.load(folder / LABELS_FILE) as arrays:
                labels, proposal = arrays["labels"], arrays["proposal"]
                persons = arrays["persons"] if "persons" in arrays else None
            source = Source(
                name=meta.get("source_name"),
                data=data,
                ext=meta["source_ext"],
                size=tuple(meta["source_size"]),
                keep_bytes=bool(meta.get("keep_bytes")),
            )
            session = Session.start(
                read_image(data, max_pixels=1 << 40),
                source,
                proposal,
                get_label_set(meta["label_set"]),
                model=meta.get("model", ""),
                details=meta.get("details") or {},
                parent=meta.get("parent"),
            )
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"the draft of {meta.get('source_name') or sha256[:12]} is unreadable: {err}") from None
        session.proposal_record = meta.get("proposal_record")
        session.edit(labels, "restored draft")
        _restore_persons(session, persons)
        return session

    def restore_into(self, session: Session) -> bool:
        """Continue ``session`` (a photo just opened) from its draft, if the draft fits; returns whether it did."""
        meta = self.meta(session.source.sha256)
        if meta is None or meta.get("label_set") != session.label_set.name:
            return False
        try:
            with np.load(self.folder(session.source.sha256) / LABELS_FILE) as arrays:
                labels = arrays["labels"]
                persons = arrays["persons"] if "persons" in arrays else None
        except (OSError, KeyError, ValueError):
            return False
        if labels.shape != session.labels.shape:
            return False
        session.edit(labels, "restored draft")
        _restore_persons(session, persons)
        session.parent = session.parent or meta.get("parent")
        return True

    def listing(self) -> list[tuple[str, dict]]:
        """``(sha256, meta)`` of every draft, newest first."""
        if not self.root.is_dir():
            return []
        found = []
        for folder in self.root.iterdir():
            meta = self.meta(folder.name) if len(folder.name) == 64 else None
            if meta is not None:
                found.append((folder.name, meta))
        return sorted(found, key=lambda item: str(item[1].get("updated", "")), reverse=True)


def _restore_persons(session: Session, persons: np.ndarray | None) -> None:
    """Continue from a draft's edited person ids (undoable), when it has some of the photo's size."""
    if persons is not None and persons.shape == session.labels.shape and persons.dtype == np.uint8:
        session.edit_persons(persons, "restored draft's persons")


def describe(meta: dict) -> str:
    """One line for a draft in the chooser: file name, when, how many pixels edited."""
    when = str(meta.get("updated", ""))[:16].replace("T", " ")
    return f"{meta.get('source_name') or 'photo'} · {when} · {int(meta.get('pixels_changed', 0)):,} px edited"
