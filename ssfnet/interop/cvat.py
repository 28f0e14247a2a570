"""CVAT's "Segmentation mask 1.1" (Pascal VOC-style PNG masks in a zip), written and read.

The zip holds::

    labelmap.txt                      name:r,g,b:: per label (the label set's colours)
    ImageSets/Segmentation/default.txt  the image names without extension
    SegmentationClass/<name>.png      RGB: each pixel the colour of its label
    SegmentationObject/<name>.png     RGB: the objects, object k in Pascal VOC's colour k (1, 2, ...)
    JPEGImages/<name>.<ext>           the images
    ssfnet_persons.json               the person of each object, of the records saved with person ids

Unlabelled pixels (255) take Pascal VOC's "void" colour (224, 224, 192), which the label map does
not list, and come back unlabelled. Reading takes such a zip (or its unpacked folder); a colour in
a mask that neither labelmap.txt nor void names is refused with the image and colour.

Objects: a record saved with person ids (:mod:`ssfnet.data.correction_persons`) has one object per
person per label (CIHP's part instances; the background one object), numbered person by person;
a record without them has one object per label. The format has no attributes, so the person of
each object goes into ``ssfnet_persons.json`` beside ``labelmap.txt`` (``{"images": {name:
{object: person}}}``, person 0 = none), a file other readers pass over. Reading groups an image's
objects into persons by that file; person pixels of an object it does not list (drawn in CVAT
after the export) are given ids by the store's derivation
(:func:`ssfnet.data.correction_persons.fit_persons`), and an image it does not name at all (a zip
that CVAT wrote) is imported without person ids, which the store derives when it needs them.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from ssfnet.labels import IGNORE_INDEX, voc_palette

from .common import Imported, InteropError, Record, Source, atomic_output

VOID = (224, 224, 192)
PERSONS_FILE = "ssfnet_persons.json"
# Object k is drawn in Pascal VOC's colour k; colour 255 is void, so an image holds at most 254 objects.
MAX_OBJECTS = 254
_VOC = np.asarray(voc_palette(256), dtype=np.uint8).reshape(-1, 3)


def _colours(records: list[Record]) -> dict[str, tuple[int, int, int]]:
    """Each label name's colour (its label set's), unique and never void."""
    colours: dict[str, tuple[int, int, int]] = {}
    for record in records:
        lut = record.label_set.colour_lut()
        for value in np.unique(record.labels).tolist():
            if value != IGNORE_INDEX:
                colours.setdefault(record.label_set.all_names[value], tuple(int(c) for c in lut[value]))
    taken = list(colours.values())
    if VOID in taken or len(set(taken)) < len(taken):
        raise InteropError(
            "the label colours are not unique (or one is VOC's void colour): CVAT could not tell them apart"
        )
    return colours


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def objects_of(record: Record) -> tuple[np.ndarray, dict[int, int]]:
    """H x W uint8 object numbers of ``record`` (0 = none) and the person of each object (0 = none).

    One object per person per label where the record has person ids (see the module docstring),
    else one per label; numbered 1, 2, ... in the order of :meth:`Record.person_regions`.

    Raises:
        InteropError: more than :data:`MAX_OBJECTS` objects in one image.
    """
    objects = np.zeros(record.labels.shape, np.uint8)
    persons = {}
    for k, (_, person, mask) in enumerate(record.person_regions(), start=1):
        if k > MAX_OBJECTS:
            raise InteropError(
                f"record {record.record_id} has more than {MAX_OBJECTS} objects (person and label pairs): "
                "Pascal VOC's colours tell that many apart"
            )
        objects[mask] = k
        persons[k] = person
    return objects, persons


def export(records: list[Record], out: Path) -> Path:
    """Write the zip ``out``."""
    colours = _colours(records)

    def write(path: Path) -> None:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(
                "labelmap.txt",
                "# label:color_rgb:parts:actions\n"
                + "".join(f"{n}:{r},{g},{b}::\n" for n, (r, g, b) in colours.items()),
            )
            archive.writestr("ImageSets/Segmentation/default.txt", "".join(f"{r.record_id}\n" for r in records))
            owners = {}
            for record in records:
                height, width = record.labels.shape
                classes = np.empty((height, width, 3), np.uint8)
                classes[:] = VOID
                for name, mask in record.regions():
                    classes[mask] = colours[name]
                objects, persons = objects_of(record)
                instances = np.where((record.labels == IGNORE_INDEX)[..., None], np.uint8(VOID), _VOC[objects])
                archive.writestr(f"SegmentationClass/{record.record_id}.png", _png(classes))
                archive.writestr(f"SegmentationObject/{record.record_id}.png", _png(instances.astype(np.uint8)))
                archive.write(record.image_path, f"JPEGImages/{record.file_name}")
                if record.persons is not None:
                    owners[record.record_id] = {str(k): p for k, p in persons.items()}
            if owners:
                archive.writestr(PERSONS_FILE, json.dumps({"version": 1, "images": owners}))

    return atomic_output(out, write)


def _labelmap(text: str, where: str) -> dict[tuple[int, int, int], str]:
    names: dict[tuple[int, int, int], str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        try:
            name, colour = parts[0].strip(), tuple(int(v) for v in parts[1].split(","))
            if len(colour) != 3 or not all(0 <= v <= 255 for v in colour) or not name:
                raise ValueError("needs a name and three values 0-255")
        except (IndexError, ValueError) as err:
            raise InteropError(f"{where}, line {number} {line!r}: not 'name:r,g,b::' ({err})") from None
        if colour in names:
            raise InteropError(f"{where}: {names[colour]!r} and {name!r} have the same colour {colour}")
        names[colour] = name
    if not names:
        raise InteropError(f"{where} lists no label")
    return names


def _rgb(source: Source, name: str) -> np.ndarray:
    """The H x W x 3 uint8 pixels of the PNG ``name`` of ``source``."""
    try:
        with Image.open(io.BytesIO(source.read(name))) as im:
            return np.array(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise InteropError(f"{source.path}: {name} is not a readable PNG: {err}") from None


def _keys(rgb: np.ndarray) -> np.ndarray:
    """H x W int32: each pixel's colour as one number (r << 16 | g << 8 | b)."""
    return rgb[..., 0].astype(np.int32) << 16 | rgb[..., 1].astype(np.int32) << 8 | rgb[..., 2]


def _owners(source: Source) -> dict[str, dict[int, int]]:
    """The person of each object by image name, from :data:`PERSONS_FILE` (empty without one)."""
    found = [n for n in source.names if PurePosixPath(n).name == PERSONS_FILE]
    if not found:
        return {}
    where = f"{source.path}: {found[0]}"
    try:
        images = json.loads(source.read(found[0]))["images"]
        owners = {str(stem): {int(k): int(p) for k, p in objects.items()} for stem, objects in images.items()}
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise InteropError(f"{where} is not a map of images to {{object: person}}: {err}") from None
    for stem, objects in owners.items():
        bad = [p for p in objects.values() if not 0 <= p <= 255]
        if bad:
            raise InteropError(f"{where}: {stem} has person id {bad[0]}, not between 0 and 255")
    return owners


def _object_persons(source: Source, stem: str, owners: dict[int, int], size: tuple[int, int]):
    """(person, H x W bool mask) of each object of ``stem`` that ``owners`` gives a person."""
    found = source.find("SegmentationObject", stem)
    if not found:
        return []
    rgb = _rgb(source, found[0])
    if rgb.shape[:2] != size:
        raise InteropError(
            f"{source.path}: {found[0]} is {rgb.shape[1]}x{rgb.shape[0]} but its class mask {size[1]}x{size[0]}"
        )
    number = {int(k): i for i, k in enumerate(_keys(_VOC[None]).ravel().tolist())}
    keys = _keys(rgb)
    out = []
    for key in np.unique(keys).tolist():
        k = number.get(key)
        if k is None:
            raise InteropError(f"{source.path}: {found[0]} has colour {key >> 16, (key >> 8) & 255, key & 255}, "
                               "which is no Pascal VOC object colour")  # fmt: skip
        if 0 < owners.get(k, 0):
            out.append((owners[k], keys == key))
    return out


def read(path: Path, images: Path | None = None) -> list[Imported]:
    """The images, regions and persons of a Segmentation mask 1.1 zip (or folder).

    Images come from its ``JPEGImages/``, else from ``images`` (default: beside it).
    """
    source = Source(path, "CVAT's Segmentation mask format")
    maps = [n for n in source.names if PurePosixPath(n).name == "labelmap.txt"]
    if not maps:
        raise InteropError(f"{path} has no labelmap.txt: not CVAT's Segmentation mask format")
    names = _labelmap(source.read(maps[0]).decode("utf-8", errors="replace"), f"{path}: labelmap.txt")
    owners = _owners(source)
    out = []
    for mask_name in source.find("SegmentationClass"):
        stem = PurePosixPath(mask_name).stem
        rgb = _rgb(source, mask_name)
        keys = _keys(rgb)
        regions = []
        for key in np.unique(keys).tolist():
            colour = (key >> 16, (key >> 8) & 255, key & 255)
            if colour == VOID:
                continue
            if colour not in names:
                raise InteropError(f"{path}: {mask_name} has colour {colour}, which labelmap.txt does not name")
            regions.append((names[colour], keys == key))
        persons = _object_persons(source, stem, owners[stem], rgb.shape[:2]) if stem in owners else []
        inside = source.find("JPEGImages", stem)
        if inside:
            name, data = PurePosixPath(inside[0]).name, source.read(inside[0])
        else:
            folder = images or (path if path.is_dir() else path.parent)
            found = sorted(folder.glob(f"{stem}.*"))
            if not found:
                raise InteropError(
                    f"no image for {mask_name}: neither JPEGImages/{stem}.* in {path} nor {folder}/{stem}.*"
                )
            name, data = found[0].name, found[0].read_bytes()
        out.append(Imported(name, data, rgb.shape[:2], regions, persons, with_persons=stem in owners))
    if not out:
        raise InteropError(f"{path} has no SegmentationClass/*.png masks")
    return out
