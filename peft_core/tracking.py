"""Experiment tracking through the ecosystem's own loggers: TensorBoard, MLflow and Trackio.

``RunConfig.report_to`` (``--report-to`` in the CLI, "Report to" in the app) names the back ends of
:data:`TRACKERS`. :func:`open_tracking` opens them for a run; the returned :class:`Tracking` is one more listener
of the run's :class:`~peft_core.callbacks.ProgressEvent` stream, so each back end gets, with its own API:

* the run's parameters at the start (the RunConfig with the method's defaults filled in, flattened to
  ``train.learning_rate``, ``method_config.r``, ...; plus the task kind and parameter counts);
* ``train/loss`` at every optimizer step (the "step" events' loss);
* ``val/<metric>`` at every epoch end (the "epoch" events' metrics with the ``val_`` prefix dropped:
  ``val/loss``, ``val/score``, ``val/accuracy``...), at the optimizer step the epoch ended on;
* ``test/<metric>`` once, the held-out report's numbers (:func:`report_metrics`), at the last step.

The x-axis of every back end is the optimizer step. Where each writes (``run_dir``: the run's folder):

* ``tensorboard``: ``run_dir/tracking/tensorboard`` (``torch.utils.tensorboard.SummaryWriter``);
* ``mlflow``: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///run_dir/tracking/mlflow.db``; experiment
  ``peft-studio`` (``MLFLOW_EXPERIMENT_NAME`` when set), run named after the run folder (``MlflowClient``);
* ``trackio``: ``TRACKIO_DIR`` when set, else ``run_dir/tracking/trackio``; project ``peft-studio``, run named
  after the run folder (``trackio.init`` / ``Run.log`` / ``Run.finish``; local only: no server, no Hub).

Failures: an unknown name is a ConfigError (the choices named) when the RunConfig is made. A back end that fails
while the run trains (a bad ``MLFLOW_TRACKING_URI``, a full disk, the package missing) never stops training: one
warning line goes into the run's messages (CLI output, the app's run log, ``events.jsonl``) and the run goes on
without that back end. Only the main process tracks under several processes (``fine_tune`` decides).
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from .callbacks import ProgressEvent
from .errors import ConfigError, RunCancelled

#: project / experiment name the runs are logged under
PROJECT = "peft-studio"


class Tracker:
    """One back end for one run. Subclasses implement the ``log_*`` methods with their library's API; the base
    class turns the event stream into calls (``__call__``). ``title``: the name people read; ``where``: one line
    saying where the data went and how to open it (set by ``__init__``)."""

    name = ""
    title = ""

    def __init__(self, run_dir: Path, run_name: str) -> None:
        self.run_dir, self.run_name, self.where = Path(run_dir), run_name, ""

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "step" and event.loss is not None:
            self.log_metrics({"train/loss": float(event.loss)}, event.step)
        elif event.kind == "epoch":
            self.log_metrics({"val/" + k.removeprefix("val_"): float(v) for k, v in event.metrics.items()},
                             event.step)

    def log_params(self, params: dict) -> None:
        """The run's parameters (flat dict: str -> str / number / bool / None)."""
        raise NotImplementedError

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Scalars at optimizer step ``step``."""
        raise NotImplementedError

    def log_report(self, metrics: dict[str, float], step: int) -> None:
        """The held-out report (``metrics`` keys without prefix; logged as ``test/<key>``)."""
        self.log_metrics({f"test/{k}": v for k, v in metrics.items()}, step)

    def close(self, status: str = "FINISHED") -> None:
        """Flush and close; ``status``: "FINISHED", "KILLED" (cancelled) or "FAILED"."""


class TensorBoardTracker(Tracker):
    """TensorBoard event files via ``torch.utils.tensorboard.SummaryWriter`` in ``run_dir/tracking/tensorboard``;
    parameters as a markdown table (text "params") and as the HParams plugin's session (written with the report,
    linking the ``test/*`` scalars)."""

    name, title = "tensorboard", "TensorBoard"

    def __init__(self, run_dir: Path, run_name: str) -> None:
        super().__init__(run_dir, run_name)
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = self.run_dir / "tracking" / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.logdir))
        self.params: dict = {}
        self.where = f"TensorBoard logs: {self.logdir} (tensorboard --logdir {self.logdir})"

    def log_params(self, params: dict) -> None:
        self.params = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()}
        rows = "\n".join(f"| {k} | {v} |" for k, v in self.params.items())
        self.writer.add_text("params", "| parameter | value |\n|---|---|\n" + rows, 0)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def log_report(self, metrics: dict[str, float], step: int) -> None:
        from torch.utils.tensorboard.summary import hparams

        super().log_report(metrics, step)
        for summary in hparams(self.params, {f"test/{k}": v for k, v in metrics.items()}):
            self.writer.file_writer.add_summary(summary, step)

    def close(self, status: str = "FINISHED") -> None:
        self.writer.close()


class MlflowTracker(Tracker):
    """An MLflow run through ``mlflow.tracking.MlflowClient`` (no global active run, so runs in threads do not
    mix). Step metrics are buffered and sent with ``log_batch`` at each epoch end and at close (one request per
    epoch rather than per step). The run ends FINISHED, KILLED (cancelled) or FAILED."""

    name, title = "mlflow", "MLflow"
    BATCH = 1000  # MLflow's most metrics per log_batch call (100 params)

    def __init__(self, run_dir: Path, run_name: str) -> None:
        super().__init__(run_dir, run_name)
        from mlflow.tracking import MlflowClient

        db = self.run_dir / "tracking" / "mlflow.db"
        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{db.resolve()}"
        if self.uri.startswith("sqlite:///") and not os.environ.get("MLFLOW_TRACKING_URI"):
            db.parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or PROJECT
        with _quiet("mlflow", "alembic"):  # a new sqlite store logs its table creation at INFO
            exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(name)
        self.run_id = self.client.create_run(exp_id, run_name=run_name,
                                             tags={"peft.run_dir": str(self.run_dir)}).info.run_id
        self.pending: list = []
        self.where = (f"MLflow: {self.uri}, experiment {name!r}, run id {self.run_id} "
                      f"(mlflow ui --backend-store-uri {self.uri})")

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), now, int(step)) for k, v in metrics.items()]
        if any(not k.startswith("train/") for k in metrics):
            self.flush()

    def flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:self.BATCH], self.pending[self.BATCH:]
            self.client.log_batch(self.run_id, metrics=batch)

    def close(self, status: str = "FINISHED") -> None:
        try:
            self.flush()
        finally:
            self.client.set_terminated(self.run_id, status)


@contextlib.contextmanager
def _quiet(*loggers: str):
    """Within the block, the named loggers pass only warnings and errors."""
    import logging

    saved = [(lg, lg.level) for lg in map(logging.getLogger, loggers)]
    for lg, _ in saved:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)


class TrackioTracker(Tracker):
    """A local Trackio run: ``trackio.init(project, name, config)``, ``Run.log(metrics, step)``, ``Run.finish()``.
    Trackio fixes its folder when it is imported (``TRACKIO_DIR``); without ``TRACKIO_DIR`` set by the user the
    folder is this run's ``tracking/trackio``, re-pointed for each run of a long-lived process, which is why
    two runs of one process cannot log to Trackio at once (the second is told so and goes on without it).
    System monitors and console capture are off; Trackio's own printing is kept out of the run's output."""

    name, title = "trackio", "Trackio"
    _lock = threading.Lock()
    _active: Path | None = None  # the folder of the Trackio run open in this process, if any

    def __init__(self, run_dir: Path, run_name: str) -> None:
        super().__init__(run_dir, run_name)
        self.dir = _trackio_dir(Path(os.environ.get("TRACKIO_DIR") or self.run_dir / "tracking" / "trackio"))
        try:
            import trackio

            with contextlib.redirect_stdout(io.StringIO()):
                self.run = trackio.init(project=PROJECT, name=run_name, embed=False, auto_log_gpu=False,
                                        auto_log_cpu=False, capture_console=False)
        except BaseException:
            TrackioTracker._release()
            raise
        self.where = (f"Trackio: project {PROJECT!r}, run {run_name!r} in {self.dir} "
                      f"(TRACKIO_DIR={self.dir} trackio show --project {PROJECT})")

    def log_params(self, params: dict) -> None:
        # the run's config is stored with its first log entry; params logged at start become that config
        self.run.config.update(params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=int(step))

    def close(self, status: str = "FINISHED") -> None:
        import trackio

        try:
            with contextlib.redirect_stdout(io.StringIO()):
                if trackio.context_vars.current_run.get() is self.run:
                    trackio.finish()  # also clears the current run, so Trackio's exit hook does not finish it again
                else:
                    self.run.finish()
        finally:
            TrackioTracker._release()

    @staticmethod
    def _release() -> None:
        with TrackioTracker._lock:
            TrackioTracker._active = None


def _trackio_dir(folder: Path) -> Path:
    """Make ``folder`` Trackio's data folder in this process and claim it for one run (see TrackioTracker).
    Before Trackio is imported this sets ``TRACKIO_DIR`` for the import; afterwards it re-points the folder
    constants Trackio's modules copied at import. Raises RuntimeError while another run of this process logs
    to Trackio elsewhere."""
    folder = folder.resolve()
    with TrackioTracker._lock:
        if TrackioTracker._active is not None and TrackioTracker._active != folder:
            raise RuntimeError(f"another run of this process logs to Trackio in {TrackioTracker._active}; "
                               "Trackio keeps one folder per process")
        TrackioTracker._active = folder
    folder.mkdir(parents=True, exist_ok=True)
    if "trackio" not in sys.modules:
        os.environ["TRACKIO_DIR"] = str(folder)
        try:
            import trackio  # noqa: F401 -- reads TRACKIO_DIR now
        finally:
            os.environ.pop("TRACKIO_DIR") if os.environ.get("TRACKIO_DIR") == str(folder) else None
    consts = {"TRACKIO_DIR": folder, "MEDIA_DIR": folder / "media", "ARTIFACTS_DIR": folder / "artifacts"}
    for name, mod in list(sys.modules.items()):
        if name == "trackio" or name.startswith("trackio."):
            for const, value in consts.items():
                if isinstance(getattr(mod, const, None), Path):
                    setattr(mod, const, value)
    return folder


#: name -> tracker class, the choices of ``report_to``
TRACKERS: dict[str, type[Tracker]] = {t.name: t for t in (TensorBoardTracker, MlflowTracker, TrackioTracker)}


def parse_report_to(value: str | Sequence[str] | None) -> list[str]:
    """``report_to`` as a list of :data:`TRACKERS` names, in order, without repeats. Accepts a comma-separated
    string or a sequence; "", "none" and None mean no tracking.

    Raises:
        ConfigError: a name that is not a tracker (the choices named).
    """
    items = value.split(",") if isinstance(value, str) else list(value or [])
    names = [str(n).strip().lower() for n in items if str(n).strip()]
    names = [n for n in names if n != "none"]
    bad = [n for n in names if n not in TRACKERS]
    if bad:
        raise ConfigError(f"unknown experiment tracker {bad[0]!r} in report_to; choose from "
                          f"{', '.join(TRACKERS)} (several comma-separated) or none")
    return list(dict.fromkeys(names))


def flat_params(d: dict, prefix: str = "") -> dict:
    """Nested dict -> flat ``{"a.b": value}``; lists and tuples become comma-joined strings."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= flat_params(v, key + ".")
        else:
            out[key] = ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v
    return out


def report_metrics(report) -> dict[str, float]:
    """The numbers of a task kind's held-out report (``report.to_dict()``): its numeric fields (accuracy,
    macro_f1, rmse, n ...) and those of its dicts of numbers as ``<dict>_<key>`` (``baseline_rmse``). Lists
    (per-class rows, the confusion matrix) and text are left out."""
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    out = {}
    for k, v in report.to_dict().items():
        if num(v):
            out[k] = float(v)
        elif isinstance(v, dict):
            out |= {f"{k}_{s}": float(x) for s, x in v.items() if num(x)}
    return out


class Tracking:
    """The open trackers of one run, as one listener. Every call into a back end is guarded: the first error of
    a back end sends one warning through ``say`` and drops that back end; the run goes on. A context manager:
    leaving it closes every tracker with status FINISHED, KILLED (RunCancelled) or FAILED (other errors)."""

    def __init__(self, trackers: list[Tracker], say: Callable[[str], None]) -> None:
        self.trackers, self.say, self.step = list(trackers), say, 0

    def _guard(self, tracker: Tracker, fn: Callable, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 -- tracking must never stop a run
            self.trackers.remove(tracker)
            self.say(f"warning: {tracker.title} tracking failed ({type(e).__name__}: {str(e)[:300]}); "
                     "the run goes on without it")
            with contextlib.suppress(Exception):
                tracker.close("FAILED")

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind in ("step", "epoch"):
            self.step = max(self.step, event.step)
            for t in list(self.trackers):
                self._guard(t, t, event)

    def log_params(self, params: dict) -> None:
        for t in list(self.trackers):
            self._guard(t, t.log_params, params)

    def log_report(self, report) -> None:
        """Log the held-out report (a task kind's report, see :func:`report_metrics`) at the last step."""
        metrics = report_metrics(report)
        for t in list(self.trackers):
            self._guard(t, t.log_report, metrics, self.step)

    def close(self, status: str = "FINISHED") -> None:
        for t in list(self.trackers):
            self._guard(t, t.close, status)
        self.trackers = []

    def __enter__(self) -> "Tracking":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close("FINISHED" if exc_type is None else "KILLED" if issubclass(exc_type, RunCancelled) else "FAILED")


def open_tracking(names: Sequence[str], run_dir: str | Path, params: dict,
                  say: Callable[[str], None]) -> Tracking:
    """Open the trackers ``names`` (of :data:`TRACKERS`) for the run in ``run_dir`` (the run is named after the
    folder), say where each writes, and log ``params`` (flattened with :func:`flat_params`). A tracker that
    cannot open is reported through ``say`` and left out. No names: an empty Tracking (a no-op listener)."""
    tracking = Tracking([], say)
    run_dir = Path(run_dir)
    for name in names:
        try:
            tracker = TRACKERS[name](run_dir, run_dir.resolve().name)
        except Exception as e:  # noqa: BLE001 -- tracking must never stop a run
            say(f"warning: {TRACKERS[name].title} tracking could not start ({type(e).__name__}: {str(e)[:300]}); "
                "the run goes on without it")
            continue
        tracking.trackers.append(tracker)
        say(tracker.where)
    tracking.log_params(flat_params(params))
    return tracking


def run_tracking(cfg, tcfg, data, run_dir: str | Path, listeners: list, counts: tuple[int, int],
                 main: bool = True) -> Tracking:
    """``fine_tune``'s tracking: open ``cfg.report_to`` (nothing unless ``main``), say where each back end
    writes and any failure as "message" events to ``listeners``, log the parameters (the RunConfig with the
    method's defaults filled in ``tcfg``, the task kind, label count, modality, trainable / total parameters
    ``counts``), and add the Tracking to ``listeners``. Use it as a context manager around training and
    evaluation; call ``log_report`` with the held-out report."""
    say = lambda m: [cb(ProgressEvent("message", message=m)) for cb in list(listeners)]  # noqa: E731
    run = {k: v for k, v in cfg.to_dict().items() if k != "report_to"} | {"train": tcfg.to_dict()}
    params = run | {"task_kind": data.task.kind, "num_labels": data.task.num_labels,
                    "modality": data.task.modality, "trainable_parameters": counts[0],
                    "total_parameters": counts[1]}
    tracking = open_tracking(cfg.report_to if main else (), run_dir, params, say)
    listeners.append(tracking)
    return tracking
