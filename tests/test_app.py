"""The app's API through gradio_client against the app launched in-process (the README's client example)."""
import time
import zipfile

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    import app
    from conftest import free_port

    app.RUNS_ROOT = tmp_path_factory.mktemp("runs")
    app.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
               allowed_paths=[str(app.RUNS_ROOT)])
    yield Client(app.demo.local_url, verbose=False)
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


def test_full_flow_through_the_api(client, sms_small):
    owner = client.predict(api_name="/new_owner")
    f = handle_file(str(sms_small))
    preview, text_col, label_col, report, classes, gallery, task = client.predict(f, None, api_name="/load_data")
    assert text_col["value"] == "text" and label_col["value"] == "label" and task == "text"
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
    paths = [f["path"] if isinstance(f, dict) else f for f in bundle["value"]]
    assert len(paths) == 2 and all("model.onnx" in zipfile.ZipFile(p).namelist() for p in paths)

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


def test_predict_before_training_says_what_to_do(client):
    owner = client.predict(api_name="/new_owner")
    with pytest.raises(AppError, match="Train a model first"):
        client.predict(owner, "", "hello", api_name="/predict")
