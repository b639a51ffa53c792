"""Event-log following (peft_core.progress) and the app's pure formatting (app_views), on real event lines."""
import dataclasses
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
    assert "1 run of other users queued before it" in status_html(job("queued"), None, 2)
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
    assert h.loc[0, "accuracy"] == 0.9875 and h.loc[0, "duration"] == "30 s" and h.loc[0, "status"] == "finished"
    assert h.loc[1, "duration"] == "" and "lr 0.01 (head)" in h.loc[1, "settings"]  # a frozen encoder has no lr
    lora = dataclasses.replace(jobs[1], method="lora", params=dict(jobs[1].params, learning_rate=0.001))
    assert "lr 0.001 / 0.01" in history_frame([lora]).loc[0, "settings"]  # encoder (adapter) / head
    c = compare_frame(jobs[:1])
    assert dict(zip(c[""], c["abababab"]))["test accuracy"] == "0.9875"
    assert dict(zip(c[""], c["abababab"]))["method"] == "Linear probe (head only)"
    assert dict(zip(c[""], c["abababab"]))["encoder / head lr"] == "frozen / 0.01"


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


# ---- issue 14: what a new user sees -----------------------------------------------------------------------
def test_durations_read_as_minutes_and_seconds():
    from app_views import _secs

    assert [_secs(s) for s in (4.4, 59.6, 252, 3600 + 180)] == ["4 s", "1 min 0 s", "4 min 12 s", "1 h 3 min"]
    done = status_html(job("finished", started=1.0, finished=253.0, results=RESULTS), None, None)
    assert "Done in 4 min 12 s" in done


def test_history_picker_and_compare_name_the_data_and_the_run_and_skip_text_fields_on_images():
    from app_views import HISTORY_COLUMNS, HISTORY_WIDTHS, run_choice

    text = job("finished", started=1.0, finished=253.0, results=RESULTS, dataset="sms.csv", name="first try")
    image = JobInfo(id="cd" * 16, owner="x", state="finished", model="efficientnet-lite0", method="head",
                    params={"epochs": 5, "learning_rate": 0.0, "head_learning_rate": 0.01, "max_length": 128},
                    dataset="digits.zip", results=RESULTS, started=1.0, finished=2.0)
    label, value = run_choice(text)
    assert label.startswith("abababab “first try” · sms.csv · head · finished") and value == text.id
    h = history_frame([text, image])
    assert h.loc[0, "run"] == "abababab “first try”" and h.loc[0, "data"] == "sms.csv"
    assert h.loc[0, "duration"] == "4 min 12 s" and "max_length 64" in h.loc[0, "settings"]
    assert h.loc[1, "data"] == "digits.zip" and "max_length" not in h.loc[1, "settings"]
    assert len(HISTORY_WIDTHS) == len(HISTORY_COLUMNS) and max(len(w) for c in HISTORY_COLUMNS for w in c.split()) <= 8
    c = compare_frame([image])
    rows = dict(zip(c[""], c["cdcdcdcd"]))
    assert rows["data"] == "digits.zip" and not any("max_length" in r for r in c[""])
    assert dict(zip(*compare_frame([text, image])[["", "cdcdcdcd"]].T.values))["max_length (tokens)"] == ""


def test_compare_overlays_curves_and_per_class_f1_of_each_run():
    from app_views import compare_curves, compare_per_class

    hist = {"a": [{"epoch": 1, "val_macro_f1": 0.5}, {"epoch": 2, "val_macro_f1": 0.7}],
            "b": [{"epoch": 1, "val_macro_f1": 0.6}]}
    curves = compare_curves(hist)
    assert curves.values.tolist() == [["1", 0.5, "a"], ["2", 0.7, "a"], ["1", 0.6, "b"]]  # one category per epoch
    long = compare_curves({"a": [{"epoch": e, "val_macro_f1": 0.5} for e in range(1, 61)]})
    assert long["epoch"].dtype == "int64" and long["epoch"].tolist() == list(range(1, 61))  # a numeric axis
    f1 = compare_per_class({"a": [{"label": "ham", "f1": 0.99}, {"label": "spam", "f1": 0.9}],
                            "b": [{"label": "spam", "f1": 0.8}, {"label": "ham", "f1": 0.97}]})
    assert f1.columns.tolist() == ["label", "F1 a", "F1 b"]
    assert f1.values.tolist() == [["ham", 0.99, 0.97], ["spam", 0.9, 0.8]]


def test_preview_puts_the_chosen_columns_first_and_clips_long_texts():
    import pandas as pd

    from app_views import parity_table, preview_frame

    frame = pd.DataFrame({"id": [1, 2], "body": ["x" * 500, "short"], "source": ["a", "b"], "y": ["spam", "ham"]})
    out = preview_frame(frame, "body", "y")
    assert out.columns.tolist() == ["body", "y", "id", "source"]
    assert out.loc[0, "body"] == "x" * 200 + "…" and out.loc[1, "body"] == "short"
    parity = pd.DataFrame({"name": ["fp32"], "max_tokens": [0], "passed": ["yes"]})
    assert parity_table(parity).columns.tolist() == ["name", "passed"]
    assert "max_tokens" in parity_table(parity.assign(max_tokens=[64])).columns


def test_quota_line_says_how_close_the_owner_is():
    from app_views import quota_text

    assert quota_text(412_000_000, 2000) == ("Your runs use 412 MB of 2,000 MB (21 %); beyond that, your oldest "
                                             "ended runs are deleted when you start a new one.")
    assert "no per-user limit" in quota_text(5_000_000, 0)


class FakeManager:
    """queue_position / progress / max_concurrent as JobManager has them, for the queue wording."""

    def __init__(self, positions, etas, slots=1):
        self.positions, self.etas, self.max_concurrent = positions, etas, slots

    def queue_position(self, run_id):
        return self.positions.get(run_id)

    def progress(self, owner, run_id):
        from peft_core.progress import Progress

        return Progress(phase="training", eta_s=self.etas.get(run_id))


def test_queued_run_says_what_it_waits_for_and_roughly_when_it_starts():
    from app_views import queue_context

    mine = JobInfo(id="11" * 16, owner="x", state="running", model="minilm", method="lora", name="big one")
    waiting = job("queued")
    q = queue_context(FakeManager({waiting.id: 1}, {mine.id: 252.0}), "tok", waiting, [waiting, mine])
    text = status_html(waiting, None, 1, q)
    assert "your run <code>11111111 “big one”</code> (lora, about 4 min 12 s left) is training" in text
    assert "It may start in about 4 min 12 s, when your run ends" in text and "0 runs" not in text
    others = status_html(waiting, None, 3, queue_context(FakeManager({waiting.id: 3}, {}), "tok", waiting, [waiting]))
    assert "1 run of other users is training" in others and "2 runs of other users queued before it" in others
    assert "may start in" not in others and "It starts by itself" in others


def test_status_shows_the_phase_progress_when_progress_has_it():
    from peft_core.progress import Progress

    running = job("running", started=1.0)
    p = Progress(phase="encoding")
    p.phase_done, p.phase_total, p.phase_eta_s = 120, 400, 12.0
    assert "Computing the frozen encoder's features – 120/400 – about 12 s left" in status_html(running, p, None)
    p.phase_eta_s = None
    assert "– 120/400 – estimating…" in status_html(running, p, None)
    assert "Preparing: reading the data" in status_html(running, Progress(phase="preparing"), None)  # fields absent


def fake_runner(cfg, run_dir, callbacks, control):
    """Stands in for fine_tune: returns at once with results and writes no report.json (the test does)."""
    from types import SimpleNamespace

    ev = SimpleNamespace(accuracy=0.9, macro_f1=0.8, baseline_accuracy=0.86)
    tr = SimpleNamespace(best_epoch=1, history=[{"val_macro_f1": 0.8}], stopped_early=False, seconds=1.0,
                         cancelled=False)
    return SimpleNamespace(eval_report=ev, train_result=tr, trainable_parameters=10, total_parameters=1000)


def poll_outputs(app, owner, run_id, view):
    view, *outs = app.poll(owner, run_id, view)
    return view, dict(zip(app.POLL_OUTPUTS, outs))


def test_poll_shows_results_once_the_report_appears_and_buttons_follow_the_state(tmp_path, sms_small, monkeypatch):
    import app
    import app_state
    from peft_core.evaluation import evaluate
    from peft_core.jobs import JobManager, new_owner_token
    from peft_core.pipeline import RunConfig
    from peft_core.training import TrainConfig

    monkeypatch.setattr(app_state, "RUNS_ROOT", tmp_path)
    monkeypatch.setattr(app_state, "_MANAGER", JobManager(tmp_path, runner=fake_runner))
    owner = new_owner_token()
    cfg = RunConfig(train_file=str(sms_small), text_column="text", label_column="label", method="lora",
                    train=TrainConfig(epochs=3, probe_epochs=7))
    info = app.jobs().submit(owner, cfg, name="  my   first run ")
    assert (info.dataset, info.name) == ("sms_small.csv", "my first run")
    app.jobs().wait(owner, info.id, timeout_s=30)
    view, out = poll_outputs(app, owner, info.id, {})
    assert out["results_col"]["visible"] is False  # finished, but report.json is not written yet
    assert out["cancel_btn"]["interactive"] is False and out["delete_btn"]["interactive"] is True
    assert out["runs_col"]["visible"] is True and "MB of 2,000 MB" in out["quota_md"]
    report = evaluate([0, 1, 1], [[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]], ["ham", "spam"], [0, 0, 1])
    (app.jobs().dir(info.id) / "report.json").write_text(json.dumps({"evaluation": report.to_dict()}))
    view, out = poll_outputs(app, owner, info.id, view)
    assert out["results_col"]["visible"] is True and out["metrics"]["model"].tolist()[0] == 0.6667
    assert out["use_col"]["visible"] is True
    view, out = poll_outputs(app, owner, info.id, view)
    assert all(v == {"__type__": "update"} for v in out.values())  # nothing changed: every output skipped

    form = app.form.run_to_form(app.jobs(), app.HP_FIELDS, owner, info.id)
    assert "sms_small.csv" in form[0]["value"] and "text column `text`, label column `label`" in form[0]["value"]
    assert form[1:4] == ["text", "minilm", "lora"]
    hp = dict(zip(app.HP_FIELDS, form[4:4 + len(app.HP_FIELDS)]))
    assert hp["epochs"] == 3 and hp["learning_rate"] == 1e-3 and form[-1] == 7  # the run's warm start
    hidden = app.form.run_to_form(app.jobs(), app.HP_FIELDS, new_owner_token(), info.id)
    assert hidden[0]["visible"] is False  # someone else's run: nothing is shown or filled


def test_method_fields_follow_the_method():
    import app_form

    lr, n, lora, probe = app_form.method_widgets("lora")
    assert lr["label"] == "LoRA adapter learning rate" and lr["visible"] and lora["visible"] and probe["visible"]
    lr, n, lora, probe = app_form.method_widgets("last_n")
    assert lr["label"] == "Encoder learning rate (last N layers)" and n["visible"] and not lora["visible"]
    lr, n, lora, probe = app_form.method_widgets("head")
    assert not (lr["visible"] or n["visible"] or lora["visible"] or probe["visible"])


def test_epoch_axis_is_one_category_per_epoch_for_short_runs_and_numeric_for_long_ones():
    import pandas as pd

    from app_views import epoch_axis

    assert epoch_axis(pd.Series([1, 2])).tolist() == ["1", "2"]  # no "1.5" tick between two epochs
    assert epoch_axis(pd.Series(range(1, 31))).dtype == "int64"  # 30 labels would crowd the axis
    assert epoch_axis(pd.Series([1, 2]), max_epochs=60).dtype == "int64"  # a 60-epoch run keeps one axis type
    assert epoch_axis(pd.Series([], dtype="int64"), max_epochs=4).tolist() == []
