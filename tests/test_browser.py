"""The real page in headless Chromium (playwright + Debian /usr/bin/chromium): upload, train, watch, export,
download and run the bundle; reload mid-training, re-attach, cancel. Screenshots of the main states go to
``$PEFT_TEST_ARTIFACTS`` (default ``tests/artifacts/``, git-ignored)."""
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import free_port, sms_subset

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("PEFT_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    import app
    import app_state

    app_state.RUNS_ROOT = tmp_path_factory.mktemp("browser_runs")
    app.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    yield app.demo.local_url
    app.demo.close()
    app.jobs().shutdown()


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def sms_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("browser_data") / "sms_sample_400.csv"
    sms_subset(400).to_csv(path, index=False)
    return path


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def state(page) -> str:
    return page.locator("#run-status b[data-state]").get_attribute("data-state") or ""


def open_and_load(page, url, csv_path):
    """Open the app, upload the CSV and pick its columns; returns when the data report is shown."""
    page.goto(url)
    page.locator("#train-file input[type=file]").set_input_files(str(csv_path))
    expect(page.locator("#data-report")).to_contain_text("rows read", timeout=30_000)
    for elem, column in (("#text-col", "text"), ("#label-col", "label")):
        expect(page.get_by_role("option")).to_have_count(0)  # the other picker's list has closed
        page.locator(f"{elem} input").click()
        page.get_by_role("option", name=column, exact=True).click()
        expect(page.locator(f"{elem} input")).to_have_value(column)


def set_number(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Tab")


def set_hyperparameters(page, epochs, max_length=64, patience=0):
    page.locator("#hp").get_by_text("Hyper-parameters").click()
    set_number(page, "hp-epochs", epochs)
    set_number(page, "hp-max-length", max_length)
    set_number(page, "hp-patience", patience)


def test_upload_train_watch_export_download_and_run_the_bundle(browser, url, sms_csv, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    open_and_load(page, url, sms_csv)
    expect(page.locator("#data-report")).to_contain_text("400")
    expect(page.locator("#pair-col input")).to_have_value("(none)")  # one text per row
    shot(page, "1_data_loaded")
    set_hyperparameters(page, epochs=200)
    page.locator("#train-btn").click()
    expect(page.locator("#run-status")).to_contain_text(re.compile("Queued|Running"), timeout=15_000)
    # live progress: the linear probe's longest phase is the encoding (its full-batch fit on 280 cached rows takes
    # well under a poll of the page), shown as rows done of total
    expect(page.locator("#run-status")).to_contain_text(
        re.compile(r"Computing the frozen encoder's features – [1-9]\d*/320|Step \d"), timeout=120_000)
    shot(page, "2_training_live")
    expect(page.locator("#run-status b[data-state=finished]")).to_be_visible(timeout=240_000)
    expect(page.locator("#run-status")).to_contain_text("held-out macro-F1")
    accuracy = float(re.search(r"accuracy ([0-9.]+)", page.locator("#run-status").inner_text()).group(1))
    assert accuracy > 0.9
    expect(page.locator("#metrics")).to_contain_text("macro-F1")
    expect(page.locator("#eval-img img")).to_be_visible(timeout=15_000)
    expect(page.locator("#mistakes")).to_contain_text("held-out rows")  # text runs show their mistakes too
    expect(page.locator("#history")).to_contain_text("finished")
    expect(page.locator("#run-log textarea")).to_have_value(re.compile("training finished after"))
    shot(page, "3_finished_results")

    # score and evaluate a file with the run (the same core as the CLI's predict / evaluate verbs)
    page.locator("#score-in input[type=file]").set_input_files(str(sms_csv))
    page.locator("#score-btn").click()
    expect(page.locator("#eval-md")).to_contain_text("Scored 400 rows of sms_sample_400.csv", timeout=60_000)
    expect(page.locator("#score-dl")).to_be_visible()
    page.locator("#eval-btn").click()
    expect(page.locator("#eval-md")).to_contain_text("(400 rows)", timeout=60_000)
    expect(page.locator("#eval-table")).to_contain_text("macro-F1")
    page.locator("#eval-md").scroll_into_view_if_needed()
    shot(page, "3b_scored_and_evaluated")

    used = lambda: int(re.search(r"use ([\d,]+) MB", page.locator("#quota").inner_text()).group(1).replace(",", ""))  # noqa: E731
    before = used()
    page.locator("#export-btn").click()
    expect(page.locator("#export-md")).to_contain_text("Ready to download", timeout=240_000)
    expect(page.locator("#quota")).not_to_contain_text(f"use {before:,} MB", timeout=10_000)
    assert used() > before + 40  # the two bundles (tens of MB) are counted at once, not at the next reload
    shot(page, "4_exported")
    with page.expect_download(timeout=30_000) as dl:
        page.locator("#bundle-file a").first.click()
    bundle = tmp_path / "bundle.zip"
    dl.value.save_as(bundle)
    zipfile.ZipFile(bundle).extractall(tmp_path / "bundle")
    texts = ["WINNER!! You have won a 1000 GBP prize. Call 09061701461 now to claim", "See you at lunch tomorrow?"]
    out = subprocess.run([sys.executable, "predict.py", *texts], cwd=tmp_path / "bundle", capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [line.split("\t")[0] for line in out.stdout.strip().splitlines()] == ["spam", "ham"]
    page.close()


def test_reload_mid_training_reattaches_and_cancel_stops_it(browser, url, sms_csv):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    open_and_load(page, url, sms_csv)
    page.locator("#method").get_by_text("Last N layers + head").click()  # trains the encoder: no feature cache
    set_hyperparameters(page, epochs=12)
    page.locator("#train-btn").click()
    expect(page.locator("#run-status")).to_contain_text("Step", timeout=120_000)
    run_short = page.locator("#run-status code").inner_text()

    page.reload()
    expect(page.locator("#run-status code")).to_have_text(run_short, timeout=30_000)
    expect(page.locator("#run-status b[data-state=running]")).to_be_visible()
    step = lambda: int(re.search(r"Step (\d+)", page.locator("#run-status").inner_text()).group(1))  # noqa: E731
    expect(page.locator("#run-status")).to_contain_text("Step", timeout=30_000)
    first = step()
    expect(page.locator("#run-status")).not_to_contain_text(f"Step {first} ", timeout=30_000)
    assert step() > first  # still training after the reload, and the page follows it
    shot(page, "5_reattached_after_reload")

    stranger = browser.new_context().new_page()  # another browser profile: another owner
    stranger.goto(url)
    expect(stranger.locator("#run-status")).to_contain_text("No run selected", timeout=30_000)
    expect(stranger.locator("body")).not_to_contain_text(run_short)  # no run of the owner anywhere on the page
    stranger.context.close()

    # cancel once the first epoch has ended and been validated, so there is a best epoch to keep (the status line
    # says "epoch 2.0 / 12" and more from then on; a cancel during epoch 1 ends with no model: the API tests' case)
    expect(page.locator("#run-status")).to_contain_text(re.compile(r"epoch (1[0-2]|[2-9])\.\d / 12"),
                                                        timeout=180_000)
    asked = time.monotonic()
    page.locator("#cancel-btn").click()
    expect(page.locator("#run-status b[data-state=cancelling], #run-status b[data-state=cancelled]")
           ).to_be_visible(timeout=5_000)
    assert time.monotonic() - asked < 5  # the page says so at once ...
    expect(page.locator("#run-status b[data-state=cancelled]")).to_be_visible(timeout=60_000)  # ... then it ends:
    expect(page.locator("#run-status")).to_contain_text("Cancelled by you")  # the best epoch evaluated and saved
    expect(page.locator("#history")).to_contain_text("cancelled", timeout=5_000)
    shot(page, "6_cancelled")
    ctx.close()


def test_image_task_upload_train_gallery_try_it_export_and_a_broken_zip(browser, url, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.locator("#example-image").click()  # 300 committed MNIST digits
    expect(page.locator("#data-report")).to_contain_text("300 images read", timeout=60_000)
    expect(page.locator("#modality input[value=image]")).to_be_checked()
    expect(page.locator("#image-preview img").first).to_be_visible(timeout=15_000)
    expect(page.locator("#text-col")).to_be_hidden()
    shot(page, "7_images_loaded")
    page.locator("#train-btn").click()
    expect(page.locator("#run-status b[data-state=finished]")).to_be_visible(timeout=300_000)
    accuracy = float(re.search(r"accuracy ([0-9.]+)", page.locator("#run-status").inner_text()).group(1))
    assert accuracy > 0.5  # majority baseline: 0.10
    expect(page.locator("#miss-img img")).to_be_visible(timeout=15_000)
    shot(page, "8_images_finished")

    with zipfile.ZipFile(Path(__file__).parents[1] / "examples" / "mnist_digits.zip") as z:
        seven = tmp_path / "seven.png"
        seven.write_bytes(z.read(next(n for n in z.namelist() if n.startswith("mnist_digits/7/") and
                                      n.endswith(".png"))))
    page.locator("#image-in input[type=file]").set_input_files(str(seven))
    page.locator("#try-img-btn").click()
    expect(page.get_by_test_id("label-output-value")).to_be_visible(timeout=30_000)
    page.locator("#export-btn").click()
    expect(page.locator("#export-md")).to_contain_text("Ready to download", timeout=240_000)
    # a CNN gets static int8 (calibrated, batch-independent); it is the default only if it passed the gate
    expect(page.locator("#export-md")).to_contain_text("int8: (static, calibrated, batch-independent)")
    expect(page.locator("#export-md")).to_contain_text("MB = 10^6 bytes")  # sizes in one unit, stated
    link = page.locator("#bundle-file td.download a").first  # a signed link: Gradio would say "(size unknown)"
    expect(link).to_be_visible()
    assert link.evaluate("a => [getComputedStyle(a).fontSize, getComputedStyle(a, '::after').content]") == [
        "0px", '"download ⇣"']
    shot(page, "9_images_exported")

    broken = tmp_path / "broken.zip"
    broken.write_bytes((Path(__file__).parents[1] / "examples" / "mnist_digits.zip").read_bytes()[:5000])
    page.locator("#train-file button[aria-label='Clear']").first.click()
    page.locator("#train-file input[type=file]").set_input_files(str(broken))
    expect(page.get_by_text(re.compile("not a readable zip archive")).first).to_be_visible(timeout=30_000)
    expect(page.locator("#miss-img img")).to_be_visible()  # earlier results stay
    shot(page, "10_broken_zip_message")
    page.close()


# ---- issue 14: what a new user sees -----------------------------------------------------------------------
def page_height(page) -> int:
    return page.evaluate("document.documentElement.scrollHeight")


def box(page, selector):
    return page.locator(selector).bounding_box()


def headers_fit(page, table) -> list[str]:
    """Words in a table's headers and cells that are wider than their column (they would break mid-word)."""
    return page.evaluate("""(sel) => {
        const bad = [];
        for (const th of document.querySelectorAll(sel + ' th, ' + sel + ' td')) {
            const span = th.querySelector('span, div') || th;
            const style = getComputedStyle(span), ctx = document.createElement('canvas').getContext('2d');
            ctx.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
            const room = th.clientWidth - parseFloat(getComputedStyle(th).paddingLeft)
                                        - parseFloat(getComputedStyle(th).paddingRight);
            for (const word of th.innerText.trim().split(/\\s+/))
                if (word && ctx.measureText(word).width > room + 1) bad.push(word);
        }
        return bad; }""", table)


def test_first_screen_shows_what_to_do_and_the_form_explains_itself(browser, url, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    expect(page.locator("#run-status")).to_contain_text("No run selected", timeout=30_000)
    shot(page, "11_first_screen")
    assert page_height(page) < 2000  # was 3487 px of empty charts, tables and image boxes
    for hidden in ("#live", "#results", "#use", "#runs", "#preview", "#run-picker"):
        expect(page.locator(hidden)).to_be_hidden()
    expect(page.locator("#cancel-btn")).to_be_disabled()
    expect(page.locator("#delete-btn")).to_be_disabled()
    expect(page.locator("#use-note")).to_contain_text("Train a model in step 3")

    page.locator("#method").get_by_text("LoRA adapters + head").click()
    expect(page.locator("#hp-lr")).to_contain_text("LoRA adapter learning rate", timeout=30_000)
    expect(page.locator("#probe-epochs input")).to_have_value("60", timeout=30_000)
    expect(page.locator("#lora-alpha")).to_contain_text("alpha / r")
    expect(page.locator("#num-layers")).to_be_hidden()
    page.locator("#method").get_by_text("Last N layers + head").click()
    expect(page.locator("#hp-lr")).to_contain_text("Encoder learning rate (last N layers)", timeout=30_000)
    expect(page.locator("#probe-epochs input")).to_have_value("0", timeout=30_000)
    assert box(page, "#num-layers")["width"] < 0.5 * 1400  # no longer a full-width box
    page.locator("#hp").get_by_text("Hyper-parameters").click()
    expect(page.locator("#hp")).to_contain_text("Share of steps with a rising learning rate")
    expect(page.locator("#hp")).to_contain_text("Epochs without a better validation score")
    shot(page, "12_step2_last_n_explained")
    epochs, patience = box(page, "#hp-epochs input"), box(page, "#hp-patience input")
    assert abs(epochs["y"] - patience["y"]) < 2 and abs(epochs["height"] - patience["height"]) < 2
    page.locator("#method").get_by_text("Linear probe (head only)").click()
    expect(page.locator("#hp-lr")).to_be_hidden(timeout=30_000)
    expect(page.locator("#probe-epochs")).to_be_hidden()

    long_csv = tmp_path / "long_texts.csv"  # text first and long: the label used to be pushed off screen
    frame = sms_subset(60)
    frame.assign(text=frame["text"] + " " + "padding words " * 40, source="sms")[["text", "source", "label"]
                                                                                ].to_csv(long_csv, index=False)
    page.locator("#train-file input[type=file]").set_input_files(str(long_csv))
    expect(page.locator("#data-report")).to_contain_text("rows read", timeout=30_000)
    expect(page.locator("#preview")).to_be_visible()
    headers = page.locator("#preview th").all_inner_texts()
    assert [h.strip() for h in headers[:2]] == ["text", "label"], headers
    label_header, preview = page.locator("#preview th").nth(1).bounding_box(), box(page, "#preview")
    assert label_header["x"] + label_header["width"] <= preview["x"] + preview["width"]  # on screen, not scrolled off
    assert max(len(t) for t in page.locator("#preview td").all_inner_texts()) <= 201
    assert not headers_fit(page, "#preview"), headers_fit(page, "#preview")
    shot(page, "13_preview_long_texts")
    page.close()


def set_hp(page, epochs, max_length=32, patience=0):
    if not page.locator("#hp-epochs").is_visible():
        page.locator("#hp").get_by_text("Hyper-parameters").click()
    set_number(page, "hp-epochs", epochs)
    set_number(page, "hp-max-length", max_length)
    set_number(page, "hp-patience", patience)


def test_named_runs_reload_refills_the_form_results_render_and_compare_overlays(browser, url, sms_csv):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    open_and_load(page, url, sms_csv)
    set_hp(page, epochs=3)
    page.locator("#run-name input, #run-name textarea").first.fill("probe first")
    page.locator("#train-btn").click()
    expect(page.locator("#run-status b[data-state=finished]")).to_be_visible(timeout=240_000)
    expect(page.locator("#eval-img img")).to_be_visible(timeout=15_000)
    expect(page.locator("#cancel-btn")).to_be_disabled()
    expect(page.locator("#delete-btn")).to_be_enabled()
    expect(page.locator("#history")).to_contain_text("sms_sample_400.csv")
    expect(page.locator("#history")).to_contain_text("probe first")
    expect(page.locator("#quota")).to_contain_text(re.compile(r"Your runs use [\d,]+ MB of [\d,]+ MB"))

    page.locator("#method").get_by_text("Last N layers + head").click()
    set_hp(page, epochs=2)
    page.locator("#run-name input, #run-name textarea").first.fill("last two layers")
    page.locator("#train-btn").click()
    expect(page.locator("#run-status")).not_to_contain_text("probe first", timeout=15_000)
    expect(page.locator("#run-status b[data-state=finished]")).to_be_hidden(timeout=15_000)
    page.reload()  # while the second run is queued or training: the page re-attaches and refills the form
    expect(page.locator("#run-status b[data-state]")).to_be_visible(timeout=30_000)
    expect(page.locator("#run-data")).to_contain_text("sms_sample_400.csv", timeout=15_000)
    expect(page.locator("#run-data")).to_contain_text("text column text, label column label")
    expect(page.locator("#run-data")).to_contain_text("last two layers")
    expect(page.locator("#method input[value=last_n]")).to_be_checked()
    expect(page.locator("#hp-lr")).to_contain_text("Encoder learning rate (last N layers)")
    page.locator("#hp").get_by_text("Hyper-parameters").click()
    expect(page.locator("#hp-epochs input")).to_have_value("2")
    expect(page.locator("#hp-max-length input")).to_have_value("32")
    expect(page.locator("#run-picker input")).to_have_value(re.compile("“last two layers” · sms_sample_400.csv"))
    shot(page, "14_reloaded_form_refilled")
    expect(page.locator("#run-status b[data-state=finished]")).to_be_visible(timeout=240_000)
    expect(page.locator("#eval-img img")).to_be_visible(timeout=15_000)  # results render after "Finished"
    expect(page.locator("#val-plot")).to_be_visible()
    expect(page.locator("#use")).to_be_visible()
    assert not headers_fit(page, "#history"), headers_fit(page, "#history")
    expect(page.locator("#history")).to_contain_text(re.compile(r"\d+ (s|min)"))
    shot(page, "15_finished_after_reload")

    for name in ("probe first", "last two layers"):
        page.locator("#compare-pick").get_by_text(name).click()
    expect(page.locator("#compare")).to_contain_text("sms_sample_400.csv", timeout=15_000)
    expect(page.locator("#compare-curves")).to_be_visible()
    for name in ("probe first", "last two layers"):  # a series per run in the overlaid curves (legend)
        expect(page.locator("#compare-curves")).to_contain_text(name, timeout=15_000)
    for name in ("probe first", "last two layers"):  # one column per run (the table fills as the runs load)
        expect(page.locator("#compare-f1 th").filter(has_text=name)).to_have_count(1, timeout=15_000)
    expect(page.locator("#compare-f1")).to_contain_text("spam")
    table = page.locator("#compare .table-wrap, #compare [class*=table-wrap]").first
    if table.count():
        assert table.evaluate("el => el.scrollHeight <= el.clientHeight + 1")  # no rows behind a scroll
    shot(page, "16_compare")
    ctx.close()


def test_an_unusable_upload_shows_one_message_and_no_error_badges(browser, url, sms_csv, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    open_and_load(page, url, sms_csv)
    book = tmp_path / "results.xlsx"
    with zipfile.ZipFile(book, "w") as z:  # what an .xlsx is: a zip of XML parts
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
    csv_named_json = tmp_path / "table.json"
    csv_named_json.write_text(sms_csv.read_text())
    for bad, says in ((book, "save the sheet as CSV"), (csv_named_json, "table.json is not valid JSON")):
        page.locator("#train-file button[aria-label='Clear']").first.click()
        expect(page.locator("#train-file input[type=file]")).to_have_count(1)
        page.locator("#train-file input[type=file]").set_input_files(str(bad))
        expect(page.locator("#data-report")).to_contain_text(says, timeout=30_000)
        shot(page, f"11_unusable_upload_{bad.suffix[1:]}")
        expect(page.get_by_text(says)).to_have_count(1)  # one message, in the data report
        expect(page.get_by_text("Error", exact=True)).to_have_count(0)  # no red badge on any widget, no toast
        expect(page.locator("#modality input[value=text]")).to_be_checked()  # the task stays
    page.close()


# ---- issue 15: task kinds through the page ---------------------------------------------------------------
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def upload(page, path):
    """Replace the training file (clearing the one shown, if any); returns when its data report is shown."""
    clear = page.locator("#train-file button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
        expect(page.locator("#train-file input[type=file]")).to_have_count(1)
    page.locator("#train-file input[type=file]").set_input_files(str(path))
    expect(page.locator("#data-report")).to_contain_text(f"read from {path.name}", timeout=60_000)


def choose(page, elem_id, option):
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(page.locator(f"#{elem_id} input")).to_have_value(option)


def train_and_wait(page, name, data):
    """Start a run named ``name`` on the loaded file ``data`` (a Path) and wait until its results are shown."""
    page.locator("#run-name input, #run-name textarea").first.fill(name)
    page.locator("#train-btn").click()
    expect(page.locator("#run-picker input")).to_have_value(re.compile(f"“{name}”"), timeout=30_000)
    expect(page.locator("#run-status")).to_contain_text(f"data {data.name}", timeout=30_000)  # the new run's
    expect(page.locator("#run-status b[data-state=finished]")).to_be_visible(timeout=300_000)
    expect(page.locator("#eval-img img")).to_be_visible(timeout=30_000)


def mistakes_rows(page) -> int:
    return page.locator("#mistakes tbody tr").count()


def test_a_multi_label_run_and_a_pair_run_train_through_the_page_and_show_their_results(browser, url, tmp_path):
    import pandas as pd

    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.goto(url)
    expect(page.locator("#run-status")).to_contain_text("No run selected", timeout=30_000)
    emotions = tmp_path / "goemotions_300.csv"  # real GoEmotions comments, `;`-joined emotion labels
    pd.read_csv(EXAMPLES / "goemotions_sample.csv").head(300).to_csv(emotions, index=False)
    upload(page, emotions)
    expect(page.locator("#data-report")).to_contain_text("multi-label")  # inferred, and the report says why
    expect(page.locator("#task input")).to_have_value("Inferred from the data")
    set_hp(page, epochs=3)
    shot(page, "17_multi_label_loaded")
    train_and_wait(page, "emotions probe", emotions)
    metrics = page.locator("#metrics")
    for name in ("micro-F1", "macro-F1", "samples-F1", "subset accuracy", "Hamming loss"):
        expect(metrics).to_contain_text(name)
    expect(page.locator("#per-class")).to_contain_text("threshold")
    expect(page.locator("#mistakes")).to_contain_text("labels wrong")
    assert mistakes_rows(page) > 0
    expect(page.locator("#run-status")).to_contain_text("held-out micro-F1")
    page.locator("#text-in textarea").fill("Thank you so much, this made my day! I love it")
    page.locator("#try-btn").click()
    expect(page.locator("#try-table")).to_be_visible(timeout=30_000)
    expect(page.locator("#try-table")).to_contain_text("threshold")
    expect(page.locator("#try-md")).to_contain_text(re.compile("Predicted labels|No label reaches its threshold"))
    expect(page.locator("#label-out")).to_be_hidden()
    expect(page.locator("#text-pair-in")).to_be_hidden()
    shot(page, "18_multi_label_results")
    with page.expect_download(timeout=30_000) as dl:
        page.locator("#predictions-dl").click()
    got = tmp_path / "predictions.csv"
    dl.value.save_as(got)
    table = pd.read_csv(got, keep_default_na=False)
    assert {"input", "true", "predicted", "wrong"} <= set(table.columns) and len(table) > mistakes_rows(page)

    nli = tmp_path / "snli_300.csv"  # real SNLI premise / hypothesis pairs, 3 classes
    pd.read_csv(EXAMPLES / "snli_sample.csv").head(300).to_csv(nli, index=False)
    upload(page, nli)
    expect(page.locator("#pair-col input")).to_have_value("hypothesis", timeout=30_000)  # a well-known pair
    choose(page, "task", "Single-label classification")
    expect(page.locator("#data-report")).to_contain_text("hypothesis", timeout=30_000)
    shot(page, "19_pair_loaded")
    train_and_wait(page, "nli pairs", nli)
    expect(page.locator("#metrics")).to_contain_text("macro-F1")
    expect(page.locator("#metrics")).not_to_contain_text("micro-F1")  # the single-label table, not the last one
    expect(page.locator("#per-class")).to_contain_text("entailment")
    headers = [h.strip() for h in page.locator("#mistakes th").all_inner_texts()]
    assert headers[:4] == ["premise", "hypothesis", "true", "predicted"], headers  # the file's column names
    assert mistakes_rows(page) > 0
    expect(page.locator("#run-data")).to_contain_text("text columns premise + hypothesis")
    expect(page.locator("#text-pair-in")).to_be_visible()
    page.locator("#text-in textarea").fill("A man is playing a guitar on stage.")
    page.locator("#text-pair-in textarea").fill("A man is performing music.")
    page.locator("#try-btn").click()
    expect(page.get_by_test_id("label-output-value")).to_be_visible(timeout=30_000)
    expect(page.locator("#try-md")).to_contain_text("Predicted class")
    expect(page.locator("#try-table")).to_be_hidden()
    expect(page.locator("#history")).to_contain_text("micro-F1")
    expect(page.locator("#history")).to_contain_text("macro-F1")
    shot(page, "20_pair_results")
    page.close()
