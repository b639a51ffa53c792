"""The job manager: submit, follow, cancel, restart, list and export runs, each in its own folder, trained by an
executor (``peft_core.jobs.executors``: by default each run in its own process).

See the package doc (``peft_core.jobs``) for the run folder, owners, the queue and the clean-up limits.
"""
from __future__ import annotations

import json
import logging
import math
import os
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
import queue
from pathlib import Path

from ..callbacks import Control, JsonlLogger, ProgressEvent
from ..errors import ConfigError, JobError
from ..progress import EventTail, Progress, summarize
from ..queueing import QueueInfo
from .cleanup import DEFAULT_MAX_USER_DISK_MB, DEFAULT_RUN_TTL_HOURS, MB, CleanupMixin, _env_limit
from .executors import make_executor, prime_for_threads
from .outcome import Outcome, failure, log_line
from .records import ACTIVE, TERMINAL, JobInfo, _params, owner_hash
from .trained import TrainedRunsMixin

log = logging.getLogger("peft_core.jobs")


INTERRUPTED = ("interrupted: the app stopped while this run was training; restart it to train it again from the "
               "start (its settings and data are kept)")


class JobManager(CleanupMixin, TrainedRunsMixin):
    """Submit, follow, cancel, list and export runs under ``root``.

    Args:
        root: folder holding one sub-folder per run (created if missing).
        max_concurrent: runs training at once (default: env ``PEFT_MAX_CONCURRENT_RUNS`` or 1).
        runner: what trains a run, ``fine_tune`` when None; tests may swap it: a callable (cfg, run_dir, callbacks,
            control) -> Run (then the default executor is "thread") or a "module:function" reference.
        executor: key of ``executors.EXECUTORS`` ("local", "thread", "ray") or an executor object; None: see
            ``make_executor`` (env ``PEFT_EXECUTOR``, default "local": one process per run).
        keep_in_memory: trained runs kept loaded for predict / export (older ones are reloaded from disk).
        run_ttl_hours: hours an ended run is kept after it ended (default: env ``PEFT_RUN_TTL_HOURS`` or 72;
            0 keeps runs forever).
        max_user_disk_mb: MB (10**6 bytes) of run folders per owner (default: env ``PEFT_MAX_USER_DISK_MB`` or
            2000; 0 means no limit).

    Raises:
        JobError: max_concurrent < 1. ConfigError: a cleanup limit (argument or environment) is not >= 0, or
        an executor setting is bad (``PEFT_EXECUTOR``, ``PEFT_THREADS_PER_RUN``, ``PEFT_RUN_MEMORY_MB``).
    """

    def __init__(self, root: str | Path, max_concurrent: int | None = None, runner: Callable | str | None = None,
                 keep_in_memory: int = 2, run_ttl_hours: float | None = None,
                 max_user_disk_mb: float | None = None, executor: str | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        raw = max_concurrent or os.environ.get("PEFT_MAX_CONCURRENT_RUNS", "1")
        try:
            self.max_concurrent = int(str(raw).strip())
        except ValueError:
            raise ConfigError(f"PEFT_MAX_CONCURRENT_RUNS={raw!r} must be a whole number of runs, at least 1"
                              ) from None
        if self.max_concurrent < 1:
            raise JobError(f"PEFT_MAX_CONCURRENT_RUNS must be at least 1, got {self.max_concurrent}")
        self._lock = threading.RLock()
        self._jobs: dict[str, JobInfo] = {}
        self._queue: list[str] = []
        self._controls: dict[str, Control] = {}
        self._tails: dict[str, EventTail] = {}
        self._loaded: OrderedDict[str, object] = OrderedDict()
        self._keep = keep_in_memory
        self.run_ttl_hours = float(_env_limit("PEFT_RUN_TTL_HOURS", DEFAULT_RUN_TTL_HOURS)
                                   if run_ttl_hours is None else run_ttl_hours)
        self.max_user_disk_mb = float(_env_limit("PEFT_MAX_USER_DISK_MB", DEFAULT_MAX_USER_DISK_MB)
                                      if max_user_disk_mb is None else max_user_disk_mb)
        for name in ("run_ttl_hours", "max_user_disk_mb"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 (off) or a positive number, got {getattr(self, name)!r}")
        self._busy: dict[str, int] = {}  # run id -> exports in progress (never deleted meanwhile)
        self._submit_lock = threading.Lock()  # quota check + folder creation, one submit at a time
        self.executor = make_executor(executor, self.max_concurrent, runner)
        if runner is None:  # this process still prepares data, predicts and exports on the app's threads
            prime_for_threads()
        # daemon threads, one per slot: an app that exits leaves its runs to end with it (a run process ends when
        # its parent goes) and to be marked interrupted at the next start, instead of waiting for them to finish
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._slots = [threading.Thread(target=self._slot, name=f"peft-run-{i}", daemon=True)
                       for i in range(self.max_concurrent)]
        for t in self._slots:
            t.start()
        queued = self._recover()
        self.cleanup()
        for info in queued:  # queued when the last process stopped: queued again, in their order
            self._enqueue(info)

    # ---- records -------------------------------------------------------------------------------------
    def _recover(self) -> list[JobInfo]:
        """Read the runs a previous process left: training ones become "interrupted" (restartable), queued ones
        are returned, oldest first, to be queued again."""
        queued = []
        for path in sorted(self.root.glob("*/status.json")):
            try:
                info = JobInfo(**json.loads(path.read_text()))
            except (ValueError, TypeError):
                continue  # not a run folder of ours
            if info.id != path.parent.name:
                continue  # a record copied or edited by hand: never act on a folder it does not live in
            if info.state == "queued":
                queued.append(info)
            elif info.state in ACTIVE:
                info.state, info.finished = "interrupted", time.time()
                info.error = INTERRUPTED
                log_line(path.parent, INTERRUPTED)
                self._write(info)
            self._jobs[info.id] = info
        return sorted(queued, key=lambda j: j.created)

    def _enqueue(self, info: JobInfo) -> None:
        """Queue the run of ``info`` (its folder holds config.json and the data copies) on the executor."""
        from ..pipeline import RunConfig

        with self._lock:
            self._controls[info.id] = Control()
            self._queue.append(info.id)
            self._write(info)
        try:
            cfg = RunConfig(**json.loads((self.dir(info.id) / "config.json").read_text())["run"])
        except Exception as e:  # noqa: BLE001 -- a folder edited or damaged by hand: that run fails, with why
            self._end(info.id, failure(self.dir(info.id), e))
            return
        self._work.put((info.id, cfg))

    def _slot(self) -> None:
        """A training slot: takes queued runs in order and trains each through the executor; None ends it."""
        while (item := self._work.get()) is not None:
            try:
                self._execute(*item)
            except Exception:  # noqa: BLE001 -- a bug here must not cost the slot: later runs still train
                log.exception("recording run %s failed", item[0])

    def _write(self, info: JobInfo) -> None:
        path = self.dir(info.id) / "status.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info.to_dict(), indent=2))
        tmp.replace(path)  # atomic: readers never see half a file

    def dir(self, run_id: str) -> Path:
        return self.root / run_id

    def get(self, token: str, run_id: str) -> JobInfo:
        """The run's record. Raises JobError when it does not exist or belongs to another owner."""
        owner = owner_hash(token)
        with self._lock:
            info = self._jobs.get(run_id or "")
            if info is None or info.owner != owner:
                raise JobError(f"no run {run_id!r} for you (runs are visible only to the browser or API token "
                               "that started them)")
            return JobInfo(**info.to_dict())

    def list(self, token: str) -> list[JobInfo]:
        """This owner's runs, newest first."""
        owner = owner_hash(token)
        with self._lock:
            mine = [JobInfo(**j.to_dict()) for j in self._jobs.values() if j.owner == owner]
        return sorted(mine, key=lambda j: j.created, reverse=True)

    def queue_position(self, run_id: str) -> int | None:
        """1-based place in the waiting queue (all owners), None when not waiting."""
        with self._lock:
            return self._queue.index(run_id) + 1 if run_id in self._queue else None

    def queue_info(self, token: str, run_id: str) -> QueueInfo | None:
        """What a queued run of ``token``'s waits for (see :class:`~peft_core.queueing.QueueInfo`): the runs
        ahead of it and the runs training now, naming only ``token``'s own, with the running ones' time left.
        None when the run is not waiting. Raises JobError when it is not this owner's run."""
        owner = self.get(token, run_id).owner
        with self._lock:
            if run_id not in self._queue:
                return None
            ahead = self._queue[:self._queue.index(run_id)]
            running = [j for j in self._jobs.values() if j.state in ("running", "cancelling")]
            ahead_mine = [i for i in ahead if self._jobs[i].owner == owner]
        left = {j.id: self._eta(j.id) for j in running}
        return QueueInfo(len(ahead) + 1, len(ahead), ahead_mine, len(running),
                         {j.id: left[j.id] for j in running if j.owner == owner}, self.max_concurrent,
                         sorted(left.values(), key=lambda v: math.inf if v is None else v))

    def _eta(self, run_id: str) -> float | None:
        """Seconds left for a running run (``Progress.eta_s``, as of its last event), None without a basis."""
        with self._lock:
            tail = self._tails.setdefault(run_id, EventTail(self.dir(run_id) / "events.jsonl"))
            p = summarize(tail.read())
        if p.eta_s is None:
            return None
        return max(0.0, p.eta_s - max(0.0, time.time() - p.updated)) if p.updated else p.eta_s

    def progress(self, token: str, run_id: str) -> Progress:
        """Progress of the run from its event log (read incrementally)."""
        self.get(token, run_id)
        with self._lock:
            tail = self._tails.setdefault(run_id, EventTail(self.dir(run_id) / "events.jsonl"))
            return summarize(tail.read())

    # ---- lifecycle -----------------------------------------------------------------------------------
    def submit(self, token: str, cfg, name: str = "") -> JobInfo:
        """Queue a run of ``cfg`` (a RunConfig) for ``token``; the data files are copied into the run folder.
        ``name``: an optional name or note shown with the run (stripped, at most 80 characters).

        First deletes expired runs (all owners) and, when this owner's run folders plus the data to copy exceed
        ``max_user_disk_mb``, this owner's oldest ended runs until they fit (noted in the new run's log).

        Raises:
            JobError: bad token, or the owner's queued / running runs alone leave no room under the disk quota.
            DataError: an input file is missing.
        """
        owner = owner_hash(token)
        with self._submit_lock:
            return self._submit(token, owner, cfg, " ".join(str(name or "").split())[:80])

    def _submit(self, token: str, owner: str, cfg, name: str = "") -> JobInfo:
        from ..errors import DataError
        from ..pipeline import versions

        srcs = [Path(p) for p in (cfg.train_file, cfg.test_file) if p]
        dataset = Path(cfg.train_file).name if cfg.train_file else ""
        incoming = sum(p.stat().st_size for p in srcs if p.is_file())
        self._expire(time.time())
        deleted, used, active = self._fit_quota(owner, incoming)
        limit = self.max_user_disk_mb * MB
        if limit and active + incoming > limit:
            raise JobError(
                f"disk quota reached: your runs use {used / MB:,.1f} MB ({active / MB:,.1f} MB of it in runs still "
                f"queued or training) and this run's data needs {incoming / MB:,.1f} MB more, over the limit of "
                f"{self.max_user_disk_mb:,.0f} MB per user (PEFT_MAX_USER_DISK_MB). Wait until your queued or "
                "running runs have ended (your oldest ended runs are then deleted to make room), or cancel one "
                "and delete it, then start again")
        run_id = secrets.token_hex(16)
        run_dir = self.dir(run_id)
        (run_dir / "data").mkdir(parents=True)
        if deleted:
            JsonlLogger(run_dir / "events.jsonl")(ProgressEvent("message", message=(
                f"deleted your {len(deleted)} oldest ended run(s) to stay under the disk limit of "
                f"{self.max_user_disk_mb:,.0f} MB per user (PEFT_MAX_USER_DISK_MB)")))
        for attr in ("train_file", "test_file"):
            src = getattr(cfg, attr)
            if src:
                if not Path(src).is_file():
                    shutil.rmtree(run_dir)
                    raise DataError(f"{attr.replace('_', ' ')} {Path(src).name!r} is not there any more; "
                                    "upload it again")
                dst = run_dir / "data" / (attr.split("_")[0] + "_" + Path(src).name)
                shutil.copyfile(src, dst)
                setattr(cfg, attr, str(dst))
        (run_dir / "config.json").write_text(json.dumps({"run": cfg.to_dict(), "versions": versions()}, indent=2))
        info = JobInfo(run_id, owner, "queued", cfg.model, cfg.method, _params(cfg), dataset=dataset, name=name)
        with self._lock:
            self._jobs[run_id] = info
        self._enqueue(info)
        return self.get(token, run_id)

    def restart(self, token: str, run_id: str) -> JobInfo:
        """Queue an "interrupted" run again (the app stopped while it trained), from its saved config and data
        copy; it trains from the start. Its earlier log is kept as ``events.interrupted.jsonl``.

        Raises:
            JobError: not this owner's run, or it is not interrupted (only those can be restarted).
        """
        self.get(token, run_id)
        with self._lock:
            info = self._jobs[run_id]
            if info.state != "interrupted":
                raise JobError(f"run {run_id[:8]} is {info.state}: only an interrupted run can be restarted "
                               "(start a new run with the same settings instead)")
            run_dir = self.dir(run_id)
            if (run_dir / "events.jsonl").exists():
                (run_dir / "events.jsonl").replace(run_dir / "events.interrupted.jsonl")
            self._tails.pop(run_id, None)
            info.state, info.error, info.results, info.started, info.finished = "queued", None, {}, None, None
        self._enqueue(info)
        return self.get(token, run_id)

    def cancel(self, token: str, run_id: str) -> JobInfo:
        """Cancel a queued run at once, or ask a running one to stop ("cancelling"); it stops within one batch in
        every phase (preparing: between reading the data and loading the model). A run that had finished an
        epoch then keeps its best epoch, is evaluated and saved, and ends "cancelled" with results. One stopped
        before its first epoch ended (or during the held-out evaluation) has no model to offer: it ends
        "cancelled" with no results (``has_model`` False) and ``error`` saying why. Ended runs are left alone."""
        self.get(token, run_id)
        with self._lock:
            info = self._jobs[run_id]
            if info.state == "queued":
                self._queue.remove(run_id)
                info.state, info.finished = "cancelled", time.time()
                self._write(info)
            elif info.state == "running":
                self._controls[run_id].request_stop()
                info.state = "cancelling"
                self._write(info)
        return self.get(token, run_id)

    def _execute(self, run_id: str, cfg) -> None:
        with self._lock:
            info = self._jobs[run_id]
            if info.state != "queued":
                return  # cancelled while waiting
            self._queue.remove(run_id)
            info.state, info.started = "running", time.time()
            self._write(info)
            control = self._controls[run_id]
        try:
            out = self.executor.run(run_id, self.dir(run_id), cfg, control)
        except Exception as e:  # noqa: BLE001 -- the executor itself broke (no process, no cluster): this run fails
            out = failure(self.dir(run_id), e)
        self._end(run_id, out)
        if out.raised is not None:  # SystemExit & co from a runner on this thread: the run failed; the slot goes on
            log.warning("run %s: its runner raised %r", run_id, out.raised)

    def _end(self, run_id: str, out: Outcome) -> None:
        """Record how the run ended (state, results, error; the trained run kept in memory when there is one).
        The state is set even when the folder cannot be written (disk full)."""
        with self._lock:
            if out.run is not None:
                self._remember(run_id, out.run)
            info = self._jobs[run_id]
            info.state, info.results, info.error, info.finished = out.state, out.results, out.error, time.time()
            if run_id in self._queue:
                self._queue.remove(run_id)
            self._controls.pop(run_id, None)
            try:
                self._write(info)
            except OSError:
                log.exception("could not write the status of run %s (%s)", run_id, out.state)

    def wait(self, token: str, run_id: str, timeout_s: float = 600, poll_s: float = 0.1) -> JobInfo:
        """Block until the run has ended (a state of ``TERMINAL``). Raises TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while (info := self.get(token, run_id)).state not in TERMINAL:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {info.state} after {timeout_s} s")
            time.sleep(poll_s)
        return info

    def shutdown(self, cancel: bool = True) -> None:
        """Stop accepting work; with ``cancel`` ask running runs to stop (a run process that has not stopped
        within the executor's grace period is killed). Waits until no run trains: no run process is left.
        Runs still queued stay queued on disk and are queued again by the next manager on this folder."""
        with self._lock:
            if cancel:
                for c in self._controls.values():
                    c.request_stop()
        while True:  # runs not started yet stay queued on disk (the next manager queues them again)
            try:
                self._work.get_nowait()
            except queue.Empty:
                break
        for _ in self._slots:
            self._work.put(None)
        for t in self._slots:
            t.join()
        self.executor.shutdown()
