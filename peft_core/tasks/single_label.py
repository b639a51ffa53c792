"""Single-label classification: one class per row (softmax over ``num_labels`` logits).

Targets: int64 class ids [n]. Loss: cross-entropy, optionally with "balanced" class weights
(``n_rows / (num_labels * rows_of_class)``, scikit-learn's ``compute_class_weight("balanced")``). Validation:
accuracy and macro-F1 over the classes present; selection follows macro-F1. Held-out evaluation, plots and the
majority baseline are in ``peft_core.evaluation``. int8 gate: accuracy within 1 point of fp32.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .base import Int8Verdict, Objective, TaskKind, input_columns, softmax
from .spec import TaskSpec

INT8_MAX_ACCURACY_DROP = 0.01


class SingleLabel(TaskKind):
    name = "single_label"
    title = "Single-label classification"
    score_key = "val_macro_f1"
    label_audit = "single"

    def targets(self, spec: TaskSpec, values: Sequence) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.int64))  # [n]

    def objective(self, spec: TaskSpec, train_targets: torch.Tensor, class_weights: bool = False) -> Objective:
        weights = None
        if class_weights:
            counts = torch.bincount(train_targets, minlength=spec.num_labels).float()
            weights = (len(train_targets) / (spec.num_labels * counts.clamp(min=1))).float()

        def loss(logits, y):
            w = weights.to(logits.device) if weights is not None else None
            return nn.functional.cross_entropy(logits, y, weight=w)

        def metrics(logits, y):
            from sklearn.metrics import accuracy_score, f1_score

            pred, true = logits.argmax(-1).numpy(), y.numpy()
            # over the classes present in the validation split: a class with no example there has no F1
            f1 = float(f1_score(true, pred, labels=np.unique(true), average="macro", zero_division=0))
            return {"val_loss": float(loss(logits, y)), "val_accuracy": float(accuracy_score(true, pred)),
                    "val_macro_f1": f1, "val_score": f1}

        return Objective(loss, metrics, "macro-F1", None if weights is None else weights.tolist())

    def predict(self, spec: TaskSpec, logits: np.ndarray) -> list:
        return [spec.id2label[int(i)] for i in np.asarray(logits).argmax(-1)]

    def evaluate(self, spec: TaskSpec, values, logits, train_values, split: str = "test"):
        from ..evaluation import evaluate

        return evaluate(values, logits, spec.labels, train_values, split)

    def report_from_dict(self, d: dict):
        from ..evaluation import EvalReport

        return EvalReport(**{k: v for k, v in d.items() if k != "task"})

    def plots(self, spec: TaskSpec, report, values, logits, out_dir, inputs=None) -> dict:
        from pathlib import Path

        from ..evaluation import plot_confusion, plot_misclassified

        out = {"evaluation": plot_confusion(report, Path(out_dir) / "confusion_matrix.png")}
        if spec.modality == "image" and inputs is not None:
            out["misclassified"] = plot_misclassified(inputs, values, logits, spec.labels,
                                                      Path(out_dir) / "misclassified.png")
        return out

    def predictions_table(self, spec: TaskSpec, inputs, values, logits) -> pd.DataFrame:
        probs = softmax(logits)
        pred, y = probs.argmax(1), np.asarray(values, dtype=np.int64)
        df = pd.DataFrame({**input_columns(inputs, spec), "true": [spec.id2label[int(i)] for i in y],
                           "predicted": [spec.id2label[int(i)] for i in pred],
                           "confidence": probs[np.arange(len(y)), pred].round(4), "wrong": pred != y})
        return df.sort_values(["wrong", "confidence"], ascending=[False, False], kind="stable").reset_index(drop=True)

    def int8_verdict(self, spec: TaskSpec, values, fp32_logits, int8_logits) -> Int8Verdict:
        y = np.asarray(values)
        a, b = np.asarray(fp32_logits).argmax(-1), np.asarray(int8_logits).argmax(-1)
        fp32, int8 = float((a == y).mean()), float((b == y).mean())
        return Int8Verdict("accuracy", fp32, int8, float((a == b).mean()),
                           f"accuracy at most {100 * INT8_MAX_ACCURACY_DROP:g} point below fp32",
                           fp32 - int8 <= INT8_MAX_ACCURACY_DROP + 1e-12)
