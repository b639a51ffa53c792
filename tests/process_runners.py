"""Runners for the process executor's tests (``peft_core.jobs.worker --runner tests/process_runners.py:NAME``):
stand-ins for ``fine_tune`` where real training adds nothing. They run in the run's own process."""
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

from peft_core.callbacks import JsonlLogger, ProgressEvent


def _run(score=0.9):
    """What ``fine_tune`` returns, as far as the job records read it."""
    return SimpleNamespace(
        data=SimpleNamespace(task=SimpleNamespace(kind="single_label")),
        train_result=SimpleNamespace(best_epoch=1, history=[{"val_score": score}], stopped_early=False,
                                     seconds=0.01, cancelled=False, score_name="macro-F1", precision="fp32"),
        eval_report=SimpleNamespace(accuracy=score, macro_f1=score, baseline_accuracy=0.5,
                                    headline_name="accuracy", headline=score, baseline_headline=0.5),
        trainable_parameters=1, total_parameters=10)


def quick(cfg, run_dir, callbacks, control):
    """Finishes at once with accuracy 0.9, after writing its pid to the log."""
    JsonlLogger(Path(run_dir) / "events.jsonl")(ProgressEvent("message", message=f"pid {os.getpid()}"))
    return _run()


def steps(cfg, run_dir, callbacks, control):
    """Trains 600 "steps" of 0.02 s (one event each), checking the stop flag at every step like fine_tune; a stop
    ends it "cancelled" with a model, like a real run stopped after an epoch."""
    log = JsonlLogger(Path(run_dir) / "events.jsonl")
    for step in range(1, 601):
        if control.should_stop:
            run = _run()
            run.train_result.cancelled = True
            return run
        log(ProgressEvent("step", step, 600, loss=1.0))
        time.sleep(0.02)
    return _run()


def stuck(cfg, run_dir, callbacks, control):
    """Stuck in one long step: never looks at the stop flag and ignores SIGTERM (only SIGKILL ends it)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    JsonlLogger(Path(run_dir) / "events.jsonl")(ProgressEvent("step", 1, 2, loss=1.0))
    time.sleep(3600)
    return _run()


def hog(cfg, run_dir, callbacks, control):
    """Takes memory 50 MB at a time (touching every page), up to 4 GB."""
    held = []
    for _ in range(80):
        held.append(bytearray(50_000_000))
        held[-1][::4096] = b"x" * len(held[-1][::4096])
        time.sleep(0.02)
    return _run()


def segfault(cfg, run_dir, callbacks, control):
    """Crashes in native code (SIGSEGV)."""
    os.kill(os.getpid(), signal.SIGSEGV)


def exit_now(cfg, run_dir, callbacks, control):
    """Leaves with os._exit(3): no exception, no outcome written."""
    os._exit(3)


def oom(cfg, run_dir, callbacks, control):
    """An allocation fails in Python (what a process under an address-space limit sees)."""
    raise MemoryError()
