"""A run's record (``status.json``) and the owner tokens that guard it.

Owners are opaque tokens (the app keeps one per browser); only their SHA-256 is stored, and every call that
names a run checks it, so a caller sees only its own runs.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import asdict, dataclass, field

from ..errors import JobError

ACTIVE = ("queued", "running", "cancelling")

TERMINAL = ("finished", "failed", "cancelled", "interrupted")  # "interrupted": the app stopped while it trained



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
    from ..methods import get_method

    t = cfg.train.with_defaults(get_method(cfg.method).train_defaults)
    return {"epochs": t.epochs, "batch_size": t.batch_size, "learning_rate": t.learning_rate,
            "head_learning_rate": t.head_learning_rate, "max_length": t.max_length,
            "patience": t.early_stopping_patience, "weight_decay": t.weight_decay, "solver": t.solver,
            "method_config": dict(cfg.method_config)}


def _results(run) -> dict:
    r = run.train_result
    ev = run.eval_report
    return {"task": run.data.task.kind, "score_name": ev.headline_name, "score": ev.headline,
            "baseline_score": ev.baseline_headline, "accuracy": getattr(ev, "accuracy", None),
            "macro_f1": getattr(ev, "macro_f1", None), "baseline_accuracy": getattr(ev, "baseline_accuracy", None),
            "trainable_pct": 100 * run.trainable_parameters / run.total_parameters,
            "trainable_parameters": run.trainable_parameters, "best_epoch": r.best_epoch,
            "epochs_run": len(r.history), "stopped_early": r.stopped_early, "training_s": r.seconds,
            "precision": r.precision,
            "best_val_score": max((h["val_score"] for h in r.history), default=None), "val_score_name": r.score_name,
            "best_val_macro_f1": max((h.get("val_macro_f1", h["val_score"]) for h in r.history), default=None)}

