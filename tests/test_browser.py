"""The app in a real browser: headless Chromium driven by selenium with the system chromedriver.

Skipped where no Chromium or chromedriver is installed (Debian: ``apt-get install
chromium chromium-driver``). Set ``SSFNET_SCREENSHOT=path.png`` to also save a
screenshot of the page after the edits.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import torch

from demo.settings import Settings
from ssfnet import build_model, save_checkpoint

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "assets" / "examples" / "ccp_0313.jpg"
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1300",
)

if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "no headless browser: install Chromium and its driver (Debian: apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from helpers import free_port, launched_app  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-app")
    torch.manual_seed(0)
    save_checkpoint(build_model("ssfnet_lite", 20), root / "ckpt" / "tiny", variant="ssfnet_lite", label_set="lip-20")
    settings = Settings(
        port=free_port(),
        corrections_dir=root / "corrections",
        checkpoints_dir=root / "ckpt",
        checkpoint=root / "ckpt" / "tiny",
    )
    with launched_app(settings):
        yield settings


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="ssfnet-chromium-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def text_of(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def wait_for_text(driver, element_id: str, needle: str, timeout: float = 60) -> str:
    WebDriverWait(driver, timeout).until(lambda d: needle in text_of(d, element_id))
    return text_of(driver, element_id)


def test_upload_parse_click_paint_and_save_in_a_browser(app, browser):
    browser.get(f"http://127.0.0.1:{app.port}/")
    upload = WebDriverWait(browser, 60).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]"))
    )
    upload.send_keys(str(PHOTO))
    wait_for_text(browser, "message", "Parsed")
    overlay = WebDriverWait(browser, 30).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#overlay img")))
    assert overlay.get_attribute("naturalWidth") == "550"
    status = text_of(browser, "status")
    assert "0 pixels changed" in status and "550x817" in status

    # With the "Relabel region" tool a click on the overlay relabels the region under it (as background,
    # the label dropdown's default).
    next(e for e in browser.find_elements(By.CSS_SELECTOR, "#tool label") if "Relabel region" in e.text).click()
    ActionChains(browser).move_to_element_with_offset(overlay, 0, 60).click().perform()
    status = wait_for_text(browser, "status", "1 undo step(s)")
    assert int(re.search(r"([\d,]+) pixels changed", status).group(1).replace(",", "")) > 0

    # Paint a stroke with the brush and apply it.
    next(b for b in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]") if "Paint" in b.text).click()
    editor = WebDriverWait(browser, 30).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#editor canvas")))
    brush = browser.find_element(By.CSS_SELECTOR, "#editor button[aria-label=Brush]")
    brush.click()
    stroke = ActionChains(browser).move_to_element_with_offset(editor, -60, -120).click_and_hold()
    for _ in range(12):
        stroke.move_by_offset(8, 10)
    stroke.release().perform()
    browser.find_element(By.ID, "apply-strokes").click()
    wait_for_text(browser, "status", "2 undo step(s)")

    browser.find_element(By.ID, "save").click()
    message = wait_for_text(browser, "message", "Saved as")
    (meta,) = (app.corrections_dir / "meta").glob("*.json")
    assert meta.stem in message
    assert (app.corrections_dir / "labels" / f"{meta.stem}.png").is_file()

    if os.environ.get("SSFNET_SCREENSHOT"):
        browser.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.5)
        browser.save_screenshot(os.environ["SSFNET_SCREENSHOT"])
