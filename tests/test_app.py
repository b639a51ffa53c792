"""The app's API through gradio_client against the app launched in-process (the README's client example)."""
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

MNIST = Path(__file__).resolve().parents[1] / "examples" / "mnist_digits.zip"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    import app
    import app_state
    from conftest import free_port

    app_state.RUNS_ROOT = tmp_path_factory.mktemp("runs")
    app.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    yield Client(app.demo.local_url, verbose=False, download_files=False)  # /export answers with signed links
    app.demo.close()


HP = dict(epochs=30, batch_size=32, learning_rate=0.0, head_learning_rate=0.01, weight_decay=0.01, warmup_ratio=0.1,
          max_length=64, dropout=0.1, early_stopping_patience=0, seed=42, num_layers=2, lora_r=8, lora_alpha=16,
          lora_dropout=0.1, lora_targets="")


def wait_until_done(client, owner, run_id, timeout_s=300):
    """Poll /status every 0.5 s until the run leaves queued / running / cancelling."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = client.predict(owner, run_id, api_name="/status")
        if st["state"] in ("finished", "failed", "cancelled"):
            return st
        time.sleep(0.5)
    pytest.fail(f"run {run_id} not done after {timeout_s} s")


def test_full_flow_through_the_api(client, sms_small, tmp_path):
    owner = client.predict(api_name="/new_owner")
    f = handle_file(str(sms_small))
    preview, text_col, label_col, report, classes, gallery, modality, pair_col = client.predict(
        f, None, api_name="/load_data")
    assert text_col["value"] == "text" and label_col["value"] == "label" and modality == "text"
    assert pair_col["value"] == "(none)"
    assert "**400** rows" in report and [r[0] for r in classes["data"]] == ["ham", "spam"]

    run_id, status = client.predict(owner, f, None, "text", "label", "minilm", "head", **HP, api_name="/train")
    assert len(run_id) == 32 and ("Queued" in status or "Running" in status)
    st = wait_until_done(client, owner, run_id)
    assert st["state"] == "finished" and st["error"] is None and st["step"] == st["total_steps"] > 0
    assert st["results"]["accuracy"] > 0.9 and st["params"]["max_length"] == 64
    assert [r["id"] for r in client.predict(owner, api_name="/runs")] == [run_id]

    probs = client.predict(owner, run_id, "WINNER!! Claim your free prize now, call 09061701461", api_name="/predict")
    assert probs["label"] == "spam"

    summary, parity, bundle = client.predict(owner, run_id, api_name="/export")
    assert summary.startswith("**Ready to download**") and "Parity PASSED" in summary
    links = [f["url"] for f in bundle["value"]]
    assert len(links) == 2
    for i, link in enumerate(links):
        path = tmp_path / f"bundle_{i}.zip"
        path.write_bytes(httpx.get(link, timeout=60).raise_for_status().content)
        assert {"onnx/model.onnx", "onnx/model_quantized.onnx"} & set(zipfile.ZipFile(path).namelist())

    stranger = client.predict(api_name="/new_owner")
    assert client.predict(stranger, api_name="/runs") == []
    for call in (dict(api_name="/status"), dict(api_name="/export")):
        with pytest.raises(AppError, match="no run"):
            client.predict(stranger, run_id, **call)
    with pytest.raises(AppError, match="no run"):
        client.predict(stranger, run_id, api_name="/delete")
    client.predict(owner, run_id, api_name="/delete")
    assert client.predict(owner, api_name="/runs") == []
    with pytest.raises(AppError, match="no run"):
        client.predict(owner, run_id, api_name="/status")


def test_errors_reach_the_user_as_messages(client, sms_small, tmp_path):
    import pandas as pd

    owner = client.predict(api_name="/new_owner")
    only_ham = tmp_path / "only_ham.csv"
    pd.read_csv(sms_small).query("label == 'ham'").to_csv(only_ham, index=False)
    with pytest.raises(AppError, match="has only one class"):
        client.predict(owner, handle_file(str(only_ham)), None, "text", "label", "minilm", "head", **HP,
                       api_name="/train")
    f = handle_file(str(sms_small))
    with pytest.raises(AppError, match="label column 'nope' is not in the file"):
        client.predict(owner, f, None, "text", "nope", "minilm", "head", **HP, api_name="/train")
    run_id, _ = client.predict(owner, f, None, "text", "label", "/no/such/model", "head", **HP, api_name="/train")
    st = wait_until_done(client, owner, run_id, timeout_s=60)
    assert st["state"] == "failed" and "model folder not found: /no/such/model" in st["error"]
    assert "failed: model folder not found" in st["log"][-1]
    with pytest.raises(AppError, match="owner token"):
        client.predict("", run_id, api_name="/status")
    with pytest.raises(AppError, match="owner token"):  # a message, not Gradio's generic error
        client.predict("", api_name="/runs")


def test_predict_before_training_says_what_to_do(client):
    owner = client.predict(api_name="/new_owner")
    with pytest.raises(AppError, match="Train a model first"):
        client.predict(owner, "", "hello", api_name="/predict")


def digit_png(tmp_path, digit: str = "7", mode: str = "RGBA") -> Path:
    """An MNIST digit of examples/mnist_digits.zip drawn black on a transparent background (RGBA PNG): only its
    alpha channel holds the digit, as in a drawing exported from an editor."""
    from PIL import Image

    with zipfile.ZipFile(MNIST) as z:
        name = next(n for n in z.namelist() if n.startswith(f"mnist_digits/{digit}/") and n.endswith(".png"))
        src = tmp_path / "digit.png"
        src.write_bytes(z.read(name))
    ink = Image.open(src).convert("L")
    black = Image.new("RGB", ink.size, (0, 0, 0))
    black.putalpha(ink)
    out = tmp_path / f"digit_{digit}_black_on_transparent.png"
    black.save(out)
    return out


def test_try_it_image_matches_the_model_on_the_same_file(client, tmp_path):
    import app
    from peft_core.inference import predict_proba

    owner = client.predict(api_name="/new_owner")
    hp = HP | {"epochs": 3, "head_learning_rate": 0.003}
    run_id, _ = client.predict(owner, handle_file(str(MNIST)), None, "", "", "efficientnet-lite0", "head", **hp,
                               api_name="/train")
    assert wait_until_done(client, owner, run_id, timeout_s=600)["state"] == "finished"
    png = digit_png(tmp_path)
    got = client.predict(owner, run_id, handle_file(str(png)), api_name="/predict_image")
    run = app.jobs().run(owner, run_id)
    want = predict_proba(run.model, run.tokenizer, [str(png)], run.train_config.max_length)[0]
    want = dict(zip(run.data.task.labels, want.tolist()))
    assert got["label"] == max(want, key=want.get)
    shown = {c["label"]: c["confidence"] for c in got["confidences"]}  # the top 5
    assert len(shown) == 5
    np.testing.assert_allclose([shown[k] for k in shown], [want[k] for k in shown], rtol=0, atol=1e-6)

    text = tmp_path / "notes.txt"
    text.write_text("not an image at all\n")
    with pytest.raises(AppError, match=r"notes\.txt is not an image: upload PNG, JPEG"):
        client.predict(owner, run_id, handle_file(str(text)), api_name="/predict_image")


def test_a_file_that_cannot_be_used_gives_one_message_and_changes_nothing_else(client, tmp_path):
    book = tmp_path / "results.xlsx"
    with zipfile.ZipFile(book, "w") as z:  # what an .xlsx is: a zip of XML parts
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
    out = client.predict(handle_file(str(book)), None, api_name="/load_data")
    assert "save the sheet as CSV" in out[3] and "results.xlsx" in out[3]
    assert [o for i, o in enumerate(out) if i != 3] == [{"__type__": "update"}] * 7  # skipped: nothing cleared


def test_export_progress_follows_the_phase_events(monkeypatch):
    from types import SimpleNamespace

    import app
    import app_state
    import pandas as pd
    from peft_core.callbacks import ProgressEvent

    phases = ("exporting", "parity", "int8", "bundle")

    class Jobs:
        def export(self, token, run_id, callbacks=()):
            for phase in phases:
                for done in range(3):
                    for cb in callbacks:
                        cb(ProgressEvent("phase", step=done, total_steps=2, message=phase))
            return SimpleNamespace(bundle=None, bundles={}, message="No bundle: parity failed.",
                                   parity=SimpleNamespace(to_table=pd.DataFrame))

    monkeypatch.setattr(app_state, "jobs", Jobs)
    seen = []
    text, *_ = app.export_bundle("o" * 32, "r" * 32, None, progress=lambda f, desc=None: seen.append((f, desc)))
    assert text.startswith("**Export blocked.**")
    assert seen[1:] == [(done / 2, phase) for phase in phases for done in range(3)]


def test_console_filter_drops_pandas4warnings_from_gradio_only():
    import warnings

    import app
    import gradio as gr
    import pandas as pd

    frame = pd.DataFrame({"step": [1, 2], "loss": [0.5, 0.4],
                          "at": pd.to_datetime(["2026-12-01", "2026-12-02"])})  # neither numeric nor str
    plot = gr.LinePlot(x="step", y="loss", render=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot.postprocess(frame)
        assert any(issubclass(w.category, pd.errors.Pandas4Warning) for w in caught)  # what floods the console
        caught.clear()
        app.quiet_console()
        plot.postprocess(frame)
        warnings.warn("ours", pd.errors.Pandas4Warning)  # raised outside gradio: still shown
    assert [str(w.message) for w in caught] == ["ours"]


STSB = Path(__file__).resolve().parents[1] / "examples" / "stsb_sample.csv"


def test_a_pair_regression_run_through_the_api_predicts_numbers_from_two_texts(client, tmp_path):
    """A text-pair regression run (real STS-B sentence pairs, similarity 0-5) through /load_data, /train and
    /predict: the pair column is found, the answer is the model's number in the target's units, and a pair run
    asked with one text says which box is missing."""
    import app
    import pandas as pd
    from peft_core.inference import predict_logits
    from peft_core.tasks import get_task

    owner = client.predict(api_name="/new_owner")
    data = tmp_path / "stsb_240.csv"
    pd.read_csv(STSB).head(240).to_csv(data, index=False)
    f = handle_file(str(data))
    out = client.predict(f, None, "regression", "", api_name="/load_data")
    assert out[7]["value"] == "sentence2" and "regression" in out[3].lower()
    hp = HP | {"epochs": 3, "max_length": 48}
    run_id, _ = client.predict(owner, f, None, "sentence1", "score", "minilm", "head", **hp, task="regression",
                               text_pair_column="sentence2", api_name="/train")
    st = wait_until_done(client, owner, run_id)
    assert st["state"] == "finished" and st["results"]["score_name"] == "RMSE"
    a, b = "A man is playing a guitar.", "A man plays the guitar."
    got = client.predict(owner, run_id, a, b, api_name="/predict")
    run = app.jobs().run(owner, run_id)
    want = get_task(run.data.task).predict(run.data.task, predict_logits(run.model, run.tokenizer, [(a, b)],
                                                                          run.train_config.max_length))[0]
    assert float(got["label"]) == pytest.approx(want, rel=1e-3)
    assert run.data.task.target_mean - 3 * run.data.task.target_std < want < run.data.task.target_mean + \
        3 * run.data.task.target_std
    with pytest.raises(AppError, match="This run takes two texts: fill the second box too"):
        client.predict(owner, run_id, a, "", api_name="/predict")
