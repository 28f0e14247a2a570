"""The review step of the corrections store: each record is *to review*, *approved* or *rejected*.

A record's review lives in its meta file (``meta/<id>.json``)::

    "review_status": {"status": "rejected", "note": "left sleeve missed", "by": "ana", "at": "2026-...+00:00"},
    "review_log": [ earlier review_status entries, oldest first ]

A record without ``review_status`` is *to review*: every record starts so, and saving an edit of a
record makes a new record, to review again. Setting a review rewrites the meta atomically as the
store writes every file (a dot-temporary in ``meta/``, flushed, then renamed over the meta), so a
reader sees the old meta or the new one, never a mix; a temporary left by a killed writer is
swept like a save's (:func:`ssfnet.data.correction_files.sweep_corrections`). Two reviewers saving
at once each write a whole meta: the later review wins, and the earlier one is lost from the log.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ssfnet.data.correction_files import check_id, read_meta, save_error, write_temp

__all__ = ["APPROVED", "REJECTED", "REVIEW_STATUSES", "TO_REVIEW", "is_approved", "review_status", "set_review"]

TO_REVIEW, APPROVED, REJECTED = "to review", "approved", "rejected"
REVIEW_STATUSES = (TO_REVIEW, APPROVED, REJECTED)
MAX_NOTE = 2000

# Reviews by threads of one process (the app's users) are read-modify-written one at a time.
_LOCK = threading.Lock()


def review_status(meta: dict[str, Any]) -> dict[str, Any]:
    """A record's review: ``{"status", "note", "by", "at"}``; *to review* when none (or an unreadable one) is stored."""
    entry = meta.get("review_status")
    if isinstance(entry, dict) and entry.get("status") in REVIEW_STATUSES:
        return {
            "status": entry["status"],
            "note": str(entry.get("note") or ""),
            "by": entry.get("by"),
            "at": entry.get("at"),
        }
    return {"status": TO_REVIEW, "note": "", "by": None, "at": None}


def is_approved(meta: dict[str, Any]) -> bool:
    """Whether a record's review approves it."""
    return review_status(meta)["status"] == APPROVED


def set_review(
    root: str | os.PathLike, record_id: str, status: str, note: str = "", *, by: str | None = None
) -> dict[str, Any]:
    """Set the review of record ``record_id``; the review it had goes to its ``review_log``.

    Args:
        root: Corrections folder.
        record_id: The record.
        status: One of :data:`REVIEW_STATUSES`.
        note: Why (required to reject; at most 2000 characters).
        by: Who reviewed it, if known.

    Returns:
        The record's meta as now stored (with ``"id"``).

    Raises:
        ValueError: unknown status, a rejection without a note, a bad note or id; nothing is written.
        FileNotFoundError: no record ``record_id`` (or its meta is unreadable).
        OSError: writing failed; the meta is as it was.
    """
    check_id(record_id)
    if status not in REVIEW_STATUSES:
        raise ValueError(f"review status must be one of {', '.join(REVIEW_STATUSES)}, got {status!r}")
    if not isinstance(note, str):
        raise ValueError(f"a review note is text, got {type(note).__name__}")
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise ValueError(f"a review note has at most {MAX_NOTE} characters, got {len(note)}")
    if status == REJECTED and not note:
        raise ValueError("a rejection needs a note saying what is wrong")
    meta_dir = Path(root) / "meta"
    path = meta_dir / f"{record_id}.json"
    with _LOCK:
        meta = read_meta(path) if path.is_file() else None
        if meta is None:
            raise FileNotFoundError(f"no correction {record_id} in {root}")
        meta.pop("id", None)
        if isinstance(meta.get("review_status"), dict):
            log = meta.get("review_log") if isinstance(meta.get("review_log"), list) else []
            meta["review_log"] = [*log, meta["review_status"]]
        meta["review_status"] = {
            "status": status,
            "note": note,
            "by": by,
            "at": datetime.now(timezone.utc).isoformat(),
        }
        data = json.dumps(meta, indent=2, allow_nan=False).encode()
        temporaries: list[Path] = []
        try:
            # Named so that the sweep of killed writers removes it (".<id>.<...>.meta.json.tmp").
            temporary = write_temp(meta_dir, record_id, f".review-{secrets.token_hex(4)}.meta.json", data, temporaries)
            if not path.is_file():  # trashed meanwhile: a review must not bring back a meta without its files
                raise FileNotFoundError(f"correction {record_id} was deleted while being reviewed")
            os.replace(temporary, path)
        except BaseException as err:
            for leftover in temporaries:
                with contextlib.suppress(OSError):
                    leftover.unlink()
            if isinstance(err, OSError) and not isinstance(err, FileNotFoundError):
                raise save_error(err, f"could not store the review of {record_id} under {root}") from err
            raise
    return {**meta, "id": record_id}
