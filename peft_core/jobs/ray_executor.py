"""The ``ray`` executor: each run is a Ray task on a Ray cluster (``PEFT_EXECUTOR=ray``; optional extra,
``pip install -r requirements-ray.txt``).

The task trains the run with the same code as a local run process (``worker.run_in_this_process``) and writes the
same files in the run folder, so the app reads the run's status, events and outcome from the folder as for
``local``. The run folders must therefore be on storage that every node sees at the same path
(``PEFT_RUNS_DIR`` on NFS or a mounted bucket), and every node needs this project at the same path as the app
(the task's ``PYTHONPATH`` points there) with the same Python packages.

===========================  =============================  ===================================================
``PEFT_RAY_ADDRESS``         (none: a local Ray on this     the cluster's address, e.g. ``10.0.0.5:6379``
                             machine, started by the app)
``PEFT_RAY_NUM_CPUS``        ``PEFT_THREADS_PER_RUN``       CPUs each run asks for (may be fractional; its torch
                                                            threads: the whole part, at least 1)
``PEFT_RAY_NUM_GPUS``        0                              GPUs each run asks for (may be fractional)
===========================  =============================  ===================================================

Cancel writes the run's stop file (the run stops within a batch and keeps its best epoch); a run that has not ended
``grace_s`` seconds later is stopped with ``ray.cancel(ref, force=True)``, which kills its worker process. A task
is never retried (``max_retries=0``): a worker that dies (killed, out of memory, its node lost) fails its run with
the cause named.

What the ``local`` executor does for a run's process and Ray does not: ``PEFT_RUN_MEMORY_MB`` (Ray's own memory
monitor kills tasks when a node runs low, ``RAY_memory_usage_threshold``; the run then fails naming Ray's
``OutOfMemoryError``) and ``PEFT_RUN_NICE``. Ray ends a job's tasks when the app (its driver) disconnects. Without
``PEFT_RAY_ADDRESS`` the app starts a Ray of its own; if the app is killed with SIGKILL, that Ray's agent processes
outlive it (``ray stop --force`` ends them): start Ray separately (``ray start --head``) for anything long-lived.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..callbacks import Control
from ..errors import ConfigError
from .settings import DEFAULT_GRACE_S, ROOT, threads_per_run
from .outcome import STOP_FILE, Outcome, clear_run_files, forced_cancel, log_line


def _train_task(run_dir: str, runner: str | None, threads: int) -> dict:
    """The Ray task: train the run of ``run_dir`` in this Ray worker -> its outcome as a dict."""
    os.environ["PEFT_THREADS_PER_RUN"] = str(threads)
    from peft_core.jobs.worker import run_in_this_process

    return run_in_this_process(run_dir, runner).to_dict()


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else float(default)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ConfigError(f"{name}={raw!r} must be a number >= 0")
    return value


class RayExecutor:
    """Runs as Ray tasks (see the module doc).

    Args:
        max_concurrent: runs in flight at once (the manager's queue); Ray places each by its CPU / GPU request.
        runner: None (``fine_tune``) or a "module:function" / "file.py:function" reference (tests).
        grace_s: seconds a cancelled run has to stop by itself before ``ray.cancel(force=True)``.

    Raises:
        ConfigError: ray is not installed, the cluster cannot be reached, or a ``PEFT_RAY_*`` value is bad.
    """

    name = "ray"

    def __init__(self, max_concurrent: int = 1, runner: str | None = None, grace_s: float = DEFAULT_GRACE_S) -> None:
        try:
            import ray
        except ImportError as e:
            raise ConfigError("PEFT_EXECUTOR=ray needs Ray, an optional extra: pip install -r requirements-ray.txt"
                              ) from e
        if runner is not None and not isinstance(runner, str):
            raise ConfigError("the ray executor runs a runner on a Ray worker: give it as 'module:function'")
        self.ray, self.runner, self.grace_s = ray, runner, float(grace_s)
        self.num_cpus = _number("PEFT_RAY_NUM_CPUS", threads_per_run(max_concurrent))
        self.threads = max(1, int(self.num_cpus))  # torch threads: whole ones, at least 1
        self.num_gpus = _number("PEFT_RAY_NUM_GPUS", 0)
        address = os.environ.get("PEFT_RAY_ADDRESS", "").strip() or None
        env = {"PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        env |= {k: os.environ[k] for k in ("HF_HUB_OFFLINE",) if k in os.environ}
        self._owned = not ray.is_initialized()
        try:
            if self._owned:
                ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False,
                         include_dashboard=False, configure_logging=False)
        except Exception as e:  # noqa: BLE001 -- ConnectionError and friends: say where and what to check
            raise ConfigError(f"cannot reach the Ray cluster at {address or 'a new local Ray'} (PEFT_RAY_ADDRESS): "
                              f"{e}") from e
        self._task = ray.remote(_train_task).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                                                      max_retries=0)

    def run(self, run_id: str, run_dir: Path, cfg, control: Control) -> Outcome:
        ray, run_dir = self.ray, Path(run_dir)
        clear_run_files(run_dir)
        ref = self._task.remote(str(run_dir), self.runner, self.threads)
        asked = forced = None
        while not ray.wait([ref], timeout=0.2)[0]:
            now = time.monotonic()
            if asked is None and control.should_stop:
                (run_dir / STOP_FILE).touch()
                asked = now
            if asked is not None and forced is None and now - asked > self.grace_s:
                ray.cancel(ref, force=True)
                forced = now
        try:
            out = Outcome(**ray.get(ref))
        except Exception as e:  # noqa: BLE001 -- the task died: its worker was killed, its node lost, cancelled
            out = Outcome.read(run_dir)  # written just before a late death: keep what the run said
            if out is None:
                return self._died(run_dir, e, forced is not None)
        return out

    def _died(self, run_dir: Path, exc: Exception, forced: bool) -> Outcome:
        if forced:
            return forced_cancel(run_dir, self.grace_s, "its Ray task was cancelled")
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        why = f"the Ray worker training this run died ({type(exc).__name__}: {first})"
        try:
            (run_dir / "error.log").write_text(f"{why}\n\n{exc}")
        except OSError:
            pass
        log_line(run_dir, f"failed: {why}")
        return Outcome("failed", {}, why)

    def shutdown(self) -> None:
        """Disconnect from (or stop, when this executor started it) the Ray it uses."""
        if self._owned and self.ray.is_initialized():
            self.ray.shutdown()
