"""The corrections store: label maps fixed by people in the app, read back for fine-tuning.

A corrections folder holds one record per saved correction (``images/<id>.<ext>``,
``labels/<id>.png``, ``meta/<id>.json`` and, for records saved with them, the person ids
``persons/<id>.png``); the files and the protocol that writes them safely
(id claims, temporaries renamed into place, sweeping what killed writers left) are
:mod:`ssfnet.data.correction_files`. Here: saving a record, listing, reading, trashing and
exporting records, and the store as a training dataset.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import zipfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ssfnet.data.base import ParsingDataset, Transform, label_conversion
from ssfnet.data.correction_files import (
    FORMAT_VERSION,
    ID_PATTERN,
    IMAGE_FORMATS,
    PERSONS_DIR,
    check_id,
    claim_id,
    displayed_size,
    encode_image,
    encode_labels,
    find_image,
    persons_path,
    read_meta,
    record_folders,
    save_error,
    sweep_corrections,
    validate_labels,
    validate_record,
    write_temp,
)
from ssfnet.data.correction_persons import decode_persons, encode_persons, person_count, person_mask
from ssfnet.files import json_safe
from ssfnet.geometry import resize_labels
from ssfnet.io import read_image_and_size
from ssfnet.labels import LabelSet, get_label_set

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT_VERSION",
    "IMAGE_FORMATS",
    "CorrectionsDataset",
    "correction_problem",
    "export_zip",
    "latest_ids",
    "list_corrections",
    "load_correction",
    "load_persons",
    "save_correction",
    "sweep_corrections",
    "trash_correction",
]

# The id check under the name callers have imported from here.
_check_id = check_id


def save_correction(
    root: str | os.PathLike,
    image: np.ndarray | None,
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
    persons: np.ndarray | None = None,
) -> str:
    """Store a corrected label map with its image as a new record.

    Args:
        root: Corrections folder (``images/``, ``labels/`` and ``meta/`` are created if absent).
        image: H x W x 3 uint8 RGB, the image the labels were drawn on; None with
            ``image_bytes`` (their size is checked against the labels, and a large photo is
            then never decoded in full).
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
        persons: H x W uint8 person ids of the labels (0 = no person), stored as
            ``persons/<id>.png`` (ids outside the labels' person pixels are cleared); the meta's
            ``persons`` says how many people it holds.

    Returns:
        The new record id: the first 12 hex digits of the stored image's sha256, ``-``, the
        UTC time with microseconds (and a random suffix if that id was taken).

    Raises:
        ValueError: Bad shapes, dtypes or label values, bad ``image_ext``/``parent``, or image
            bytes of another size; nothing is written.
        OSError: Writing failed (e.g. disk full); the partial files are removed.
    """
    label_set = get_label_set(label_set)
    labels = np.asarray(labels)
    if parent is not None:
        check_id(parent)
    ext, image_bytes = _image_file(image, labels, label_set, image_bytes, image_ext)
    files = [(f".{ext}", image_bytes), (".png", encode_labels(np.ascontiguousarray(labels), label_set))]
    persons = _checked_persons(persons, labels)
    if persons is not None:
        files.append((".png", encode_persons(persons)))
    digest = hashlib.sha256(image_bytes).hexdigest()
    height, width = labels.shape
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
    if persons is not None:
        meta_fields["persons"] = person_count(persons)
    # Serialise the meta before touching the disk so an unserialisable ``extra`` writes nothing.
    meta_fields = _strict_json(meta_fields)
    root = Path(root)
    now = datetime.now(timezone.utc)
    folders = [*record_folders(root)[:2], root / PERSONS_DIR][: len(files)]
    record_id, claim_fd = _claim_record(root, folders, digest, now)
    meta_fields = {"id": record_id, **meta_fields, "created": now.isoformat()}
    _write_record(root, record_id, claim_fd, list(zip(folders, files)), meta_fields)
    return record_id


def _checked_persons(persons: np.ndarray | None, labels: np.ndarray) -> np.ndarray | None:
    """``persons`` as an H x W uint8 map cleared outside the labels' person pixels (None stays None).

    Raises:
        ValueError: ``persons`` is not a uint8 map of the labels' size.
    """
    if persons is None:
        return None
    persons = np.asarray(persons)
    if persons.shape != labels.shape or persons.dtype != np.uint8:
        raise ValueError(
            f"person ids must be an H x W uint8 map of the labels' size {labels.shape}, "
            f"got shape {persons.shape} dtype {persons.dtype}"
        )
    return np.where(person_mask(labels), persons, 0).astype(np.uint8)


def _strict_json(meta_fields: dict[str, Any]) -> dict[str, Any]:
    """``meta_fields`` with NaN / inf as null, so the meta stays strict JSON.

    Raises:
        ValueError: Something in it (in practice ``extra``) is not JSON-serialisable.
    """
    try:
        meta_fields = json_safe(meta_fields)
        json.dumps(meta_fields, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"extra must be JSON-serialisable: {err}") from None
    return meta_fields


def _claim_record(root: Path, folders: list[Path], digest: str, now: datetime) -> tuple[str, int]:
    """Create the record's folders and claim a new id: ``(record_id, claim file descriptor)``.

    Raises:
        OSError: The folders could not be created or no id could be claimed.
    """
    meta_dir = record_folders(root)[2]
    try:
        for folder in (*folders, meta_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return claim_id(root, digest, now)
    except OSError as err:
        raise save_error(err, f"could not prepare {root} for a new correction") from err


def _write_record(
    root: Path,
    record_id: str,
    claim_fd: int,
    files: list[tuple[Path, tuple[str, bytes]]],
    meta_fields: dict[str, Any],
) -> None:
    """Place a claimed record's files, its meta last, then release the claim.

    Each file is written to a temporary and renamed into place; the meta goes last because a
    record without one does not count, so a writer killed half-way leaves only debris that
    :func:`sweep_corrections` removes.

    Args:
        root: Corrections folder.
        record_id: The id claimed by :func:`claim_id`.
        claim_fd: Its claim's open file descriptor (closed here).
        files: ``(folder, (suffix, bytes))`` of the image, labels and, if any, person ids.
        meta_fields: The record's meta.

    Raises:
        OSError: Writing failed; the temporaries, the files placed so far and the claim are removed.
    """
    meta_dir = record_folders(root)[2]
    claim = meta_dir / f".{record_id}.json.tmp"
    temporaries = [claim]
    placed: list[Path] = []
    try:
        for folder, (suffix, data) in files:
            temporary = write_temp(folder, record_id, suffix, data, temporaries)
            final = folder / f"{record_id}{suffix}"
            os.replace(temporary, final)
            placed.append(final)
        meta_bytes = json.dumps(meta_fields, indent=2, allow_nan=False).encode()
        temporary = write_temp(meta_dir, record_id, ".meta.json", meta_bytes, temporaries)
        os.replace(temporary, meta_dir / f"{record_id}.json")
    except BaseException as err:
        os.close(claim_fd)
        # Without its meta the record does not count, so its placed files are debris too.
        for path in temporaries + placed:
            with contextlib.suppress(OSError):
                path.unlink()
        if isinstance(err, OSError):
            raise save_error(err, f"could not save correction {record_id} under {root}") from err
        raise
    # The record is complete; a claim left by a kill right here is swept without harm.
    os.close(claim_fd)
    with contextlib.suppress(OSError):
        claim.unlink()


def _image_file(
    image: np.ndarray | None, labels: np.ndarray, label_set: LabelSet, image_bytes: bytes | None, image_ext: str
) -> tuple[str, bytes]:
    """The checked extension and the bytes to store of a record's image (see :func:`save_correction`).

    Raises:
        ValueError: bad shapes, dtypes or label values, an unknown extension, neither image nor
            bytes, or bytes of another size than the labels.
    """
    if image is not None:
        validate_record(np.asarray(image), labels, label_set)
    elif image_bytes is None:
        raise ValueError("save_correction needs the image or its image_bytes")
    else:
        validate_labels(labels, label_set)
    ext = image_ext.lower().lstrip(".")
    if ext not in IMAGE_FORMATS:
        raise ValueError(f"image_ext must be one of {sorted(IMAGE_FORMATS)}, got {image_ext!r}")
    if image_bytes is None:
        return ext, encode_image(np.ascontiguousarray(image), ext)
    height, width = labels.shape
    try:
        size = displayed_size(image_bytes)
    except (OSError, SyntaxError) as err:
        raise ValueError(f"image_bytes are not a readable image: {err}") from None
    if size != (width, height):
        raise ValueError(f"image_bytes decode to {size[0]}x{size[1]} but the labels are {width}x{height}")
    return ext, image_bytes


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
        if not ID_PATTERN.fullmatch(record_id):
            continue
        meta = read_meta(path)
        if meta is None:
            continue
        if not (root / "labels" / f"{record_id}.png").is_file() or find_image(root, record_id, meta) is None:
            logger.warning("skipping incomplete correction %s in %s", record_id, root)
            continue
        meta["id"] = record_id
        records.append(meta)
    records.sort(key=lambda m: (str(m.get("created", "")), m["id"]), reverse=True)
    return records


def load_correction(
    root: str | os.PathLike, record_id: str, *, max_side: int | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read one record.

    Args:
        root: Corrections folder.
        record_id: Id returned by :func:`save_correction`.
        max_side: If given, the image and labels come scaled down (never up) so that the longer
            side is at most ``max_side`` (the image decoded reduced, the labels by nearest
            neighbour), for views that do not need every pixel of a large photo.

    Returns:
        Image H x W x 3 uint8 RGB (EXIF orientation applied, as the app showed it), labels
        H x W uint8 (stored values, coarse ids included), and the meta dict.

    Raises:
        FileNotFoundError: No complete record with that id.
        ValueError: The label map's size differs from the image's, or the files are not
            valid images.
    """
    root = Path(root)
    check_id(record_id)
    meta_path = root / "meta" / f"{record_id}.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"no correction {record_id} in {root} (missing {meta_path})")
    meta = json.loads(meta_path.read_text())
    meta["id"] = record_id
    image_path = find_image(root, record_id, meta)
    label_path = root / "labels" / f"{record_id}.png"
    if image_path is None or not label_path.is_file():
        raise FileNotFoundError(f"correction {record_id} in {root} lacks its image or label file")
    # The same decoding as the app's uploads (alpha on white, 16-bit and CMYK converted).
    image, full_size = read_image_and_size(image_path, max_pixels=1 << 40, max_side=max_side)
    with Image.open(label_path) as im:
        if im.mode not in ("P", "L"):
            raise ValueError(f"{label_path}: expected an indexed PNG, got mode {im.mode}")
        labels = np.array(im)
    if labels.shape != full_size:
        raise ValueError(
            f"correction {record_id}: label map is {labels.shape[1]}x{labels.shape[0]} "
            f"but image {image_path.name} is {full_size[1]}x{full_size[0]}"
        )
    return image, resize_labels(labels, image.shape[:2]), meta


def load_persons(root: str | os.PathLike, record_id: str, size: tuple[int, int] | None = None) -> np.ndarray | None:
    """A record's person ids (H x W uint8, 0 = no person), or None for a record saved without them.

    Args:
        root: Corrections folder.
        record_id: The record.
        size: ``(h, w)`` to scale them to (nearest neighbour, as :func:`load_correction` scales the
            labels with ``max_side``); default: as stored, the label map's size.

    Raises:
        FileNotFoundError: no such record, or its meta names person ids whose file is gone.
        ValueError: the file is not an 8-bit PNG of the label map's size.
    """
    root = Path(root)
    check_id(record_id)
    meta_path = root / "meta" / f"{record_id}.json"
    meta = read_meta(meta_path) if meta_path.is_file() else None
    if meta is None:
        raise FileNotFoundError(f"no correction {record_id} in {root}")
    path = persons_path(root, record_id)
    if "persons" not in meta:
        return None
    if not path.is_file():
        raise FileNotFoundError(f"correction {record_id} in {root} lacks its person ids ({path})")
    persons = decode_persons(path.read_bytes())
    with Image.open(root / "labels" / f"{record_id}.png") as im:
        label_size = (im.height, im.width)
    if persons.shape != label_size:
        raise ValueError(
            f"correction {record_id}: person ids are {persons.shape[1]}x{persons.shape[0]} "
            f"but the label map is {label_size[1]}x{label_size[0]}"
        )
    return persons if size is None else resize_labels(persons, size)


def photo_of(meta: dict[str, Any]) -> str:
    """The photo a correction record is of: its image's SHA-256 (the id's first 12 hex digits without one)."""
    digest = meta.get("image_sha256")
    return digest if isinstance(digest, str) and digest else str(meta["id"]).split("-", 1)[0]


def latest_ids(records: Iterable[dict[str, Any]]) -> list[str]:
    """Ids of the records that no other record was edited from (in the order given)."""
    records = list(records)
    superseded = {m.get("parent") for m in records}
    return [m["id"] for m in records if m["id"] not in superseded]


def trash_correction(root: str | os.PathLike, record_id: str) -> Path:
    """Move a record into ``<root>/trash/`` (same sub-folders), where nothing reads it.

    Recoverable: moving its files back into ``images/``, ``labels/``, ``meta/`` (and
    ``persons/``) restores it. The meta goes first, so the record stops counting before its files move.

    Returns:
        The trash folder.

    Raises:
        FileNotFoundError: no complete record with that id.
    """
    root = Path(root)
    check_id(record_id)
    meta_path = root / "meta" / f"{record_id}.json"
    meta = read_meta(meta_path) if meta_path.is_file() else None
    if meta is None:
        raise FileNotFoundError(f"no correction {record_id} in {root}")
    image_path = find_image(root, record_id, meta)
    trash = root / "trash"
    for path in (meta_path, root / "labels" / f"{record_id}.png", persons_path(root, record_id), image_path):
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
persons/<id>.png   (records saved with them) 8-bit person ids, 0 = no person, 1, 2, ... one per person
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
    """Zip the complete records (``images/``, ``labels/``, ``meta/``, ``persons/``) into ``dest_path``.

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
                image_path = find_image(root, record_id, meta)
                persons = persons_path(root, record_id)
                paths = [image_path, root / "labels" / f"{record_id}.png", root / "meta" / f"{record_id}.json"]
                for path in paths + ([persons] if persons.is_file() else []):
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
