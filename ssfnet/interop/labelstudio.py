"""Label Studio tasks JSON with brush masks (``brushlabels`` results, RLE), written and read.

Each record is a task whose ``data.image`` names its image (copied into ``images/`` beside the
JSON; ``image_root`` sets the URL prefix Label Studio serves them from) and whose annotation (or,
for model proposals, prediction) holds one ``brushlabels`` result per label: the label's whole
region, RLE-coded as :mod:`ssfnet.interop.brush_rle` describes. A labelling config that matches
is written beside it (``<name>.xml``). Background is a label like the others, so every labelled
pixel comes back; unlabelled pixels are in no result.

A record saved with person ids (:mod:`ssfnet.data.correction_persons`) has one result per person
per label instead (CIHP's part instances; the background one result), each with its person in the
region's ``meta``: ``{"person": 3, "text": ["person 3"]}`` (the text is what Label Studio shows as
the region's meta and keeps when the region is edited), and ``data.persons`` is true. Reading
takes the person from ``meta.person``, else from a meta text ``person <n>``; a task with
``data.persons`` or any such region is imported with person ids, person pixels of regions without
one (drawn in Label Studio) given ids by the store's derivation
(:func:`ssfnet.data.correction_persons.fit_persons`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse
from xml.sax.saxutils import quoteattr

from ssfnet.data.correction_files import displayed_size

from . import brush_rle
from .common import Imported, InteropError, Record, atomic_output, copy_images, read_image_file

IMAGES_DIR = "images"
FROM_NAME, TO_NAME = "tag", "image"


def export(records: list[Record], out: Path, *, image_root: str = IMAGES_DIR, predictions: bool = False) -> Path:
    """Write the tasks to ``out``, the images into ``images/`` and the labelling config to ``out``'s ``.xml``."""
    tasks, names = [], {}
    for record in records:
        height, width = record.labels.shape
        results = []
        for name, person, mask in record.person_regions():
            names.setdefault(name, None)
            result = {
                "id": f"{record.record_id}-{len(results)}",
                "type": "brushlabels",
                "from_name": FROM_NAME,
                "to_name": TO_NAME,
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": {"format": "rle", "rle": brush_rle.encode(mask), "brushlabels": [name]},
            }
            if person:
                result["meta"] = {"person": person, "text": [f"person {person}"]}
            results.append(result)
        key = "predictions" if predictions else "annotations"
        data = {"image": f"{image_root.rstrip('/')}/{record.file_name}", "record_id": record.record_id}
        tasks.append(
            {
                "data": data | ({"persons": True} if record.persons is not None else {}),
                key: [{"result": results, **({"model_version": "ssfnet"} if predictions else {})}],
            }
        )
    labels = "".join(f"    <Label value={quoteattr(name)}/>\n" for name in names)
    config = (
        f'<View>\n  <Image name="{TO_NAME}" value="$image"/>\n'
        f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">\n{labels}  </BrushLabels>\n</View>\n'
    )
    copy_images(records, out.parent / IMAGES_DIR)
    atomic_output(out.with_suffix(".xml"), lambda path: path.write_text(config))
    return atomic_output(out, lambda path: path.write_text(json.dumps(tasks)))


def _image_name(url: str) -> str:
    """The file an image URL names: Label Studio's local-files ``?d=`` path, an upload's or a plain path."""
    parsed = urlparse(url)
    local = parse_qs(parsed.query).get("d")
    return unquote(local[0] if local else parsed.path)


def _person(result: dict, where: str) -> int | None:
    """The person of a brush result: its ``meta.person``, else a meta text ``person <n>``; None without."""
    meta = result.get("meta")
    if not isinstance(meta, dict):
        return None
    person = meta.get("person")
    if person is None:
        texts = meta.get("text")
        texts = [texts] if isinstance(texts, str) else texts if isinstance(texts, list) else []
        found = [m for t in texts if (m := re.fullmatch(r"\s*person\s+(\d+)\s*", str(t), re.IGNORECASE))]
        person = int(found[0].group(1)) if found else None
    if person is not None and (not isinstance(person, int) or isinstance(person, bool) or not 0 <= person <= 255):
        raise InteropError(f"{where}, result {result.get('id')}: person {person!r} is not a whole number 0-255")
    return person or None


def read(path: Path, images: Path | None = None) -> list[Imported]:
    """The images and brush regions of a Label Studio JSON export (image files under ``images``, default its folder).

    A task's first annotation is read (its predictions when it has none); results other than
    brush masks (rectangles, choices, ...) are left out.
    """
    try:
        tasks = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InteropError(f"{path} is not a Label Studio JSON export: {err}") from None
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise InteropError(f"{path} is not a Label Studio JSON export: expected a list of tasks")
    folder = images or path.parent
    out = []
    for k, task in enumerate(tasks):
        where = f"{path}: task {task.get('id', k) if isinstance(task, dict) else k}"
        try:
            url = str(task["data"]["image"])
            sets = task.get("annotations") or task.get("predictions") or [{"result": []}]
            results = [r for r in sets[0]["result"] if r.get("type") == "brushlabels"]
        except (KeyError, TypeError, IndexError, AttributeError) as err:
            raise InteropError(f"{where} lacks {err} (expected data.image and annotations[].result)") from None
        name = _image_name(url)
        candidates = [folder / name.lstrip("/"), folder / Path(name).name, folder / IMAGES_DIR / Path(name).name]
        data = read_image_file(name, candidates)
        size = None
        regions, persons = [], []
        for result in results:
            try:
                height, width = int(result["original_height"]), int(result["original_width"])
                value = result["value"]
                if value.get("format", "rle") != "rle":
                    raise InteropError(f"{where}: brush format {value.get('format')!r} (only rle is read)")
                labels = value["brushlabels"]
                mask = brush_rle.decode(value["rle"], height, width)
            except InteropError:
                raise
            except (KeyError, TypeError, ValueError) as err:
                raise InteropError(f"{where}, result {result.get('id')}: not a brush mask ({err})") from None
            if size is not None and size != (height, width):
                raise InteropError(f"{where}: results of different sizes ({size} and {(height, width)})")
            size = (height, width)
            regions += [(str(label), mask) for label in labels]
            person = _person(result, where)
            if person:
                persons.append((person, mask))
        if size is None:  # no brush result: the image's own size, nothing labelled
            try:
                width, height = displayed_size(data)
            except (OSError, SyntaxError, ValueError) as err:
                raise InteropError(f"{where}: {name} is not a readable image: {err}") from None
            size = (height, width)
        with_persons = task["data"].get("persons") is True
        out.append(Imported(Path(name).name, data, size, regions, persons, with_persons=with_persons))
    return out
