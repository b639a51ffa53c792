"""Runs as background jobs (peft_core.jobs): lifecycle, owners, queue, cancel, failure, restart, rebuild, cleanup by
age and disk quota, a worker dying mid-run."""
import json
import os
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import SMS
from peft_core.callbacks import JsonlLogger, ProgressEvent
from peft_core.errors import ConfigError
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
    assert p.phase_done == p.phase_total == 80 and p.eta_s == 0.0  # all 80 held-out rows evaluated
    epochs_seen = {e for e, name, _ in p.val if name == "validation macro-F1"}
    assert epochs_seen == set(range(1, info.results["epochs_run"] + 1))
    assert any("trainable of" in note for note in p.notes)
    assert any(line.startswith("training finished") for line in p.log) and p.log[-1].startswith("evaluating done")


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
    wait_for(lambda: manager.progress(token, first.id).val, 180, "the first epoch to end")
    asked = time.monotonic()
    assert manager.cancel(token, first.id).state == "cancelling"
    done = manager.wait(token, first.id, timeout_s=60)
    assert done.state == "cancelled" and time.monotonic() - asked < 30 and done.error is None
    assert 1 <= done.results["epochs_run"] < 30 and done.has_model  # the best epoch so far, evaluated and saved
    assert (manager.dir(first.id) / "report.json").is_file() and manager.run(token, first.id).eval_report
    assert any(line.startswith("training cancelled") for line in manager.progress(token, first.id).log)
    assert not (manager.dir(second.id) / "events.jsonl").exists()  # the queued run never started


def test_a_run_cancelled_while_encoding_ends_at_once_with_no_model(manager):
    """Cancel acts within a batch while the frozen features are cached; with no epoch done there is nothing to
    evaluate or offer (it used to train a step, evaluate that head and show it as the run's result)."""
    token = new_owner_token()
    cfg = RunConfig(train_file=str(SMS), method="head", train=TrainConfig(max_length=32, epochs=2))
    info = manager.submit(token, cfg)  # 5,574 real rows: encoding them takes far longer than the test waits
    wait_for(lambda: manager.progress(token, info.id).phase == "encoding", 180, "the encoding phase")
    asked = time.monotonic()
    assert manager.cancel(token, info.id).state == "cancelling"
    done = manager.wait(token, info.id, timeout_s=60)
    assert done.state == "cancelled" and time.monotonic() - asked < 20  # one batch of 64 rows, even under load
    assert done.error == "cancelled before the first epoch ended: there is no model to offer"
    assert not done.has_model and done.results == {}
    run_dir = manager.dir(info.id)
    assert not (run_dir / "report.json").exists() and not (run_dir / "model").exists()
    p = manager.progress(token, info.id)
    assert p.phase == "encoding" and 0 < p.phase_done < p.phase_total and p.step == 0  # stopped mid-cache
    assert p.log[-1] == done.error
    with pytest.raises(JobError, match="is cancelled: it has no trained model"):
        manager.run(token, info.id)


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
        assert states[info.id] == "finished" and states[ghost.name] == "interrupted"
        assert "app stopped while this run was training" in fresh.get(token, ghost.name).error
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


# ---- cleanup by age and per-owner disk quota; failures mid-run ------------------------------------------------
MB = 1_000_000
HOUR = 3600


class FakeRunner:
    """Stands in for ``fine_tune`` where real training adds nothing: ``cfg.model`` = "fake:<MB>[:hold]" writes
    that many MB into the run folder (atomically), then with "hold" waits for ``release`` before "finishing"."""

    def __init__(self):
        self.release = threading.Event()

    def __call__(self, cfg, run_dir, callbacks, control):
        _, mb, *hold = cfg.model.split(":")
        tmp = Path(run_dir) / "model.tmp"
        tmp.write_bytes(bytes(int(float(mb) * MB)))
        tmp.replace(Path(run_dir) / "model.bin")
        if hold:
            assert self.release.wait(60), "the test never released the held run"
        return SimpleNamespace(
            data=SimpleNamespace(task=SimpleNamespace(kind="single_label")),
            train_result=SimpleNamespace(best_epoch=1, history=[{"val_score": 0.9, "val_macro_f1": 0.9}],
                                         stopped_early=False, seconds=0.01, cancelled=False, score_name="macro-F1", precision="fp32"),
            eval_report=SimpleNamespace(accuracy=0.9, macro_f1=0.9, baseline_accuracy=0.5, headline_name="accuracy",
                                        headline=0.9, baseline_headline=0.5),
            trainable_parameters=1, total_parameters=10)


@pytest.fixture
def tiny_csv(tmp_path_factory):
    """10 rows, 2 classes, outside the managers' roots (the fake runner never reads it)."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.csv"
    path.write_text("text,label\n" + "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(10)))
    return path


def fake_cfg(path, mb=0.0, hold=False):
    return RunConfig(train_file=str(path), model=f"fake:{mb}" + (":hold" if hold else ""))


def write_record(root, run_id, **fields):
    """A run folder as an earlier process left it: status.json + a 1 kB file."""
    d = root / run_id
    d.mkdir(parents=True)
    (d / "model.bin").write_bytes(bytes(1000))
    record = {"id": run_id, "owner": "0" * 64, "state": "finished", "model": "minilm", "method": "head"} | fields
    (d / "status.json").write_text(json.dumps(record))
    return d


def test_ended_runs_older_than_the_ttl_are_deleted_at_start(tmp_path):
    now = time.time()
    old = {name: write_record(tmp_path, name * 32, state=state, created=now - 80 * HOUR, finished=now - 73 * HOUR)
           for name, state in (("a", "finished"), ("b", "failed"), ("c", "cancelled"))}
    kept = {"recent": write_record(tmp_path, "d" * 32, created=now - 80 * HOUR, finished=now - 71 * HOUR),
            # active when the previous process stopped: recovered as interrupted now, so 72 h from now
            "was_running": write_record(tmp_path, "e" * 32, state="running", created=now - 100 * HOUR,
                                        started=now - 99 * HOUR),
            # a record that names another folder, and a folder that is not a run: never touched
            "moved": write_record(tmp_path, "f" * 32, created=now - 100 * HOUR, finished=now - 99 * HOUR),
            "not_a_run": tmp_path / "not_a_run"}
    json_path = kept["moved"] / "status.json"
    json_path.write_text(json.dumps(dict(json.loads(json_path.read_text()), id="9" * 32)))
    kept["not_a_run"].mkdir()
    (tmp_path / ".browser_secret").write_text("x")
    m = JobManager(tmp_path, max_concurrent=1, run_ttl_hours=72, max_user_disk_mb=0)
    try:
        assert not any(d.exists() for d in old.values())
        assert all(d.exists() for d in kept.values()) and (tmp_path / ".browser_secret").exists()
        assert set(m._jobs) == {"d" * 32, "e" * 32}
        assert m.cleanup(now=now + 2 * HOUR) == ["d" * 32]  # 73 h after it ended
        assert not kept["recent"].exists() and kept["was_running"].exists()
    finally:
        m.shutdown()


def test_ttl_cleanup_at_submit_deletes_only_ended_runs(tmp_path, tiny_csv):
    fake = FakeRunner()
    ttl_s = 0.5
    m = JobManager(tmp_path, max_concurrent=1, runner=fake, run_ttl_hours=ttl_s / HOUR, max_user_disk_mb=0)
    try:
        token = new_owner_token()
        ended = m.wait(token, m.submit(token, fake_cfg(tiny_csv, 0.1)).id, timeout_s=10)
        held = m.submit(token, fake_cfg(tiny_csv, 0.1, hold=True))
        wait_for(lambda: m.get(token, held.id).state == "running", 10, "the held run to start")
        time.sleep(ttl_s + 0.1)  # the first run is now older than the TTL; the held one is running
        queued = m.submit(token, fake_cfg(tiny_csv))
        assert not m.dir(ended.id).exists()
        with pytest.raises(JobError, match="no run"):
            m.get(token, ended.id)
        assert {j.id: j.state for j in m.list(token)} == {held.id: "running", queued.id: "queued"}
        fake.release.set()
        assert m.wait(token, queued.id, timeout_s=10).state == "finished"
    finally:
        fake.release.set()
        m.shutdown()


def test_quota_deletes_the_oldest_ended_runs_keeps_active_ones_and_refuses_when_they_fill_it(tmp_path, tiny_csv):
    fake = FakeRunner()
    m = JobManager(tmp_path, max_concurrent=2, runner=fake, run_ttl_hours=0, max_user_disk_mb=10)
    me, other = new_owner_token(), new_owner_token()
    try:
        theirs = m.wait(other, m.submit(other, fake_cfg(tiny_csv, 6)).id, timeout_s=10)
        r1, r2 = (m.wait(me, m.submit(me, fake_cfg(tiny_csv, 2)).id, timeout_s=10) for _ in range(2))
        r3 = m.submit(me, fake_cfg(tiny_csv, 4, hold=True))
        r4 = m.submit(me, fake_cfg(tiny_csv, 3, hold=True))  # 2 + 2 + data: room, nothing deleted
        for r in (r3, r4):
            wait_for(lambda r=r: (m.dir(r.id) / "model.bin").exists(), 10, "the held runs to write their model")
        assert {j.id for j in m.list(me)} == {r1.id, r2.id, r3.id, r4.id}
        assert 11 * MB < m.disk_usage(me) < 11.1 * MB

        # over 10 MB: the oldest ended run goes, that is enough; running, queued and others' runs stay
        r5 = m.submit(me, fake_cfg(tiny_csv, 1))
        assert not m.dir(r1.id).exists() and m.dir(r2.id).exists()
        assert {j.id: j.state for j in m.list(me)} == {r2.id: "finished", r3.id: "running", r4.id: "running",
                                                        r5.id: "queued"}
        assert m.get(other, theirs.id).state == "finished" and m.dir(theirs.id).exists()
        assert "deleted your 1 oldest ended run(s)" in m.progress(me, r5.id).log[0]

        # the active runs (7 MB) and this upload (4 MB) alone are over 10 MB: refused, nothing deleted
        big = tiny_csv.parent / "big.csv"
        big.write_bytes(b"text,label\n" + b"x,a\n" * (4 * MB // 4))
        with pytest.raises(JobError) as refused:
            m.submit(me, fake_cfg(big))
        msg = str(refused.value)
        assert msg.startswith("disk quota reached: your runs use 9.") and "(7.0 MB of it in runs still queued" in msg
        assert "this run's data needs 4.0 MB more, over the limit of 10 MB per user (PEFT_MAX_USER_DISK_MB)" in msg
        assert "Wait until your queued or running runs have ended" in msg and "delete it" in msg
        assert m.dir(r2.id).exists() and len(m.list(me)) == 4 and len(list(tmp_path.iterdir())) == 5

        # once they have ended, the same upload fits by deleting the oldest ended runs, oldest first
        fake.release.set()
        for r in (r3, r4, r5):
            m.wait(me, r.id, timeout_s=10)
        r6 = m.submit(me, fake_cfg(big))
        gone = {r.id for r in (r2, r3, r4, r5) if not m.dir(r.id).exists()}
        assert r2.id in gone and r5.id not in gone and len(gone) == 2
        assert 8 * MB < m.disk_usage(me) <= 10 * MB  # 4 MB of data copied for r6 included
        assert m.wait(me, r6.id, timeout_s=10).state == "finished"
        assert m.get(other, theirs.id).state == "finished"
    finally:
        fake.release.set()
        m.shutdown()


def test_delete_and_bad_limits(tmp_path, tiny_csv, monkeypatch):
    fake = FakeRunner()
    m = JobManager(tmp_path, max_concurrent=1, runner=fake)
    try:
        assert (m.run_ttl_hours, m.max_user_disk_mb) == (72, 2000)  # the defaults
        token = new_owner_token()
        held = m.submit(token, fake_cfg(tiny_csv, 0, hold=True))
        with pytest.raises(JobError, match="is (queued|running): cancel it first"):
            m.delete(token, held.id)
        with pytest.raises(JobError, match="no run"):
            m.delete(new_owner_token(), held.id)
        fake.release.set()
        m.wait(token, held.id, timeout_s=10)
        m.delete(token, held.id)
        assert m.list(token) == [] and not m.dir(held.id).exists()
    finally:
        fake.release.set()
        m.shutdown()
    monkeypatch.setenv("PEFT_RUN_TTL_HOURS", "0.5")
    monkeypatch.setenv("PEFT_MAX_USER_DISK_MB", "1_000")
    m = JobManager(tmp_path, max_concurrent=1)
    assert (m.run_ttl_hours, m.max_user_disk_mb) == (0.5, 1000)
    m.shutdown()
    for value, why in (("lots", "is not a number"), ("-1", "must be 0 \\(off\\) or a positive number")):
        monkeypatch.setenv("PEFT_MAX_USER_DISK_MB", value)
        with pytest.raises(ConfigError, match=f"PEFT_MAX_USER_DISK_MB='{value}' {why}"):
            JobManager(tmp_path, max_concurrent=1)


def copy_run(src_dir, root, run_id, finished):
    """A copy of a real run folder under ``root`` as run ``run_id`` that ended at ``finished``."""
    dst = shutil.copytree(src_dir, root / run_id)
    record = json.loads((dst / "status.json").read_text())
    (dst / "status.json").write_text(json.dumps(dict(record, id=run_id, finished=finished)))
    return dst


def test_cleanup_on_copies_of_a_real_run(manager, finished, tmp_path):
    token, info = finished
    src = manager.dir(info.id)
    size = manager.disk_usage(token)
    assert size == sum(f.stat().st_size for f in src.rglob("*") if f.is_file()) > 10 * MB  # the saved model
    now = time.time()
    expired = copy_run(src, tmp_path, "1" * 32, now - 73 * HOUR)
    oldest, newer = copy_run(src, tmp_path, "2" * 32, now - 2 * HOUR), copy_run(src, tmp_path, "3" * 32, now - HOUR)
    m = JobManager(tmp_path, max_concurrent=1, max_user_disk_mb=1.5 * size / MB)  # room for one run
    try:
        assert not expired.exists() and not oldest.exists() and newer.exists()
        assert [j.id for j in m.list(token)] == ["3" * 32]
        assert abs(m.disk_usage(token) - size) < 1000  # only status.json (id, finished) differs
        assert m.run(token, "3" * 32).eval_report.accuracy == info.results["accuracy"]  # still rebuildable
    finally:
        m.shutdown()


def dies_at_step(n):
    """A listener that raises in the training thread at the n-th step event (after it is logged)."""
    steps = []

    def callback(event):
        if event.kind == "step":
            steps.append(event.step)
            if len(steps) == n:
                raise RuntimeError(f"worker died at step {event.step}")
    return callback


def test_a_worker_dying_mid_run_fails_that_run_only_and_the_manager_keeps_serving(tmp_path, sms_small):
    from peft_core.pipeline import fine_tune

    calls = []

    def runner(cfg, run_dir, callbacks, control):  # the first run dies at its 3rd step, later ones train
        calls.append(run_dir)
        extra = [dies_at_step(3)] if len(calls) == 1 else []
        return fine_tune(cfg, run_dir, [*callbacks, *extra], control)

    def cfg():
        return RunConfig(train_file=str(sms_small), method="head",
                         train=TrainConfig(max_length=64, epochs=10, early_stopping_patience=0))

    m = JobManager(tmp_path, max_concurrent=1, runner=runner)
    try:
        token = new_owner_token()
        dead = m.wait(token, m.submit(token, cfg()).id, timeout_s=300)
        assert dead.state == "failed" and not dead.has_model
        assert dead.error == ("unexpected error RuntimeError: worker died at step 3 (traceback in error.log of "
                              "the run folder)")
        events = [json.loads(line) for line in (m.dir(dead.id) / "events.jsonl").read_text().splitlines()]
        assert [e["step"] for e in events if e["kind"] == "step"] == [1, 2, 3]
        assert events[-1] == dict(events[-1], kind="message", message=f"failed: {dead.error}")
        assert "RuntimeError: worker died at step 3" in (m.dir(dead.id) / "error.log").read_text()
        p = m.progress(token, dead.id)
        assert p.step == 3 and p.log[-1].startswith("failed: unexpected error RuntimeError")

        second = m.wait(token, m.submit(token, cfg()).id, timeout_s=300)
        assert second.state == "finished" and second.error is None
        assert second.results["accuracy"] > second.results["baseline_accuracy"]
        assert {j.id: j.state for j in m.list(token)} == {dead.id: "failed", second.id: "finished"}
    finally:
        m.shutdown()


def test_a_run_whose_worker_exits_is_failed_not_left_running(tmp_path, tiny_csv):
    def runner(cfg, run_dir, callbacks, control):
        if cfg.model == "exit":
            raise SystemExit(3)
        return FakeRunner()(cfg, run_dir, callbacks, control)

    m = JobManager(tmp_path, max_concurrent=1, runner=runner)
    try:
        token = new_owner_token()
        gone = m.wait(token, m.submit(token, RunConfig(train_file=str(tiny_csv), model="exit")).id, timeout_s=10)
        assert gone.state == "failed" and gone.error.startswith("unexpected error SystemExit: 3")
        assert m.wait(token, m.submit(token, fake_cfg(tiny_csv)).id, timeout_s=10).state == "finished"
    finally:
        m.shutdown()


PRIMED_SCRIPT = """
import sys, threading
from peft_core.jobs import JobManager

JobManager(sys.argv[1], max_concurrent=2).shutdown()  # the app creates its manager before serving
import datasets
errors, done = [], threading.Event()

def fingerprint():  # what preparing data does in one run while another loads its model
    while not done.is_set():
        try:
            datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]})
        except Exception as e:
            errors.append(repr(e))
            return

t = threading.Thread(target=fingerprint)
t.start()
from transformers import AutoModel, AutoTokenizer  # noqa
from accelerate.state import GradientState
done.set()
t.join()
assert not errors, errors
assert {"sync_gradients", "plugin_kwargs"} <= set(GradientState._shared_state), GradientState._shared_state
print("primed")
"""


def test_a_manager_primes_the_training_stack_before_runs_start_in_parallel(tmp_path):
    """In a fresh process (the suite has long imported everything): without priming, a Dataset fingerprinted
    while transformers is first imported fails ("no attribute 'PreTrainedTokenizerBase'"), and two first
    Accelerators race on accelerate's shared GradientState; both broke 2 parallel runs in test_load.py."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", PRIMED_SCRIPT, str(tmp_path)], check=False, cwd=root,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0 and out.stdout.strip().endswith("primed"), out.stderr[-2000:]


def test_queue_info_says_what_a_queued_run_waits_for_and_names_only_your_runs(tmp_path, tiny_csv):
    release = threading.Event()

    def runner(cfg, run_dir, callbacks, control):  # half-way through 100 steps at 4 s a step: 200 s left
        log = JsonlLogger(Path(run_dir) / "events.jsonl")
        log(ProgressEvent("start", 0, 100))
        log(ProgressEvent("step", 50, 100, 1.0, 0.5, elapsed_s=200.0))
        assert release.wait(60), "the test never released the run"
        return FakeRunner()(cfg, run_dir, callbacks, control)

    m = JobManager(tmp_path, max_concurrent=1, runner=runner)
    try:
        me, other = new_owner_token(), new_owner_token()
        r1 = m.submit(me, fake_cfg(tiny_csv)).id
        wait_for(lambda: m.progress(me, r1).step == 50, 30, "the first run's step event")
        r2, r3, r4 = (m.submit(t, fake_cfg(tiny_csv)).id for t in (me, other, me))
        q = m.queue_info(me, r2)
        assert (q.position, q.ahead, q.ahead_mine, q.running, q.slots) == (1, 0, [], 1, 1)
        assert list(q.running_mine) == [r1] and q.running_mine[r1] == pytest.approx(200, abs=5)
        assert q.start_eta_s == pytest.approx(200, abs=5)
        assert q.describe().startswith(f"Waits for your run {r1[:8]} (about 3 min ")
        assert "It should start in about 3 min " in q.describe()
        q = m.queue_info(me, r4)
        assert (q.position, q.ahead, q.ahead_mine) == (3, 2, [r2]) and q.start_eta_s is None
        assert f"your queued run {r2[:8]} and 1 queued run of other users ahead of it" in q.describe()
        q = m.queue_info(other, r3)  # someone else's runs are counted, never named
        assert (q.position, q.ahead, q.ahead_mine, q.running_mine) == (2, 1, [], {})
        assert q.describe() == ("Waits for 1 run of other users training now and 1 queued run of other users "
                                "ahead of it. No start estimate yet.")
        assert r1 not in json.dumps(q.to_dict()) and r1[:8] not in q.describe()
        with pytest.raises(JobError, match="no run"):
            m.queue_info(other, r2)
        release.set()
        for t, r in ((me, r1), (me, r2), (other, r3), (me, r4)):
            assert m.wait(t, r, timeout_s=30).state == "finished" and m.queue_info(t, r) is None
    finally:
        release.set()
        m.shutdown()
