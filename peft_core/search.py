"""Budgeted search: "find the best settings" for a dataset within a wall-clock budget (Optuna, TPE + median pruning).

Each trial is a normal run (``pipeline.fine_tune`` through a runner, ``peft_core.search_runners``): it has its own
run folder, shows in the history, and can be compared, scored and exported like any other. The search space is
the method registry's: the method is a categorical over the allowed methods, then that method's knobs
(``Method.search_space``: learning rates or the L2 term, ``num_layers``, LoRA ``r`` / ``alpha``, epochs, head
dropout), sampled by Optuna's TPE sampler (Bergstra et al. 2011; seeded). Knob names are prefixed with the method
("last_n.learning_rate"), so each method keeps its own distributions and generic code never names a method.

Pruning: each finished epoch's validation score (the task kind's selection metric, ``val_score``: macro-F1 for
single-label) is reported as step = epoch; Optuna's ``MedianPruner`` stops a trial whose best score so far is below
the median of earlier completed trials of the same method at that epoch (methods differ too much per epoch to share
a median). A pruned run stops within one batch and keeps its best finished epoch, evaluated and saved.

Budget: a deadline. When it passes, the running trial is told to stop (the same stop flag as the app's cancel and
the CLI's Ctrl-C: its best finished epoch is kept, evaluated on the test split and saved, a few seconds), it is
recorded as "cut", and no trial starts after it (a run whose training has ended is left to finish its evaluation:
a stop then would discard its model). Before starting a trial whose method already ran, the search
skips it (an Optuna FAIL, which TPE ignores) when that method's fastest time to a model (to its first finished
epoch, plus evaluating and saving; from its second trial on) is over 1.5 times the time left; it stops when no
allowed method fits.

Choosing: the objective is the best validation score of the run (never a test metric). The best trial is the one
with the highest validation score among the trials that have a model: completed, pruned or cut (each is a real run
whose validation score was measured the same way). Test accuracy / macro-F1 are shown in the leaderboard, never
used to choose.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import optuna

from .callbacks import Control
from .errors import ConfigError
from .methods import METHODS, get_method
from .methods.space import Knob
from .search_board import leaderboard, mark_best, save_leaderboard, score_name  # noqa: F401  (public here)
from .training import max_epochs

#: trials in a row that may be skipped (their method does not fit the time left) before the search ends
MAX_SKIPS = 30
#: trials in a row that could not start before the search ends
MAX_START_FAILURES = 3
#: a method is skipped when its fastest known time to a model is over this many times the time left
SKIP_FACTOR = 1.5


class TrialHandle(Protocol):
    """A trial's run as a runner started it (see ``peft_core.search_runners``)."""

    run_id: str
    run_dir: Path

    def val_scores(self) -> list[float]:
        """Validation score of every finished epoch so far, in epoch order."""

    def stop(self) -> None:
        """Ask the run to stop within one batch (it keeps its best finished epoch)."""

    def evaluating(self) -> bool:
        """True once training has ended and the run evaluates and saves (a stop then would discard its model)."""

    def done(self) -> bool:
        """True once the run has ended (finished, cancelled or failed)."""

    def outcome(self) -> "TrialOutcome":
        """How the run ended (call once ``done``)."""


class Runner(Protocol):
    def start(self, number: int, cfg, name: str) -> TrialHandle:
        """Start trial ``number`` (0-based) as a normal run of ``cfg`` named ``name``."""


@dataclass
class TrialOutcome:
    """state: "finished", "cancelled" or "failed"; has_model; results: ``jobs.records._results`` of the run (test
    metrics: accuracy, macro_f1, score, score_name; best_val_score, val_score_name, epochs_run); error."""

    state: str
    has_model: bool
    results: dict = field(default_factory=dict)
    error: str | None = None


@dataclass
class TrialRecord:
    """One trial in the leaderboard. ``state``: "running", "complete", "pruned", "cut" (budget or stop; keeps its
    best epoch), "no model" (stopped before an epoch ended) or "failed". ``val_score``: best validation score (the
    objective; None without a model); ``test``: the run's test metrics (shown, never used to choose); ``seconds``: its
    wall time; ``started_s``: when it started, in seconds after the search began."""

    number: int
    method: str
    params: dict
    name: str
    state: str = "running"
    run_id: str = ""
    run_dir: str = ""
    val_scores: list = field(default_factory=list)
    val_score: float | None = None
    test: dict = field(default_factory=dict)
    seconds: float = 0.0
    started_s: float = 0.0
    error: str = ""
    best: bool = False

    def settings(self) -> str:
        """The sampled values for people: "r=8, alpha=16, learning_rate=3.2e-04, epochs=4, dropout=0.12"."""
        return ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class SearchResult:
    """The search's trials (in start order), its best trial, wall seconds, why it ended ("budget", "stopped",
    "no method fits the time left", "skipped too often"), the selection metric's name, the budget, how many sampled trials were skipped (too long
    for the time left), where the leaderboard was saved (None when no folder was given), and the Optuna study."""

    trials: list[TrialRecord]
    best: TrialRecord | None
    seconds: float
    ended: str
    score_name: str = "validation score"
    budget_s: float = 0.0
    skipped: int = 0
    saved: Path | None = None
    study: optuna.Study | None = None

    def leaderboard(self):
        """pandas DataFrame, best validation score first (see :func:`leaderboard`)."""
        return leaderboard(self.trials, self.score_name)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.2e}" if (v and (abs(v) < 1e-2 or abs(v) >= 1e4)) else f"{v:.3g}"
    return str(v)


def param_name(method: str, knob: Knob) -> str:
    """Optuna's name of a method's knob: "<method>.<field>" ("lora.r"), or "<method>.method.<field>" for a
    method option that shares a TrainConfig field's name."""
    clash = knob.where == "method" and any(k.where == "train" and k.field == knob.field
                                           for k in get_method(method).search_space)
    return f"{method}.{'method.' if clash else ''}{knob.field}"


def sample(trial, method: str, epoch_cap: int | None = None) -> dict[Knob, object]:
    """Ask ``trial`` (an ``optuna.Trial``) for every knob of ``method``'s search space -> {knob: value}.
    ``epoch_cap``: highest epochs any trial may train (lowers the epochs knob's range; at least 1)."""
    values = {}
    for k in get_method(method).search_space:
        name, low, high = param_name(method, k), k.low, k.high
        if k.caps_epochs and epoch_cap:
            high = max(1, min(high, epoch_cap))
            low = min(low, high)
        if k.kind == "choice":
            values[k] = trial.suggest_categorical(name, list(k.choices))
        elif k.kind == "int":
            values[k] = trial.suggest_int(name, int(low), int(high))
        else:
            values[k] = trial.suggest_float(name, float(low), float(high), log=k.kind == "log")
    return values


def trial_config(base, method: str, values: dict):
    """``base`` (a RunConfig: data, model, fixed hyper-parameters; None fields take each method's defaults) with
    ``method`` and the sampled knob values -> the trial's RunConfig (validated). The seed, and so the train /
    validation / test split, is the base's for every trial."""
    train = dataclasses.replace(base.train, **{k.field: v for k, v in values.items() if k.where == "train"})
    options = {k.field: v for k, v in values.items() if k.where == "method"}
    return dataclasses.replace(base, method=method, method_config=options, train=train)


def trial_name(number: int, method: str, params: dict) -> str:
    """"search 3 · lora r=8 alpha=16 learning_rate=3.2e-04 …" (at most 80 characters, the run-name limit)."""
    text = f"search {number + 1} · {method} " + " ".join(f"{k}={_fmt(v)}" for k, v in params.items())
    return text if len(text) <= 80 else text[:79] + "…"


def check_methods(methods) -> list[str]:
    """The allowed methods (None or empty: every registered one with a search space). Raises ConfigError for an
    unknown method or one with nothing to tune."""
    names = list(methods or [m for m, spec in METHODS.items() if spec.search_space])
    for name in names:
        if not get_method(name).search_space:
            raise ConfigError(f"method {name!r} has no search space to tune")
    if not names:
        raise ConfigError("no method to search over")
    return list(dict.fromkeys(names))


class SameMethodPruner(optuna.pruners.BasePruner):
    """An Optuna pruner that applies ``inner`` (e.g. ``optuna.pruners.MedianPruner``) comparing a trial only with
    the trials of the same method (its "method" parameter): a linear probe's epoch 3 and a LoRA run's epoch 3 are
    not comparable."""

    def __init__(self, inner: optuna.pruners.BasePruner) -> None:
        self.inner = inner

    def prune(self, study, trial) -> bool:
        return self.inner.prune(_SameMethod(study, trial.params.get("method")), trial)


class _SameMethod:
    """The members of ``optuna.Study`` a pruner reads, showing only the trials of one method."""

    def __init__(self, study, method) -> None:
        self._study, self._method = study, method
        self.direction, self.directions = study.direction, study.directions

    def get_trials(self, deepcopy: bool = True, states=None):
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states)
                if t.params.get("method") == self._method]


def make_study(seed: int, n_startup_trials: int = 2, n_warmup_steps: int = 2) -> optuna.Study:
    """A maximizing study with a seeded TPE sampler and a per-method ``MedianPruner``: a method's trials are
    pruned only once it has ``n_startup_trials`` completed trials, and from epoch ``n_warmup_steps`` on (steps
    are 1-based epochs: the default never prunes on the first epoch alone). Optuna's own log is kept to
    warnings."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps)
    return optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                               pruner=SameMethodPruner(pruner))


def run_search(base, budget_s: float, runner: Runner, methods=None, seed: int = 0,
               on_trial: Callable[[TrialRecord], None] | None = None, stop: Control | None = None,
               epoch_cap: int | None = None, out_dir: str | Path | None = None, study=None,
               poll_s: float = 0.2, clock: Callable[[], float] = time.monotonic) -> SearchResult:
    """Search for ``budget_s`` seconds of wall time (> 0) over ``methods`` (None: all) on ``base``'s data.

    Args:
        base: RunConfig with the data, model and fixed settings (its method and method_config are replaced).
        runner: starts each trial as a normal run (``search_runners.InProcessRunner`` / ``JobRunner``).
        seed: the TPE sampler's seed (the runs' own seed, and so the data split, is ``base.train.seed``).
        on_trial: called with a trial's record when it starts (state "running") and when it ends.
        stop: a stop flag (Ctrl-C, the app's Stop button): the running trial stops as at the deadline.
        epoch_cap: highest epochs per trial (default: the operator limit ``PEFT_MAX_EPOCHS`` when lower than the
            knobs' ranges). out_dir: where to write leaderboard.csv / leaderboard.json (None: nowhere).
        study: an Optuna study to use (default :func:`make_study`); poll_s: seconds between looks at the run.
    Returns:
        SearchResult. Raises ConfigError for a bad budget or method list.
    """
    if not (isinstance(budget_s, (int, float)) and math.isfinite(budget_s) and budget_s > 0):
        raise ConfigError(f"the search budget must be a positive number of seconds, got {budget_s!r}")
    methods = check_methods(methods)
    loop = _Loop(base, runner, methods, study or make_study(seed), min(epoch_cap or max_epochs(), max_epochs()),
                 on_trial, stop or Control(), poll_s, clock, budget_s)
    ended = None
    while ended is None:
        ended = loop.step()
    trials = loop.trials
    result = SearchResult(trials, mark_best(trials), clock() - loop.t0, ended, score_name(trials), budget_s,
                          loop.skipped, study=loop.study)
    if out_dir is not None:
        result.saved = save_leaderboard(result, out_dir, {"methods": methods, "seed": seed, "epoch_cap": loop.cap})
    return result


class _Loop:
    """The state of one search between trials: the study, the trials so far, each method's pace, the deadline."""

    def __init__(self, base, runner, methods, study, cap, on_trial, stop, poll_s, clock, budget_s) -> None:
        self.base, self.runner, self.methods, self.study, self.cap = base, runner, methods, study, cap
        self.on_trial, self.stop, self.poll_s, self.clock = on_trial, stop, poll_s, clock
        self.t0 = clock()
        self.deadline = self.t0 + budget_s
        self.trials: list[TrialRecord] = []
        self.pace: dict[str, list[float]] = {}
        self.skipped = 0

    def step(self) -> str | None:
        """Ask for a trial and run it (or skip it); returns why the search ends, None to go on."""
        left = self.deadline - self.clock()
        if self.stop.should_stop or left <= 0:
            return "stopped" if self.stop.should_stop else "budget"
        trial = self.study.ask()
        method = trial.suggest_categorical("method", self.methods)
        if _too_long(self.pace, method, left):
            self.study.tell(trial, state=_state("FAIL"))  # TPE ignores failed trials: no penalty for the method
            self.skipped += 1
            if all(_too_long(self.pace, m, left) for m in self.methods):
                return "no method fits the time left"
            return "skipped too often" if self.skipped >= MAX_SKIPS else None
        return self.run(trial, method, sample(trial, method, self.cap))

    def run(self, trial, method: str, values: dict) -> str | None:
        """Start the trial as a run, follow it to its end, record it; returns why the search ends, or None."""
        params = {k.label: v for k, v in values.items()}
        rec = TrialRecord(len(self.trials), method, params, trial_name(len(self.trials), method, params))
        self.trials.append(rec)
        started = self.clock()
        rec.started_s = started - self.t0
        try:
            handle = self.runner.start(rec.number, trial_config(self.base, method, values), rec.name)
        except Exception as e:  # noqa: BLE001 -- a trial that cannot start (bad value, quota) fails alone ...
            rec.state, rec.error = "failed", str(e)
            self.study.tell(trial, state=_state("FAIL"))
            _notify(self.on_trial, rec)
            recent = self.trials[-MAX_START_FAILURES:]
            if len(recent) == MAX_START_FAILURES and all(t.state == "failed" and not t.run_id for t in recent):
                return f"trials could not start: {e}"  # ... unless trials keep failing to start (disk quota)
            return None
        rec.run_id, rec.run_dir = handle.run_id, str(handle.run_dir)
        _notify(self.on_trial, rec)
        first, last = _follow(handle, trial, rec, self.deadline, self.stop, self.poll_s, self.clock)
        ended_at = self.clock()
        rec.seconds = ended_at - started
        _finish(self.study, trial, rec, handle.outcome())
        if first is not None:  # time to a model: to the first epoch, plus evaluating and saving
            self.pace.setdefault(method, []).append((first - started) + (ended_at - last))
        _notify(self.on_trial, rec)
        return None


def _too_long(pace: dict, method: str, left: float) -> bool:
    """True when ``method``'s fastest known time to a model, from its trials after the first (the first pays the
    one-time costs: imports, and the linear probe's feature encoding that later trials reuse), is over
    ``SKIP_FACTOR`` times the ``left`` seconds. A method with fewer than two such trials is never skipped."""
    times = pace.get(method, [])[1:]
    return bool(times) and min(times) > SKIP_FACTOR * left


def _state(name: str) -> optuna.trial.TrialState:
    return getattr(optuna.trial.TrialState, name)


def _notify(on_trial, rec: TrialRecord) -> None:
    if on_trial is not None:
        on_trial(rec)


def _follow(handle: TrialHandle, trial, rec: TrialRecord, deadline: float, stop: Control, poll_s: float,
            clock) -> tuple[float | None, float | None]:
    """Watch the run until it ends: report each new epoch's validation score to ``trial`` (step = epoch) and stop
    the run when Optuna prunes it, at the deadline, or on ``stop``. Sets ``rec.state`` to "pruned" / "cut" when it
    stopped the run. Returns the clock times the first and the last epoch were seen (None, None if none)."""
    first = last = None
    why = ""
    while True:
        finished = handle.done()
        scores = handle.val_scores()
        for score in scores[len(rec.val_scores):]:
            rec.val_scores.append(score)
            last = clock()
            first = first if first is not None else last
            trial.report(score, len(rec.val_scores))
            if not why and not finished and trial.should_prune() and not handle.evaluating():
                why = "pruned"
                handle.stop()
        if finished:
            break
        if not why and (clock() >= deadline or stop.should_stop) and not handle.evaluating():
            why = "cut"  # a run already evaluating finishes: stopping it then would discard a trained model
            handle.stop()
        time.sleep(poll_s)
    rec.state = why or rec.state
    return first, last


def _finish(study, trial, rec: TrialRecord, out: TrialOutcome) -> None:
    """Record how the trial's run ended in ``rec`` and tell Optuna: completed runs with their best validation
    score; pruned and cut ones as PRUNED (with their last reported score); runs without a model as FAIL."""
    res = out.results or {}
    best = res.get("best_val_score")
    if best is None and rec.val_scores:
        best = max((v for v in rec.val_scores if v == v), default=None)
    rec.test = {k: res.get(k) for k in ("accuracy", "macro_f1", "score", "score_name", "epochs_run",
                                        "best_epoch", "val_score_name") if k in res}
    if out.state == "failed" or not out.has_model:
        rec.state = "failed" if out.state == "failed" else "no model"
        rec.error = out.error or ""
        study.tell(trial, state=_state("FAIL"))
        return
    rec.val_score = None if best is None or best != best else float(best)
    if out.state == "cancelled":  # stopped by the pruner, the deadline or the stop flag: it kept its best epoch
        rec.state = rec.state if rec.state in ("pruned", "cut") else "cut"
        study.tell(trial, state=_state("PRUNED"))
    elif rec.val_score is None:
        rec.state = "complete"
        study.tell(trial, state=_state("FAIL"))  # no finite score to learn from
    else:
        rec.state = "complete"
        study.tell(trial, rec.val_score)
