"""Score ONNX models side by side on the held-out photos, and say whether a quantized one may ship.

    python -m train.score_onnx --model runs/onnx/lip20.onnx --model runs/onnx/lip20-int8.onnx \\
        --data viton:../shared/datasets/viton --data ccp:../shared/datasets/ccp \\
        --data pascal-person-part:../shared/datasets/pascal-person-part --limit 100 --threads 1

Each source is scored as ``train.release`` scores a shipped checkpoint: on the ids of
``train/splits/<source>-val.txt``, in the ground truth's label set (VITON in LIP-20, CCP in
``fashion-17``, PASCAL-Person-Part in ``person-head-3`` for a LIP-20 model, its 7 parts for a
body-part model), the main figure being mIoU or person IoU; ``--limit`` takes an even spread of
that many ids. Every model after the first is compared with the first: the rule for shipping a
quantized model is that it loses less than ``--max-loss`` points (1) on every main figure.
Writes a Markdown table and a JSON copy (``--out``). Speed is ``train.bench.parse``'s to measure
(``--precisions onnx-fp32 onnx-int8 --int8-model FILE``), which interleaves the runtimes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ssfnet.data import open_source, parse_source
from ssfnet.labels import get_label_set
from ssfnet.onnx_predictor import OnnxPredictor
from ssfnet.precision import cpu_info

from .evaluate import per_class_table, score_source, spread
from .quantize import held_out
from .release import MAIN_FIGURE, SCORED_AS


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what the platform says."""
    return cpu_info()[0]


def score_model(predictor, specs: list[str], *, limit: int | None) -> dict[str, dict]:
    """Main figure, mIoU and pixel accuracy of ``predictor`` on each source's held-out ids."""
    results = {}
    for text in specs:
        kind = parse_source(text).kind
        gt_name = SCORED_AS.get((predictor.label_set.name, kind))
        wanted = held_out(kind)
        ids = sorted(wanted & set(open_source(text, predictor.label_set).ids))
        if len(ids) < len(wanted):
            print(f"note: {len(wanted) - len(ids)} of the {len(wanted)} held-out {kind} ids are not in {text}")
        if gt_name is None or not ids:
            print(f"note: no held-out scoring of {kind} for a {predictor.label_set.name} model; skipped")
            continue
        gt_set = get_label_set(gt_name)
        began = time.perf_counter()
        cm, size = score_source(predictor, text, gt_set, ids, limit=limit, batch_size=1, progress=False)
        metrics = cm.compute()
        row = {
            "label_set": gt_name,
            "images": len(spread(size, limit)),
            "miou": round(metrics["miou"], 2),
            "pixel_acc": round(metrics["pixel_acc"], 2),
            "per_class": {r["class"]: r["iou"] for r in per_class_table(metrics, gt_set.names) if r["scored"]},
            "seconds": round(time.perf_counter() - began, 1),
        }
        for key in ("person_iou", "head_iou"):
            if key in metrics:
                row[key] = round(metrics[key], 2)
        row["main_figure"] = MAIN_FIGURE[gt_name]
        row["main"] = row[MAIN_FIGURE[gt_name]]
        results[kind] = row
    return results


def verdict(results: list[dict], max_loss: float) -> list[dict]:
    """Each model after the first: its change on every main figure, and whether each loses less than ``max_loss``."""
    base = results[0]["scores"]
    rows = []
    for result in results[1:]:
        deltas = {k: round(v["main"] - base[k]["main"], 2) for k, v in result["scores"].items() if k in base}
        rows.append({"model": result["model"], "deltas": deltas, "passes": all(d > -max_loss for d in deltas.values())})
    return rows


def format_table(results: list[dict], verdicts: list[dict], *, limit: int | None, threads: int | None) -> str:
    kinds = list(results[0]["scores"])
    head = " | ".join(
        f"{k} {results[0]['scores'][k]['label_set']} {results[0]['scores'][k]['main_figure']}" for k in kinds
    )
    lines = [
        f"Held-out photos of `train/splits` ({'all' if limit is None else f'an even spread of at most {limit}'} per "
        f"source), single scale, {threads or 'default'} onnxruntime thread(s), on {cpu_model()}.",
        "",
        f"| model | precision | {head} |",
        "|---|---|" + "---|" * len(kinds),
    ]
    for result in results:
        scores = " | ".join(f"{result['scores'][k]['main']:.2f}" for k in kinds)
        lines.append(f"| {result['model']} | {result['precision']} | {scores} |")
    for row in verdicts:
        changes = ", ".join(f"{k} {d:+.2f}" for k, d in row["deltas"].items())
        lines.append("")
        lines.append(
            f"{row['model']} against {results[0]['model']}: {changes}; "
            f"{'passes' if row['passes'] else 'fails'} the rule (less than a point lost on every figure)."
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m train.score_onnx",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", action="append", required=True, help="ONNX file; the first is the reference (repeat)")
    p.add_argument("--data", action="append", required=True, help="source KIND:PATH (repeat)")
    p.add_argument("--limit", type=int, default=None, help="score at most this many held-out ids per source")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: one per core)")
    p.add_argument("--max-loss", type=float, default=1.0, help="points a model may lose on a figure and still pass")
    p.add_argument("--out", default="runs/score-onnx.md", help="Markdown table, a .json copy beside it")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = []
    try:
        for model in args.model:
            predictor = OnnxPredictor(model, threads=args.threads)
            scores = score_model(predictor, args.data, limit=args.limit)
            print(f"{model}: " + ", ".join(f"{k} {v['main']:.2f}" for k, v in scores.items()), flush=True)
            results.append({"model": Path(model).name, "precision": predictor.precision, "scores": scores})
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    verdicts = verdict(results, args.max_loss)
    table = format_table(results, verdicts, limit=args.limit, threads=args.threads)
    print(table, end="")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    record = {"cpu": cpu_model(), "argv": sys.argv[1:] if argv is None else argv, "results": results}
    out.with_suffix(".json").write_text(json.dumps({**record, "verdicts": verdicts}, indent=1))
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
