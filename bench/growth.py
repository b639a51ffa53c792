"""How a run's cost grows with the data: wall time and peak RSS of ``head`` and ``last_n`` at growing row counts.

    python bench/growth.py             # goemotions (multi-label): 1k, 5k, 10k, all 20k train rows; cache 2 GB, 128 MB
    python bench/growth.py --data ../shared/data/snli_devtest/train.csv --sizes 1000,5000,0

Each point is one ``python -m peft_core train`` in a child process on the first N rows of a seeded shuffle of the
training file (0 = all rows), with a fixed number of epochs and no early stopping (``--patience 0``), so every
point does the same work per row; the held-out file is the same 1,000 test rows for every point. Wall time is the
child's; peak RSS is the child's own maximum resident set (``os.wait4``'s rusage, KiB on Linux), which also counts
the pages of a memory-mapped file once touched (page cache the kernel can drop and re-read); peak anonymous RSS
(``RssAnon`` of ``/proc/PID/status``, sampled every 50 ms: heap, tensors, arrays -- the memory a run really holds)
separates the two. Time should grow linearly with rows; anonymous RSS should stay flat once the feature cache
passes its RAM budget (``PEFT_CACHE_RAM_MB``, default 2048; beyond it the ``last_n`` token-state cache is
memory-mapped). ``--budgets 2048,128``: every method at the default budget, then ``last_n`` again at 128 MB, where
the larger sizes spill to the file. Writes a markdown table to --out and a plot beside it (``.png``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def sample_peaks(pid: int, peaks: dict, every_s: float = 0.05) -> None:
    """Until process ``pid`` ends, keep in ``peaks`` the largest ``RssAnon`` / ``RssFile`` of /proc/PID/status
    seen (MB, 2**20 bytes). Linux only; does nothing where /proc is missing."""
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            return
        for key in ("RssAnon", "RssFile"):
            if key in fields:
                kib = int(fields[key].split()[0])
                peaks[key] = max(peaks.get(key, 0.0), kib / 1024)
        time.sleep(every_s)


def one_point(train: Path, test: Path, method: str, epochs: int, out: Path, budget_mb: int) -> dict:
    """Train ``method`` on ``train`` in a child process whose feature cache may hold ``budget_mb`` in RAM
    (``PEFT_CACHE_RAM_MB``) -> {"seconds", "peak_rss_mb", "peak_anon_mb", "peak_file_mb"} (MB = 2**20 bytes).
    Raises SystemExit with the child's last output when it fails."""
    cmd = [sys.executable, "-m", "peft_core", "train", "--data", str(train), "--test-data", str(test), "--method",
           method, "--epochs", str(epochs), "--patience", "0", "--probe-epochs", "0", "--out", str(out)]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PEFT_CACHE_RAM_MB": str(budget_mb)}
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        peaks: dict = {}
        sampler = threading.Thread(target=sample_peaks, args=(child.pid, peaks), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - t0
        sampler.join(timeout=1)  # it ends at its next read: the process is gone
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            raise SystemExit(f"{method} on {train.name} failed:\n{log.read().decode(errors='replace')[-3000:]}")
    nan = float("nan")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "peak_anon_mb": peaks.get("RssAnon", nan),
            "peak_file_mb": peaks.get("RssFile", nan)}


def plot(rows: list[dict], path: Path) -> None:
    """Seconds and peak RSS against rows, one line per (method, cache budget), written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5))
    for key in dict.fromkeys((r["method"], r["budget_mb"]) for r in rows):
        mine = [r for r in rows if (r["method"], r["budget_mb"]) == key]
        name = f"{key[0]}, cache {key[1]} MB"
        x = [r["rows"] for r in mine]
        ax_t.plot(x, [r["seconds"] for r in mine], "o-", label=name)
        line, = ax_m.plot(x, [r["peak_rss_mb"] for r in mine], "o-", label=f"{name}: peak RSS")
        ax_m.plot(x, [r["peak_anon_mb"] for r in mine], "s--", color=line.get_color(),
                  label=f"{name}: peak anonymous RSS")
    ax_t.set(xlabel="training rows", ylabel="wall time (s)", title="time", ylim=(0, None))
    ax_m.set(xlabel="training rows", ylabel="MB", title="memory (anonymous: without the mapped cache file)",
             ylim=(0, None))
    for ax in (ax_t, ax_m):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA / "goemotions" / "train.csv"))
    ap.add_argument("--test-data", help="default: test.csv beside --data")
    ap.add_argument("--sizes", default="1000,5000,10000,0", help="row counts, comma-separated; 0 = all rows")
    ap.add_argument("--methods", default="head,last_n")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--budgets", default="2048,128", help="PEFT_CACHE_RAM_MB values, comma-separated: --methods "
                    "run at the first; --budget-methods again at each further one")
    ap.add_argument("--budget-methods", default="last_n", help="methods repeated at the further budgets (head "
                    "caches only pooled features, 31 MB at 20k rows, so no budget changes it)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_growth.md"))
    args = ap.parse_args()
    data = Path(args.data)
    table = pd.read_csv(data).sample(frac=1.0, random_state=0)
    test = pd.read_csv(args.test_data or data.with_name("test.csv")).head(1000)
    budgets = [int(b) for b in args.budgets.split(",")]
    plan = [(b, m) for i, b in enumerate(budgets)
            for m in (args.methods if i == 0 else args.budget_methods).split(",") if m]
    rows = []
    with tempfile.TemporaryDirectory(prefix="growth_") as tmp:
        test_path = Path(tmp) / "test.csv"
        test.to_csv(test_path, index=False)
        for budget, method in plan:
            for n in [int(s) or len(table) for s in args.sizes.split(",")]:
                part = Path(tmp) / f"train_{n}.csv"
                if not part.exists():
                    table.head(n).to_csv(part, index=False)
                got = one_point(part, test_path, method, args.epochs, Path(tmp) / f"run_{method}_{n}_{budget}",
                                budget)
                rows.append({"method": method, "budget_mb": budget, "rows": n, **got})
                print(f"{method:7s} cache {budget:5d} MB {n:6d} rows: {got['seconds']:7.1f} s, peak RSS "
                      f"{got['peak_rss_mb']:6.0f} MB (anonymous {got['peak_anon_mb']:6.0f})", flush=True)
    sys.path.insert(0, str(ROOT / "bench"))
    from cpu import cpu_line

    lines = [cpu_line(), "", f"`python bench/growth.py --data {data} --sizes {args.sizes} --methods {args.methods} "
             f"--epochs {args.epochs} --budgets {args.budgets} --budget-methods {args.budget_methods}`; held-out: "
             "the first 1,000 test rows. Cache budget: `PEFT_CACHE_RAM_MB` of the run. Peak RSS counts the touched "
             "pages of the memory-mapped cache file; peak anonymous RSS does not.", "",
             "| method | cache budget MB | training rows | wall s | s per 1k rows | peak RSS MB | "
             "peak anonymous RSS MB | peak file-backed RSS MB |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['budget_mb']} | {r['rows']:,} | {r['seconds']:.1f} | "
              f"{1000 * r['seconds'] / r['rows']:.2f} | {r['peak_rss_mb']:.0f} | {r['peak_anon_mb']:.0f} | "
              f"{r['peak_file_mb']:.0f} |" for r in rows]
    Path(args.out).write_text("\n".join(lines) + "\n")
    plot(rows, Path(args.out).with_suffix(".png"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
