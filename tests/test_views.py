"""Event-log following (peft_core.progress) and the app's pure formatting (app_views), on real event lines."""
import dataclasses
import json
from pathlib import Path

import pytest

from app_history import compare_frame, history_frame
from app_views import loss_frame, status_html, val_frame
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
    assert (h.loc[0, "metric"], h.loc[0, "score"]) == ("macro-F1", 0.97)  # a record from before task kinds
    assert h.loc[0, "duration"] == "30 s" and h.loc[0, "status"] == "finished"
    assert h.loc[1, "duration"] == "" and "lr 0.01 (head)" in h.loc[1, "settings"]  # a frozen encoder has no lr
    probe = dataclasses.replace(jobs[1], params=dict(jobs[1].params, solver="lbfgs", weight_decay=0.1, epochs=200))
    assert history_frame([probe]).loc[0, "settings"].startswith("200 L-BFGS iterations · L2 0.1")
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
    assert out[2 + n] == 4 and out[-5]["visible"] is False and out[-4]["visible"] is True
    assert out[-3:-1] == ["inferred", False]  # task choice, class weights
    assert "torch 0.0.1 in the config" in out[-1] and "label column 'y'" in out[-1]
    cfg.task, cfg.text_pair_column, cfg.train.class_weights = "multi_label", "reply", True
    path.write_text(json.dumps({"run": cfg.to_dict(), "versions": versions()}))
    out = app.config_to_form(str(path))
    assert out[-3:-1] == ["multi_label", True] and "task multi-label classification" in out[-1]
    assert "text column 'sms' + 'reply'" in out[-1]
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
    from app_history import HISTORY_COLUMNS, HISTORY_WIDTHS
    from app_views import run_choice

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
    from app_history import compare_curves, compare_per_class

    hist = {"a": [{"epoch": 1, "val_macro_f1": 0.5}, {"epoch": 2, "val_macro_f1": 0.7}],
            "b": [{"epoch": 1, "val_macro_f1": 0.6}]}  # histories written before task kinds
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

    ev = SimpleNamespace(accuracy=0.9, macro_f1=0.8, baseline_accuracy=0.86, headline_name="macro-F1", headline=0.8,
                         baseline_headline=0.46)
    tr = SimpleNamespace(best_epoch=1, history=[{"val_score": 0.8, "val_macro_f1": 0.8}], stopped_early=False,
                         seconds=1.0, cancelled=False, score_name="macro-F1", precision="fp32")
    data = SimpleNamespace(task=SimpleNamespace(kind="single_label"))
    return SimpleNamespace(eval_report=ev, train_result=tr, trainable_parameters=10, total_parameters=1000, data=data)


def poll_outputs(app, owner, run_id, view):
    view, *outs = app.poll(owner, run_id, view)
    return view, dict(zip(app.POLL_OUTPUTS, outs))


def test_poll_shows_results_once_the_report_appears_and_buttons_follow_the_state(tmp_path, sms_small, monkeypatch):
    import pandas as pd

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
    pd.DataFrame({"input": ["WIN a prize", "see you", "call me"], "true": ["spam", "ham", "spam"],
                  "predicted": ["ham", "ham", "spam"], "confidence": [0.9, 0.8, 0.7], "wrong": [True, False, False]}
                 ).to_csv(app.jobs().dir(info.id) / "predictions.csv", index=False)
    view, out = poll_outputs(app, owner, info.id, view)
    assert out["results_col"]["visible"] is True and out["metrics"]["model"].tolist()[0] == 0.6667
    assert out["use_col"]["visible"] is True
    assert out["mistakes"]["value"]["input"].tolist()[0] == "WIN a prize" and "(1 wrong)" in out["mistakes"]["label"]
    link = out["predictions_dl"]
    assert link["visible"] and f"/peft/download/{info.id}/predictions.csv?exp=" in link["value"]
    view, out = poll_outputs(app, owner, info.id, view)
    assert all(v == {"__type__": "update"} for v in out.values())  # nothing changed: every output skipped

    form = app.form.run_to_form(app.jobs(), app.HP_FIELDS, owner, info.id)
    assert "sms_small.csv" in form[0]["value"] and "text column `text`, label column `label`" in form[0]["value"]
    assert form[1:4] == ["text", "minilm", "lora"]
    hp = dict(zip(app.HP_FIELDS, form[4:4 + len(app.HP_FIELDS)]))
    assert hp["epochs"] == 3 and hp["learning_rate"] == 1e-3 and form[-3] == 7  # the run's warm start
    assert form[-2:] == ["inferred", False]  # task choice, class weights
    hidden = app.form.run_to_form(app.jobs(), app.HP_FIELDS, new_owner_token(), info.id)
    assert hidden[0]["visible"] is False  # someone else's run: nothing is shown or filled


def test_an_interrupted_run_says_so_and_restarts_from_the_page(tmp_path, sms_small, monkeypatch):
    """A run that was training when the app stopped: the next app shows it interrupted with a Restart button, and
    the button queues it again from its saved config."""
    import app
    import app_state
    from peft_core.jobs import JobManager, new_owner_token
    from peft_core.pipeline import RunConfig

    owner = new_owner_token()
    first = JobManager(tmp_path, runner=fake_runner)
    info = first.submit(owner, RunConfig(train_file=str(sms_small)))
    first.wait(owner, info.id, timeout_s=30)
    first.shutdown()
    status = tmp_path / info.id / "status.json"
    status.write_text(json.dumps(dict(json.loads(status.read_text()), state="running", results={})))
    monkeypatch.setattr(app_state, "RUNS_ROOT", tmp_path)
    monkeypatch.setattr(app_state, "_MANAGER", JobManager(tmp_path, runner=fake_runner))
    view, out = poll_outputs(app, owner, info.id, {})
    assert 'data-state="interrupted">Interrupted</b>' in out["status"] and "Restart run" in out["status"]
    assert out["restart_btn"]["visible"] is True and out["delete_btn"]["interactive"] is True
    assert out["cancel_btn"]["interactive"] is False and out["use_col"]["visible"] is False
    assert 'data-state="interrupted"' not in app.restart_run(owner, info.id)  # queued (or already done)
    assert app.jobs().wait(owner, info.id, timeout_s=30).state == "finished"
    view, out = poll_outputs(app, owner, info.id, view)
    assert out["restart_btn"]["visible"] is False
    import gradio as gr

    with pytest.raises(gr.Error, match="only an interrupted run can be restarted"):
        app.restart_run(owner, info.id)


def test_method_fields_follow_the_method():
    import app_form

    lr, n, lora, probe = app_form.method_widgets("lora")
    assert lr["label"] == "LoRA adapter learning rate" and lr["visible"] and lora["visible"] and probe["visible"]
    lr, n, lora, probe = app_form.method_widgets("last_n")
    assert lr["label"] == "Encoder learning rate (last N layers)" and n["visible"] and not lora["visible"]
    lr, n, lora, probe = app_form.method_widgets("head")
    assert not (lr["visible"] or n["visible"] or lora["visible"] or probe["visible"])


def test_the_linear_probe_form_shows_only_what_l_bfgs_reads():
    import app_form

    fields = dict(zip(app_form.SOLVER_FIELDS, app_form.solver_widgets("head")))
    assert not any(fields[f]["visible"] for f in ("batch_size", "head_learning_rate", "warmup_ratio", "dropout"))
    assert "L-BFGS iterations" in fields["epochs"]["label"] and "C = 1 / value" in fields["weight_decay"]["info"]
    back = dict(zip(app_form.SOLVER_FIELDS, app_form.solver_widgets("lora")))  # mini-batch AdamW reads them all
    assert all(u["visible"] for u in back.values()) and back["epochs"]["label"] == "Epochs (max)"


def test_epoch_axis_is_one_category_per_epoch_for_short_runs_and_numeric_for_long_ones():
    import pandas as pd

    from app_views import epoch_axis

    assert epoch_axis(pd.Series([1, 2])).tolist() == ["1", "2"]  # no "1.5" tick between two epochs
    assert epoch_axis(pd.Series(range(1, 31))).dtype == "int64"  # 30 labels would crowd the axis
    assert epoch_axis(pd.Series([1, 2]), max_epochs=60).dtype == "int64"  # a 60-epoch run keeps one axis type
    assert epoch_axis(pd.Series([], dtype="int64"), max_epochs=4).tolist() == []


# ---- issue 15: task kinds (multi-label, regression, text pairs) in the results, Try it, history and compare ----
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def tfidf_logits(data, split: str):
    """Logits of a TF-IDF (word 1-2-grams) linear model fit on the prepared train split, for ``split``: ridge
    regression on the standardised target (regression) or on the 0/1 label cells (multi-label: its outputs, clipped
    to (0, 1), read as probabilities), logistic regression (single-label); pairs are read as "text_a [SEP] text_b".
    Real scores of a real model, in seconds."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge

    from peft_core.splits import split_inputs

    def texts(name):
        return [" [SEP] ".join(x) if isinstance(x, tuple) else x for x in split_inputs(data.splits[name])]

    vec = TfidfVectorizer(ngram_range=(1, 2)).fit(texts("train"))
    x, y, new = vec.transform(texts("train")), np.asarray(data.splits["train"]["label"]), vec.transform(texts(split))
    if data.task.problem_type == "regression":
        mean, std = float(np.mean(y)), float(np.std(y))
        return Ridge(alpha=1.0).fit(x, (y - mean) / std).predict(new)[:, None]
    if data.task.problem_type == "multi_label_classification":
        p = np.clip(Ridge(alpha=1.0).fit(x, y).predict(new), 1e-4, 1 - 1e-4)
        return np.log(p / (1 - p))
    model = LogisticRegression(C=10, max_iter=1000).fit(x, y)
    return model.decision_function(new) if data.task.num_labels > 2 else \
        np.c_[np.zeros(new.shape[0]), model.decision_function(new)]


def saved_run(run_dir, data, with_plots_key=True):
    """A run folder as the pipeline saves it (report.json with "plots", the kind's figures, predictions.csv,
    model/classifier_config.json), from TF-IDF logits on a real prepared sample."""
    import numpy as np

    from peft_core.splits import split_inputs
    from peft_core.tasks import get_task

    kind, spec, test = get_task(data.task), data.task, data.splits["test"]
    if kind.calibrates:
        kind.calibrate(spec, data.splits["validation"]["label"], tfidf_logits(data, "validation"))
    logits = np.asarray(tfidf_logits(data, "test"), dtype=np.float32)
    report = kind.evaluate(spec, test["label"], logits, data.splits["train"]["label"])
    plots = kind.plots(spec, report, test["label"], logits, run_dir, split_inputs(test))
    kind.predictions_table(spec, split_inputs(test), test["label"], logits).to_csv(run_dir / "predictions.csv",
                                                                                  index=False)
    doc = {"evaluation": report.to_dict()} | ({"plots": {k: Path(v).name for k, v in plots.items()}}
                                              if with_plots_key else {})
    (run_dir / "report.json").write_text(json.dumps(doc))
    (run_dir / "model").mkdir()
    (run_dir / "model" / "classifier_config.json").write_text(json.dumps({"task": spec.to_dict()}))
    return report, logits


SAMPLES = {  # file, prepare_data keywords, the metric names its metrics table must show
    "multi_label": ("goemotions_sample.csv", {}, ["micro-F1", "samples-F1", "Hamming loss"]),
    "pair_single_label": ("snli_sample.csv", {}, ["accuracy", "macro-F1"]),
    "regression": ("emobank_sample.csv", {"label_column": "valence"}, ["RMSE", "MAE", "R²", "Spearman"]),
    "pair_regression": ("stsb_sample.csv", {"label_column": "score"}, ["RMSE", "Pearson"]),
}


def prepared_sample(name):
    from peft_core.data import prepare_data

    file, kwargs, _ = SAMPLES[name]
    return prepare_data(EXAMPLES / file, **kwargs)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_results_show_each_kinds_metrics_figure_and_worst_rows_on_real_samples(name, tmp_path):
    from app_results import MISTAKE_ROWS, mistakes_label, read_predictions, read_results

    data = prepared_sample(name)
    report, _ = saved_run(tmp_path, data)
    res = read_results(tmp_path)
    shown = " ".join(res.metrics["metric"])
    assert all(metric in shown for metric in SAMPLES[name][2]), shown
    assert res.metrics["model"].tolist()[0] == round(getattr(report, "micro_f1", None) or getattr(
        report, "accuracy", None) or report.rmse, 4)  # the first row is the kind's first metric
    assert res.figures["evaluation"].is_file() and res.figures["evaluation"].suffix == ".png"
    per_class = res.per_class
    if data.task.problem_type == "regression":
        assert per_class.empty
    else:
        assert sorted(per_class["label"]) == sorted(data.task.labels)
        assert ("threshold" in per_class) == (data.task.problem_type == "multi_label_classification")
    full = read_predictions(tmp_path / "predictions.csv")
    assert res.held_out == len(full) == len(data.splits["test"]) and len(res.mistakes) == min(MISTAKE_ROWS, len(full))
    inputs = ([data.task.text_column, data.task.text_pair_column] if data.task.input_kind == "text_pair"
              else ["input"])  # a pair's texts under the file's own column names
    assert res.mistakes.columns[:len(inputs)].tolist() == inputs
    assert res.wrong == (full["wrong"] == "True").sum() > 0
    if res.wrong >= MISTAKE_ROWS:  # the worst rows come first: every row shown is a mistake
        assert set(res.mistakes["wrong"]) == {"yes"}
    assert all(len(t) <= 201 for c in inputs for t in res.mistakes[c])
    assert f"the {len(res.mistakes)} worst of {len(full)} held-out rows ({res.wrong} wrong)" in mistakes_label(res)


def test_a_run_saved_before_task_kinds_shows_its_confusion_matrix(tmp_path, sms_small):
    from app_results import read_results
    from peft_core.data import prepare_data

    saved_run(tmp_path, prepare_data(sms_small), with_plots_key=False)  # report.json without "plots"
    (tmp_path / "predictions.csv").unlink()
    res = read_results(tmp_path)
    assert res.figures["evaluation"].name == "confusion_matrix.png" and res.predictions is None
    assert res.mistakes.empty and res.metrics["metric"].tolist()[:1] == ["accuracy"]


def test_try_it_views_follow_the_task_kind(tmp_path):
    import numpy as np

    from app_try import TRY_VIEWS, text_inputs, try_view
    from peft_core.tasks import TASKS, get_task
    from peft_core.tasks.base import sigmoid

    assert set(TRY_VIEWS) == set(TASKS)  # a new task kind without a Try it view fails here
    ml = prepared_sample("multi_label")
    saved_run(tmp_path, ml)  # tunes ml.task.thresholds on the validation split
    logits, sets = tfidf_logits(ml, "test"), []
    for row in logits[:40]:
        view = try_view(ml.task, row)
        sets.append(view.label)
        chosen = [ml.task.labels[j] for j in np.flatnonzero(sigmoid(row) >= np.asarray(ml.task.thresholds))]
        assert view.label == "; ".join(chosen) and view.table["chosen"].eq("yes").sum() == len(chosen)
        assert view.table["probability"].is_monotonic_decreasing and len(view.table) == ml.task.num_labels
        assert all(f"**{c}**" in view.summary for c in chosen) or (not chosen and "No label" in view.summary)
    assert any(sets) and len(set(sets)) > 1  # real predictions: label sets that differ from row to row
    reg = prepared_sample("pair_regression")
    row = tfidf_logits(reg, "test")[0]
    view = try_view(reg.task, row)
    assert float(view.label) == pytest.approx(row[0] * reg.task.target_std + reg.task.target_mean, rel=1e-3)
    assert view.table is None and f"Predicted **{reg.task.labels[0]}**" in view.summary
    assert get_task(reg.task).predict(reg.task, row[None])[0] == pytest.approx(float(view.label), rel=1e-3)
    nli = prepared_sample("pair_single_label")
    probs = try_view(nli.task, tfidf_logits(nli, "test")[0]).label
    assert sorted(probs) == sorted(nli.task.labels) and sum(probs.values()) == pytest.approx(1.0)
    assert text_inputs(nli.task, "A man sleeps.", "A person rests.") == [("A man sleeps.", "A person rests.")]
    with pytest.raises(ValueError, match=f"two texts: fill the second box too \\(column `{nli.task.text_pair_column}`"):
        text_inputs(nli.task, "A man sleeps.", " ")
    assert text_inputs(ml.task, "so happy", "left from a pair run") == ["so happy"]


def test_history_compare_and_status_use_each_runs_own_score():
    from app_history import compare_curves, compare_frame, compare_per_class, history_frame
    from app_views import task_choices, val_frame
    from peft_core.progress import Progress
    from peft_core.tasks import TASKS

    assert [v for _, v in task_choices()] == ["inferred", *TASKS]
    assert [t for t, _ in task_choices()][1:] == [k.title for k in TASKS.values()]
    ml = job("finished", started=1.0, finished=9.0, results={
        "task": "multi_label", "score_name": "micro-F1", "score": 0.41, "baseline_score": 0.3, "accuracy": None,
        "best_val_score": 0.38, "val_score_name": "micro-AP", "best_epoch": 3, "epochs_run": 3})
    reg = dataclasses.replace(ml, id="cd" * 16, results={
        "task": "regression", "score_name": "RMSE", "score": 1.2, "baseline_score": 1.49, "best_val_score": 0.31,
        "val_score_name": "R²", "best_epoch": 2, "epochs_run": 3})
    h = history_frame([ml, reg, job("finished", started=1.0, finished=2.0, results=RESULTS)])
    assert h[["metric", "score", "baseline"]].values.tolist() == [["micro-F1", 0.41, 0.3], ["RMSE", 1.2, 1.49],
                                                                  ["macro-F1", 0.97, ""]]
    assert "held-out micro-F1 <b>0.4100</b> (baseline 0.3000)" in status_html(ml, None, None)
    assert "accuracy" not in status_html(ml, None, None)
    rows = dict(zip(*compare_frame([ml, reg])[["", "cdcdcdcd"]].T.values))
    assert rows["task"] == "Regression" and rows["test score"] == "1.2000 (RMSE)"
    assert rows["best validation score"] == "0.3100 (R²)" and "test accuracy" not in rows
    curves = compare_curves({"a": [{"epoch": 1, "val_score": 0.3, "val_micro_f1": 0.3}],
                             "b": [{"epoch": 1, "val_score": 0.2, "val_rmse": 1.3}]}, {"a": "micro-F1", "b": "R²"})
    assert curves.values.tolist() == [["1", 0.3, "a · micro-F1"], ["1", 0.2, "b · R²"]]
    f1 = compare_per_class({"a": [{"label": "joy", "f1": 0.5, "threshold": 0.3}], "b": []})
    assert f1.columns.tolist() == ["label", "F1 a"]  # the regression run has no column
    assert "regression runs" in compare_per_class({"b": []})["label"][0]
    p = Progress(val=[(1, "validation loss", 0.5), (1, "validation R²", 0.2), (1, "validation RMSE", 1.3),
                      (1, "val_score", 0.2)])
    assert val_frame(p)["metric"].tolist() == ["validation R²", "validation RMSE"]


def test_step1_choices_become_prepare_data_keywords():
    from app_data import data_options

    assert data_options("premise", "label", "inferred", "(none)", "") == {
        "text_column": "premise", "label_column": "label", "task": None, "text_pair_column": "",  # no pair
        "label_separator": None}
    assert data_options()["text_pair_column"] is None  # a new file: inferred from well-known column pairs
    assert data_options(None, None, "multi_label", "hypothesis", "|") == {
        "text_column": None, "label_column": None, "task": "multi_label", "text_pair_column": "hypothesis",
        "label_separator": "|"}


def test_predictions_csv_goes_out_only_through_a_signed_link(tmp_path):
    from urllib.parse import parse_qs, urlsplit

    import app_files

    run_id = "ab" * 16
    (tmp_path / run_id).mkdir()
    csv = tmp_path / run_id / "predictions.csv"
    csv.write_text("input,true,predicted,wrong\nhello,ham,spam,True\n")
    link = app_files.signed_path("secret", run_id, "predictions.csv")
    q = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    assert app_files.checked_file("secret", tmp_path, run_id, "predictions.csv", q["exp"], q["sig"]) == csv
    assert app_files.checked_file("other secret", tmp_path, run_id, "predictions.csv", q["exp"], q["sig"])[0] == 403
    assert app_files.checked_file("secret", tmp_path, run_id, "report.json", q["exp"], q["sig"])[0] == 403
    with pytest.raises(ValueError):
        app_files.signed_path("secret", run_id, "report.json")  # only the listed run files get a link
