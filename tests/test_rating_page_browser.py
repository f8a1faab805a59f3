"""The rating page in a real headless browser: Debian's chromium driven by selenium.

Needs ``apt-get install chromium chromium-driver`` and ``pip install selenium``; skipped with the
reason when one of them is missing. ``TEXTGYM_CHROMIUM`` / ``TEXTGYM_CHROMEDRIVER`` override the
binaries' paths (default ``/usr/bin/chromium`` and ``/usr/bin/chromedriver``).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import threading
import time

import numpy as np
import pytest

from textgym.feedback import HumanRatingScorer, PreferenceCollector, read_comparisons, read_ratings

CHROMIUM = os.environ.get("TEXTGYM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TEXTGYM_CHROMEDRIVER", "/usr/bin/chromedriver")

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(
        f"chromium not installed ({CHROMIUM} / {CHROMEDRIVER} missing): "
        f"apt-get install chromium chromium-driver",
        allow_module_level=True,
    )

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
)


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="textgym-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def start(scorer, *args):
    """Run ``scorer(*args)`` in a thread (it blocks until the page is submitted)."""
    result: dict = {}

    def run():
        try:
            result["value"] = scorer(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while scorer.ui.batch is None or scorer.ui.batch.closed:
        assert time.monotonic() < deadline, "the scorer never posted its batch"
        time.sleep(0.01)
    return thread, result


def type_into(driver, element_id: str, text: str) -> None:
    box = driver.find_element(By.ID, element_id)
    box.clear()
    box.send_keys(text)


def test_rate_a_batch_in_the_browser(browser, tmp_path):
    log = tmp_path / "ratings.jsonl"
    prompts = ["The food was", "The service was", "Overall it was"]
    completions = ["great!", "slow & <rude>", "fine"]
    with HumanRatingScorer("web", scale=(1, 5), log_path=log, output=io.StringIO()) as scorer:
        thread, result = start(scorer, prompts, completions, [None, None, None])
        browser.get(scorer.url)
        wait = WebDriverWait(browser, 15)
        wait.until(EC.presence_of_element_located((By.ID, "rating-2")))
        texts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".completion")]
        assert texts == completions  # shown verbatim (escaped, not interpreted as HTML)
        assert browser.switch_to.active_element.get_attribute("id") == "rating-0"

        type_into(browser, "rating-0", "5")
        type_into(browser, "rating-1", "7")  # out of range
        type_into(browser, "rating-2", "2")
        browser.find_element(By.ID, "submit").click()

        error = wait.until(EC.visibility_of_element_located((By.ID, "error-1")))
        assert error.text == "7 is out of range: enter a whole number from 1 to 5"
        assert "need fixing: #2" in browser.find_element(By.ID, "summary").text
        assert browser.find_element(By.ID, "rating-0").get_attribute("value") == "5"  # kept
        assert browser.find_element(By.ID, "rating-2").get_attribute("value") == "2"
        assert browser.switch_to.active_element.get_attribute("id") == "rating-1"
        assert "invalid" in browser.find_element(By.ID, "item-1").get_attribute("class")
        assert not browser.find_elements(By.ID, "error-0")
        assert thread.is_alive()  # the scorer is still waiting for item 2

        type_into(browser, "rating-1", "4")
        browser.find_element(By.ID, "submit").click()
        status = wait.until(EC.visibility_of_element_located((By.ID, "status")))
        assert "all 3 answer(s) of the last batch were saved" in status.text
        thread.join(10)
    assert "error" not in result
    np.testing.assert_allclose(result["value"], [1.0, 0.75, 0.25])
    rows = read_ratings(log)
    assert [(r["prompt"], r["completion"], r["rating"]) for r in rows] == [
        ("The food was", "great!", 5),
        ("Overall it was", "fine", 2),
        ("The service was", "slow & <rude>", 4),
    ]


def test_compare_pairs_in_the_browser(browser, tmp_path):
    path = tmp_path / "prefs.jsonl"
    with PreferenceCollector(path, interface="web", output=io.StringIO()) as collector:
        thread, result = start(collector, ["Say hi", "Count"], ["hello", "1 2 3"], ["hi!", "one"])
        browser.get(collector.url)
        wait = WebDriverWait(browser, 15)
        wait.until(EC.presence_of_element_located((By.ID, "choice-1-a")))
        assert browser.find_element(By.CSS_SELECTOR, "#item-0 .completion-b").text == "hi!"
        browser.find_element(By.ID, "choice-0-b").click()  # pair 2 left unanswered
        browser.find_element(By.ID, "submit").click()
        error = wait.until(EC.visibility_of_element_located((By.ID, "error-1")))
        assert error.text == "no choice given: choose A, B or tie"
        assert browser.find_element(By.ID, "choice-0-b").is_selected()
        browser.find_element(By.ID, "choice-1-a").click()
        browser.find_element(By.ID, "submit").click()
        wait.until(EC.visibility_of_element_located((By.ID, "status")))
        thread.join(10)
    assert result["value"] == ["b", "a"]
    assert read_comparisons(path) == [
        {"prompt": "Say hi", "chosen": "hi!", "rejected": "hello", "tie": False},
        {"prompt": "Count", "chosen": "1 2 3", "rejected": "one", "tie": False},
    ]
