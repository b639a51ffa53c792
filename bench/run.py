"""Benchmark: our training and bundle against the standard stack (transformers.Trainer, PyTorch eager), one run.

    python bench/run.py                                    # full SMS Spam, 3 epochs, every method
    python bench/run.py --data ../shared/data/banking77/train.csv --test-data ../shared/data/banking77/test.csv
    python bench/run.py --rows 150 --epochs 1 --methods head --infer-rows 20   # smoke test (tests/test_bench.py)

Every training configuration runs in its own child process (so peak memory is its own), on the same data split,
model (all-MiniLM-L6-v2 + mean pooling + linear head), method, epochs, batch size, max_length, learning rates and
seed and fused AdamW; the Trainer side uses the stock transformers forward, DataCollatorWithPadding and random
batches, our side its caches, padding-free training steps and sorted no-grad passes, at its default precision
(``peft_core.precision``: bf16 autocast on a CPU with native bf16, where last_n and LoRA also run in fp32 so the table
shows both; the Trainer at its own default, fp32). Prints a markdown table of wall times, accuracies, ratios, inference speed, peak memory and the
FLOP floor (measured fp32 matmul rate x counted FLOPs), and writes it to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
EAGER = "PyTorch eager"


def _data(args):
    from peft_core.data import prepare_data

    data = prepare_data(args.data, args.test_data)
    if args.rows:  # a stratified-enough subset for smoke runs: the first rows of each split
        import datasets

        data.splits = datasets.DatasetDict({k: v.select(range(min(len(v), max(args.rows // (3 if k == "train" else 6), 12))))
                                            for k, v in data.splits.items()})
    return data


def _setup(args, data):
    import torch

    from peft_core.methods import METHODS
    from peft_core.pipeline import build_model
    from peft_core.training import TrainConfig

    torch.manual_seed(0)
    opts = {"last_n": {"num_layers": 2}, "lora": {"r": 8}}.get(args.method, {})
    model, tok, *_ = build_model("minilm", args.method, opts, data.task.num_labels)
    # the same algorithm on both sides: no linear-probe warm start (the Trainer run has none), and mini-batch AdamW
    # for the head too (the linear probe's default full-batch L-BFGS is measured by bench/probe.py)
    cfg = TrainConfig(epochs=args.epochs, max_length=args.max_length, batch_size=32, early_stopping_patience=0,
                      probe_epochs=0, solver="adamw", weight_decay=0.01,
                      precision=getattr(args, "precision", None) or "auto").with_defaults(
                          METHODS[args.method].train_defaults)
    return model, tok, cfg


def _accuracy(model, tok, data, max_length) -> float:
    from peft_core.inference import predict_logits

    logits = predict_logits(model, tok, data.splits["test"]["text"], max_length)
    return float((logits.argmax(-1) == data.splits["test"]["label"]).mean())


def child_train(args) -> dict:
    """One training run in this process: --engine ours|trainer. Returns wall time, accuracy, peak RSS."""
    import torch

    data = _data(args)
    model, tok, cfg = _setup(args, data)
    t0 = time.perf_counter()
    precision = "fp32"  # the Trainer's default
    if args.engine == "ours":
        from peft_core.training import train

        precision = train(model, tok, data.splits, cfg).precision  # what the steps ran in (the head: always fp32)
    else:
        _trainer(model, tok, data, cfg)
    seconds = time.perf_counter() - t0
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    acc = _accuracy(model.eval(), tok, data, cfg.max_length)
    return {"seconds": seconds, "accuracy": acc, "precision": precision, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads()}


def _trainer(model, tok, data, cfg) -> None:
    """transformers.Trainer over the same model, optimizer groups and schedule, dynamic padding."""
    import tempfile

    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, get_linear_schedule_with_warmup

    from peft_core.training import make_optimizer

    class Wrapped(torch.nn.Module):  # Trainer wants a loss from forward(**batch)
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, labels=None, num_items_in_batch=None, **inputs):
            logits = self.inner(**inputs)
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    for m in model.modules():  # the stock transformers forward on padded batches, as the standard stack runs it
        if hasattr(m, "unpadded_training"):
            m.unpadded_training = False
    ds = data.splits["train"].map(lambda b: tok(b["text"], truncation=True, max_length=cfg.max_length),
                                  batched=True, remove_columns=["text"]).rename_column("label", "labels")
    opt = make_optimizer(model, cfg)  # the same fused AdamW and parameter groups as ours
    steps = cfg.epochs * ((len(ds) + cfg.batch_size - 1) // cfg.batch_size)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * steps), steps)
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(out, per_device_train_batch_size=cfg.batch_size, num_train_epochs=cfg.epochs,
                                  save_strategy="no", report_to=[], logging_strategy="no", seed=cfg.seed,
                                  use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
                                  remove_unused_columns=False)
        Trainer(Wrapped(model), targs, train_dataset=ds, data_collator=DataCollatorWithPadding(tok),
                optimizers=(opt, sched)).train()


def inference(args, data) -> dict:
    """Batch-1 p50 latency and batch-64 throughput (test order): PyTorch eager vs bundle fp32 vs int8."""
    import tempfile

    import numpy as np
    import torch

    from exporters.bundle import extract_bundle
    from exporters.run_export import export_run
    from peft_core.pipeline import RunConfig, fine_tune
    from peft_core.training import TrainConfig

    texts = list(data.splits["test"]["text"])[:args.infer_rows]
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        # the linear probe with its own defaults (as the app trains it), so int8 is judged on a converged model
        run = fine_tune(RunConfig(train_file=args.data, test_file=args.test_data, method="head",
                                  train=TrainConfig(max_length=args.max_length)), tmp, data=data)
        res = export_run(run)
        from peft_core.inference import batch_inputs

        def eager(batch):
            with torch.no_grad():
                return run.model(**batch_inputs(run.tokenizer, batch, args.max_length)).argmax(-1).numpy()

        engines = {EAGER: eager}
        for precision, path in res.bundles.items():
            folder = extract_bundle(path, Path(tmp) / precision)
            sys.path.insert(0, str(folder))
            import importlib

            predict = importlib.import_module("predict")
            importlib.reload(predict)
            sys.path.pop(0)
            p = predict.Predictor(folder)
            engines[f"bundle {precision}"] = lambda batch, p=p: p.predict(batch, batch_size=64)[0]
        engines.update(_anchors(run, args, Path(tmp), predict, folder))
        for name, fn in engines.items():
            def run_all(rows, name=name, fn=fn):
                if name == EAGER:  # the standard stack: batches of 64 in test order
                    return np.concatenate([fn(rows[i:i + 64]) for i in range(0, len(rows), 64)])
                return fn(rows)  # the bundle as shipped: predict.py gets the list and sorts it into batches itself

            fn(texts[:4])  # warm-up of both paths (one batch; many batches), as a server would do before timing
            run_all(texts)
            lat = []
            for t in texts:
                t0 = time.perf_counter()
                fn([t])
                lat.append(time.perf_counter() - t0)
            passes = []  # the median of 3 timed passes (the same for every engine): this machine's timings drift
            for _ in range(3):
                t0 = time.perf_counter()
                run_all(texts)
                passes.append(time.perf_counter() - t0)
            tput = len(texts) / float(np.median(passes))
            everything = list(data.splits["test"]["text"])  # accuracy on the whole held-out split
            acc = float((run_all(everything) == np.asarray(data.splits["test"]["label"])).mean())
            out[name] = {"p50_ms": 1000 * float(np.median(lat)), "per_s_b64": tput, "accuracy": acc}
    return out


def _anchors(run, args, tmp: Path, predict, folder: Path) -> dict:
    """The Optimum-style anchor (``bench/ort_anchor.py``: plain export, ONNX Runtime's transformer optimizer at O2,
    dynamic int8) as an Optimum pipeline runs it (batches of 64 in the given order), and the same graph in the
    bundle's own batching (``predict.Predictor`` of the last bundle module loaded, reading the anchor graph)."""
    from ort_anchor import AnchorEngine, build_anchor  # bench/ is on sys.path when this script runs

    graph = build_anchor(run.model, run.tokenizer, tmp / "anchor", args.max_length, "O2")
    p = predict.Predictor(folder, model_file=str(graph))
    return {"Optimum-style O2 + dynamic int8, pipeline batches": AnchorEngine(graph, run.tokenizer, args.max_length),
            "Optimum-style O2 + dynamic int8, predict.py batching": lambda b, p=p: p.predict(b, batch_size=64)[0]}


def flop_floor(args, data) -> dict:
    """Measured fp32 matmul rate and the FLOPs of one encoder pass over train+validation real tokens."""
    import torch
    from transformers import AutoConfig

    from peft_core.inference import token_lengths
    from peft_core.models import get_spec

    from transformers import AutoTokenizer

    src = get_spec("minilm").resolve()
    cfg, tok = AutoConfig.from_pretrained(src), AutoTokenizer.from_pretrained(src)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    t0, n = time.perf_counter(), 20
    for _ in range(n):
        a @ b
    rate = 2 * 1024 ** 3 * n / (time.perf_counter() - t0)
    h, f, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    lengths = [token_lengths(tok, data.splits[s]["text"], args.max_length) for s in ("train", "validation")]
    tokens = int(sum(x.sum() for x in lengths))
    sq = int(sum((x.astype("int64") ** 2).sum() for x in lengths))
    per_layer = tokens * 2 * (4 * h * h + 2 * h * f) + 4 * sq * h  # linear layers + attention scores/values
    return {"matmul_gflops": rate / 1e9, "real_tokens": tokens, "encoder_pass_gflop": layers * per_layer / 1e9,
            "layer_pass_gflop": per_layer / 1e9}


def _floor_seconds(method: str, epochs: int, fl: dict) -> float:
    """Arithmetic floor: one frozen-prefix pass, then forward+backward (3x forward) of the trainable layers."""
    layers = fl["encoder_pass_gflop"] / fl["layer_pass_gflop"]
    trainable = {"head": 0, "last_n": 2, "lora": layers}[method]
    gflop = (layers - trainable) * fl["layer_pass_gflop"] + epochs * 3 * trainable * fl["layer_pass_gflop"]
    return gflop / fl["matmul_gflops"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "examples" / "sms_spam.csv"))
    ap.add_argument("--test-data")
    ap.add_argument("--rows", type=int, default=0, help="use only about this many rows (smoke runs)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--methods", default="head,last_n,lora", help="comma-separated; 'none': inference only")
    ap.add_argument("--infer-rows", type=int, default=512)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results.md"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--engine", choices=["ours", "trainer"], help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="auto", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child_train(args)))
        return
    base = [sys.executable, __file__, "--data", args.data, "--rows", str(args.rows), "--epochs", str(args.epochs),
            "--max-length", str(args.max_length)] + (["--test-data", args.test_data] if args.test_data else [])
    rows = []
    data = _data(args)
    fl = flop_floor(args, data)
    from peft_core.precision import resolve as resolve_precision

    auto = resolve_precision("auto")
    for method in [m for m in args.methods.split(",") if m and m != "none"]:
        got = {}
        # ours at the default precision; where that is bf16 (a CPU with native bf16) also in fp32, so the table
        # shows what bf16 autocast adds (the Trainer runs in its own default, fp32)
        runs = [("trainer", "fp32"), ("ours", auto)] + ([("ours", "fp32")] if auto != "fp32" and method != "head" else [])
        for engine, precision in runs:
            p = subprocess.run(base + ["--child", "--engine", engine, "--method", method, "--precision", precision],
                               capture_output=True, text=True, check=False)
            if p.returncode != 0:
                raise SystemExit(f"{engine}/{method}/{precision} failed:\n{p.stderr[-3000:]}")
            got[engine, precision] = json.loads(p.stdout.strip().splitlines()[-1])
        t = got["trainer", "fp32"]
        for (engine, _), o in got.items():
            if engine == "trainer":
                continue
            rows.append(f"| {method} | {o['precision']} | {t['seconds']:.1f} | {o['seconds']:.1f} | "
                        f"**{t['seconds'] / o['seconds']:.1f}x** | {t['accuracy']:.4f} | {o['accuracy']:.4f} | "
                        f"{t['peak_rss_mb']:.0f} / {o['peak_rss_mb']:.0f} | {_floor_seconds(method, args.epochs, fl):.1f} |")
    inf = inference(args, data)
    eager = inf[EAGER]
    lines = [f"Data: {Path(args.data).name} ({sum(len(v) for v in data.splits.values())} rows: "
             f"{', '.join(f'{k} {len(v)}' for k, v in data.splits.items())}); {args.epochs} epochs, batch 32, "
             f"max_length {args.max_length}; {os.cpu_count()} CPUs; matmul {fl['matmul_gflops']:.0f} GFLOP/s; "
             f"{fl['real_tokens']} real train+validation tokens.", "",
             "| method | ours precision | Trainer s | ours s | speed-up | Trainer acc | ours acc | "
             "peak RSS MB (Trainer / ours) | fp32 FLOP floor s |",
             "|---|---|---|---|---|---|---|---|---|", *rows, "",
             f"Inference speed on the first {len(data.splits['test']) if not args.infer_rows else min(args.infer_rows, len(data.splits['test']))} "
             f"test texts in test order (batch-1: median latency over those texts; batch-64: median of 3 passes), "
             f"accuracy on all {len(data.splits['test'])} (linear-probe model, default settings):", "",
             "| engine | batch-1 p50 ms | vs eager | batch-64 texts/s | vs eager | accuracy |", "|---|---|---|---|---|---|"]
    for name, r in inf.items():
        lines.append(f"| {name} | {r['p50_ms']:.2f} | {eager['p50_ms'] / r['p50_ms']:.1f}x faster | "
                     f"{r['per_s_b64']:.0f} | {r['per_s_b64'] / eager['per_s_b64']:.1f}x | {r['accuracy']:.4f} |")
    from cpu import cpu_line  # bench/ is on sys.path when this script runs

    text = "\n".join([cpu_line(), ""] + lines)
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
