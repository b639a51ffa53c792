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
        kind: "start" | "step" | "epoch" | "end" | "message".
        step / total_steps: optimizer steps done and planned (ints).
        epoch: 1-based epoch of the event (float for steps inside an epoch).
        loss: training loss of the last step (mean cross-entropy over the batch), if a step event.
        metrics: validation metrics at epoch end (val_loss, val_accuracy, val_macro_f1).
        elapsed_s: seconds since training began.
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


class Control:
    """The stop flag a UI or a signal handler sets; the trainer checks it after every step."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def should_stop(self) -> bool:
        return self._stop.is_set()


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
    """A tqdm progress bar over optimizer steps, showing the loss and the last validation metrics."""

    def __init__(self, **tqdm_kwargs) -> None:
        self.kw = tqdm_kwargs
        self.bar = None

    def __call__(self, event: ProgressEvent) -> None:
        from tqdm.auto import tqdm

        if event.kind == "start":
            self.bar = tqdm(total=event.total_steps, unit="step", desc="training", **self.kw)
        elif self.bar is None:
            return
        elif event.kind == "step":
            self.bar.update(event.step - self.bar.n)
            self.bar.set_postfix(loss=f"{event.loss:.4f}", epoch=f"{event.epoch:.2f}", refresh=False)
        elif event.kind == "epoch":
            self.bar.write("epoch {:.0f}: ".format(event.epoch)
                           + ", ".join(f"{k} {v:.4f}" for k, v in event.metrics.items()))
        elif event.kind == "end":
            self.bar.close()
