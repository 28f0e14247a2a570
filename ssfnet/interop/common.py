"""What every format shares: the records to export, the regions read back, and saving them as records."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from ssfnet.data.correction_files import IMAGE_FORMATS, displayed_size, find_image
from ssfnet.data.correction_persons import derive_persons, fit_persons
from ssfnet.data.corrections import latest_ids, list_corrections, load_correction, load_persons, save_correction
from ssfnet.data.review import is_approved
from ssfnet.labels import IGNORE_INDEX, LabelSet, get_label_set

# An image file's extension as the store keeps it, by Pillow's format name.
_EXT_OF_FORMAT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif"}


class InteropError(ValueError):
    """Input that cannot be exported or imported as asked (the message says what and where); nothing was written."""


@dataclass
class Record:
    """A record to export: its id, image file, label map (H x W uint8, 255 = unlabelled) and label set.

    ``persons`` are its person ids (H x W uint8, 0 = no person) when it was saved with them.
    """

    record_id: str
    image_path: Path
    labels: np.ndarray
    label_set: LabelSet
    source_name: str | None = None
    persons: np.ndarray | None = None

    def person_ids(self) -> np.ndarray:
        """The saved person ids, or (a record saved without them) those derived from the labels."""
        return self.persons if self.persons is not None else derive_persons(self.labels)

    @property
    def file_name(self) -> str:
        """The image's file name in an export: the record id (unique) with the stored extension."""
        return f"{self.record_id}{self.image_path.suffix.lower()}"

    def regions(self) -> Iterable[tuple[str, np.ndarray]]:
        """(label name, H x W bool mask) of every label the map holds, in id order; unlabelled pixels in none."""
        for value in np.unique(self.labels).tolist():
            if value != IGNORE_INDEX:
                yield self.label_set.all_names[value], self.labels == value

    def person_regions(self) -> Iterable[tuple[str, int, np.ndarray]]:
        """(label name, person id, H x W bool mask): each label's region split by person where the record
        has person ids (0: pixels of no person, e.g. the background), else whole with person 0."""
        for name, mask in self.regions():
            if self.persons is None:
                yield name, 0, mask
                continue
            for person in np.unique(self.persons[mask]).tolist():
                yield name, person, mask & (self.persons == person)


def records_to_export(
    root: str | os.PathLike,
    *,
    ids: Iterable[str] | None = None,
    all_versions: bool = False,
    approved_only: bool = False,
) -> list[Record]:
    """The records of a corrections folder to export, oldest first.

    Args:
        root: Corrections folder.
        ids: Only these records (each must exist).
        all_versions: Also records that a later record was edited from (by default the latest only).
        approved_only: Only records whose review approves them (:mod:`ssfnet.data.review`).

    Raises:
        InteropError: an id that is not a complete record, a record that cannot be read, or nothing to export.
    """
    root = Path(root)
    records = list_corrections(root)
    by_id = {m["id"]: m for m in records}
    if ids is not None:
        ids = list(dict.fromkeys(ids))
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise InteropError(f"no complete correction {', '.join(missing)} in {root}")
        chosen = [by_id[i] for i in ids]
    else:
        keep = set(by_id) if all_versions else set(latest_ids(records))
        chosen = [m for m in reversed(records) if m["id"] in keep]
    if approved_only:
        chosen = [m for m in chosen if is_approved(m)]
    if not chosen:
        raise InteropError(f"nothing to export from {root}" + (" (no approved record)" if approved_only else ""))
    out = []
    for meta in chosen:
        try:
            # Checks that the label map fits its image (decoded reduced: only its size matters here).
            load_correction(root, meta["id"], max_side=64)
            with Image.open(root / "labels" / f"{meta['id']}.png") as im:
                labels = np.array(im)
            label_set = get_label_set(meta.get("label_set", ""))
            persons = load_persons(root, meta["id"])
        except (OSError, ValueError, KeyError, SyntaxError) as err:
            raise InteropError(f"correction {meta['id']} in {root} cannot be read: {err}") from None
        image_path = find_image(root, meta["id"], meta)
        out.append(Record(meta["id"], image_path, labels, label_set, meta.get("source_name"), persons))
    return out


def atomic_output(dest: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary)`` and rename the temporary to ``dest``: a failed export leaves no partial file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    temporary = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    try:
        write(temporary)
        os.replace(temporary, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    return dest


def copy_images(records: list[Record], folder: Path) -> None:
    """Copy each record's image into ``folder`` under its export name (:attr:`Record.file_name`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        atomic_output(folder / record.file_name, lambda path, r=record: path.write_bytes(r.image_path.read_bytes()))


@dataclass
class Imported:
    """One image read from another tool's export: its bytes and its regions by label name.

    ``regions`` are (name, H x W bool mask) in the order the file gives them; a later region
    wins where two overlap. ``persons`` are (person id, H x W bool mask) where the export says whose
    each region is (COCO's ``person_id``, CVAT's object persons, a Label Studio region's
    ``meta.person``, CIHP's ``Human_ids``); an image with any, or with ``with_persons`` set (its
    export says it was saved with person ids, even if it holds no person), is saved with person ids.
    """

    name: str
    image: bytes
    size: tuple[int, int]  # height, width of the masks
    regions: list[tuple[str, np.ndarray]] = field(default_factory=list)
    persons: list[tuple[int, np.ndarray]] = field(default_factory=list)
    with_persons: bool = False

    def person_ids(self, labels: np.ndarray) -> np.ndarray | None:
        """H x W uint8 person ids of ``persons`` on ``labels``' person pixels, or None without any.

        Person pixels that no region gives a person (drawn in the other tool after the export) are
        given ids as the app gives them (:func:`ssfnet.data.correction_persons.fit_persons`).
        """
        if not self.persons and not self.with_persons:
            return None
        ids = np.zeros(self.size, np.uint8)
        for person, mask in self.persons:
            if not 0 < person < 256:
                raise InteropError(f"{self.name}: person id {person} is not between 1 and 255")
            if mask.shape != self.size:
                raise InteropError(f"{self.name}: a person's mask is {mask.shape[1]}x{mask.shape[0]}, "
                                   f"not {self.size[1]}x{self.size[0]}")  # fmt: skip
            ids[mask] = person
        try:
            return fit_persons(labels, ids)
        except ValueError as err:
            raise InteropError(f"{self.name}: {err}") from None


class Source:
    """The files of a zip or of its unpacked folder, by their paths inside.

    Args:
        path: The zip or the folder.
        what: The format it should hold, for the message when ``path`` is not a zip.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        if path.is_dir():
            self.names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
            self.archive = None
        else:
            try:
                self.archive = zipfile.ZipFile(path)
                self.names = self.archive.namelist()
            except (OSError, zipfile.BadZipFile) as err:
                raise InteropError(f"{path} is not a zip of {what}: {err}") from None

    def read(self, name: str) -> bytes:
        try:
            return self.archive.read(name) if self.archive else (self.path / name).read_bytes()
        except (OSError, KeyError, zipfile.BadZipFile, EOFError) as err:
            raise InteropError(f"{self.path}: cannot read {name}: {err}") from None

    def find(self, folder: str, stem: str | None = None) -> list[str]:
        """Names directly in ``folder`` (at any depth of the zip: some tools wrap it in a top folder)."""
        return sorted(
            n
            for n in self.names
            if PurePosixPath(n).parent.name == folder and (stem is None or PurePosixPath(n).stem == stem)
        )


def read_image_file(name: str, candidates: Iterable[Path]) -> bytes:
    """The bytes of image ``name`` from the first of ``candidates`` that exists."""
    tried = []
    for path in candidates:
        tried.append(str(path))
        if path.is_file():
            return path.read_bytes()
    raise InteropError(f"image {name} not found (looked for {', '.join(tried) or 'nothing'}); pass --images DIR")


def name_key(name: str) -> str:
    """A label name compared loosely: case, spaces, underscores and hyphens do not matter."""
    return "".join(c for c in str(name).lower() if c.isalnum())


def name_lookup(label_set: LabelSet) -> dict[str, int]:
    """Label ids of ``label_set`` (coarse labels included) by :func:`name_key` of their names."""
    return {name_key(name): i for i, name in enumerate(label_set.all_names[: label_set.num_ids])}


def _image_ext(item: Imported) -> str:
    suffix = Path(item.name).suffix.lower().lstrip(".")
    if suffix in IMAGE_FORMATS:
        return suffix
    try:
        with Image.open(io.BytesIO(item.image)) as im:
            return _EXT_OF_FORMAT[im.format]
    except (OSError, KeyError, SyntaxError):
        raise InteropError(f"{item.name} is not an image this store keeps ({', '.join(IMAGE_FORMATS)})") from None


def to_labels(item: Imported, lookup: dict[str, int], unknown: dict[str, int]) -> np.ndarray:
    """The H x W uint8 label map of ``item``'s regions (255 where none); unknown names counted in ``unknown``."""
    labels = np.full(item.size, IGNORE_INDEX, dtype=np.uint8)
    for name, mask in item.regions:
        if mask.shape != item.size:
            raise InteropError(
                f"{item.name}: a {name!r} mask is {mask.shape[1]}x{mask.shape[0]}, not {item.size[1]}x{item.size[0]}"
            )
        value = lookup.get(name_key(name))
        if value is None:
            unknown[name] = unknown.get(name, 0) + 1
            continue
        labels[mask] = value
    return labels


def import_items(
    items: list[Imported],
    root: str | os.PathLike,
    label_set: str | LabelSet,
    *,
    source: str,
    keep_unknown: bool = False,
) -> dict:
    """Save ``items`` as new records of ``root``, their labels mapped by name onto ``label_set``.

    Everything is read and checked before the first record is written: an image of another size
    than its masks, or (unless ``keep_unknown``) a label name that ``label_set`` lacks, refuses the
    whole import. With ``keep_unknown`` the pixels of unknown names are stored unlabelled (255).

    Returns:
        ``{"imported": [record ids], "unknown": {name: regions}, "label_set": name}``.

    Raises:
        InteropError: see above; the store is unchanged.
    """
    label_set = get_label_set(label_set)
    lookup = name_lookup(label_set)
    unknown: dict[str, int] = {}
    ready = []
    for item in items:
        try:
            width, height = displayed_size(item.image)
        except (OSError, SyntaxError, ValueError) as err:
            raise InteropError(f"{item.name} is not a readable image: {err}") from None
        if (height, width) != item.size:
            raise InteropError(
                f"{item.name} is {width}x{height} but its masks are {item.size[1]}x{item.size[0]}: "
                "is it the image they were drawn on?"
            )
        ready.append((item, to_labels(item, lookup, unknown), _image_ext(item)))
    if unknown and not keep_unknown:
        names = ", ".join(f"{name!r} ({n} region{'s' * (n > 1)})" for name, n in sorted(unknown.items()))
        raise InteropError(
            f"labels not in {label_set.name}: {names}. Nothing was imported: choose the label set they belong to "
            "(--label-set), rename them in the export, or import them as unlabelled pixels (--unknown ignore)"
        )
    if not ready:
        raise InteropError("the export holds no image to import")
    imported = []
    for item, labels, ext in ready:
        imported.append(
            save_correction(
                root,
                None,
                labels,
                label_set,
                image_bytes=item.image,
                image_ext=ext,
                source_name=Path(item.name).name,
                model=f"import:{source}",
                extra={"imported_from": source, "unknown_labels": sorted(unknown)}
                if unknown
                else {"imported_from": source},
                persons=item.person_ids(labels),
            )  # fmt: skip
        )
    return {"imported": imported, "unknown": unknown, "label_set": label_set.name}
