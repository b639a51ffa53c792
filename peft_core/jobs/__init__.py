"""Runs as background jobs: each run has its own id and folder, trains in its own process, and outlives the page.

A run folder (``<root>/<run id>/``) holds::

    status.json    JobInfo: state (queued / running / cancelling / finished / failed / cancelled / interrupted),
                   owner hash, times, key hyper-parameters, results, error message, bundle path
    config.json    RunConfig + package versions (written at submit; ``fine_tune`` rewrites it identically)
    data/          copies of the uploaded files, so the run can be rebuilt and exported later
    events.jsonl   the progress events (see ``peft_core.progress``); error.log: the traceback of a failed run
    worker.json    pid and host of the process that trains it; worker.log: that process's output;
    outcome.json   how it ended, written by that process (see ``peft_core.jobs.outcome``); stop: a cancel request
    ... and everything ``pipeline.fine_tune`` / ``export_run`` write (model/, report.json, plots, bundle-*.zip)

Owners are opaque tokens (the app keeps one per browser); only their SHA-256 is stored, and every call that
names a run checks it, so a caller sees only its own runs (an unknown id and someone else's id look the same).
At most ``max_concurrent`` runs train at once (env ``PEFT_MAX_CONCURRENT_RUNS``, default 1); the rest wait
in a FIFO queue (``queue_info`` says what a queued run waits for).

Each run trains where its executor puts it (``peft_core.jobs.executors``; env ``PEFT_EXECUTOR``): by default in its
own OS process (``local``), so a crash, a kill or an out-of-memory death costs that run only (it ends "failed" with
the cause named) and the app process only schedules, watches and serves; ``ray`` runs each run as a task on a Ray
cluster; ``thread`` trains in the app's process (tests with a Python runner). When a manager starts on a folder that
a previous process left (a restart, a crash), runs that were queued are queued again in their order, and runs that
were training end "interrupted": ``restart`` queues one again from its saved config and data copy.

===========================  =======================  =======================================================
``PEFT_EXECUTOR``            local                    local / ray / thread
``PEFT_THREADS_PER_RUN``     cores // concurrent runs torch threads of each run's process
``PEFT_RUN_MEMORY_MB``       0 (no cap)               resident memory of each run's process group, watched by
                                                      the app (Linux); a run past it is killed and fails with
                                                      a message naming both numbers
``PEFT_RUN_NICE``            10                       CPU priority of run processes below the app's (``idle``:
                                                      ``SCHED_IDLE``)
===========================  =======================  =======================================================

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
from .executors import EXECUTORS, prime_for_threads
from .manager import JobManager
from .records import ACTIVE, TERMINAL, JobInfo, new_owner_token, owner_hash

__all__ = ["ACTIVE", "EXECUTORS", "DEFAULT_MAX_USER_DISK_MB", "DEFAULT_RUN_TTL_HOURS", "MB", "TERMINAL", "JobError",
           "JobInfo",
           "JobManager", "folder_bytes", "new_owner_token", "owner_hash", "prime_for_threads"]
