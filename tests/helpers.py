"""Shared test helpers (the tests folder is on sys.path under pytest)."""

import contextlib
from pathlib import Path

import numpy as np
from PIL import Image

from ssfnet.labels import LIP_20 as LIP

# Narrow widths keep the paper's structure but make CPU tests quick.
TINY = {
    "ppm_bin_channels": 8,
    "ppm_channels": 16,
    "top_channels": 16,
    "mid_channels": 8,
    "high_channels": 8,
    "aux_channels": 8,
}


def free_port() -> int:
    """A TCP port on localhost that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_page(proc, port: int, timeout: float = 90.0) -> None:
    """Wait until the app process ``proc`` serves its page on ``port``; fail with its output if it exits or hangs."""
    import time
    import urllib.request

    import pytest

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                assert response.status == 200
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"app.py did not serve the page:\n{proc.communicate(timeout=10)[0]}")
            time.sleep(0.5)


def app_settings(root: Path, checkpoints: str = "checkpoints", checkpoint: str = "tiny", **overrides):
    """Settings of an app on a free port with every folder under ``root`` (the checkpoint in ``root/checkpoints``)."""
    from demo.settings import Settings

    values = dict(
        port=free_port(),
        corrections_dir=root / "corrections",
        checkpoints_dir=root / checkpoints,
        checkpoint=root / checkpoints / checkpoint,
        runs_dir=root / "runs",
    )
    return Settings(**{**values, **overrides})


@contextlib.contextmanager
def launched_app(settings):
    """The app of ``settings`` served on localhost in this process (analytics off); yields the Blocks."""
    import pytest

    from demo.ui import build_demo

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        demo = build_demo(settings)
        demo.launch(server_name="127.0.0.1", server_port=settings.port, prevent_thread_lock=True, quiet=True)
        try:
            yield demo
        finally:
            demo.close()


def write_viton(root: Path, n: int = 16, height: int = 64, width: int = 48, seed: int = 0) -> Path:
    """A VITON-layout folder of synthetic people: coloured body parts on noise, with their LIP-20 labels."""
    rng = np.random.default_rng(seed)
    (root / "image").mkdir(parents=True)
    (root / "image-parse").mkdir()
    for i in range(n):
        label = np.zeros((height, width), np.uint8)
        x0 = int(rng.integers(4, width // 3))
        x1 = width - int(rng.integers(4, width // 3))
        label[4:16, x0 + 4 : x1 - 4] = 13  # face
        label[16:40, x0:x1] = 5  # upper clothes
        label[16:40, max(0, x0 - 4) : x0] = 14  # left arm
        label[16:40, x1 : x1 + 4] = 15  # right arm
        label[40:, x0:x1] = 9  # pants
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8) // 4
        colours = np.array(LIP.palette, np.uint8)
        image[label > 0] = colours[label[label > 0]]
        stem = f"{i:06d}_0"
        Image.fromarray(image).save(root / "image" / f"{stem}.jpg", quality=95)
        parse = Image.fromarray(label, mode="P")
        parse.putpalette(LIP.palette_bytes())
        parse.save(root / "image-parse" / f"{stem}.png")
    return root
