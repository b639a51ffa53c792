"""What a queued run waits for: the runs ahead of it, the runs training now, and a rough start time.

:meth:`peft_core.jobs.JobManager.queue_info` fills a :class:`QueueInfo`; the app's status line and the API show
it (``describe()`` is the sentence). Only the asking owner's runs are named; other owners' runs are counted.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .progress import format_duration


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _left(eta_s: float | None) -> str:
    return "time left: estimating…" if eta_s is None else f"about {format_duration(eta_s)} left"


@dataclass
class QueueInfo:
    """Where a queued run stands.

    Attributes:
        position: 1-based place in the waiting queue (all owners' runs; first in line is 1).
        ahead: queued runs ahead of it, all owners (``position - 1``).
        ahead_mine: ids of the asking owner's queued runs among those ahead, first in line first.
        running: runs training now, all owners ("cancelling" ones included: they hold their slot until they end).
        running_mine: {run id: seconds left or None} for the asking owner's runs training now; seconds left is
            the run's ``Progress.eta_s`` counted down to now (None while it has no estimate: preparing,
            encoding, the first seconds of training).
        slots: runs that may train at once (``JobManager.max_concurrent``).
        running_left_s: seconds left of every running run, all owners and without ids, shortest first, the
            ones without an estimate (None) last.
    """

    position: int
    ahead: int
    ahead_mine: list[str]
    running: int
    running_mine: dict[str, float | None]
    slots: int
    running_left_s: list[float | None] = field(default_factory=list)

    @property
    def start_eta_s(self) -> float | None:
        """Rough seconds until the run starts: 0.0 when a slot is free; else when the slot it will get frees up,
        i.e. the ``position``-th shortest time left of the running runs, assuming each run ahead of it takes
        the slots that free up first. None when that running run has no estimate yet, or more runs wait ahead
        than are running (their own length is unknown). Rough: it ignores runs that end early (early stopping,
        cancel) and the held-out evaluation after training."""
        if self.running < self.slots:
            return 0.0
        if self.position > len(self.running_left_s):
            return None
        return self.running_left_s[self.position - 1]

    def describe(self) -> str:
        """One sentence for people, e.g. "Waits for your run 1a2b3c4d (about 3 min 5 s left). It should start
        in about 3 min 5 s." Run ids are shortened to 8 characters."""
        waits = [f"your run {i[:8]} ({_left(eta)})" for i, eta in self.running_mine.items()]
        if others := self.running - len(self.running_mine):
            waits.append(_plural(others, "run") + " of other users training now")
        if self.ahead_mine:
            waits.append("your queued run" + ("s " if len(self.ahead_mine) > 1 else " ")
                         + ", ".join(i[:8] for i in self.ahead_mine))
        if others := self.ahead - len(self.ahead_mine):
            waits.append(_plural(others, "queued run") + " of other users ahead of it")
        text = ("Waits for " + " and ".join(waits) + ".") if waits else "Waits for a free slot."
        start = self.start_eta_s
        if start == 0.0:
            return text + " A slot is free: it is starting now."
        return text + (f" It should start in about {format_duration(start)}." if start is not None
                       else " No start estimate yet.")

    def to_dict(self) -> dict:
        """Fields plus ``start_eta_s`` and ``text`` (``describe()``), for the API."""
        return asdict(self) | {"start_eta_s": self.start_eta_s, "text": self.describe()}
