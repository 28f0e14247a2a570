"""Peak memory of the app per hostile upload and API call, and what stays (not collected by pytest).

    python -m experiments.probe_memory --out runs/probe-memory.md

Starts ``app.py`` on the embedded checkpoint in a child process, warms it up with one small
photo (the model loaded: that is the idle app), then drives it through ``gradio_client`` with
uploads whose memory does not follow their file size: a 7,900 x 7,900 single-colour PNG, a
64,000 x 1,000 PNG, a noisy 48-megapixel JPEG, a 13,000 x 13,000 editor layer, four parses at
once, and forty sessions with a large photo each. The app's resident memory is sampled every
10 ms; the table gives each call's peak over the idle app and what is left after it. The
target is at most 600 MB over the idle app for any accepted upload or call.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# free_port is the tests' helper; tests/ is no package (an installed `tests` would shadow tests.helpers).
sys.path.insert(0, str(REPO / "tests"))

from helpers import free_port  # noqa: E402

VIEW = (0.5, ["0"])
SMALL = REPO / "assets" / "examples" / "ccp_0046.jpg"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sampler:
    """The peak resident memory of ``pid`` while the ``with`` block runs (sampled every 10 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def __enter__(self) -> Sampler:
        self.peak = rss_mb(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.01)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb(self.pid))


def make_files(folder: Path) -> dict[str, Path]:
    files = {}
    files["flat 7900x7900 PNG"] = folder / "flat.png"
    Image.new("RGB", (7900, 7900), (180, 120, 90)).save(files["flat 7900x7900 PNG"])
    files["strip 64000x1000 PNG"] = folder / "strip.png"
    Image.new("RGB", (64000, 1000), (90, 120, 180)).save(files["strip 64000x1000 PNG"])
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(6000, 8000, 3), dtype=np.uint8)
    files["noisy 8000x6000 JPEG"] = folder / "noisy.jpg"
    Image.fromarray(noise).save(files["noisy 8000x6000 JPEG"], quality=85)
    del noise
    files["layer 13000x13000"] = folder / "layer.png"
    Image.new("RGBA", (13000, 13000), (0, 0, 0, 0)).save(files["layer 13000x13000"])
    files["photo 3000x4000 JPEG"] = folder / "photo.jpg"
    Image.open(SMALL).convert("RGB").resize((3000, 4000)).save(files["photo 3000x4000 JPEG"], quality=98)
    return files


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.probe_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--sessions", type=int, default=40, help="sessions of the retention round")
    parser.add_argument("--sessions-only", action="store_true", help="only the retention rounds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    from gradio_client import Client, handle_file

    work = Path(tempfile.mkdtemp(prefix="ssfnet-probe-memory-"))
    files = make_files(work)
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [sys.executable, "app.py", "--port", str(port), "--corrections-dir", str(work / "corrections")]
    command += ["--runs-dir", str(work / "runs"), "--session-minutes", "1"]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    rows: list[tuple[str, str, float, float, float, str]] = []
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 180
        while True:
            try:
                client = Client(url, verbose=False, analytics_enabled=False)
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the app did not start") from None
                time.sleep(1)
        client.predict(handle_file(str(SMALL)), None, False, False, *VIEW, api_name="/parse")
        client.predict(api_name="/accept_proposal")
        client.predict(api_name="/list_corrections")
        idle = rss_mb(proc.pid)

        def measure(case: str, call: str, fn) -> None:
            before = rss_mb(proc.pid)
            start = time.perf_counter()
            with Sampler(proc.pid) as s:
                try:
                    out = fn()
                    result = "ok" if not isinstance(out, str) else out
                except Exception as err:  # a refusal is a result here
                    result = "refused: " + str(err).splitlines()[0][:90]
            seconds = time.perf_counter() - start
            after = rss_mb(proc.pid)
            rows.append((case, call, s.peak - before, s.peak - idle, after - idle, seconds, result))
            print(
                f"{case:26s} {call:18s} +{s.peak - before:5.0f} MB by the call, peak +{s.peak - idle:5.0f} over idle, "
                f"after +{after - idle:5.0f}, {seconds:5.1f} s  {result}",
                flush=True,
            )

        def wait(case: str, seconds: float) -> None:
            time.sleep(seconds)  # the probe runs the app with --session-minutes 1
            left = rss_mb(proc.pid) - idle
            rows.append((case, f"{seconds / 60:.0f} min later", 0.0, 0.0, left, seconds, "expired"))
            print(f"{case:26s} {seconds / 60:.0f} min later: +{left:5.0f} MB over idle", flush=True)

        cases = () if args.sessions_only else ("flat 7900x7900 PNG", "strip 64000x1000 PNG", "noisy 8000x6000 JPEG")
        for case in cases:
            c = Client(url, verbose=False, analytics_enabled=False)
            measure(
                case,
                "/parse",
                lambda c=c, case=case: c.predict(
                    handle_file(str(files[case])), None, False, False, *VIEW, api_name="/parse"
                ),
            )
            measure(case, "/accept_proposal", lambda c=c: c.predict(api_name="/accept_proposal"))
            measure(case, "/list_corrections", lambda c=c: c.predict(api_name="/list_corrections"))
            record = sorted((work / "corrections" / "meta").glob("*.json"), key=lambda p: p.stat().st_mtime)[-1].stem
            measure(case, "/reopen", lambda c=c, r=record: c.predict(r, *VIEW, api_name="/reopen"))

        if not args.sessions_only:
            c = Client(url, verbose=False, analytics_enabled=False)
            c.predict(handle_file(str(SMALL)), None, False, False, *VIEW, api_name="/parse")
            editor = {
                "background": handle_file(str(SMALL)),
                "layers": [handle_file(str(files["layer 13000x13000"]))],
                "composite": None,
            }
            measure("layer 13000x13000", "/apply_strokes", lambda: c.predict(editor, *VIEW, api_name="/apply_strokes"))

            clients = [Client(url, verbose=False, analytics_enabled=False) for _ in range(4)]

            def four() -> None:
                with ThreadPoolExecutor(4) as pool:
                    list(
                        pool.map(
                            lambda cl: cl.predict(
                                handle_file(str(files["flat 7900x7900 PNG"])),
                                None,
                                False,
                                False,
                                *VIEW,
                                api_name="/parse",
                            ),
                            clients,
                        )
                    )

            measure("4 x flat 7900x7900 PNG", "/parse at once", four)
            alive = proc.poll() is None
            rows.append(
                (
                    "4 at once",
                    "app still serving",
                    0.0,
                    0.0,
                    rss_mb(proc.pid) - idle if alive else 0.0,
                    0.0,
                    "yes" if alive else "NO",
                )
            )

        def sessions() -> str:
            for _ in range(args.sessions):
                cl = Client(url, verbose=False, analytics_enabled=False)
                cl.predict(
                    handle_file(str(files["photo 3000x4000 JPEG"])), None, False, False, *VIEW, api_name="/parse"
                )
            return "ok"

        size_mb = files["photo 3000x4000 JPEG"].stat().st_size / 1e6
        measure(f"{args.sessions} sessions, {size_mb:.1f} MB photo", "/parse each", sessions)
        wait(f"{args.sessions} sessions", 130.0)
        # Expired sessions' memory goes back to the system: a second round ends where the first did.
        measure(f"{args.sessions} more sessions", "/parse each", sessions)
        wait(f"{args.sessions} more sessions", 130.0)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    header = ["upload", "call", "added by the call (MB)", "peak over idle (MB)", "left after (MB)", "seconds", "result"]
    lines = [
        f"Idle app (model loaded): {idle:.0f} MB resident.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for case, call, added, peak, after, seconds, result in rows:
        lines.append(f"| {case} | {call} | {added:.0f} | {peak:.0f} | {after:.0f} | {seconds:.0f} | {result} |")
    # The target is per call; the four-at-once and forty-session rows are many calls, there to show
    # that the app survives them and gives the memory back.
    single = [r for r in rows if r[0] in files or r[0].startswith(("flat", "strip", "noisy", "layer"))]
    single = [r for r in single if "at once" not in r[1]]
    if single:
        worst = max(r[2] for r in single)
        verdict = "PASS" if worst <= 600 else "FAIL"
        lines += ["", f"Most added by one call: {worst:.0f} MB (target: at most 600): {verdict}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
