"""Follow a run's ``events.jsonl``: what phase it is in, how far, how long is left, its curves and a short log.

The trainer appends one JSON line per :class:`~peft_core.callbacks.ProgressEvent`; a viewer (the app's timer,
a script) reads the file again and again. :class:`EventTail` reads only the bytes added since its last call and
never a half-written line; :func:`summarize` turns the events seen so far into a :class:`Progress`, whose time
estimates come from each phase's own pace; :func:`format_duration` writes them for people.
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


#: a phase's own ETA needs at least this many units of it done (steps or rows) ...
MIN_DONE = 2
#: ... and this many seconds of that phase behind it; until then its ETA is None ("estimating…")
MIN_BASIS_S = 2.0


def format_duration(seconds: float | None) -> str:
    """A duration in words for people: "12 s", "4 min 12 s", "1 h 05 min" (from one hour on, minutes rounded);
    "estimating…" for None (no basis yet). Negative values read as 0 s. The app and the CLI both use it."""
    if seconds is None:
        return "estimating…"
    s = max(0, round(float(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    hours, minutes = divmod(round(s / 60), 60)
    return f"{hours} h {minutes:02d} min"


@dataclass
class Progress:
    """A run's progress as seen from its events (what the app's status line and the CLI show).

    The phase now running (from the "phase" events, ``callbacks.PHASES``):

    - ``phase``: "preparing" (reading the data, loading the base model), "encoding" (computing the frozen
      layers' outputs once: the feature cache; only methods that cache, and again for an LP-FT probe),
      "training" (optimizer steps, with a validation pass at each epoch end), "evaluating" (training ended:
      the held-out rows, then saving), or an export phase ("exporting", "parity", "int8", "bundle") when those
      events reach the same log. "preparing" before any event.
    - ``phase_done`` / ``phase_total``: units of that phase done / planned: steps for "preparing" (2: data,
      model) and "training" (optimizer steps; the total shrinks to the steps run when early stopping ends
      training), rows for "encoding" and "evaluating". ``phase_fraction``: their ratio in [0, 1].
    - ``phase_elapsed_s``: seconds since the phase began (as of its last event).
    - ``phase_eta_s``: seconds left in this phase at this phase's own pace (elapsed / done x left), as of the
      last event; None ("estimating…") until the phase has a basis: at least ``MIN_DONE`` units done and
      ``MIN_BASIS_S`` seconds behind it; 0.0 once it is done.

    The whole run:

    - ``eta_s``: seconds left, built only from phases with a basis: while training, the training ETA, from the
      training steps alone (their pace since training began, validation passes included, after the caching, so
      a slow cache is never projected over every epoch); an upper bound, as early stopping may end training
      sooner, and it leaves out the held-out evaluation that follows (usually shorter than one epoch). While
      evaluating: that phase's ETA. None while preparing or encoding (nothing yet says how long training will
      take; show ``phase_eta_s`` then) and whenever the current phase has no basis.
    - ``step`` / ``total_steps``: optimizer steps done / planned (a finished run: both the steps it ran, when
      early stopping or a converged L-BFGS fit ended it before the plan). ``epoch``: epochs done (fractional inside an
      epoch). ``elapsed_s``: seconds since training began (``train`` was called: caching included).
    - ``losses``: [(step, training loss)], thinned to at most ``MAX_LOSS_POINTS``.
    - ``val``: [(epoch, metric name, value)] for validation loss / accuracy / macro-F1 at each epoch end.
    - ``log``: the last ``LOG_LINES`` human-readable lines (phase starts and ends included); ``notes``: every
      "message" event (e.g. trainable parameters).
    - ``updated``: Unix seconds of the last event (0.0 before any): the ETAs are as of then.

    Format durations with :func:`format_duration`.
    """

    phase: str = "preparing"
    phase_done: int = 0
    phase_total: int = 0
    phase_elapsed_s: float = 0.0
    phase_eta_s: float | None = None
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    val: list[tuple[int, str, float]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    updated: float = 0.0

    @property
    def fraction(self) -> float:
        """Share of planned optimizer steps done, in [0, 1]."""
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def phase_fraction(self) -> float:
        """Share of the current phase done, in [0, 1]."""
        return min(1.0, self.phase_done / self.phase_total) if self.phase_total else 0.0


VAL_NAMES = {"val_loss": "validation loss", "val_accuracy": "validation accuracy",
             "val_macro_f1": "validation macro-F1", "val_micro_f1": "validation micro-F1 (at 0.5)",
             "val_micro_ap": "validation micro-AP",
             "val_rmse": "validation RMSE", "val_r2": "validation R²"}
PHASE_WORDS = {"preparing": "preparing: reading the data and loading the base model",
               "encoding": "encoding: computing the frozen layers' outputs once for {total:,} rows",
               "evaluating": "evaluating on {total:,} held-out rows"}


def _log_line(ev: dict) -> str | None:
    kind = ev.get("kind")
    if kind == "message" and ev.get("message"):
        return ev["message"]
    if kind == "phase" and ev.get("message") != "training":
        name, done, total = ev.get("message", ""), ev.get("step", 0), ev.get("total_steps", 0)
        if done == 0:
            return PHASE_WORDS.get(name, name + "…").format(total=total)
        if done >= total:
            return f"{name} done in {format_duration(ev.get('elapsed_s', 0))}"
        return None
    if kind == "start":
        return f"training started: {ev.get('total_steps', 0)} steps planned ({ev.get('message', '')})"
    if kind == "epoch":
        m = ev.get("metrics", {})
        parts = ", ".join(f"{VAL_NAMES.get(k, k)} {v:.4f}" for k, v in m.items() if k != "val_score")
        return f"epoch {ev.get('epoch', 0):.0f} done after {ev.get('elapsed_s', 0):.1f} s: {parts}"
    if kind == "end":
        return f"training {ev.get('message', 'ended')} after {ev.get('elapsed_s', 0):.1f} s"
    return None


class _Phases:
    """Folds events into the current phase's fields of a :class:`Progress`."""

    def __init__(self, p: Progress) -> None:
        self.p, self.train_t0 = p, 0.0

    def begin(self, name: str, total: int) -> None:
        p = self.p
        p.phase, p.phase_done, p.phase_total, p.phase_elapsed_s = name, 0, total, 0.0

    def update(self, done: int, total: int, elapsed_s: float) -> None:
        p = self.p
        p.phase_done, p.phase_total, p.phase_elapsed_s = done, total, max(0.0, elapsed_s)

    def on_event(self, ev: dict) -> None:
        kind, p = ev.get("kind"), self.p
        done, total = ev.get("step", 0), ev.get("total_steps", 0)
        if kind == "phase":
            if ev.get("message") != p.phase or done == 0:
                self.begin(ev.get("message", ""), total)
            self.update(done, total, ev.get("elapsed_s", 0.0))
        elif kind == "start":
            self.train_t0 = ev.get("elapsed_s", 0.0)  # training steps' clock starts after the caching
            self.begin("training", total)
        elif kind == "step" and p.phase == "training":
            self.update(done, total or p.phase_total, ev.get("elapsed_s", 0.0) - self.train_t0)
        elif kind == "end" and p.phase == "training":
            self.begin("evaluating", 0)

    def eta(self) -> float | None:
        p = self.p
        if p.phase_total and p.phase_done >= p.phase_total:
            return 0.0
        if p.phase_done < MIN_DONE or p.phase_elapsed_s < MIN_BASIS_S:
            return None
        return p.phase_elapsed_s / p.phase_done * (p.phase_total - p.phase_done)


def summarize(events: list[dict]) -> Progress:
    """Fold events (dicts as written by ``JsonlLogger``) into a :class:`Progress`."""
    p = Progress()
    phases = _Phases(p)
    losses: list[tuple[int, float]] = []
    log: list[str] = []
    for ev in events:
        kind = ev.get("kind")
        phases.on_event(ev)
        p.updated = ev.get("time", p.updated)
        if kind == "start":
            p.total_steps = ev.get("total_steps", 0)
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
            p.elapsed_s = ev.get("elapsed_s", p.elapsed_s)
            if ev.get("message") == "finished" and ev.get("total_steps"):  # ended before the plan (early stopping,
                p.step = p.total_steps = ev["total_steps"]                  # L-BFGS converged): all it needed
        elif kind == "message" and ev.get("message"):
            p.notes.append(ev["message"])
        line = _log_line(ev)
        if line:
            log.append(line)
    p.phase_eta_s = phases.eta()
    p.eta_s = p.phase_eta_s if p.phase in ("training", "evaluating") else None
    stride = max(1, len(losses) // MAX_LOSS_POINTS + (len(losses) % MAX_LOSS_POINTS > 0))
    p.losses = losses[::stride]
    p.log = log[-LOG_LINES:]
    return p
