"""How one run is carried out and what it ended as, the same in every executor.

:func:`execute` calls the runner (``pipeline.fine_tune`` or a test's stand-in) and turns whatever happens into an
:class:`Outcome`: finished or cancelled with results, cancelled before it had a model, or failed with a message for
people (and ``error.log`` with the traceback plus a last log line in the run folder). The thread executor calls it in
the app's process; a run process (``peft_core.jobs.worker``) calls it and writes the outcome to ``outcome.json``,
which the app reads when the process ends.
"""
from __future__ import annotations

import json
import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..callbacks import Control, JsonlLogger, ProgressEvent
from ..errors import ConfigError, PeftCoreError, RunCancelled
from .records import _results
from .settings import memory_cap_mb

log = logging.getLogger("peft_core.jobs")

OUTCOME_FILE = "outcome.json"
STOP_FILE = "stop"  # written by the app to ask the run's process to stop
WORKER_FILE = "worker.json"  # pid and host of the run's process


class FileControl(Control):
    """A :class:`~peft_core.callbacks.Control` that also stops when ``path`` exists (the app's stop request to a
    run in another process). Checking costs one ``stat`` per check (once per batch)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)

    @property
    def should_stop(self) -> bool:
        if not self._stop.is_set() and self.path.exists():
            self._stop.set()
        return self._stop.is_set()


@dataclass
class Outcome:
    """What a run ended as.

    Attributes:
        state: "finished", "cancelled" or "failed" (a state of :data:`~peft_core.jobs.records.TERMINAL`).
        results: the run's results (``records._results``); {} when it has no model.
        error: the message for people (None when finished or cancelled with a model).
        run: the trained :class:`~peft_core.pipeline.Run` when it was trained in this process (never written).
        raised: a ``SystemExit`` / ``KeyboardInterrupt`` the runner raised (never written): recorded as a failure;
            the caller decides what else to do (the job manager logs it; a run process exits with status 1).
    """

    state: str
    results: dict = field(default_factory=dict)
    error: str | None = None
    run: object = None
    raised: BaseException | None = None

    def to_dict(self) -> dict:
        return {"state": self.state, "results": self.results, "error": self.error}

    def write(self, run_dir: Path) -> None:
        """Write ``outcome.json`` in ``run_dir`` atomically (a reader never sees half a file)."""
        tmp = Path(run_dir) / (OUTCOME_FILE + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(Path(run_dir) / OUTCOME_FILE)

    @classmethod
    def read(cls, run_dir: Path) -> Outcome | None:
        """The outcome a run process wrote in ``run_dir``; None when it wrote none (it died first)."""
        path = Path(run_dir) / OUTCOME_FILE
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def log_line(run_dir: Path, message: str) -> None:
    """Append ``message`` to the run's log (``events.jsonl``); a folder that cannot be written is logged, not
    raised (a failed run must still be recorded as failed)."""
    try:
        JsonlLogger(Path(run_dir) / "events.jsonl")(ProgressEvent("message", message=message))
    except OSError:
        log.exception("could not write to the log of run %s: %s", Path(run_dir).name, message)


def clear_run_files(run_dir: Path) -> None:
    """Remove what an earlier try of the run left for its executor (stop request, outcome, worker record)."""
    for name in (STOP_FILE, OUTCOME_FILE, WORKER_FILE):
        (Path(run_dir) / name).unlink(missing_ok=True)


def forced_cancel(run_dir: Path, grace_s: float, how: str) -> Outcome:
    """The outcome of a run stopped by force after a stop request went unanswered for ``grace_s`` seconds
    (``how``: what was done, e.g. "its process was ended"), with the same line in its log."""
    why = (f"cancelled: the run did not stop within {grace_s:g} s of the request (stuck in one long step), so "
           f"{how}; there is no model to offer")
    log_line(run_dir, why)
    return Outcome("cancelled", {}, why)


def failure(run_dir: Path, exc: BaseException) -> Outcome:
    """A failed outcome for ``exc``: our own errors (``PeftCoreError``) keep their message; anything else is named
    with its type. Writes ``error.log`` (traceback) and a "failed: ..." log line."""
    if out_of_memory(exc):
        detail = f"{type(exc).__name__}: {str(exc)[:160]}" if str(exc).strip() else type(exc).__name__
        cap = memory_cap_note()
        why = (f"ran out of memory ({detail}){cap}: lower batch_size or max_length, or train fewer layers"
               + (", or raise the cap" if cap else ""))
    elif isinstance(exc, PeftCoreError):
        why = str(exc)
    else:
        why = f"unexpected error {type(exc).__name__}: {str(exc)[:300]} (traceback in error.log of the run folder)"
    try:
        (Path(run_dir) / "error.log").write_text("".join(traceback.format_exception(exc)))
    except OSError:
        log.exception("run %s failed (%s) and its error.log could not be written", Path(run_dir).name, why)
    log_line(run_dir, f"failed: {why}")
    return Outcome("failed", {}, why)


OOM_SIGNS = ("can't allocate memory", "cannot allocate memory", "failed to map segment", "out of memory")


def out_of_memory(exc: BaseException) -> bool:
    """True for a MemoryError, or an error whose message says an allocation failed (torch's "DefaultCPUAllocator:
    can't allocate memory", a shared library that could not be mapped under a memory cap)."""
    return isinstance(exc, MemoryError) or any(s in str(exc).lower() for s in OOM_SIGNS)


def memory_cap_note() -> str:
    """", over the per-run memory cap of N MB (PEFT_RUN_MEMORY_MB)" when a cap is set in this process (read as
    ``settings.memory_cap_mb`` reads it), else ""."""
    try:
        cap = memory_cap_mb()
    except ConfigError:  # the app refuses a bad value at start; here it only words a message
        return ""
    return f", over the per-run memory cap of {cap:g} MB (PEFT_RUN_MEMORY_MB)" if cap else ""


def execute(runner, cfg, run_dir: Path, control: Control) -> Outcome:
    """Train ``cfg`` in ``run_dir`` with ``runner(cfg, run_dir, callbacks, control) -> Run`` and say how it ended.

    Every failure becomes a "failed" outcome (with ``error.log`` and a log line), even ``SystemExit`` and
    ``KeyboardInterrupt``: a run must never stay "running" with nobody training it. Those two are kept in
    ``Outcome.raised``. Raises nothing.
    """
    try:
        run = runner(cfg, run_dir, [], control)
        cancelled = bool(run.train_result.cancelled)
        return Outcome("cancelled" if cancelled else "finished", _results(run), None, run)
    except RunCancelled as e:
        log_line(run_dir, str(e))
        return Outcome("cancelled", {}, str(e))
    except BaseException as e:  # noqa: BLE001 -- recorded on the run and shown to its owner
        out = failure(run_dir, e)
        out.raised = None if isinstance(e, Exception) else e
        return out
