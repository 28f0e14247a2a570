"""The CIHP layout (Crowd Instance-level Human Parsing): part labels and person instances, written and read.

The zip holds, as CIHP's ``Training/`` folder does::

    Training/Images/<id>.<ext>       the photos (the stored bytes)
    Training/Category_ids/<id>.png   8-bit grey: the part label of each pixel (the label set's ids, 255 unlabelled)
    Training/Categories/<id>.png     the same in the label set's colours
    Training/Human_ids/<id>.png      8-bit grey: the person of each pixel, 0 = no person, 1, 2, ...
    Training/Humans/<id>.png         the same in Pascal VOC's colours
    Training/Instance_ids/<id>.png   8-bit grey: the part instance of each pixel (one per person and part
                                     label, numbered 1, 2, ... person by person, labels in id order), 0 = none
    Training/Instances/<id>.png      the same in Pascal VOC's colours
    Training/train_id.txt            the ids, one a line
    labels.txt                       "<id> <name>" of every label of the label set
    README.txt                       this layout, and which records' person ids were derived

Person ids are the record's own (split and merged by a person in the app) or, for a record saved
without them, derived from its labels (:func:`ssfnet.data.correction_persons.derive_persons`).
All records must share one label set: CIHP's category ids mean one list of labels.

Reading (:func:`read`) takes such a zip or folder, or CIHP itself (any split: ``Training/``,
``Validation/``, ...): each ``Category_ids/<id>.png`` with its photo ``Images/<id>.*`` from the same
split folder and, when there is one, its ``Human_ids/<id>.png`` as the person ids. The category ids
are named by a ``labels.txt`` ("<id> <name>" lines, as written here) or, without one, as CIHP names
them (the ``cihp-20`` label set: LIP's 20 classes but id 10 ``torso-skin`` where LIP has
``jumpsuits``, so importing into a LIP-20 store reports torso-skin as an unknown label); an id that
neither names is reported as an unknown label ``category id <n>``. ``Instance_ids`` and the colour
folders are not read: the part instances follow from the part labels and the person ids. An image
without ``Human_ids`` is imported without person ids (the store derives them when it needs them).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from ssfnet.labels import IGNORE_INDEX, get_label_set, voc_palette

from .common import Imported, InteropError, Record, Source, atomic_output, read_image_file

SPLIT = "Training"


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def part_instances(labels: np.ndarray, persons: np.ndarray) -> np.ndarray:
    """H x W uint8 part instance ids: one per (person, label) pair on person pixels, 0 elsewhere.

    Numbered 1, 2, ... person by person (ascending ids), each person's labels in id order.

    Raises:
        InteropError: more than 255 part instances in one photo.
    """
    pairs = persons.astype(np.int32) * 256 + labels
    on_person = persons > 0
    keys = np.unique(pairs[on_person])
    if keys.size > 255:
        raise InteropError(f"{keys.size} part instances in one photo: an 8-bit Instance_ids map holds 255")
    out = np.zeros(labels.shape, np.uint8)
    out[on_person] = (np.searchsorted(keys, pairs[on_person]) + 1).astype(np.uint8)
    return out


def export(records: list[Record], out: Path) -> Path:
    """Write the zip ``out`` (see the module docstring)."""
    label_sets = {r.label_set.name for r in records}
    if len(label_sets) > 1:
        raise InteropError(
            f"the records use several label sets ({', '.join(sorted(label_sets))}): CIHP's category ids "
            "mean one; export each label set's records on their own (--ids)"
        )
    label_set = records[0].label_set
    voc = np.asarray(voc_palette(256), dtype=np.uint8).reshape(-1, 3)
    derived = [r.record_id for r in records if r.persons is None]

    def write(path: Path) -> None:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for record in records:
                persons = record.person_ids()
                instances = part_instances(record.labels, persons)
                name = record.record_id
                archive.write(record.image_path, f"{SPLIT}/Images/{record.file_name}")
                archive.writestr(f"{SPLIT}/Category_ids/{name}.png", _png(record.labels))
                archive.writestr(f"{SPLIT}/Categories/{name}.png", _png(label_set.colourise(record.labels)))
                archive.writestr(f"{SPLIT}/Human_ids/{name}.png", _png(persons))
                archive.writestr(f"{SPLIT}/Humans/{name}.png", _png(voc[persons]))
                archive.writestr(f"{SPLIT}/Instance_ids/{name}.png", _png(instances))
                archive.writestr(f"{SPLIT}/Instances/{name}.png", _png(voc[instances]))
            archive.writestr(f"{SPLIT}/train_id.txt", "".join(f"{r.record_id}\n" for r in records))
            names = label_set.all_names[: label_set.num_ids]
            archive.writestr("labels.txt", "".join(f"{i} {n}\n" for i, n in enumerate(names)) + "255 unlabelled\n")
            archive.writestr("README.txt", _readme(label_set.name, derived))

    return atomic_output(out, write)


def _readme(label_set: str, derived: list[str]) -> str:
    text = (__doc__ or "").split("The zip holds", 1)[-1]
    note = (
        f"\nPerson ids derived from the labels (not checked by a person) for: {', '.join(derived)}\n"
        if derived
        else "\nEvery record's person ids were saved with it.\n"
    )
    head = f"Corrections exported from the SSFNet app in the CIHP layout; labels of {label_set}.\n\n"
    return f"{head}The zip holds{text}{note}"


def _names(source: Source) -> dict[int, str]:
    """Label names by category id: from ``labels.txt`` when the export has one, else CIHP's own."""
    found = [n for n in source.names if PurePosixPath(n).name == "labels.txt"]
    if not found:
        cihp = get_label_set("cihp-20")
        return dict(enumerate(cihp.all_names[: cihp.num_classes]))
    names = {}
    for number, line in enumerate(source.read(found[0]).decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        value, _, name = line.strip().partition(" ")
        if not value.isdigit() or not name.strip() or int(value) > 255:
            raise InteropError(f"{source.path}: {found[0]}, line {number} {line!r}: not '<id 0-255> <name>'")
        names[int(value)] = name.strip()
    return names


def _ids(source: Source, name: str) -> np.ndarray:
    """The H x W uint8 values of the 8-bit PNG ``name``."""
    try:
        with Image.open(io.BytesIO(source.read(name))) as im:
            if im.mode not in ("L", "P"):
                raise InteropError(f"{source.path}: {name} is a {im.mode} image, not 8-bit ids (grey or palette)")
            return np.array(im)
    except (OSError, SyntaxError, ValueError) as err:
        raise InteropError(f"{source.path}: {name} is not a readable PNG: {err}") from None


def read(path: Path, images: Path | None = None) -> list[Imported]:
    """The photos, part labels and person ids of a CIHP-layout zip or folder (see the module docstring).

    Photos come from each split's ``Images/``, else from ``images`` (default: beside the zip, or the folder).
    """
    source = Source(path, "the CIHP layout")
    names = _names(source)
    masks = source.find("Category_ids")
    masks = [n for n in masks if n.endswith(".png")]
    if not masks:
        raise InteropError(f"{path} has no Category_ids/*.png: not the CIHP layout")
    out = []
    for mask_name in masks:
        split, stem = PurePosixPath(mask_name).parent.parent, PurePosixPath(mask_name).stem
        labels = _ids(source, mask_name)
        regions = [
            (names.get(value, f"category id {value}"), labels == value)
            for value in np.unique(labels).tolist()
            if value != IGNORE_INDEX
        ]
        persons = []
        humans = [n for n in source.find("Human_ids", stem) if PurePosixPath(n).parent.parent == split]
        if humans:
            ids = _ids(source, humans[0])
            if ids.shape != labels.shape:
                raise InteropError(
                    f"{path}: {humans[0]} is {ids.shape[1]}x{ids.shape[0]} but {mask_name} "
                    f"{labels.shape[1]}x{labels.shape[0]}"
                )
            persons = [(person, ids == person) for person in np.unique(ids).tolist() if person]
        photos = [n for n in source.find("Images", stem) if PurePosixPath(n).parent.parent == split]
        if photos:
            name, data = PurePosixPath(photos[0]).name, source.read(photos[0])
        else:
            folder = images or (path if path.is_dir() else path.parent)
            found = sorted(folder.glob(f"{stem}.*"))[:1] or [folder / f"{stem}.jpg"]
            name, data = found[0].name, read_image_file(f"{split}/Images/{stem}.*", found)
        out.append(Imported(name, data, labels.shape, regions, persons, with_persons=bool(humans)))
    return out
