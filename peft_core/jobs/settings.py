"""Settings of the run executors read from the environment, and the project root their processes import from."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]  # the folder that holds peft_core (and exporters)
DEFAULT_GRACE_S = 10.0


def cpu_count() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover -- not Linux
        return os.cpu_count() or 1


def threads_per_run(max_concurrent: int) -> int:
    """torch threads for each run: ``PEFT_THREADS_PER_RUN``, else cores // concurrent runs (at least 1).

    Raises:
        ConfigError: ``PEFT_THREADS_PER_RUN`` is set but is not a whole number >= 1.
    """
    raw = os.environ.get("PEFT_THREADS_PER_RUN", "").strip()
    if not raw:
        return max(1, cpu_count() // max(1, max_concurrent))
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"PEFT_THREADS_PER_RUN={raw!r} must be a whole number of threads, at least 1")
    return int(raw)


def memory_cap_mb() -> float:
    """``PEFT_RUN_MEMORY_MB`` as MB (10**6 bytes); 0.0 when unset or 0 (no cap).

    Raises:
        ConfigError: it is set but is not a number >= 0.
    """
    raw = os.environ.get("PEFT_RUN_MEMORY_MB", "").strip()
    try:
        cap = float(raw) if raw else 0.0
    except ValueError:
        cap = -1.0
    if not cap >= 0 or cap == float("inf"):
        raise ConfigError(f"PEFT_RUN_MEMORY_MB={raw!r} must be a number of MB (0: no cap)")
    return cap


def run_nice() -> str:
    """``PEFT_RUN_NICE``: "idle" or a whole number 0-19 (default "10"), as the worker reads it.

    Raises:
        ConfigError: anything else.
    """
    raw = os.environ.get("PEFT_RUN_NICE", "").strip() or "10"
    if raw != "idle" and not (raw.isdigit() and int(raw) <= 19):
        raise ConfigError(f"PEFT_RUN_NICE={raw!r} must be a whole number from 0 to 19 (how much lower run processes' "
                          "CPU priority is than the app's) or 'idle'")
    return raw

