"""The ``ray`` executor against a real Ray cluster that the test starts on 127.0.0.1 (``ray start --head``, one
node, 2 CPUs): a real run trains as a Ray task and reproduces the local executor's metrics, a cancel stops a run,
and a Ray worker killed mid-run fails only that run, naming why."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, free_port
from test_processes import COMPARED, RUNNERS, alive, head_cfg, wait_for, worker_pid

from peft_core.jobs import JobManager, new_owner_token
from peft_core.jobs.ray_executor import RayExecutor

ray = pytest.importorskip("ray", reason="the ray extra (requirements-ray.txt) is not installed")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node Ray cluster in its own processes; PEFT_RAY_ADDRESS points at it."""
    ray_bin = Path(sys.executable).with_name("ray")
    port = free_port()
    tmp = tmp_path_factory.mktemp("ray")
    # a HOME of its own: Ray keeps state in ~/.ray (an auth token another Ray on this machine left there made the
    # driver's connection fail with "Authentication token is missing or incorrect")
    mp = pytest.MonkeyPatch()
    mp.setenv("HOME", str(tmp))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([str(ray_bin), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    "--object-store-memory=100000000", f"--temp-dir={tmp}", "--disable-usage-stats"],
                   check=True, env=env, capture_output=True, timeout=120)
    mp.setenv("PEFT_RAY_ADDRESS", f"127.0.0.1:{port}")
    yield f"127.0.0.1:{port}"
    if ray.is_initialized():
        ray.shutdown()
    mp.undo()
    subprocess.run([str(ray_bin), "stop", "--force"], env=env, capture_output=True, timeout=120)
    shutil.rmtree(tmp, ignore_errors=True)


def test_a_real_run_trains_as_a_ray_task_and_matches_the_local_executor(cluster, tmp_path, sms_small):
    local = JobManager(tmp_path / "local", max_concurrent=2)
    try:
        token = new_owner_token()
        expected = local.wait(token, local.submit(token, head_cfg(sms_small)).id, timeout_s=300)
    finally:
        local.shutdown()
    m = JobManager(tmp_path / "ray", max_concurrent=2, executor="ray")
    try:
        assert m.executor.name == "ray" and m.executor.threads == local.executor.threads
        token = new_owner_token()
        done = m.wait(token, m.submit(token, head_cfg(sms_small)).id, timeout_s=300)
        assert done.state == "finished"
        assert {k: done.results[k] for k in COMPARED} == {k: expected.results[k] for k in COMPARED}
        worker = json.loads((m.dir(done.id) / "worker.json").read_text())
        assert worker["pid"] != os.getpid()  # trained by a Ray worker, not in this process
        assert m.run(token, done.id).eval_report.accuracy == done.results["accuracy"]
    finally:
        m.shutdown()


def test_ray_cancel_and_a_killed_ray_worker(cluster, tmp_path, sms_small):
    m = JobManager(tmp_path, max_concurrent=2, executor=RayExecutor(2, runner=f"{RUNNERS}:steps", grace_s=5))
    try:
        token = new_owner_token()
        stopped, killed = m.submit(token, head_cfg(sms_small)), m.submit(token, head_cfg(sms_small))
        for run in (stopped, killed):
            wait_for(lambda r=run: m.progress(token, r.id).step >= 3, 120, "the run's third step")
        assert m.cancel(token, stopped.id).state == "cancelling"
        pid = worker_pid(m, killed.id)
        os.kill(pid, signal.SIGKILL)
        ended = m.wait(token, stopped.id, timeout_s=60)
        assert ended.state == "cancelled" and ended.has_model  # it saw the stop file and kept its "best epoch"
        dead = m.wait(token, killed.id, timeout_s=60)
        assert dead.state == "failed" and dead.error.startswith("the Ray worker training this run died")
        assert m.progress(token, killed.id).log[-1] == f"failed: {dead.error}" and not alive(pid)
        again = m.wait(token, m.submit(token, head_cfg(sms_small)).id, timeout_s=120)
        assert again.state == "finished"  # the cluster and the manager carry on
    finally:
        m.shutdown()


def test_a_run_stuck_in_a_ray_task_is_cancelled_by_force(cluster, tmp_path, sms_small):
    m = JobManager(tmp_path, max_concurrent=1, executor=RayExecutor(1, runner=f"{RUNNERS}:stuck", grace_s=2))
    try:
        token = new_owner_token()
        info = m.submit(token, head_cfg(sms_small))
        wait_for(lambda: m.progress(token, info.id).step == 1, 120, "the stuck step")
        asked = time.monotonic()
        m.cancel(token, info.id)
        done = m.wait(token, info.id, timeout_s=60)
        assert done.state == "cancelled" and time.monotonic() - asked < 20
        assert "its Ray task was cancelled" in done.error
    finally:
        m.shutdown()
