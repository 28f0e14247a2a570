"""Equal-budget comparisons through the trainer: the CPU race and the paper's Table 2.

    python -m experiments.compare race --minutes 30 --out runs/race
    python -m experiments.compare table2 --minutes 20 --out runs/table2
    python -m experiments.compare recipe --minutes 20 --out runs/recipe
    python -m experiments.compare table2 --rows baseline ssfnet --seeds 0 1 --out runs/table2

Every row of a suite trains through ``python -m train.train`` with the suite's data, crops,
augmentation and seed and the same ``--max-minutes`` (the poly schedule runs on time, so each row
ends its schedule within the budget), then its final weights (``last/``, the end of the schedule,
not a best picked on the validation photos) are scored on the photos the run held out. Results go
to ``OUT/results.json`` (or the file ``--results`` names) and a Markdown table ``OUT/table.md``
after every row, so a suite can be run over several sessions: finished rows are skipped, an
interrupted row resumes from its ``last/`` with the minutes it had already spent. A results file
kept outside ``OUT`` (a committed record) carries the finished rows to a machine that no longer
has the runs:

    python -m experiments.compare table2 --minutes 20 --results docs/results/table2.json

Suites:

- ``race``: the CPU variant from ImageNet weights, the same network from scratch and torchvision's
  ``lraspp_mobilenet_v3_large`` from scratch, on VITON + CCP + PASCAL-Person-Part with the recipe
  of the default checkpoint, and the first again with the loss scored at the input resolution
  (``--loss-at full``) instead of each head's own (the cheap default); scored as LIP-20 mIoU on
  VITON, CCP-coarse mIoU on CCP and person IoU on PASCAL-Person-Part, single scale.
- ``recipe``: the default checkpoint's recipe against a decoder trained at ten times the
  backbone's learning rate (the pretrained backbone needs small steps, the new decoder larger
  ones), with SGD and with AdamW; scored as ``race``.
- ``table2``: the rows of Table 2 of Zhang et al. (Neurocomputing 2020) on PASCAL-Person-Part's
  7 parts with the CPU variant (ImageNet backbone) and the AdamW recipe of the default
  checkpoint's later runs (every row alike), plus torchvision's
  ``deeplabv3_mobilenet_v3_large`` from scratch (its ImageNet weights are a download, which this
  project does not do); mIoU single scale and multi-scale + flip, parameters and CPU latency.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ssfnet.predictor import load_predictor
from train.bench.timing import time_call
from train.release import score_sources
from train.utils import write_json

DEFAULT_DATA_ROOT = "../shared/datasets"


@dataclass(frozen=True)
class Row:
    """One trained configuration of a suite: a name, its trainer flags and its seeds."""

    name: str
    flags: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    paper: float | None = None


@dataclass(frozen=True)
class Suite:
    """Rows trained on the same data with the same recipe and budget, and how to score them.

    ``data`` holds ``KIND:{root}/FOLDER[:WEIGHT]`` templates filled with the data root.
    """

    name: str
    data: tuple[str, ...]
    recipe: tuple[str, ...]
    rows: tuple[Row, ...]
    multiscale: bool = False
    latency: bool = False
    figures: tuple[tuple[str, str, str], ...] = field(default=())  # (source kind, key, column title)


_CROPS = ("--crop-size", "256", "-b", "16")
_REST = (
    "--copy-paste", "0.3", "--colour-jitter", "0.3", "--blur", "0.1", "--jpeg", "0.1", "--epoch-size", "6000",
    "--val-fraction", "0.15", "--val-max-images", "300", "--checkpoint-minutes", "10", "-j", "2",
)  # fmt: skip
# The trainer's defaults (SGD at 0.01 everywhere), as the race ran them.
RECIPE = (*_CROPS, "--lr", "0.01", *_REST)
# What the recipe suite's probes favoured for a pretrained backbone with new decoders on a CPU
# budget: AdamW, the decoders at ten times the backbone's learning rate.
ADAMW = ("--optimizer", "adamw", "--lr", "2e-4", "--weight-decay", "0.01", "--head-lr-mult", "10")
ADAMW_RECIPE = (*_CROPS, *ADAMW, *_REST)

# The default checkpoint's data and its three held-out figures (the race and the recipe suite).
DEFAULT_DATA = (
    "viton:{root}/viton:0.4",
    "ccp:{root}/ccp:0.25",
    "pascal-person-part:{root}/pascal-person-part:0.35",
)
DEFAULT_FIGURES = (
    ("viton", "miou", "VITON LIP-20 mIoU"),
    ("ccp", "miou", "CCP coarse mIoU"),
    ("pascal-person-part", "person_iou", "PASCAL person IoU"),
)

SUITES = {
    "race": Suite(
        name="race",
        data=DEFAULT_DATA,
        recipe=RECIPE,
        rows=(
            Row("ssfnet_lite0 (ImageNet)", ("--variant", "ssfnet_lite0")),
            Row("ssfnet_lite0 (scratch)", ("--variant", "ssfnet_lite0", "--backbone-weights", "none")),
            Row("lraspp_mobilenet_v3_large (scratch)", ("--variant", "lraspp_mobilenet_v3_large")),
            Row("ssfnet_lite0 (ImageNet), loss at full resolution", ("--variant", "ssfnet_lite0", "--loss-at", "full")),
        ),
        figures=DEFAULT_FIGURES,
    ),
    "recipe": Suite(
        name="recipe",
        data=DEFAULT_DATA,
        recipe=(*RECIPE, "--variant", "ssfnet_lite0"),
        rows=(
            Row("default recipe (decoder at the backbone's lr)", ()),
            Row("decoder lr x10", ("--head-lr-mult", "10")),
            Row(
                "AdamW 2e-4, decoder lr x10",
                ADAMW,
            ),
        ),
        figures=DEFAULT_FIGURES,
    ),
    "table2": Suite(
        name="table2",
        data=("pascal-person-part:{root}/pascal-person-part",),
        recipe=("--label-set", "pascal-person-part-7", *ADAMW_RECIPE),
        rows=(
            Row("Baseline", ("--variant", "ssfnet_lite0", "--ablation", "baseline"), (0, 1), 65.67),
            Row("Baseline + H", ("--variant", "ssfnet_lite0", "--ablation", "baseline+h"), (0,), 65.80),
            Row("Baseline + HL", ("--variant", "ssfnet_lite0", "--ablation", "baseline+hl"), (0,), 66.09),
            Row("Baseline + SMM", ("--variant", "ssfnet_lite0", "--ablation", "baseline+smm"), (0, 1), 67.19),
            Row(
                "Baseline + SMM + common hourglass",
                ("--variant", "ssfnet_lite0", "--ablation", "baseline+smm+ch"),
                (0,),
                67.73,
            ),
            Row("SSFNet (SMM + RAM)", ("--variant", "ssfnet_lite0", "--ablation", "ssfnet"), (0, 1), 69.62),
            Row("deeplabv3_mobilenet_v3_large (scratch)", ("--variant", "deeplabv3_mobilenet_v3_large")),
        ),
        multiscale=True,
        latency=True,
        figures=(("pascal-person-part", "miou", "PASCAL-Person-Part mIoU"),),
    ),
}


def row_key(row: Row, seed: int) -> str:
    """Folder name of a row's run: its name in lower case with dashes, and the seed."""
    slug = "".join(c if c.isalnum() else "-" for c in row.name.lower())
    return "-".join(part for part in slug.split("-") if part) + f"-s{seed}"


def train_command(suite: Suite, row: Row, seed: int, minutes: float, folder: Path, data_root: str) -> list[str]:
    """The ``python -m train.train`` command line of one row and seed."""
    data = [item for spec in suite.data for item in ("--data", spec.format(root=data_root))]
    return [
        sys.executable, "-m", "train.train", *data, *suite.recipe, *row.flags,
        "--seed", str(seed), "--max-minutes", f"{minutes:g}", "--out", str(folder), "--resume",
    ]  # fmt: skip


def finished(folder: Path) -> bool:
    """True when the run in ``folder`` ended its schedule (not stopped or failed)."""
    summary = folder / "summary.json"
    return summary.is_file() and json.loads(summary.read_text()).get("status") == "finished"


def cpu_latency_ms(checkpoint: Path, size: int = 473, rounds: int = 5) -> float:
    """Median ms of one ``size`` x ``size`` image through the model, as the predictor runs it on this CPU."""
    predictor = load_predictor(checkpoint, device="cpu", input_size=size)
    image = torch.randint(0, 256, (size, size, 3), dtype=torch.uint8).numpy()
    return 1000 * time_call(lambda: predictor.predict(image), torch.device("cpu"), warmup=1, iters=rounds)


def score_row(suite: Suite, folder: Path) -> dict:
    """Scores of a finished run's final weights on its held-out photos (see the module docstring)."""
    config = json.loads((folder / "config.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    checkpoint = folder / "last"
    predictor = load_predictor(checkpoint, device="cpu")
    specs = list(config["data"])
    single = score_sources(predictor, folder / "split.json", specs)
    result = {
        "iterations": summary.get("iteration"),
        "minutes": round(summary.get("elapsed_s", 0.0) / 60.0, 1),
        "images_per_s": round(summary["iteration"] * config["batch_size"] / summary["elapsed_s"], 2)
        if summary.get("elapsed_s")
        else None,
        "parameters_m": round(sum(p.numel() for p in predictor.model.parameters()) / 1e6, 2),
        "single": single,
    }
    if suite.multiscale:
        result["multiscale_flip"] = score_sources(predictor, folder / "split.json", specs, multiscale=True, flip=True)
    if suite.latency:
        result["cpu_ms_473"] = round(cpu_latency_ms(checkpoint), 1)
    return result


def figure(result: dict, scoring: str, kind: str, key: str) -> str:
    value = result.get(scoring, {}).get(kind, {}).get(key)
    return "-" if value is None else f"{value:.2f}"


def format_table(suite: Suite, results: dict) -> str:
    """The suite's Markdown table: one line per row and seed, then each repeated row's spread."""
    titles = [title for _, _, title in suite.figures]
    head = ["row", "seed", *titles]
    if suite.multiscale:
        head += [f"{t} (ms+flip)" for t in titles]
    head += ["iterations", "img/s", "params (M)"]
    if suite.latency:
        head.append("CPU ms / 473x473")
    if any(row.paper is not None for row in suite.rows):
        head.append("paper (R101, GPU)")
    head.append("command")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    spreads = []
    for row in suite.rows:
        mains = []
        for seed in row.seeds:
            entry = results.get(row_key(row, seed))
            if entry is None:
                continue
            if "error" in entry:
                lines.append(f"| {row.name} | {seed} | failed: {entry['error']} |")
                continue
            cells = [row.name, str(seed)]
            cells += [figure(entry, "single", kind, key) for kind, key, _ in suite.figures]
            if suite.multiscale:
                cells += [figure(entry, "multiscale_flip", kind, key) for kind, key, _ in suite.figures]
            cells += [str(entry.get("iterations")), str(entry.get("images_per_s")), str(entry.get("parameters_m"))]
            if suite.latency:
                cells.append(str(entry.get("cpu_ms_473")))
            if any(r.paper is not None for r in suite.rows):
                cells.append("-" if row.paper is None else f"{row.paper:.2f}")
            cells.append(f"`{entry['command']}`")
            lines.append("| " + " | ".join(cells) + " |")
            kind, key, _ = suite.figures[0]
            value = entry.get("single", {}).get(kind, {}).get(key)
            if value is not None:
                mains.append(value)
        if len(mains) > 1:
            spreads.append(
                f"- {row.name}: mean {statistics.mean(mains):.2f} over seeds {list(row.seeds)[: len(mains)]}, "
                f"spread (max - min) {max(mains) - min(mains):.2f}"
            )
    if spreads:
        lines += ["", f"Seed spread of {suite.figures[0][2]} (single scale):", *spreads]
    return "\n".join(lines) + "\n"


def run_suite(
    suite: Suite,
    out: str | Path,
    *,
    minutes: float,
    data_root: str = DEFAULT_DATA_ROOT,
    rows: list[str] | None = None,
    seeds: list[int] | None = None,
    dry_run: bool = False,
    results_file: str | Path | None = None,
) -> dict:
    """Train and score every (row, seed) of ``suite`` not yet in ``OUT/results.json``.

    Args:
        suite: The suite.
        out: Folder of the runs, ``results.json`` and ``table.md``.
        minutes: ``--max-minutes`` of every row.
        data_root: Folder holding the suite's datasets.
        rows: Only the rows whose :func:`row_key` (without the seed) or name is listed.
        seeds: Override every row's seeds.
        dry_run: Print the commands only.
        results_file: The results to read and update (default ``OUT/results.json``).

    Returns:
        The results, by run folder name.
    """
    out = Path(out)
    missing = [spec.format(root=data_root) for spec in suite.data]
    missing = [s for s in missing if not Path(s.split(":", 2)[1]).is_dir()]
    if missing:
        print(f"skipped: the {suite.name} suite needs {', '.join(missing)} (pass --data-root)", file=sys.stderr)
        return {}
    out.mkdir(parents=True, exist_ok=True)
    results_file = Path(results_file) if results_file else out / "results.json"
    try:
        results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        # Stop rather than start over: writing would replace the rows the file holds.
        raise SystemExit(f"cannot read the results in {results_file} ({err}); mend or move it, then run again") from err
    for row in suite.rows:
        if rows and row.name not in rows and row_key(row, 0)[: -len("-s0")] not in rows:
            continue
        for seed in seeds if seeds is not None else row.seeds:
            key = row_key(row, seed)
            if key in results and "error" not in results[key]:
                print(f"{key}: done earlier, skipped")
                continue
            folder = out / key
            command = train_command(suite, row, seed, minutes, folder, data_root)
            shown = shlex.join(["python", *command[1:]])
            if dry_run:
                print(shown)
                continue
            print(f"{key}: training ({minutes:g} min) ...", flush=True)
            with open(out / f"{key}.log", "a") as log:
                code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
            if code != 0 or not finished(folder):
                results[key] = {"command": shown, "error": f"train.train exited {code} (see {key}.log)"}
                print(f"{key}: {results[key]['error']}", file=sys.stderr)
            else:
                print(f"{key}: scoring ...", flush=True)
                results[key] = {"command": shown, **score_row(suite, folder)}
            write_json(results_file, results)
            (out / "table.md").write_text(format_table(suite, results))
    if not dry_run:
        (out / "table.md").write_text(format_table(suite, results))
        print(f"table: {out / 'table.md'}")
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m experiments.compare",
        description="Train and score a suite of models at one equal CPU budget each.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("suite", choices=sorted(SUITES))
    p.add_argument("--minutes", type=float, required=True, help="training budget of every row (--max-minutes)")
    p.add_argument("--out", default=None, help="folder of the runs and tables (default: runs/SUITE)")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT, help="folder holding the datasets")
    p.add_argument("--rows", nargs="+", default=None, help="only these rows (names or folder prefixes)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="override every row's seeds")
    p.add_argument("--dry-run", action="store_true", help="print the training commands only")
    p.add_argument("--results", default=None, help="results file to read and update (default: OUT/results.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """``python -m experiments.compare``: run the suite ``argv`` names (:func:`run_suite`); the exit status."""
    args = parse_args(argv)
    suite = SUITES[args.suite]
    run_suite(
        suite,
        args.out or f"runs/{suite.name}",
        minutes=args.minutes,
        data_root=args.data_root,
        rows=args.rows,
        seeds=args.seeds,
        dry_run=args.dry_run,
        results_file=args.results,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
