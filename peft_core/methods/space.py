"""Search-space entries of the methods: which hyper-parameters a budgeted search (``peft_core.search``) tunes.

Each method module lists its knobs (``SEARCH_SPACE``, a tuple of :class:`Knob`); the registry carries them
(``Method.search_space``), so the search never names a method. Plain data, no optuna import: the search turns a
knob into the matching ``optuna.Trial.suggest_*`` call.
"""
from __future__ import annotations

from dataclasses import dataclass

KINDS = ("log", "float", "int", "choice")


@dataclass(frozen=True)
class Knob:
    """One tuned hyper-parameter.

    Attributes:
        where: "train" (a field of ``training.TrainConfig``) or "method" (a field of the method's config class).
        field: that field's name (e.g. "learning_rate", "num_layers", "r").
        kind: "log" (float, sampled on a log scale), "float", "int" (whole numbers) or "choice" (one of
            ``choices``).
        low / high: inclusive bounds (log / float / int).
        choices: the values of a "choice" knob.
        caps_epochs: True for the knob that sets the epochs: the search may lower its ``high`` (a test's or an
            operator's epoch cap, e.g. ``PEFT_MAX_EPOCHS``).
    """

    where: str
    field: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple = ()
    caps_epochs: bool = False

    def __post_init__(self) -> None:
        if self.where not in ("train", "method") or self.kind not in KINDS:
            raise ValueError(f"bad knob {self}: where must be train/method, kind one of {KINDS}")

    @property
    def label(self) -> str:
        """The name shown in the leaderboard (the field's name)."""
        return self.field


def epochs(low: int, high: int) -> Knob:
    """The epochs knob (whole numbers, cappable)."""
    return Knob("train", "epochs", "int", low, high, caps_epochs=True)


def head_dropout(high: float = 0.3) -> Knob:
    """The head's dropout probability, 0..``high``."""
    return Knob("train", "dropout", "float", 0.0, high)
