"""Take the README's screenshot: the app, served locally, parsing a photo with a checkpoint.

    python -m experiments.screenshot --photo assets/examples/ccp_0490.jpg --out assets/screenshot.png

Needs headless Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``) and
selenium (in requirements-dev.txt). The app runs in this process on a free localhost port with
the given (default: the embedded) checkpoint and a throw-away corrections folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from demo.settings import Settings
from ssfnet.predictor import DEFAULT_CHECKPOINT

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--hide-scrollbars",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def take_screenshot(photo: Path, out: Path, checkpoint: Path, *, width: int = 1400, height: int = 1100) -> Path:
    """Serve the app, upload ``photo``, wait for the parse and save the page as ``out`` (PNG)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from demo.ui import build_demo

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        raise FileNotFoundError("needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    work = Path(tempfile.mkdtemp(prefix="ssfnet-screenshot-"))
    settings = Settings(
        port=_free_port(),
        corrections_dir=work / "corrections",
        checkpoints_dir=checkpoint.parent,
        checkpoint=checkpoint,
    )
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo = build_demo(settings)
    demo.launch(server_name="127.0.0.1", server_port=settings.port, prevent_thread_lock=True, quiet=True)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*FLAGS, f"--window-size={width},{height}", f"--user-data-dir={work / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(f"http://127.0.0.1:{settings.port}/")
        upload = WebDriverWait(driver, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, "#upload input[type=file]"))
        upload.send_keys(str(photo.resolve()))
        WebDriverWait(driver, 300).until(lambda d: "Parsed" in d.find_element(By.ID, "message").text)
        time.sleep(2)  # let the overlay image finish drawing
        driver.execute_script("window.scrollTo(0, 0)")
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
        demo.close()
        shutil.rmtree(work, ignore_errors=True)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.screenshot", description=__doc__.splitlines()[0])
    p.add_argument("--photo", required=True, type=Path)
    p.add_argument("--out", default=Path("assets/screenshot.png"), type=Path)
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, type=Path)
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=1100)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        path = take_screenshot(args.photo, args.out, args.checkpoint, width=args.width, height=args.height)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
