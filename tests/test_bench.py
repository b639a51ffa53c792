"""Smoke test of the benchmark on a tiny subset: both engines train, the tables come out. (Speed is not asserted
here; the numbers live in the README and come from a full run.)"""
import subprocess
import sys

from conftest import ROOT


def test_bench_smoke(tmp_path):
    out = tmp_path / "results.md"
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--rows", "120", "--epochs", "1",
                        "--methods", "head", "--infer-rows", "16", "--out", str(out)], capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    text = out.read_text()
    head_row = next(line for line in text.splitlines() if line.startswith("| head |"))
    cells = [c.strip() for c in head_row.strip("|").split("|")]
    assert cells[1] == "fp32"  # the head alone trains in fp32 whatever the CPU
    assert float(cells[2]) > 0 and float(cells[3]) > 0 and cells[4].endswith("x**")
    assert text.startswith("CPU: ") and "flags:" in text.splitlines()[0]  # the CPU beside every result
    for engine in ("PyTorch eager", "bundle fp32", "bundle int8", "Optimum-style O2 + dynamic int8, pipeline batches",
                   "Optimum-style O2 + dynamic int8, predict.py batching"):
        assert f"| {engine} |" in text
