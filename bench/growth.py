"""How a run's cost grows with the data: wall time and peak RSS of ``head`` and ``last_n`` at growing row counts.

    python bench/growth.py                                   # goemotions (multi-label): 1k, 5k, all 20k train rows
    python bench/growth.py --data ../shared/data/snli_devtest/train.csv --sizes 1000,5000,0

Each point is one ``python -m peft_core train`` in a child process on the first N rows of a seeded shuffle of the
training file (0 = all rows), with a fixed number of epochs and no early stopping (``--patience 0``), so every
point does the same work per row; the held-out file is the same 1,000 test rows for every point. Wall time is the
child's; peak RSS is the child's own maximum resident set (``os.wait4``'s rusage, KiB on Linux). Time should grow
linearly with rows; RSS should stay flat once the feature cache passes its RAM budget (``PEFT_CACHE_RAM_MB``,
default 2048; beyond it the ``last_n`` token-state cache is memory-mapped). Writes a markdown table to --out and a
plot beside it (``.png``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def one_point(train: Path, test: Path, method: str, epochs: int, out: Path) -> dict:
    """Train ``method`` on ``train`` in a child process -> {"seconds", "peak_rss_mb", "returncode"}.
    Raises SystemExit with the child's last output when it fails."""
    cmd = [sys.executable, "-m", "peft_core", "train", "--data", str(train), "--test-data", str(test), "--method",
           method, "--epochs", str(epochs), "--patience", "0", "--probe-epochs", "0", "--out", str(out)]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            raise SystemExit(f"{method} on {train.name} failed:\n{log.read().decode(errors='replace')[-3000:]}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024}


def plot(rows: list[dict], path: Path) -> None:
    """Seconds and peak RSS against rows, one line per method, written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        ax_t.plot([r["rows"] for r in mine], [r["seconds"] for r in mine], "o-", label=method)
        ax_m.plot([r["rows"] for r in mine], [r["peak_rss_mb"] for r in mine], "o-", label=method)
    ax_t.set(xlabel="training rows", ylabel="wall time (s)", title="time", ylim=(0, None))
    ax_m.set(xlabel="training rows", ylabel="peak RSS (MB)", title="memory", ylim=(0, None))
    for ax in (ax_t, ax_m):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA / "goemotions" / "train.csv"))
    ap.add_argument("--test-data", help="default: test.csv beside --data")
    ap.add_argument("--sizes", default="1000,5000,0", help="row counts, comma-separated; 0 = all rows")
    ap.add_argument("--methods", default="head,last_n")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_growth.md"))
    args = ap.parse_args()
    data = Path(args.data)
    table = pd.read_csv(data).sample(frac=1.0, random_state=0)
    test = pd.read_csv(args.test_data or data.with_name("test.csv")).head(1000)
    rows = []
    with tempfile.TemporaryDirectory(prefix="growth_") as tmp:
        test_path = Path(tmp) / "test.csv"
        test.to_csv(test_path, index=False)
        for n in [int(s) for s in args.sizes.split(",")]:
            n = n or len(table)
            part = Path(tmp) / f"train_{n}.csv"
            table.head(n).to_csv(part, index=False)
            for method in args.methods.split(","):
                got = one_point(part, test_path, method, args.epochs, Path(tmp) / f"run_{method}_{n}")
                rows.append({"method": method, "rows": n, **got})
                print(f"{method:7s} {n:6d} rows: {got['seconds']:7.1f} s, peak RSS {got['peak_rss_mb']:6.0f} MB",
                      flush=True)
    sys.path.insert(0, str(ROOT / "bench"))
    from cpu import cpu_line

    lines = [cpu_line(), "", f"`python bench/growth.py --data {data} --sizes {args.sizes} --methods {args.methods} "
             f"--epochs {args.epochs}`; held-out: the first 1,000 test rows.", "",
             "| method | training rows | wall s | s per 1k rows | peak RSS MB |", "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['rows']:,} | {r['seconds']:.1f} | {1000 * r['seconds'] / r['rows']:.2f} | "
              f"{r['peak_rss_mb']:.0f} |" for r in rows]
    Path(args.out).write_text("\n".join(lines) + "\n")
    plot(rows, Path(args.out).with_suffix(".png"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
