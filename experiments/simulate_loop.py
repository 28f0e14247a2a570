"""Measure the correction loop with simulated annotators.

Real ground truth stands in for people: CCP images from the base run's validation
split are saved as corrections (their true labels, converted to LIP-20 with coarse
``skin``/``shoes`` values) through the app's corrections store, the base is
fine-tuned on ``--corrections`` of them mixed with the original data (as the app's
fine-tune does: by default the base's own training data, on the base's training split),
and both checkpoints are scored on the other CCP validation images (LIP-20 ->
CCP-coarse) and on the VITON validation split (LIP-20), before and after. The loop
refuses to start when the fine-tune would train on any photo it scores::

    python -m experiments.simulate_loop --base runs/base/best --split runs/base/split.json \\
        --ccp ../shared/datasets/ccp --viton ../shared/datasets/viton --corrections 50 --max-minutes 10

A base that never trained on CCP (its ``--split`` lists no CCP source) works too: then every CCP
photo is in the pool, the corrections are drawn from all of them and the others scored
(``--ccp-limit`` of them, spread evenly, so that scoring stays affordable). Where the split lists
PASCAL-Person-Part, its held-out photos are scored as well (person and head IoU through the
``person-head-3`` ground truth, as ``train.evaluate`` and ``train.release`` score them): forgetting
on both of the base's sources. :mod:`experiments.simulate_shift` runs this loop over counts and seeds.

By default the corrections are the first ``--corrections`` images of a seeded pseudo-random
order; ``--pick worst`` takes them among the images the base parses worst, as annotators who
correct the worst masks first would (one of each neighbouring pair of that ranking, the other held
out, so that the scored images are as hard).

Writes ``report.json`` and ``report.md`` (a table, and the held-out CCP change with its 95 % paired
bootstrap interval over the scored photos) and ``ccp_per_image.npz`` (each scored photo's confusion
matrix, per model: :mod:`experiments.pool_loops` pools repeats with other seeds) into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from ssfnet.checkpoint import fitting_dtype, load_checkpoint, read_metadata, save_checkpoint, storage_dtype
from ssfnet.data import CCPDataset, parse_source
from ssfnet.data.corrections import save_correction
from ssfnet.labels import LIP_20
from train.evaluate import evaluate_checkpoint, held_out_ids, matrix_score, paired_bootstrap, spread
from train.finetune import run as finetune
from train.finetune.data import OriginalSplit, original_specs, select_originals
from train.utils import write_json

CCP_KEY = "ccp_other_val (lip-20 -> ccp-coarse)"
VITON_KEY = "viton_val (lip-20)"
PASCAL_KEY = "pascal_val (lip-20 -> person-head-3)"
# The held-out CCP photos' per-image confusion matrices, one array per scored model ("before", "after", "blend-S").
PER_IMAGE_FILE = "ccp_per_image.npz"


def ordered(ids: list[str], seed: int) -> list[str]:
    """``ids`` in a fixed pseudo-random order (a hash of seed and id)."""
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())


def worst_pick(ids: list[str], scores: list[float], count: int, seed: int) -> list[str]:
    """``count`` of ``ids`` as corrections, among the images the base parses worst.

    The images are ranked by ``scores`` (lowest first), the ranking is cut into neighbouring pairs,
    and of each of the first ``count`` pairs one image is picked (the seed's order decides which);
    its neighbour stays held out, so the held-out images are as hard as the corrections.

    Raises:
        ValueError: Fewer than two images per correction, or scores that do not match the ids.
    """
    if len(scores) != len(ids):
        raise ValueError(f"{len(scores)} scores for {len(ids)} images")
    if 2 * count > len(ids):
        raise ValueError(f"--pick worst needs two validation images per correction: {len(ids)} for {count}")
    ranked = [i for _, i in sorted(zip(scores, ids))]
    return [ordered(ranked[2 * k : 2 * k + 2], seed)[0] for k in range(count)]


def add_scoring_options(p: argparse.ArgumentParser) -> None:
    """Where PASCAL-Person-Part is, and how many photos of each held-out set the loop scores."""
    p.add_argument("--pascal", default="../shared/datasets/pascal-person-part")
    p.add_argument("--viton-limit", type=int, default=300, help="VITON validation images scored (spread evenly)")
    p.add_argument(
        "--pascal-limit",
        type=int,
        default=250,
        help="PASCAL-Person-Part validation images scored (spread evenly), where the split lists that source",
    )
    p.add_argument(
        "--ccp-limit",
        type=int,
        default=None,
        help="held-out CCP photos scored at most (spread evenly over those not corrected; default: all)",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m experiments.simulate_loop",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--base", required=True, help="LIP-20 checkpoint folder to fine-tune")
    p.add_argument("--split", required=True, help="the base run's split.json (its validation ids are used)")
    p.add_argument("--ccp", default="../shared/datasets/ccp")
    p.add_argument("--viton", default="../shared/datasets/viton")
    p.add_argument(
        "--data",
        action="append",
        default=[],
        help="an original source of the fine-tune, KIND:PATH[:WEIGHT] (repeat; default: the base's training "
        "data where it is here, else the --viton and --ccp folders)",
    )
    p.add_argument("--corrections", type=int, default=50, help="CCP validation images used as corrections")
    p.add_argument(
        "--pick",
        choices=("order", "worst"),
        default="order",
        help="which CCP validation images become corrections: 'order', the first of a seeded pseudo-random "
        "order; 'worst', those the base parses worst (the ranking cut into neighbouring pairs, one of each of "
        "the worst pairs corrected and the other held out, so that the scored images keep their share of hard ones)",
    )
    add_scoring_options(p)
    p.add_argument("--max-minutes", type=float, default=10.0, help="fine-tuning budget (whole command)")
    p.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default: train.finetune's)")
    p.add_argument("--crop-size", type=int, default=None, help="fine-tuning crop size (default: train.finetune's)")
    p.add_argument("--batch-size", type=int, default=None, help="fine-tuning batch size (default: train.finetune's)")
    p.add_argument(
        "--freeze-backbone", action="store_true", help="fine-tune the decoder only (backbone weights, BN stats fixed)"
    )
    p.add_argument(
        "--freeze-bn", action="store_true", help="keep every BatchNorm's running statistics fixed while fine-tuning"
    )
    p.add_argument(
        "--val-max-images",
        type=int,
        default=None,
        help="validation images the fine-tune scores before and after (default: train.finetune's)",
    )
    p.add_argument(
        "--corrections-share",
        type=float,
        default=finetune.FinetuneConfig().corrections_share,
        help="share of every fine-tuning epoch drawn from the corrections (default: the fine-tune's choice, as "
        "in the app: from how the base parses the corrections)",
    )
    p.add_argument(
        "--blend",
        type=float,
        default=finetune.FinetuneConfig().blend,
        help="share of the fine-tune's change the published weights keep (train.finetune --blend; default: the "
        "fine-tune's choice)",
    )
    p.add_argument(
        "--also-blend",
        type=float,
        nargs="+",
        default=[],
        metavar="SHARE",
        help="also score the base plus these shares of the fine-tune's change (one fine-tune, several blends)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="runs/simulate-loop")
    args = p.parse_args(argv)
    # The command the report says it was made by.
    args.command = "python -m experiments.simulate_loop " + " ".join(sys.argv[1:] if argv is None else argv)
    return args


def score(
    checkpoint: Path, data: str, split: Path, out: Path, *, gt_label_set: str, args, limit=None, per_image=None
) -> dict:
    """mIoU (all classes; and over the classes present in the ground truth), pixel accuracy and image count;
    each image's confusion matrix is appended to ``per_image`` if given."""
    result = evaluate_checkpoint(
        checkpoint, [data], gt_label_set=gt_label_set, split=split, limit=limit, device=args.device, out=out,
        per_image=per_image is not None,
    )  # fmt: skip
    if per_image is not None:
        per_image.extend(result["per_image"])
    return {
        "miou": round(result["miou"], 2),
        "miou_present": round(result["miou_present"], 2),
        "pixel_acc": round(result["pixel_acc"], 2),
        "images": result["images"],
        # person-head-3 ground truth (PASCAL-Person-Part): person-vs-background and head IoU.
        **{key: round(result[key], 2) for key in ("person_iou", "head_iou") if result.get(key) is not None},
    }


def split_lists(split: str | Path, spec: str) -> bool:
    """Whether the run's ``split.json`` lists the source ``spec`` (the base trained on it)."""
    try:
        held_out_ids(split, spec)
    except ValueError:
        return False
    return True


def ccp_pool(args: argparse.Namespace, ccp_spec: str) -> tuple[list[str], bool]:
    """The CCP photos corrections are drawn from and scored on, and whether the base trained on CCP.

    A base that trained on CCP: the photos its split held out. One that never did: every CCP photo.
    """
    if split_lists(args.split, ccp_spec):
        return held_out_ids(args.split, ccp_spec), True
    return list(CCPDataset(args.ccp, "lip-20").ids), False


def capped(ids: list[str], limit: int | None) -> list[str]:
    """At most ``limit`` of the sorted ``ids``, spread evenly (all of them without a limit)."""
    ids = sorted(ids)
    return [ids[k] for k in spread(len(ids), limit)]


def split_entry(kind: str, folder: str, ids: list[str]) -> dict:
    """A source of a split file whose validation images are ``ids`` (as ``train.evaluate --split`` reads it)."""
    return {"kind": kind, "path": str(Path(folder).resolve()), "split": None, "val_ids": ids}


def rank_images(args: argparse.Namespace, ccp_spec: str, ids: list[str], out: Path) -> dict[str, float]:
    """The base's mIoU on each of the CCP validation images ``ids`` (LIP-20 -> CCP-coarse), by id."""
    rank_split = out / "rank_split.json"
    write_json(rank_split, {"sources": [split_entry("ccp", args.ccp, ids)]})
    matrices: list = []
    score(Path(args.base), ccp_spec, rank_split, out / "rank-ccp", gt_label_set="fashion-17", args=args,
          per_image=matrices)  # fmt: skip
    one = matrix_score("lip-20", "fashion-17")
    return {image: round(one(np.asarray(m)), 2) for image, m in zip(ids, matrices)}


def finetune_config(
    args: argparse.Namespace, data: list[str], corrections_dir: Path, out: Path
) -> finetune.FinetuneConfig:
    """The fine-tune of the loop: the fine-tuning defaults with this command's budget, data and overrides."""
    overrides = {
        "lr": args.lr,
        "crop_size": args.crop_size,
        "batch_size": args.batch_size,
        "freeze_backbone": args.freeze_backbone,
        "freeze_bn": args.freeze_bn,
        "device": args.device,
    }
    train = dataclasses.replace(
        finetune.FINETUNE_DEFAULTS,
        data=list(data),
        max_minutes=args.max_minutes if args.max_minutes > 0 else None,
        out=str(out / "finetune-run"),
        seed=args.seed,
        **({"val_max_images": args.val_max_images} if args.val_max_images is not None else {}),
        **{k: v for k, v in overrides.items() if v},
    )
    return finetune.FinetuneConfig(
        train=train,
        base=str(args.base),
        corrections=[str(corrections_dir)],
        corrections_share=args.corrections_share,
        blend=args.blend,
        holdout=0.0,
        keep_run_checkpoint=bool(args.also_blend),  # --also-blend blends from the trained weights
        publish_anyway=True,  # the loop measures every fine-tune, better or worse than its base
        checkpoints_dir=str(out / "checkpoints"),
        given=tuple(k for k, v in overrides.items() if v),  # the rest of the base's recipe carries over
    )


def blended_checkpoint(base: Path, fine_tuned: Path, share: float, folder: Path, trained: Path | None = None) -> Path:
    """Write the base plus ``share`` of the fine-tune's change (as ``train.finetune --blend share`` publishes).

    The change is taken from ``trained`` (the run's own checkpoint, full precision) where given;
    else from ``fine_tuned``, which may itself be a blend (its metadata's ``finetune.blend``): the
    share is of the trained change either way.
    """
    meta = read_metadata(fine_tuned)
    lineage = dict(meta.get("finetune") or {})
    from_trained = trained is not None and trained.exists()
    published = 1.0 if from_trained else float(lineage.get("blend") or 1.0)
    model, _ = load_checkpoint(trained if from_trained else fine_tuned)
    base_model, _ = load_checkpoint(base)
    finetune.blend_weights(model, base_model.state_dict(), share / published)
    lineage["blend"] = share
    return save_checkpoint(
        model, folder, variant=meta["variant"], label_set=meta["label_set"], options=meta.get("options", {}),
        metadata={"input_size": meta.get("input_size"), "finetune": lineage},
        dtype=fitting_dtype(model, storage_dtype(meta)), overwrite=True,
    )  # fmt: skip


def change_text(change: dict) -> str:
    """A paired-bootstrap result in words."""
    return (
        f"{change['delta']:+.2f} (95 % paired bootstrap over the {change['images']} photos: {change['low']:+.2f} "
        f"to {change['high']:+.2f}; it rose in {change['p_gain']:.0%} of {change['draws']} draws)"
    )


def source_folder(text: str) -> str:
    """The resolved folder a source spec reads (a ``subset:`` spec: the folder of the source it names)."""
    spec = parse_source(text)
    if spec.kind == "subset":
        return source_folder(json.loads(Path(spec.path).read_text())["source"])
    return str(Path(spec.path).resolve())


def leaked_ids(originals: list[OriginalSplit], scored: dict[str, set[str]]) -> dict[str, int]:
    """How many photos each original source would train on that the loop scores.

    Args:
        originals: The fine-tune's original sources, as :func:`train.finetune.data.select_originals` splits them.
        scored: resolved source folder -> the ids the loop holds out there (corrections included).
    """
    leaks = {}
    for original in originals:
        overlap = scored.get(source_folder(original.text), set()).intersection(original.train_ids)
        if overlap:
            leaks[original.text] = len(overlap)
    return leaks


def original_data(args: argparse.Namespace, scored: dict[str, set[str]]) -> list[str]:
    """The fine-tune's original sources, checked to leave out every photo the loop scores.

    Raises:
        ValueError: a source would train on held-out photos (a base that records no training
            split matching ``--split``): pass ``--data`` with sources that leave them out.
    """
    base_meta = read_metadata(Path(args.base))
    specs = original_specs(args.data, base_meta, lambda text: print(f"[loop] {text}"))
    if not specs:
        trained_ccp = split_lists(args.split, f"ccp:{args.ccp}")
        specs = [f"viton:{args.viton}"] + ([f"ccp:{args.ccp}"] if trained_ccp else [])
    config = dataclasses.replace(finetune.FINETUNE_DEFAULTS, data=specs)
    leaks = leaked_ids(select_originals(specs, base_meta, LIP_20, config, lambda text: None), scored)
    if leaks:
        told = ", ".join(f"{spec}: {n}" for spec, n in leaks.items())
        raise ValueError(
            f"the fine-tune would train on photos the loop scores ({told}): the base records no training "
            f"split that matches {args.split}; pass --data with sources that leave them out"
        )
    return specs


def pick_corrections(args: argparse.Namespace, ccp_spec: str, pool: list[str], out: Path) -> tuple[list, list, dict]:
    """The corrected photos, the scored ones (at most ``--ccp-limit``), per-photo base scores (``--pick worst``)."""
    if len(pool) <= args.corrections:
        raise ValueError(f"the pool holds {len(pool)} CCP images; need more than {args.corrections}")
    base_scores = None
    if args.pick == "worst":
        base_scores = rank_images(args, ccp_spec, sorted(pool), out)
        corrected = sorted(worst_pick(list(base_scores), list(base_scores.values()), args.corrections, args.seed))
        rest = sorted(set(pool) - set(corrected))
    else:
        corrected, rest = sorted(pool[: args.corrections]), sorted(pool[args.corrections :])
    return corrected, capped(rest, args.ccp_limit), base_scores


def save_corrections(args: argparse.Namespace, corrected: list[str], folder: Path) -> None:
    """The simulated annotators: true CCP labels as LIP-20 (coarse skin/shoes), saved as the app saves."""
    if folder.exists():
        return
    dataset = CCPDataset(args.ccp, "lip-20", ids=corrected)
    for i, sample_id in enumerate(dataset.ids):
        image, label = dataset.load(i)
        save_correction(
            folder, image, label, LIP_20, model="ground truth (simulated annotator)", source_name=f"ccp/{sample_id}.jpg"
        )


class Scorer:
    """Scores checkpoints on the loop's held-out sets; keeps each model's per-photo CCP matrices."""

    def __init__(self, args: argparse.Namespace, eval_split: Path, out: Path, pascal_ids: list[str] | None) -> None:
        self.args, self.eval_split, self.out, self.pascal = args, eval_split, out, pascal_ids is not None
        self.ccp_images: dict[str, list] = {}

    def __call__(self, checkpoint: Path, tag: str) -> dict:
        args, split, out = self.args, self.eval_split, self.out
        self.ccp_images[tag] = []
        scores = {
            CCP_KEY: score(
                checkpoint, f"ccp:{args.ccp}", split, out / f"{tag}-ccp", gt_label_set="fashion-17", args=args,
                per_image=self.ccp_images[tag],
            ),
            VITON_KEY: score(
                checkpoint, f"viton:{args.viton}", split, out / f"{tag}-viton", gt_label_set="lip-20", args=args,
                limit=args.viton_limit,
            ),
        }  # fmt: skip
        if self.pascal:
            scores[PASCAL_KEY] = score(
                checkpoint, f"pascal-person-part:{args.pascal}", split, out / f"{tag}-pascal",
                gt_label_set="person-head-3", args=args, limit=args.pascal_limit,
            )  # fmt: skip
        return scores

    def change(self, tag: str) -> dict:
        """``tag``'s held-out CCP change against the base: more than the luck of which photos were held out?"""
        one = matrix_score("lip-20", "fashion-17")
        return paired_bootstrap(self.ccp_images["before"], self.ccp_images[tag], one, seed=self.args.seed)


def simulate(args: argparse.Namespace) -> dict:
    """Run the loop ``args`` describe; the report also written to ``--out``."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ccp_spec, viton_spec, pascal_spec = f"ccp:{args.ccp}", f"viton:{args.viton}", f"pascal-person-part:{args.pascal}"
    pool, trained_ccp = ccp_pool(args, ccp_spec)
    pool = ordered(pool, args.seed)
    viton_val = held_out_ids(args.split, viton_spec)
    pascal_val = held_out_ids(args.split, pascal_spec) if split_lists(args.split, pascal_spec) else None
    corrected, rest, base_scores = pick_corrections(args, ccp_spec, pool, out)
    # The originals may train on neither the scored photos nor the corrections (they come as corrections).
    scored = {str(Path(args.ccp).resolve()): set(pool), str(Path(args.viton).resolve()): set(viton_val)}
    if pascal_val is not None:
        scored[str(Path(args.pascal).resolve())] = set(pascal_val)
    data = original_data(args, scored)
    corrections_dir = out / "corrections"
    save_corrections(args, corrected, corrections_dir)
    sources = [split_entry("ccp", args.ccp, rest), split_entry("viton", args.viton, viton_val)]
    if pascal_val is not None:
        sources.append(split_entry("pascal-person-part", args.pascal, pascal_val))
    eval_split = write_json(out / "eval_split.json", {"sources": sources})
    score_all = Scorer(args, eval_split, out, pascal_val)

    before = score_all(Path(args.base), "before")
    ft_report = finetune.run_finetune(finetune_config(args, data, corrections_dir, out))
    if ft_report.status != "finished":
        raise RuntimeError(f"fine-tuning ended with status {ft_report.status}")
    fine_tuned = Path(ft_report.checkpoint)
    after = score_all(fine_tuned, "after")
    blends = {}
    for share in args.also_blend:
        tag = f"blend-{share:g}"
        blended = blended_checkpoint(Path(args.base), fine_tuned, share, out / tag, out / "finetune-run" / "last")
        blends[f"{share:g}"] = {
            "checkpoint": str(blended.resolve()), "after": score_all(blended, tag), "ccp_change": score_all.change(tag),
        }  # fmt: skip
    shutil.rmtree(out / "finetune-run" / "last", ignore_errors=True)  # kept for the blends only
    settings = ft_report.settings or {}
    report = {
        "command": args.command,
        "base": str(args.base),
        "base_trained_on_ccp": trained_ccp,
        "fine_tuned": ft_report.checkpoint,
        # The share of the change the published fine-tune kept: given, or the fine-tune's choice.
        "blend": args.blend if args.blend is not None else settings.get("blend"),
        "settings": settings,
        "corrections": corrected,
        "pick": {"rule": args.pick, **({"base_miou_per_image": base_scores} if base_scores else {})},
        "original_data": data,
        "finetune_iterations": ft_report.iterations,
        "finetune_seconds": ft_report.elapsed_s,
        "before": before,
        "after": after,
        "ccp_change": score_all.change("after"),
        "blends": blends,
    }
    write_json(out / "report.json", report)
    # Every scored CCP photo's confusion matrix, per model: what experiments.pool_loops pools over seeds.
    np.savez_compressed(
        out / PER_IMAGE_FILE, **{tag: np.asarray(m, dtype=np.int64) for tag, m in score_all.ccp_images.items()}
    )
    write_markdown(report, rest, out)
    return report


def write_markdown(report: dict, rest: list[str], out: Path) -> None:
    """``report.md``: the scores before and after, the held-out CCP change and the blends."""
    before, after, change, blends = report["before"], report["after"], report["ccp_change"], report["blends"]
    lines = [
        "| validation set | images | mIoU before | mIoU after | mIoU, classes in the ground truth: before | after "
        "| pixel acc. before | pixel acc. after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in before:
        b, a = before[name], after[name]
        lines.append(f"| {name} | {b['images']} | {b['miou']:.2f} | {a['miou']:.2f} | {b['miou_present']:.2f} | "
                     f"{a['miou_present']:.2f} | {b['pixel_acc']:.2f} | {a['pixel_acc']:.2f} |")  # fmt: skip
    lines += [
        "",
        "(mIoU counts a class predicted on a few pixels but absent from every ground-truth map as 0; the",
        "classes-in-the-ground-truth mIoU leaves such classes out.)",
    ]
    if PASCAL_KEY in before:
        b, a = before[PASCAL_KEY], after[PASCAL_KEY]
        lines += ["", f"PASCAL-Person-Part: person IoU {b.get('person_iou', 0):.2f} -> {a.get('person_iou', 0):.2f}, "
                      f"head IoU {b.get('head_iou', 0):.2f} -> {a.get('head_iou', 0):.2f}"]  # fmt: skip
    lines += ["", f"Held-out CCP mIoU change: {change_text(change)}"]
    if report["settings"].get("reason"):
        lines += ["", f"Fine-tune settings: {report['settings']['reason']}"]
    if blends:
        lines += ["", "| share of the fine-tune's change kept | held-out CCP mIoU | change (95 % interval; rose in) | "
                  "VITON mIoU | VITON mIoU, classes in the ground truth |", "|---|---|---|---|---|"]  # fmt: skip
        rows = [(report["blend"], after, change)]
        rows += [(float(k), v["after"], v["ccp_change"]) for k, v in blends.items()]
        for share, scores, delta in sorted(rows, key=lambda row: -row[0]):
            lines.append(
                f"| {share:g} | {scores[CCP_KEY]['miou']:.2f} | {delta['delta']:+.2f} ({delta['low']:+.2f} to "
                f"{delta['high']:+.2f}; {delta['p_gain']:.0%}) | {scores[VITON_KEY]['miou']:.2f} | "
                f"{scores[VITON_KEY]['miou_present']:.2f} |"
            )
    rule = {"order": "in a seeded pseudo-random order", "worst": "among those the base parses worst"}
    pool = "CCP validation images" if report["base_trained_on_ccp"] else "CCP images (the base never saw CCP)"
    lines += ["", f"Corrections: {len(report['corrections'])} {pool}, picked {rule[report['pick']['rule']]}; "
                  f"{len(rest)} others scored."]  # fmt: skip
    table = "\n".join(lines)
    (out / "report.md").write_text(table + "\n")
    print(table)


def main(argv: list[str] | None = None) -> int:
    """``python -m experiments.simulate_loop``: the exit status."""
    simulate(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
