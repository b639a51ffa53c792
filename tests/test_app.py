"""The app's handlers through gradio_client against the app launched in-process."""
import zipfile

import pytest
from gradio_client import Client, handle_file


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    import app

    import socket

    with socket.socket() as sock:  # a free port for this test session
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app.RUNS_ROOT = tmp_path_factory.mktemp("runs")
    app.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
               allowed_paths=[str(app.RUNS_ROOT)])
    yield Client(app.demo.local_url, verbose=False)
    app.demo.close()


HP = dict(epochs=40, batch_size=32, learning_rate=0.0, head_learning_rate=0.01, weight_decay=0.01, warmup_ratio=0.1,
          max_length=64, dropout=0.1, early_stopping_patience=3, seed=42, num_layers=2, lora_r=8, lora_alpha=16,
          lora_dropout=0.1, lora_targets="")


def test_full_flow_through_the_api(client, sms_small):
    f = handle_file(str(sms_small))
    preview, text_col, label_col, report, classes = client.predict(f, None, api_name="/load_data")
    assert text_col["value"] == "text" and label_col["value"] == "label"
    assert "**400** rows" in report and [r[0] for r in classes["data"]] == ["ham", "spam"]

    status, metrics, per_class, cm, curve = client.predict(f, None, "text", "label", "minilm", "head", **HP,
                                                            api_name="/train")
    assert status.startswith("Finished") and "trainable of" in status
    acc = dict((r[0], r[1]) for r in metrics["data"])["accuracy"]
    assert acc > 0.9
    assert cm and curve

    probs = client.predict("WINNER!! Claim your free prize now, call 09061701461", api_name="/predict")
    assert probs["label"] == "spam"

    summary, parity, bundle = client.predict(api_name="/export")
    assert summary.startswith("**Ready to download.** Parity PASSED")
    paths = [f["path"] if isinstance(f, dict) else f for f in bundle["value"]]
    assert len(paths) == 2 and all("model.onnx" in zipfile.ZipFile(p).namelist() for p in paths)


def test_errors_reach_the_user_as_messages(client, sms_small):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="label column 'nope' is not in the file"):
        client.predict(handle_file(str(sms_small)), None, "text", "nope", "minilm", "head", **HP, api_name="/train")
    with pytest.raises(AppError, match="model folder not found: /no/such/model"):
        client.predict(handle_file(str(sms_small)), None, "text", "label", "/no/such/model", "head", **HP,
                       api_name="/train")


def test_predict_before_training_says_what_to_do(tmp_path_factory):
    import app

    # a fresh session (new client) has no run yet
    c = Client(app.demo.local_url, verbose=False)
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Train a model first"):
        c.predict("hello", api_name="/predict")
