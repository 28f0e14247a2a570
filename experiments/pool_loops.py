"""Pool repeats of the simulated-annotator loop: the mean held-out CCP change over seeds, and how surely.

One loop scores a fine-tune on about a hundred held-out CCP photos; a change of a few tenths of a
point is then within the luck of which photos were held out. Repeating the loop with other seeds
(other corrections, other held-out photos, another fine-tuning order) and pooling the repeats tells
more: the mean change over the repeats, with a 95 % interval from a bootstrap that resamples both
the repeats and the photos, the photos jointly: repeats hold out overlapping sets of the same CCP
photos, and share their luck (:func:`train.evaluate.pooled_paired_bootstrap`)::

    python -m experiments.pool_loops runs/loop-s0 runs/loop-s1 runs/loop-s2 --out runs/loop-pooled

``--against`` names a control loop per loop (the same seed with ``--corrections-share 0.001``, say)
and also pools each loop's change minus its control's, both scored on the loop's held-out photos
(the control's models are scored again on them where it held out other photos)::

    python -m experiments.pool_loops runs/loop-s0 runs/loop-s1 --against runs/control-s0 runs/control-s1

Every model a loop scored is pooled: its fine-tune and each ``--also-blend`` share. The per-photo
matrices come from each loop's ``ccp_per_image.npz``; a loop folder written without it is scored
again from its checkpoints and ``eval_split.json`` (a relative path the loop recorded is looked up
where it is, then above the loop's folder), and the matrices are then saved there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from experiments.simulate_loop import PER_IMAGE_FILE
from train.evaluate import evaluate_checkpoint, matrix_score, pooled_paired_bootstrap
from train.utils import write_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m experiments.pool_loops",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("loops", nargs="+", help="folders written by python -m experiments.simulate_loop --out")
    p.add_argument("--out", default=None, help="folder for pooled.md and pooled.json (default: print only)")
    p.add_argument(
        "--against",
        nargs="+",
        default=None,
        metavar="CONTROL",
        help="control loops, one per loop in the same order (e.g. --corrections-share 0.001 with the same seed): "
        "also pool each loop's change minus its control's, both scored on the loop's held-out photos",
    )
    p.add_argument("--draws", type=int, default=2000, help="bootstrap draws")
    p.add_argument("--device", default=None, help="where to score loops that saved no per-photo matrices")
    return p.parse_args(argv)


def scored_models(report: dict) -> dict[str, tuple[float, str]]:
    """The models a loop scored after fine-tuning: tag -> (share of the change kept, checkpoint)."""
    models = {"after": (float(report.get("blend") or 1.0), report["fine_tuned"])}
    for share, blend in (report.get("blends") or {}).items():
        models[f"blend-{share}"] = (float(share), blend["checkpoint"])
    return models


def ccp_entry(loop: Path) -> dict:
    """The CCP source the loop scored, as its ``eval_split.json`` records it."""
    split = json.loads((loop / "eval_split.json").read_text())
    (entry,) = [s for s in split["sources"] if s["kind"] == "ccp"]
    return entry


def ccp_source(loop: Path) -> str:
    """The CCP source spec the loop scored."""
    return f"ccp:{ccp_entry(loop)['path']}"


def held_out_photos(loop: Path) -> list[str]:
    """The held-out CCP photos the loop scored, in the order of its per-photo matrices (the sorted ids)."""
    return sorted(set(ccp_entry(loop)["val_ids"]))


def recorded_path(path: str, loop: Path) -> Path:
    """A path a loop recorded: as it is where it exists, else relative to a folder above the loop's
    (where the loop ran: a relative ``--out`` and ``--base`` are relative to it)."""
    given = Path(path)
    if given.is_absolute() or given.exists():
        return given
    for folder in loop.resolve().parents:
        if (folder / given).exists():
            return folder / given
    return given


def score_on(checkpoints: dict[str, Path], loop: Path, device: str | None) -> dict[str, np.ndarray]:
    """Per-photo CCP matrices of ``checkpoints`` (tag -> folder) on the held-out photos of ``loop``."""
    missing = [str(path) for path in checkpoints.values() if not path.exists()]
    if missing:
        raise FileNotFoundError(f"these checkpoints are gone: {', '.join(missing)}")
    matrices, source = {}, ccp_source(loop)
    for tag, checkpoint in checkpoints.items():
        print(f"[pool] scoring {checkpoint} on the held-out CCP photos of {loop}")
        result = evaluate_checkpoint(
            checkpoint, [source], gt_label_set="fashion-17", split=loop / "eval_split.json",
            device=device, per_image=True,
        )  # fmt: skip
        matrices[tag] = np.asarray(result["per_image"], dtype=np.int64)
    return matrices


def load_matrices(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as arrays:
        return {tag: arrays[tag] for tag in arrays.files}


def per_image(loop: Path, report: dict, device: str | None) -> dict[str, np.ndarray]:
    """Per-photo CCP matrices of the base ("before") and of every scored model, saved or scored again."""
    saved = loop / PER_IMAGE_FILE
    if saved.is_file():
        return load_matrices(saved)
    recorded = {"before": report["base"], **{tag: path for tag, (_, path) in scored_models(report).items()}}
    try:
        matrices = score_on({tag: recorded_path(path, loop) for tag, path in recorded.items()}, loop, device)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{loop} saved no {PER_IMAGE_FILE} and {err}") from None
    np.savez_compressed(saved, **matrices)
    return matrices


def control_on(
    loop: Path, photos: list[str], control: Path, report: dict, device: str | None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A control loop's fine-tuned models scored on ``loop``'s held-out ``photos``, and its share -> tag.

    Where the two loops held out the same photos the control's own matrices serve; else its models
    are scored on the loop's photos once, and the matrices saved in the loop's folder.
    """
    models = scored_models(report)
    tags = {f"{share:g}": tag for tag, (share, _) in models.items()}
    if held_out_photos(control) == photos:
        return per_image(control, report, device), tags
    saved = loop / f"against-{control.name}.npz"
    if saved.is_file():
        return load_matrices(saved), tags
    matrices = score_on({tag: recorded_path(path, control) for tag, (_, path) in models.items()}, loop, device)
    np.savez_compressed(saved, **matrices)
    return matrices, tags


def pool(loops: list[Path], draws: int = 2000, device: str | None = None, against: list[Path] | None = None) -> dict:
    """Each loop's changes and their mean over the loops, per share of the fine-tune's change kept;
    with ``against`` (a control loop per loop), also each loop's change minus its control's.

    Raises:
        ValueError: the loops fine-tuned different bases, no model was scored by all of them, or a
            loop's per-photo matrices do not match its held-out photos.
    """
    reports = [json.loads((loop / "report.json").read_text()) for loop in loops]
    bases = {str(report["base"]) for report in reports}
    if len(bases) > 1:
        raise ValueError(f"the loops fine-tuned different bases ({', '.join(sorted(bases))}): pool repeats of one base")
    by_share: dict[float, list[str]] = {}  # share -> the tag of the model each loop scored at it, in loop order
    for report in reports:
        for tag, (share, _) in scored_models(report).items():
            by_share.setdefault(share, []).append(tag)
    common = sorted((share for share, tags in by_share.items() if len(tags) == len(loops)), reverse=True)
    if not common:
        raise ValueError("no share of the fine-tune's change was scored by every loop")
    score = matrix_score("lip-20", "fashion-17")
    matrices = [per_image(loop, report, device) for loop, report in zip(loops, reports)]
    photos = [held_out_photos(loop) for loop in loops]
    for loop, ids, m in zip(loops, photos, matrices):
        if len(ids) != len(m["before"]):
            raise ValueError(f"{loop}: {len(m['before'])} per-photo matrices for {len(ids)} held-out photos")
    runs = [
        {
            "loop": str(loop),
            "command": report.get("command"),
            "iterations": report.get("finetune_iterations"),
            "before": round(score(m["before"].sum(0)), 2),
        }
        for loop, report, m in zip(loops, reports, matrices)
    ]
    rows = []
    for share in common:
        pairs = [(m["before"], m[tag]) for m, tag in zip(matrices, by_share[share])]
        rows.append(pooled_row(share, pairs, score, photos, draws))
    result = {"base": bases.pop(), "runs": runs, "rows": rows}
    if against is not None:
        result["against"] = versus_controls(loops, against, matrices, by_share, common, photos, result["base"], score,
                                            draws=draws, device=device)  # fmt: skip
    return result


def pooled_row(share: float, pairs: list, score, photos: list[list[str]], draws: int) -> dict:
    """One share's (before, after) pairs, loop by loop: each loop's change and their pooled mean."""
    each = [round(score(after.sum(0)) - score(before.sum(0)), 2) for before, after in pairs]
    return {"share": share, "changes": each, "pooled": pooled_paired_bootstrap(pairs, score, ids=photos, draws=draws)}


def versus_controls(loops, controls, matrices, by_share, common, photos, base, score, *, draws, device) -> dict:
    """Each loop's model minus its control's at the same share, paired on the loop's held-out photos."""
    if len(controls) != len(loops):
        raise ValueError(f"{len(controls)} control loops for {len(loops)} loops: give one per loop, in order")
    reports = [json.loads((c / "report.json").read_text()) for c in controls]
    control_bases = {str(report["base"]) for report in reports}
    if control_bases != {base}:
        raise ValueError(f"the control loops fine-tuned {', '.join(sorted(control_bases))}, not {base}")
    scored = [
        control_on(loop, ids, control, report, device)
        for loop, ids, control, report in zip(loops, photos, controls, reports)
    ]
    rows = []
    for share in common:
        if not all(f"{share:g}" in tags for _, tags in scored):
            continue
        pairs = [(m_c[tags[f"{share:g}"]], m[tag]) for (m_c, tags), m, tag in zip(scored, matrices, by_share[share])]
        rows.append(pooled_row(share, pairs, score, photos, draws))
    if not rows:
        raise ValueError("no share of the fine-tune's change was scored by every loop and every control")
    return {"controls": [str(c) for c in controls], "rows": rows}


def table_row(row: dict) -> str:
    """One share's changes, loop by loop, and their pooled mean."""
    p = row["pooled"]
    changes = " | ".join(f"{c:+.2f}" for c in row["changes"])
    return (
        f"| {row['share']:g} | {changes} | {p['delta']:+.2f} ({p['low']:+.2f} to {p['high']:+.2f}; "
        f"{p['p_gain']:.0%}) | {p['rose']} of {p['runs']} |"
    )


def markdown(result: dict) -> str:
    """The pooled changes as a table, with the runs they come from."""
    n = len(result["runs"])
    header = [
        "| share of the fine-tune's change kept | " + " | ".join(f"loop {i + 1}" for i in range(n))
        + " | mean (95 % interval; share of draws it rose in) | loops that rose |",
        "|---" * (n + 3) + "|",
    ]  # fmt: skip
    lines = [f"Held-out CCP mIoU change, {n} loops on `{result['base']}`:", "", *header]
    lines += [table_row(row) for row in result["rows"]]
    if "against" in result:
        lines += ["", "Minus each loop's control, both scored on the loop's held-out photos:", "", *header]
        lines += [table_row(row) for row in result["against"]["rows"]]
        lines += ["", "Controls, in the loops' order: " + ", ".join(f"`{c}`" for c in result["against"]["controls"])]
    lines.append("")
    for i, run in enumerate(result["runs"]):
        lines.append(
            f"- loop {i + 1}: `{run['loop']}`, before {run['before']:.2f}, {run['iterations']} iterations: "
            f"`{run['command']}`"
        )
    return "\n".join(lines)


def pool_loops(args: argparse.Namespace) -> dict:
    """Pool the loops ``args`` name, print the table and write it to ``--out``; the pooled result.

    Exits with a message (SystemExit) when a loop folder or its scores are missing.
    """
    loops = [Path(loop) for loop in args.loops]
    missing = [str(loop) for loop in loops if not (loop / "report.json").is_file()]
    if missing:
        sys.exit(f"error: no report.json in {', '.join(missing)} (folders written by experiments.simulate_loop)")
    try:
        against = None if args.against is None else [Path(c) for c in args.against]
        if against and any(not (c / "report.json").is_file() for c in against):
            raise ValueError(f"no report.json in one of {', '.join(map(str, against))}")
        result = pool(loops, draws=args.draws, device=args.device, against=against)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    text = markdown(result)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "pooled.json", result)
        (out / "pooled.md").write_text(text + "\n")
        print(f"wrote {out / 'pooled.md'} and {out / 'pooled.json'}")
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m experiments.pool_loops``: the exit status."""
    pool_loops(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
