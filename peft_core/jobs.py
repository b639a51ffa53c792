"""Runs as background jobs: each run has its own id and folder, runs on a worker thread, and outlives the page.

A run folder (``<root>/<run id>/``) holds::

    status.json    JobInfo: state (queued / running / cancelling / finished / failed / cancelled), owner hash,
                   times, key hyper-parameters, results, error message, bundle path
    config.json    RunConfig + package versions (written at submit; ``fine_tune`` rewrites it identically)
    data/          copies of the uploaded files, so the run can be rebuilt and exported later
    events.jsonl   the progress events (see ``peft_core.progress``); error.log: the traceback of a failed run
    ... and everything ``pipeline.fine_tune`` / ``export_run`` write (model/, report.json, plots, bundle-*.zip)

Owners are opaque tokens (the app keeps one per browser); only their SHA-256 is stored, and every call that
names a run checks it, so a caller sees only its own runs (an unknown id and someone else's id look the same).
At most ``max_concurrent`` runs train at once (env ``PEFT_MAX_CONCURRENT_RUNS``, default 1); the rest wait
in a FIFO queue. Runs left queued or running by a previous process are marked failed when a manager starts.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import threading
import time
import traceback
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .callbacks import Control, JsonlLogger, ProgressEvent
from .errors import PeftCoreError
from .progress import EventTail, Progress, summarize

ACTIVE = ("queued", "running", "cancelling")
TERMINAL = ("finished", "failed", "cancelled")


class JobError(PeftCoreError, LookupError):
    """No such run for this owner, a missing owner token, or an action the run's state does not allow."""


def owner_hash(token: str) -> str:
    """SHA-256 hex of an owner token. Raises JobError for an empty or short token (< 16 characters)."""
    if not isinstance(token, str) or len(token) < 16:
        raise JobError("no valid owner token (at least 16 characters): reload the page, or pass the token you "
                       "got from /new_owner when calling the API")
    return hashlib.sha256(token.encode()).hexdigest()


def new_owner_token() -> str:
    """A fresh unguessable owner token (32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


@dataclass
class JobInfo:
    """One run's record (``status.json``). Times are Unix seconds; ``results`` has accuracy, macro_f1 (test
    split fractions), trainable_pct (percent of parameters), best_epoch, epochs_run, cancelled_early."""

    id: str
    owner: str
    state: str
    model: str
    method: str
    params: dict = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    results: dict = field(default_factory=dict)
    bundle: str | None = None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end (or to now while active); None while queued."""
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started

    @property
    def has_model(self) -> bool:
        """True when training saved a model (finished, or cancelled after it kept the best epoch)."""
        return self.state in ("finished", "cancelled") and bool(self.results)

    def to_dict(self) -> dict:
        return asdict(self)


def _params(cfg) -> dict:
    """Key hyper-parameters of a RunConfig, with the method's defaults filled in."""
    from .methods import get_method

    t = cfg.train.with_defaults(get_method(cfg.method).train_defaults)
    return {"epochs": t.epochs, "batch_size": t.batch_size, "learning_rate": t.learning_rate,
            "head_learning_rate": t.head_learning_rate, "max_length": t.max_length,
            "patience": t.early_stopping_patience, "method_config": dict(cfg.method_config)}


def _results(run) -> dict:
    r = run.train_result
    return {"accuracy": run.eval_report.accuracy, "macro_f1": run.eval_report.macro_f1,
            "baseline_accuracy": run.eval_report.baseline_accuracy,
            "trainable_pct": 100 * run.trainable_parameters / run.total_parameters,
            "trainable_parameters": run.trainable_parameters, "best_epoch": r.best_epoch,
            "epochs_run": len(r.history), "stopped_early": r.stopped_early, "training_s": r.seconds,
            "best_val_macro_f1": max((h["val_macro_f1"] for h in r.history), default=None)}


class JobManager:
    """Submit, follow, cancel, list and export runs under ``root``.

    Args:
        root: folder holding one sub-folder per run (created if missing).
        max_concurrent: runs training at once (default: env ``PEFT_MAX_CONCURRENT_RUNS`` or 1).
        runner: ``fine_tune``-compatible callable (cfg, run_dir, callbacks, control) -> Run; tests may swap it.
        keep_in_memory: trained runs kept loaded for predict / export (older ones are reloaded from disk).
    """

    def __init__(self, root: str | Path, max_concurrent: int | None = None, runner: Callable | None = None,
                 keep_in_memory: int = 2) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_concurrent = int(max_concurrent or os.environ.get("PEFT_MAX_CONCURRENT_RUNS", "1"))
        if self.max_concurrent < 1:
            raise JobError(f"PEFT_MAX_CONCURRENT_RUNS must be at least 1, got {self.max_concurrent}")
        self._runner = runner
        self._lock = threading.RLock()
        self._jobs: dict[str, JobInfo] = {}
        self._queue: list[str] = []
        self._controls: dict[str, Control] = {}
        self._tails: dict[str, EventTail] = {}
        self._loaded: OrderedDict[str, object] = OrderedDict()
        self._keep = keep_in_memory
        self._pool = ThreadPoolExecutor(self.max_concurrent, thread_name_prefix="peft-run")
        self._recover()

    # ---- records -------------------------------------------------------------------------------------
    def _recover(self) -> None:
        for path in sorted(self.root.glob("*/status.json")):
            try:
                info = JobInfo(**json.loads(path.read_text()))
            except (ValueError, TypeError):
                continue  # not a run folder of ours
            if info.state in ACTIVE:
                info.state, info.finished = "failed", info.finished or time.time()
                info.error = "the app stopped while this run was queued or training; start it again"
                self._write(info)
            self._jobs[info.id] = info

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

    def progress(self, token: str, run_id: str) -> Progress:
        """Progress of the run from its event log (read incrementally)."""
        self.get(token, run_id)
        with self._lock:
            tail = self._tails.setdefault(run_id, EventTail(self.dir(run_id) / "events.jsonl"))
            return summarize(tail.read())

    # ---- lifecycle -----------------------------------------------------------------------------------
    def submit(self, token: str, cfg) -> JobInfo:
        """Queue a run of ``cfg`` (a RunConfig) for ``token``; the data files are copied into the run folder.

        Raises:
            JobError: bad token. DataError: an input file is missing.
        """
        from .errors import DataError
        from .pipeline import versions

        owner = owner_hash(token)
        run_id = secrets.token_hex(16)
        run_dir = self.dir(run_id)
        (run_dir / "data").mkdir(parents=True)
        for attr in ("train_file", "test_file"):
            src = getattr(cfg, attr)
            if src:
                if not Path(src).is_file():
                    shutil.rmtree(run_dir)
                    raise DataError(f"{attr.replace('_', ' ')} {Path(src).name!r} is not there any more; upload it again")
                dst = run_dir / "data" / (attr.split("_")[0] + "_" + Path(src).name)
                shutil.copyfile(src, dst)
                setattr(cfg, attr, str(dst))
        (run_dir / "config.json").write_text(json.dumps({"run": cfg.to_dict(), "versions": versions()}, indent=2))
        info = JobInfo(run_id, owner, "queued", cfg.model, cfg.method, _params(cfg))
        with self._lock:
            self._jobs[run_id] = info
            self._controls[run_id] = Control()
            self._queue.append(run_id)
            self._write(info)
        self._pool.submit(self._execute, run_id, cfg)
        return self.get(token, run_id)

    def cancel(self, token: str, run_id: str) -> JobInfo:
        """Cancel a queued run at once, or ask a running one to stop after its current step (it then keeps the
        best epoch so far, is evaluated and saved, and ends as "cancelled"). Finished runs are left alone."""
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
            runner = self._runner
            if runner is None:
                from .pipeline import fine_tune as runner
            run = runner(cfg, self.dir(run_id), [], control)
        except Exception as e:  # noqa: BLE001 -- every failure is recorded on the run and shown to its owner
            self._fail(run_id, e)
            return
        with self._lock:
            self._remember(run_id, run)
            info.results = _results(run)
            info.state = "cancelled" if run.train_result.cancelled else "finished"
            info.finished = time.time()
            self._write(info)
            self._controls.pop(run_id, None)

    def _fail(self, run_id: str, exc: Exception) -> None:
        run_dir = self.dir(run_id)
        (run_dir / "error.log").write_text("".join(traceback.format_exception(exc)))
        why = str(exc) if isinstance(exc, PeftCoreError) else (
            f"unexpected error {type(exc).__name__}: {str(exc)[:300]} (traceback in error.log of the run folder)")
        JsonlLogger(run_dir / "events.jsonl")(ProgressEvent("message", message=f"failed: {why}"))
        with self._lock:
            info = self._jobs[run_id]
            info.state, info.error, info.finished = "failed", why, time.time()
            self._write(info)
            self._controls.pop(run_id, None)

    def wait(self, token: str, run_id: str, timeout_s: float = 600, poll_s: float = 0.1) -> JobInfo:
        """Block until the run is finished / failed / cancelled. Raises TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while (info := self.get(token, run_id)).state not in TERMINAL:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {info.state} after {timeout_s} s")
            time.sleep(poll_s)
        return info

    def shutdown(self, cancel: bool = True) -> None:
        """Stop accepting work; with ``cancel`` ask running runs to stop. Waits for the worker threads."""
        with self._lock:
            if cancel:
                for c in self._controls.values():
                    c.request_stop()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # ---- trained runs --------------------------------------------------------------------------------
    def _remember(self, run_id: str, run) -> None:
        self._loaded[run_id] = run
        self._loaded.move_to_end(run_id)
        while len(self._loaded) > self._keep:
            self._loaded.popitem(last=False)

    def run(self, token: str, run_id: str):
        """The trained :class:`~peft_core.pipeline.Run` (from memory, else rebuilt from its folder).

        Raises:
            JobError: not this owner's run, or it has no trained model (queued, running, failed).
        """
        info = self.get(token, run_id)
        if not info.has_model:
            raise JobError(f"run {run_id[:8]} is {info.state}: it has no trained model"
                           + (f" ({info.error})" if info.error else ""))
        with self._lock:
            run = self._loaded.get(run_id)
        if run is None:
            from .runstore import load_run

            run = load_run(self.dir(run_id))
            with self._lock:
                self._remember(run_id, run)
        return run

    def export(self, token: str, run_id: str):
        """Export the run to ONNX, check parity, build the bundle (see ``pipeline.export_run``); the bundle
        path is recorded on the run. Raises JobError (see :meth:`run`) or ExportError."""
        from .pipeline import export_run

        res = export_run(self.run(token, run_id))
        if res.bundle is not None:
            with self._lock:
                self._jobs[run_id].bundle = str(res.bundle)
                self._write(self._jobs[run_id])
        return res
