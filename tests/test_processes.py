"""Runs in their own processes (``peft_core.jobs.executors.LocalExecutor``, the default): a run killed with
``kill -9`` costs only itself while a neighbour trains on and reproduces its solo metrics; a run stuck in one long
step is cancelled within the grace period; a run past its memory cap fails with both numbers named; a SIGKILLed
app loses nothing (queued runs queued again in order, the training one interrupted and restartable) and leaves no
orphan process."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from peft_core.jobs import JobManager, new_owner_token
from peft_core.jobs.executors import KILL_AFTER_S, LocalExecutor
from peft_core.pipeline import RunConfig
from peft_core.training import TrainConfig

RUNNERS = str(Path(__file__).with_name("process_runners.py"))
COMPARED = ("score", "accuracy", "macro_f1", "best_epoch", "epochs_run", "best_val_score")


def wait_for(cond, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := cond():
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def worker_pid(m, run_id):
    path = m.dir(run_id) / "worker.json"
    return wait_for(lambda: path.is_file() and json.loads(path.read_text() or "{}").get("pid"), 60, "the worker")


def head_cfg(path):
    return RunConfig(train_file=str(path), method="head",
                     train=TrainConfig(max_length=64, epochs=15, early_stopping_patience=0, seed=7))


def test_kill_9_of_a_run_costs_only_that_run_and_neighbours_reproduce_their_solo_metrics(tmp_path, sms_small):
    """max_concurrent 2 (one torch thread each): a head run alone, then a slow last_n run beside two copies of the
    head run; the last_n run's process is killed with SIGKILL mid-step. It ends failed, naming the signal, with its
    log kept; the queued copy starts in its place; both copies reproduce the solo run's metrics exactly."""
    m = JobManager(tmp_path, max_concurrent=2)
    try:
        assert m.executor.name == "local" and m.executor.threads == max(1, len(os.sched_getaffinity(0)) // 2)
        me, other = new_owner_token(), new_owner_token()
        solo = m.wait(me, m.submit(me, head_cfg(sms_small)).id, timeout_s=300)
        assert solo.state == "finished" and solo.results["accuracy"] > solo.results["baseline_accuracy"]
        victim = m.submit(other, RunConfig(train_file=str(sms_small), method="last_n",
                                           train=TrainConfig(max_length=64, epochs=30, early_stopping_patience=0)))
        twin1, twin2 = m.submit(me, head_cfg(sms_small)), m.submit(me, head_cfg(sms_small))
        wait_for(lambda: m.progress(other, victim.id).step >= 2, 240, "the last_n run's second step")
        assert m.get(me, twin2.id).state == "queued"
        pid = worker_pid(m, victim.id)
        os.kill(pid, signal.SIGKILL)
        dead = m.wait(other, victim.id, timeout_s=60)
        assert dead.state == "failed" and not dead.has_model
        assert dead.error.startswith("the run's process was killed by signal 9 (SIGKILL)") and "peak RSS" in dead.error
        p = m.progress(other, victim.id)
        assert p.step >= 2 and p.log[-1] == f"failed: {dead.error}"  # its events kept, the cause last
        assert not alive(pid) and (m.dir(victim.id) / "error.log").read_text().startswith(dead.error)
        assert m.list(me)[0].id == twin2.id  # the manager kept serving
        for twin in (twin1, twin2):
            done = m.wait(me, twin.id, timeout_s=300)
            assert done.state == "finished"
            assert {k: done.results[k] for k in COMPARED} == {k: solo.results[k] for k in COMPARED}
    finally:
        m.shutdown()


def test_cancel_of_a_run_stuck_in_one_long_step_ends_within_the_grace_period(tmp_path, sms_small):
    grace = 2.0
    m = JobManager(tmp_path, max_concurrent=1,
                   executor=LocalExecutor(1, runner=f"{RUNNERS}:stuck", grace_s=grace))
    try:
        token = new_owner_token()
        info = m.submit(token, head_cfg(sms_small))
        wait_for(lambda: m.progress(token, info.id).step == 1, 60, "the stuck step")
        pid = worker_pid(m, info.id)
        asked = time.monotonic()
        assert m.cancel(token, info.id).state == "cancelling"
        done = m.wait(token, info.id, timeout_s=60)
        took = time.monotonic() - asked
        assert done.state == "cancelled" and not done.has_model and grace <= took < grace + KILL_AFTER_S + 5
        assert done.error.startswith(f"cancelled: the run did not stop within {grace:g} s of the request")
        assert (m.dir(info.id) / "stop").is_file() and not alive(pid)
        nxt = m.submit(token, head_cfg(sms_small))  # the slot is free again
        assert m.cancel(token, nxt.id).state in ("cancelled", "cancelling")
    finally:
        m.shutdown()


def test_a_run_past_its_memory_cap_fails_naming_it_and_the_next_run_starts(tmp_path, sms_small, monkeypatch):
    """A real last_n run with batch 256 x 512 tokens needs gigabytes for attention; with a 1,000 MB cap it is
    killed, and the queued run after it trains normally."""
    monkeypatch.setenv("PEFT_RUN_MEMORY_MB", "1000")
    m = JobManager(tmp_path, max_concurrent=1)
    try:
        token = new_owner_token()
        big = m.submit(token, RunConfig(train_file=str(sms_small), method="last_n", method_config={"num_layers": 6},
                                        train=TrainConfig(max_length=512, batch_size=256, epochs=1)))
        small = m.submit(token, head_cfg(sms_small))
        dead = m.wait(token, big.id, timeout_s=300)
        assert dead.state == "failed" and dead.error.startswith("the run passed its memory cap: its processes held")
        held = float(dead.error.split("held ")[1].split(" GB")[0])
        assert held >= 1.0 and "cap 1.00 GB (PEFT_RUN_MEMORY_MB)" in dead.error
        assert m.wait(token, small.id, timeout_s=300).state == "finished"
    finally:
        m.shutdown()


@pytest.mark.parametrize("runner, expected", [
    ("segfault", "the run's process was killed by signal 11 (SIGSEGV): it crashed in native code (peak RSS "),
    ("exit_now", "the run's process exited with code 3 before it reported how the run ended (peak RSS "),
    ("oom", "ran out of memory (MemoryError): lower batch_size or max_length, or train fewer layers"),
])
def test_a_run_process_that_crashes_exits_or_runs_out_of_memory_fails_naming_how(tmp_path, sms_small, runner,
                                                                                 expected):
    m = JobManager(tmp_path, max_concurrent=1, executor=LocalExecutor(1, runner=f"{RUNNERS}:{runner}"))
    try:
        token = new_owner_token()
        dead = m.wait(token, m.submit(token, head_cfg(sms_small)).id, timeout_s=120)
        assert dead.state == "failed" and dead.error.startswith(expected) and not dead.has_model
        assert m.progress(token, dead.id).log[-1] == f"failed: {dead.error}"
        assert (m.dir(dead.id) / "error.log").is_file()
    finally:
        m.shutdown()


@pytest.mark.parametrize("name, value, message", [
    ("PEFT_EXECUTOR", "nonsense", "executor 'nonsense' is not one of local, thread, ray (PEFT_EXECUTOR)"),
    ("PEFT_MAX_CONCURRENT_RUNS", "abc", "PEFT_MAX_CONCURRENT_RUNS='abc' must be a whole number of runs"),
    ("PEFT_THREADS_PER_RUN", "abc", "PEFT_THREADS_PER_RUN='abc' must be a whole number of threads, at least 1"),
    ("PEFT_RUN_MEMORY_MB", "-5", "PEFT_RUN_MEMORY_MB='-5' must be a number of MB (0: no cap)"),
    ("PEFT_RUN_NICE", "-5", "PEFT_RUN_NICE='-5' must be a whole number from 0 to 19"),
])
def test_bad_executor_settings_are_refused_by_name(tmp_path, monkeypatch, name, value, message):
    from peft_core.errors import ConfigError

    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        JobManager(tmp_path)


def test_the_app_refuses_to_start_with_a_bad_setting_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "app.py"], cwd=ROOT, capture_output=True, text=True, timeout=180,
                         env={**os.environ, "PEFT_EXECUTOR": "nonsense", "PEFT_RUNS_DIR": str(tmp_path / "runs")})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == ("error: executor 'nonsense' is not one of local, thread, ray "
                                                   "(PEFT_EXECUTOR)")


APP_SCRIPT = """
import json, sys, time
from peft_core.jobs import JobManager, new_owner_token
from peft_core.pipeline import RunConfig

root, data, runner = sys.argv[1:4]
m = JobManager(root, max_concurrent=1, runner=runner)
token = new_owner_token()
ids = [m.submit(token, RunConfig(train_file=data)).id for _ in range(3)]
while m.progress(token, ids[0]).step < 3:
    time.sleep(0.05)
print(json.dumps({"token": token, "ids": ids}), flush=True)
time.sleep(600)
"""


def test_a_sigkilled_app_loses_nothing_and_leaves_no_orphan(tmp_path, sms_small):
    """The app (here a manager in its own process) is SIGKILLed with one run training and two queued. Its run's
    process ends by itself (it watches its parent); a new manager marks the run interrupted and queues the two
    again in their order; a restart trains the interrupted one from its saved config."""
    runner = f"{RUNNERS}:steps"
    app = subprocess.Popen([sys.executable, "-c", APP_SCRIPT, str(tmp_path), str(sms_small), runner], cwd=ROOT,
                           stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        started = json.loads(app.stdout.readline())
    finally:
        app.kill()
        app.wait()
    token, (first, second, third) = started["token"], started["ids"]
    pid = json.loads((tmp_path / first / "worker.json").read_text())["pid"]
    wait_for(lambda: not alive(pid), 10, "the orphaned run process to end")
    m = JobManager(tmp_path, max_concurrent=1, executor=LocalExecutor(1, runner=runner))
    try:
        interrupted = m.get(token, first)
        assert interrupted.state == "interrupted" and "restart it" in interrupted.error
        assert m.queue_position(third) in (1, 2) and m.get(token, third).state == "queued"
        assert m.progress(token, first).log[-1] == interrupted.error
        assert m.wait(token, second, timeout_s=120).state == "finished"
        assert m.wait(token, third, timeout_s=120).state == "finished"
        assert m.get(token, second).finished <= m.get(token, third).started  # in their order, one at a time
        with pytest.raises(Exception, match="only an interrupted run can be restarted"):
            m.restart(token, third)
        again = m.restart(token, first)
        assert again.state in ("queued", "running") and again.error is None
        assert (m.dir(first) / "events.interrupted.jsonl").is_file()
        assert m.wait(token, first, timeout_s=120).state == "finished"
        assert m.progress(token, first).step == 600  # a fresh log: this training's steps only
    finally:
        m.shutdown()
