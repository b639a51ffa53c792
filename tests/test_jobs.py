"""Runs as background jobs (peft_core.jobs): lifecycle, owners, queue, cancel, failure, restart, rebuild."""
import json
import time

import numpy as np
import pytest

from peft_core.jobs import JobError, JobManager, new_owner_token
from peft_core.pipeline import RunConfig
from peft_core.training import TrainConfig


def wait_for(cond, timeout_s, what):
    """Poll ``cond()`` every 0.05 s until truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    m = JobManager(tmp_path_factory.mktemp("jobs"), max_concurrent=1)
    yield m
    m.shutdown()


@pytest.fixture(scope="module")
def finished(manager, sms_small):
    """(owner token, JobInfo) of one linear-probe run on the 400-row SMS sample."""
    token = new_owner_token()
    cfg = RunConfig(train_file=str(sms_small), method="head",
                    train=TrainConfig(max_length=64, epochs=30, early_stopping_patience=0))
    info = manager.submit(token, cfg)
    assert info.state in ("queued", "running")
    return token, manager.wait(token, info.id, timeout_s=300)


def slow_cfg(path, epochs=30):
    """last_n trains the encoder: no feature cache, a few seconds per epoch on 2 cores."""
    return RunConfig(train_file=str(path), method="last_n", method_config={"num_layers": 1},
                     train=TrainConfig(max_length=64, epochs=epochs, early_stopping_patience=0))


def test_a_run_trains_in_the_background_and_records_everything(manager, finished):
    token, info = finished
    assert info.state == "finished" and info.error is None
    assert info.results["accuracy"] > 0.9 and 0 < info.results["trainable_pct"] < 1
    assert info.params["epochs"] == 30 and info.params["max_length"] == 64 and info.duration_s > 0
    run_dir = manager.dir(info.id)
    assert len(info.id) == 32 and json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    assert (run_dir / "model" / "head.safetensors").is_file() and (run_dir / "report.json").is_file()
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["run"]["train_file"].startswith(str(run_dir / "data")) and cfg["versions"]["torch"]
    p = manager.progress(token, info.id)
    assert p.phase == "evaluating" and p.step == p.total_steps > 0 and len(p.losses) > 10
    epochs_seen = {e for e, name, _ in p.val if name == "validation macro-F1"}
    assert epochs_seen == set(range(1, info.results["epochs_run"] + 1))
    assert any("trainable of" in note for note in p.notes) and p.log[-1].startswith("training finished")


def test_runs_are_private_to_their_owner(manager, finished):
    token, info = finished
    assert [j.id for j in manager.list(token)] == [info.id]
    other = new_owner_token()
    assert manager.list(other) == []
    for call in (manager.get, manager.progress, manager.cancel, manager.run, manager.export):
        with pytest.raises(JobError, match="no run"):
            call(other, info.id)
    with pytest.raises(JobError, match="owner token"):
        manager.list("")


def test_queue_position_and_cancel(manager, sms_small):
    token = new_owner_token()
    first = manager.submit(token, slow_cfg(sms_small))
    second = manager.submit(token, slow_cfg(sms_small))
    wait_for(lambda: manager.get(token, first.id).state == "running", 60, "the first run to start")
    assert manager.get(token, second.id).state == "queued" and manager.queue_position(second.id) == 1
    assert manager.cancel(token, second.id).state == "cancelled" and manager.queue_position(second.id) is None
    wait_for(lambda: manager.progress(token, first.id).step >= 2, 120, "two training steps")
    asked = time.monotonic()
    assert manager.cancel(token, first.id).state == "cancelling"
    done = manager.wait(token, first.id, timeout_s=30)
    assert done.state == "cancelled" and time.monotonic() - asked < 10
    assert done.results["epochs_run"] < 30 and done.has_model
    assert manager.progress(token, first.id).log[-1].startswith("training cancelled")
    assert not (manager.dir(second.id) / "events.jsonl").exists()  # the queued run never started


def test_a_failed_run_keeps_its_log_and_says_why(manager, sms_small):
    token = new_owner_token()
    cfg = RunConfig(train_file=str(sms_small), label_column="nope",
                    train=TrainConfig(max_length=64, epochs=30, early_stopping_patience=0))
    info = manager.wait(token, manager.submit(token, cfg).id, timeout_s=60)
    assert info.state == "failed" and "label column 'nope' is not in the file" in info.error
    assert "failed: label column 'nope'" in manager.progress(token, info.id).log[-1]
    assert (manager.dir(info.id) / "error.log").read_text().startswith("Traceback")
    with pytest.raises(JobError, match="is failed: it has no trained model"):
        manager.run(token, info.id)


def test_a_restarted_manager_lists_old_runs_and_rebuilds_them(manager, finished):
    token, info = finished
    ghost = manager.dir(info.id).parent / ("f" * 32)
    ghost.mkdir()
    (ghost / "status.json").write_text(json.dumps(dict(info.to_dict(), id=ghost.name, state="running")))
    fresh = JobManager(manager.root, max_concurrent=1)
    try:
        states = {j.id: j.state for j in fresh.list(token)}
        assert states[info.id] == "finished" and states[ghost.name] == "failed"
        assert "app stopped" in fresh.get(token, ghost.name).error
        rebuilt, original = fresh.run(token, info.id), manager.run(token, info.id)
        assert rebuilt is not original
        assert rebuilt.eval_report.accuracy == original.eval_report.accuracy
        assert list(rebuilt.data.splits["test"]["text"]) == list(original.data.splits["test"]["text"])
        from peft_core.inference import predict_logits

        texts = list(original.data.splits["test"]["text"])[:8]
        np.testing.assert_allclose(predict_logits(rebuilt.model, rebuilt.tokenizer, texts, 64),
                                   predict_logits(original.model, original.tokenizer, texts, 64), atol=1e-5)
    finally:
        fresh.shutdown()
