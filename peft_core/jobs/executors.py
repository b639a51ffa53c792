"""Where a run trains: the executor registry.

===========  ===================================================================================================
``local``    the default: each run in its own OS process (``python -m peft_core.jobs.worker``), its own process
             group, thread count and random state; a crash, kill or runaway run costs only itself
``thread``   in the app's own process, on the manager's worker thread (tests that pass a Python callable as the
             runner; nothing isolates runs from each other or from the app)
``ray``      each run is a Ray task on a Ray cluster (``peft_core.jobs.ray_executor``; optional extra)
===========  ===================================================================================================

An executor's ``run(run_id, run_dir, cfg, control)`` trains one run and blocks until it has ended, returning
its :class:`~peft_core.jobs.outcome.Outcome`; the job manager calls it on one of its ``max_concurrent`` training
slots (threads), so the manager's queue decides what runs when, whatever the executor. ``control`` is the run's
stop flag: each executor turns it into a stop request the run sees within a batch, and stops the run by force if it
has not ended ``grace_s`` seconds later (a run stuck in one long step).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..callbacks import Control
from ..errors import ConfigError
from .outcome import STOP_FILE, Outcome, clear_run_files, execute, forced_cancel, log_line
from .settings import DEFAULT_GRACE_S, ROOT, memory_cap_mb, run_nice, threads_per_run

KILL_AFTER_S = 5.0  # after SIGTERM, SIGKILL
MEMORY_SAMPLE_S = 0.2  # how often a run's resident memory is read when PEFT_RUN_MEMORY_MB caps it


_PRIMED = threading.Lock()



def prime_for_threads() -> None:
    """Do, once and in the calling thread, the first-time set-ups of the training stack that are not
    thread-safe, so that runs (and the app's requests) can then start in parallel threads. A manager with the
    default runner calls it before its first run; both failures below were seen with two runs starting at once
    in a fresh process (tests/test_load.py):

    - the first ``import transformers``: meanwhile ``sys.modules`` holds a module that is then replaced by a lazy
      one, and a thread importing it in that window keeps the stale, empty module. datasets does that whenever
      it fingerprints a Dataset, so preparing data failed with "module 'transformers' has no attribute
      'PreTrainedTokenizerBase'";
    - accelerate's process-wide ``GradientState``: the first ``Accelerator`` fills it field by field, and one
      created meanwhile read it half-filled ("'GradientState' object has no attribute 'plugin_kwargs'").
    """
    with _PRIMED:
        import transformers

        from ..training import make_accelerator

        transformers.PreTrainedTokenizerBase  # noqa: B018 -- resolve the lazy attribute datasets looks up
        make_accelerator()  # fills accelerate's shared state with what every run's Accelerator uses


class ThreadExecutor:
    """Runs in the calling process (see the module doc). ``runner``: ``fine_tune``-compatible callable."""

    name = "thread"

    def __init__(self, max_concurrent: int = 1, runner: Callable | None = None) -> None:
        self.runner = runner

    def run(self, run_id: str, run_dir: Path, cfg, control: Control) -> Outcome:
        if self.runner is None:
            from ..pipeline import fine_tune as runner
        else:
            runner = self.runner
        return execute(runner, cfg, Path(run_dir), control)

    def shutdown(self) -> None:
        pass


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.0f} MB"


def describe_exit(exit_code: int, peak_rss_bytes: int, cap_mb: float) -> str:
    """Why a run process that wrote no outcome ended, for people; ``exit_code`` as ``Popen.returncode`` (negative:
    killed by that signal), ``peak_rss_bytes`` its peak resident memory, ``cap_mb`` the memory cap (0: none)."""
    peak = f"peak RSS {_gb(peak_rss_bytes)}" + (f", cap {_gb(cap_mb * 1e6)} (PEFT_RUN_MEMORY_MB)" if cap_mb else "")
    if exit_code < 0:
        sig = -exit_code
        what = f"the run's process was killed by signal {sig} ({_signal_name(sig)})"
        if sig == signal.SIGKILL:
            near_cap = cap_mb and peak_rss_bytes >= 0.9 * cap_mb * 1e6
            return what + (", likely out of memory: " if near_cap else
                           " (the system's out-of-memory killer, or someone stopped it): ") + peak
        if sig == signal.SIGSEGV:
            return what + f": it crashed in native code ({peak})"
        return what + f" ({peak})"
    return (f"the run's process exited with code {exit_code} before it reported how the run ended ({peak}); "
            "its output is in worker.log of the run folder")


@dataclass
class Watched:
    """How a run's process ended: ``exit_code`` as ``Popen.returncode`` (negative: killed by that signal),
    ``peak_rss`` its peak resident memory in bytes (the kernel's ``ru_maxrss``), ``forced``: stopped with SIGTERM /
    SIGKILL after a stop request went unanswered, ``over_cap``: bytes held when it was killed for passing the
    memory cap (None: it was not)."""

    exit_code: int
    peak_rss: int
    forced: bool
    over_cap: int | None


class LocalExecutor:
    """Each run in its own process on this machine (see the module doc and ``peft_core.jobs.worker``).

    Args:
        max_concurrent: runs at once (sets the default ``PEFT_THREADS_PER_RUN``: cores // max_concurrent).
        runner: None (``fine_tune``) or a reference the worker imports, "module:function" or "file.py:function".
        grace_s: seconds a cancelled run has to stop by itself before its process group gets SIGTERM, then
            SIGKILL ``KILL_AFTER_S`` later.

    The memory cap (``PEFT_RUN_MEMORY_MB``) is the resident memory of the run's whole process group, read from
    ``/proc`` every 0.2 s; past it the group is killed and the run fails with a message naming both numbers. A
    resident-memory watch rather than ``RLIMIT_AS`` / ``RLIMIT_DATA``: those count address space that torch and
    its thread pools reserve without using (measured: ``import torch, transformers, sklearn`` alone reserves 420
    MB of data segment against 385 MB resident, and a 1,500 MB ``RLIMIT_DATA`` failed the import of scikit-learn
    once torch's threads had started), so a cap that a run really fits in would fail it at start. Where there is
    no ``/proc`` (not Linux) the cap is not enforced. cgroup v2 ``memory.max`` would need a delegated cgroup.

    Raises:
        ConfigError: bad ``PEFT_THREADS_PER_RUN`` / ``PEFT_RUN_MEMORY_MB``; a runner that is not a reference.
    """

    name = "local"

    def __init__(self, max_concurrent: int = 1, runner: str | None = None, grace_s: float = DEFAULT_GRACE_S) -> None:
        if runner is not None and not isinstance(runner, str):
            raise ConfigError("the local executor runs a runner in another process: give it as 'module:function'")
        self.runner, self.grace_s = runner, float(grace_s)
        self.threads, self.cap_mb, self.nice = threads_per_run(max_concurrent), memory_cap_mb(), run_nice()

    def _env(self) -> dict:
        env = dict(os.environ, PEFT_THREADS_PER_RUN=str(self.threads), OMP_NUM_THREADS=str(self.threads),
                   PEFT_PARENT_PID=str(os.getpid()), PEFT_RUN_NICE=self.nice)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        return env

    def run(self, run_id: str, run_dir: Path, cfg, control: Control) -> Outcome:
        run_dir = Path(run_dir)
        clear_run_files(run_dir)
        cmd = [sys.executable, "-m", "peft_core.jobs.worker", str(run_dir)]
        cmd += ["--runner", self.runner] if self.runner else []
        with open(run_dir / "worker.log", "ab") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=self._env(), cwd=ROOT)
        w = self._watch(proc, run_dir, control)
        proc.returncode = w.exit_code  # reaped here (os.wait4): Popen must not wait for it again
        _killpg(proc.pid, signal.SIGKILL)  # anything the run started and left behind
        out = Outcome.read(run_dir)
        if out is not None:
            return out
        if w.forced:
            return forced_cancel(run_dir, self.grace_s, "its process was ended")
        if w.over_cap is not None:
            why = (f"the run passed its memory cap: its processes held {_gb(w.over_cap)} of memory (resident), "
                   f"cap {_gb(self.cap_mb * 1e6)} (PEFT_RUN_MEMORY_MB), so they were killed"
                   + (" while loading its data and model, before any batch: raise the cap" if _phase(run_dir) ==
                      "preparing" else ": lower batch_size or max_length, train fewer layers, or raise the cap")
                   + " (a run of the bundled MiniLM on a small file peaks near 0.8 GB)")
        else:
            why = describe_exit(w.exit_code, w.peak_rss, self.cap_mb)
        try:
            tail = (run_dir / "worker.log").read_bytes()[-4000:].decode(errors="replace").strip()
            (run_dir / "error.log").write_text(why + (f"\n\nlast output of the run's process:\n{tail}\n" if tail
                                                      else "\n\n(the run's process printed nothing)\n"))
        except OSError:
            pass
        log_line(run_dir, f"failed: {why}")
        return Outcome("failed", {}, why)

    def _watch(self, proc, run_dir: Path, control: Control) -> Watched:
        """Wait for ``proc``: a stop request becomes the stop file, then SIGTERM / SIGKILL of its process group past
        the grace period; with a memory cap, the group's resident memory is sampled every ``MEMORY_SAMPLE_S`` s and
        the group killed once it is over the cap."""
        asked = termed = over = None
        sampled = 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                return Watched(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024, termed is not None, over)
            now = time.monotonic()
            if self.cap_mb and over is None and now - sampled >= MEMORY_SAMPLE_S:
                sampled, rss = now, group_rss_bytes(proc.pid)
                if rss is not None and rss > self.cap_mb * 1e6:
                    over = rss
                    _killpg(proc.pid, signal.SIGKILL)
            if asked is None and control.should_stop:
                (run_dir / STOP_FILE).touch()
                asked = now
            if asked is not None and termed is None and now - asked > self.grace_s:
                _killpg(proc.pid, signal.SIGTERM)
                termed = now
            if termed is not None and now - termed > KILL_AFTER_S:
                _killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.05)

    def shutdown(self) -> None:
        pass  # the manager's shutdown stops every run through its control; the watchers then end the processes


def _phase(run_dir: Path) -> str:
    """The phase the run's log last reached ("preparing", "encoding", "training", ...; "" without a log)."""
    from ..progress import EventTail, summarize

    return summarize(EventTail(run_dir / "events.jsonl").read()).phase or ""


def group_rss_bytes(pgid: int) -> int | None:
    """Resident memory (bytes) of every process in process group ``pgid``, from ``/proc`` (Linux); None where
    there is no ``/proc``. A process that ends meanwhile counts as 0."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    total = 0
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:  # fields after "(comm)": state ppid pgrp ...
                continue
            total += int(next(l for l in (d / "status").read_text().splitlines()
                              if l.startswith("VmRSS:")).split()[1]) * 1024
        except (OSError, ValueError, IndexError, StopIteration):
            continue
    return total


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _ray(max_concurrent: int = 1, runner=None):
    from .ray_executor import RayExecutor

    return RayExecutor(max_concurrent, runner)


EXECUTORS: dict[str, Callable] = {"local": LocalExecutor, "thread": ThreadExecutor, "ray": _ray}


def make_executor(name, max_concurrent: int, runner=None):
    """The executor ``name``; None: "thread" for a callable ``runner`` (a Python object cannot cross into another
    process), else env ``PEFT_EXECUTOR``, else "local". An executor object (not a str) is used as it is. Raises
    ConfigError for a name not in :data:`EXECUTORS`."""
    if name is not None and not isinstance(name, str):
        return name
    if not name:
        name = "thread" if callable(runner) else (os.environ.get("PEFT_EXECUTOR", "").strip() or "local")
    if name not in EXECUTORS:
        raise ConfigError(f"executor {name!r} is not one of {', '.join(EXECUTORS)} (PEFT_EXECUTOR)")
    return EXECUTORS[name](max_concurrent=max_concurrent, runner=runner)
