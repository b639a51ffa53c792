"""The epoch bookkeeping every solver shares, and the full-batch L-BFGS fit of a head on cached features.

``solver="lbfgs"`` (the linear probe's default): when only the head trains and its inputs are cached pooled
features (``feeds.FeatureFeed``), the head is fit on all training rows at once, as scikit-learn's
``LogisticRegression`` does (solver ``lbfgs``), instead of by mini-batch AdamW. The cost of an iteration is one
[rows x hidden] x [hidden x outputs] product and its gradient, with no per-batch Python work, so the fit stays
small next to the encoding pass at any class count (bench/probe.py measures it).

Objective, per row (mean over the n training rows): the task kind's loss (cross-entropy, BCE with logits, MSE)
plus the L2 penalty ``weight_decay / (2 n) * ||W||^2`` on the head's weight matrices (not on biases). That is
scikit-learn's ``LogisticRegression`` objective ``1/2 ||W||^2 + C * sum(loss)`` divided by ``C n``, with
``C = 1 / weight_decay`` (scikit-learn user guide, "Logistic regression", the L2 penalty); the default
``weight_decay`` 0.1 is ``C = 10``. The fit walks a short regularisation path, warm-started as scikit-learn's
``LogisticRegressionCV`` walks its Cs: L2 of ``weight_decay`` until it converges or early stopping ends the stage,
then one tenth of it (C x 10); the iteration with the best validation score over both stages is kept, so
validation picks the L2 strength. Dropout is off during the fit: a full-batch objective must not be random, and
the L2 term is the regulariser. An "epoch" is one L-BFGS iteration (SciPy's ``minimize(method="L-BFGS-B")``: one
full-batch gradient and a line search): validation, early stopping (per stage) and the best-weights rule run after
each, as after an AdamW epoch; ``epochs`` caps the iterations of both stages together.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from .callbacks import Phase, ProgressEvent

#: L-BFGS memory (pairs of past steps kept), scikit-learn's / SciPy's default ``maxcor`` is 10
HISTORY = 10
#: the regularisation path: L2 of weight_decay, then weight_decay / 10 (C = 1/weight_decay, then 10/weight_decay)
PATH = (1.0, 10.0)


class BestEpochs:
    """Early stopping and best-weights bookkeeping after each epoch (see ``training.train``): keep the trainable
    weights of the epoch with the best validation score (ties: lower loss); stop after ``patience`` epochs in which
    neither the score nor the loss improved (0: never)."""

    def __init__(self, model: nn.Module, patience: int) -> None:
        self.model, self.patience = model, patience
        self.best, self.key, self.bad, self.top, self.low, self.epoch = None, None, 0, -np.inf, np.inf, 0

    def update(self, epoch: int, metrics: dict) -> bool:
        """Record ``metrics`` (val_score, val_loss) of ``epoch``; returns True when patience has run out."""
        score = metrics["val_score"] if np.isfinite(metrics["val_score"]) else -np.inf
        key = (round(score, 6), -round(metrics["val_loss"], 6))
        if self.key is None or key > self.key:  # keep the weights with the best score (then lowest loss)
            self.key, self.epoch = key, epoch
            self.best = {k: v.detach().clone() for k, v in self.model.named_parameters() if v.requires_grad}
        # patience runs out only when neither the score nor the loss improved: a head still moving off the
        # majority class lowers the loss for several epochs before its macro-F1 moves
        stop = False
        if score > self.top + 1e-6 or metrics["val_loss"] < self.low - 1e-6:
            self.bad = 0
        else:
            self.bad += 1
            stop = bool(self.patience) and self.bad >= self.patience
        self.top, self.low = max(self.top, score), min(self.low, metrics["val_loss"])
        return stop

    def restore(self) -> None:
        """Load the best epoch's weights back into the model (nothing when no epoch finished)."""
        if self.best is not None:
            self.model.load_state_dict(self.best, strict=False)


def lbfgs_fit(model: nn.Module, feed, labels: dict, objective, cfg, emit: Callable, control, res,
              t0: float, check_finite: Callable[[float, str, str], None], where: str = "") -> None:
    """Fit the trainable head of ``model`` on ``feed.features`` (float32 [n, hidden] per split) with full-batch
    L-BFGS (SciPy's ``minimize(method="L-BFGS-B")``, the solver behind scikit-learn's ``LogisticRegression``) for
    up to ``cfg.epochs`` iterations; fills ``res`` (history, step_losses = the training loss after each iteration,
    best_epoch, stopped_early, cancelled) and restores the best iteration's weights.

    Every process of a multi-process run fits the same head on the same gathered features (no gradient sync).
    Emits "start", "step" (one per iteration), "epoch" and "phase" ("training") events; ``control`` stops it
    between iterations. ``check_finite(value, what, where)`` raises ``NonFiniteError`` for a NaN / infinite loss.
    ``where``: the processes and device, for the "start" message.
    """
    from scipy.optimize import minimize

    from .callbacks import StopRequested

    module = feed.module
    head = _Flat([p for p in module.parameters() if p.requires_grad])
    x, y = feed.features["train"], labels["train"]
    # the regularisation path: weight_decay, then a tenth of it from where the first stage ended (warm start, as
    # scikit-learn's LogisticRegressionCV walks its Cs); the best validation iteration of either is kept
    path = [float(cfg.weight_decay) / max(len(x), 1) / f for f in PATH]
    stage = {"lam": path[0], "last": False}

    def penalty() -> torch.Tensor:
        return 0.5 * stage["lam"] * sum(p.pow(2).sum() for p in head.params if p.ndim >= 2)

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:  # objective and its gradient, float64 for SciPy
        head.set(theta)
        for p in head.params:
            p.grad = None
        with torch.enable_grad():
            loss = objective.loss(module(input=x), y) + penalty()
            loss.backward()
        return float(loss.detach()), head.grad()

    keeper = BestEpochs(model, cfg.early_stopping_patience)
    phase = Phase(emit, "training", cfg.epochs, control, every_s=1.0)

    def after_iteration(intermediate_result) -> None:  # SciPy calls it with each accepted iterate
        it = len(res.step_losses) + 1
        head.set(intermediate_result.x)
        with torch.no_grad():
            train_loss = float(intermediate_result.fun) - float(penalty())
            check_finite(train_loss, "training loss", f"iteration {it}")
            res.step_losses.append(train_loss)
            emit(ProgressEvent("step", it, cfg.epochs, float(it), train_loss, elapsed_s=time.perf_counter() - t0))
            metrics = objective.metrics(module(input=feed.features["validation"]).float(), labels["validation"])
        check_finite(metrics["val_loss"], "validation loss", f"the end of iteration {it}")
        res.history.append({"epoch": it, "train_loss": train_loss, **metrics})
        emit(ProgressEvent("epoch", it, cfg.epochs, it, metrics=metrics, elapsed_s=time.perf_counter() - t0))
        phase.advance()
        if keeper.update(it, metrics):
            res.stopped_early = stage["last"]
            raise StopIteration  # SciPy ends this stage

    c = " then ".join(f"{f / cfg.weight_decay:g}" for f in PATH) if cfg.weight_decay else "inf"
    emit(ProgressEvent("start", 0, cfg.epochs, message=f"{len(x)} training rows; cache: {feed.kind}; full-batch "
                       f"L-BFGS (L2: C = {c}){where}", elapsed_s=time.perf_counter() - t0))
    was_training = module.training
    module.eval()  # dropout off: the full-batch objective is deterministic; L2 regularises instead
    try:
        phase.start()
        for i, lam in enumerate(path if cfg.weight_decay else path[:1]):
            left = cfg.epochs - len(res.step_losses)
            if left <= 0:
                break
            stage.update(lam=lam, last=i == len(path) - 1 or not cfg.weight_decay)
            keeper.bad = 0  # a weaker L2 gets its own patience
            minimize(fun, head.get(), jac=True, method="L-BFGS-B", callback=after_iteration,
                     options={"maxiter": left, "maxcor": HISTORY})
        phase.finish(len(res.step_losses))
    except StopRequested as e:
        res.cancelled, res.cancelled_in = True, e.phase
    finally:
        module.train(was_training)
    res.best_epoch = keeper.epoch
    keeper.restore()


class _Flat:
    """A list of parameters seen as one float64 vector (SciPy's view of them)."""

    def __init__(self, params: list) -> None:
        self.params = params

    def get(self) -> np.ndarray:
        return torch.cat([p.detach().reshape(-1) for p in self.params]).double().cpu().numpy()

    @torch.no_grad()
    def set(self, theta: np.ndarray) -> None:
        flat, i = torch.from_numpy(np.asarray(theta, dtype=np.float64)), 0
        for p in self.params:
            p.copy_(flat[i:i + p.numel()].view_as(p).to(p.dtype))
            i += p.numel()

    def grad(self) -> np.ndarray:
        return torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1)
                          for p in self.params]).double().cpu().numpy()
