"""Out-of-fold linear probes and cleanlab's confident learning: the numeric half of the label audit.

:data:`AUDITS` holds one :class:`LabelAudit` per value of ``TaskKind.label_audit`` ("single": one class per row,
"multi": any number of labels per row). Each one

1. fits k-fold linear probes on frozen features (scikit-learn: ``StandardScaler`` then ``LogisticRegression``;
   single-label: one multinomial probe per fold, folds stratified by class (``StratifiedKFold``); multi-label:
   one binary probe per label per fold, plain shuffled ``KFold`` since multi-label rows cannot be stratified), so
   every row gets predicted probabilities from a probe that never saw it (out-of-fold, float64 [n, num_labels]);
2. passes the given labels and those probabilities to ``cleanlab.filter.find_label_issues`` (Northcutt et al. 2021,
   "Confident Learning", JAIR 70; ``filter_by="prune_by_noise_rate"``, cleanlab's default), ranked by
   ``self_confidence`` (the out-of-fold probability of the given label, lowest first);
3. says what the probe would label each row (``suggest``) and how sure it is.

No own confident-learning code: cleanlab decides which rows are issues.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

#: the probes' inverse L2 strength on standardised features: 0.1 flagged the planted flips of bench/audit_noise.py
#: better than scikit-learn's default 1.0 (SMS top-N precision 0.87 vs 0.74 on 800 rows, banking77 0.82 vs 0.83 with
#: 694 vs 1042 rows flagged), since a weaker-regularised probe fits the flipped labels of its own folds
PROBE_C = 0.1
#: multi-label: a label is suggested when its out-of-fold probability is at least this
MULTI_THRESHOLD = 0.5


def _probe():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=200, tol=1e-3))


def check_folds(folds: int, n: int) -> None:
    """Raises ConfigError unless 2 <= folds <= n (rows)."""
    from .errors import ConfigError

    if not 2 <= int(folds) <= n:
        raise ConfigError(f"folds must be between 2 and the number of audited rows ({n}), got {folds}")


class LabelAudit:
    """How one kind of classification target is audited (see the module doc)."""

    #: cleanlab's ``multi_label`` flag
    multi = False

    def labels(self, values) -> object:
        """The targets as cleanlab takes them."""
        raise NotImplementedError

    def out_of_fold(self, x: np.ndarray, values, num_labels: int, folds: int, seed: int,
                    tick: Callable[[float], None]) -> np.ndarray:
        """Out-of-fold probabilities float64 [n, num_labels] from k-fold probes on features ``x`` float32
        [n, hidden]; ``tick(share done)`` after each fold."""
        raise NotImplementedError

    def issues(self, values, probs: np.ndarray) -> np.ndarray:
        """Indices of the rows cleanlab flags, most likely mislabelled first: int64 [m]."""
        from cleanlab.filter import find_label_issues

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(find_label_issues(self.labels(values), probs, multi_label=self.multi,
                                                return_indices_ranked_by="self_confidence"), dtype=np.int64)

    def suggest(self, values, probs: np.ndarray) -> tuple[list, np.ndarray, np.ndarray]:
        """(suggested target per row, the probe's confidence in it float64 [n], its probability of the given
        target float64 [n])."""
        raise NotImplementedError


class SingleLabelAudit(LabelAudit):
    """One class id per row; ``suggest`` gives the most probable class and its probability."""

    def labels(self, values) -> np.ndarray:
        return np.asarray(values, dtype=np.int64)

    def out_of_fold(self, x, values, num_labels, folds, seed, tick):
        from sklearn.model_selection import StratifiedKFold

        y = self.labels(values)
        probs = np.zeros((len(y), num_labels))
        with warnings.catch_warnings():  # classes with fewer rows than folds: sklearn warns, the split still works
            warnings.simplefilter("ignore")
            parts = list(StratifiedKFold(int(folds), shuffle=True, random_state=seed).split(x, y))
            for i, (fit, held) in enumerate(parts):
                clf = _probe().fit(x[fit], y[fit])
                probs[np.ix_(held, clf.classes_)] = clf.predict_proba(x[held])
                tick((i + 1) / len(parts))
        return probs

    def suggest(self, values, probs):
        y = self.labels(values)
        best = probs.argmax(1)
        return best.tolist(), probs[np.arange(len(y)), best], probs[np.arange(len(y)), y]


class MultiLabelAudit(LabelAudit):
    """A 0/1 vector per row; cleanlab's ``multi_label=True`` takes the class ids present in each row."""

    multi = True

    def labels(self, values) -> list[list[int]]:
        return [[j for j, v in enumerate(row) if v] for row in values]

    def out_of_fold(self, x, values, num_labels, folds, seed, tick):
        from sklearn.model_selection import KFold

        y = np.asarray(list(values), dtype=np.int64)  # [n, k]
        probs = np.zeros(y.shape)
        parts = list(KFold(int(folds), shuffle=True, random_state=seed).split(x))
        for i, (fit, held) in enumerate(parts):
            for j in range(num_labels):
                col = y[fit, j]
                if col.min() == col.max():  # the label is never (or always) on in this fold's training rows
                    probs[held, j] = float(col[0])
                else:
                    probs[held, j] = _probe().fit(x[fit], col).predict_proba(x[held])[:, 1]
            tick((i + 1) / len(parts))
        return probs

    def suggest(self, values, probs):
        """Suggested set: labels with probability >= MULTI_THRESHOLD. Confidence: the lowest probability among
        the changes it makes (the probability of "on" for an added label, of "off" for a removed one), or, for an
        unchanged set, the lowest probability of any label's state. Probability of the given set: the lowest
        probability of any given label's state."""
        y = np.asarray(list(values), dtype=bool)
        on = probs >= MULTI_THRESHOLD
        state = np.where(on, probs, 1 - probs)  # probability of the suggested state of each label
        given = np.where(y, probs, 1 - probs)
        changed = on != y
        conf = np.where(changed.any(1), np.where(changed, state, np.inf).min(1), state.min(1))
        return [np.flatnonzero(r).tolist() for r in on], conf, given.min(1)


#: one audit per value of ``TaskKind.label_audit``
AUDITS: dict[str, LabelAudit] = {"single": SingleLabelAudit(), "multi": MultiLabelAudit()}
