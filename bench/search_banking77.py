"""Benchmark: a budgeted search (``peft_core.search``) against the default linear-probe run, on banking77.

    python bench/search_banking77.py                          # 15-minute search; writes bench/results_search.md
                                                              # (run folders under runs/search_banking77)
    python bench/search_banking77.py --budget-min 1 --results /tmp/smoke.md --out /tmp/search_smoke   # smoke

Both sides use the same data split (train.csv: train + 10 % validation; test.csv: test), model (bundled
all-MiniLM-L6-v2) and seed. First the default ``head`` run (the method's defaults: full-batch L-BFGS, up to 100
iterations, L2 weight_decay 0.1, patience 10), then the search over every method for ``--budget-min`` minutes of wall time, in this process
(trials as run folders under ``--out/trials``; the linear probe's pooled features computed once per search). The
search chooses by validation macro-F1 only. Done when the best trial's validation macro-F1 beats the default run's;
its test accuracy, the number of trials and the wall time are reported beside it, with the CPU line
(``bench/cpu.py``). Run it on an otherwise idle machine: the search's budget is wall time.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
DATA = ROOT.parent / "shared" / "data" / "banking77"


def _args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA / "train.csv"))
    ap.add_argument("--test-data", default=str(DATA / "test.csv"))
    ap.add_argument("--budget-min", type=float, default=15.0)
    ap.add_argument("--methods", default="head,last_n,lora")
    ap.add_argument("--seed", type=int, default=42, help="the runs' seed (and so the data split)")
    ap.add_argument("--sampler-seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "runs" / "search_banking77"),
                    help="run folders: default_head/ and trials/NNN (default: runs/search_banking77, git-ignored)")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results_search.md"))
    return ap.parse_args(argv)


def _copy(data):
    import copy
    import dataclasses

    return dataclasses.replace(data, task=copy.deepcopy(data.task))


def _default_head(data, base, out: Path) -> dict:
    """The default linear-probe run (outside the search's feature memo: it pays its own encoding)."""
    from peft_core.pipeline import fine_tune

    t0 = time.perf_counter()
    run = fine_tune(base, out / "default_head", data=_copy(data))
    hist = run.train_result.history
    return {"val_macro_f1": max(h.get("val_macro_f1", h["val_score"]) for h in hist),
            "test_accuracy": run.eval_report.accuracy, "test_macro_f1": run.eval_report.macro_f1,
            "epochs": len(hist), "seconds": time.perf_counter() - t0}


def _table(df) -> str:
    """A DataFrame as a markdown table (no tabulate needed)."""
    def cell(col, v):
        if v is None or v != v:
            return ""
        return (f"{v:.0f}" if col == "seconds" else f"{v:.4f}") if isinstance(v, float) else str(v)

    cells = [[cell(col, v) for col, v in zip(df.columns, row)] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])


def main(argv=None) -> int:
    from cpu import cpu_line

    from peft_core.data import prepare_data
    from peft_core.feature_memo import reuse_pooled_features
    from peft_core.pipeline import RunConfig
    from peft_core.search import run_search
    from peft_core.search_runners import InProcessRunner
    from peft_core.training import TrainConfig

    args = _args(argv)
    out = Path(args.out)
    base = RunConfig(train_file=args.data, test_file=args.test_data, method="head", train=TrainConfig(seed=args.seed))
    data = prepare_data(args.data, args.test_data, seed=args.seed)
    sizes = {k: len(v) for k, v in data.splits.items()}
    print(cpu_line(), flush=True)
    print(f"data: {Path(args.data).name} + {Path(args.test_data).name}: {sizes}", flush=True)
    head = _default_head(data, base, out)
    print(f"default head: validation macro-F1 {head['val_macro_f1']:.4f}, test accuracy {head['test_accuracy']:.4f}, "
          f"{head['epochs']} epochs, {head['seconds']:.0f} s", flush=True)

    def say(rec):
        if rec.state != "running":
            print(f"  trial {rec.number + 1} {rec.method} {rec.settings()}: {rec.state}, validation "
                  f"{rec.val_score if rec.val_score is None else round(rec.val_score, 4)}, {rec.seconds:.0f} s",
                  flush=True)

    with reuse_pooled_features():
        result = run_search(base, args.budget_min * 60, InProcessRunner(out / "trials", data),
                            args.methods.split(","), seed=args.sampler_seed, on_trial=say, out_dir=out)
    best = result.best
    states = {}
    for t in result.trials:
        states[t.state] = states.get(t.state, 0) + 1
    beats = best is not None and best.val_score > head["val_macro_f1"]
    lines = ["# Budgeted search vs the default linear probe (banking77)\n",
             f"{cpu_line()}\n", f"Data: {Path(args.data).name} (train {sizes['train']}, validation "
             f"{sizes['validation']}), {Path(args.test_data).name} (test {sizes['test']}); seed {args.seed}; "
             f"methods {args.methods}; budget {args.budget_min:g} min; command: `python bench/search_banking77.py "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}`\n",
             f"- default `head` run: validation macro-F1 **{head['val_macro_f1']:.4f}**, test accuracy "
             f"{head['test_accuracy']:.4f}, test macro-F1 {head['test_macro_f1']:.4f} ({head['epochs']} epochs, "
             f"{head['seconds']:.0f} s)",
             f"- search: {len(result.trials)} trials ({', '.join(f'{n} {s}' for s, n in states.items())}; "
             f"{result.skipped} skipped) in {result.seconds:.0f} s wall time (ended: {result.ended})"]
    if best is not None:
        lines.append(f"- best trial {best.number + 1}: {best.method} {best.settings()}: validation macro-F1 "
                     f"**{best.val_score:.4f}**, test accuracy **{best.test.get('accuracy', float('nan')):.4f}**, "
                     f"test macro-F1 {best.test.get('macro_f1', float('nan')):.4f}")
    lines += [f"- done when the best trial's validation macro-F1 beats the default head run's: "
              f"**{'yes' if beats else 'no'}**\n", "## Leaderboard\n", _table(result.leaderboard().drop(columns="run"))]
    text = "\n".join(lines) + "\n"
    Path(args.results).write_text(text)
    print(text)
    return 0 if beats else 1


if __name__ == "__main__":
    sys.exit(main())
