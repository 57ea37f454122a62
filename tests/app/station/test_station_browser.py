"""The review station in a real browser (Debian's chromium, driven by Selenium through
chromedriver) against a real server: sign in, review with the keyboard, tap in the audit sample,
and check what reached the database and the metrics. Escaping is checked where it matters: in the
browser, with an item_id that holds a script."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from service_helpers import samples

from bench.photos import load_test_set
from bench.scanner import render
from bench.server import Server, running_server

pytestmark = pytest.mark.slow
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver")
if (CHROMIUM is None or CHROMEDRIVER is None) and os.environ.get("CI") != "true":  # in CI they must be there
    pytest.skip(
        "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SCANNER_SECRET, REVIEWER_SECRET = "s" * 24, "r" * 24
KEYS = f"belt-1:scanner:{SCANNER_SECRET},kim:reviewer:{REVIEWER_SECRET}"
HOSTILE_ITEM = '<script>alert("x")</script>&amp;'
SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "review-station.png"


def blank_belt() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 92, 96)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(model_dir) -> Iterator[Server]:
    env = {"SORTER_MODEL_DIR": str(model_dir), "SORTER_API_KEYS": KEYS, "SORTER_AUDIT_RATE": "1.0"}
    with running_server(env) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def classify(server: Server, data: bytes, item_id: str) -> dict:
    response = httpx.post(
        server.url + "/classify",
        files={"file": ("scan.jpg", data)},
        data={"item_id": item_id},
        headers={"X-API-Key": SCANNER_SECRET},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_review_three_items_with_the_keyboard_then_one_audit_item_by_tap(server: Server, browser) -> None:
    queued = [classify(server, blank_belt(), item) for item in ("SKU-1", HOSTILE_ITEM, "SKU-3")]
    assert all(answer["needs_review"] for answer in queued)
    # An ankle boot photographed on a grey belt: auto-sorted, so only the audit sample shows it.
    audited = classify(server, render("mid-grey background", load_test_set()[0][0], seed=3), "SKU-boot")
    assert not audited["needs_review"]
    wait = WebDriverWait(browser, 20)

    browser.get(server.url + "/review")
    key_field = wait.until(expected_conditions.presence_of_element_located((By.ID, "key")))
    key_field.send_keys(SCANNER_SECRET)  # a scanner key may not review
    browser.find_element(By.ID, "sign-in").click()
    assert "That key may not review." in wait.until(lambda b: b.find_element(By.CLASS_NAME, "error")).text
    browser.find_element(By.ID, "key").send_keys(REVIEWER_SECRET)
    browser.find_element(By.ID, "sign-in").click()
    assert wait.until(lambda b: b.find_element(By.ID, "reviewer")).text == "kim"
    cookie = browser.get_cookie("sorter_review")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    verdicts = {"SKU-1": ("9", "BIN-W"), HOSTILE_ITEM: ("0", "BIN-S"), "SKU-3": ("4", "BIN-W")}
    for expected in queued:  # oldest first
        item = wait.until(lambda b: b.find_element(By.ID, "item"))
        assert item.get_attribute("data-decision") == expected["decision_id"]
        shown_id = browser.find_element(By.ID, "item-id").text
        assert shown_id == expected["item_id"]  # the script tag is text on the page, never markup
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert  # noqa: B018
        key, bin_code = verdicts[shown_id]
        browser.find_element(By.TAG_NAME, "body").send_keys(key)
        wait.until(lambda b, bin_code=bin_code: bin_code in b.find_element(By.ID, "verdict").text)
    assert wait.until(lambda b: b.find_element(By.ID, "empty")).text == "Nothing waiting."

    browser.get(server.url + "/review?audit=true")
    item = wait.until(lambda b: b.find_element(By.ID, "item"))
    assert item.get_attribute("data-decision") == audited["decision_id"]
    box = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, ".photo .box"))
    wait.until(lambda _: box.is_displayed() and box.size["width"] > 10 and box.size["height"] > 10)
    if os.environ.get("UPDATE_DOCS") == "1":  # the picture in docs/review-station.md
        browser.save_screenshot(str(SCREENSHOT))
    browser.find_element(By.CSS_SELECTOR, '#classes button[data-key="9"]').click()  # a tap
    assert "BIN-W" in wait.until(lambda b: b.find_element(By.ID, "verdict")).text

    with sqlite3.connect(server.data_dir / "decisions.db") as connection:
        reviews = connection.execute(
            "SELECT d.item_id, r.label, r.bin, r.reviewer FROM reviews r JOIN decisions d USING (decision_id)"
            " ORDER BY r.review_id"
        ).fetchall()
    assert reviews == [
        ("SKU-1", "Ankle boot", "BIN-W", "kim"),
        (HOSTILE_ITEM, "T-shirt/top", "BIN-S", "kim"),
        ("SKU-3", "Coat", "BIN-W", "kim"),
        ("SKU-boot", "Ankle boot", "BIN-W", "kim"),
    ]
    metrics = samples(httpx.get(server.url + "/metrics", timeout=10).text)
    reviewed = {labels: value for (name, labels), value in metrics.items() if name == "garment_sorter_reviews_total"}
    assert sum(reviewed.values()) == 4
    audit_key = (("audit", "true"), ("model_label", "Ankle boot"), ("reviewed_label", "Ankle boot"))
    assert reviewed[audit_key] == 1


def test_a_form_post_without_the_csrf_token_is_refused(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.get("/review")  # a session cookie, as a browser would have
        response = client.post("/review/sign-in", data={"key": REVIEWER_SECRET, "csrf": "forged"})
    assert response.status_code == 403 and response.json()["code"] == "csrf_failed"
