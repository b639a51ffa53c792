"""Phase progress: ``ProgressEvent("phase", step=done, total_steps=total, message=phase, elapsed_s=...)``.

A long step that is not training (exporting, checking parity, scoring int8, bundling) reports how far it got
through this one shape, so every listener (app, CLI, event log) reads all phases alike.
"""
from __future__ import annotations

import time
from typing import Sequence

from .callbacks import Callback, ProgressEvent


class Phase:
    """Reporter of one phase: call it with ``(done, total)`` as work gets done; it sends a "phase" event to
    every callback, with ``elapsed_s`` counted from the phase's creation (which itself reports ``done=0``).

    Args:
        callbacks: listeners (callables taking a ProgressEvent).
        name: the phase ("exporting", "parity", "int8", "bundle", ...).
        total: units of work planned (rows, files...); ``None``: not known yet, the first call (``done=0``, with
            the total) reports the start instead of the creation.
    """

    def __init__(self, callbacks: Sequence[Callback], name: str, total: int | None) -> None:
        self.callbacks, self.name, self.total = tuple(callbacks), name, total or 0
        self.t0 = time.perf_counter()
        if total is not None:
            self(0, total)

    def __call__(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = int(total)
        event = ProgressEvent("phase", step=int(done), total_steps=self.total, message=self.name,
                              elapsed_s=time.perf_counter() - self.t0)
        for cb in self.callbacks:
            cb(event)

    def end(self) -> None:
        """Report the phase as complete (done == total)."""
        self(self.total, self.total)
