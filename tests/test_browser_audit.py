"""Step 1's "Check labels" in headless Chromium: upload real SMS rows, run the label audit, see the ranked table
and the download of the marked file. Screenshot: ``$PEFT_TEST_ARTIFACTS/21_check_labels.png``."""
import urllib.request

import pandas as pd
from playwright.sync_api import expect

from test_audit import flipped_file
from test_browser import browser, open_and_load, shot, url  # noqa: F401  (module fixtures)


def test_check_labels_shows_table_and_download(url, browser, tmp_path):  # noqa: F811
    sms_csv, flipped = flipped_file(tmp_path / "sms_noisy_400.csv", 400)  # 20 real labels flipped
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.locator("#check-labels").click()  # no file yet: a message, nothing else changes
    expect(page.get_by_text("No training file yet")).to_be_visible(timeout=10_000)
    expect(page.locator("#audit-table")).to_be_hidden()
    open_and_load(page, url, sms_csv)
    page.locator("#check-labels").click()
    expect(page.locator("#audit-summary")).to_contain_text("likely label issue(s) among 320 rows", timeout=120_000)
    table = page.locator("#audit-table")
    expect(table).to_be_visible()
    expect(table).to_contain_text("suggested_label")
    expect(table).to_contain_text("confidence")
    link = page.locator("#audit-dl")
    expect(link).to_be_visible()
    expect(link).to_contain_text("sms_noisy_400_audited.csv")
    page.locator("#audit-summary").scroll_into_view_if_needed()
    shot(page, "21_check_labels")
    with page.expect_download() as dl:
        link.click()
    path = tmp_path / "audited.csv"
    dl.value.save_as(path)
    frame = pd.read_csv(path, keep_default_na=False)
    assert len(frame) == 400 and {"suggested_label", "label_issue"} <= set(frame.columns)
    assert set(frame["label_issue"]) <= {"True", "False", ""}
    marked = set(frame.index[frame["label_issue"] == "True"] + 1)
    assert len(marked & flipped) >= len(marked) / 2  # the flagged rows are mostly the flipped ones
    page.close()
    assert urllib.request.urlopen(url).status == 200  # the app still serves
