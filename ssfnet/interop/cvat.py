"""CVAT's "Segmentation mask 1.1" (Pascal VOC-style PNG masks in a zip), written and read.

The zip holds::

    labelmap.txt                      name:r,g,b:: per label (the label set's colours)
    ImageSets/Segmentation/default.txt  the image names without extension
    SegmentationClass/<name>.png      RGB: each pixel the colour of its label
    SegmentationObject/<name>.png     RGB: one object per label region (Pascal VOC colours 1, 2, ...)
    JPEGImages/<name>.<ext>           the images

Unlabelled pixels (255) take Pascal VOC's "void" colour (224, 224, 192), which the label map does
not list, and come back unlabelled. Reading takes such a zip (or its unpacked folder); a colour in
a mask that neither labelmap.txt nor void names is refused with the image and colour.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from ssfnet.labels import IGNORE_INDEX, voc_palette

from .common import Imported, InteropError, Record, atomic_output

VOID = (224, 224, 192)


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


def export(records: list[Record], out: Path) -> Path:
    """Write the zip ``out``."""
    colours = _colours(records)
    objects = np.asarray(voc_palette(256), dtype=np.uint8).reshape(-1, 3)

    def write(path: Path) -> None:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(
                "labelmap.txt",
                "# label:color_rgb:parts:actions\n"
                + "".join(f"{n}:{r},{g},{b}::\n" for n, (r, g, b) in colours.items()),
            )
            archive.writestr("ImageSets/Segmentation/default.txt", "".join(f"{r.record_id}\n" for r in records))
            for record in records:
                height, width = record.labels.shape
                classes = np.empty((height, width, 3), np.uint8)
                classes[:] = VOID
                instances = classes.copy()
                for k, (name, mask) in enumerate(record.regions(), start=1):
                    classes[mask] = colours[name]
                    instances[mask] = objects[k]
                archive.writestr(f"SegmentationClass/{record.record_id}.png", _png(classes))
                archive.writestr(f"SegmentationObject/{record.record_id}.png", _png(instances))
                archive.write(record.image_path, f"JPEGImages/{record.file_name}")

    return atomic_output(out, write)


class _Source:
    """The files of a zip or of its unpacked folder, by their paths inside."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_dir():
            self.names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
            self.archive = None
        else:
            try:
                self.archive = zipfile.ZipFile(path)
                self.names = self.archive.namelist()
            except (OSError, zipfile.BadZipFile) as err:
                raise InteropError(f"{path} is not a zip of CVAT's Segmentation mask format: {err}") from None

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


def read(path: Path, images: Path | None = None) -> list[Imported]:
    """The images and regions of a Segmentation mask 1.1 zip (or folder); images from it, else under ``images``."""
    source = _Source(path)
    maps = [n for n in source.names if PurePosixPath(n).name == "labelmap.txt"]
    if not maps:
        raise InteropError(f"{path} has no labelmap.txt: not CVAT's Segmentation mask format")
    names = _labelmap(source.read(maps[0]).decode("utf-8", errors="replace"), f"{path}: labelmap.txt")
    out = []
    for mask_name in source.find("SegmentationClass"):
        stem = PurePosixPath(mask_name).stem
        try:
            with Image.open(io.BytesIO(source.read(mask_name))) as im:
                rgb = np.array(im.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as err:
            raise InteropError(f"{path}: {mask_name} is not a readable PNG: {err}") from None
        keys = rgb[..., 0].astype(np.int32) << 16 | rgb[..., 1].astype(np.int32) << 8 | rgb[..., 2]
        regions = []
        for key in np.unique(keys).tolist():
            colour = (key >> 16, (key >> 8) & 255, key & 255)
            if colour == VOID:
                continue
            if colour not in names:
                raise InteropError(f"{path}: {mask_name} has colour {colour}, which labelmap.txt does not name")
            regions.append((names[colour], keys == key))
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
        out.append(Imported(name, data, rgb.shape[:2], regions))
    if not out:
        raise InteropError(f"{path} has no SegmentationClass/*.png masks")
    return out
