"""Compact training packs: resized JPEG photos, PNG label maps and an index in size-limited zip files.

A GPU machine that receives little data (a lease that carries 64 MiB, say) trains from packs::

    python -m train.pack --data viton:../shared/datasets/viton --data ccp:../shared/datasets/ccp \\
        --out packs --max-side 512 --pack-mib 64 --max-total-mib 60
    python -m train.train --data pack:packs/viton --data pack:packs/ccp:0.5 ...

Each source is written to ``OUT/<kind>/pack-00000.zip``, ``pack-00001.zip``, ... Each zip holds
``index.json`` (label set, samples with their source and size) plus ``images/<id>.jpg`` and
``labels/<id>.png`` (palette PNG: the pixel indices are the label ids, already converted to the
pack's label set, coarse values included), stored without further compression. No zip exceeds
the size limit. ``OUT/packs.json`` lists what was written.

``pack:PATH`` (a zip, or a folder searched recursively for ``*.zip``) opens a
:class:`ssfnet.data.packs.PackDataset`, a source kind of the library like the others.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ssfnet.data import ParsingDataset, open_source, parse_source
from ssfnet.data.packs import INDEX, PACK_FORMAT
from ssfnet.geometry import resize_long_side
from ssfnet.io import label_png_bytes
from ssfnet.labels import LabelSet, get_label_set

from .utils import write_json

MIB = 1 << 20
# Zip bookkeeping per member: local header (30 bytes) + central directory entry (46) + the name
# twice, plus the end record; an estimate that errs on the high side keeps files under the limit.
_ZIP_MEMBER_OVERHEAD = 96
_ZIP_END = 22 + 64
_PACK_OVERHEAD = 1024


def encode_sample(
    image: np.ndarray, label: np.ndarray, label_set: LabelSet, *, max_side: int | None, quality: int
) -> tuple[bytes, bytes, tuple[int, int]]:
    """Resize (longer side at most ``max_side``) and encode one pair as (JPEG, palette PNG, (h, w)).

    Labels are resized with nearest neighbour only, so every stored value is one of the input's.
    """
    if max_side is not None and max(label.shape) > max_side:
        image = resize_long_side(image, max_side)
        label = resize_long_side(label, max_side, nearest=True)
    ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return jpeg.tobytes(), label_png_bytes(label, label_set), label.shape


class _PackWriter:
    """Writes ``pack-NNNNN.zip`` files of at most ``max_bytes`` each in ``folder``."""

    def __init__(self, folder: Path, label_set: LabelSet, max_bytes: int, meta: dict) -> None:
        self.folder = folder
        self.label_set = label_set
        self.max_bytes = max_bytes
        self.meta = meta
        self.written: list[dict] = []
        self._zip: zipfile.ZipFile | None = None
        self._tmp: Path | None = None
        self._samples: list[dict] = []
        self._bytes = 0

    def _index_bytes(self, samples: list[dict]) -> bytes:
        index = {"format": PACK_FORMAT, "version": 1, "label_set": self.label_set.name, **self.meta, "samples": samples}
        return json.dumps(index, separators=(",", ":")).encode()

    def _projected(self, extra: int, samples: list[dict]) -> int:
        index = len(self._index_bytes(samples))
        return self._bytes + extra + index + _ZIP_MEMBER_OVERHEAD + 2 * len(INDEX) + _ZIP_END

    @staticmethod
    def _record(sample_id: str, source: str, size: tuple[int, int]) -> dict:
        return {"id": sample_id, "source": source, "height": int(size[0]), "width": int(size[1])}

    @staticmethod
    def _names(sample_id: str) -> tuple[str, str]:
        return f"images/{sample_id}.jpg", f"labels/{sample_id}.png"

    def cost(self, sample_id: str, source: str, jpeg: bytes, png: bytes, size: tuple[int, int]) -> int:
        """Bytes one sample adds to a pack: its two members and its index entry."""
        members = sum(_ZIP_MEMBER_OVERHEAD + 2 * len(n.encode()) for n in self._names(sample_id))
        entry = len(json.dumps(self._record(sample_id, source, size), separators=(",", ":"))) + 1
        return len(jpeg) + len(png) + members + entry

    def add(self, sample_id: str, source: str, jpeg: bytes, png: bytes, size: tuple[int, int]) -> None:
        record = self._record(sample_id, source, size)
        names = self._names(sample_id)
        extra = len(jpeg) + len(png) + sum(_ZIP_MEMBER_OVERHEAD + 2 * len(n.encode()) for n in names)
        if self._zip is not None and self._projected(extra, self._samples + [record]) > self.max_bytes:
            self.close()
        if self._zip is None:
            self._open()
            if self._projected(extra, [record]) > self.max_bytes:
                raise ValueError(f"sample {sample_id} alone exceeds the pack size limit of {self.max_bytes} bytes")
        self._zip.writestr(names[0], jpeg)
        self._zip.writestr(names[1], png)
        self._samples.append(record)
        self._bytes += extra

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"pack-{len(self.written):05d}.zip"
        self._tmp = self.folder / f".{name}.tmp"
        self._zip = zipfile.ZipFile(self._tmp, "w", compression=zipfile.ZIP_STORED)
        self._samples, self._bytes = [], 0

    def close(self) -> None:
        if self._zip is None:
            return
        self._zip.writestr(INDEX, self._index_bytes(self._samples))
        self._zip.close()
        target = self.folder / f"pack-{len(self.written):05d}.zip"
        os.replace(self._tmp, target)
        size = target.stat().st_size
        if size > self.max_bytes:
            raise RuntimeError(f"{target} is {size} bytes, over the limit of {self.max_bytes}")
        self.written.append({"file": str(target), "samples": len(self._samples), "bytes": size})
        self._zip = None


def _fill(
    writer: _PackWriter,
    dataset: ParsingDataset,
    order: np.ndarray,
    name: str,
    share: int | None,
    *,
    max_side: int | None,
    quality: int,
    progress: bool,
) -> None:
    """Add ``dataset``'s samples in ``order`` to ``writer`` while they fit in ``share`` bytes (None: all); close it."""
    written_bytes = 0
    for index in tqdm(order, desc=name, disable=not progress):
        image, label = dataset.load(int(index))
        jpeg, png, size = encode_sample(image, label, writer.label_set, max_side=max_side, quality=quality)
        sample_id = str(dataset.ids[int(index)])
        cost = writer.cost(sample_id, name, jpeg, png, size)
        # Each pack file also carries an index header and the zip's end records.
        if share is not None and written_bytes + cost + _PACK_OVERHEAD * (len(writer.written) + 1) > share:
            break
        writer.add(sample_id, name, jpeg, png, size)
        written_bytes += cost
    writer.close()


def write_packs(
    sources: Iterable[str],
    out: str | Path,
    *,
    label_set: str = "lip-20",
    max_side: int | None = 512,
    quality: int = 90,
    pack_bytes: int = 64 * MIB,
    max_total_bytes: int | None = None,
    max_per_source: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Pack every sample of each source (or a seeded random subset) into size-limited zip files.

    Args:
        sources: Source specs (``viton:PATH``; a weight, if present, is recorded but not applied).
        out: Output folder; source ``kind`` goes to ``out/kind/`` (``kind-2`` ... if repeated).
        label_set: Label set the stored labels are converted to.
        max_side: Longer side of stored samples (None keeps the size).
        quality: JPEG quality.
        pack_bytes: Size limit of one zip file.
        max_total_bytes: Stop adding samples once all packs together would exceed this; the
            budget is shared between the sources in the order given, evenly where it can be.
        max_per_source: At most this many samples per source.
        seed: Seed of the subset order (samples are taken in a seeded random order so that any
            prefix is an unbiased subset).
        progress: Show a progress bar.

    Returns:
        The manifest also written to ``out/packs.json``.
    """
    out = Path(out)
    ls = get_label_set(label_set)
    specs = [parse_source(s) if isinstance(s, str) else s for s in sources]
    manifest = {
        "format": PACK_FORMAT,
        "label_set": ls.name,
        "max_side": max_side,
        "quality": quality,
        "pack_bytes": pack_bytes,
        "sources": [],
    }
    total = 0
    used_names: set[str] = set()
    for k, spec in enumerate(specs):
        dataset = open_source(spec, ls)
        name = spec.kind
        while name in used_names:
            name = f"{spec.kind}-{len(used_names) + 1}"
        used_names.add(name)
        order = np.random.default_rng([seed, k]).permutation(len(dataset))
        if max_per_source is not None:
            order = order[:max_per_source]
        share = None
        if max_total_bytes is not None:
            share = (max_total_bytes - total) // (len(specs) - k)
        writer = _PackWriter(
            out / name, ls, pack_bytes, {"source": {"kind": spec.kind, "path": str(spec.path), "split": spec.split}}
        )
        _fill(writer, dataset, order, name, share, max_side=max_side, quality=quality, progress=progress)
        total += sum(p["bytes"] for p in writer.written)
        manifest["sources"].append(
            {
                "spec": str(spec.path),
                "kind": spec.kind,
                "folder": str(out / name),
                "weight": spec.weight,
                "samples": sum(p["samples"] for p in writer.written),
                "packs": writer.written,
            }
        )
    manifest["total_bytes"] = total
    write_json(out / "packs.json", manifest)
    return manifest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m train.pack",
        description="Write compact training packs (JPEG + PNG labels + index, zipped).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", action="append", required=True, help="source KIND:PATH (repeat for several)")
    p.add_argument("--out", default="packs", help="output folder (one subfolder per source)")
    p.add_argument("--label-set", default="lip-20", help="label set the stored labels are converted to")
    p.add_argument("--max-side", type=int, default=512, help="longer side of stored samples (0 keeps the size)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    p.add_argument("--pack-mib", type=float, default=64.0, help="size limit of one pack file in MiB")
    p.add_argument("--max-total-mib", type=float, default=None, help="size limit of all packs together in MiB")
    p.add_argument("--max-per-source", type=int, default=None, help="at most this many samples per source")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset order")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    manifest = write_packs(
        args.data,
        args.out,
        label_set=args.label_set,
        max_side=args.max_side or None,
        quality=args.quality,
        pack_bytes=int(args.pack_mib * MIB),
        max_total_bytes=int(args.max_total_mib * MIB) if args.max_total_mib else None,
        max_per_source=args.max_per_source,
        seed=args.seed,
    )
    for source in manifest["sources"]:
        size = sum(p["bytes"] for p in source["packs"]) / MIB
        print(
            f"{source['kind']}: {source['samples']} samples in {len(source['packs'])} pack(s), {size:.1f} MiB "
            f"-> {source['folder']}"
        )
    print(f"total {manifest['total_bytes'] / MIB:.1f} MiB; manifest {Path(args.out) / 'packs.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
