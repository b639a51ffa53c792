"""Where one text's time goes: ONNX Runtime's per-operator profile of a text bundle's int8 graph against the
Optimum-style anchor (``bench/ort_anchor.py``), one text at a time (issue 18, the batch-1 goal).

    python bench/batch1_ops.py BUNDLE_FOLDER [--texts 300 --rounds 2]

BUNDLE_FOLDER: an unzipped int8 text bundle (``onnx/model_quantized.onnx``, ``tokenizer.json``, ``predict.py``).
The anchor is built from the bundle's base model with an untrained head (latency does not depend on the weights'
values): plain TorchScript export, ONNX Runtime's transformer optimizer (bert fusions), ``quantize_dynamic``.
Both graphs run in sessions made as the bundle's ``predict.py`` makes its own (all graph optimizations, ONNX
Runtime's default threads, denormals as zero; the bundle with ``predict.DISABLED_OPTIMIZERS`` off) on the first
``--texts`` texts of ``examples/sms_spam.csv``. Prints, per graph and round: the median latency (ms, after 50
warm-up texts), the kernels' summed time and node count per text, and the operator types that took the most.
Profiling adds its own overhead: compare the graphs with each other, not with ``bench/run.py``'s latencies.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from bench.cpu import cpu_line  # noqa: E402


def profile(path: Path, feeds: list[dict], disabled: list[str]) -> dict:
    """Run ``feeds`` one at a time through a profiled session of ``path`` -> {"p50_ms", "kernel_us", "nodes",
    "ops": [(op type, us per text, nodes per text), ...] most costly first}."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.gettempdir()) / "batch1_ops")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    names = {i.name for i in session.get_inputs()}
    latency = []
    for feed in feeds:
        t0 = time.perf_counter()
        session.run(None, {k: v for k, v in feed.items() if k in names})
        latency.append(time.perf_counter() - t0)
    trace = Path(session.end_profiling())
    us, count = collections.Counter(), collections.Counter()
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"].get("op_name")
            us[op] += event["dur"]
            count[op] += 1
    trace.unlink()
    n = len(feeds)
    return {"p50_ms": 1000 * float(np.median(latency[50:] or latency)), "kernel_us": sum(us.values()) / n,
            "nodes": sum(count.values()) / n, "ops": [(op, d / n, count[op] / n) for op, d in us.most_common()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--texts", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args()
    from tokenizers import Tokenizer

    from bench.ort_anchor import build_anchor
    from peft_core.pipeline import build_model

    sys.path.insert(0, str(args.bundle))
    from predict import DISABLED_OPTIMIZERS

    config = json.loads((args.bundle / "config.json").read_text())
    tok = Tokenizer.from_file(str(args.bundle / "tokenizer.json"))
    import pandas as pd

    feeds = []
    for text in pd.read_csv(ROOT / "examples" / "sms_spam.csv")["text"].head(args.texts):  # quoted texts unquoted
        ids = np.array([tok.encode(text).ids[:128]], dtype=np.int64)
        feeds.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
    base = config["peft_onnx_bundle"]["base_model"]["key"]
    model, hf_tok, *_ = build_model(base, "head", {}, 2)
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {"bundle int8": (args.bundle / "onnx" / "model_quantized.onnx", DISABLED_OPTIMIZERS),
                  "anchor O2 + dynamic int8": (build_anchor(model, hf_tok, Path(tmp), 128), [])}
        print(cpu_line())
        for r in range(args.rounds):
            for name, (path, disabled) in graphs.items():
                got = profile(path, feeds, disabled)
                print(f"round {r + 1}, {name}: p50 {got['p50_ms']:.2f} ms; kernels {got['kernel_us']:.0f} us and "
                      f"{got['nodes']:.0f} nodes per text")
                for op, us, nodes in got["ops"][:args.top]:
                    print(f"    {op:28s} {us:6.0f} us  {100 * us / got['kernel_us']:5.1f} %  x{nodes:.0f}")


if __name__ == "__main__":
    main()
