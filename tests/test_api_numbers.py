"""Non-finite and malformed numbers, and unusable model names, sent to the app's /train endpoint through
gradio_client (the app launched in-process, as in test_app.py): each gets a one-line message naming the field."""
import json
import math
import re

import pytest
from gradio_client import Client, handle_file

from test_app import HP, wait_until_done


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    import app
    import app_state
    from conftest import free_port

    app_state.RUNS_ROOT = tmp_path_factory.mktemp("runs")
    app.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    yield Client(app.demo.local_url, verbose=False)
    app.demo.close()


def _train(client, owner, data, method="head", model="minilm", **changes):
    return client.predict(owner, data, None, "text", "label", model, method, **(HP | changes), api_name="/train")


def _train_raw(client, data_file, method, **changes) -> tuple[str, object]:
    """/train over Gradio's HTTP API with the body written by ``json.dumps``, which writes NaN and infinities as
    ``NaN`` / ``Infinity`` (gradio_client refuses them itself). Returns the last server-sent event's kind and its
    error message (None when the server gave none)."""
    import httpx

    base = client.src.rstrip("/") + "/gradio_api"
    with open(data_file, "rb") as f:
        path = httpx.post(f"{base}/upload", files={"files": ("sms_small.csv", f)}).json()[0]
    upload = {"path": path, "orig_name": "sms_small.csv", "meta": {"_type": "gradio.FileData"}}
    owner = client.predict(api_name="/new_owner")
    body = json.dumps({"data": [owner, upload, None, "text", "label", "minilm", method, *(HP | changes).values(),
                                None, "", None, None, None, False, []]})  # probe_epochs (method default), run_name,
                                # task, text_pair_column, label_separator, class_weights, report_to
    event_id = httpx.post(f"{base}/call/train", content=body, headers={"Content-Type": "application/json"}
                          ).json()["event_id"]
    with httpx.stream("GET", f"{base}/call/train/{event_id}", timeout=120) as stream:
        text = "".join(stream.iter_text())
    kind, data = re.findall(r"event: (\w+)\ndata: (.*)", text)[-1]
    assert client.predict(owner, api_name="/runs") == []  # nothing was queued
    return kind, json.loads(data)["error"]


@pytest.mark.parametrize("field,method,name", [("epochs", "head", "epochs"), ("max_length", "head", "max_length"),
                                               ("seed", "head", "seed"), ("num_layers", "last_n", "num_layers"),
                                               ("lora_r", "lora", "LoRA rank r")])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_whole_numbers_get_a_message_naming_the_field(client, sms_small, field, method, name, value):
    kind, msg = _train_raw(client, sms_small, method, **{field: value})
    assert kind == "error" and isinstance(msg, str), (kind, msg)
    assert msg.startswith(f"{name} must be a whole number") and msg.endswith(f"got {value!r}"), msg
    assert "\n" not in msg


@pytest.mark.parametrize("changes,expected", [
    (dict(epochs="ten"), "epochs must be a whole number in [1, 1000], got 'ten'"),
    (dict(epochs=2.5), "epochs must be a whole number, got 2.5"),
    (dict(learning_rate=math.nan), "learning_rate must be a finite number in [0, 1], got nan"),
    (dict(lora_alpha=math.nan), "LoRA alpha must be a finite number > 0, got nan"),
    (dict(lora_alpha=math.inf), "LoRA alpha must be a finite number > 0, got inf"),
    (dict(lora_dropout="x"), "LoRA dropout must be a number in [0, 1), got 'x'"),
])
def test_malformed_numbers_get_a_message_naming_the_field(client, sms_small, changes, expected):
    assert _train_raw(client, sms_small, "lora", **changes) == ("error", expected)


def test_a_300_character_model_id_fails_the_run_with_a_clear_message(client, sms_small):
    owner = client.predict(api_name="/new_owner")
    run_id, _ = _train(client, owner, handle_file(str(sms_small)), model="m" * 300)
    st = wait_until_done(client, owner, run_id, timeout_s=120)
    assert st["state"] == "failed"
    assert st["error"].startswith("model 'mmmm") and "(300 characters) is not a folder on this machine (File name " \
        "too long) nor a Hub ID: a Hugging Face Hub ID is 'name' or 'namespace/name', at most 96" in st["error"]
    assert "unexpected error" not in st["error"] and "OSError" not in st["error"]
