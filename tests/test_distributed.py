"""The CLI under `accelerate launch` with 2 CPU processes (gloo): one set of outputs, every test row once."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

ACCELERATE = str(Path(sys.executable).parent / "accelerate")  # the venv's `accelerate` command, as in the README
LAUNCH = ["launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "peft_core", "train"]
# Tolerance against a single-process run with the same seed: DDP averages gradients over 2 x batch_size rows
# per step (half as many steps), so the runs differ slightly; on 80 test rows we allow 3 rows of accuracy.
ACCURACY_TOLERANCE = 3 / 80


def _launch(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_PORT="29533")
    return subprocess.run([ACCELERATE, *LAUNCH, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=900)


@pytest.mark.parametrize("method,extra", [("head", ["--export"]), ("last_n", ["--epochs", "1"])])
def test_two_processes_write_one_run_and_cover_every_row(method, extra, sms_small, head_run, tmp_path):
    out = tmp_path / "run"
    p = _launch(["--data", str(sms_small), "--method", method, "--max-length", "64", "--out", str(out), *extra],
                tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("== Evaluation") == 1  # only the main process reports
    report = json.loads((out / "report.json").read_text())
    assert report["processes"] == 2
    ev = report["evaluation"]
    assert ev["n"] == report["data"]["split_sizes"]["test"] == 80
    assert sum(map(sum, ev["confusion"])) == 80  # every held-out row exactly once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert sum(e["kind"] == "start" for e in events) == 1  # one writer
    assert "2 process(es)" in next(e["message"] for e in events if e["kind"] == "start")
    if method == "head":
        assert (out / "bundle-fp32.zip").exists() and "Parity PASSED" in p.stdout
        assert abs(ev["accuracy"] - head_run.eval_report.accuracy) <= ACCURACY_TOLERANCE


def test_two_processes_train_a_multi_label_run_with_one_set_of_thresholds(tmp_path):
    """Multi-label under DDP: every process tunes the same thresholds on the gathered validation logits, and the
    main process alone writes a run whose evaluation covers every held-out row once."""
    sample = ROOT / "examples" / "goemotions_sample.csv"
    out = tmp_path / "run"
    p = _launch(["--data", str(sample), "--method", "head", "--epochs", "10", "--max-length", "48", "--out", str(out)],
                tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("== Evaluation") == 1 and "micro-F1" in p.stdout
    report = json.loads((out / "report.json").read_text())
    ev = report["evaluation"]
    assert report["processes"] == 2 and ev["task"] == "multi_label"
    assert ev["n"] == report["data"]["split_sizes"]["test"]
    assert sum(r["support"] for r in ev["per_class"]) > ev["n"] * 0.9  # label sets of every test row counted
    config = json.loads((out / "model" / "classifier_config.json").read_text())
    assert [r["threshold"] for r in ev["per_class"]] == config["task"]["thresholds"]
    assert ev["micro_f1"] > ev["baseline"]["micro_f1"]
