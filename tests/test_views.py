"""Event-log following (peft_core.progress) and the app's pure formatting (app_views), on real event lines."""
import json

from app_views import compare_frame, history_frame, loss_frame, status_html, val_frame
from peft_core.callbacks import JsonlLogger, ProgressEvent
from peft_core.jobs import JobInfo
from peft_core.progress import EventTail, summarize


def test_event_tail_reads_only_whole_new_lines(tmp_path):
    log = tmp_path / "events.jsonl"
    tail = EventTail(log)
    assert tail.read() == []  # no file yet
    JsonlLogger(log)(ProgressEvent("start", 0, 20, message="280 training rows"))
    with log.open("a") as f:
        f.write(json.dumps(ProgressEvent("step", 1, 20, 0.1, 0.7, elapsed_s=0.5).to_dict())[:25])  # half a line
    assert [e["kind"] for e in tail.read()] == ["start"]
    with log.open("a") as f:
        f.write(json.dumps(ProgressEvent("step", 1, 20, 0.1, 0.7, elapsed_s=0.5).to_dict())[25:] + "\n")
    p = summarize(tail.read())
    assert (p.phase, p.step, p.total_steps, p.losses) == ("training", 1, 20, [(1, 0.7)])
    assert p.eta_s is None and p.fraction == 0.05  # one step in 0.5 s is no basis for an estimate


def test_summary_of_a_whole_run():
    events = [ProgressEvent("message", message="770 trainable of 22,713,986 parameters").to_dict(),
              ProgressEvent("start", 0, 4).to_dict()]
    events += [ProgressEvent("step", s, 4, s / 2, 1.0 / s, elapsed_s=s).to_dict() for s in range(1, 5)]
    events.insert(4, ProgressEvent("epoch", 2, 4, 1, metrics={"val_loss": 0.5, "val_accuracy": 0.8,
                                                               "val_macro_f1": 0.7}, elapsed_s=2).to_dict())
    events.append(ProgressEvent("end", 4, 4, message="finished", elapsed_s=4.2).to_dict())
    p = summarize(events)
    assert p.phase == "evaluating" and p.eta_s is None and p.notes == ["770 trainable of 22,713,986 parameters"]
    assert p.log[-1] == "training finished after 4.2 s"
    assert any(line.startswith("epoch 1 done after 2.0 s") and "validation macro-F1 0.7000" in line for line in p.log)
    assert val_frame(p).values.tolist() == [[1, 0.8, "validation accuracy"], [1, 0.7, "validation macro-F1"]]
    assert loss_frame(p)["loss"].tolist() == [1.0, 0.5, 1 / 3, 0.25]


def job(state, **kw):
    return JobInfo(id="ab" * 16, owner="x", state=state, model="minilm", method="head",
                   params={"epochs": 30, "learning_rate": 0.0, "head_learning_rate": 0.01, "max_length": 64}, **kw)


RESULTS = {"accuracy": 0.9875, "macro_f1": 0.97, "baseline_accuracy": 0.86, "best_epoch": 28, "epochs_run": 30,
           "trainable_pct": 0.0034, "trainable_parameters": 770, "best_val_macro_f1": 1.0}


def test_status_says_what_is_happening_in_words():
    assert "No run selected" in status_html(None, None, None)
    assert "position <b>2</b> in the queue (1 run ahead)" in status_html(job("queued"), None, 2)
    p = summarize([ProgressEvent("start", 0, 40).to_dict(),
                   ProgressEvent("step", 10, 40, 7.5, 0.3, elapsed_s=5.0).to_dict()])
    running = status_html(job("running", started=1.0), p, None)
    assert "Step <b>10</b> / 40 (25 %)" in running and "epoch 7.5 / 30" in running and "about 15 s left" in running
    assert 'aria-valuenow="25.0"' in running
    done = status_html(job("finished", started=1.0, finished=31.0, results=RESULTS), p, None)
    assert "Done in 30 s" in done and "accuracy <b>0.9875</b>" in done and "best epoch 28 of 30" in done
    failed = status_html(job("failed", error="label column 'x' <missing>"), p, None)
    assert "It failed: label column 'x' &lt;missing&gt;" in failed  # escaped, never raw markup
    assert "Cancelled before it started" in status_html(job("cancelled"), None, None)
    early = status_html(job("cancelled", started=1.0, finished=5.0, results=dict(RESULTS, epochs_run=0)), p, None)
    assert "Cancelled by you after 4 s" in early and "no epoch had finished" in early


def test_history_and_comparison_tables():
    jobs = [job("finished", started=1.0, finished=31.0, results=RESULTS), job("running", started=5.0)]
    h = history_frame(jobs)
    assert h.loc[0, "accuracy"] == 0.9875 and h.loc[0, "duration (s)"] == 30.0 and h.loc[0, "status"] == "finished"
    assert h.loc[1, "duration (s)"] == "" and h.loc[1, "lr (encoder / head)"] == "0.0 / 0.01"
    c = compare_frame(jobs[:1])
    assert dict(zip(c[""], c["abababab"]))["test accuracy"] == "0.9875"
    assert dict(zip(c[""], c["abababab"]))["method"] == "Linear probe (head only)"


def test_an_uploaded_config_fills_the_form_and_names_version_differences(tmp_path):
    import app
    from peft_core.pipeline import RunConfig, versions
    from peft_core.training import TrainConfig

    cfg = RunConfig(train_file="/elsewhere/data.csv", text_column="sms", label_column="y", method="lora",
                    method_config={"r": 4}, train=TrainConfig(epochs=3, max_length=96))
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"run": cfg.to_dict(), "versions": dict(versions(), torch="0.0.1")}))
    out = app.config_to_form(str(path))
    n = len(app.HP_FIELDS)
    assert out[:2] == ["minilm", "lora"]
    hp = dict(zip(app.HP_FIELDS, out[2:2 + n]))
    assert hp["epochs"] == 3 and hp["max_length"] == 96 and hp["head_learning_rate"] > 0
    assert out[2 + n] == 4 and out[-3]["visible"] is False and out[-2]["visible"] is True
    assert "torch 0.0.1 in the config" in out[-1] and "label column 'y'" in out[-1]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    import gradio as gr
    import pytest

    with pytest.raises(gr.Error, match="Not a PEFT Studio run config"):
        app.config_to_form(str(bad))
