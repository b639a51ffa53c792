"""Validation of numeric settings shared by :class:`~peft_core.training.TrainConfig` and the method configs.

Every number a user sets must be a real, finite value: NaN and infinities pass ordinary range checks written as
``value <= 0`` (every comparison with NaN is False), so they are refused here, first, with the field's name.
"""
from __future__ import annotations

import math
import numbers

from .errors import ConfigError


def check_number(name: str, value, lo: float | None = None, hi: float | None = None, *, whole: bool = False,
                 hi_open: bool = False, lo_open: bool = False) -> int | float:
    """``value`` as an ``int`` (``whole``) or a ``float`` after checking that it is a finite real number (not a
    bool, not a string) within ``[lo, hi]`` (``lo_open`` / ``hi_open``: that end excluded; ``None``: no bound).

    Raises:
        ConfigError: naming the field and the value, e.g. "epochs must be a whole number, got nan",
            "LoRA alpha must be a finite number > 0, got inf", "epochs must be a number in [1, 20], got 21".
    """
    kind = "whole number" if whole else "number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a {kind}{_range(lo, hi, lo_open, hi_open)}, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a {'whole' if whole else 'finite'} number"
                          f"{_range(lo, hi, lo_open, hi_open)}, got {float(value)!r}")
    if whole and int(value) != value:
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    low_bad = lo is not None and (value <= lo if lo_open else value < lo)
    high_bad = hi is not None and (value >= hi if hi_open else value > hi)
    if low_bad or high_bad:
        raise ConfigError(f"{name} must be a number{_range(lo, hi, lo_open, hi_open)}, got {value!r}")
    return int(value) if whole else float(value)


def _range(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {hi}"
    return ""
