"""The page's "Find the best settings" in headless Chromium: a short search on 400 SMS rows (linear probe only,
epochs capped by PEFT_SEARCH_MAX_EPOCHS), its leaderboard with the best marked, its trials in the history, and
"Show the best run". Screenshot: ``$PEFT_TEST_ARTIFACTS/22_search_leaderboard.png``."""
import os
import re

import pytest
from playwright.sync_api import expect

from conftest import free_port, sms_subset
from test_browser import browser, open_and_load, set_number, shot  # noqa: F401  (module fixture)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    import app
    import app_state

    before = os.environ.get("PEFT_SEARCH_MAX_EPOCHS")
    os.environ["PEFT_SEARCH_MAX_EPOCHS"] = "4"  # read by the search thread: short trials
    app_state.RUNS_ROOT = tmp_path_factory.mktemp("search_runs")
    app.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    yield app.demo.local_url
    app.demo.close()
    app.jobs().shutdown()
    if before is None:
        os.environ.pop("PEFT_SEARCH_MAX_EPOCHS", None)
    else:
        os.environ["PEFT_SEARCH_MAX_EPOCHS"] = before


def test_short_search_shows_a_leaderboard_with_the_best_marked(browser, url, tmp_path):  # noqa: F811
    csv = tmp_path / "sms_sample_400.csv"
    sms_subset(400).to_csv(csv, index=False)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    open_and_load(page, url, csv)
    page.locator("#hp").get_by_text("Hyper-parameters").click()
    set_number(page, "hp-max-length", 64)
    page.locator("#search").get_by_text("Find the best settings").click()
    for title in ("Last N layers + head", "LoRA adapters + head"):  # the linear probe alone: seconds per trial
        page.locator("#search-methods").get_by_label(title).uncheck()
    # the budget last, once the accordion's content has settled; the slider's range input shows the value the
    # component holds (a CI run once started the default 15 minutes: the typed value had not reached it)
    budget, held = page.locator("#search-budget input[type=number]"), page.locator("#search-budget input[type=range]")
    for _ in range(3):
        budget.fill("0.5")
        budget.press("Tab")
        page.wait_for_timeout(500)
        if held.input_value() == "0.5":
            break
    expect(held).to_have_value("0.5", timeout=5_000)
    page.locator("#search-start").click()
    expect(page.locator("#search-status")).to_contain_text("Searching", timeout=30_000)
    expect(page.locator("#search-status")).to_contain_text("of 30 s", timeout=5_000)  # the budget reached the search
    expect(page.locator("#search-stop")).to_be_enabled(timeout=10_000)
    expect(page.locator("#search-status")).to_contain_text("Search ended", timeout=180_000)
    board = page.locator("#search-board")
    expect(board).to_contain_text("★", timeout=10_000)
    expect(board).to_contain_text("head")
    text = page.locator("#search-status").inner_text()
    assert re.search(r"best: trial \d+ \(head\), validation 0\.\d{4}", text), text
    # every trial is a normal run of this browser: in the history, named after the search
    expect(page.locator("#history")).to_contain_text("search 1", timeout=15_000)
    page.locator("#search-best").click()
    expect(page.locator("#run-picker input")).to_have_value(re.compile("search \\d+ · head"), timeout=15_000)
    page.locator("#search").scroll_into_view_if_needed()
    shot(page, "22_search_leaderboard")
    page.close()
