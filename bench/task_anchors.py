"""Reference numbers for the task kinds (issue 15), measured outside our training loop.

* ``tfidf``: TF-IDF word 1-2-gram baselines fit on train, scored on test (scikit-learn): GoEmotions one-vs-rest
  logistic regression (threshold 0.5), EmoBank valence and STS-B (subset) ridge regression, SNLI logistic
  regression on the two texts joined; beside each, the trivial baseline (always "neutral" / the training mean /
  the majority class).
* ``probe``: the anchor for our ``head`` method on GoEmotions: scikit-learn ``OneVsRestClassifier(
  LogisticRegression)`` on the same frozen MiniLM features (pooled, normalised: ``TextClassifier.features``) of
  the same train / validation / test split our run uses (``prepare_data`` on the same files and seed), with
  per-label thresholds tuned on validation the same way (``peft_core.tasks.multi_label.tune_thresholds``).
* ``zeroshot``: STS-B (subset) Spearman of the base model's own sentence-embedding cosine similarity on test,
  the reference for a trained pair-regression run.

Usage: ``python bench/task_anchors.py tfidf|probe|zeroshot [--data-dir ../shared/data]``; prints the CPU line.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.cpu import cpu_line  # noqa: E402


def _read(d: Path, name: str, split: str) -> pd.DataFrame:
    return pd.read_csv(d / name / f"{split}.csv", keep_default_na=False)


def _tfidf():
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2))


def tfidf(d: Path) -> None:
    """Print the four TF-IDF baselines and their trivial baselines."""
    from scipy.stats import spearmanr
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import MultiLabelBinarizer

    tr, te = _read(d, "goemotions", "train"), _read(d, "goemotions", "test")
    mlb = MultiLabelBinarizer().fit([s.split(";") for s in tr["labels"]])
    ytr, yte = mlb.transform([s.split(";") for s in tr["labels"]]), mlb.transform([s.split(";") for s in te["labels"]])
    vec = _tfidf()
    pred = OneVsRestClassifier(LogisticRegression(max_iter=1000)).fit(vec.fit_transform(tr["text"]), ytr).predict(
        vec.transform(te["text"]))
    neutral = np.zeros_like(yte)
    neutral[:, list(mlb.classes_).index("neutral")] = 1
    print(f"goemotions OvR LogReg: micro-F1 {f1_score(yte, pred, average='micro'):.3f} macro-F1 "
          f"{f1_score(yte, pred, average='macro', zero_division=0):.3f}; always neutral: micro-F1 "
          f"{f1_score(yte, neutral, average='micro'):.3f} macro-F1 "
          f"{f1_score(yte, neutral, average='macro', zero_division=0):.3f}")
    for name, target, a, b in (("emobank", "valence", "text", None), ("stsb_ccbysa_subset", "score", "sentence1",
                                                                       "sentence2")):
        tr, te = _read(d, name, "train"), _read(d, name, "test")
        text = (lambda f: f[a] + " [SEP] " + f[b]) if b else (lambda f: f[a])
        vec = _tfidf()
        p = Ridge().fit(vec.fit_transform(text(tr)), tr[target]).predict(vec.transform(text(te)))
        y = te[target].to_numpy(float)
        print(f"{name} Ridge: RMSE {np.sqrt(np.mean((p - y) ** 2)):.3f} Spearman {spearmanr(y, p)[0]:.3f}; "
              f"train mean: RMSE {np.sqrt(np.mean((tr[target].mean() - y) ** 2)):.3f}")
    tr, te = _read(d, "snli_devtest", "train"), _read(d, "snli_devtest", "test")
    vec = _tfidf()
    join = lambda f: f["premise"] + " [SEP] " + f["hypothesis"]  # noqa: E731
    p = LogisticRegression(max_iter=1000).fit(vec.fit_transform(join(tr)), tr["label"]).predict(vec.transform(join(te)))
    print(f"snli LogReg: accuracy {accuracy_score(te['label'], p):.3f}; majority: "
          f"{(te['label'] == tr['label'].mode()[0]).mean():.3f}")


def _features(texts, max_length: int = 128) -> np.ndarray:
    """Frozen MiniLM pooled features (what the ``head`` method trains on): float32 [n, 384]."""
    from peft_core.inference import map_sorted
    from peft_core.pipeline import build_model

    model, tok, *_ = build_model("minilm", "head", {}, 2)
    model.eval()
    return map_sorted(lambda b: model.features(**b), tok, list(texts), max_length).numpy()


def probe(d: Path) -> None:
    """scikit-learn OvR logistic-regression probe on frozen features, thresholds tuned on validation; the inverse
    regularisation ``C`` is chosen from a grid by validation micro-F1 (``PROBE_C`` fixes it), and every grid point's
    test score is printed too."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier

    from peft_core.data import prepare_data
    from peft_core.splits import split_inputs
    from peft_core.tasks.multi_label import tune_thresholds

    data = prepare_data(d / "goemotions" / "train.csv", d / "goemotions" / "test.csv")
    print(f"task {data.task.kind}, split sizes {data.report.split_sizes}")
    t0 = time.perf_counter()
    x = {s: _features(split_inputs(data.splits[s])) for s in ("train", "validation", "test")}
    y = {s: np.asarray(data.splits[s]["label"]) for s in x}
    print(f"features in {time.perf_counter() - t0:.0f} s")
    grid = [float(os.environ["PROBE_C"])] if "PROBE_C" in os.environ else [0.1, 1.0, 10.0, 100.0]
    best = None
    for c in grid:
        clf = OneVsRestClassifier(LogisticRegression(max_iter=5000, C=c)).fit(x["train"], y["train"])
        pv = clf.predict_proba(x["validation"])
        t = np.asarray(tune_thresholds(y["validation"], pv))
        val = f1_score(y["validation"], (pv >= t).astype(int), average="micro")
        pt = clf.predict_proba(x["test"])
        scores = {name: ((pt >= thr).astype(int)) for name, thr in (("tuned thresholds", t), ("threshold 0.5", 0.5))}
        line = "; ".join(f"{n}: micro-F1 {f1_score(y['test'], p, average='micro'):.4f} macro-F1 "
                         f"{f1_score(y['test'], p, average='macro', zero_division=0):.4f}" for n, p in scores.items())
        print(f"C={c:g}: validation micro-F1 {val:.4f}; test {line}")
        if best is None or val > best[0]:
            best = (val, c, line)
    print(f"goemotions sklearn OvR probe (C={best[1]:g}, best on validation): test {best[2]}")


def zeroshot(d: Path) -> None:
    """Spearman of cosine similarity of the base model's sentence embeddings on the STS-B subset's test split."""
    from scipy.stats import spearmanr

    te = _read(d, "stsb_ccbysa_subset", "test")
    a, b = _features(te["sentence1"]), _features(te["sentence2"])
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    print(f"stsb zero-shot cosine (all-MiniLM-L6-v2 embeddings): Spearman {spearmanr(te['score'], cos)[0]:.4f} "
          f"on {len(te)} test pairs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["tfidf", "probe", "zeroshot"])
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(cpu_line())
    {"tfidf": tfidf, "probe": probe, "zeroshot": zeroshot}[args.what](Path(args.data_dir))


if __name__ == "__main__":
    main()
