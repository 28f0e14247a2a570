"""The correction loop where it matters: corrections of photos unlike the base's, over counts and seeds.

A base that never trained on CCP (VITON + PASCAL-Person-Part) is fine-tuned on ``--corrections``
CCP photos saved through the app's store with their true labels (:mod:`experiments.simulate_loop`,
with the app's defaults: the fine-tune chooses its share and blend from how the base parses the
corrections), for each count and seed, each fine-tune getting ``--max-minutes`` for the whole
command. It is scored on other CCP photos (coarse mIoU; at most ``--ccp-limit``, spread evenly), on
VITON's and on PASCAL-Person-Part's held-out photos (forgetting). The seeds of each count are
pooled with the paired bootstrap of :mod:`experiments.pool_loops` (repeats and photos resampled)::

    python -m experiments.simulate_shift --base runs/noccp-base/best --corrections 10 25 50 \\
        --seeds 0 1 2 --max-minutes 15 --out runs/shift

With ``--in-domain-base`` and ``--in-domain-split`` (the default checkpoint, which trained on CCP,
and its training run's split) the same grid runs on it too, the second case of the report.
Each loop writes its own folder (``<out>/<case>/c<count>-s<seed>``); a loop whose folder already
holds a ``report.json`` is not run again, so an interrupted grid goes on where it stopped.
``report.md`` and ``report.json`` hold a table per case: per count, the pooled held-out CCP change
with its 95 % interval, and the mean VITON and PASCAL person IoU changes over the seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments import pool_loops, simulate_loop
from train.evaluate import matrix_score, pooled_paired_bootstrap
from train.utils import write_json

CASES = (("shift", "a base that never saw CCP"), ("in-domain", "the default checkpoint, which trained on CCP"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m experiments.simulate_shift",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--base", required=True, help="LIP-20 checkpoint folder of a base that never trained on CCP")
    p.add_argument("--split", default=None, help="its training run's split.json (default: the one beside --base)")
    p.add_argument(
        "--in-domain-base", default=None, help="also run the grid on this base (e.g. the default checkpoint)"
    )
    p.add_argument("--in-domain-split", default=None, help="the in-domain base's training run's split.json")
    p.add_argument("--corrections", type=int, nargs="+", default=[10, 25, 50], help="corrections per fine-tune")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one loop per seed and count")
    p.add_argument("--max-minutes", type=float, default=15.0, help="each fine-tune's budget (whole command)")
    p.add_argument("--ccp-limit", type=int, default=200, help="held-out CCP photos scored per loop (spread evenly)")
    p.add_argument("--viton-limit", type=int, default=300, help="VITON validation photos scored (spread evenly)")
    p.add_argument("--pascal-limit", type=int, default=250, help="PASCAL validation photos scored (spread evenly)")
    p.add_argument("--ccp", default="../shared/datasets/ccp")
    p.add_argument("--viton", default="../shared/datasets/viton")
    p.add_argument("--pascal", default="../shared/datasets/pascal-person-part")
    p.add_argument("--val-max-images", type=int, default=None, help="passed to each loop's fine-tune")
    p.add_argument("--crop-size", type=int, default=None, help="passed to each loop's fine-tune")
    p.add_argument("--draws", type=int, default=2000, help="bootstrap draws")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="runs/shift")
    args = p.parse_args(argv)
    if (args.in_domain_base is None) != (args.in_domain_split is None):
        p.error("--in-domain-base and --in-domain-split go together")
    args.command = "python -m experiments.simulate_shift " + " ".join(sys.argv[1:] if argv is None else argv)
    return args


def base_split(base: str, split: str | None) -> str:
    """The split file of ``base``'s training run: ``split``, else the ``split.json`` of the run folder holding it."""
    if split:
        return split
    beside = Path(base).resolve().parent / "split.json"
    if not beside.is_file():
        raise FileNotFoundError(f"no split.json beside {base}: pass --split with its training run's split")
    return str(beside)


def loop_argv(args: argparse.Namespace, base: str, split: str, count: int, seed: int, out: Path) -> list[str]:
    """The :mod:`experiments.simulate_loop` command line of one loop: the app's fine-tune defaults."""
    argv = [
        "--base", base, "--split", split, "--ccp", args.ccp, "--viton", args.viton, "--pascal", args.pascal,
        "--corrections", str(count), "--seed", str(seed), "--max-minutes", f"{args.max_minutes:g}",
        "--ccp-limit", str(args.ccp_limit), "--viton-limit", str(args.viton_limit),
        "--pascal-limit", str(args.pascal_limit), "--out", str(out),
    ]  # fmt: skip
    for option, value in (("--val-max-images", args.val_max_images), ("--crop-size", args.crop_size)):
        if value is not None:
            argv += [option, str(value)]
    return argv + (["--device", args.device] if args.device else [])


def run_grid(args: argparse.Namespace, case: str, base: str, split: str) -> dict[int, list[Path]]:
    """Every loop of one case (those already done are kept); count -> the loop folders."""
    loops: dict[int, list[Path]] = {}
    for count in args.corrections:
        for seed in args.seeds:
            out = Path(args.out) / case / f"c{count}-s{seed}"
            if not (out / "report.json").is_file():
                print(f"[shift] {case}: {count} corrections, seed {seed} -> {out}", flush=True)
                simulate_loop.simulate(simulate_loop.parse_args(loop_argv(args, base, split, count, seed, out)))
            loops.setdefault(count, []).append(out)
    return loops


def change(report: dict, key: str, figure: str) -> float | None:
    """``figure``'s change after - before on the set ``key`` of one loop's report (None: not scored)."""
    before, after = report["before"].get(key) or {}, report["after"].get(key) or {}
    if before.get(figure) is None or after.get(figure) is None:
        return None
    return round(after[figure] - before[figure], 2)


def mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 2) if known else None


def pool_count(loops: list[Path], draws: int) -> dict:
    """One count's loops pooled: the held-out CCP change of each published fine-tune (whatever blend
    it chose) and their pooled mean with its 95 % interval, and the forgetting figures' means."""
    reports = [json.loads((loop / "report.json").read_text()) for loop in loops]
    score = matrix_score("lip-20", "fashion-17")
    pairs, photos = [], []
    for loop, report in zip(loops, reports):
        matrices = pool_loops.per_image(loop, report, None)
        pairs.append((matrices["before"], matrices["after"]))
        photos.append(pool_loops.held_out_photos(loop))
    viton = [change(r, simulate_loop.VITON_KEY, "miou") for r in reports]
    person = [change(r, simulate_loop.PASCAL_KEY, "person_iou") for r in reports]
    head = [change(r, simulate_loop.PASCAL_KEY, "head_iou") for r in reports]
    settings = [r.get("settings") or {} for r in reports]
    return {
        "loops": [str(loop) for loop in loops],
        "ccp_before": [round(score(before.sum(0)), 2) for before, _ in pairs],
        "ccp_changes": [r["ccp_change"]["delta"] for r in reports],
        "ccp_pooled": pooled_paired_bootstrap(pairs, score, ids=photos, draws=draws),
        "viton_changes": viton,
        "viton_change": mean(viton),
        "pascal_person_changes": person,
        "pascal_person_change": mean(person),
        "pascal_head_change": mean(head),
        "shift": [s.get("shift") for s in settings],
        "corrections_share": [s.get("corrections_share") for s in settings],
        "blend": [s.get("blend") for s in settings],
        "iterations": [r.get("finetune_iterations") for r in reports],
    }


def figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def case_table(case: dict) -> list[str]:
    """One case's table: corrections count x (held-out CCP change with its interval, VITON, PASCAL person)."""
    lines = [
        f"### {case['title']}: `{case['base']}`",
        "",
        "| corrections | held-out CCP mIoU change, pooled (95 % interval; loops that rose) | VITON mIoU change "
        "| PASCAL person IoU change | PASCAL head IoU change | domain shift | share / blend chosen | iterations |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for count, row in case["counts"].items():
        p = row["ccp_pooled"]
        chosen = ", ".join(f"{s:g} / {b:g}" for s, b in zip(row["corrections_share"], row["blend"]) if s and b)
        shifts = ", ".join(f"{s:.2f}" for s in row["shift"] if s is not None) or "n/a"
        lines.append(
            f"| {count} | {p['delta']:+.2f} ({p['low']:+.2f} to {p['high']:+.2f}; {p['rose']} of {p['runs']}) | "
            f"{figure(row['viton_change'])} | {figure(row['pascal_person_change'])} | "
            f"{figure(row['pascal_head_change'])} | {shifts} | {chosen or 'n/a'} | "
            f"{', '.join(str(i) for i in row['iterations'])} |"
        )
    return lines


def markdown(result: dict) -> str:
    lines = [
        "## Correction loop: a new kind of photo and the base's own",
        "",
        f"`{result['command']}`",
        "",
        f"Each loop: CCP photos saved through the app's store as corrections, a fine-tune with the app's defaults "
        f"and {result['max_minutes']:g} minutes for the whole command, seeds {', '.join(map(str, result['seeds']))} "
        "pooled per count (paired bootstrap over the loops and the held-out photos). VITON and PASCAL figures are "
        "means over the seeds of after - before on each base's held-out photos.",
    ]
    for case in result["cases"].values():
        lines += ["", *case_table(case)]
    return "\n".join(lines)


def simulate_shift(args: argparse.Namespace) -> dict:
    """Run the grid of every case, pool it, write ``report.md`` and ``report.json``; the result."""
    bases = {"shift": (args.base, base_split(args.base, args.split))}
    if args.in_domain_base:
        bases["in-domain"] = (args.in_domain_base, args.in_domain_split)
    titles = dict(CASES)
    result = {"command": args.command, "max_minutes": args.max_minutes, "seeds": args.seeds, "cases": {}}
    for case, (base, split) in bases.items():
        loops = run_grid(args, case, base, split)
        counts = {count: pool_count(folders, args.draws) for count, folders in loops.items()}
        result["cases"][case] = {"title": titles[case], "base": base, "split": split, "counts": counts}
    out = Path(args.out)
    write_json(out / "report.json", result)
    text = markdown(result)
    (out / "report.md").write_text(text + "\n")
    print(text)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m experiments.simulate_shift``: the exit status."""
    simulate_shift(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
