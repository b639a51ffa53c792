"""Label audit on planted noise: flip 5 % of the training labels (fixed seed), audit, then retrain on the cleaned file.

For each data set:

* SMS Spam Collection (examples/sms_spam.csv): a fixed stratified 20 % held-out test file (seed 0) that is NOT
  flipped; the other 80 % is the training file, 5 % of whose labels are flipped to the other class;
* banking77 (../shared/data/banking77/train.csv, test.csv): 5 % of train.csv's labels flipped to a different random
  class; test.csv (clean) is the held-out file.

The audit (``peft_core.audit.audit_labels``, test file given, so every row of the training file is audited) ranks
the rows; precision and recall are reported for the top N (N = rows flipped) and for everything cleanlab flagged.
Then a linear-probe run (method ``head``, default settings) trains on the noisy file and on the cleaned file
(flagged rows REMOVED, not relabelled), each scored on the same clean held-out file.

    python bench/audit_noise.py [--only sms|banking77] [--out bench/results_audit.md]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from cpu import cpu_line  # noqa: E402

SHARE, SEED, MAX_LENGTH = 0.05, 0, 64


def flip(df: pd.DataFrame, column: str, seed: int = SEED) -> tuple[pd.DataFrame, set[int]]:
    """5 % of ``column`` changed to a different class drawn at random (seeded) -> (frame, 1-based rows flipped)."""
    rng = np.random.default_rng(seed)
    classes = sorted(df[column].unique())
    rows = rng.choice(len(df), int(round(SHARE * len(df))), replace=False)
    out = df.copy()
    for i in rows:
        out.iloc[i, out.columns.get_loc(column)] = rng.choice([c for c in classes if c != df[column].iloc[i]])
    return out, set((rows + 1).tolist())


def files(name: str, tmp: Path) -> tuple[Path, Path, str, set[int]]:
    """(noisy training file, clean held-out file, label column, flipped rows) for one data set."""
    if name == "sms":
        from sklearn.model_selection import train_test_split

        df = pd.read_csv(ROOT / "examples" / "sms_spam.csv")
        train, test = train_test_split(df, test_size=0.2, stratify=df["label"], random_state=SEED)
        column, test_path = "label", tmp / "sms_test.csv"
        test.to_csv(test_path, index=False)
        train = train.reset_index(drop=True)
    else:
        src = ROOT.parent / "shared" / "data" / "banking77"
        train, column, test_path = pd.read_csv(src / "train.csv"), "category", src / "test.csv"
    noisy, flipped = flip(train, column)
    path = tmp / f"{name}_noisy.csv"
    noisy.to_csv(path, index=False)
    return path, test_path, column, flipped


def held_out(train: Path, test: Path, column: str, out: Path) -> tuple[float, float, float]:
    """(accuracy, macro-F1, seconds) of a default ``head`` run trained on ``train``, scored on ``test``."""
    from peft_core.pipeline import RunConfig, fine_tune
    from peft_core.training import TrainConfig

    start = time.perf_counter()
    run = fine_tune(RunConfig(train_file=str(train), test_file=str(test), text_column="text", label_column=column,
                              method="head", train=TrainConfig(max_length=MAX_LENGTH)), out)
    return run.eval_report.accuracy, run.eval_report.macro_f1, time.perf_counter() - start


def one(name: str, tmp: Path) -> dict:
    from peft_core.audit import audit_labels

    noisy, test, column, flipped = files(name, tmp)
    res = audit_labels(noisy, test, text_column="text", label_column=column, max_length=MAX_LENGTH)
    ranked = list(res.issues["row"])
    n = len(flipped)
    hit_top, hit_all = len(set(ranked[:n]) & flipped), len(set(ranked) & flipped)
    cleaned = tmp / f"{name}_cleaned.csv"
    frame = pd.read_csv(noisy)
    frame.drop(index=[r - 1 for r in ranked]).to_csv(cleaned, index=False)
    scores = {k: held_out(f, test, column, tmp / f"run_{name}_{k}") for k, f in (("noisy", noisy),
                                                                                ("cleaned", cleaned))}
    return {"name": name, "rows": res.audited, "flipped": n, "flagged": res.flagged, "seconds": res.seconds,
            "top_precision": hit_top / n, "top_recall": hit_top / n, "all_precision": hit_all / max(res.flagged, 1),
            "all_recall": hit_all / n, "scores": scores}


def markdown(results: list[dict], command: str) -> str:
    lines = ["# Label audit on planted noise (bench/audit_noise.py)", "", f"Command: `{command}`", "", cpu_line(), "",
             f"5 % of the training labels flipped (seed {SEED}) to a different class; audit = 5-fold linear probes "
             f"(scikit-learn LogisticRegression, C=0.1, standardised features) on frozen MiniLM features "
             f"(max_length {MAX_LENGTH}), then `cleanlab.filter.find_label_issues` ranked by self-confidence. "
             "N = rows flipped; top-N precision = recall at N.", "",
             "| data | rows audited | flipped (N) | flagged | audit s | top-N precision | all-flagged precision | "
             "all-flagged recall |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['rows']} | {r['flipped']} | {r['flagged']} | {r['seconds']:.0f} | "
                     f"{r['top_precision']:.3f} | {r['all_precision']:.3f} | {r['all_recall']:.3f} |")
    lines += ["", "Retrained (method `head`, default settings, max_length 64) on the noisy file and on the cleaned "
              "file (every flagged row removed), scored on the same clean held-out file:", "",
              "| data | noisy accuracy | noisy macro-F1 | cleaned accuracy | cleaned macro-F1 | Δ macro-F1 (pt) |",
              "|---|---|---|---|---|---|"]
    for r in results:
        (na, nf, _), (ca, cf, _) = r["scores"]["noisy"], r["scores"]["cleaned"]
        lines.append(f"| {r['name']} | {na:.4f} | {nf:.4f} | {ca:.4f} | {cf:.4f} | {100 * (cf - nf):+.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["sms", "banking77"])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_audit.md"))
    args = ap.parse_args()
    print(cpu_line(), flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="audit_bench_") as tmp:
        for name in [args.only] if args.only else ["sms", "banking77"]:
            results.append(one(name, Path(tmp)))
            print(results[-1], flush=True)
    text = markdown(results, "python bench/audit_noise.py" + (f" --only {args.only}" if args.only else ""))
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
