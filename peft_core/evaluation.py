"""Held-out evaluation (scikit-learn metrics) with the majority-class baseline beside it, and the plots.

Metrics: accuracy, macro-F1 (unweighted mean of per-class F1 over the classes present in the split scored: a
class with no example there has no F1 to average, and counting it as 0 would understate every model; the
report's ``notes`` name such classes), per-class precision / recall / F1 / support,
confusion matrix (rows = true label, columns = predicted). The baseline predicts the most frequent training
label for every row, so a user sees what the model added over "always say the common class".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd


@dataclass
class EvalReport:
    """Evaluation of one model on one split. Scores are fractions in [0, 1]."""

    split: str
    n: int
    accuracy: float
    macro_f1: float
    baseline_label: str
    baseline_accuracy: float
    baseline_macro_f1: float
    labels: list[str]
    per_class: list[dict] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    macro_over: int | None = None  # classes the macro averages are over (None: all; reports before the field)
    task: str = "single_label"

    headline_name = "macro-F1"

    @property
    def headline(self) -> float:
        """The score the run is summed up by (history, compare): macro-F1."""
        return self.macro_f1

    @property
    def baseline_headline(self) -> float:
        return self.baseline_macro_f1

    def to_dict(self) -> dict:
        return asdict(self)

    def _macro_name(self) -> str:
        if self.macro_over is None or self.macro_over == len(self.labels):
            return "macro-F1"
        return f"macro-F1 (over the {self.macro_over} of {len(self.labels)} classes {within_split(self.split)})"

    def metrics_table(self) -> pd.DataFrame:
        """Model vs majority baseline: rows accuracy / macro-F1 (the name says when the average leaves out
        classes absent from the split)."""
        return pd.DataFrame({"metric": ["accuracy", self._macro_name()],
                             "model": [round(self.accuracy, 4), round(self.macro_f1, 4)],
                             f"baseline (always '{self.baseline_label}')": [round(self.baseline_accuracy, 4),
                                                                          round(self.baseline_macro_f1, 4)]})

    def per_class_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.per_class).round(4)

    def to_markdown(self) -> str:
        """The scores in one line, then the notes (classes left out of the macro averages)."""
        head = (f"{split_scope(self.split)} ({self.n} rows): accuracy **{self.accuracy:.4f}**, {self._macro_name()} "
                f"**{self.macro_f1:.4f}**; majority baseline (always '{self.baseline_label}'): accuracy "
                f"{self.baseline_accuracy:.4f}, macro-F1 {self.baseline_macro_f1:.4f}.")
        return "\n\n".join([head] + [f"Note: {n}" for n in self.notes])


#: the splits a run makes of its own data; a report on any other ``split`` is of a file scored after training
#: (``peft_core.scoring.evaluate_file`` names it by the file)
RUN_SPLITS = ("train", "validation", "test")


def split_scope(split: str) -> str:
    """How a report's first line names its rows: ``"Held-out test"`` for a run's own split, ``"File `new.csv`"``
    for a labelled file evaluated after training."""
    return f"Held-out {split}" if split in RUN_SPLITS else f"File `{split}`"


def within_split(split: str) -> str:
    """``"in the test split"`` for a run's own split, ``"in `new.csv`"`` for a file evaluated after training."""
    return f"in the {split} split" if split in RUN_SPLITS else f"in `{split}`"


def evaluate(y_true: Sequence[int], logits: np.ndarray, labels: Sequence[str], train_labels: Sequence[int],
             split: str = "test") -> EvalReport:
    """Score predictions.

    Args:
        y_true: int class ids [n].
        logits: float [n, num_labels] (argmax is the prediction).
        labels: label names in id order (len num_labels).
        train_labels: training class ids, to find the majority class.
    Returns:
        EvalReport; macro averages over the classes present in ``y_true`` (``notes`` names the others).
    Raises:
        ValueError: shapes disagree or no rows.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y = np.asarray(y_true)
    logits = np.asarray(logits)
    if len(y) == 0 or logits.shape != (len(y), len(labels)):
        raise ValueError(f"expected logits of shape ({len(y)}, {len(labels)}), got {logits.shape}")
    pred = logits.argmax(-1)
    ids = list(range(len(labels)))
    present = sorted(set(y.tolist()))
    majority = int(np.bincount(np.asarray(train_labels), minlength=len(labels)).argmax())
    base = np.full_like(y, majority)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=ids, zero_division=0)
    per_class = [{"label": labels[i], "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                  "support": int(s[i])} for i in ids]
    notes = []
    absent = [labels[i] for i in ids if i not in present]
    if absent:
        listed = ", ".join(map(repr, absent[:10])) + (", ..." if len(absent) > 10 else "")
        notes.append(f"the {split} split has no example of {len(absent)} of the {len(labels)} classes ({listed}): "
                     f"they have no F1, so macro-F1 (model and baseline) is averaged over the {len(present)} "
                     f"classes present; their per-class rows show support 0")
    return EvalReport(
        split=split, n=len(y), accuracy=float(accuracy_score(y, pred)),
        macro_f1=float(f1_score(y, pred, labels=present, average="macro", zero_division=0)),
        baseline_label=labels[majority], baseline_accuracy=float(accuracy_score(y, base)),
        baseline_macro_f1=float(f1_score(y, base, labels=present, average="macro", zero_division=0)),
        labels=list(labels), per_class=per_class, confusion=confusion_matrix(y, pred, labels=ids).tolist(),
        notes=notes, macro_over=len(present))


def _figure(w: float, h: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h), dpi=100)


TICK_CHARS = 18  # longer class names are shortened on the confusion matrix's axes (full names beside it)


def short_labels(labels: Sequence[str], width: int = TICK_CHARS) -> list[str]:
    """Axis labels: names longer than ``width`` characters cut to ``width - 1`` plus "…"; when cutting makes two
    labels equal, each shortened one is prefixed with its class id ("3: …")."""
    cut = [str(lab) if len(str(lab)) <= width else str(lab)[:width - 1] + "…" for lab in labels]
    if len(set(cut)) < len(cut):
        cut = [f"{i}: {c}" if c != str(lab) else c for i, (c, lab) in enumerate(zip(cut, labels))]
    return cut


def confusion_figure(report: EvalReport):
    """The confusion-matrix figure (see :func:`plot_confusion`); the caller closes it."""
    cm = np.asarray(report.confusion, dtype=float)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(report.labels)
    ticks = short_labels(report.labels)
    longer = [(t, str(lab)) for t, lab in zip(ticks, report.labels) if t != str(lab)]
    size = min(4 + 0.35 * k, 24)
    fig, ax = _figure(size + (3.5 if longer and k <= 20 else 0), size * 0.85)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true label")
    ax.set_xticks(range(k), ticks, rotation=90 if k > 6 or longer else 0, fontsize=8 if k > 20 else 10)
    ax.set_yticks(range(k), ticks, fontsize=8 if k > 20 else 10)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(f"Confusion matrix, {report.split} split ({report.n} rows)")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center",
                        color="white" if share[i, j] > 0.5 else "black", fontsize=9)
        if longer:  # the full names of the shortened labels, wrapped, to the right of the colour bar
            import textwrap

            names = "\n".join(textwrap.fill(f"{t} = {full}", 42, subsequent_indent="   ") for t, full in longer)
            fig.text(0.74, 0.5, "Full class names:\n" + names, ha="left", va="center", fontsize=7)
    fig.tight_layout(rect=(0, 0, 0.72, 1) if longer and k <= 20 else None)
    return fig


def plot_confusion(report: EvalReport, path: str | Path) -> Path:
    """Row-normalised confusion matrix (share of each true label), counts printed when there are <= 20
    classes. Class names longer than :data:`TICK_CHARS` are shortened on the axes (:func:`short_labels`) and,
    up to 20 classes, listed in full beside the matrix. Writes a PNG (nothing cut off at its edges: saved with
    a tight bounding box) and returns its path."""
    import matplotlib.pyplot as plt

    fig = confusion_figure(report)
    fig.savefig(path, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return Path(path)


def plot_training(step_losses: Sequence[float], history: Sequence[dict], score_name: str,
                  path: str | Path) -> Path:
    """Loss curve: training loss per step (light) and its moving average, validation loss per epoch, and the
    validation score (``val_score``, named ``score_name``; ``val_macro_f1`` in histories saved before task kinds)
    on a second axis. Writes a PNG and returns its path."""
    import matplotlib.pyplot as plt

    fig, ax = _figure(8, 4.5)
    steps = np.arange(1, len(step_losses) + 1)
    ax.plot(steps, step_losses, color="#9ecae1", lw=0.8, label="train loss (step)")
    if len(step_losses) >= 10:
        w = max(len(step_losses) // 50, 5)
        ax.plot(steps[w - 1:], np.convolve(step_losses, np.ones(w) / w, mode="valid"), color="#08519c",
                label=f"train loss (moving average over {w} steps)")
    per_epoch = len(step_losses) / max(len(history), 1)
    ep_steps = [h["epoch"] * per_epoch for h in history]
    ax.plot(ep_steps, [h["val_loss"] for h in history], "o-", color="#e6550d", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax2 = ax.twinx()
    scores = [h.get("val_score", h.get("val_macro_f1")) for h in history]
    ax2.plot(ep_steps, scores, "s--", color="#31a354", label=f"validation {score_name}")
    ax2.set_ylabel(f"validation {score_name}")
    ax2.set_ylim(min(0.0, *[v for v in scores if v is not None and np.isfinite(v)] or [0.0]), 1.02)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center right", fontsize=8)
    ax.set_title("Training progress")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def misclassified(images: Sequence, labels: Sequence[int], logits: np.ndarray, names: Sequence[str],
                  limit: int = 24) -> list[dict]:
    """The held-out examples the model got wrong, most confident mistakes first.

    Args:
        images: the inputs (image paths), labels: true ids [n], logits: float32 [n, num_labels].
    Returns:
        up to ``limit`` dicts: index, image, true, predicted (label names), confidence (softmax probability of
        the predicted label, 0..1).
    """
    logits = np.asarray(logits, dtype=np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    pred, y = probs.argmax(1), np.asarray(labels)
    wrong = np.flatnonzero(pred != y)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:limit]
    return [{"index": int(i), "image": images[i], "true": names[y[i]], "predicted": names[pred[i]],
             "confidence": float(probs[i, pred[i]])} for i in wrong]


def plot_misclassified(images: Sequence, labels: Sequence[int], logits: np.ndarray, names: Sequence[str],
                       path: str | Path, limit: int = 24) -> Path:
    """Gallery of misclassified held-out images (most confident mistakes first), each titled
    "true -> predicted (confidence)". Writes a PNG (a note instead when there is no mistake); returns its path."""
    import matplotlib.pyplot as plt

    from .images import load_rgb

    items = misclassified(images, labels, logits, names, limit)
    cols = 6
    rows = max(1, -(-len(items) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.4 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, it in zip(axes.flat, items):
        try:
            ax.imshow(load_rgb(it["image"]))
        except (ValueError, OSError):
            ax.text(0.5, 0.5, "image unavailable", ha="center", va="center")
        ax.set_title(f"{it['true']} → {it['predicted']}\n({100 * it['confidence']:.0f}%)", fontsize=9)
    n_wrong = int((np.asarray(logits).argmax(1) != np.asarray(labels)).sum())
    fig.suptitle(f"Misclassified held-out images: {n_wrong} of {len(labels)} (true → predicted, confidence)"
                 if n_wrong else f"No misclassified image among {len(labels)} held-out images", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
