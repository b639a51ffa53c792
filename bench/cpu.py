"""The CPU a benchmark ran on: model name and the instruction-set flags that change its numbers.

Timings differ a lot between machines with AVX-512 (VNNI, BF16, AMX) and AVX2-only ones, and ONNX Runtime's int8
kernels gain nothing without VNNI, so every benchmark prints this line beside its results.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def cpu_line() -> str:
    """One line: CPU model, logical CPUs, and which of :data:`FLAGS` it has (Linux ``/proc/cpuinfo``, read by
    ``peft_core.precision``; elsewhere ``platform.processor()`` and no flags)."""
    from peft_core.precision import cpu_flags, cpu_model

    have = [f for f in FLAGS if f in cpu_flags()]
    return f"CPU: {cpu_model()}; {os.cpu_count()} logical CPUs; flags: {' '.join(have) or 'none of ' + ', '.join(FLAGS)}"


if __name__ == "__main__":
    print(cpu_line())
