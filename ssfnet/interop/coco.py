"""COCO instance JSON with RLE masks (pycocotools' compressed RLE), written and read.

Each record is an ``images`` entry (``file_name``: its image, copied into ``images/`` beside the
JSON) and one annotation per label it holds: the label's whole region as one mask, a compressed
RLE ``{"size": [h, w], "counts": str}`` with ``iscrowd`` 0, its ``area`` and ``bbox``. Categories
are the label names (background included, so every labelled pixel comes back); unlabelled pixels
are in no annotation. Reading also takes uncompressed RLE and polygons, as other tools write them.

A record saved with person ids (:mod:`ssfnet.data.correction_persons`) gets one annotation per
person per label instead: the part instances of CIHP, each with ``"person_id"`` (1, 2, ... within
the image; a key COCO readers pass over) so that a person's parts can be grouped; the background
stays one annotation without it. Reading takes ``person_id`` back, so the record imported carries
the same person ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from .common import Imported, InteropError, Record, atomic_output, copy_images, read_image_file

IMAGES_DIR = "images"


def export(records: list[Record], out: Path) -> Path:
    """Write ``out`` (the JSON) and copy the images into ``images/`` beside it."""
    categories: dict[str, int] = {}
    images, annotations = [], []
    for image_id, record in enumerate(records, start=1):
        height, width = record.labels.shape
        images.append(
            {"id": image_id, "file_name": f"{IMAGES_DIR}/{record.file_name}", "width": width, "height": height}
        )
        for name, person, mask in record.person_regions():
            category = categories.setdefault(name, len(categories) + 1)
            rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
            annotation = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": category,
                "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
                "area": int(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0,
            }
            annotations.append(annotation | ({"person_id": person} if person else {}))
    document = {
        "info": {"description": "SSFNet corrections", "version": "1.0"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "person"} for name, i in categories.items()],
    }
    copy_images(records, out.parent / IMAGES_DIR)
    return atomic_output(out, lambda path: path.write_text(json.dumps(document)))


def _mask(segmentation, height: int, width: int, where: str) -> np.ndarray:
    """An annotation's segmentation (compressed or uncompressed RLE, or polygons) as an H x W bool mask."""
    try:
        if isinstance(segmentation, list):  # polygons
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
        if list(rle["size"]) != [height, width]:
            raise InteropError(f"{where}: mask size {rle['size']} but the image is {height}x{width} (h x w)")
        return mask_utils.decode(rle).astype(bool)
    except InteropError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as err:
        raise InteropError(f"{where}: not a COCO segmentation ({err})") from None


def read(path: Path, images: Path | None = None) -> list[Imported]:
    """The images and their regions of a COCO instance JSON (image files under ``images``, default its folder)."""
    try:
        document = json.loads(path.read_text())
        categories = {c["id"]: str(c["name"]) for c in document["categories"]}
        entries = {e["id"]: e for e in document["images"]}
        annotations = document.get("annotations", [])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise InteropError(f"{path} is not a COCO instance JSON: {err}") from None
    folder = images or path.parent
    out: dict[int, Imported] = {}
    for image_id, entry in entries.items():
        try:
            name, height, width = str(entry["file_name"]), int(entry["height"]), int(entry["width"])
        except (KeyError, TypeError, ValueError) as err:
            raise InteropError(f"{path}: image entry {image_id} lacks {err}") from None
        data = read_image_file(name, [folder / name, folder / Path(name).name])
        out[image_id] = Imported(name, data, (height, width))
    for k, annotation in enumerate(annotations):
        where = f"{path}: annotation {annotation.get('id', k)}"
        item = out.get(annotation.get("image_id"))
        if item is None:
            raise InteropError(f"{where} is of image {annotation.get('image_id')!r}, which the file does not list")
        name = categories.get(annotation.get("category_id"))
        if name is None:
            raise InteropError(f"{where} has category {annotation.get('category_id')!r}, which the file does not list")
        mask = _mask(annotation.get("segmentation"), *item.size, where)
        item.regions.append((name, mask))
        person = annotation.get("person_id")
        if person is not None:
            if not isinstance(person, int) or isinstance(person, bool):
                raise InteropError(f"{where} has person_id {person!r}, not a whole number")
            item.persons.append((person, mask))
    return list(out.values())
