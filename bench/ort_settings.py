"""Measure ONNX Runtime session settings on an exported text bundle (how predict.py's settings were chosen).

    python bench/ort_settings.py runs/sms/bundle-int8.zip [--data examples/sms_spam.csv] [--rows 512]

Runs the bundle's own ``Predictor`` on the first --rows texts of --data with each setting (intra-op threads 1 / 2,
no spin-waiting, denormals as zero, graph optimization basic vs all) and with several ``max_tokens`` batch
budgets; three alternating rounds, prints texts/s per round as a markdown table.
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

        def session(level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL, threads=0, **entries):
            o = ort.SessionOptions()
            o.graph_optimization_level, o.intra_op_num_threads = level, threads
            for k, v in entries.items():
                o.add_session_config_entry(k, v)
            return ort.InferenceSession(str(folder / "model.onnx"), o, providers=["CPUExecutionProvider"])

        dz = {"session.set_denormal_as_zero": "1"}
        variants = {"as shipped (predict.py)": (pred.session, mod.MAX_TOKENS),
                    "ORT defaults (all optimizations)": (session(), mod.MAX_TOKENS),
                    "1 intra-op thread": (session(threads=1, **dz), mod.MAX_TOKENS),
                    "no spin-waiting": (session(**{"session.intra_op.allow_spinning": "0"}, **dz), mod.MAX_TOKENS),
                    "basic graph optimizations": (session(ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, **dz),
                                                  mod.MAX_TOKENS)}
        for budget in (128, 256, 1024, 100_000):
            variants[f"max_tokens {budget}" + (" (batches of 64 texts)" if budget == 100_000 else "")] = (
                pred.session, budget)
        rates: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(3):
            for name, (sess, budget) in variants.items():
                pred.session = sess
                pred.predict(texts[:8])
                t0 = time.perf_counter()
                pred.predict(texts, max_tokens=budget)
                rates[name].append(len(texts) / (time.perf_counter() - t0))
    print(f"{Path(args.bundle).name}, {len(texts)} texts of {Path(args.data).name}, texts/s in 3 rounds:\n")
    print("| setting | round 1 | round 2 | round 3 |\n|---|---|---|---|")
    for name, r in rates.items():
        print(f"| {name} | " + " | ".join(f"{x:.0f}" for x in r) + " |")


if __name__ == "__main__":
    main()
