"""Candidate for issue 18 goal 3: bf16 autocast of the trainable part's forward on a CPU with AVX512-BF16 / AMX.

    python bench/bf16_candidate.py --method last_n --epochs 1     # fp32 vs bf16 autocast, same run otherwise

Each variant runs in its own child process on full SMS Spam (bench/run.py's split, model, config and seed; ours
only, no Trainer): wall time of ``training.train`` and held-out accuracy. The bf16 variant wraps the forward of the
module that trains (last_n: the cached-prefix suffix; lora: the whole model) in ``torch.autocast("cpu",
torch.bfloat16)``; master weights, the loss and AdamW stay fp32. Prints the CPU line.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(args) -> dict:
    import torch

    import peft_core.feeds as feeds
    from bench.run import _accuracy, _data, _setup
    from peft_core.training import train

    if args.variant == "bf16":
        def autocast(cls):
            orig = cls.forward

            def forward(self, *a, **k):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return orig(self, *a, **k).float()
            cls.forward = forward
        autocast(feeds._Suffix)
    data = _data(args)
    model, tok, cfg = _setup(args, data)
    if args.variant == "bf16" and args.method == "lora":
        inner = model.forward

        def forward(*a, **k):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return inner(*a, **k).float()
        model.forward = forward
    t0 = time.perf_counter()
    train(model, tok, data.splits, cfg)
    seconds = time.perf_counter() - t0
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return {"seconds": seconds, "accuracy": _accuracy(model.eval(), tok, data, cfg.max_length)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="last_n")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--data", default=str(ROOT / "examples" / "sms_spam.csv"))
    ap.add_argument("--test-data")
    ap.add_argument("--rows", type=int, default=0)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--variant")
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(child(args)))
        return
    from bench.cpu import cpu_line

    print(cpu_line())
    for variant in ("fp32", "bf16"):
        cmd = [sys.executable, __file__, "--variant", variant, "--method", args.method, "--epochs", str(args.epochs),
               "--data", args.data, "--rows", str(args.rows), "--max-length", str(args.max_length)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        print(f"{args.method} {args.epochs} epoch(s) {variant}: {r['seconds']:.1f} s, held-out accuracy "
              f"{r['accuracy']:.4f}", flush=True)


if __name__ == "__main__":
    main()
