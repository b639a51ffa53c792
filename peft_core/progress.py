"""Follow a run's ``events.jsonl``: what phase it is in, how far, how long is left, its curves and a short log.

The trainer appends one JSON line per :class:`~peft_core.callbacks.ProgressEvent`; a viewer (the app's timer,
a script) reads the file again and again. :class:`EventTail` reads only the bytes added since its last call and
never a half-written line; :func:`summarize` turns the events seen so far into a :class:`Progress`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

MAX_LOSS_POINTS = 400  # the loss curve is thinned to at most this many points
LOG_LINES = 12


class EventTail:
    """Incremental reader of one JSONL event log.

    ``read()`` returns every event read so far (a list of dicts, in file order). A missing file reads as no
    events; a line that is not JSON is skipped (it can only come from a crashed writer).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self.events: list[dict] = []

    def read(self) -> list[dict]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return self.events
        end = chunk.rfind(b"\n") + 1  # only whole lines; the rest is read next time
        for line in chunk[:end].splitlines():
            try:
                self.events.append(json.loads(line))
            except ValueError:
                continue
        self._offset += end
        return self.events


@dataclass
class Progress:
    """A run's progress as seen from its events.

    Attributes:
        phase: "preparing" (loading data / model, computing cached features), "training", "evaluating"
            (training ended; held-out evaluation and saving), as the last event implies.
        step / total_steps: optimizer steps done / planned. epoch: epochs done (fractional inside an epoch).
        elapsed_s: seconds since training began; eta_s: seconds left at the current pace for all planned
            steps (an upper bound when early stopping ends the run sooner), None before the first step.
        losses: [(step, training loss)], thinned to at most ``MAX_LOSS_POINTS``.
        val: [(epoch, metric name, value)] for validation loss / accuracy / macro-F1 at each epoch end.
        log: the last ``LOG_LINES`` human-readable lines; notes: every "message" event (e.g. trainable parameters).
    """

    phase: str = "preparing"
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    val: list[tuple[int, str, float]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        """Share of planned steps done, in [0, 1]."""
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


VAL_NAMES = {"val_loss": "validation loss", "val_accuracy": "validation accuracy",
             "val_macro_f1": "validation macro-F1"}


def _log_line(ev: dict) -> str | None:
    kind = ev.get("kind")
    if kind == "message" and ev.get("message"):
        return ev["message"]
    if kind == "start":
        return f"training started: {ev.get('total_steps', 0)} steps planned ({ev.get('message', '')})"
    if kind == "epoch":
        m = ev.get("metrics", {})
        parts = ", ".join(f"{VAL_NAMES.get(k, k)} {v:.4f}" for k, v in m.items())
        return f"epoch {ev.get('epoch', 0):.0f} done after {ev.get('elapsed_s', 0):.1f} s: {parts}"
    if kind == "end":
        return f"training {ev.get('message', 'ended')} after {ev.get('elapsed_s', 0):.1f} s"
    return None


def summarize(events: list[dict]) -> Progress:
    """Fold events (dicts as written by ``JsonlLogger``) into a :class:`Progress`."""
    p = Progress()
    losses: list[tuple[int, float]] = []
    log: list[str] = []
    for ev in events:
        kind = ev.get("kind")
        if kind == "start":
            p.phase, p.total_steps = "training", ev.get("total_steps", 0)
        elif kind == "step":
            p.step, p.total_steps = ev.get("step", 0), ev.get("total_steps", 0) or p.total_steps
            p.epoch, p.elapsed_s = ev.get("epoch", 0.0), ev.get("elapsed_s", 0.0)
            if ev.get("loss") is not None:
                losses.append((p.step, float(ev["loss"])))
        elif kind == "epoch":
            p.epoch, p.elapsed_s = ev.get("epoch", p.epoch), ev.get("elapsed_s", p.elapsed_s)
            p.val += [(int(ev.get("epoch", 0)), VAL_NAMES.get(k, k), float(v))
                      for k, v in ev.get("metrics", {}).items()]
        elif kind == "end":
            p.phase, p.elapsed_s = "evaluating", ev.get("elapsed_s", p.elapsed_s)
        elif kind == "message" and ev.get("message"):
            p.notes.append(ev["message"])
        line = _log_line(ev)
        if line:
            log.append(line)
    if p.step and p.total_steps and p.phase == "training":
        p.eta_s = p.elapsed_s / p.step * (p.total_steps - p.step)
    stride = max(1, len(losses) // MAX_LOSS_POINTS + (len(losses) % MAX_LOSS_POINTS > 0))
    p.losses = losses[::stride]
    p.log = log[-LOG_LINES:]
    return p
