"""The app's process-wide state and helpers shared by its handlers: where runs live, the job manager, the browser
secret, signed download links, the cache schedule, and the error decorator that turns core errors into messages.

``RUNS_ROOT`` (env ``PEFT_RUNS_DIR``, default ``./runs``) may be reassigned before the first ``jobs()`` call (tests
do). Handlers call ``app_state.jobs()`` (not a copy of the function) so a test can swap the manager.
"""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import gradio as gr

import app_files as files
from peft_core.errors import PeftCoreError
from peft_core.jobs import JobManager
from peft_core.methods import METHODS
from peft_core.models import REGISTRY

HERE = Path(__file__).resolve().parent


EXAMPLE = HERE / "examples" / "sms_spam.csv"


IMAGE_EXAMPLE = HERE / "examples" / "mnist_digits.zip"


RUNS_ROOT = Path(os.environ.get("PEFT_RUNS_DIR", HERE / "runs")).resolve()


log = logging.getLogger("peft_app")


HP_FIELDS = ["epochs", "batch_size", "learning_rate", "head_learning_rate", "weight_decay", "warmup_ratio",
             "max_length", "dropout", "early_stopping_patience", "seed"]


METHOD_CHOICES = [(f"{m.title}", name) for name, m in METHODS.items()]


MODEL_CHOICES = [(spec.title, key) for key, spec in REGISTRY.items()]


_MANAGER: JobManager | None = None  # the process's job service; user data is keyed by owner token inside it


DEMO = None  # the gr.Blocks app.py builds (set there): download links need its URL


def jobs() -> JobManager:
    """The job manager over ``RUNS_ROOT`` (created on first use, so tests can point RUNS_ROOT elsewhere)."""
    global _MANAGER
    if _MANAGER is None or _MANAGER.root != Path(RUNS_ROOT):
        _MANAGER = JobManager(RUNS_ROOT)
    return _MANAGER


def browser_secret() -> str:
    """Key that encrypts the owner token in localStorage and signs download links: ``PEFT_BROWSER_SECRET``, else
    one kept in the private state folder (``app_files.stored_secret``: outside RUNS_ROOT and every served
    folder) so tokens stay readable after a restart."""
    if os.environ.get("PEFT_BROWSER_SECRET"):
        return os.environ["PEFT_BROWSER_SECRET"]
    return files.stored_secret(RUNS_ROOT)


def download_link(request, run_id: str, name: str) -> str:
    """Signed link to file ``name`` of run ``run_id`` (the caller has checked the owner): absolute, from the
    request's or the launched app's URL, else (no request, app not launched) relative to the page's root."""
    path = files.signed_path(browser_secret(), run_id, name)
    if request is not None and getattr(request, "request", None) is not None:
        return files.root_url(request, getattr(DEMO.app, "root_path", None)) + path
    local = getattr(DEMO, "local_url", None) if DEMO is not None else None
    return (local.rstrip("/") if local else "") + path


def cache_cleanup() -> tuple[int, int]:
    """Gradio's ``delete_cache`` (frequency_s, age_s): every ``PEFT_CACHE_CLEAN_EVERY_S`` seconds (default 1800),
    the files Gradio stored for this app (uploads, plots, previews) older than ``PEFT_CACHE_MAX_AGE_S`` seconds
    (default 21600 = 6 h) are deleted. A page left open longer than that asks for its file again."""
    every = int(float(os.environ.get("PEFT_CACHE_CLEAN_EVERY_S") or 1800))
    age = int(float(os.environ.get("PEFT_CACHE_MAX_AGE_S") or 21600))
    return max(every, 1), max(age, 1)


def user_errors(fn):
    """Show core errors as a message; log anything else and show a short message (never a traceback).
    Outputs keep their earlier values because the handler raises instead of returning."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except PeftCoreError as e:
            raise gr.Error(str(e), print_exception=False) from e
        except Exception as e:
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Unexpected error ({type(e).__name__}: {str(e)[:200]}). Details are in the server "
                           "log; your earlier results are unchanged.", print_exception=False) from e

    return wrapper


def _need_file(path) -> str:
    if not path:
        raise gr.Error("No training file yet: upload a CSV/TSV/JSON/JSONL/Parquet file (text) or a .zip of class "
                       "folders (images), or click one of the example buttons.", print_exception=False)
    if not Path(path).is_file():
        raise gr.Error(f"The uploaded file {Path(path).name} is no longer on the server (uploads are kept "
                       f"{cache_cleanup()[1] / 3600:g} h): upload it again.", print_exception=False)
    return str(path)


def _is_zip(path) -> bool:
    from peft_core.image_data import is_image_upload

    return is_image_upload(path)

