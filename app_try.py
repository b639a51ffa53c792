"""Try it, per task kind: one row's logits -> what step 4 shows (no gradio here).

:data:`TRY_VIEWS` has one entry per task kind of ``peft_core.tasks.TASKS`` (a test checks that every registered
kind has one); the app looks the selected run's kind up there and never names a kind itself. Each entry turns
logits float32 [1, num_labels] into a :class:`TryView`: the value of the page's label widget (also the answer of
the ``/predict`` API: the prediction in the user's terms), an optional per-label table, and a one-line summary.
Predictions come from the kind itself (``get_task(spec).predict``), so they match the held-out evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from peft_core.tasks import TaskSpec, get_task
from peft_core.tasks.base import sigmoid, softmax

TABLE_COLUMNS = ["label", "probability", "threshold", "chosen"]


@dataclass
class TryView:
    """What the page shows for one prediction.

    Attributes:
        label: a label name -> probability dict (single-label: the Label widget shows the top 5), or the
            prediction as text (multi-label: the chosen labels "; "-joined, "" for none; regression: the number).
        table: every label's probability, threshold and whether it is chosen (multi-label), else None.
        summary: markdown, one line.
    """

    label: dict | str
    table: pd.DataFrame | None
    summary: str


@dataclass
class TryKind:
    """A task kind's Try it: ``view(spec, logits [1, k]) -> TryView``; ``shows_label`` / ``shows_table``: which
    of the label widget and the table the page shows for it; ``label_title``: the label widget's title
    (``{target}``: the target column)."""

    view: Callable[[TaskSpec, np.ndarray], TryView]
    shows_label: bool
    shows_table: bool
    label_title: str = "Prediction"


def _single_label(spec: TaskSpec, logits: np.ndarray) -> TryView:
    probs = softmax(logits)[0]
    best = get_task(spec).predict(spec, logits)[0]
    return TryView({name: float(p) for name, p in zip(spec.labels, probs)}, None,
                   f"Predicted class: **{best}** (probability {probs.max():.3f}).")


def _multi_label(spec: TaskSpec, logits: np.ndarray) -> TryView:
    probs = sigmoid(logits)[0]
    thresholds = np.asarray(spec.thresholds or [0.5] * spec.num_labels, dtype=np.float64)
    chosen = get_task(spec).predict(spec, logits)[0]
    table = pd.DataFrame({"label": spec.labels, "probability": probs.round(4), "threshold": thresholds.round(4),
                          "chosen": ["yes" if name in chosen else "" for name in spec.labels]})
    table = table.sort_values("probability", ascending=False, kind="stable").reset_index(drop=True)
    if chosen:
        summary = "Predicted labels: " + "; ".join(f"**{name}**" for name in chosen) + \
                  f" ({len(chosen)} of {spec.num_labels} reach their threshold)."
    else:
        top = table.iloc[0]
        summary = (f"No label reaches its threshold (closest: {top['label']}, probability {top['probability']:.3f} "
                   f"< {top['threshold']:.3f}).")
    return TryView("; ".join(chosen), table, summary)


def _regression(spec: TaskSpec, logits: np.ndarray) -> TryView:
    value = float(get_task(spec).predict(spec, logits)[0])
    target = spec.labels[0]
    scale = (f" (the training rows' mean is {spec.target_mean:.4g}, standard deviation {spec.target_std:.4g})"
             if spec.target_mean is not None and spec.target_std is not None else "")
    return TryView(f"{value:.4g}", None, f"Predicted **{target}**: **{value:.4g}**, in the target's own units{scale}.")


TRY_VIEWS: dict[str, TryKind] = {
    "single_label": TryKind(_single_label, True, False, "Predicted class (top 5 probabilities)"),
    "multi_label": TryKind(_multi_label, False, True, "Chosen labels"),
    "regression": TryKind(_regression, True, False, "Predicted {target} (in its own units)")}


def try_kind(spec: TaskSpec) -> TryKind:
    """The Try it entry of a spec's task kind."""
    return TRY_VIEWS[get_task(spec).name]


def try_view(spec: TaskSpec, logits) -> TryView:
    """One row's logits (float [1, num_labels] or [num_labels]) -> what the page shows for the spec's kind."""
    return try_kind(spec).view(spec, np.asarray(logits, dtype=np.float64).reshape(1, -1))


def text_inputs(spec: TaskSpec, text: str | None, text_pair: str | None) -> list:
    """The model input of one Try it row: [text], or [(text, text_pair)] for pair runs.

    Raises:
        ValueError: a box the run needs is empty (the message names it by its column).
    """
    if not (text or "").strip():
        raise ValueError(f"type a text to predict from (column `{spec.text_column}`)")
    if spec.input_kind != "text_pair":
        return [text]  # a second box left from a pair run is ignored: this run takes one text
    if not (text_pair or "").strip():
        raise ValueError(f"this run takes two texts: fill the second box too (column `{spec.text_pair_column}`)")
    return [(text, text_pair)]
