"""Benchmark: fp32 vs dynamic int8 vs static int8 (calibrated), text and images, in one run.

    python bench/int8_modes.py                                   # trains both runs first (full SMS head; MNIST head)
    python bench/int8_modes.py --sms-run runs/sms --image-run runs/digits   # saved runs (train --out DIR)
    python bench/int8_modes.py --test-rows 300 --batch-rows 128  # held-out subsamples, for speed

Text: a run on the full SMS Spam Collection (``examples/sms_spam.csv``, method head unless ``--sms-run`` names
another). Images: EfficientNet-Lite0 head on ``--mnist-per-class`` digits per class of the MNIST test set
(``../shared/data/mnist_test/mnist_test_png.zip``; the committed ``examples/mnist_digits.zip`` when that is
absent). For each model and precision: held-out score in the task's gate metric and the gate's verdict (all
held-out rows, or a seeded ``--test-rows`` sample), batch independence (``--batch-rows`` held-out rows one at a
time vs in bulk batches of 64 in input order, so texts of mixed lengths are padded: labels that flip, max |Δp|),
throughput at batch 1 (``--speed-rows`` // 4 rows) and 64 (``--speed-rows`` rows, length-sorted batches) as the
best of 3 interleaved rounds (rows/s, the ONNX Runtime default threads), file sizes (MB = 10**6 bytes), and the
static model's calibration time. Writes the tables to ``--out`` (bench/results_int8.md) with the command and CPU.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
MNIST_TEST = ROOT.parent / "shared" / "data" / "mnist_test" / "mnist_test_png.zip"


def mnist_zip(per_class: int, out: Path) -> Path:
    """A class-folder zip of the first ``per_class`` MNIST test digits per class (or the committed sample)."""
    if not MNIST_TEST.is_file():
        return ROOT / "examples" / "mnist_digits.zip"
    counts: dict[str, int] = {}
    with zipfile.ZipFile(MNIST_TEST) as src, zipfile.ZipFile(out, "w") as dst:
        for name in sorted(n for n in src.namelist() if n.endswith(".png")):
            label = name.split("/")[-2]
            if counts.get(label, 0) < per_class:
                counts[label] = counts.get(label, 0) + 1
                dst.writestr(f"{label}/{Path(name).name}", src.read(name))
    return out


def get_run(saved: str | None, data: Path, work: Path, name: str):
    """A saved run (``load_run``), or a head run trained now on ``data`` into ``work/name``; and its seconds."""
    from peft_core.pipeline import RunConfig, fine_tune
    from peft_core.runstore import load_run

    t0 = time.perf_counter()
    run = load_run(saved) if saved else fine_tune(RunConfig(train_file=str(data), method="head"), work / name)
    return run, time.perf_counter() - t0


def throughput(paths: dict, run, rows: list, batch: int, rounds: int = 3) -> dict:
    """Rows per second of each ONNX file on ``rows`` in length-sorted batches of ``batch``: best of ``rounds``
    rounds, models interleaved within each round (so load from other processes hits them alike)."""
    from exporters.parity import ort_session
    from peft_core.inference import batch_inputs, sorted_batches, token_lengths

    ml = run.train_config.max_length
    sessions = {k: ort_session(p) for k, p in paths.items()}
    names = [i.name for i in next(iter(sessions.values())).get_inputs()]
    feeds = [{k: v.numpy() for k, v in batch_inputs(run.tokenizer, [rows[i] for i in idx], ml).items() if k in names}
             for idx in sorted_batches(token_lengths(run.tokenizer, rows, ml), batch)]
    best = {k: float("inf") for k in sessions}
    for s in sessions.values():
        s.run(["logits"], feeds[0])  # warm-up
    for _ in range(rounds):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            for f in feeds:
                s.run(["logits"], f)
            best[k] = min(best[k], time.perf_counter() - t0)
    return {k: len(rows) / t for k, t in best.items()}


def measure(run, label: str, work: Path, args) -> list[str]:
    """Markdown rows for one run: fp32, dynamic int8, static int8."""
    from exporters.onnx import export_onnx
    from exporters.quantize import check_int8, quantize_int8
    from exporters.quantize_static import batch_check, quantize_static_int8
    from peft_core.splits import split_inputs

    test, ml, kind = run.data.splits["test"], run.train_config.max_length, run.data.task.kind
    rows, values = split_inputs(test), list(test["label"])
    if args.test_rows and args.test_rows < len(rows):
        idx = np.sort(np.random.default_rng(0).choice(len(rows), args.test_rows, replace=False))
        rows, values = [rows[i] for i in idx], [values[i] for i in idx]
    paths = {"fp32": work / f"{label}.onnx"}
    export_onnx(run.model, run.tokenizer, rows[:3], paths["fp32"], ml)
    paths["dynamic int8"] = quantize_int8(paths["fp32"], work / f"{label}.dynamic.onnx")
    info = quantize_static_int8(paths["fp32"], work / f"{label}.static.onnx", run.tokenizer,
                                split_inputs(run.data.splits["train"]), ml)
    paths["static int8"] = work / f"{label}.static.onnx"
    speed1 = throughput(paths, run, rows[:max(1, args.speed_rows // 4)], 1)
    speed64 = throughput(paths, run, rows[:args.speed_rows], 64)
    out = []
    for name, path in paths.items():
        q = check_int8(paths["fp32"], path, run.tokenizer, rows, values, ml, run.data.task)
        bc = batch_check(path, run.tokenizer, rows[:args.batch_rows], ml, kind)
        gate = "-" if name == "fp32" else ("passes" if q.acceptable else "FAILS") + f" ({q.change()})"
        cal = f"{info.method}, {info.rows} rows, {info.seconds:.1f} s" if name == "static int8" else "-"
        out.append(f"| {label} | {name} | {q.verdict.int8:.4f} ({q.rows} rows) | {gate} | "
                   f"{100 * q.verdict.agreement:.2f}% | {bc.flips} of {bc.rows} | {bc.max_abs_diff:.1e} | "
                   f"{speed1[name]:.1f} | {speed64[name]:.1f} | {path.stat().st_size / 1e6:.1f} | {cal} |")
        print(out[-1], flush=True)
    return out


def main(argv=None) -> int:
    from cpu import cpu_line

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sms-run", help="a saved SMS Spam run folder (default: train a head run on the full set)")
    ap.add_argument("--image-run", help="a saved image run folder (default: train a head run on MNIST digits)")
    ap.add_argument("--mnist-per-class", type=int, default=150)
    ap.add_argument("--test-rows", type=int, default=0, help="seeded held-out sample (0: all held-out rows)")
    ap.add_argument("--batch-rows", type=int, default=256, help="held-out rows of the batch-independence check")
    ap.add_argument("--speed-rows", type=int, default=256, help="rows timed at batch 64 (a quarter at batch 1)")
    ap.add_argument("--work", default="/tmp/int8_modes")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_int8.md"))
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(cpu_line(), flush=True)
    header = [("| model | precision | held-out accuracy | gate (within 1 pt) | same label as fp32 | labels flipped "
               "(alone vs bulk) | max abs Δp (alone vs bulk) | batch 1 rows/s | batch 64 rows/s | MB | calibration |"),
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines = []
    sms, secs = get_run(args.sms_run, ROOT / "examples" / "sms_spam.csv", work, "sms")
    print(f"SMS run ready in {secs:.0f} s", flush=True)
    lines += measure(sms, "SMS Spam, MiniLM " + sms.config.method, work, args)
    image, secs = get_run(args.image_run, mnist_zip(args.mnist_per_class, work / "mnist.zip"), work, "mnist")
    print(f"image run ready in {secs:.0f} s", flush=True)
    lines += measure(image, "MNIST, EfficientNet-Lite0 " + image.config.method, work, args)
    total = time.perf_counter() - t0
    command = "python bench/int8_modes.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join(["# int8 modes: fp32 vs dynamic vs static int8\n", f"`{command}` ({total / 60:.1f} min)\n",
                      cpu_line() + "\n", *header, *lines, ""])
    Path(args.out).write_text(text)
    print(f"wrote {args.out} ({total / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
