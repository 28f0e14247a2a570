"""The corrections store: label maps fixed by people in the app, read back for fine-tuning.

Layout of a corrections folder::

    images/<id>.<ext>   original image bytes (png, jpg, ...)
    labels/<id>.png     indexed PNG with the label set's palette; values = label ids
                        (coarse ids included), 255 = ignore
    meta/<id>.json      label set, image sha256, proposing model, time, edited pixels, ...

A record exists once its meta file exists: the image and label are written first, the meta
last, each to a temporary dot-file in the same folder and then renamed into place, so readers
never see half-written files. Records are never overwritten; saving an edit of a record makes
a new record whose meta names its ``parent``.

A writer first claims its id by creating ``meta/.<id>.json.tmp`` exclusively, holding its
process id, and removes the claim once the meta is in place. A writer killed mid-save leaves
that claim, dot-temporaries and perhaps an image or label without meta;
:func:`sweep_corrections` (run when the app starts) removes such debris of writers that are gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import secrets
import time
import zipfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ssfnet.data.layouts import ParsingDataset, Transform, label_conversion
from ssfnet.io import json_safe, read_image, writer_alive
from ssfnet.labels import LabelSet, get_label_set

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
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # whole ids only: fullmatch
# EXIF orientations 5-8 rotate by 90 degrees, swapping width and height.
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}
# A claim without a pid (just created, or made before pids were recorded) is debris after this long.
CLAIM_GRACE_S = 60.0


def _folders(root: Path) -> tuple[Path, Path, Path]:
    return root / "images", root / "labels", root / "meta"


def _check_id(record_id: str) -> str:
    # Ids become file names; refusing anything else keeps a crafted id from escaping the folder.
    if not isinstance(record_id, str) or not _ID_PATTERN.fullmatch(record_id):
        raise ValueError(f"invalid correction id {record_id!r}")
    return record_id


def _displayed_size(data: bytes) -> tuple[int, int]:
    """(width, height) of encoded image bytes after applying their EXIF orientation."""
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    return (height, width) if orientation in _TRANSPOSED_ORIENTATIONS else (width, height)


def _encode_image(image: np.ndarray, ext: str) -> bytes:
    buffer = io.BytesIO()
    options = {"quality": 95} if IMAGE_FORMATS[ext] in ("JPEG", "WEBP") else {}
    Image.fromarray(image).save(buffer, format=IMAGE_FORMATS[ext], **options)
    return buffer.getvalue()


def _encode_labels(labels: np.ndarray, label_set: LabelSet) -> bytes:
    im = Image.fromarray(labels)
    im.putpalette(label_set.palette_bytes())  # an L image becomes P with the values as indices
    buffer = io.BytesIO()
    im.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _validate(image: np.ndarray, labels: np.ndarray, label_set: LabelSet) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be H x W x 3 uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"labels must be an H x W uint8 map, got shape {labels.shape} dtype {labels.dtype}")
    if labels.shape != image.shape[:2]:
        raise ValueError(
            f"labels are {labels.shape[1]}x{labels.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}"
        )
    label_set.validate(labels)


def _claim_id(root: Path, digest: str, now: datetime) -> tuple[str, int]:
    """Pick a new record id and claim it by creating its meta temporary file exclusively.

    The claim file stays until the record's meta is in place, and a candidate is
    rejected if any file of that id exists, so two writers (threads or processes) can never
    obtain the same id and no existing file is ever replaced.
    """
    images, labels, meta = _folders(root)
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
        taken = taken or any(images.glob(f"{record_id}.*"))
        if not taken:
            return record_id, fd
        os.close(fd)
        os.unlink(meta / f".{record_id}.json.tmp")
    raise RuntimeError(f"could not find a free correction id under {root}")


def _save_error(err: OSError, context: str) -> OSError:
    """An OSError with the same errno (callers may test for ENOSPC) and a message saying what failed."""
    message = f"{context}: {err.strerror or err}"
    return OSError(err.errno, message) if err.errno is not None else OSError(message)


def _write_temp(folder: Path, record_id: str, suffix: str, data: bytes, temporaries: list[Path]) -> Path:
    path = folder / f".{record_id}{suffix}.tmp"
    temporaries.append(path)  # before writing: a failed write (disk full) must not leave it behind
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return path


def save_correction(
    root: str | os.PathLike,
    image: np.ndarray,
    labels: np.ndarray,
    label_set: str | LabelSet,
    *,
    model: str = "",
    edited_pixels: int = 0,
    source_name: str | None = None,
    image_bytes: bytes | None = None,
    image_ext: str = "png",
    parent: str | None = None,
    extra: dict | None = None,
) -> str:
    """Store a corrected label map with its image as a new record.

    Args:
        root: Corrections folder (``images/``, ``labels/`` and ``meta/`` are created if absent).
        image: H x W x 3 uint8 RGB, the image the labels were drawn on.
        labels: H x W uint8 ids of ``label_set`` (coarse ids allowed), 255 = ignore.
        label_set: Label set of ``labels``.
        model: Model or checkpoint that proposed the labels.
        edited_pixels: How many pixels the person changed.
        source_name: Original file name of the image, if known.
        image_bytes: Exact bytes to store as the image (e.g. the original upload) instead of
            re-encoding ``image``; after their EXIF orientation they must have ``image``'s size.
        image_ext: Extension of the stored image (``png``, ``jpg``, ...). Without
            ``image_bytes`` the image is encoded in that format (lossless only for png).
        parent: Id of the record this one was edited from.
        extra: Free-form JSON-serialisable details.

    Returns:
        The new record id: the first 12 hex digits of the stored image's sha256, ``-``, the
        UTC time with microseconds (and a random suffix if that id was taken).

    Raises:
        ValueError: Bad shapes, dtypes or label values, bad ``image_ext``/``parent``, or image
            bytes of another size; nothing is written.
        OSError: Writing failed (e.g. disk full); the partial files are removed.
    """
    label_set = get_label_set(label_set)
    image, labels = np.asarray(image), np.asarray(labels)
    _validate(image, labels, label_set)
    ext = image_ext.lower().lstrip(".")
    if ext not in IMAGE_FORMATS:
        raise ValueError(f"image_ext must be one of {sorted(IMAGE_FORMATS)}, got {image_ext!r}")
    if parent is not None:
        _check_id(parent)
    height, width = labels.shape
    if image_bytes is None:
        image_bytes = _encode_image(np.ascontiguousarray(image), ext)
    else:
        try:
            size = _displayed_size(image_bytes)
        except (OSError, SyntaxError) as err:
            raise ValueError(f"image_bytes are not a readable image: {err}") from None
        if size != (width, height):
            raise ValueError(f"image_bytes decode to {size[0]}x{size[1]} but the labels are {width}x{height}")
    label_bytes = _encode_labels(np.ascontiguousarray(labels), label_set)
    digest = hashlib.sha256(image_bytes).hexdigest()
    # Serialise the meta before touching the disk so an unserialisable ``extra`` writes nothing.
    meta_fields = {
        "format_version": FORMAT_VERSION,
        "label_set": label_set.name,
        "image_sha256": digest,
        "image_ext": ext,
        "image_size": {"width": width, "height": height},
        "model": model,
        "edited_pixels": int(edited_pixels),
        "source_name": source_name,
        "parent": parent,
        "extra": dict(extra) if extra else {},
    }
    try:
        meta_fields = json_safe(meta_fields)  # NaN / inf become null: the meta stays strict JSON
        json.dumps(meta_fields, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"extra must be JSON-serialisable: {err}") from None

    root = Path(root)
    images, labels_dir, meta_dir = _folders(root)
    now = datetime.now(timezone.utc)
    try:
        for folder in (images, labels_dir, meta_dir):
            folder.mkdir(parents=True, exist_ok=True)
        record_id, claim_fd = _claim_id(root, digest, now)
    except OSError as err:
        raise _save_error(err, f"could not prepare {root} for a new correction") from err
    meta_fields = {"id": record_id, **meta_fields, "created": now.isoformat()}
    claim = meta_dir / f".{record_id}.json.tmp"
    temporaries = [claim]
    placed: list[Path] = []
    try:
        for folder, suffix, data in ((images, f".{ext}", image_bytes), (labels_dir, ".png", label_bytes)):
            temporary = _write_temp(folder, record_id, suffix, data, temporaries)
            final = folder / f"{record_id}{suffix}"
            os.replace(temporary, final)
            placed.append(final)
        meta_bytes = json.dumps(meta_fields, indent=2, allow_nan=False).encode()
        temporary = _write_temp(meta_dir, record_id, ".meta.json", meta_bytes, temporaries)
        os.replace(temporary, meta_dir / f"{record_id}.json")
    except BaseException as err:
        os.close(claim_fd)
        # Without its meta the record does not count, so its placed files are debris too.
        for path in temporaries + placed:
            with contextlib.suppress(OSError):
                path.unlink()
        if isinstance(err, OSError):
            raise _save_error(err, f"could not save correction {record_id} under {root}") from err
        raise
    # The record is complete; a claim left by a kill right here is swept without harm.
    os.close(claim_fd)
    with contextlib.suppress(OSError):
        claim.unlink()
    return record_id


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
    images, labels, meta_dir = _folders(root)
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
    for folder in (images, labels, meta_dir):
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


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        logger.warning("skipping unreadable correction meta %s: %s", path, err)
        return None
    if not isinstance(meta, dict):
        logger.warning("skipping correction meta %s: not a JSON object", path)
        return None
    return meta


def _image_path(root: Path, record_id: str, meta: dict[str, Any]) -> Path | None:
    ext = meta.get("image_ext")
    if isinstance(ext, str) and ext in IMAGE_FORMATS:
        path = root / "images" / f"{record_id}.{ext}"
        return path if path.is_file() else None
    # Records written by hand may lack image_ext: take whatever image has the id.
    return next((p for p in sorted((root / "images").glob(f"{record_id}.*")) if p.is_file()), None)


def list_corrections(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Meta dicts (each with ``"id"``) of the complete records, newest first.

    Records without meta (still being written or abandoned), with unreadable meta, or whose
    image or label file is missing are skipped; a missing folder gives an empty list.
    """
    root = Path(root)
    meta_dir = root / "meta"
    if not meta_dir.is_dir():
        return []
    records = []
    for path in meta_dir.glob("*.json"):
        record_id = path.stem
        if not _ID_PATTERN.fullmatch(record_id):
            continue
        meta = _read_meta(path)
        if meta is None:
            continue
        if not (root / "labels" / f"{record_id}.png").is_file() or _image_path(root, record_id, meta) is None:
            logger.warning("skipping incomplete correction %s in %s", record_id, root)
            continue
        meta["id"] = record_id
        records.append(meta)
    records.sort(key=lambda m: (str(m.get("created", "")), m["id"]), reverse=True)
    return records


def load_correction(root: str | os.PathLike, record_id: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read one record.

    Args:
        root: Corrections folder.
        record_id: Id returned by :func:`save_correction`.

    Returns:
        Image H x W x 3 uint8 RGB (EXIF orientation applied, as the app showed it), labels
        H x W uint8 (stored values, coarse ids included), and the meta dict.

    Raises:
        FileNotFoundError: No complete record with that id.
        ValueError: The label map's size differs from the image's, or the files are not
            valid images.
    """
    root = Path(root)
    _check_id(record_id)
    meta_path = root / "meta" / f"{record_id}.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"no correction {record_id} in {root} (missing {meta_path})")
    meta = json.loads(meta_path.read_text())
    meta["id"] = record_id
    image_path = _image_path(root, record_id, meta)
    label_path = root / "labels" / f"{record_id}.png"
    if image_path is None or not label_path.is_file():
        raise FileNotFoundError(f"correction {record_id} in {root} lacks its image or label file")
    # The same decoding as the app's uploads (alpha on white, 16-bit and CMYK converted).
    image = read_image(image_path, max_pixels=1 << 40)
    with Image.open(label_path) as im:
        if im.mode not in ("P", "L"):
            raise ValueError(f"{label_path}: expected an indexed PNG, got mode {im.mode}")
        labels = np.array(im)
    if labels.shape != image.shape[:2]:
        raise ValueError(
            f"correction {record_id}: label map is {labels.shape[1]}x{labels.shape[0]} "
            f"but image {image_path.name} is {image.shape[1]}x{image.shape[0]}"
        )
    return image, labels, meta


def latest_ids(records: Iterable[dict[str, Any]]) -> list[str]:
    """Ids of the records that no other record was edited from (in the order given)."""
    records = list(records)
    superseded = {m.get("parent") for m in records}
    return [m["id"] for m in records if m["id"] not in superseded]


def trash_correction(root: str | os.PathLike, record_id: str) -> Path:
    """Move a record into ``<root>/trash/`` (same sub-folders), where nothing reads it.

    Recoverable: moving its three files back into ``images/``, ``labels/`` and ``meta/``
    restores it. The meta goes first, so the record stops counting before its files move.

    Returns:
        The trash folder.

    Raises:
        FileNotFoundError: no complete record with that id.
    """
    root = Path(root)
    _check_id(record_id)
    meta_path = root / "meta" / f"{record_id}.json"
    meta = _read_meta(meta_path) if meta_path.is_file() else None
    if meta is None:
        raise FileNotFoundError(f"no correction {record_id} in {root}")
    image_path = _image_path(root, record_id, meta)
    trash = root / "trash"
    for path in (meta_path, root / "labels" / f"{record_id}.png", image_path):
        if path is not None and path.is_file():
            (trash / path.parent.name).mkdir(parents=True, exist_ok=True)
            os.replace(path, trash / path.parent.name / path.name)
    return trash


def _label_sets_json(records: list[dict[str, Any]]) -> bytes:
    sets = {}
    for name in sorted({str(m.get("label_set", "")) for m in records}):
        try:
            label_set = get_label_set(name)
        except KeyError:
            continue
        lut = label_set.colour_lut()
        ids = [*range(label_set.num_ids), 255]
        sets[name] = {
            "labels": [
                {"id": i, "name": label_set.all_names[i] if i < label_set.num_ids else "ignore", "rgb": lut[i].tolist()}
                for i in ids
            ],
            "coarse": {
                label_set.all_names[c]: list(label_set.members(c))
                for c in range(label_set.num_classes, label_set.num_ids)
            },
        }
    return json.dumps(sets, indent=2).encode()


EXPORT_README = """Corrections exported from the SSFNet app.

images/<id>.<ext>  the photo (original bytes where possible)
labels/<id>.png    indexed PNG of label ids (palette = label colours), 255 = ignore
meta/<id>.json     label set, source file, model, review, parent record, ...
label_sets.json    names, ids and RGB colours of each label set used (coarse labels list their classes)
id.txt             LIP-style list of ids: the latest version of each photo (superseded parents left out)
list.txt           the same records as "images/<id>.<ext> labels/<id>.png" pairs
"""


def correction_problem(root: str | os.PathLike, record_id: str) -> str | None:
    """Why a record cannot be read whole (truncated or corrupt image or label ...), or ``None``.

    Decodes the record completely, as training will.
    """
    try:
        load_correction(root, record_id)
    except (OSError, ValueError, SyntaxError) as err:  # ImageError is a ValueError
        return str(err) or type(err).__name__
    return None


def export_zip(root: str | os.PathLike, dest_path: str | os.PathLike) -> Path:
    """Zip the complete records (``images/``, ``labels/``, ``meta/``) into ``dest_path``.

    The zip also carries ``label_sets.json`` (names and palette), LIP-style list files
    (``id.txt``, ``list.txt``: the latest record of each edit chain) and a ``README.txt``,
    so that other tools can read it. The archive is written to a temporary name next to
    ``dest_path`` and renamed, so a failed export leaves no partial zip.

    Returns:
        ``dest_path`` as a Path.
    """
    root, dest = Path(root), Path(dest_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    temporary = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    records = list_corrections(root)
    latest = set(latest_ids(records))
    pairs = []
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for meta in sorted(records, key=lambda m: m["id"]):
                record_id = meta["id"]
                image_path = _image_path(root, record_id, meta)
                for path in (image_path, root / "labels" / f"{record_id}.png", root / "meta" / f"{record_id}.json"):
                    archive.write(path, f"{path.parent.name}/{path.name}")
                if record_id in latest:
                    pairs.append((record_id, f"images/{image_path.name} labels/{record_id}.png"))
            archive.writestr("label_sets.json", _label_sets_json(records))
            archive.writestr("id.txt", "".join(f"{i}\n" for i, _ in pairs))
            archive.writestr("list.txt", "".join(f"{line}\n" for _, line in pairs))
            archive.writestr("README.txt", EXPORT_README)
        os.replace(temporary, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    return dest


class CorrectionsDataset(ParsingDataset):
    """The corrections store as a dataset, labels converted to ``label_set``.

    Every record's label set must be ``label_set`` or convertible to it
    (:func:`ssfnet.labels.conversion_lut`); otherwise construction fails. Images are
    EXIF-transposed like in :func:`load_correction`.

    Args:
        root: Corrections folder.
        label_set: Label set of the returned label maps (default LIP-20).
        ids: Subset of record ids; default: all complete records (see ``latest_only``).
        transform: Called as ``transform(image, label)`` by ``__getitem__``.
        latest_only: Leave out records that a later record was edited from (its ``parent``),
            so a reworked correction is not trained on twice with conflicting labels.
    """

    layout = "a corrections folder with images/, labels/ and meta/"

    def __init__(
        self,
        root: str | os.PathLike,
        label_set: str | LabelSet = "lip-20",
        ids: Iterable[str] | None = None,
        transform: Transform | None = None,
        *,
        latest_only: bool = True,
    ) -> None:
        super().__init__(root, label_set, label_set, transform)
        if not (self.root / "meta").is_dir():
            raise FileNotFoundError(f"{self.root / 'meta'} not found: expected {self.layout}")
        records = {m["id"]: m for m in list_corrections(self.root)}
        if latest_only and ids is None:
            superseded = {m.get("parent") for m in records.values()}
            records = {i: m for i, m in records.items() if i not in superseded}
        self._setup(records, ids)
        self._luts: dict[str, np.ndarray] = {}
        for record_id in self.ids:
            name = records[record_id].get("label_set")
            if not isinstance(name, str):
                raise ValueError(f"correction {record_id} in {self.root} has no label_set in its meta")
            if name not in self._luts:
                try:
                    source = get_label_set(name)
                except KeyError as err:
                    raise ValueError(f"correction {record_id} in {self.root}: {err.args[0]}") from None
                self._luts[name] = label_conversion(source, self.label_set)
        self._label_set_of = {i: records[i]["label_set"] for i in self.ids}

    def read(self, sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        image, labels, _ = load_correction(self.root, sample_id)
        # Convert here (to the target set); the base class then applies the target's identity LUT.
        return image, self._luts[self._label_set_of[sample_id]][labels]
