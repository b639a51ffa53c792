"""Regression: one number per row (one linear output).

The target is standardised for training, ``z = (y - mean) / std`` with the training split's mean and population
standard deviation (kept in the TaskSpec and the bundle), and the loss is MSE on ``z``; predictions are
``logit * std + mean``, reported in the target's own units. Validation: RMSE (own units) and R²; selection follows
R² (on a fixed validation split the same order as MSE). Held-out metrics: RMSE, MAE, R² (scikit-learn), Pearson and
Spearman correlation (scipy), beside the baseline that predicts the training mean for every row. int8 gate: RMSE
within 2 % of fp32's.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..evaluation import split_scope
from .base import Int8Verdict, Objective, TaskKind, input_columns
from .spec import TaskSpec

INT8_MAX_RMSE_RISE = 0.02


def _scores(y: np.ndarray, pred: np.ndarray) -> dict:
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, r2_score

    const = np.ptp(pred) == 0 or np.ptp(y) == 0  # correlations are undefined for a constant
    return {"rmse": float(np.sqrt(np.mean((y - pred) ** 2))), "mae": float(mean_absolute_error(y, pred)),
            "r2": float(r2_score(y, pred)) if len(y) > 1 else float("nan"),
            "pearson": float("nan") if const else float(pearsonr(y, pred)[0]),
            "spearman": float("nan") if const else float(spearmanr(y, pred)[0])}


@dataclass
class RegressionReport:
    """Held-out evaluation of a regression model: errors in the target's units, R² and correlations unitless."""

    split: str
    n: int
    target: str
    rmse: float
    mae: float
    r2: float
    pearson: float
    spearman: float
    baseline_value: float
    baseline: dict
    labels: list[str] = field(default_factory=list)
    per_class: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    task: str = "regression"

    headline_name = "RMSE"

    @property
    def headline(self) -> float:
        return self.rmse

    @property
    def baseline_headline(self) -> float:
        return self.baseline["rmse"]

    def to_dict(self) -> dict:
        return asdict(self)

    def metrics_table(self) -> pd.DataFrame:
        names = ["rmse", "mae", "r2", "pearson", "spearman"]
        shown = [f"RMSE ({self.target}, lower is better)", f"MAE ({self.target}, lower is better)", "R²",
                 "Pearson r", "Spearman ρ"]
        return pd.DataFrame({"metric": shown, "model": [round(getattr(self, k), 4) for k in names],
                             f"baseline (always the training mean {self.baseline_value:.4g})":
                             [round(self.baseline[k], 4) for k in names]})

    def per_class_table(self) -> pd.DataFrame:
        return pd.DataFrame(columns=["label", "precision", "recall", "f1", "support"])

    def to_markdown(self) -> str:
        head = (f"{split_scope(self.split)} ({self.n} rows), target `{self.target}`: RMSE **{self.rmse:.4f}**, MAE "
                f"{self.mae:.4f}, R² **{self.r2:.4f}**, Pearson {self.pearson:.4f}, Spearman {self.spearman:.4f}; "
                f"baseline (always the training mean {self.baseline_value:.4g}): RMSE {self.baseline['rmse']:.4f}, "
                f"MAE {self.baseline['mae']:.4f}.")
        return "\n\n".join([head] + [f"Note: {n}" for n in self.notes])


class Regression(TaskKind):
    name = "regression"
    title = "Regression"
    score_key = "val_r2"

    def _mean_std(self, spec: TaskSpec) -> tuple[float, float]:
        return float(spec.target_mean or 0.0), float(spec.target_std or 1.0)

    def targets(self, spec: TaskSpec, values) -> torch.Tensor:
        mean, std = self._mean_std(spec)
        return torch.as_tensor((np.asarray(values, dtype=np.float64) - mean) / std, dtype=torch.float32)[:, None]

    def objective(self, spec: TaskSpec, train_targets: torch.Tensor, class_weights: bool = False) -> Objective:
        mean, std = self._mean_std(spec)

        def loss(logits, y):
            return nn.functional.mse_loss(logits, y.to(logits.dtype))

        def metrics(logits, y):
            z, t = logits.double().numpy()[:, 0], y.double().numpy()[:, 0]
            mse = float(np.mean((z - t) ** 2))
            var = float(np.var(t))
            r2 = 1 - mse / var if var > 0 else float("nan")
            return {"val_loss": mse, "val_rmse": float(np.sqrt(mse)) * std, "val_r2": r2, "val_score": r2}

        return Objective(loss, metrics, "R²")

    def values(self, spec: TaskSpec, logits) -> np.ndarray:
        """Predictions in the target's units: float64 [n]."""
        mean, std = self._mean_std(spec)
        return np.asarray(logits, dtype=np.float64)[:, 0] * std + mean

    def predict(self, spec: TaskSpec, logits) -> list:
        return [float(v) for v in self.values(spec, logits)]

    def evaluate(self, spec: TaskSpec, values, logits, train_values, split: str = "test") -> RegressionReport:
        y = np.asarray(values, dtype=np.float64)
        if len(y) == 0 or np.asarray(logits).shape != (len(y), 1):
            raise ValueError(f"expected logits of shape ({len(y)}, 1), got {np.asarray(logits).shape}")
        mean = float(np.mean(np.asarray(train_values, dtype=np.float64)))
        return RegressionReport(split=split, n=len(y), target=spec.labels[0], **_scores(y, self.values(spec, logits)),
                                baseline_value=mean, baseline=_scores(y, np.full_like(y, mean)), labels=spec.labels)

    def report_from_dict(self, d: dict) -> RegressionReport:
        return RegressionReport(**d)

    def plots(self, spec: TaskSpec, report, values, logits, out_dir, inputs=None) -> dict:
        return {"evaluation": plot_regression(np.asarray(values, dtype=np.float64), self.values(spec, logits),
                                              report, Path(out_dir) / "regression.png")}

    def predictions_table(self, spec: TaskSpec, inputs, values, logits) -> pd.DataFrame:
        y, pred = np.asarray(values, dtype=np.float64), self.values(spec, logits)
        err = pred - y
        df = pd.DataFrame({**input_columns(inputs, spec), "true": y, "predicted": pred.round(4),
                           "error": err.round(4), "abs error": np.abs(err).round(4)})
        # "wrong": further off than the baseline's typical miss (its RMSE around the training mean)
        df["wrong"] = np.abs(err) > np.std(y) if len(y) > 1 else False
        return df.sort_values("abs error", ascending=False, kind="stable").reset_index(drop=True)

    def int8_verdict(self, spec: TaskSpec, values, fp32_logits, int8_logits) -> Int8Verdict:
        y = np.asarray(values, dtype=np.float64)
        a, b = self.values(spec, fp32_logits), self.values(spec, int8_logits)
        fp32, int8 = float(np.sqrt(np.mean((a - y) ** 2))), float(np.sqrt(np.mean((b - y) ** 2)))
        close = float(np.mean(np.abs(a - b) <= 0.05 * max(float(np.std(y)), 1e-12)))
        return Int8Verdict("RMSE", fp32, int8, close, f"RMSE at most {100 * INT8_MAX_RMSE_RISE:g} % above fp32's",
                           int8 <= fp32 * (1 + INT8_MAX_RMSE_RISE) + 1e-12, "%",
                           "a value within 5 % of the target's standard deviation of fp32's")


def plot_regression(y: np.ndarray, pred: np.ndarray, report: RegressionReport, path) -> Path:
    """Two panels: predicted vs true with the y = x diagonal, and the histogram of residuals (predicted - true).
    Writes a PNG and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.4), dpi=100)
    ax.scatter(y, pred, s=10, alpha=0.5, color="#3182bd")
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="#636363", ls="--", lw=1, label="predicted = true")
    ax.axhline(report.baseline_value, color="#e6550d", lw=1, label=f"training mean {report.baseline_value:.3g}")
    ax.set_xlabel(f"true {report.target}")
    ax.set_ylabel(f"predicted {report.target}")
    ax.set_title(f"Predicted vs true ({report.split}, {report.n} rows): R² {report.r2:.3f}, "
                 f"Spearman {report.spearman:.3f}", fontsize=10)
    ax.legend(fontsize=8)
    ax2.hist(pred - y, bins=30, color="#9ecae1", edgecolor="#3182bd")
    ax2.axvline(0, color="#636363", ls="--", lw=1)
    ax2.set_xlabel(f"residual (predicted - true), {report.target} units")
    ax2.set_ylabel("rows")
    ax2.set_title(f"Residuals: RMSE {report.rmse:.3f} (training mean: {report.baseline['rmse']:.3f})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
