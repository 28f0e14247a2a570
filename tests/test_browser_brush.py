"""The brush size in a real page (issue 36 item 2): the [ and ] keys step the slider, and the
editor's brush paints at the width it shows. Skipped without a headless Chromium, like test_browser."""

from __future__ import annotations

import time

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from test_browser import (  # noqa: F401 (app and browser are fixtures)
    app,
    browser,
    choose,
    open_page,
    paint_a_stroke,
    pixels_per_label,
    text_of,
    upload_photo,
    wait_for_text,
)

pytestmark = pytest.mark.browser
HAIR = 2


def press(driver, key: str, times: int = 1) -> None:
    """Press ``key`` on the page, outside any text box (where the shortcuts stay off)."""
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    body = driver.find_element(By.TAG_NAME, "body")
    for _ in range(times):
        body.send_keys(key)
        time.sleep(0.4)  # each press waits for the slider's new value before the next steps from it


def slider_value(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "#brush-size input[type=number]").get_attribute("value")


def hair(driver) -> int:
    return pixels_per_label(driver).get(HAIR, 0)


def wait_for_hair(driver, done) -> int:
    """Hair pixels once ``done(hair)`` holds (the downloads are redrawn meanwhile: a stale link is read again)."""
    wait = WebDriverWait(driver, 60, ignored_exceptions=(StaleElementReferenceException, StopIteration))
    return wait.until(lambda d: (lambda n: [n] if done(n) else None)(hair(d)))[0]  # [0]: a count of 0 is no failure


def hair_painted(driver, before: int) -> int:
    driver.find_element(By.ID, "apply-strokes").click()
    return wait_for_hair(driver, lambda n: n != before) - before


def test_the_keys_step_the_brush_and_the_editor_paints_at_its_width(app, browser):  # noqa: F811
    open_page(browser, app.port)
    choose(browser, "label", "2: hair")
    upload_photo(browser)  # 550 x 817: the proportional width is 817 / 40, 20 px
    wait_for_text(browser, "painting", "brush 20 px")
    assert slider_value(browser) == "0"

    press(browser, "]")  # from the width in use: 20 -> 25
    WebDriverWait(browser, 30).until(lambda d: slider_value(d) == "25")
    wait_for_text(browser, "painting", "brush 25 px")
    press(browser, "[", 3)  # 25 -> 20 -> 16 -> 13
    WebDriverWait(browser, 30).until(lambda d: slider_value(d) == "13")
    wait_for_text(browser, "painting", "brush 13 px")

    before = wait_for_hair(browser, lambda n: True)
    paint_a_stroke(browser)
    narrow = hair_painted(browser, before)
    browser.find_element(By.ID, "undo").click()
    wait_for_hair(browser, lambda n: n == before)

    press(browser, "]", 5)  # 13 -> 16 -> 20 -> 25 -> 31 -> 39
    WebDriverWait(browser, 30).until(lambda d: slider_value(d) == "39")
    wait_for_text(browser, "painting", "brush 39 px")
    paint_a_stroke(browser)
    wide = hair_painted(browser, before)
    # The same stroke three times as wide covers well over twice the pixels (the ends are round).
    assert wide > 2 * narrow > 0, (narrow, wide)
    assert "brush 39 px" in text_of(browser, "painting")
