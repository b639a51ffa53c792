"""Runs as background jobs: each run has its own id and folder, runs on a worker thread, and outlives the page.

A run folder (``<root>/<run id>/``) holds::

    status.json    JobInfo: state (queued / running / cancelling / finished / failed / cancelled), owner hash,
                   times, key hyper-parameters, results, error message, bundle path
    config.json    RunConfig + package versions (written at submit; ``fine_tune`` rewrites it identically)
    data/          copies of the uploaded files, so the run can be rebuilt and exported later
    events.jsonl   the progress events (see ``peft_core.progress``); error.log: the traceback of a failed run
    ... and everything ``pipeline.fine_tune`` / ``export_run`` write (model/, report.json, plots, bundle-*.zip)

Owners are opaque tokens (the app keeps one per browser); only their SHA-256 is stored, and every call that
names a run checks it, so a caller sees only its own runs (an unknown id and someone else's id look the same).
At most ``max_concurrent`` runs train at once (env ``PEFT_MAX_CONCURRENT_RUNS``, default 1); the rest wait
in a FIFO queue (``queue_info`` says what a queued run waits for). Runs left queued or running by a previous process are marked failed when a manager starts.
Runs train on the manager's worker threads; a manager with the default runner first does, in its own thread, the
library set-ups that break when two runs do them at once (:func:`prime_for_threads`).

Old runs are deleted so that a long-lived app (a free CPU Hugging Face Space: 2 vCPU, 16 GB RAM, about 50 GB of
disk that is not persistent) does not fill its disk. Both limits are read from the environment when a manager is
created (0 turns a limit off; anything else that is not a number >= 0 is a ConfigError):

===========================  =======  =================================================================
variable                     default  meaning
===========================  =======  =================================================================
``PEFT_RUN_TTL_HOURS``       72       hours a finished / failed / cancelled run is kept, counted from
                                      when it ended (``JobInfo.finished``); older runs are deleted, folder
                                      and record
``PEFT_MAX_USER_DISK_MB``    2000     MB (10**6 bytes) of run folders one owner may hold; when over, that
                                      owner's oldest ended runs are deleted until under; when the owner's
                                      queued / running runs alone leave no room, ``submit`` is refused
===========================  =======  =================================================================

Cleanup runs when a manager starts (after recovery: runs the previous process left active are ended by then)
and at every ``submit`` (expired runs of all owners, then the quota of the submitting owner, counting the
size of the data files it is about to copy). Queued, running and cancelling runs, and runs being exported,
are never deleted. A folder's size is the sum of its regular files' sizes (symlinks are not followed). The quota
is checked only then: what a run writes while it trains (model, plots, bundles) may take its owner over the
limit until the next submit or start.
"""
from ..errors import JobError
from .cleanup import DEFAULT_MAX_USER_DISK_MB, DEFAULT_RUN_TTL_HOURS, MB, folder_bytes
from .manager import JobManager, prime_for_threads
from .records import ACTIVE, TERMINAL, JobInfo, new_owner_token, owner_hash

__all__ = ["ACTIVE", "DEFAULT_MAX_USER_DISK_MB", "DEFAULT_RUN_TTL_HOURS", "MB", "TERMINAL", "JobError", "JobInfo",
           "JobManager", "folder_bytes", "new_owner_token", "owner_hash", "prime_for_threads"]
