"""The CPU a benchmark ran on: model name and the instruction-set flags that change its numbers.

Timings differ a lot between machines with AVX-512 (VNNI, BF16, AMX) and AVX2-only ones, and ONNX Runtime's int8
kernels gain nothing without VNNI, so every benchmark prints this line beside its results.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def cpu_line() -> str:
    """One line: CPU model, logical CPUs, and which of :data:`FLAGS` it has (Linux ``/proc/cpuinfo``; elsewhere
    ``platform.processor()`` and no flags)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not flags:
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    have = [f for f in FLAGS if f in flags]
    return f"CPU: {model}; {os.cpu_count()} logical CPUs; flags: {' '.join(have) or 'none of ' + ', '.join(FLAGS)}"


if __name__ == "__main__":
    print(cpu_line())
