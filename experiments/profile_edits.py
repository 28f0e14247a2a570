"""Time the app's edits end to end (through gradio_client) and the parts of an edit in-process.

    python -m experiments.profile_edits [--photo assets/examples/ccp_0313.jpg] [--sides 817 1600] [--repeats 5]

The app runs in this process on a free port with a random tiny model (edits never run
the model). Each edit is timed from the client's call to its answer (medians), then
the parts of "Apply strokes" and GrabCut are timed alone, so one can see where the time goes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from demo import editing
from demo.drafts import Drafts
from demo.render import legend_html, write_downloads
from demo.session import Session, read_upload
from demo.settings import Settings
from ssfnet import build_model, save_checkpoint
from ssfnet.labels import get_label_set

LIP = get_label_set("lip-20")


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times)


def stroke_layer(size: tuple[int, int], label: int) -> np.ndarray:
    """An RGBA layer with one antialiased stroke of ``label`` across a third of the photo."""
    h, w = size
    layer = np.zeros((h, w, 4), np.uint8)
    colour = tuple(int(c) for c in LIP.colour_lut()[label])
    cv2.line(layer, (w // 5, h // 3), (w * 3 // 5, h * 2 // 3), (*colour, 255), max(3, h // 40), cv2.LINE_AA)
    return layer


def end_to_end(photo: Path, repeats: int, folder: Path) -> None:
    from gradio_client import Client, handle_file

    from demo.ui import build_demo

    torch.manual_seed(0)
    save_checkpoint(build_model("ssfnet_lite", 20), folder / "ckpt" / "tiny", variant="ssfnet_lite", label_set="lip-20")
    port = 7900 + os.getpid() % 90
    settings = Settings(
        port=port,
        corrections_dir=folder / "corrections",
        checkpoints_dir=folder / "ckpt",
        checkpoint=folder / "ckpt" / "tiny",
    )
    demo = build_demo(settings)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False)
        view = (0.55, ["0"])
        overlay = client.predict(handle_file(str(photo)), None, False, False, *view, api_name="/parse")[0]
        size = np.asarray(Image.open(overlay)).shape[:2]
        Image.fromarray(stroke_layer(size, LIP.id_of("upper-clothes"))).save(folder / "layer.png")
        editor = {
            "background": handle_file(overlay),
            "layers": [handle_file(str(folder / "layer.png"))],
            "composite": None,
        }
        calls = {
            "apply_strokes": lambda: client.predict(editor, *view, api_name="/apply_strokes"),
            "snap_strokes (GrabCut)": lambda: client.predict(editor, *view, api_name="/snap_strokes"),
            "relabel region click": lambda: client.predict(
                5, 5, "Relabel region", 14, 24, *view, api_name="/apply_click"
            ),
            "flood fill click": lambda: client.predict(
                size[1] // 2, size[0] // 2, "Flood fill (similar colour)", 5, 24, *view, api_name="/apply_click"
            ),
            "undo": lambda: client.predict(*view, api_name="/undo"),
            "rerender (opacity)": lambda: client.predict(0.7, ["0"], api_name="/rerender"),
        }
        print(f"end to end through gradio_client, {size[1]}x{size[0]} working size, median of {repeats}:")
        for name, call in calls.items():
            print(f"  {name:28s} {median_ms(call, repeats):7.0f} ms")
    finally:
        demo.close()


def parts(photo: Path, repeats: int, folder: Path) -> None:
    full, source = read_upload(photo)
    size = full.shape[:2]
    image = editing.resize_image(full, size)
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, LIP.num_classes, size=(size[0] // 20 + 1, size[1] // 20 + 1), dtype=np.uint8)
    proposal = np.kron(blocks, np.ones((20, 20), np.uint8))[: size[0], : size[1]]
    session = Session.start(image, source, proposal, LIP)
    layer = stroke_layer(size, LIP.id_of("upper-clothes"))
    new = editing.apply_strokes(session.labels, layer, LIP)
    session.edit(new)
    drafts = Drafts(folder / "drafts")
    steps = {
        "snap stroke colours to labels": lambda: editing.apply_strokes(session.labels, layer, LIP),
        "GrabCut (apply_strokes_snapped)": lambda: editing.apply_strokes_snapped(
            session.labels, session.image, layer, LIP
        ),
        "downloads: labels, colour, overlay PNGs + JSON": lambda: write_downloads(session, 0.55, {0}, folder),
        "legend": lambda: legend_html(session, LIP, {0}),
        "draft autosave": lambda: drafts.keep(session),
    }
    print(f"in-process parts, {size[1]}x{size[0]}, median of {repeats}:")
    for name, step in steps.items():
        print(f"  {name:48s} {median_ms(step, repeats):7.0f} ms")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.profile_edits", description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, default=Path("assets/examples/ccp_0313.jpg"))
    parser.add_argument("--sides", type=int, nargs="+", default=[817, 1600], help="photo heights to time")
    parser.add_argument("--repeats", type=int, default=5)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sides:
            folder = Path(tmp) / str(side)
            folder.mkdir()
            photo = folder / args.photo.name
            im = Image.open(args.photo).convert("RGB")
            im.resize((round(im.width * side / im.height), side), Image.Resampling.LANCZOS).save(photo, quality=92)
            parts(photo, args.repeats, folder)
            end_to_end(photo, args.repeats, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
