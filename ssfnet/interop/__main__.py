"""``python -m ssfnet.interop export|import``: corrections to and from COCO, CVAT, Label Studio and CIHP.

    python -m ssfnet.interop export --corrections corrections --format coco --out out/coco.json
    python -m ssfnet.interop export --corrections corrections --format cvat --out out/cvat.zip
    python -m ssfnet.interop export --corrections corrections --format labelstudio --out out/tasks.json
    python -m ssfnet.interop export --corrections corrections --format cihp --out out/cihp.zip
    python -m ssfnet.interop import --corrections corrections --format cvat --input task.zip --label-set lip-20
    python -m ssfnet.interop import --corrections corrections --format cihp --input CIHP/instance-level_human_parsing
    python -m ssfnet.interop propose --checkpoint checkpoints/ssfnet_lite0-lip20 --photos new/ --format labelstudio \
        --out out/pre.json

Exit status 0 on success, 2 for input that cannot be used (the message says why; nothing written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ssfnet.checkpoint import CheckpointError

from . import FORMATS, READABLE, InteropError, export_corrections, import_corrections


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ssfnet.interop", description="Corrections to and from COCO, CVAT and Label Studio."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    export = verbs.add_parser("export", help="write corrections as COCO, CVAT or Label Studio files")
    export.add_argument("--corrections", required=True, metavar="DIR", help="corrections folder written by the app")
    export.add_argument("--format", required=True, choices=list(FORMATS))
    export.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="coco / labelstudio: a .json file (images copied beside it); cvat / cihp: a .zip",
    )
    export.add_argument(
        "--ids", nargs="+", metavar="ID", help="only these records (default: the latest of each edit chain)"
    )
    export.add_argument("--all-versions", action="store_true", help="also the records later ones were edited from")
    export.add_argument("--approved-only", action="store_true", help="only records a reviewer approved")
    export.add_argument(
        "--image-root",
        default=None,
        metavar="URL",
        help="labelstudio: URL prefix of the images as Label Studio serves them (default: images, beside the JSON), "
        "e.g. /data/local-files/?d=export/images",
    )
    export.add_argument(
        "--predictions", action="store_true", help="labelstudio: write the masks as pre-annotations (predictions)"
    )
    propose = verbs.add_parser("propose", help="write a model's proposals for a folder of photos as pre-annotations")
    propose.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint folder of the model")
    propose.add_argument("--photos", required=True, metavar="DIR", help="folder of photos (files directly in it)")
    propose.add_argument("--format", required=True, choices=list(FORMATS))
    propose.add_argument("--out", required=True, metavar="PATH", help="as for export")
    propose.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when available)")
    propose.add_argument("--image-root", default=None, metavar="URL", help="labelstudio: as for export")
    imp = verbs.add_parser("import", help="add another tool's export to a corrections folder")
    imp.add_argument("--corrections", required=True, metavar="DIR", help="corrections folder to add records to")
    imp.add_argument("--format", required=True, choices=list(READABLE))
    imp.add_argument(
        "--input",
        required=True,
        metavar="PATH",
        help="coco / labelstudio: the .json; cvat / cihp: the .zip or its folder",
    )
    imp.add_argument("--images", metavar="DIR", help="folder of the images the export names (default: beside it)")
    imp.add_argument("--label-set", default="lip-20", help="label set the names are mapped onto (default: lip-20)")
    imp.add_argument(
        "--unknown",
        choices=("refuse", "ignore"),
        default="refuse",
        help="names the label set lacks: refuse the import (default) or store their pixels unlabelled",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        if args.verb == "export":
            options = {"image_root": args.image_root} if args.image_root else {}
            options |= {"predictions": True} if args.predictions else {}
            out, count = export_corrections(
                args.corrections, args.format, args.out, ids=args.ids, all_versions=args.all_versions,
                approved_only=args.approved_only, **options,
            )  # fmt: skip
            print(f"exported {count} record(s) as {args.format} to {out}")
        elif args.verb == "propose":
            from ssfnet.predictor import load_predictor

            from .proposals import propose

            records = propose(Path(args.photos), load_predictor(args.checkpoint, args.device))
            options = {"predictions": True} if args.format == "labelstudio" else {}
            options |= {"image_root": args.image_root} if args.image_root else {}
            out = FORMATS[args.format].export(records, Path(args.out), **options)
            print(f"wrote the proposals for {len(records)} photo(s) as {args.format} to {out}")
        else:
            report = import_corrections(
                args.input, args.format, args.corrections, args.label_set, images=args.images,
                keep_unknown=args.unknown == "ignore",
            )  # fmt: skip
            print(f"imported {len(report['imported'])} record(s) into {args.corrections} as {report['label_set']}")
            for name, regions in sorted(report["unknown"].items()):
                print(f"unknown label {name!r} ({regions} region(s)): stored unlabelled")
    except (InteropError, KeyError, FileNotFoundError, CheckpointError) as err:  # KeyError: an unknown --label-set
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
