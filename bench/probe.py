"""Benchmark: the linear probe's fit against its encoding pass, at 77 and 150 classes (issue 18, goal 2).

    python bench/probe.py                       # banking77 and the 150-class set from ../shared/data
    python bench/probe.py --sets banking77 --out bench/results_probe.md

For each set: the frozen MiniLM pooled features of the train, validation and test rows are computed once (the
"encoding" time, the floor of a head-only run); then the head is fit on the cached train features with

* ``lbfgs``: our default, full-batch L-BFGS (``peft_core.full_batch``; weight_decay 0.1, i.e. C = 10);
* ``adamw``: the previous default, mini-batch AdamW (batch 32, head learning rate 1e-2, up to 60 epochs,
  patience 5, dropout 0.1), same code path with ``solver="adamw"``;
* ``sklearn``: scikit-learn ``LogisticRegression(C)`` (lbfgs, max_iter 2000) with C chosen from 1 / 10 / 100 by
  validation macro-F1: the anchor the probe must match;

and every fit is scored on the test rows. Then one whole head-only run (``pipeline.fine_tune``: data, model,
encoding, fit, evaluation, saving, plots) is timed against the encoding floor.

The 150-class set is made from real rows: banking77's texts, each labelled with its intent plus whether the text
is a question (ends with "?"), keeping the 150 most frequent of these labels (train and test alike).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from bench.cpu import cpu_line  # noqa: E402


def _sets(data_dir: Path, tmp: Path, names: list[str]) -> dict:
    """name -> (train csv, test csv)."""
    b = data_dir / "banking77"
    out = {}
    if "banking77" in names:
        out["banking77"] = (b / "train.csv", b / "test.csv")
    if "q150" in names:
        frames = {s: pd.read_csv(b / f"{s}.csv") for s in ("train", "test")}
        for df in frames.values():
            df["category"] = df["category"] + np.where(df["text"].str.strip().str.endswith("?"), "?", ".")
        keep = set(frames["train"]["category"].value_counts().index[:150])
        for s, df in frames.items():
            df[df["category"].isin(keep)].to_csv(tmp / f"q150_{s}.csv", index=False)
        out["q150"] = (tmp / "q150_train.csv", tmp / "q150_test.csv")
    return out


def _fit(solver: str, model_features: dict, labels: dict, num_labels: int, extra: dict):
    """Fit a fresh head with our training code on cached features; returns (seconds, test predictions, epochs)."""
    import torch

    from peft_core.callbacks import Control
    from peft_core.feeds import FeatureFeed
    from peft_core.methods import METHODS
    from peft_core.pipeline import build_model
    from peft_core.tasks import TaskSpec, get_task
    from peft_core.training import TrainConfig, TrainResult, _set_output_bias, _solve, intra_op_threads
    from peft_core.training import make_accelerator

    torch.manual_seed(0)
    model, *_ = build_model("minilm", "head", {}, num_labels)
    acc = make_accelerator()

    class Cached(FeatureFeed):  # the features computed once by main()
        def __init__(self):
            self.module, self.acc = model.head, acc
            self.features = {s: model_features[s] for s in ("train", "validation")}

    spec = TaskSpec("single_label", "text", "label", {i: str(i) for i in range(num_labels)})
    kind = get_task("single_label")
    y = {s: kind.targets(spec, labels[s]) for s in ("train", "validation")}
    objective = kind.objective(spec, y["train"], False)
    if objective.output_bias is not None:
        _set_output_bias(model, objective.output_bias)
    cfg = TrainConfig(solver=solver, **extra).with_defaults(METHODS["head"].train_defaults)
    feed, res, t0 = Cached(), TrainResult(), time.perf_counter()
    with intra_op_threads(feed.step_threads):
        _solve(model, feed, y, objective, cfg, acc, lambda ev: None, Control(), res, t0)
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        pred = model.head(model_features["test"]).argmax(1).numpy()
    return seconds, pred, len(res.history)


def _sklearn(x: dict, labels: dict):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    t0, best = time.perf_counter(), None
    for c in (1.0, 10.0, 100.0):
        clf = LogisticRegression(C=c, max_iter=2000).fit(x["train"], labels["train"])
        val = f1_score(labels["validation"], clf.predict(x["validation"]), average="macro")
        if best is None or val > best[0]:
            best = (val, c, clf.predict(x["test"]))
    return time.perf_counter() - t0, best[2], best[1]


def _whole_run(train: Path, test: Path, out: Path) -> float:
    from peft_core.pipeline import RunConfig, fine_tune
    from peft_core.training import TrainConfig

    t0 = time.perf_counter()
    fine_tune(RunConfig(train_file=str(train), test_file=str(test), model="minilm", method="head",
                        train=TrainConfig()), out)
    return time.perf_counter() - t0


def bench_set(name: str, train: Path, test: Path, tmp: Path) -> list[str]:
    import torch
    from sklearn.metrics import accuracy_score, f1_score

    from peft_core.data import prepare_data
    from peft_core.feeds import FeatureFeed
    from peft_core.pipeline import build_model
    from peft_core.splits import split_inputs
    from peft_core.training import make_accelerator

    data = prepare_data(str(train), str(test))
    k = data.task.num_labels
    model, tok, *_ = build_model("minilm", "head", {}, k)
    texts = {s: split_inputs(data.splits[s]) for s in ("train", "validation", "test")}
    t0 = time.perf_counter()
    feats = FeatureFeed(model, tok, texts, 128, make_accelerator()).features
    encode_s = time.perf_counter() - t0
    labels = {s: np.asarray(data.splits[s]["label"]) for s in texts}
    rows = []

    def row(what, seconds, pred, note=""):
        rows.append(f"| {name} ({k} classes, {len(labels['train'])} train rows) | {what} | {seconds:.2f} | "
                    f"{100 * seconds / encode_s:.1f} % | {accuracy_score(labels['test'], pred):.4f} | "
                    f"{f1_score(labels['test'], pred, average='macro'):.4f} | {note} |")
        print(rows[-1], flush=True)

    print(f"{name}: encoding {sum(map(len, texts.values()))} rows in {encode_s:.1f} s", flush=True)
    s, pred, ep = _fit("lbfgs", feats, labels, k, {})
    row("head fit, L-BFGS (ours, default)", s, pred, f"{ep} iterations")
    s, pred, ep = _fit("adamw", feats, labels, k, {"epochs": 60, "early_stopping_patience": 5, "weight_decay": 0.01})
    row("head fit, AdamW mini-batches (previous default)", s, pred, f"{ep} epochs")
    x = {k_: v.numpy() for k_, v in feats.items()}
    s, pred, c = _sklearn(x, labels)
    row("scikit-learn LogisticRegression, C grid 1/10/100", s, pred, f"C={c:g} chosen on validation")
    torch.set_num_threads(os.cpu_count() or 1)
    whole = _whole_run(train, test, tmp / f"run_{name}")
    rows.append(f"| {name} ({k} classes) | whole head-only run (`fine_tune`) | {whole:.1f} | "
                f"{whole / encode_s:.2f}x the encoding floor ({encode_s:.1f} s) | | | |")
    print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--sets", default="banking77,q150")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_probe.md"))
    args = ap.parse_args()
    lines = [f"# Linear probe: fit vs encoding\n\n`python bench/probe.py --sets {args.sets}`\n\n{cpu_line()}\n",
             "| set | what | seconds | share of encoding | test accuracy | test macro-F1 | note |",
             "|---|---|---:|---:|---:|---:|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, (train, test) in _sets(Path(args.data_dir), Path(tmp), args.sets.split(",")).items():
            lines += bench_set(name, train, test, Path(tmp))
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
