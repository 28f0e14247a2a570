"""The app in a real browser: headless Chromium driven by selenium with the system chromedriver.

Skipped where no Chromium or chromedriver is installed (Debian: ``apt-get install
chromium chromium-driver``). Set ``SSFNET_SCREENSHOT=path.png`` to also save a
screenshot of the page after the edits.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from demo.settings import Settings
from demo.zoom import window
from ssfnet import build_model, save_checkpoint
from ssfnet.labels import get_label_set

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
from selenium.common.exceptions import ElementClickInterceptedException, TimeoutException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
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


def open_page(driver, port: int) -> None:
    """Load the app and wait until its start-up events have run (they redraw the lists)."""
    driver.get(f"http://127.0.0.1:{port}/")
    WebDriverWait(driver, 60).until(lambda d: "Device" in text_of(d, "model-status"))
    time.sleep(1)


def choose(driver, element_id: str, option: str) -> None:
    """Pick the option whose text ends with ``option`` in the dropdown ``element_id``."""
    driver.find_element(By.CSS_SELECTOR, f"#{element_id} input").click()
    items = WebDriverWait(driver, 10).until(
        lambda d: [li for li in d.find_elements(By.CSS_SELECTOR, "li.item") if li.text.strip().endswith(option)]
    )
    items[0].click()


def options_of(driver, element_id: str) -> list[str]:
    """The texts of a dropdown's options (it is opened, read and closed; [] if it did not open)."""
    box = driver.find_element(By.CSS_SELECTOR, f"#{element_id} input")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
    # The list opens on focus: a box still focused from an earlier look is blurred first.
    driver.execute_script("arguments[0].blur()", box)
    box.click()
    try:
        items = WebDriverWait(driver, 5).until(lambda d: d.find_elements(By.CSS_SELECTOR, "li.item"))
        texts = [li.text for li in items]
    except TimeoutException:
        texts = []
    box.send_keys(Keys.ESCAPE)
    driver.execute_script("arguments[0].blur()", box)
    return texts


def upload_photo(driver, photo: Path = PHOTO) -> None:
    """Upload ``photo`` (the file box is cleared first if it holds an earlier one) and wait for its parse."""
    for clear in driver.find_elements(By.CSS_SELECTOR, "#upload button[aria-label=Clear]"):
        # While the previous photo's events still run, their progress overlay covers the button.
        WebDriverWait(driver, 60, ignored_exceptions=(ElementClickInterceptedException,)).until(
            lambda d, button=clear: button.click() is None
        )
    box = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, "#upload input[type=file]"))
    box.send_keys(str(photo))
    # "Parsed x.jpg", or "Opened x.jpg" where no model could be used.
    WebDriverWait(driver, 60).until(
        lambda d: re.search(rf"(Parsed|Opened) {re.escape(photo.name)}", text_of(d, "message"))
    )


def pixels_per_label(driver) -> dict[int, int]:
    """Pixels of each label, from the JSON summary offered for download."""
    links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a")]
    url = next(link for link in links if link and link.endswith("_summary.json"))
    with urllib.request.urlopen(url, timeout=30) as response:
        return {c["id"]: c["pixels"] for c in json.loads(response.read())["classes"]}


def paint_a_stroke(driver) -> None:
    next(b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if "Paint" in b.text).click()
    editor = WebDriverWait(driver, 30).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#editor canvas")))
    driver.find_element(By.CSS_SELECTOR, "#editor button[aria-label=Brush]").click()
    stroke = ActionChains(driver).move_to_element_with_offset(editor, -60, -120).click_and_hold()
    for _ in range(12):
        stroke.move_by_offset(8, 10)
    stroke.release().perform()


def test_the_brush_paints_the_label_shown_after_a_new_photo(app, browser):
    open_page(browser, app.port)
    choose(browser, "label", "2: hair")
    upload_photo(browser)
    assert browser.find_element(By.CSS_SELECTOR, "#label input").get_attribute("value") == "2: hair"
    before = pixels_per_label(browser)
    paint_a_stroke(browser)
    browser.find_element(By.ID, "apply-strokes").click()
    wait_for_text(browser, "status", "1 undo step(s)")
    after = pixels_per_label(browser)
    assert after.get(2, 0) > before.get(2, 0)  # hair grew ...
    assert after.get(0, 0) <= before.get(0, 0)  # ... not the background the brush used to fall back to
    assert browser.find_element(By.CSS_SELECTOR, "#label input").get_attribute("value") == "2: hair"


def test_typing_an_opacity_redraws_the_overlay(app, browser):
    open_page(browser, app.port)
    upload_photo(browser)
    overlay_src = lambda: browser.find_element(By.CSS_SELECTOR, "#overlay img").get_attribute("src")
    first = overlay_src()
    box = browser.find_element(By.CSS_SELECTOR, "#opacity input[type=number]")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("0.9", Keys.ENTER)  # focus stays in the box: nothing is released
    WebDriverWait(browser, 30).until(lambda d: overlay_src() != first)
    downloads = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a")]
    shown = urllib.request.urlopen(overlay_src(), timeout=30).read()
    assert shown == urllib.request.urlopen(next(u for u in downloads if u.endswith("_overlay.png")), timeout=30).read()


@pytest.fixture
def app_without_checkpoints(tmp_path):
    """The app started before any checkpoint exists (the fine-tune panel on)."""
    settings = Settings(
        port=free_port(),
        corrections_dir=tmp_path / "corrections",
        checkpoints_dir=tmp_path / "ckpt",
        checkpoint=tmp_path / "ckpt" / "missing",
        runs_dir=tmp_path / "runs",
        device="cpu",
    )
    with launched_app(settings):
        yield settings


def test_the_finetune_panel_offers_checkpoints_added_later_and_counts_saves(app_without_checkpoints, browser):
    app = app_without_checkpoints
    open_page(browser, app.port)
    opener = next(b for b in browser.find_elements(By.TAG_NAME, "button") if "Fine-tune on" in b.text)
    browser.execute_script("arguments[0].scrollIntoView()", opener)
    opener.click()
    wait_for_text(browser, "finetune-status", "0 saved correction(s)")

    # A save updates the count the panel shows.
    upload_photo(browser)
    browser.find_element(By.ID, "accept").click()  # the unedited proposal, accepted as correct
    wait_for_text(browser, "message", "Saved as")
    wait_for_text(browser, "finetune-status", "1 saved correction(s)")

    # A checkpoint appears on disk; the page's base list is still empty: Start refuses, not guesses.
    torch.manual_seed(0)
    save_checkpoint(
        build_model("ssfnet_lite", 20), app.checkpoints_dir / "tiny", variant="ssfnet_lite", label_set="lip-20"
    )
    start = browser.find_element(By.ID, "finetune-start")
    browser.execute_script("arguments[0].scrollIntoView()", start)
    start.click()
    WebDriverWait(browser, 30).until(lambda d: "Choose a base checkpoint" in d.find_element(By.TAG_NAME, "body").text)
    assert not app.runs_dir.exists() or not list(app.runs_dir.iterdir())

    # The panel's Refresh fills the list ...
    browser.find_element(By.ID, "finetune-refresh").click()
    base = browser.find_element(By.CSS_SELECTOR, "#finetune-base input")
    WebDriverWait(browser, 30).until(lambda d: base.get_attribute("value").startswith("tiny"))
    # ... and so does the model options' refresh, with a checkpoint added after that.
    save_checkpoint(
        build_model("ssfnet_lite", 20), app.checkpoints_dir / "second", variant="ssfnet_lite", label_set="lip-20"
    )
    next(b for b in browser.find_elements(By.TAG_NAME, "button") if "Model options" in b.text).click()
    refresh = WebDriverWait(browser, 10).until(
        lambda d: next((b for b in d.find_elements(By.TAG_NAME, "button") if "Refresh checkpoint list" in b.text), None)
    )
    refresh.click()
    WebDriverWait(browser, 30).until(lambda d: any(o.startswith("second") for o in options_of(d, "finetune-base")))


EXAMPLES = sorted((REPO / "assets" / "examples").glob("*.jpg"))


def status_counts(driver) -> tuple[int, int]:
    """(pixels changed, undo steps) from the status line."""
    status = text_of(driver, "status")
    pixels = int(re.search(r"([\d,]+) pixels changed", status).group(1).replace(",", ""))
    return pixels, int(re.search(r"(\d+) undo step", status).group(1))


def test_unsaved_work_is_kept_as_a_draft_and_click_tools_keep_strokes(app, browser):
    first, other = EXAMPLES[0], EXAMPLES[3]  # photos no other test leaves a draft of
    open_page(browser, app.port)
    upload_photo(browser, first)
    paint_a_stroke(browser)  # painted, not applied

    # A click tool would redraw the canvas and drop the strokes: it refuses and says so.
    next(b for b in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]") if "Overlay" in b.text).click()
    next(e for e in browser.find_elements(By.CSS_SELECTOR, "#tool label") if "Relabel region" in e.text).click()
    overlay = browser.find_element(By.CSS_SELECTOR, "#overlay img")
    ActionChains(browser).move_to_element_with_offset(overlay, 0, 60).click().perform()
    WebDriverWait(browser, 30).until(lambda d: "Unapplied strokes" in d.find_element(By.TAG_NAME, "body").text)
    assert status_counts(browser) == (0, 0)

    # Another photo: the strokes and edits of the first are kept as a draft ...
    upload_photo(browser, other)
    assert "kept as a draft" in text_of(browser, "message")
    # ... and opening the first again continues from it.
    upload_photo(browser, first)
    assert "continued from your unsaved draft" in text_of(browser, "message")
    assert status_counts(browser)[0] > 0

    # Save refuses the model's unedited labels; accepting them is a separate, recorded choice.
    upload_photo(browser, other)
    browser.find_element(By.ID, "save").click()
    wait_for_text(browser, "message", "Not saved")
    browser.find_element(By.ID, "accept").click()
    message = wait_for_text(browser, "message", "accepted as correct")
    (meta,) = [json.loads(m.read_text()) for m in (app.corrections_dir / "meta").glob("*.json") if m.stem in message]
    assert meta["extra"]["review"] == "accepted proposal" and meta["source_name"] == other.name


def press(driver, *keys, hold: tuple = ()) -> None:
    """Type ``keys`` into the page (not into a text box) while holding the modifiers ``hold``."""
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    actions = ActionChains(driver)
    for modifier in hold:
        actions.key_down(modifier)
    actions.send_keys(*keys)
    for modifier in reversed(hold):
        actions.key_up(modifier)
    actions.perform()


def test_keyboard_picks_labels_and_undoes(app, browser):
    open_page(browser, app.port)
    upload_photo(browser, EXAMPLES[2])
    label_box = browser.find_element(By.CSS_SELECTOR, "#label input")
    press(browser, "5")
    WebDriverWait(browser, 20).until(lambda d: label_box.get_attribute("value").startswith("5: "))
    wait_for_text(browser, "painting", "5: ", timeout=20)  # the label being painted, shown above the canvas
    press(browser, "1", "2")  # two digits quickly: label 12
    WebDriverWait(browser, 20).until(lambda d: label_box.get_attribute("value").startswith("12: "))

    next(e for e in browser.find_elements(By.CSS_SELECTOR, "#tool label") if "Relabel region" in e.text).click()
    overlay = browser.find_element(By.CSS_SELECTOR, "#overlay img")
    ActionChains(browser).move_to_element_with_offset(overlay, 0, 60).click().perform()
    wait_for_text(browser, "status", "1 undo step(s)")
    press(browser, "z", hold=(Keys.CONTROL,))
    wait_for_text(browser, "status", "0 undo step(s)")
    press(browser, "z", hold=(Keys.CONTROL, Keys.SHIFT))
    wait_for_text(browser, "status", "1 undo step(s)")
    assert "Ctrl+Z" in browser.page_source  # the shortcuts are listed in the app


def queue_row_texts(driver) -> list[str]:
    return [row.text for row in driver.find_elements(By.CSS_SELECTOR, "#queue-table tbody tr")]


def test_queue_from_a_folder_with_next_previous_and_ranking(app, browser, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    names = []
    for photo in EXAMPLES[:3]:  # mirrored: photos of their own, without drafts or saves of other tests
        Image.open(photo).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / f"m_{photo.name}", quality=90)
        names.append(f"m_{photo.name}")
    open_page(browser, app.port)
    box = browser.find_element(By.CSS_SELECTOR, "#queue-folder textarea, #queue-folder input")
    box.clear()
    box.send_keys(str(folder))
    browser.find_element(By.ID, "queue-load").click()
    WebDriverWait(browser, 30).until(lambda d: len(queue_row_texts(d)) == 3)
    assert "3 photos, by name" in text_of(browser, "queue-table")

    browser.find_element(By.ID, "queue-next").click()
    wait_for_text(browser, "message", f"Parsed {names[0]}")
    wait_for_text(browser, "queue-table", "photo 1 of 3")
    press(browser, "n")  # the keyboard's next
    wait_for_text(browser, "message", f"Parsed {names[1]}")
    browser.find_element(By.ID, "queue-prev").click()
    wait_for_text(browser, "message", f"Parsed {names[0]}")
    wait_for_text(browser, "queue-table", "photo 1 of 3")

    # Saving marks the photo saved in the queue; the status lives on disk (kept across restarts).
    browser.find_element(By.ID, "accept").click()
    wait_for_text(browser, "message", "Saved as")
    WebDriverWait(browser, 30).until(lambda d: "saved" in queue_row_texts(d)[0])

    browser.find_element(By.ID, "queue-rank").click()
    wait_for_text(browser, "queue-table", "by uncertainty", timeout=120)
    scores = [float(row.split()[-1]) for row in queue_row_texts(browser)]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    browser.find_element(By.ID, "queue-next").click()
    first = queue_row_texts(browser)[0].split()[1]
    wait_for_text(browser, "message", f"Parsed {first}")


def choose_tool(driver, tool: str) -> None:
    next(e for e in driver.find_elements(By.CSS_SELECTOR, "#tool label") if tool in e.text).click()


def zoom_chosen(driver) -> str:
    """The zoom choice checked under the overlay ("Fit", "2x", ...)."""
    for choice in driver.find_elements(By.CSS_SELECTOR, "#zoom label"):
        if choice.find_element(By.TAG_NAME, "input").is_selected():
            return choice.text.strip()
    return ""


def typed_point(driver) -> tuple[int, int]:
    """The x, y boxes: where the last click on the overlay was, in working pixels."""
    return tuple(
        int(driver.find_element(By.CSS_SELECTOR, f"#{i} input").get_attribute("value")) for i in ("click-x", "click-y")
    )


def labels_offered(driver) -> np.ndarray:
    """The label map offered for download (the label PNG)."""
    links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a")]
    url = next(link for link in links if link and link.endswith("_labels.png"))
    with urllib.request.urlopen(url, timeout=30) as response:
        return np.array(Image.open(io.BytesIO(response.read())))


def picture_size(driver) -> tuple[int, int]:
    """``(height, width)`` of the picture the overlay shows (read afresh: a new picture may be a new element)."""
    img = driver.find_element(By.CSS_SELECTOR, "#overlay img")
    return int(img.get_attribute("naturalHeight") or 0), int(img.get_attribute("naturalWidth") or 0)


def offset_of(driver, img, x: int, y: int) -> tuple[int, int]:
    """The offset from ``img``'s centre (what ActionChains takes) of pixel (x, y) of the picture it shows.

    The picture is scaled down to fit, never up, and centred: Gradio maps a click back the same way.
    """
    (width, height), (natural_w, natural_h) = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return [[r.width, r.height], [arguments[0].naturalWidth, arguments[0].naturalHeight]];",
        img,
    )
    scale = min(width / natural_w, height / natural_h, 1)
    left, top = (width - natural_w * scale) / 2, (height - natural_h * scale) / 2
    return round(left + (x + 0.5) * scale - width / 2), round(top + (y + 0.5) * scale - height / 2)


def test_a_click_on_the_zoomed_overlay_relabels_the_pixel_under_it(app, browser, tmp_path):
    photo = tmp_path / "upside_down.jpg"  # a photo of its own: no draft of another test
    Image.open(EXAMPLES[1]).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(photo, quality=90)
    open_page(browser, app.port)
    upload_photo(browser, photo)
    assert zoom_chosen(browser) == "Fit"
    before = labels_offered(browser)
    h, w = before.shape
    next(b for b in browser.find_elements(By.TAG_NAME, "button") if "Apply at a typed point" in b.text).click()
    overlay = browser.find_element(By.CSS_SELECTOR, "#overlay img")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", overlay)

    # The Zoom in tool: a click centres the overlay there and doubles the zoom; the + key doubles it again.
    choose_tool(browser, "Zoom in")
    ActionChains(browser).move_to_element_with_offset(overlay, -40, 120).click().perform()
    WebDriverWait(browser, 30).until(lambda d: zoom_chosen(d) == "2x")
    centre = typed_point(browser)
    press(browser, "+")
    WebDriverWait(browser, 30).until(lambda d: zoom_chosen(d) == "4x")
    press(browser, "+")
    WebDriverWait(browser, 30).until(lambda d: zoom_chosen(d) == "8x")
    view = window((h, w), 8, *centre)
    WebDriverWait(browser, 30).until(lambda d: picture_size(d) == view.shown_size)  # the crop, enlarged 8 times
    overlay = browser.find_element(By.CSS_SELECTOR, "#overlay img")

    # Relabel region at the working pixel shown at a point of the zoomed overlay (an 8 x 8 block there).
    shoes = get_label_set("lip-20").id_of("shoes")  # a coarse label: never in a proposal
    press(browser, *str(shoes))
    label_box = browser.find_element(By.CSS_SELECTOR, "#label input")
    WebDriverWait(browser, 20).until(lambda d: label_box.get_attribute("value").startswith(f"{shoes}: "))
    choose_tool(browser, "Relabel region")
    target = (view.x0 + view.width // 3, view.y0 + 2 * view.height // 3)
    offset = offset_of(browser, overlay, *view.to_shown(*target))
    ActionChains(browser).move_to_element_with_offset(overlay, *offset).click().perform()
    wait_for_text(browser, "status", "1 undo step(s)")
    assert typed_point(browser) == target
    region = cv2.floodFill(before.copy(), None, target, 0, 0, 0, 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))[2]
    expected = before.copy()
    expected[region[1:-1, 1:-1].astype(bool)] = shoes
    WebDriverWait(browser, 30).until(lambda d: np.array_equal(labels_offered(d), expected))
    assert zoom_chosen(browser) == "8x"  # the edit kept the zoom

    press(browser, "-")
    WebDriverWait(browser, 30).until(lambda d: zoom_chosen(d) == "4x")


def error_badges(driver) -> list[str]:
    """The ids of the label box, the overlay and the status line that show Gradio's "Error" mark."""
    return [i for i in ("label", "overlay", "status") if "Error" in text_of(driver, i).split()]


def type_label(driver, text: str) -> None:
    """Type ``text`` into the label box (not picked from its list) and leave the box."""
    box = driver.find_element(By.CSS_SELECTOR, "#label input")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(text)
    driver.execute_script("arguments[0].blur()", box)


def test_a_typed_label_name_picks_the_label_and_nonsense_is_refused_in_a_toast(app, browser, tmp_path):
    photo = tmp_path / "typed_label.jpg"  # a photo of its own: no draft of another test
    Image.open(EXAMPLES[2]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(photo, quality=90)
    open_page(browser, app.port)
    upload_photo(browser, photo)
    label_box = browser.find_element(By.CSS_SELECTOR, "#label input")
    face = get_label_set("lip-20").id_of("face")

    type_label(browser, "face")
    WebDriverWait(browser, 20).until(lambda d: label_box.get_attribute("value") == f"{face}: face")
    wait_for_text(browser, "painting", f"{face}: face", timeout=20)
    choose_tool(browser, "Relabel region")
    overlay = browser.find_element(By.CSS_SELECTOR, "#overlay img")
    ActionChains(browser).move_to_element_with_offset(overlay, 0, 60).click().perform()
    wait_for_text(browser, "status", "1 undo step(s)")
    assert not error_badges(browser)

    # Text that names no label: a toast says so and the list goes back to the label before.
    type_label(browser, "xyzzy")
    WebDriverWait(browser, 20).until(lambda d: "No label 'xyzzy'" in d.find_element(By.TAG_NAME, "body").text)
    WebDriverWait(browser, 20).until(lambda d: label_box.get_attribute("value") == f"{face}: face")
    assert f"{face}: face" in text_of(browser, "painting")
    browser.find_element(By.ID, "undo").click()  # the page still answers
    wait_for_text(browser, "status", "0 undo step(s)")
    assert not error_badges(browser)


def open_accordion(driver, title: str) -> None:
    opener = next(b for b in driver.find_elements(By.TAG_NAME, "button") if title in b.text)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", opener)
    opener.click()


def test_another_checkpoint_parses_the_open_photo_again(app, browser, tmp_path):
    photo = tmp_path / "two_models.jpg"  # a photo of its own: no draft of another test
    Image.open(EXAMPLES[3]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(photo, quality=90)
    torch.manual_seed(1)
    second = app.checkpoints_dir / "second"
    save_checkpoint(build_model("ssfnet_lite", 20), second, variant="ssfnet_lite", label_set="lip-20")
    try:
        open_page(browser, app.port)
        upload_photo(browser, photo)
        assert "with tiny" in " ".join(text_of(browser, "message").split())
        open_accordion(browser, "Model options")
        box = browser.find_element(By.CSS_SELECTOR, "#checkpoint input")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
        box.click()
        WebDriverWait(browser, 10).until(
            lambda d: [li for li in d.find_elements(By.CSS_SELECTOR, "li.item") if li.text.startswith("second")]
        )[0].click()
        WebDriverWait(browser, 60).until(
            lambda d: "Parsed two_models.jpg with second" in " ".join(text_of(d, "message").split())
        )
    finally:
        shutil.rmtree(second)


def test_gallery_captions_and_the_learning_rate_box_show_what_they_hold(app_without_checkpoints, browser, tmp_path):
    app = app_without_checkpoints
    photo = tmp_path / "a_photo_with_a_rather_long_name_for_its_tile.jpg"
    Image.open(EXAMPLES[0]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(photo, quality=90)
    open_page(browser, app.port)
    upload_photo(browser, photo)
    browser.find_element(By.ID, "accept").click()
    record = wait_for_text(browser, "message", "Saved as").split("Saved as")[1].split()[0].strip("`")
    open_accordion(browser, "Saved corrections")
    caption = WebDriverWait(browser, 30).until(
        lambda d: next(
            (c for c in d.find_elements(By.CSS_SELECTOR, "#gallery .caption-label") if record in c.text), None
        )
    )
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", caption)
    cut = "const c = arguments[0]; return c.scrollWidth > c.clientWidth + 1 || c.scrollHeight > c.clientHeight + 1;"
    assert not browser.execute_script(cut, caption) and photo.name in caption.text

    # The learning rate left empty shows empty (a number box showed 0), as its label says it means.
    open_accordion(browser, "Fine-tune on")
    lr = WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#finetune-lr textarea, #finetune-lr input")
    )
    assert lr.get_attribute("value") == ""
