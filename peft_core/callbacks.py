"""Progress events, the stop flag, and listeners (after transformers' TrainerCallback / TrainerControl).

The trainer emits :class:`ProgressEvent`s to a list of callables; the app's progress bar, the CLI's tqdm bar and
the JSONL event log are just different listeners. A listener cannot change training except through
:class:`Control`, whose only flag is "stop".
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class ProgressEvent:
    """One thing that happened during a run.

    Attributes:
        kind: "start" | "step" | "epoch" | "end" | "message" | "phase".
        step / total_steps: optimizer steps done and planned (ints); for a "phase" event: units done / total of
            that phase (rows for "encoding" and "evaluating", steps for "preparing" and "training").
        epoch: 1-based epoch of the event (float for steps inside an epoch).
        loss: training loss of the last step (mean cross-entropy over the batch), if a step event.
        metrics: validation metrics at epoch end (val_loss, val_score and the task kind's named metrics,
            e.g. val_accuracy and val_macro_f1).
        message: the phase name of a "phase" event (see :data:`PHASES`); free text otherwise.
        elapsed_s: seconds since training began (``train`` was called; it includes feature caching); for a
            "phase" event: seconds since that phase began.
        time: Unix seconds when the event was made.
    """

    kind: str
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    loss: float | None = None
    metrics: dict = field(default_factory=dict)
    message: str = ""
    elapsed_s: float = 0.0
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return asdict(self)


Callback = Callable[[ProgressEvent], None]

#: the phases of a run, in order, as named in "phase" events: loading data and model, computing the frozen
#: encoder's cached features (only when something is cached), optimizer steps, the held-out evaluation; then the
#: export's phases (``exporters.run_export.export_run``)
PHASES = ("preparing", "encoding", "training", "evaluating", "exporting", "parity", "int8", "bundle")


class Control:
    """The stop flag a UI or a signal handler sets. The run checks it between the steps of its preparing, after
    every encoding batch, optimizer step and validation batch, and per batch of the held-out evaluation (see
    :class:`Phase`), so a stop takes effect within one batch in every phase."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def should_stop(self) -> bool:
        return self._stop.is_set()


class StopRequested(Exception):
    """Raised by :meth:`Phase.advance` / :meth:`Phase.check` when the stop flag is set, to leave a phase's loop at
    once. The trainer turns it into a cancelled :class:`~peft_core.training.TrainResult` and ``fine_tune`` into
    :class:`~peft_core.errors.RunCancelled`; it never reaches a user. ``phase``: where it was raised."""

    def __init__(self, phase: str) -> None:
        super().__init__(f"stop requested during {phase}")
        self.phase = phase


class Phase:
    """One phase of a run, reported as "phase" events and stoppable between its chunks.

    Emits ``ProgressEvent("phase", step=done, total_steps=total, message=name, elapsed_s=s since start())`` at
    :meth:`start` (done 0), at :meth:`advance` (every call, or at most once per ``every_s`` seconds when that is
    > 0) and at :meth:`finish` (done = total). ``advance`` and ``check`` raise :class:`StopRequested` when
    ``control`` says stop, so a loop that calls them once per chunk (a batch of rows) stops within one chunk.

    Args:
        emit: called with each event (e.g. every listener of a run); None emits nothing (stop checks only).
        name: one of :data:`PHASES`. total: units the phase will do (rows or steps, int >= 0).
        control: the run's stop flag (None: never stops). every_s: least seconds between "advance" events.
    """

    def __init__(self, emit: Callback | None, name: str, total: int, control: "Control | None" = None,
                 every_s: float = 0.0) -> None:
        self.emit, self.name, self.total, self.control, self.every_s = emit, name, int(total), control, every_s
        self.done = 0
        self._t0 = self._last = time.perf_counter()
        self._sent: tuple[int, int] | None = None  # (done, total) of the last event sent

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._t0

    def _send(self) -> None:
        self._last, self._sent = time.perf_counter(), (self.done, self.total)
        if self.emit is not None:
            self.emit(ProgressEvent("phase", self.done, self.total, message=self.name, elapsed_s=self.elapsed_s))

    def start(self) -> "Phase":
        """Begin the phase: the clock starts, done is 0, a first event goes out; raises StopRequested if the
        stop flag is already set."""
        self.done, self._t0 = 0, time.perf_counter()
        self._send()
        self.check()
        return self

    def advance(self, n: int = 1) -> None:
        """``n`` more units done (clamped to total); an event when due; raises StopRequested if told to stop."""
        self.done = min(self.total, self.done + int(n))
        if not self.every_s or time.perf_counter() - self._last >= self.every_s:
            self._send()
        self.check()

    def finish(self, total: int | None = None) -> None:
        """End the phase: done = total (``total`` replaces the planned total, e.g. when early stopping ran fewer
        steps) and a last event, unless the last one sent said so already."""
        if total is not None:
            self.total = int(total)
        self.done = self.total
        if self._sent != (self.done, self.total):
            self._send()

    def __call__(self, done: int, total: int | None = None) -> None:
        """Report ``done`` units of ``total`` (which replaces the planned total when given) and send an event: a
        ``progress(done, total)`` callable for code that counts its own units (parity checks, int8 scoring)."""
        if total is not None:
            self.total = int(total)
        self.done = min(self.total, int(done))
        self._send()

    def check(self) -> None:
        """Raise :class:`StopRequested` when the stop flag is set."""
        if self.control is not None and self.control.should_stop:
            raise StopRequested(self.name)


class JsonlLogger:
    """Appends every event as one JSON line to ``path`` (the run's ``events.jsonl``). The file stays open
    (line-buffered, so readers see whole lines at once) until the "end" event."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = None

    def __call__(self, event: ProgressEvent) -> None:
        if self._file is None or self._file.closed:
            self._file = self.path.open("a", encoding="utf-8", buffering=1)
        self._file.write(json.dumps(event.to_dict()) + "\n")
        if event.kind == "end":
            self._file.close()

    def __del__(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()


class TqdmBar:
    """tqdm progress bars on the terminal: one over optimizer steps (showing the loss and, at each epoch end, the
    validation metrics), and one per other phase of a run ("preparing", "encoding", "evaluating", the export's),
    each opened at the phase's first "phase" event and closed at its last."""

    UNITS = {"encoding": "row", "evaluating": "row"}

    def __init__(self, **tqdm_kwargs) -> None:
        self.kw = tqdm_kwargs
        self.bar = None  # the training bar
        self.phase_bar = None
        self.phase = ""

    def _on_phase(self, event: ProgressEvent) -> None:
        from tqdm.auto import tqdm

        if event.message == "training":
            return  # the "start" / "step" events drive the training bar
        if self.phase_bar is None or event.message != self.phase:
            self._close_phase()
            self.phase = event.message
            self.phase_bar = tqdm(total=event.total_steps, unit=self.UNITS.get(event.message, "step"),
                                  desc=event.message, **self.kw)
        self.phase_bar.update(event.step - self.phase_bar.n)
        if event.step >= event.total_steps:
            self._close_phase()

    def _close_phase(self) -> None:
        if self.phase_bar is not None:
            self.phase_bar.close()
            self.phase_bar = None

    def __call__(self, event: ProgressEvent) -> None:
        from tqdm.auto import tqdm

        if event.kind == "phase":
            self._on_phase(event)
        elif event.kind == "start":
            self._close_phase()
            self.bar = tqdm(total=event.total_steps, unit="step", desc="training", **self.kw)
        elif self.bar is None:
            return
        elif event.kind == "step":
            self.bar.update(event.step - self.bar.n)
            self.bar.set_postfix(loss=f"{event.loss:.4f}", epoch=f"{event.epoch:.2f}", refresh=False)
        elif event.kind == "epoch":
            self.bar.write("epoch {:.0f}: ".format(event.epoch)
                           + ", ".join(f"{k} {v:.4f}" for k, v in event.metrics.items() if k != "val_score"))
        elif event.kind == "end":
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        """Close any bar still open (e.g. after a cancelled phase)."""
        self._close_phase()
        if self.bar is not None:
            self.bar.close()
            self.bar = None
