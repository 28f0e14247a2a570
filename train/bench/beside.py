"""How much a fine-tune running beside the app slows its parses, and the parses the fine-tune.

The app starts its fine-tune as a separate process with one core fewer than the machine has and
a lower priority (:func:`train.finetune.defaults.lower_priority`). This measures what that buys on
the machine it runs on, against a fine-tune launched plainly (every core, the app's priority):

1. parses alone: the app's call (:meth:`ssfnet.Predictor.predict`, single scale) on each photo;
2. for each launch: a training process (``python -m train.train``, warm-started from the
   checkpoint, the fine-tune's crop and batch) runs alone for ``--seconds`` (its step times from
   its ``log.jsonl``), then the same parses run in a loop beside it for ``--seconds``.

::

    python -m train.bench.beside --checkpoint checkpoints/ssfnet_lite0-lip20 \\
        --data viton:../shared/datasets/viton --seconds 60

writes ``runs/bench-beside.md`` (a ``.json`` copy beside it) naming the CPU and library
versions. The target: a parse beside the app's fine-tune takes at most twice its time alone.
Run it on a quiet machine; anything else running changes every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ssfnet import load_predictor
from ssfnet.checkpoint import CheckpointError
from ssfnet.io import ImageError, read_image

from ..finetune.defaults import lower_priority
from .parse import machine

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCHES = ("app", "plain")


def train_command(
    checkpoint: str, data: Sequence[str], out: Path, *, crop: int, batch: int, minutes: float
) -> list[str]:
    """The training process that stands in for the app's fine-tune (no validation, no checkpoints)."""
    command = [sys.executable, "-m", "train.train", "--init-checkpoint", str(checkpoint), "--out", str(out)]
    for spec in data:
        command += ["--data", spec]
    return command + [
        "--crop-size", str(crop), "-b", str(batch), "-j", "1", "--val-fraction", "0",
        "--max-minutes", f"{minutes:g}", "--checkpoint-minutes", "100000", "--no-augment-grid",
    ]  # fmt: skip


def launch_env(launch: str, cores: int) -> dict[str, str]:
    """``app``: one core fewer (as the app's runner does); ``plain``: every core."""
    threads = max(1, cores - 1) if launch == "app" else cores
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}


def step_times(log: Path, since: float, until: float) -> list[float]:
    """Step seconds of the iterations logged in ``log.jsonl`` whose end fell in ``[since, until]``
    (seconds since the run started, its ``elapsed_s``)."""
    times = []
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return times
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:  # a line being written
            continue
        if since <= record.get("elapsed_s", -1) <= until and "step_s" in record:
            times.append(float(record["step_s"]))
    return times


def last_elapsed(log: Path) -> float | None:
    """The ``elapsed_s`` of the last complete record of ``log.jsonl`` (None before the first)."""
    times = []
    try:
        for line in log.read_text().splitlines():
            try:
                times.append(float(json.loads(line)["elapsed_s"]))
            except (ValueError, KeyError):
                continue
    except OSError:
        return None
    return times[-1] if times else None


def parse_loop(parse: Callable[[], None], seconds: float, *, least: int = 3) -> list[float]:
    """Milliseconds of each ``parse()`` for ``seconds`` (at least ``least`` parses)."""
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end or len(times) < least:
        start = time.perf_counter()
        parse()
        times.append((time.perf_counter() - start) * 1000)
    return times


def measure_launch(launch: str, parse: Callable[[], None], args: argparse.Namespace, cores: int) -> dict:
    """One launch: the training alone, then the parses beside it."""
    with tempfile.TemporaryDirectory(prefix="bench-beside-") as tmp:
        out = Path(tmp) / "run"
        minutes = (4 * args.seconds + 240) / 60  # outlives both windows; killed when done
        command = train_command(args.checkpoint, args.data, out, crop=args.crop_size, batch=args.batch, minutes=minutes)
        with open(Path(tmp) / "console.log", "wb") as console:
            process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=launch_env(launch, cores), stdout=console, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            if launch == "app":
                lower_priority(process.pid)
            try:
                log = out / "log.jsonl"
                started = _wait_for_steps(process, log, 3, timeout=args.seconds * 4 + 300, console=Path(tmp))
                time.sleep(args.seconds)
                alone_until = last_elapsed(log) or started
                beside = parse_loop(parse, args.seconds)
                beside_until = last_elapsed(log) or alone_until
            finally:
                _stop(process)
            alone_steps = step_times(log, started + 1e-6, alone_until)
            beside_steps = step_times(log, alone_until + 1e-6, beside_until)
    return {
        "launch": launch,
        "threads": int(launch_env(launch, cores)["OMP_NUM_THREADS"]),
        "parse_beside_ms": statistics.median(beside),
        "parses_beside": len(beside),
        "step_alone_s": statistics.median(alone_steps) if alone_steps else None,
        "step_beside_s": statistics.median(beside_steps) if beside_steps else None,
        "steps": [len(alone_steps), len(beside_steps)],
    }


def _wait_for_steps(process: subprocess.Popen, log: Path, steps: int, *, timeout: float, console: Path) -> float:
    """Wait until the training has logged ``steps`` iterations; returns its last ``elapsed_s``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (console / "console.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the training process ended (exit {process.returncode}) before it trained:\n{tail}")
        try:
            count = len(log.read_text().splitlines())
        except OSError:
            count = 0
        if count >= steps:
            return last_elapsed(log) or 0.0
        time.sleep(1.0)
    raise RuntimeError(f"the training process logged fewer than {steps} steps in {timeout:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()
    process.wait()


def format_table(idle_ms: float, rows: list[dict], *, photos: int) -> str:
    lines = [
        f"Machine: {machine()}",
        "",
        f"Parse: median ms of single-scale parses over {photos} photos, as the app parses. Fine-tune step: "
        "median seconds of a training step, alone and while the parses run.",
        "",
        "| fine-tune launched | threads | parse alone ms | parse beside ms | parse x | step alone s "
        "| step beside s | step x |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        alone, beside = row["step_alone_s"], row["step_beside_s"]
        step_x = f"{beside / alone:.2f}" if alone and beside else "n/a"
        parse_x = row["parse_beside_ms"] / idle_ms
        lines.append(
            f"| {'as the app does (nicer, one core fewer)' if row['launch'] == 'app' else 'plainly (every core)'} "
            f"| {row['threads']} | {idle_ms:.0f} | {row['parse_beside_ms']:.0f} | {parse_x:.2f} "
            f"| {alone if alone is None else f'{alone:.2f}'} | {beside if beside is None else f'{beside:.2f}'} "
            f"| {step_x} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m train.bench.beside",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", default="checkpoints/ssfnet_lite0-lip20", help="parsed with, and trained from")
    p.add_argument("--data", action="append", required=True, help="training source(s), as train.train takes them")
    p.add_argument("--photos", nargs="+", default=None, help="default: the example photos in assets/examples")
    p.add_argument("--seconds", type=float, default=60.0, help="length of each measuring window")
    p.add_argument("--crop-size", type=int, default=320)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--launches", nargs="+", choices=LAUNCHES, default=list(LAUNCHES))
    p.add_argument("--out", default="runs/bench-beside.md", help="Markdown table, a .json copy beside it")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        predictor = load_predictor(args.checkpoint, device="cpu", precision="fp32")
        paths = args.photos or sorted(str(p) for p in (REPO_ROOT / "assets" / "examples").glob("*.jpg"))
        photos = [read_image(p) for p in paths]
        if not photos:
            raise ValueError("no photos to parse")
    except (OSError, ValueError, CheckpointError, ImageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    turn = iter(range(10**9))

    def parse() -> None:
        predictor.predict(photos[next(turn) % len(photos)], multiscale=False, flip=False)

    for _ in photos:  # first calls out of the way
        parse()
    idle = statistics.median(parse_loop(parse, args.seconds / 2, least=2 * len(photos)))
    try:
        rows = [measure_launch(launch, parse, args, cores) for launch in args.launches]
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    table = format_table(idle, rows, photos=len(photos))
    print(table, end="")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    record = {"machine": machine(), "cores": cores, "parse_alone_ms": idle, "rows": rows, "photos": paths}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
