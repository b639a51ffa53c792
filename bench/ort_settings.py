"""Measure ONNX Runtime session settings on an exported text bundle (how predict.py's settings were chosen).

    python bench/ort_settings.py runs/sms/bundle-int8.zip [--data examples/sms_spam.csv] [--rows 512]

Runs the bundle's own ``Predictor`` on the first --rows texts of --data: as shipped (batches spread over one
single-thread worker per core), and one session running the batches one after another with each setting
(default threads, 1 thread, no spin-waiting, graph optimization basic vs all, SkipLayerNormalization fusion on or
off), and the shipped path with several ``max_tokens`` batch budgets; three alternating rounds, prints texts/s per
round as a markdown table.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", help="a text bundle zip (bundle-int8.zip or bundle-fp32.zip)")
    ap.add_argument("--data", default=str(ROOT / "examples" / "sms_spam.csv"))
    ap.add_argument("--column", default="text")
    ap.add_argument("--rows", type=int, default=512)
    args = ap.parse_args()
    import onnxruntime as ort

    from exporters.bundle import extract_bundle

    with open(args.data, encoding="utf-8", newline="") as f:
        texts = [r[args.column] for r in csv.DictReader(f)][:args.rows]
    with tempfile.TemporaryDirectory() as tmp:
        folder = extract_bundle(args.bundle, tmp)
        spec = importlib.util.spec_from_file_location("bundle_predict", folder / "predict.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        pred = mod.Predictor(folder)

        shipped_session, workers = pred.session, pred.workers

        def session(level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL, threads=0, fusions_off=True, **entries):
            o = ort.SessionOptions()
            o.graph_optimization_level, o.intra_op_num_threads = level, threads
            for k, v in entries.items():
                o.add_session_config_entry(k, v)
            return ort.InferenceSession(pred.model_path, o, providers=["CPUExecutionProvider"],
                                        disabled_optimizers=mod.DISABLED_OPTIMIZERS if fusions_off else [])

        dz = {"session.set_denormal_as_zero": "1"}
        # (session, max_tokens, workers): session None = the shipped Predictor as it is
        variants = {f"as shipped ({workers} single-thread workers)": (None, mod.MAX_TOKENS, workers),
                    "one session, default threads, batches in turn": (shipped_session, mod.MAX_TOKENS, 1),
                    "  same, SkipLayerNormalization fusion on": (session(fusions_off=False, **dz), mod.MAX_TOKENS, 1),
                    "  same, 1 intra-op thread": (session(threads=1, **dz), mod.MAX_TOKENS, 1),
                    "  same, no spin-waiting": (session(**{"session.intra_op.allow_spinning": "0"}, **dz),
                                                mod.MAX_TOKENS, 1),
                    "  same, basic graph optimizations": (session(ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, **dz),
                                                          mod.MAX_TOKENS, 1)}
        for budget in (128, 256, 1024, 100_000):
            variants[f"as shipped, max_tokens {budget}" + (" (batches of 64 texts)" if budget == 100_000 else "")] = (
                None, budget, workers)
        rates: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(3):
            for name, (sess, budget, n) in variants.items():
                pred.session, pred.workers = sess or shipped_session, n
                pred.predict(texts[:8])
                pred.predict(texts[:64])
                t0 = time.perf_counter()
                pred.predict(texts, max_tokens=budget)
                rates[name].append(len(texts) / (time.perf_counter() - t0))
    from cpu import cpu_line  # bench/ is on sys.path when this script runs

    print(cpu_line() + "\n")
    print(f"{Path(args.bundle).name}, {len(texts)} texts of {Path(args.data).name}, texts/s in 3 rounds:\n")
    print("| setting | round 1 | round 2 | round 3 |\n|---|---|---|---|")
    for name, r in rates.items():
        print(f"| {name} | " + " | ".join(f"{x:.0f}" for x in r) + " |")


if __name__ == "__main__":
    main()
