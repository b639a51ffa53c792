"""Experiment tracking (``--report-to``): one real CLI run on a small SMS sample logs to TensorBoard, MLflow and
Trackio at once; each back end is read back with its own reader and compared with what the run itself recorded
(its events.jsonl step losses, report.json history and held-out evaluation). Plus: an unknown tracker name, a
back end that fails (the run goes on, one warning), and report_to through the app's job path."""
import json
import os
import subprocess
import sys

import pytest

from conftest import sms_subset

NAMES = "tensorboard,mlflow,trackio"


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "TRACKIO_DIR",
                                                           "MLFLOW_EXPERIMENT_NAME")}
    return env | {"HF_HUB_OFFLINE": "1"} | extra


@pytest.fixture(scope="module")
def tracked(sms_small, tmp_path_factory):
    """(run folder, step events, epoch history, held-out evaluation) of one CLI run reporting to all three."""
    from contextlib import redirect_stderr, redirect_stdout
    from io import StringIO

    from peft_core.cli import main

    out, stdout = tmp_path_factory.mktemp("tracked") / "run", StringIO()
    with pytest.MonkeyPatch.context() as mp:  # the CLI in this process (no second interpreter start-up)
        for var in ("MLFLOW_TRACKING_URI", "TRACKIO_DIR", "MLFLOW_EXPERIMENT_NAME"):
            mp.delenv(var, raising=False)
        with redirect_stdout(stdout), redirect_stderr(StringIO()):
            code = main(["train", "--data", str(sms_small), "--out", str(out), "--epochs", "2", "--max-length", "32",
                         "--report-to", NAMES])
    assert code == 0, stdout.getvalue()[-3000:]
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    steps = [(e["step"], e["loss"]) for e in events if e["kind"] == "step"]
    report = json.loads((out / "report.json").read_text())
    return out, stdout.getvalue(), steps, report["training"]["history"], report["evaluation"]


def test_cli_says_where_each_tracker_wrote(tracked):
    out, stdout = tracked[:2]
    tracking = out / "tracking"
    assert f"TensorBoard logs: {tracking / 'tensorboard'} (tensorboard --logdir" in stdout
    assert f"MLflow: sqlite:///{tracking / 'mlflow.db'}, experiment 'peft-studio', run id" in stdout
    assert f"Trackio: project 'peft-studio', run 'run' in {tracking / 'trackio'}" in stdout
    assert "tracking failed" not in stdout and "could not start" not in stdout


def _history_metrics(history):
    """val/<metric> -> per-epoch values, as the trackers name them."""
    keys = [k for k in history[0] if k.startswith("val_")]
    return {"val/" + k.removeprefix("val_"): [h[k] for h in history] for k in keys}


def test_tensorboard_event_files_hold_the_run(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    out, _, steps, history, evaluation = tracked
    acc = EventAccumulator(str(out / "tracking" / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    loss = acc.Scalars("train/loss")
    assert [s.step for s in loss] == [s for s, _ in steps] and len(loss) > 0
    assert [s.value for s in loss] == pytest.approx([v for _, v in steps], rel=1e-6)
    epoch_steps = [s for s, _ in steps][len(steps) // len(history) - 1::len(steps) // len(history)]
    for tag, values in _history_metrics(history).items():
        got = acc.Scalars(tag)
        assert [s.value for s in got] == pytest.approx(values, rel=1e-6), tag
        assert [s.step for s in got] == epoch_steps, tag
    for key in ("accuracy", "macro_f1", "baseline_accuracy", "n"):
        (point,) = acc.Scalars(f"test/{key}")
        assert point.value == pytest.approx(evaluation[key], rel=1e-6) and point.step == steps[-1][0]
    text = acc.Tensors("params/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| method | head |" in text and "| train.epochs | 2 |" in text
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["method"].string_value == "head" and hparams["train.max_length"].number_value == 32


def test_mlflow_store_holds_the_run(tracked):
    from mlflow.tracking import MlflowClient

    out, _, steps, history, evaluation = tracked
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'tracking' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("peft-studio")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    params = run.data.params
    assert params["method"] == "head" and params["train.epochs"] == "2" and params["train.max_length"] == "32"
    assert params["task_kind"] == "single_label" and int(params["trainable_parameters"]) > 0
    loss = client.get_metric_history(run.info.run_id, "train/loss")
    loss = sorted(loss, key=lambda m: m.step)
    assert [m.step for m in loss] == [s for s, _ in steps]
    assert [m.value for m in loss] == pytest.approx([v for _, v in steps])
    for tag, values in _history_metrics(history).items():
        got = sorted(client.get_metric_history(run.info.run_id, tag), key=lambda m: m.step)
        assert [m.value for m in got] == pytest.approx(values), tag
    for key in ("accuracy", "macro_f1", "baseline_macro_f1"):
        assert run.data.metrics[f"test/{key}"] == pytest.approx(evaluation[key])


READ_TRACKIO = """
import json, sys
from trackio.sqlite_storage import SQLiteStorage
print(json.dumps({"logs": SQLiteStorage.get_logs("peft-studio", "run"),
                  "config": SQLiteStorage.get_run_config("peft-studio", "run"),
                  "runs": SQLiteStorage.get_runs("peft-studio")}, default=str))
"""


def test_trackio_store_holds_the_run(tracked):
    out, _, steps, history, evaluation = tracked
    # Trackio reads its folder from TRACKIO_DIR when imported: read it back in a fresh interpreter pointed there
    proc = subprocess.run([sys.executable, "-c", READ_TRACKIO], capture_output=True, text=True, timeout=120,
                          env=_clean_env(TRACKIO_DIR=str(out / "tracking" / "trackio")))
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["runs"] == ["run"]
    assert got["config"]["method"] == "head" and got["config"]["train.epochs"] == 2
    logs = got["logs"]
    loss = [r for r in logs if "train/loss" in r]
    assert [r["step"] for r in loss] == [s for s, _ in steps]
    assert [r["train/loss"] for r in loss] == pytest.approx([v for _, v in steps])
    for tag, values in _history_metrics(history).items():
        assert [r[tag] for r in logs if tag in r] == pytest.approx(values), tag
    (test_row,) = [r for r in logs if "test/accuracy" in r]
    assert test_row["test/accuracy"] == pytest.approx(evaluation["accuracy"])
    assert test_row["test/macro_f1"] == pytest.approx(evaluation["macro_f1"])


def test_unknown_tracker_is_exit_2_naming_the_choices(sms_small, tmp_path, capsys):
    from peft_core.cli import main

    assert main(["train", "--data", str(sms_small), "--out", str(tmp_path / "r"), "--report-to",
                 "tensorboard,wandb"]) == 2
    err = capsys.readouterr().err
    assert "'wandb'" in err and "tensorboard, mlflow, trackio" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_report_to_parsing_and_config_round_trip():
    from peft_core.errors import ConfigError
    from peft_core.pipeline import RunConfig
    from peft_core.tracking import parse_report_to

    assert parse_report_to("MLflow, tensorboard,mlflow") == ["mlflow", "tensorboard"]
    assert parse_report_to("none") == parse_report_to(None) == parse_report_to([]) == []
    cfg = RunConfig(train_file="x.csv", report_to="trackio,tensorboard")
    again = RunConfig(**json.loads(json.dumps(cfg.to_dict())))
    assert again.report_to == ["trackio", "tensorboard"]
    old = cfg.to_dict()
    del old["report_to"]  # a config saved before the field
    assert RunConfig(**old).report_to == []
    with pytest.raises(ConfigError, match="choose from tensorboard, mlflow, trackio"):
        RunConfig(train_file="x.csv", report_to=["comet"])


def test_a_failing_tracker_warns_once_and_the_others_go_on(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from peft_core.callbacks import ProgressEvent
    from peft_core.tracking import Tracker, open_tracking

    class Broken(Tracker):
        name, title = "broken", "Broken"

        def log_params(self, params):
            pass

        def log_metrics(self, metrics, step):
            raise OSError("disk full")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus-scheme://nowhere")
    said = []
    tracking = open_tracking(["mlflow", "tensorboard"], tmp_path, {"method": "head"}, said.append)
    assert len(said) == 2 and said[0].startswith("warning: MLflow tracking could not start")
    assert said[1].startswith("TensorBoard logs:")
    tracking.trackers.append(Broken(tmp_path, "r"))
    with tracking:
        for step in (1, 2, 3):
            tracking(ProgressEvent("step", step, 3, loss=1.0 / step))
    assert [s for s in said[2:]] == ["warning: Broken tracking failed (OSError: disk full); the run goes on "
                                     "without it"]
    acc = EventAccumulator(str(tmp_path / "tracking" / "tensorboard"))
    acc.Reload()
    assert [s.step for s in acc.Scalars("train/loss")] == [1, 2, 3]


def test_app_job_runs_track_and_survive_a_bad_mlflow_uri(tmp_path, monkeypatch):
    """A run queued as the app queues it (its RunConfig read back from config.json) reports to TensorBoard; MLflow,
    pointed at a store that cannot work, is one warning in the run's log and the run finishes."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from peft_core.jobs import JobManager, new_owner_token
    from peft_core.pipeline import RunConfig
    from peft_core.training import TrainConfig

    data = tmp_path / "sms120.csv"
    sms_subset(120, seed=1).to_csv(data, index=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus-scheme://nowhere")
    # the thread executor: the same config.json round trip and fine_tune as a worker process, without its start-up
    manager, owner = JobManager(tmp_path / "runs", max_concurrent=1, executor="thread"), new_owner_token()
    cfg = RunConfig(train_file=str(data), train=TrainConfig(epochs=1, max_length=16),
                    report_to=["tensorboard", "mlflow"])
    info = manager.wait(owner, manager.submit(owner, cfg).id, timeout_s=300)
    assert info.state == "finished", info.error
    log = "\n".join(manager.progress(owner, info.id).log)
    assert "warning: MLflow tracking could not start" in log and "TensorBoard logs:" in log
    acc = EventAccumulator(str(manager.dir(info.id) / "tracking" / "tensorboard"))
    acc.Reload()
    assert len(acc.Scalars("train/loss")) > 0 and len(acc.Scalars("val/loss")) == 1
    assert "test/accuracy" in acc.Tags()["scalars"]


def test_trackio_runs_of_one_process_each_log_into_their_own_folder(tmp_path, monkeypatch):
    """Trackio fixes its folder at import; runs one after another in one process (the app's thread executor, a
    reused Ray worker) must still land in their own run folders, never in another owner's."""
    from peft_core.callbacks import ProgressEvent
    from peft_core.tracking import open_tracking

    monkeypatch.delenv("TRACKIO_DIR", raising=False)
    said = []
    for name, loss in (("first", 0.5), ("second", 0.25)):
        with open_tracking(["trackio"], tmp_path / name, {"method": name}, said.append) as tracking:
            tracking(ProgressEvent("step", 1, 1, loss=loss))
    assert not [s for s in said if s.startswith("warning")], said
    for name, loss in (("first", 0.5), ("second", 0.25)):
        folder = tmp_path / name / "tracking" / "trackio"
        proc = subprocess.run([sys.executable, "-c", READ_TRACKIO.replace('"run"', repr(name))],
                              capture_output=True, text=True, timeout=120, env=_clean_env(TRACKIO_DIR=str(folder)))
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        assert got["runs"] == [name] and [r["train/loss"] for r in got["logs"]] == [loss]
        assert got["config"]["method"] == name


def test_an_uploaded_config_fills_report_to(tmp_path):
    import app_tracking
    from peft_core.pipeline import RunConfig

    path = tmp_path / "config.json"
    run = RunConfig(train_file="x.csv", report_to="mlflow,trackio").to_dict()
    path.write_text(json.dumps({"run": run}))
    assert app_tracking.report_to_of_config(str(path)) == ["mlflow", "trackio"]
    del run["report_to"]  # saved before the field: no trackers
    path.write_text(json.dumps({"run": run}))
    assert app_tracking.report_to_of_config(str(path)) == []
    path.write_text(json.dumps({"run": run | {"report_to": ["comet"]}}))  # unknown: the form is left as is
    assert not isinstance(app_tracking.report_to_of_config(str(path)), list)
