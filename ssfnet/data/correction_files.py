"""The files of a corrections record and the protocol that writes them safely.

Layout of a corrections folder::

    images/<id>.<ext>   original image bytes (png, jpg, ...)
    labels/<id>.png     indexed PNG with the label set's palette; values = label ids
                        (coarse ids included), 255 = ignore
    meta/<id>.json      label set, image sha256, proposing model, time, edited pixels, ...
    persons/<id>.png    (optional) 8-bit greyscale person ids, 0 = no person, 1, 2, ... one per person
                        (:mod:`ssfnet.data.correction_persons`); records saved before it have none

A record exists once its meta file exists: the image, label and person ids are written first, the meta
last, each to a temporary dot-file in the same folder and then renamed into place, so readers
never see half-written files. Records are never overwritten; saving an edit of a record makes
a new record whose meta names its ``parent``. Only a record's review (:mod:`ssfnet.data.review`)
changes its meta, which is then replaced whole the same way (a dot-temporary renamed over it).

A writer first claims its id by creating ``meta/.<id>.json.tmp`` exclusively, holding its
process id, and removes the claim once the meta is in place. A writer killed mid-save leaves
that claim, dot-temporaries and perhaps an image or label without meta;
:func:`sweep_corrections` (run when the app starts) removes such debris of writers that are gone.

The store's API (save, list, load, trash, export, the dataset) is :mod:`ssfnet.data.corrections`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ssfnet.files import writer_alive
from ssfnet.io import oriented_size
from ssfnet.labels import LabelSet

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
IMAGE_FORMATS = {
    "png": "PNG",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "webp": "WEBP",
    "bmp": "BMP",
    "tif": "TIFF",
    "tiff": "TIFF",
}
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # whole ids only: fullmatch
# A claim without a pid (just created, or made before pids were recorded) is debris after this long.
CLAIM_GRACE_S = 60.0


PERSONS_DIR = "persons"


def record_folders(root: Path) -> tuple[Path, Path, Path]:
    """The ``images/``, ``labels/`` and ``meta/`` folders of a corrections folder."""
    return root / "images", root / "labels", root / "meta"


def persons_path(root: Path, record_id: str) -> Path:
    """Where a record's person ids are (the file exists only for records saved with them)."""
    return root / PERSONS_DIR / f"{record_id}.png"


def check_id(record_id: str) -> str:
    """``record_id`` if it is a valid record id, else a ValueError."""
    # Ids become file names; refusing anything else keeps a crafted id from escaping the folder.
    if not isinstance(record_id, str) or not ID_PATTERN.fullmatch(record_id):
        raise ValueError(f"invalid correction id {record_id!r}")
    return record_id


def displayed_size(data: bytes) -> tuple[int, int]:
    """(width, height) of encoded image bytes after applying their EXIF orientation."""
    with Image.open(io.BytesIO(data)) as im:
        height, width = oriented_size(im)
    return width, height


def encode_image(image: np.ndarray, ext: str) -> bytes:
    """H x W x 3 uint8 RGB -> the bytes of an image file of type ``ext`` (a key of IMAGE_FORMATS)."""
    buffer = io.BytesIO()
    options = {"quality": 95} if IMAGE_FORMATS[ext] in ("JPEG", "WEBP") else {}
    Image.fromarray(image).save(buffer, format=IMAGE_FORMATS[ext], **options)
    return buffer.getvalue()


def encode_labels(labels: np.ndarray, label_set: LabelSet) -> bytes:
    """H x W uint8 ids -> indexed PNG bytes with the label set's palette."""
    im = Image.fromarray(labels)
    im.putpalette(label_set.palette_bytes())  # an L image becomes P with the values as indices
    buffer = io.BytesIO()
    im.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def validate_record(image: np.ndarray, labels: np.ndarray, label_set: LabelSet) -> None:
    """ValueError unless the image is H x W x 3 uint8 and the labels H x W uint8 values of ``label_set``."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be H x W x 3 uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    validate_labels(labels, label_set)
    if labels.shape != image.shape[:2]:
        raise ValueError(
            f"labels are {labels.shape[1]}x{labels.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}"
        )


def validate_labels(labels: np.ndarray, label_set: LabelSet) -> None:
    """ValueError unless the labels are an H x W uint8 map of ``label_set``'s values."""
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"labels must be an H x W uint8 map, got shape {labels.shape} dtype {labels.dtype}")
    label_set.validate(labels)


def claim_id(root: Path, digest: str, now: datetime) -> tuple[str, int]:
    """Pick a new record id and claim it by creating its meta temporary file exclusively.

    The claim file stays until the record's meta is in place, and a candidate is
    rejected if any file of that id exists, so two writers (threads or processes) can never
    obtain the same id and no existing file is ever replaced.
    """
    images, labels, meta = record_folders(root)
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    base = f"{digest[:12]}-{stamp}"
    for attempt in range(100):
        record_id = base if attempt == 0 else f"{base}-{secrets.token_hex(3)}"
        try:
            fd = os.open(meta / f".{record_id}.json.tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        try:
            os.write(fd, f"{os.getpid()}\n".encode())  # whose claim it is, for sweep_corrections
        except OSError:
            os.close(fd)
            os.unlink(meta / f".{record_id}.json.tmp")
            raise
        taken = (meta / f"{record_id}.json").exists() or (labels / f"{record_id}.png").exists()
        taken = taken or persons_path(root, record_id).exists()
        taken = taken or any(images.glob(f"{record_id}.*"))
        if not taken:
            return record_id, fd
        os.close(fd)
        os.unlink(meta / f".{record_id}.json.tmp")
    raise RuntimeError(f"could not find a free correction id under {root}")


def save_error(err: OSError, context: str) -> OSError:
    """An OSError with the same errno (callers may test for ENOSPC) and a message saying what failed."""
    message = f"{context}: {err.strerror or err}"
    return OSError(err.errno, message) if err.errno is not None else OSError(message)


def write_temp(folder: Path, record_id: str, suffix: str, data: bytes, temporaries: list[Path]) -> Path:
    """Write ``data`` durably to a new dot-temporary of ``record_id`` in ``folder``, noted in ``temporaries``."""
    path = folder / f".{record_id}{suffix}.tmp"
    temporaries.append(path)  # before writing: a failed write (disk full) must not leave it behind
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return path


def _claim_alive(claim: Path, now: float) -> bool:
    """Whether the writer that made this meta claim may still be saving its record."""
    try:
        made_at = claim.stat().st_mtime
        head = claim.read_bytes()[:32]
    except OSError:
        return True  # gone meanwhile: its writer finished or cleaned up
    first = head.split(b"\n", 1)[0].strip()
    if first.isdigit():
        return writer_alive(int(first), made_at)
    return now - made_at < CLAIM_GRACE_S


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as err:  # a read-only store is read, not cleaned
        logger.warning("could not remove %s: %s", path, err.strerror or err)
        return False
    return True


def sweep_corrections(root: str | os.PathLike) -> list[Path]:
    """Remove what writers killed mid-save left in a corrections folder.

    That is: meta claims (``meta/.<id>.json.tmp``) whose writer is gone, the dot-temporaries of
    such ids, and images or labels without meta and without a live claim (a record without meta
    does not exist). Complete records are never touched, and the image or label of a record
    whose meta is already in ``trash/`` (an interrupted :func:`trash_correction`) is moved
    there too, so the trashed record stays recoverable.

    Returns:
        The files removed or moved to the trash.
    """
    root = Path(root)
    images, labels, meta_dir = record_folders(root)
    if not meta_dir.is_dir():
        return []
    now = time.time()
    removed: list[Path] = []
    live: set[str] = set()
    claims = [p for p in meta_dir.glob(".*.tmp") if p.name[1:].split(".", 1)[-1] == "json.tmp"]
    for claim in claims:
        record_id = claim.name[1 : -len(".json.tmp")]
        if _claim_alive(claim, now):
            live.add(record_id)
        elif _unlink(claim):
            removed.append(claim)
    for folder in (images, labels, meta_dir, root / PERSONS_DIR):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            name = path.name
            if folder == meta_dir and not name.endswith(".meta.json.tmp"):
                continue  # meta files are records, claims were judged above
            if name.startswith(".") and name.endswith(".tmp"):
                record_id = name[1:].split(".", 1)[0]
            elif not name.startswith("."):
                record_id = name.split(".", 1)[0]
                if (meta_dir / f"{record_id}.json").exists():
                    continue
            else:
                continue
            if record_id in live or not path.is_file():
                continue
            trashed = root / "trash" / folder.name / name
            if not name.startswith(".") and (root / "trash" / "meta" / f"{record_id}.json").is_file():
                try:
                    trashed.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, trashed)
                    removed.append(path)
                except OSError as err:
                    logger.warning("could not move %s to the trash: %s", path, err.strerror or err)
            elif _unlink(path):
                removed.append(path)
    if removed:
        logger.warning("removed %d files left by interrupted saves in %s", len(removed), root)
    return removed


def read_meta(path: Path) -> dict[str, Any] | None:
    """A record's meta dict, or None (with a warning) if it is unreadable or no JSON object."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        logger.warning("skipping unreadable correction meta %s: %s", path, err)
        return None
    if not isinstance(meta, dict):
        logger.warning("skipping correction meta %s: not a JSON object", path)
        return None
    return meta


def find_image(root: Path, record_id: str, meta: dict[str, Any]) -> Path | None:
    """The image file of a record, or None if it is missing."""
    ext = meta.get("image_ext")
    if isinstance(ext, str) and ext in IMAGE_FORMATS:
        path = root / "images" / f"{record_id}.{ext}"
        return path if path.is_file() else None
    # Records written by hand may lack image_ext: take whatever image has the id.
    return next((p for p in sorted((root / "images").glob(f"{record_id}.*")) if p.is_file()), None)
