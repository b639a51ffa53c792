"""Compute precision of the training forward pass: a registry of precisions and the per-CPU "auto" choice.

``fp32`` runs everything in float32. ``bf16`` runs the trainable part's forward under
``torch.autocast(device, torch.bfloat16)`` (PyTorch automatic mixed precision: matmuls and attention in bfloat16,
LayerNorm, softmax and the loss in float32); master weights, gradients and AdamW's state stay float32, as in
Micikevicius et al. 2018 ("Mixed Precision Training") with bf16 needing no loss scaling (Kalamkar et al. 2019,
"A Study of BFLOAT16 for Deep Learning Training"). Validation, evaluation, the feature cache and export stay float32.

``auto`` (the default) is ``bf16`` on a CPU with native bf16 dot products (x86 ``avx512_bf16`` or ``amx_bf16``), where
it was measured faster at the same accuracy (``python bench/run.py``, full SMS Spam, 3 epochs, AMD EPYC with
avx512_bf16: last-2 layers 69.3 -> 63.6 s, LoRA 141.1 -> 109.3 s, held-out accuracy unchanged), and ``fp32``
elsewhere: without native bf16 oneDNN emulates bf16 (not measured to pay), and GPUs are left to an explicit choice.
"""
from __future__ import annotations

import contextlib
import functools
import os
import platform
from pathlib import Path

# bf16 matmuls on a CPU run through oneDNN, whose primitive cache (default 1,024 entries) keeps a primitive, with
# its buffers, for every matrix shape it meets: padding-free steps have a new token count nearly every step. One
# epoch of last-2 on full SMS Spam peaked at 1,984 MB RSS with the default, 1,609-1,626 MB with 64 entries (fp32:
# 1,375 MB), at no loss of speed (26.5-28.3 s vs 35.3 s). Read by oneDNN at its first primitive, so set on import;
# a value the user set is kept.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")

import torch  # noqa: E402

from .errors import ConfigError  # noqa: E402

#: precision name -> autocast dtype (None: float32, no autocast)
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}
#: CPU flags (Linux /proc/cpuinfo) that mean native bf16 dot products
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo(field: str) -> str | None:
    """The first ``field`` line's value in Linux ``/proc/cpuinfo`` (None elsewhere, or when it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == field:
                return value.strip()
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of this machine's CPU from Linux ``/proc/cpuinfo`` (empty elsewhere, or when it
    cannot be read)."""
    return frozenset((_cpuinfo("flags") or "").split())


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def native_bf16() -> bool:
    """True when this CPU has native bf16 dot products (:data:`NATIVE_BF16_FLAGS`)."""
    return any(f in cpu_flags() for f in NATIVE_BF16_FLAGS)


def check_precision(name: str | None) -> str | None:
    """``name`` if it is "auto" or a key of :data:`PRECISIONS` (or None: the method's default).

    Raises:
        ConfigError: any other name, listing the choices.
    """
    if name is not None and name != "auto" and name not in PRECISIONS:
        raise ConfigError(f"precision {name!r} is unknown; choose auto, {', '.join(PRECISIONS)}")
    return name


def resolve(name: str, device: torch.device | str = "cpu") -> str:
    """The precision a run uses on ``device``: "auto" becomes "bf16" on a CPU with :func:`native_bf16`, else
    "fp32"; an explicit name is kept (``bf16`` on a CPU without native bf16 works, emulated and slower)."""
    check_precision(name)
    if name != "auto":
        return name
    return "bf16" if torch.device(device).type == "cpu" and native_bf16() else "fp32"


def autocast(name: str, device: torch.device | str = "cpu"):
    """A context manager running its block in precision ``name`` (already resolved: a key of :data:`PRECISIONS`)
    on ``device``: ``torch.autocast`` for bf16, nothing for fp32. Outputs made inside may be bfloat16; cast them
    with ``.float()`` before the loss."""
    dtype = PRECISIONS[name]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
