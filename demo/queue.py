"""A queue of photos to annotate: a folder or many uploads, each photo's status, ranked by uncertainty.

The queue lives on disk in ``<corrections>/queue/`` (the list of photos and the
uncertainty scores), and a photo's status is read from the corrections and
drafts folders, so all of it is kept across restarts: *saved* (a correction of
the photo exists), *draft* (unsaved edits are kept, see :mod:`demo.drafts`) or
*to do*. Photos are known by the SHA-256 of their bytes, so a renamed or moved
copy keeps its status.

"Rank by uncertainty" orders the photos by the model's mean pixel entropy
(normalised to 0-1 by ``log K``): a correction teaches the model most where it
is least sure. Scores are cached per photo and checkpoint.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ssfnet.data.corrections import latest_ids, list_corrections
from ssfnet.data.review import APPROVED, REJECTED, TO_REVIEW, review_status
from ssfnet.files import atomic_write_bytes

from .drafts import Drafts

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
STATUS_ICONS = {"saved": "✅ saved", "draft": "✏️ draft", "to do": "⬜ to do"}
REVIEW_ICONS = {TO_REVIEW: "◻ to review", APPROVED: "✔ approved", REJECTED: "✖ rejected"}


def review_caption(meta: dict) -> str:
    """A record's review as the gallery and the queue show it (a rejection with its note)."""
    review = review_status(meta)
    text = REVIEW_ICONS[review["status"]]
    return f"{text}: {review['note']}" if review["status"] == REJECTED else text


def mean_entropy(proba: np.ndarray) -> float:
    """Mean pixel entropy of K x H x W class probabilities, divided by ``log K`` (0 = sure, 1 = uniform)."""
    p = np.clip(np.asarray(proba, dtype=np.float32), 1e-8, 1.0)
    k = p.shape[0]
    return float((-(p * np.log(p)).sum(0)).mean() / np.log(k)) if k > 1 else 0.0


def photos_in(folder: Path) -> list[Path]:
    """The photos directly in ``folder``, sorted by name (hidden files left out)."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES and not p.name.startswith(".")
    )


def _photo_digests(meta: dict) -> tuple:
    """The digests a saved correction is known by: its stored image's and the upload's it was saved from."""
    extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
    return meta.get("image_sha256"), extra.get("source_sha256")


class PhotoQueue:
    """The app's queue of photos, shared by its users and kept in ``<root>``.

    Args:
        root: Folder of the queue's state (``queue.json``, ``uncertainty.json``, ``uploads/``).
        corrections_dir: The corrections folder (a photo with a record there is *saved*).
        drafts: The drafts (a photo with a draft is *draft*).
    """

    def __init__(self, root: str | os.PathLike, corrections_dir: str | os.PathLike, drafts: Drafts) -> None:
        self.root = Path(root)
        self.corrections_dir = Path(corrections_dir)
        self.drafts = drafts
        self._digests: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    # ---- the list ------------------------------------------------------------------

    def _read(self, name: str) -> dict:
        try:
            data = json.loads((self.root / name).read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write(self, name: str, data: dict) -> None:
        atomic_write_bytes(self.root / name, json.dumps(data, indent=1).encode())

    def photos(self) -> list[Path]:
        """The queued photos in queue order (ones deleted from disk since are left out)."""
        return [Path(p) for p in self._read("queue.json").get("photos", []) if Path(p).is_file()]

    @property
    def ranked_by(self) -> str | None:
        return self._read("queue.json").get("ranked_by")

    def set_photos(self, photos: Iterable[Path], ranked_by: str | None = None) -> list[Path]:
        photos = list(dict.fromkeys(Path(p).resolve() for p in photos))
        with self._lock:
            self._write("queue.json", {"photos": [str(p) for p in photos], "ranked_by": ranked_by})
        return photos

    def load_folder(self, folder: Path) -> list[Path]:
        """Queue the photos of ``folder`` (by name), replacing the queue."""
        return self.set_photos(photos_in(folder))

    def add_uploads(self, files: Iterable[str | os.PathLike]) -> list[Path]:
        """Copy uploaded photos into ``uploads/`` (named by their digest) and append them to the queue."""
        uploads = self.root / "uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        added = []
        for file in files:
            file = Path(file)
            if file.suffix.lower() not in PHOTO_SUFFIXES:
                continue
            target = uploads / f"{self.digest(file)[:16]}-{file.name}"
            if not target.exists():
                shutil.copyfile(file, target)
            added.append(target)
        return self.set_photos([*self.photos(), *added], self.ranked_by)

    # ---- status and scores ------------------------------------------------------------

    def digest(self, path: Path) -> str:
        """SHA-256 of a photo's bytes (cached by path, size and modification time)."""
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._digests:
            self._digests[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        return self._digests[key]

    def latest_record(self, sha: str) -> str | None:
        """The id of the newest saved correction of the photo ``sha`` that no later one was edited from."""
        records = [meta for meta in list_corrections(self.corrections_dir) if sha in _photo_digests(meta)]
        latest = latest_ids(records)  # newest first, as listed
        return latest[0] if latest else None

    def reviews(self) -> dict[str, str]:
        """The review (:func:`review_caption`) of each saved photo's latest record, by the photo's digests."""
        records = list_corrections(self.corrections_dir)
        latest = set(latest_ids(records))
        shown: dict[str, str] = {}
        for meta in records:  # newest first: a photo's first latest record is the one it opens with
            if meta["id"] in latest:
                for sha in _photo_digests(meta):
                    if sha:
                        shown.setdefault(sha, review_caption(meta))
        return shown

    def saved_digests(self) -> set[str]:
        return {sha for meta in list_corrections(self.corrections_dir) for sha in _photo_digests(meta)}

    def statuses(self, photos: list[Path], drafts: Drafts | None = None) -> list[str]:
        """Each photo's status, its drafts looked up in ``drafts`` (default: the queue's, shared)."""
        drafts = drafts or self.drafts
        saved = self.saved_digests()
        out = []
        for path in photos:
            sha = self.digest(path)
            out.append("draft" if drafts.exists(sha) else "saved" if sha in saved else "to do")
        return out

    def scores(self) -> dict[str, float]:
        return self._read("uncertainty.json")

    def rank(self, model_key: str, score: Callable[[Path], float], progress: Callable | None = None) -> list[Path]:
        """Order the queue by ``score`` (most uncertain first), computing only the scores not cached.

        Args:
            model_key: Names the model the scores belong to (cached per photo and model).
            score: Uncertainty of one photo.
            progress: Called as ``progress(done, total, name)`` before each photo.
        """
        photos = self.photos()
        cache = self.scores()
        values = {}
        for i, path in enumerate(photos):
            key = f"{self.digest(path)}|{model_key}"
            if key not in cache:
                if progress is not None:
                    progress(i, len(photos), path.name)
                cache[key] = round(float(score(path)), 5)
                with self._lock:
                    self._write("uncertainty.json", cache)
            values[path] = cache[key]
        ordered = sorted(photos, key=lambda p: -values[p])
        return self.set_photos(ordered, ranked_by=model_key)

    def score_of(self, path: Path, model_key: str | None) -> float | None:
        if not model_key:
            return None
        return self.scores().get(f"{self.digest(path)}|{model_key}")

    # ---- the view -------------------------------------------------------------------

    def table_html(self, position: int | None, drafts: Drafts | None = None) -> str:
        """The queue as an HTML table (the current photo marked) and a progress line; drafts as in :meth:`statuses`."""
        photos = self.photos()
        if not photos:
            return "<p>The queue is empty: load a folder of photos or upload several at once.</p>"
        statuses = self.statuses(photos, drafts)
        reviews = self.reviews()
        ranked_by = self.ranked_by
        done = statuses.count("saved")
        share = 100 * done / len(photos)
        rows = []
        for i, (path, status) in enumerate(zip(photos, statuses, strict=True)):
            score = self.score_of(path, ranked_by)
            mark = " style='font-weight:bold;background:rgba(255,200,0,0.25)'" if i == position else ""
            review = html.escape(reviews.get(self.digest(path), "")) if status == "saved" else ""
            rows.append(
                f"<tr{mark}><td>{i + 1}</td><td>{html.escape(path.name)}</td><td>{STATUS_ICONS[status]}</td>"
                f"<td>{review}</td><td style='text-align:right'>{'' if score is None else f'{score:.3f}'}</td></tr>"
            )
        order = "by uncertainty (most uncertain first)" if ranked_by else "by name"
        where = f"photo {position + 1} of {len(photos)}" if position is not None and position >= 0 else "none open"
        return (
            f"<div id='queue-summary'>{len(photos)} photos, {order} · {where} · {done} saved, "
            f"{statuses.count('draft')} draft(s), {statuses.count('to do')} to do</div>"
            f"<progress value='{done}' max='{len(photos)}' style='width:100%' title='{share:.0f}% saved'></progress>"
            "<div style='max-height:18em;overflow-y:auto;font-size:0.9em'><table class='ssfnet-queue'>"
            "<thead><tr><th>#</th><th>photo</th><th>status</th><th>review</th><th>uncertainty</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>"
        )
