"""One run in its own OS process: ``python -m peft_core.jobs.worker RUN_DIR [--runner REF]``.

The app's local executor starts it (``peft_core.jobs.executors.LocalExecutor``) in a new session, so the run and
anything it starts form one process group that the app can stop as a whole. It reads the run's ``config.json``
(written at submit), trains it, and writes ``outcome.json`` (:class:`~peft_core.jobs.outcome.Outcome`) before it
exits; the app turns that into the run's state. A process that dies before writing it (a signal, ``os._exit``,
the kernel's out-of-memory killer) is recorded as failed by the app, which names the cause.

In the process:

- its own random state and ``torch`` thread count: ``PEFT_THREADS_PER_RUN`` (the app sets it to cores / concurrent
  runs unless the operator set it);
- a lower CPU priority than the app (``PEFT_RUN_NICE``, default 10, added to the app's nice value), so that
  pages and status calls are served first when the cores are busy training;
- (the memory cap, ``PEFT_RUN_MEMORY_MB``, is enforced by the app, which watches the process group's resident
  memory: see ``peft_core.jobs.executors``);
- cancel: the app writes ``RUN_DIR/stop``; the run sees it at its next check (one batch in every phase, as for
  :class:`~peft_core.callbacks.Control`), keeps its best epoch and ends "cancelled";
- a watchdog thread ends the process group when the app's process goes away (its parent changes), so a killed
  app leaves no orphan run behind.

``--runner``: ``module:function`` or ``path/to/file.py:function`` with ``fine_tune``'s signature, for tests
(default ``peft_core.pipeline.fine_tune``).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from .outcome import STOP_FILE, WORKER_FILE, FileControl, Outcome, execute, failure


def resolve_runner(ref: str | None):
    """The runner named by ``ref`` ("module:function" or "file.py:function"); ``fine_tune`` when None.

    Raises:
        ValueError: ``ref`` has no ":function" part. ImportError / AttributeError: it names nothing.
    """
    if not ref:
        from ..pipeline import fine_tune

        return fine_tune
    where, sep, name = ref.rpartition(":")
    if not sep or not where:
        raise ValueError(f"runner {ref!r} must be 'module:function' or 'file.py:function'")
    if where.endswith(".py"):
        spec = importlib.util.spec_from_file_location(Path(where).stem, where)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    return getattr(module, name)


def apply_limits() -> None:
    """Set this process's torch thread count (``PEFT_THREADS_PER_RUN``; a bad value is ignored here: the app
    checks it first)."""
    threads = os.environ.get("PEFT_THREADS_PER_RUN", "").strip()
    if threads.isdigit() and int(threads) > 0:
        import torch

        torch.set_num_threads(int(threads))


def lower_priority(nice: str) -> None:
    """Lower this process's CPU priority: ``nice`` is an increment of the nice value ("10") or "idle" (Linux
    ``SCHED_IDLE``: run only when no other process wants the CPU); "0" or anything else: unchanged."""
    try:
        if nice == "idle" and hasattr(os, "SCHED_IDLE"):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        elif nice.isdigit() and int(nice):
            os.nice(int(nice))
    except OSError:  # not allowed here: keep the app's priority
        pass


def watch_parent(parent: int, every_s: float = 0.5) -> threading.Thread:
    """Start a daemon thread that kills this process group (SIGKILL) once the parent ``parent`` is gone."""
    def watch():
        while True:
            time.sleep(every_s)
            if os.getppid() != parent:
                os.killpg(os.getpgrp(), signal.SIGKILL)

    t = threading.Thread(target=watch, name="peft-parent-watch", daemon=True)
    t.start()
    return t


def run_in_this_process(run_dir: str | Path, runner_ref: str | None = None):
    """Train the run of ``run_dir`` here and write its ``outcome.json``; returns the
    :class:`~peft_core.jobs.outcome.Outcome` (``raised`` set when the runner raised SystemExit and the like).
    Used by this module's ``main`` and by the Ray executor's task."""

    run_dir = Path(run_dir)
    (run_dir / WORKER_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                   "started": time.time()}))
    try:
        apply_limits()
        from ..pipeline import RunConfig

        cfg = RunConfig(**json.loads((run_dir / "config.json").read_text())["run"])
        runner = resolve_runner(runner_ref)
    except Exception as e:  # noqa: BLE001 -- a bad config or runner fails this run, with its message
        out = failure(run_dir, e)
    else:
        out = execute(runner, cfg, run_dir, FileControl(run_dir / STOP_FILE))
    Outcome(out.state, out.results, out.error).write(run_dir)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit status 0 when an outcome was written (whatever it says), 1 after SystemExit & co."""
    parser = argparse.ArgumentParser(prog="python -m peft_core.jobs.worker", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--runner", default=None)
    args = parser.parse_args(argv)
    watch_parent(int(os.environ.get("PEFT_PARENT_PID") or os.getppid()))
    lower_priority(os.environ.get("PEFT_RUN_NICE", "10").strip())
    out = run_in_this_process(args.run_dir, args.runner)
    return 1 if out.raised is not None else 0


if __name__ == "__main__":
    sys.exit(main())
