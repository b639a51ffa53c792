"""Multi-label classification: any number of labels per row (one sigmoid per label).

Targets: multi-hot float32 [n, num_labels] (the prepared ``label`` column holds 0/1 lists). Loss:
``BCEWithLogitsLoss``, optionally with per-label ``pos_weight = negatives / positives`` of the training split
(PyTorch's documented use of ``pos_weight``); without it the head's bias starts at each label's training log-odds.
Validation during training scores micro-averaged average precision (threshold-free; what early stopping and
best-epoch selection follow) beside micro- / macro-F1 at 0.5. After training, each label gets a decision threshold
tuned on the validation split (:func:`tune_thresholds`): its own F1-best one when it has at least
``MIN_POSITIVES`` (20) validation positives, a shared micro-F1-best one when it has fewer, 0.5 when it has none.
Held-out metrics: micro-, macro- (over labels with a positive in the split) and
samples-F1 (scikit-learn, ``zero_division=1``: a row with no true and no predicted label counts as right), subset
accuracy, Hamming loss, per-label precision / recall / F1 / support / threshold. Baseline: every label present in
more than half the training rows, else the single most frequent label, predicted for every row. int8 gate:
micro-F1 within 1 point of fp32.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..evaluation import split_scope, within_split
from .base import Int8Verdict, Objective, TaskKind, input_columns, sigmoid
from .spec import TaskSpec

INT8_MAX_MICRO_F1_DROP = 0.01


def multi_hot(values: Sequence, k: int | None = None) -> np.ndarray:
    """0/1 lists [n][k] as an int64 array [n, k] (shape (0, k) when empty)."""
    arr = np.asarray([list(v) for v in values], dtype=np.int64)
    return arr.reshape(len(arr), -1 if len(arr) else (k or 0))


# a label needs this many validation positives for a threshold of its own: an F1-best cut placed on fewer is mostly
# noise (on the 1,500-row GoEmotions sample, 150 validation rows, own cuts from 5 positives up gave test micro-F1
# 0.303, below always-"neutral"'s 0.322; from 20 up 0.369; on the full set 0.4532 and 0.4534)
MIN_POSITIVES = 20
THRESHOLD_RANGE = (0.05, 0.95)


def _best_cut(y: np.ndarray, p: np.ndarray) -> float:
    """The probability cut maximising F1 of (y int [n], p float [n]): halfway between the last probability taken
    as positive and the next lower one, so that ``p >= cut`` reproduces the choice."""
    order = np.argsort(-p, kind="stable")
    p, t = p[order], y[order]
    f1 = 2 * np.cumsum(t) / (np.arange(1, len(p) + 1) + t.sum())
    last = np.r_[p[1:] != p[:-1], True]  # only cut between distinct probabilities
    best = int(np.flatnonzero(last)[np.argmax(f1[last])])
    lower = p[best + 1] if best + 1 < len(p) else 0.0
    return float((p[best] + lower) / 2)


def tune_thresholds(y: np.ndarray, probs: np.ndarray, min_positives: int = MIN_POSITIVES) -> list[float]:
    """Per-label decision thresholds from a validation split (y int [n, k], probs float [n, k]); a row is
    positive for label j when ``probs[:, j] >= threshold[j]``.

    * a label with at least ``min_positives`` positives: the threshold maximising its own F1;
    * a label with 1 .. min_positives-1 positives: one shared threshold, the one maximising micro-F1 over all
      labels together (a handful of rows cannot place a cut of their own: tuned on 2 positives a threshold lands
      wherever those 2 happen to score);
    * a label with no positive: 0.5.
    Every tuned threshold is clipped to :data:`THRESHOLD_RANGE`.
    """
    lo, hi = THRESHOLD_RANGE
    pos = y.sum(0)
    shared = float(np.clip(_best_cut(y.ravel(), probs.ravel()), lo, hi)) if pos.any() else 0.5
    return [0.5 if pos[j] == 0 else shared if pos[j] < min_positives else
            float(np.clip(_best_cut(y[:, j], probs[:, j]), lo, hi)) for j in range(y.shape[1])]


@dataclass
class MultiLabelReport:
    """Held-out evaluation of a multi-label model (fractions in [0, 1]; Hamming loss: share of wrong label cells)."""

    split: str
    n: int
    micro_f1: float
    macro_f1: float
    samples_f1: float
    subset_accuracy: float
    hamming_loss: float
    baseline_labels: list[str]
    baseline: dict
    labels: list[str]
    per_class: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    macro_over: int | None = None
    task: str = "multi_label"

    headline_name = "micro-F1"

    @property
    def headline(self) -> float:
        return self.micro_f1

    @property
    def baseline_headline(self) -> float:
        return self.baseline["micro_f1"]

    def to_dict(self) -> dict:
        return asdict(self)

    def _baseline_name(self) -> str:
        return "baseline (always {" + ", ".join(self.baseline_labels) + "})"

    def metrics_table(self) -> pd.DataFrame:
        names = ["micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"]
        macro = "macro-F1" if self.macro_over in (None, len(self.labels)) else \
            f"macro-F1 (over the {self.macro_over} of {len(self.labels)} labels {within_split(self.split)})"
        shown = ["micro-F1", macro, "samples-F1", "subset accuracy", "Hamming loss (lower is better)"]
        return pd.DataFrame({"metric": shown, "model": [round(getattr(self, k), 4) for k in names],
                             self._baseline_name(): [round(self.baseline[k], 4) for k in names]})

    def per_class_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.per_class).round(4)

    def to_markdown(self) -> str:
        head = (f"{split_scope(self.split)} ({self.n} rows): micro-F1 **{self.micro_f1:.4f}**, macro-F1 "
                f"**{self.macro_f1:.4f}**, samples-F1 {self.samples_f1:.4f}, subset accuracy "
                f"{self.subset_accuracy:.4f}, Hamming loss {self.hamming_loss:.4f}; {self._baseline_name()}: "
                f"micro-F1 {self.baseline['micro_f1']:.4f}, macro-F1 {self.baseline['macro_f1']:.4f}.")
        return "\n\n".join([head] + [f"Note: {n}" for n in self.notes])


def _scores(y: np.ndarray, pred: np.ndarray, present: list[int]) -> dict:
    from sklearn.metrics import f1_score, hamming_loss

    return {"micro_f1": float(f1_score(y, pred, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(y, pred, labels=present, average="macro", zero_division=0)) if present else 0.0,
            "samples_f1": float(f1_score(y, pred, average="samples", zero_division=1)),
            "subset_accuracy": float((y == pred).all(1).mean()), "hamming_loss": float(hamming_loss(y, pred))}


class MultiLabel(TaskKind):
    name = "multi_label"
    title = "Multi-label classification"
    score_key = "val_micro_ap"
    calibrates = True
    label_audit = "multi"

    def targets(self, spec: TaskSpec, values) -> torch.Tensor:
        return torch.as_tensor(multi_hot(values, spec.num_labels), dtype=torch.float32)  # [n, k]

    def objective(self, spec: TaskSpec, train_targets: torch.Tensor, class_weights: bool = False) -> Objective:
        pos_weight = None
        if class_weights:
            pos = train_targets.sum(0)
            pos_weight = ((len(train_targets) - pos) / pos.clamp(min=1)).float()

        def loss(logits, y):
            w = pos_weight.to(logits.device) if pos_weight is not None else None
            return nn.functional.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), pos_weight=w)

        def metrics(logits, y):
            from sklearn.metrics import average_precision_score, f1_score

            true, probs = y.numpy().astype(int), sigmoid(logits.float().numpy())
            pred = (probs >= 0.5).astype(int)
            present = np.flatnonzero(true.sum(0)).tolist()
            micro = float(f1_score(true, pred, average="micro", zero_division=0))
            macro = float(f1_score(true, pred, labels=present, average="macro", zero_division=0)) if present else 0.0
            ap = float(average_precision_score(true, probs, average="micro")) if true.any() else 0.0
            return {"val_loss": float(loss(logits, y)), "val_micro_f1": micro, "val_macro_f1": macro,
                    "val_micro_ap": ap, "val_score": ap}

        prior = None
        if pos_weight is None:  # with label weights the balanced optimum starts at 0 (the layer's default)
            p = (train_targets.float().mean(0) if len(train_targets) else torch.zeros(spec.num_labels))
            p = p.clamp(1e-3, 1 - 1e-3)
            prior = torch.log(p / (1 - p)).tolist()
        # early stopping follows micro-averaged average precision (the area under the precision-recall curve of
        # every label cell pooled; sklearn's average_precision_score): it needs no threshold, as thresholds are
        # tuned only after training. F1 at 0.5 stays 0 for many epochs on rare labels; F1 at thresholds tuned on
        # the same small validation split overfits it and picks epochs by noise.
        return Objective(loss, metrics, "micro-AP", None if pos_weight is None else pos_weight.tolist(),
                         output_bias=prior)

    def calibrate(self, spec: TaskSpec, val_values, val_logits) -> list[str]:
        y = multi_hot(val_values, spec.num_labels)
        spec.thresholds = tune_thresholds(y, sigmoid(val_logits))
        absent = [spec.labels[j] for j in range(spec.num_labels) if not y[:, j].any()]
        few = int(((y.sum(0) > 0) & (y.sum(0) < MIN_POSITIVES)).sum())
        notes = [f"decision thresholds tuned on the validation split ({len(y)} rows): per label for its own F1"
                 + (f"; {few} label(s) with fewer than {MIN_POSITIVES} validation positives share the micro-F1-best "
                    "threshold" if few else "")]
        if absent:
            notes.append(f"{len(absent)} label(s) have no validation positive and keep threshold 0.5: "
                         + ", ".join(map(repr, absent[:10])) + (", ..." if len(absent) > 10 else ""))
        return notes

    def decide(self, spec: TaskSpec, logits) -> np.ndarray:
        """0/1 int [n, k]: probability >= the label's threshold (0.5 before tuning)."""
        t = np.asarray(spec.thresholds or [0.5] * spec.num_labels)
        return (sigmoid(logits) >= t).astype(int)

    def predict(self, spec: TaskSpec, logits) -> list:
        return [[spec.id2label[j] for j in np.flatnonzero(row)] for row in self.decide(spec, logits)]

    def evaluate(self, spec: TaskSpec, values, logits, train_values, split: str = "test") -> MultiLabelReport:
        from sklearn.metrics import precision_recall_fscore_support

        y, train = multi_hot(values, spec.num_labels), multi_hot(train_values, spec.num_labels)
        if len(y) == 0 or np.asarray(logits).shape != y.shape:
            raise ValueError(f"expected logits of shape {y.shape}, got {np.asarray(logits).shape}")
        pred = self.decide(spec, logits)
        share = train.mean(0)
        base_ids = np.flatnonzero(share > 0.5).tolist() or [int(share.argmax())]
        base = np.zeros_like(y)
        base[:, base_ids] = 1
        present = np.flatnonzero(y.sum(0)).tolist()
        p, r, f, s = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
        t = spec.thresholds or [0.5] * spec.num_labels
        per = [{"label": spec.labels[j], "precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]),
                "support": int(s[j]), "threshold": float(t[j])} for j in range(spec.num_labels)]
        notes = [f"{(y.sum(1) == 0).sum()} of the {len(y)} {split} rows have no label"] if (y.sum(1) == 0).any() else []
        if len(present) < spec.num_labels:
            notes.append(f"{spec.num_labels - len(present)} label(s) have no positive in the {split} split: macro-F1 "
                         f"is averaged over the other {len(present)}")
        return MultiLabelReport(split=split, n=len(y), **_scores(y, pred, present),
                                baseline_labels=[spec.labels[j] for j in base_ids], baseline=_scores(y, base, present),
                                labels=spec.labels, per_class=per, notes=notes, macro_over=len(present))

    def report_from_dict(self, d: dict) -> MultiLabelReport:
        return MultiLabelReport(**d)

    def plots(self, spec: TaskSpec, report, values, logits, out_dir, inputs=None) -> dict:
        return {"evaluation": plot_per_label(report, Path(out_dir) / "per_label_f1.png")}

    def predictions_table(self, spec: TaskSpec, inputs, values, logits) -> pd.DataFrame:
        y, pred, probs = multi_hot(values, spec.num_labels), self.decide(spec, logits), sigmoid(logits)
        names = np.asarray(spec.labels, dtype=object)
        diff = (y != pred).sum(1)
        # confidence of the decision: mean distance of each label's probability from its threshold
        t = np.asarray(spec.thresholds or [0.5] * spec.num_labels)
        df = pd.DataFrame({**input_columns(inputs, spec), "true": ["; ".join(names[r == 1]) for r in y],
                           "predicted": ["; ".join(names[r == 1]) for r in pred], "labels wrong": diff,
                           "confidence": np.abs(probs - t).mean(1).round(4), "wrong": diff > 0})
        return df.sort_values(["labels wrong", "confidence"], ascending=[False, False],
                              kind="stable").reset_index(drop=True)

    def int8_verdict(self, spec: TaskSpec, values, fp32_logits, int8_logits) -> Int8Verdict:
        from sklearn.metrics import f1_score

        y = multi_hot(values, spec.num_labels)
        a, b = self.decide(spec, fp32_logits), self.decide(spec, int8_logits)
        fp32 = float(f1_score(y, a, average="micro", zero_division=0))
        int8 = float(f1_score(y, b, average="micro", zero_division=0))
        return Int8Verdict("micro-F1", fp32, int8, float((a == b).all(1).mean()),
                           f"micro-F1 at most {100 * INT8_MAX_MICRO_F1_DROP:g} point below fp32",
                           fp32 - int8 <= INT8_MAX_MICRO_F1_DROP + 1e-12, "pt", "the same label set as fp32")


def plot_per_label(report: MultiLabelReport, path) -> Path:
    """Horizontal bars: each label's held-out F1 (labels sorted by F1, support in the tick label), the micro-F1 as
    a dashed line. Writes a PNG and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(report.per_class, key=lambda r: r["f1"])
    fig, ax = plt.subplots(figsize=(7.5, max(3.0, 0.28 * len(rows) + 1.2)), dpi=100)
    ax.barh(range(len(rows)), [r["f1"] for r in rows], color="#3182bd")
    ax.set_yticks(range(len(rows)), [f"{r['label']} ({r['support']})" for r in rows], fontsize=8)
    ax.axvline(report.micro_f1, color="#e6550d", ls="--", label=f"micro-F1 {report.micro_f1:.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"F1 on the {report.split} split (label (positives))")
    ax.set_title(f"Per-label F1, {report.split} split ({report.n} rows)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
