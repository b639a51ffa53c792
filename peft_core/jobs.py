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
in a FIFO queue (``queue_info`` says what a queued run waits for). Runs left queued or running by a previous process are marked failed when a manager starts.
Runs train on the manager's worker threads; a manager with the default runner first does, in its own thread, the
library set-ups that break when two runs do them at once (:func:`prime_for_threads`).

Old runs are deleted so that a long-lived app (a free CPU Hugging Face Space: 2 vCPU, 16 GB RAM, about 50 GB of
disk that is not persistent) does not fill its disk. Both limits are read from the environment when a manager is
created (0 turns a limit off; anything else that is not a number >= 0 is a ConfigError):

===========================  =======  =================================================================
variable                     default  meaning
===========================  =======  =================================================================
``PEFT_RUN_TTL_HOURS``       72       hours a finished / failed / cancelled run is kept, counted from
                                      when it ended (``JobInfo.finished``); older runs are deleted, folder
                                      and record
``PEFT_MAX_USER_DISK_MB``    2000     MB (10**6 bytes) of run folders one owner may hold; when over, that
                                      owner's oldest ended runs are deleted until under; when the owner's
                                      queued / running runs alone leave no room, ``submit`` is refused
===========================  =======  =================================================================

Cleanup runs when a manager starts (after recovery: runs the previous process left active are ended by then)
and at every ``submit`` (expired runs of all owners, then the quota of the submitting owner, counting the
size of the data files it is about to copy). Queued, running and cancelling runs, and runs being exported,
are never deleted. A folder's size is the sum of its regular files' sizes (symlinks are not followed). The quota
is checked only then: what a run writes while it trains (model, plots, bundles) may take its owner over the
limit until the next submit or start.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import stat
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .callbacks import Control, JsonlLogger, ProgressEvent
from .errors import ConfigError, JobError, PeftCoreError, RunCancelled
from .progress import EventTail, Progress, summarize
from .queueing import QueueInfo

ACTIVE = ("queued", "running", "cancelling")
TERMINAL = ("finished", "failed", "cancelled")
DEFAULT_RUN_TTL_HOURS = 72.0  # a finished / failed / cancelled run is deleted this many hours after it ended
DEFAULT_MAX_USER_DISK_MB = 2000.0  # MB (10**6 bytes) of run folders per owner
MB = 1_000_000
log = logging.getLogger(__name__)


def owner_hash(token: str) -> str:
    """SHA-256 hex of an owner token. Raises JobError for an empty or short token (< 16 characters)."""
    if not isinstance(token, str) or len(token) < 16:
        raise JobError("no valid owner token (at least 16 characters): reload the page, or pass the token you "
                       "got from /new_owner when calling the API")
    return hashlib.sha256(token.encode()).hexdigest()


def new_owner_token() -> str:
    """A fresh unguessable owner token (32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


def _env_limit(name: str, default: float) -> float:
    """A limit >= 0 from environment variable ``name`` (``default`` when unset or empty; 0 means off).

    Raises:
        ConfigError: the value is not a finite number >= 0.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw.replace("_", ""))
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"environment variable {name}={raw!r} must be 0 (off) or a positive number")
    return value


def folder_bytes(path: str | Path) -> int:
    """Bytes in the regular files under ``path`` (apparent sizes; symlinks not followed; a missing or
    vanishing file counts 0)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


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

        from .training import make_accelerator

        transformers.PreTrainedTokenizerBase  # noqa: B018 -- resolve the lazy attribute datasets looks up
        make_accelerator()  # fills accelerate's shared state with what every run's Accelerator uses


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
    dataset: str = ""  # the training file's name as uploaded (no folder)
    name: str = ""  # the owner's optional name or note for the run

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end (or to now while active); None while queued."""
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started

    @property
    def ended_at(self) -> float:
        """Unix seconds when the run ended (its creation time if that was never recorded); what the TTL counts
        from and what "oldest" means for the disk quota."""
        return self.finished or self.created

    @property
    def has_model(self) -> bool:
        """True when training saved a model (finished, or cancelled after it kept the best epoch); False for a
        run cancelled before its first epoch ended (no results; ``error`` says so)."""
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
        run_ttl_hours: hours an ended run is kept after it ended (default: env ``PEFT_RUN_TTL_HOURS`` or 72;
            0 keeps runs forever).
        max_user_disk_mb: MB (10**6 bytes) of run folders per owner (default: env ``PEFT_MAX_USER_DISK_MB`` or
            2000; 0 means no limit).

    Raises:
        JobError: max_concurrent < 1. ConfigError: a cleanup limit (argument or environment) is not >= 0.
    """

    def __init__(self, root: str | Path, max_concurrent: int | None = None, runner: Callable | None = None,
                 keep_in_memory: int = 2, run_ttl_hours: float | None = None,
                 max_user_disk_mb: float | None = None) -> None:
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
        self.run_ttl_hours = float(_env_limit("PEFT_RUN_TTL_HOURS", DEFAULT_RUN_TTL_HOURS)
                                   if run_ttl_hours is None else run_ttl_hours)
        self.max_user_disk_mb = float(_env_limit("PEFT_MAX_USER_DISK_MB", DEFAULT_MAX_USER_DISK_MB)
                                      if max_user_disk_mb is None else max_user_disk_mb)
        for name in ("run_ttl_hours", "max_user_disk_mb"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 (off) or a positive number, got {getattr(self, name)!r}")
        self._busy: dict[str, int] = {}  # run id -> exports in progress (never deleted meanwhile)
        self._submit_lock = threading.Lock()  # quota check + folder creation, one submit at a time
        if runner is None:
            prime_for_threads()
        self._pool = ThreadPoolExecutor(self.max_concurrent, thread_name_prefix="peft-run")
        self._recover()
        self.cleanup()

    # ---- records -------------------------------------------------------------------------------------
    def _recover(self) -> None:
        for path in sorted(self.root.glob("*/status.json")):
            try:
                info = JobInfo(**json.loads(path.read_text()))
            except (ValueError, TypeError):
                continue  # not a run folder of ours
            if info.id != path.parent.name:
                continue  # a record copied or edited by hand: never act on a folder it does not live in
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

    # ---- cleanup: age and disk quota -------------------------------------------------------------------
    def disk_usage(self, token: str) -> int:
        """Bytes in the run folders of ``token``'s runs (all states)."""
        owner = owner_hash(token)
        with self._lock:
            ids = [j.id for j in self._jobs.values() if j.owner == owner]
        return sum(folder_bytes(self.dir(i)) for i in ids)

    def cleanup(self, now: float | None = None) -> list[str]:
        """Delete ended runs older than ``run_ttl_hours`` (all owners), then, for every owner over
        ``max_user_disk_mb``, that owner's oldest ended runs until under. ``now``: Unix seconds to count ages
        from (default: the current time). Returns the ids deleted. Active and exporting runs are kept."""
        deleted = self._expire(time.time() if now is None else now)
        with self._lock:
            owners = sorted({j.owner for j in self._jobs.values()})
        for owner in owners:
            deleted += self._fit_quota(owner, 0)[0]
        return deleted

    def delete(self, token: str, run_id: str) -> None:
        """Delete one of ``token``'s ended runs (folder and record).

        Raises:
            JobError: not this owner's run, or it is still queued / running / cancelling (cancel it first and
                wait until it has ended) or being exported.
        """
        info = self.get(token, run_id)
        if not self._delete(run_id, "deleted by its owner"):
            raise JobError(f"run {run_id[:8]} is {info.state if info.state in ACTIVE else 'being exported'}: "
                           "cancel it first (or wait until it has ended), then delete it")

    def _delete(self, run_id: str, why: str) -> bool:
        """Remove an ended, not exporting run: record first (so nobody sees a half-deleted run), then its
        status.json (so a partly removed folder is not recovered at the next start), then the folder.
        Returns False, deleting nothing, when the run is active, exporting or unknown."""
        with self._lock:
            info = self._jobs.get(run_id)
            if info is None or info.state not in TERMINAL or self._busy.get(run_id):
                return False
            del self._jobs[run_id]
            self._tails.pop(run_id, None)
            self._loaded.pop(run_id, None)
            self._controls.pop(run_id, None)
        run_dir = self.dir(run_id)
        (run_dir / "status.json").unlink(missing_ok=True)
        shutil.rmtree(run_dir, ignore_errors=True)
        log.info("deleted run %s (%s, ended %s): %s", run_id, info.state,
                 time.strftime("%Y-%m-%d %H:%M", time.localtime(info.ended_at)), why)
        return True

    def _expire(self, now: float) -> list[str]:
        """Delete ended runs that ended more than ``run_ttl_hours`` before ``now`` (Unix seconds)."""
        if not self.run_ttl_hours:
            return []
        cutoff = now - self.run_ttl_hours * 3600
        with self._lock:
            old = [j.id for j in self._jobs.values() if j.state in TERMINAL and j.ended_at < cutoff]
        return [i for i in old if self._delete(i, f"older than {self.run_ttl_hours:g} h (PEFT_RUN_TTL_HOURS)")]

    def _fit_quota(self, owner: str, incoming: int) -> tuple[list[str], int, int]:
        """Make room for ``incoming`` more bytes in ``owner``'s (a hash) runs: delete their oldest ended runs
        while used + incoming > ``max_user_disk_mb``. Deletes nothing when the active runs alone leave no
        room (the caller refuses). Returns (ids deleted, bytes used after, bytes held by active runs)."""
        with self._lock:
            runs = [JobInfo(**j.to_dict()) for j in self._jobs.values() if j.owner == owner]
        sizes = {j.id: folder_bytes(self.dir(j.id)) for j in runs}
        used = sum(sizes.values())
        active = sum(sizes[j.id] for j in runs if j.state not in TERMINAL)
        limit = self.max_user_disk_mb * MB
        deleted: list[str] = []
        if not limit or used + incoming <= limit or active + incoming > limit:
            return deleted, used, active
        why = f"its owner's runs were over {self.max_user_disk_mb:g} MB (PEFT_MAX_USER_DISK_MB)"
        for j in sorted((j for j in runs if j.state in TERMINAL), key=lambda j: j.ended_at):
            if used + incoming <= limit:
                break
            if self._delete(j.id, why):
                used -= sizes[j.id]
                deleted.append(j.id)
        return deleted, used, active

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
        from .errors import DataError
        from .pipeline import versions

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
                    raise DataError(f"{attr.replace('_', ' ')} {Path(src).name!r} is not there any more; upload it again")
                dst = run_dir / "data" / (attr.split("_")[0] + "_" + Path(src).name)
                shutil.copyfile(src, dst)
                setattr(cfg, attr, str(dst))
        (run_dir / "config.json").write_text(json.dumps({"run": cfg.to_dict(), "versions": versions()}, indent=2))
        info = JobInfo(run_id, owner, "queued", cfg.model, cfg.method, _params(cfg), dataset=dataset, name=name)
        with self._lock:
            self._jobs[run_id] = info
            self._controls[run_id] = Control()
            self._queue.append(run_id)
            self._write(info)
        self._pool.submit(self._execute, run_id, cfg)
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
            runner = self._runner
            if runner is None:
                from .pipeline import fine_tune as runner
            run = runner(cfg, self.dir(run_id), [], control)
            results, cancelled = _results(run), bool(run.train_result.cancelled)
        except RunCancelled as e:
            self._end_without_model(run_id, e)
            return
        except BaseException as e:  # every failure is recorded on the run and shown to its owner, even SystemExit:
            self._fail(run_id, e)  # a run must never stay "running" with no worker left
            if not isinstance(e, Exception):
                raise
            return
        with self._lock:
            self._remember(run_id, run)
            info.results = results
            info.state = "cancelled" if cancelled else "finished"
            info.finished = time.time()
            self._write(info)
            self._controls.pop(run_id, None)

    def _end_without_model(self, run_id: str, exc: RunCancelled) -> None:
        """Record a run cancelled before it had a model: state "cancelled", no results, ``exc``'s message as
        its error and as the last line of its log."""
        try:
            JsonlLogger(self.dir(run_id) / "events.jsonl")(ProgressEvent("message", message=str(exc)))
        except OSError:
            log.exception("run %s was cancelled and its log could not be written", run_id)
        with self._lock:
            info = self._jobs[run_id]
            info.state, info.error, info.results, info.finished = "cancelled", str(exc), {}, time.time()
            self._controls.pop(run_id, None)
            self._write(info)

    def _fail(self, run_id: str, exc: BaseException) -> None:
        """Record ``exc`` on the run: state "failed", its message, error.log (traceback), a log line. The state
        is set even when the folder cannot be written (disk full)."""
        run_dir = self.dir(run_id)
        why = str(exc) if isinstance(exc, PeftCoreError) else (
            f"unexpected error {type(exc).__name__}: {str(exc)[:300]} (traceback in error.log of the run folder)")
        try:
            (run_dir / "error.log").write_text("".join(traceback.format_exception(exc)))
            JsonlLogger(run_dir / "events.jsonl")(ProgressEvent("message", message=f"failed: {why}"))
        except OSError:
            log.exception("run %s failed (%s) and its log could not be written", run_id, why)
        with self._lock:
            info = self._jobs[run_id]
            info.state, info.error, info.finished = "failed", why, time.time()
            self._controls.pop(run_id, None)
            try:
                self._write(info)
            except OSError:
                log.exception("could not write the status of failed run %s", run_id)

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

    def export(self, token: str, run_id: str, callbacks=()):
        """Export the run to ONNX, check parity, build the bundle (see ``pipeline.export_run``; ``callbacks``
        get its "phase" events); the bundle path is recorded on the run. Raises JobError (see :meth:`run`),
        ExportError or NonFiniteError."""
        from .pipeline import export_run

        self.get(token, run_id)
        with self._lock:
            self._busy[run_id] = self._busy.get(run_id, 0) + 1  # a cleanup leaves it alone meanwhile
        try:
            res = export_run(self.run(token, run_id), callbacks=callbacks)
            if res.bundle is not None:
                with self._lock:
                    self._jobs[run_id].bundle = str(res.bundle)
                    self._write(self._jobs[run_id])
        finally:
            with self._lock:
                self._busy[run_id] -= 1
                if not self._busy[run_id]:
                    del self._busy[run_id]
        return res
