"""Static int8 choices on a saved run: each variant's held-out gate metric, batch independence and speed.

    python bench/int8_choices.py runs/sms --variants fp32,dynamic,default,shared_pairs,quantize_outputs,per_tensor,all_ops
    python bench/int8_choices.py runs/sms --variants percentile,entropy,rows64,rows1024 --speed-rows 0
    python bench/int8_choices.py runs/digits --variants fp32,dynamic,default,conv_only,per_tensor

``default`` is ``StaticSettings()`` (exporters/quantize_static.py); every other variant changes one setting of it.
Prints one JSON line per variant: calibration seconds and quantized node count, held-out score in the task's gate
metric on all held-out rows (``score``; ``fp32``; ``agree``: share of rows with fp32's prediction; ``ok``: the gate),
one at a time vs in bulk on ``--batch-rows`` rows (``bdiff``: max |Δp|, ``flips``), size (MB = 10**6 bytes); then
rows/s at batch 1 and 64, best of interleaved rounds (the machine may be shared). The results behind the defaults
are in exporters/quantize_static.py's module doc and bench/results_int8.md.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from exporters.quantize_static import StaticSettings  # noqa: E402

VARIANTS = {
    "default": StaticSettings(),
    "shared_pairs": StaticSettings(dedicated_pairs=False),
    "quantize_outputs": StaticSettings(quantize_outputs=True),
    "per_tensor": StaticSettings(per_channel=False),
    "percentile": StaticSettings(method="Percentile"),
    "entropy": StaticSettings(method="Entropy"),
    "rows64": StaticSettings(rows=64),
    "rows1024": StaticSettings(rows=1024),
    "all_ops": StaticSettings(text_ops=(), image_ops=(), exclude_last=False),
    "conv_only": StaticSettings(image_ops=("Conv",)),
}


def main(argv=None) -> int:
    from exporters.onnx import export_onnx
    from exporters.quantize import check_int8, quantize_int8
    from exporters.quantize_static import batch_check, quantize_static_int8
    from int8_modes import throughput
    from peft_core.runstore import load_run
    from peft_core.splits import split_inputs

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--variants", default="fp32,dynamic,default")
    ap.add_argument("--batch-rows", type=int, default=128)
    ap.add_argument("--speed-rows", type=int, default=128, help="rows timed at batch 64 (a quarter at batch 1)")
    ap.add_argument("--work", default="/tmp/int8_choices")
    args = ap.parse_args(argv)
    run = load_run(args.run)
    test, ml, kind = run.data.splits["test"], run.train_config.max_length, run.data.task.kind
    rows, values = split_inputs(test), list(test["label"])
    train = split_inputs(run.data.splits["train"])
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    fp32 = work / "model.onnx"
    export_onnx(run.model, run.tokenizer, rows[:3], fp32, ml)
    paths = {}
    for name in args.variants.split(","):
        extra = {}
        if name == "fp32":
            path = fp32
        elif name == "dynamic":
            path = quantize_int8(fp32, work / "dynamic.onnx")
        else:
            path = work / f"static_{name}.onnx"
            info = quantize_static_int8(fp32, path, run.tokenizer, train, ml, VARIANTS[name])
            extra = {"calib_s": round(info.seconds, 1), "nq": info.quantized_nodes}
        q = check_int8(fp32, path, run.tokenizer, rows, values, ml, run.data.task)
        bc = batch_check(path, run.tokenizer, rows[:args.batch_rows], ml, kind)
        result = extra | {"score": q.verdict.int8, "fp32": q.verdict.fp32, "agree": q.verdict.agreement,
                          "ok": q.acceptable, "bdiff": bc.max_abs_diff, "flips": bc.flips,
                          "mb": path.stat().st_size / 1e6}
        print(name, json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in result.items()}), flush=True)
        paths[name] = path
    if args.speed_rows:
        for batch, n in ((1, max(1, args.speed_rows // 4)), (64, args.speed_rows)):
            speed = throughput(paths, run, rows[:n], batch)
            print(f"batch {batch}:", {k: round(v, 1) for k, v in speed.items()}, "rows/s", flush=True)
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    code = main()
    print(f"{time.perf_counter() - t0:.0f} s")
    sys.exit(code)
