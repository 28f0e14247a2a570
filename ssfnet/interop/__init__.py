"""Corrections that travel to and from other annotation tools: COCO, CVAT, Label Studio and CIHP.

Export (:func:`export_corrections`) writes records of a corrections folder as

- ``coco``: COCO instance JSON with compressed RLE masks (:mod:`ssfnet.interop.coco`);
- ``cvat``: CVAT's "Segmentation mask 1.1" zip of PNG masks and ``labelmap.txt`` (:mod:`ssfnet.interop.cvat`);
- ``labelstudio``: Label Studio tasks JSON with brush RLE masks (:mod:`ssfnet.interop.labelstudio`);
- ``cihp``: a zip in CIHP's layout, part labels and person instances (:mod:`ssfnet.interop.cihp`).

Every format carries the records' person ids (split and merged in the app): COCO as one annotation
per person per label with a ``person_id``, CVAT as one object per person per label with the objects'
persons in ``ssfnet_persons.json``, Label Studio as one brush region per person per label with
``meta.person``, CIHP as ``Human_ids`` (derived from the labels for a record saved without them).

Import (:func:`import_corrections`) reads them all back into a corrections folder as new
records, person ids included, their labels mapped by name onto a label set; names the set lacks are reported and
refuse the import unless they are to become unlabelled pixels. Command line: ``python -m
ssfnet.interop export|import`` (``--help``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ssfnet.labels import LabelSet

from . import cihp, coco, cvat, labelstudio
from .common import InteropError, import_items, records_to_export

__all__ = ["FORMATS", "READABLE", "InteropError", "export_corrections", "import_corrections"]

FORMATS = {"coco": coco, "cvat": cvat, "labelstudio": labelstudio, "cihp": cihp}
# The formats that import reads.
READABLE = tuple(name for name, module in FORMATS.items() if hasattr(module, "read"))


def _module(fmt: str):
    if fmt not in FORMATS:
        raise InteropError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return FORMATS[fmt]


def export_corrections(
    root: str | os.PathLike,
    fmt: str,
    out: str | os.PathLike,
    *,
    ids: list[str] | None = None,
    all_versions: bool = False,
    approved_only: bool = False,
    **options,
) -> tuple[Path, int]:
    """Export records of the corrections folder ``root`` in format ``fmt`` to ``out``.

    Args:
        root: Corrections folder.
        fmt: ``coco`` (``out``: a JSON file, images copied into ``images/`` beside it),
            ``cvat`` (``out``: a zip), ``labelstudio`` (``out``: a JSON file, images beside it,
            the labelling config in ``out`` with ``.xml``) or ``cihp`` (``out``: a zip).
        out: Where to write; written under a temporary name and renamed.
        ids: Only these records; default the latest record of each edit chain.
        all_versions: Also the records later ones were edited from.
        approved_only: Only records a reviewer approved.
        options: The format's own: ``labelstudio`` takes ``image_root`` (the URL prefix of the
            images, e.g. ``/data/local-files/?d=export/images``) and ``predictions`` (write the
            masks as pre-annotations to review, not as annotations).

    Returns:
        ``out`` as a Path and the number of records written.

    Raises:
        InteropError: unknown format, unknown ids, an unreadable record, nothing to export.
    """
    module = _module(fmt)
    records = records_to_export(root, ids=ids, all_versions=all_versions, approved_only=approved_only)
    if options and module is not labelstudio:
        raise InteropError(f"{', '.join(options)}: options of the labelstudio format only")
    return module.export(records, Path(out), **options), len(records)


def import_corrections(
    path: str | os.PathLike,
    fmt: str,
    root: str | os.PathLike,
    label_set: str | LabelSet = "lip-20",
    *,
    images: str | os.PathLike | None = None,
    keep_unknown: bool = False,
) -> dict:
    """Import another tool's export ``path`` (format ``fmt``) into the corrections folder ``root``.

    Args:
        path: The export: a JSON file (``coco``, ``labelstudio``) or a zip or its folder (``cvat``, ``cihp``).
        fmt: ``coco``, ``cvat``, ``labelstudio`` or ``cihp``.
        root: Corrections folder to add records to.
        label_set: The label set the names are mapped onto (case, spaces, ``-`` and ``_`` ignored).
        images: Folder of the image files the export names (default: beside the export, or inside the zip).
        keep_unknown: Store the pixels of names the label set lacks as unlabelled (255) instead
            of refusing the import.

    Returns:
        ``{"imported": [record ids], "unknown": {name: regions}, "label_set": name}``.

    Raises:
        InteropError: unreadable or inconsistent input, or unknown names; nothing was written.
    """
    module = _module(fmt)
    if fmt not in READABLE:
        raise InteropError(f"{fmt} is written, not read: import one of {', '.join(READABLE)}")
    path = Path(path)
    if not path.exists():
        raise InteropError(f"{path} does not exist")
    items = module.read(path, Path(images) if images is not None else None)
    return import_items(items, root, label_set, source=fmt, keep_unknown=keep_unknown)
