"""How a LIP-20 checkpoint parses everyday photos, and the signs of the coat/face shortcut.

    python -m train.wild --checkpoint checkpoints/ssfnet_lite0-lip20
    python -m train.wild --checkpoint runs/X/best --pascal-limit 100 --sources 100 --out runs/X/wild.json

Two measurements, single scale:

- **everyday**: ``lip-val74`` (74 everyday single-person photos with LIP-20 labels, for validation
  only): LIP-20 mIoU, per class, the share of upper-clothes, arm and leg pixels predicted coat,
  of hair predicted face, and how often coat is predicted against how often it is labelled.
- **proxies** on PASCAL-Person-Part's held-out photos (``train/splits``), whose parts say where
  the body regions are but not what covers them: the share of person pixels predicted coat, dress
  or jumpsuits; hair against face inside the head; the share of lower-arm pixels predicted an arm
  or a glove. Their yardsticks come from ground truth: CCP's held-out labels (coat, dress and
  jumpsuit share of person pixels) and VITON's (hair:face ratio).

A model that learnt PASCAL's regions as sets of classes with coat in every body set paints
ordinary people coat and their hair face: these figures show it, and whether a change ends it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ssfnet.data import open_source
from ssfnet.labels import LIP_20, get_label_set
from ssfnet.predictor import load_predictor

from .evaluate import confusion_over, per_class_table, score_source, spread
from .utils import write_json

SPLITS = Path(__file__).resolve().parent / "splits"
EVERYDAY = "lip-val74"
# LIP-20 ids.
COAT, HAIR, FACE = 7, 2, 13
ONE_PIECE = (6, 7, 10)  # dress, coat, jumpsuits: the members every body region's set held
ARM_CLASSES = (3, 14, 15)  # glove, left arm, right arm


def _share(numerator: float, denominator: float) -> float | None:
    return None if denominator <= 0 else round(100.0 * numerator / denominator, 2)


def held_out(source: str) -> list[str]:
    """The shipped validation ids of ``source`` (``train/splits/<source>-val.txt``)."""
    return (SPLITS / f"{source}-val.txt").read_text().split()


def everyday_scores(predictor, root: Path, *, limit: int | None = None) -> dict:
    """LIP-20 scores of ``predictor`` on ``root/lip-val74`` and its coat/face confusions (percent)."""
    dataset = open_source(f"folder:{root / EVERYDAY}", LIP_20)
    items = [(dataset, int(i)) for i in spread(len(dataset), limit)]
    cm = confusion_over(predictor, items, LIP_20.num_classes, label_set=LIP_20)
    metrics = cm.compute()
    m = cm.matrix.astype(np.float64)
    rows = m.sum(1)

    def as_coat(*classes: int) -> float | None:
        return _share(m[list(classes), COAT].sum(), rows[list(classes)].sum())

    return {
        "images": len(items),
        "miou": round(metrics["miou"], 2),
        "pixel_acc": round(metrics["pixel_acc"], 2),
        "per_class": {
            r["class"]: None if r["iou"] is None else round(r["iou"], 2) for r in per_class_table(metrics, LIP_20.names)
        },
        "upper_clothes_as_coat": as_coat(5),
        "arms_as_coat": as_coat(14, 15),
        "legs_as_coat": as_coat(16, 17),
        "hair_as_face": _share(m[HAIR, FACE], rows[HAIR]),
        "coat_predicted": _share(m[:, COAT].sum(), m.sum()),
        "coat_labelled": _share(rows[COAT], m.sum()),
    }


def pascal_proxies(predictor, root: Path, *, limit: int | None = None) -> dict:
    """Shortcut proxies of ``predictor`` on PASCAL-Person-Part's held-out photos (percent).

    A 7 x 20 table counts, for each ground-truth part, the LIP-20 classes predicted on it.
    """
    parts = get_label_set("pascal-person-part-7")
    dataset = open_source(
        f"pascal-person-part:{root / 'pascal-person-part'}", parts, ids=held_out("pascal-person-part")
    )
    table = np.zeros((parts.num_classes, LIP_20.num_classes), dtype=np.int64)
    indices = spread(len(dataset), limit)
    for start in range(0, len(indices), 4):
        pairs = [dataset.load(int(i)) for i in indices[start : start + 4]]
        for pred, (_, gt) in zip(predictor.predict_batch([image for image, _ in pairs]), pairs):
            keep = gt < parts.num_classes
            np.add.at(table, (gt[keep].astype(np.int64), pred[keep].astype(np.int64)), 1)
    person = table[1:].sum()
    head, lower_arm = table[parts.names.index("head")], table[parts.names.index("lower-arm")]
    return {
        "images": len(indices),
        "person_as_one_piece": _share(table[1:, list(ONE_PIECE)].sum(), person),
        "person_as_coat": _share(table[1:, COAT].sum(), person),
        "head_hair_to_face": None if head[FACE] == 0 else round(float(head[HAIR] / head[FACE]), 3),
        "lower_arm_as_arm": _share(lower_arm[list(ARM_CLASSES)].sum(), lower_arm.sum()),
    }


def ground_truth_references(root: Path, *, limit: int | None = 200) -> dict:
    """What people (CCP) and VITON's labels show, as yardsticks for :func:`pascal_proxies`.

    CCP's coat, dress and jumpsuit (romper) share of person pixels, in its coarse ``fashion-17``
    terms, and VITON's hair:face pixel ratio, both over their held-out photos.
    """
    fashion = get_label_set("fashion-17")
    ccp = open_source(f"ccp:{root / 'ccp'}", fashion, ids=held_out("ccp"))
    counts = np.zeros(fashion.num_ids, dtype=np.int64)
    for i in spread(len(ccp), limit):
        label = ccp.load(int(i))[1]
        counts += np.bincount(label[label < fashion.num_ids].ravel(), minlength=fashion.num_ids)
    one_piece = sum(counts[fashion.names.index(n)] for n in ("coat", "dress", "jumpsuit"))
    viton = open_source(f"viton:{root / 'viton'}", LIP_20, ids=held_out("viton"))
    hair = face = 0
    for i in spread(len(viton), limit):
        label = viton.load(int(i))[1]
        hair, face = hair + int((label == HAIR).sum()), face + int((label == FACE).sum())
    return {
        "ccp_person_as_one_piece": _share(one_piece, counts[1:].sum()),
        "viton_hair_to_face": None if face == 0 else round(hair / face, 3),
    }


# Each held-out source and the label set its ground truth is scored in, as train.release does.
SOURCES = (("viton", "lip-20"), ("ccp", "fashion-17"), ("pascal-person-part", "person-head-3"))


def source_scores(predictor, root: Path, *, limit: int | None = None) -> dict:
    """The release's figures on the shipped held-out photos (``train/splits``): VITON LIP-20 mIoU,
    CCP coarse mIoU, PASCAL person and head IoU, on an even spread of ``limit`` photos each."""
    scores = {}
    for kind, gt_name in SOURCES:
        if not (root / kind).is_dir():
            continue
        gt_set = get_label_set(gt_name)
        cm, size = score_source(predictor, f"{kind}:{root / kind}", gt_set, held_out(kind), limit=limit, progress=False)
        metrics = cm.compute()
        row = {"label_set": gt_name, "images": min(size, limit) if limit else size, "miou": round(metrics["miou"], 2)}
        row.update({key: round(metrics[key], 2) for key in ("person_iou", "head_iou") if key in metrics})
        scores[kind] = row
    return scores


def wild_report(predictor, root: Path, *, pascal_limit: int | None = None, references: bool = True) -> dict:
    """:func:`everyday_scores` and :func:`pascal_proxies` (and their yardsticks) of a LIP-20 predictor.

    Parts missing from ``root`` are left out with a message; a model of another label set gets
    an empty report.
    """
    if predictor.label_set.name != LIP_20.name:
        return {}
    report = {}
    if (root / EVERYDAY).is_dir():
        report["everyday"] = everyday_scores(predictor, root)
    else:
        print(f"note: {root / EVERYDAY} is absent; no everyday-photo scores", file=sys.stderr)
    if (root / "pascal-person-part").is_dir():
        report["pascal_proxies"] = pascal_proxies(predictor, root, limit=pascal_limit)
    if references and (root / "ccp").is_dir() and (root / "viton").is_dir():
        report["references"] = ground_truth_references(root)
    return report


def format_report(report: dict) -> str:
    """The report as a few lines of text."""
    lines = []
    for kind, row in report.get("sources", {}).items():
        extra = "".join(f", {k} {row[k]:.2f}" for k in ("person_iou", "head_iou") if k in row)
        lines.append(f"{kind} held out ({row['images']} photos, {row['label_set']}): mIoU {row['miou']:.2f}{extra}")
    e = report.get("everyday")
    if e:
        lines.append(
            f"everyday ({EVERYDAY}, {e['images']} photos): mIoU {e['miou']:.2f}; upper-clothes as coat "
            f"{e['upper_clothes_as_coat']} %, arms as coat {e['arms_as_coat']} %, legs as coat {e['legs_as_coat']} %, "
            f"hair as face {e['hair_as_face']} %; coat predicted {e['coat_predicted']} % of pixels, labelled "
            f"{e['coat_labelled']} %"
        )
        ious = ", ".join(f"{k} {v:.1f}" for k, v in e["per_class"].items() if v is not None)
        lines.append(f"  per class: {ious}")
    p = report.get("pascal_proxies")
    if p:
        lines.append(
            f"PASCAL held out ({p['images']} photos): person pixels as coat/dress/jumpsuits "
            f"{p['person_as_one_piece']} % (coat {p['person_as_coat']} %), head hair:face {p['head_hair_to_face']}, "
            f"lower arms as arm {p['lower_arm_as_arm']} %"
        )
    r = report.get("references")
    if r:
        lines.append(
            f"yardsticks from ground truth: CCP person pixels coat/dress/jumpsuit {r['ccp_person_as_one_piece']} %, "
            f"VITON hair:face {r['viton_hair_to_face']}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.wild", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (a LIP-20 model)")
    p.add_argument(
        "--data-root", default="../shared/datasets", help="folder holding lip-val74, pascal-person-part, ..."
    )
    p.add_argument("--pascal-limit", type=int, default=None, help="score at most this many PASCAL photos")
    p.add_argument(
        "--sources",
        type=int,
        default=None,
        metavar="N",
        help="also score N held-out photos of VITON, CCP and PASCAL as train.release does (to compare candidates)",
    )
    p.add_argument(
        "--part-gate", action="store_true", help="let a body-part head steer the classes (default: as released)"
    )
    p.add_argument("--input-size", type=int, default=None, help="longer side at inference (default: the checkpoint's)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    p.add_argument("--out", default=None, help="write the report to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(args.data_root)
    if not root.is_dir():
        print(f"{root} is absent: nothing to score", file=sys.stderr)
        return 0
    kwargs = {"precision": args.precision, **({"part_gate": True} if args.part_gate else {})}
    if args.input_size:
        kwargs["input_size"] = args.input_size
    predictor = load_predictor(args.checkpoint, "cpu", **kwargs)
    if predictor.label_set.name != LIP_20.name:
        print(f"{args.checkpoint} parses {predictor.label_set.name}, not LIP-20: nothing to score", file=sys.stderr)
        return 2
    report = wild_report(predictor, root, pascal_limit=args.pascal_limit)
    if args.sources:
        report["sources"] = source_scores(predictor, root, limit=args.sources)
    print(format_report(report))
    if args.out:
        write_json(Path(args.out), {"checkpoint": str(args.checkpoint), **report})
    return 0


if __name__ == "__main__":
    sys.exit(main())
