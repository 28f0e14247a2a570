"""A model's proposals for a folder of photos, as records to export: pre-annotations for CVAT or Label Studio.

Each photo is parsed at its full (upright) size and becomes a :class:`~ssfnet.interop.common.Record`
named after its file; the exporters then write them like saved corrections (Label Studio as
``predictions``, to be reviewed there). Nothing is written to a corrections folder.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ssfnet.io import ImageError, read_image

from .common import InteropError, Record

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def propose(folder: Path, predictor, *, say: Callable[[str], None] = print) -> list[Record]:
    """Parse every photo directly in ``folder`` (by name) with ``predictor`` (an :class:`ssfnet.Predictor`).

    A file that is not a readable photo is left out with a line to ``say``.

    Raises:
        InteropError: no folder, or no photo in it.
    """
    if not folder.is_dir():
        raise InteropError(f"{folder} is not a folder of photos")
    records, used = [], set()
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and not p.name.startswith("."))
    for path in photos:
        try:
            image = read_image(path)
        except ImageError as err:
            say(f"skipping {path.name}: {err}")
            continue
        # Export names are file names: the stem with anything unusual replaced, made unique.
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem).strip("_") or "photo"
        name, k = stem, 1
        while name in used:
            k += 1
            name = f"{stem}-{k}"
        used.add(name)
        records.append(Record(name, path, predictor.predict(image), predictor.label_set, path.name))
        say(f"parsed {path.name}")
    if not records:
        raise InteropError(f"no readable photo ({', '.join(PHOTO_SUFFIXES)}) in {folder}")
    return records
