"""What every task kind says about itself: the :class:`TaskKind` interface the generic code calls.

A task kind (``single_label``, ``multi_label``, ``regression``) turns the ``label`` column of the prepared
splits into training targets, gives the loss and the validation metrics that early stopping and best-epoch
selection follow, turns logits into predictions, scores held-out predictions beside a baseline, lists the rows
the model gets most wrong, and judges the int8 model. Generic code (training, pipeline, exporters, app, CLI)
calls these methods and never branches on a kind's name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from .spec import TaskSpec


@dataclass
class Objective:
    """The training objective of one run.

    Attributes:
        loss: ``loss(logits float32 [b, num_labels], targets [b, ...]) -> scalar tensor``.
        metrics: ``metrics(logits [n, num_labels], targets [n, ...]) -> dict`` of validation metrics, always with
            ``val_loss``, ``val_score`` and the kind's own named metrics.
        score_name: what ``val_score`` is, for people ("macro-F1", "micro-F1", "R²"); higher is better.
        weights: the class / label weights in the loss (None: unweighted), for the report.
        output_bias: starting bias of the head's output layer, one float per output (None: keep the layer's
            default init). Multi-label sets it to the training split's log-odds of each label, the "prior
            probability" initialisation of Lin et al. 2017 (Focal Loss, section 4.1), so that the first steps do
            not spend themselves pushing every rare label's probability down from 0.5.
    """

    loss: Callable
    metrics: Callable
    score_name: str
    weights: list[float] | None = None
    output_bias: list[float] | None = None


@dataclass
class Int8Verdict:
    """How the int8 model scores against fp32 on the held-out rows, in the kind's gate metric.

    Attributes:
        agreement: share of rows (0..1) where int8 gives what ``agreement_means`` says ("the same label as fp32";
            "the same label set as fp32"; "a value within 5 % of the target's standard deviation of fp32's").
        unit: how the change is stated: "pt" (percentage points of a share such as accuracy or F1) or "%"
            (percent of fp32's value, for errors such as RMSE).
    """

    metric: str
    fp32: float
    int8: float
    agreement: float
    limit: str  # the rule, in words
    acceptable: bool
    unit: str = "pt"
    agreement_means: str = "the same label as fp32"


class TaskKind:
    """Base of the registered task kinds; subclasses override every method (see the module doc)."""

    name = ""
    title = ""
    #: the validation metric early stopping and best-epoch selection follow (key of the history dicts)
    score_key = "val_score"
    #: whether :meth:`calibrate` fits anything (the pipeline then predicts the validation split once more)
    calibrates = False
    #: how the label audit (``peft_core.audit``) reads this kind's targets: "single" (one class id per row),
    #: "multi" (a 0/1 vector per row: cleanlab's ``multi_label=True``), or None: labels cannot be audited
    label_audit: str | None = None

    def targets(self, spec: TaskSpec, values: Sequence) -> torch.Tensor:
        """The split's ``label`` column as training targets (dtype and shape per kind)."""
        raise NotImplementedError

    def objective(self, spec: TaskSpec, train_targets: torch.Tensor, class_weights: bool = False) -> Objective:
        raise NotImplementedError

    def calibrate(self, spec: TaskSpec, val_values: Sequence, val_logits: np.ndarray) -> list[str]:
        """Fit what turns logits into predictions on the validation split (multi-label thresholds) into
        ``spec``; returns notes for the report. Default: nothing to fit."""
        return []

    def predict(self, spec: TaskSpec, logits: np.ndarray) -> list:
        """One prediction per row, in the user's terms: a label name, a list of label names, or a number."""
        raise NotImplementedError

    def evaluate(self, spec: TaskSpec, values: Sequence, logits: np.ndarray, train_values: Sequence,
                 split: str = "test"):
        """Held-out scores beside the kind's baseline: a report with ``to_dict``, ``to_markdown``,
        ``metrics_table``, ``per_class_table`` and ``headline``."""
        raise NotImplementedError

    def report_from_dict(self, d: dict):
        raise NotImplementedError

    def plots(self, spec: TaskSpec, report, values: Sequence, logits: np.ndarray, out_dir) -> dict:
        """The evaluation figures (name -> PNG path) written into ``out_dir``."""
        raise NotImplementedError

    def predictions_table(self, spec: TaskSpec, inputs: Sequence, values: Sequence,
                          logits: np.ndarray) -> pd.DataFrame:
        """Every held-out row with its true and predicted target, worst mistakes first: columns ``input``
        (``text_a`` / ``text_b`` for pairs), ``true``, ``predicted``, a kind-specific score column, ``wrong``."""
        raise NotImplementedError

    def int8_verdict(self, spec: TaskSpec, values: Sequence, fp32_logits: np.ndarray,
                     int8_logits: np.ndarray) -> Int8Verdict:
        raise NotImplementedError


#: column names of a predictions table that an input column must not take
TABLE_COLUMNS = {"true", "predicted", "confidence", "wrong", "error", "abs error", "labels wrong"}


def input_columns(inputs: Sequence, spec: TaskSpec | None = None) -> dict:
    """Inputs as table columns: ``input`` for texts or image paths; for pairs the file's own two column names
    (``spec.text_column`` / ``spec.text_pair_column``, e.g. premise / hypothesis), or ``text_a`` / ``text_b``
    when there is no spec or a name would clash with a table column. The input columns come first, before
    ``true``."""
    inputs = list(inputs)
    if inputs and isinstance(inputs[0], (tuple, list)):
        names = (spec.text_column, spec.text_pair_column) if spec is not None else (None, None)
        if not all(names) or names[0] == names[1] or set(names) & TABLE_COLUMNS:
            names = ("text_a", "text_b")
        return {names[0]: [a for a, _ in inputs], names[1]: [b for _, b in inputs]}
    return {"input": [str(x) for x in inputs]}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, float64 [n, k]."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function, float64."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
