"""Deleting old runs so a long-lived app does not fill its disk: the run TTL and the per-owner disk quota.

See the package doc (``peft_core.jobs``) for the environment variables. :class:`CleanupMixin` is a part of
:class:`~peft_core.jobs.manager.JobManager`; it uses the manager's records, lock and folders.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import stat
import time
from pathlib import Path

from ..errors import ConfigError, JobError
from .records import ACTIVE, TERMINAL, JobInfo, owner_hash

DEFAULT_RUN_TTL_HOURS = 72.0  # a finished / failed / cancelled run is deleted this many hours after it ended

DEFAULT_MAX_USER_DISK_MB = 2000.0  # MB (10**6 bytes) of run folders per owner

MB = 1_000_000

log = logging.getLogger("peft_core.jobs")


def _env_limit(name: str, default: float) -> float:
    """A limit >= 0 from environment variable ``name`` (``default`` when unset or empty; 0 means off).

    Raises:
        ConfigError: the value is not a finite number >= 0.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw.replace("_", ""))
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"environment variable {name}={raw!r} must be 0 (off) or a positive number")
    return value


def folder_bytes(path: str | Path) -> int:
    """Bytes in the regular files under ``path`` (apparent sizes; symlinks not followed; a missing or
    vanishing file counts 0)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total



class CleanupMixin:
    """Run deletion for :class:`~peft_core.jobs.manager.JobManager`: by its owner, by age
    (``run_ttl_hours``) and by the owner's disk quota (``max_user_disk_mb``)."""

    # ---- cleanup: age and disk quota -------------------------------------------------------------------
    def disk_usage(self, token: str) -> int:
        """Bytes in the run folders of ``token``'s runs (all states)."""
        owner = owner_hash(token)
        with self._lock:
            ids = [j.id for j in self._jobs.values() if j.owner == owner]
        return sum(folder_bytes(self.dir(i)) for i in ids)

    def cleanup(self, now: float | None = None) -> list[str]:
        """Delete ended runs older than ``run_ttl_hours`` (all owners), then, for every owner over
        ``max_user_disk_mb``, that owner's oldest ended runs until under. ``now``: Unix seconds to count ages
        from (default: the current time). Returns the ids deleted. Active and exporting runs are kept."""
        deleted = self._expire(time.time() if now is None else now)
        with self._lock:
            owners = sorted({j.owner for j in self._jobs.values()})
        for owner in owners:
            deleted += self._fit_quota(owner, 0)[0]
        return deleted

    def delete(self, token: str, run_id: str) -> None:
        """Delete one of ``token``'s ended runs (folder and record).

        Raises:
            JobError: not this owner's run, or it is still queued / running / cancelling (cancel it first and
                wait until it has ended) or being exported.
        """
        info = self.get(token, run_id)
        if not self._delete(run_id, "deleted by its owner"):
            raise JobError(f"run {run_id[:8]} is {info.state if info.state in ACTIVE else 'being exported'}: "
                           "cancel it first (or wait until it has ended), then delete it")

    def _delete(self, run_id: str, why: str) -> bool:
        """Remove an ended, not exporting run: record first (so nobody sees a half-deleted run), then its
        status.json (so a partly removed folder is not recovered at the next start), then the folder.
        Returns False, deleting nothing, when the run is active, exporting or unknown."""
        with self._lock:
            info = self._jobs.get(run_id)
            if info is None or info.state not in TERMINAL or self._busy.get(run_id):
                return False
            del self._jobs[run_id]
            self._tails.pop(run_id, None)
            self._loaded.pop(run_id, None)
            self._controls.pop(run_id, None)
        run_dir = self.dir(run_id)
        (run_dir / "status.json").unlink(missing_ok=True)
        shutil.rmtree(run_dir, ignore_errors=True)
        log.info("deleted run %s (%s, ended %s): %s", run_id, info.state,
                 time.strftime("%Y-%m-%d %H:%M", time.localtime(info.ended_at)), why)
        return True

    def _expire(self, now: float) -> list[str]:
        """Delete ended runs that ended more than ``run_ttl_hours`` before ``now`` (Unix seconds)."""
        if not self.run_ttl_hours:
            return []
        cutoff = now - self.run_ttl_hours * 3600
        with self._lock:
            old = [j.id for j in self._jobs.values() if j.state in TERMINAL and j.ended_at < cutoff]
        return [i for i in old if self._delete(i, f"older than {self.run_ttl_hours:g} h (PEFT_RUN_TTL_HOURS)")]

    def _fit_quota(self, owner: str, incoming: int) -> tuple[list[str], int, int]:
        """Make room for ``incoming`` more bytes in ``owner``'s (a hash) runs: delete their oldest ended runs
        while used + incoming > ``max_user_disk_mb``. Deletes nothing when the active runs alone leave no
        room (the caller refuses). Returns (ids deleted, bytes used after, bytes held by active runs)."""
        with self._lock:
            runs = [JobInfo(**j.to_dict()) for j in self._jobs.values() if j.owner == owner]
        sizes = {j.id: folder_bytes(self.dir(j.id)) for j in runs}
        used = sum(sizes.values())
        active = sum(sizes[j.id] for j in runs if j.state not in TERMINAL)
        limit = self.max_user_disk_mb * MB
        deleted: list[str] = []
        if not limit or used + incoming <= limit or active + incoming > limit:
            return deleted, used, active
        why = f"its owner's runs were over {self.max_user_disk_mb:g} MB (PEFT_MAX_USER_DISK_MB)"
        for j in sorted((j for j in runs if j.state in TERMINAL), key=lambda j: j.ended_at):
            if used + incoming <= limit:
                break
            if self._delete(j.id, why):
                used -= sizes[j.id]
                deleted.append(j.id)
        return deleted, used, active

