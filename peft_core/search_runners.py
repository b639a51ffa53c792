"""How a search's trials run (``peft_core.search``): in this process (the CLI), or as jobs of the app's job manager.

Both start a normal run per trial and hand back a handle the search watches (validation score per finished epoch,
stop, done, outcome), so the search itself never knows which one it drives.

- :class:`InProcessRunner`: ``pipeline.fine_tune`` on a thread of this process, into ``root/NNN`` (a normal
  ``train --out`` folder: ``predict --run``, ``evaluate``, ``export`` and ``runs`` work on it). The data are
  prepared once and shared; within a search the linear probe's pooled features are computed once
  (``feature_memo``), the other methods' caches are rebuilt per trial.
- :class:`JobRunner`: ``JobManager.submit`` for an owner token, so each trial is one of that owner's runs in the
  app's history (its own process, folder and data copy); stopping is ``JobManager.cancel`` (a run with a finished
  epoch keeps its best one, evaluated and saved). Each trial reads its data and encodes afresh.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import threading
import traceback
from pathlib import Path

from .callbacks import Control, ProgressEvent
from .errors import PeftCoreError, RunCancelled
from .search import TrialOutcome

log = logging.getLogger("peft_core.search")


class _ThreadTrial:
    """One trial trained by ``fine_tune`` on a daemon thread; see :class:`InProcessRunner`."""

    def __init__(self, run_dir: Path, cfg, data, callbacks) -> None:
        self.run_dir, self.run_id = run_dir, run_dir.name
        self.control = Control()
        self._scores: list[float] = []
        self._trained = False
        self._outcome: TrialOutcome | None = None
        self._thread = threading.Thread(target=self._run, args=(cfg, data, callbacks), daemon=True,
                                        name=f"search-trial-{run_dir.name}")
        self._thread.start()

    def _on_event(self, ev: ProgressEvent) -> None:
        if ev.kind == "epoch":
            self._scores.append(float(ev.metrics.get("val_score", float("nan"))))
        elif ev.kind == "end":  # training ended: the held-out evaluation and saving follow
            self._trained = True

    def _run(self, cfg, data, callbacks) -> None:
        from .jobs.records import _results
        from .pipeline import fine_tune

        try:
            run = fine_tune(cfg, self.run_dir, [self._on_event, *callbacks], control=self.control, data=data)
            state = "cancelled" if run.train_result.cancelled else "finished"
            self._outcome = TrialOutcome(state, True, _results(run))
        except RunCancelled as e:
            self._outcome = TrialOutcome("cancelled", False, error=str(e))
        except PeftCoreError as e:
            self._outcome = TrialOutcome("failed", False, error=str(e))
        except Exception as e:  # noqa: BLE001 -- a bug in one trial: recorded with its traceback, the search goes on
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "error.log").write_text(traceback.format_exc())
            log.exception("search trial %s failed", self.run_dir)
            self._outcome = TrialOutcome("failed", False, error=f"{type(e).__name__}: {e}")

    def val_scores(self) -> list[float]:
        return list(self._scores)

    def stop(self) -> None:
        self.control.request_stop()

    def evaluating(self) -> bool:
        return self._trained

    def done(self) -> bool:
        return not self._thread.is_alive()

    def outcome(self) -> TrialOutcome:
        self._thread.join()
        return self._outcome or TrialOutcome("failed", False, error="the trial ended without an outcome")


class InProcessRunner:
    """Trials as ``fine_tune`` runs in this process, one at a time, into ``root/001``, ``root/002``, ...

    Args:
        root: folder for the trial folders (created). data: a ``PreparedData`` shared by every trial (each gets
            its own copy of the task spec, which evaluation may tune); None: each trial reads its files.
        callbacks: extra progress listeners for every trial (e.g. a progress bar).
    """

    def __init__(self, root: str | Path, data=None, callbacks=()) -> None:
        self.root, self.data, self.callbacks = Path(root), data, list(callbacks)
        self.root.mkdir(parents=True, exist_ok=True)

    def start(self, number: int, cfg, name: str) -> _ThreadTrial:
        data = None if self.data is None else dataclasses.replace(self.data, task=copy.deepcopy(self.data.task))
        return _ThreadTrial(self.root / f"{number + 1:03d}", cfg, data, self.callbacks)


class _JobTrial:
    """One trial as a job of a JobManager; see :class:`JobRunner`."""

    def __init__(self, manager, token: str, run_id: str) -> None:
        self.manager, self.token, self.run_id = manager, token, run_id
        self.run_dir = manager.dir(run_id)

    def val_scores(self) -> list[float]:
        p = self.manager.progress(self.token, self.run_id)
        return [value for _, name, value in p.val if name == "val_score"]

    def stop(self) -> None:
        self.manager.cancel(self.token, self.run_id)

    def evaluating(self) -> bool:
        return self.manager.progress(self.token, self.run_id).phase == "evaluating"

    def done(self) -> bool:
        from .jobs import TERMINAL

        return self.manager.get(self.token, self.run_id).state in TERMINAL

    def outcome(self) -> TrialOutcome:
        info = self.manager.get(self.token, self.run_id)
        state = info.state if info.state in ("finished", "cancelled") else "failed"
        return TrialOutcome(state, info.has_model, dict(info.results), info.error)


class JobRunner:
    """Trials as runs of ``token``'s in ``manager`` (a ``peft_core.jobs.JobManager``), named as the search names
    them. A trial waits in the manager's queue like any run (the budget's clock runs meanwhile)."""

    def __init__(self, manager, token: str) -> None:
        self.manager, self.token = manager, token

    def start(self, number: int, cfg, name: str) -> _JobTrial:
        info = self.manager.submit(self.token, cfg, name=name)
        return _JobTrial(self.manager, self.token, info.id)
