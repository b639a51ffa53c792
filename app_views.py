"""Presentation helpers for the app: job records and progress -> HTML, tables and plot frames (no gradio here).

Every function is pure: it takes a :class:`~peft_core.jobs.JobInfo` / :class:`~peft_core.progress.Progress`
and returns text or a DataFrame, so it can be tested without a browser.
"""
from __future__ import annotations

import html
import time

import pandas as pd

from peft_core.jobs import JobInfo
from peft_core.methods import METHODS
from peft_core.progress import Progress

STATE_WORDS = {"queued": "Queued", "running": "Running", "cancelling": "Cancelling", "finished": "Finished",
               "failed": "Failed", "cancelled": "Cancelled"}
HISTORY_COLUMNS = ["started", "run", "model", "method", "epochs", "lr (encoder / head)", "max_length",
                   "trainable %", "accuracy", "macro-F1", "duration (s)", "status"]
LOSS_COLUMNS = ["step", "loss"]
VAL_COLUMNS = ["epoch", "value", "metric"]


def short(run_id: str) -> str:
    return run_id[:8]


def _clock(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else ""


def _secs(s: float | None) -> str:
    if s is None:
        return "?"
    return f"{s:.0f} s" if s < 120 else f"{s // 60:.0f} min {s % 60:.0f} s"


def run_choice(info: JobInfo) -> tuple[str, str]:
    """(label, value) for the run picker: "a1b2c3d4 · head · finished · 2026-11-29 20:31"."""
    return f"{short(info.id)} · {info.method} · {info.state} · {_clock(info.created)}", info.id


def _bar(fraction: float) -> str:
    pct = round(100 * fraction, 1)
    return (f'<div class="run-bar" role="progressbar" aria-valuenow="{pct}" aria-valuemin="0" aria-valuemax="100" '
            'style="background:#e5e7eb;border-radius:6px;height:14px;overflow:hidden;margin:6px 0">'
            f'<div style="width:{pct}%;background:#4f46e5;height:100%"></div></div>')


def _results_line(info: JobInfo) -> str:
    r = info.results
    epochs = (f"best epoch {r['best_epoch']} of {r['epochs_run']} run"
              f"{' (early stopping)' if r.get('stopped_early') else ''}" if r["epochs_run"]
              else "no epoch had finished, so the weights after the last step were evaluated")
    return (f"held-out accuracy <b>{r['accuracy']:.4f}</b>, macro-F1 <b>{r['macro_f1']:.4f}</b> "
            f"(majority baseline accuracy {r['baseline_accuracy']:.4f}); {epochs}")


def status_html(info: JobInfo | None, p: Progress | None, queue_position: int | None) -> str:
    """The live status line of the selected run (state, progress bar, step, epoch, time left, outcome)."""
    if info is None:
        return ('<div id="run-status" class="run-status">No run selected yet. Load data (step 1), choose a method '
                '(step 2), then press <b>Start training</b>.</div>')
    head = f'<b data-state="{info.state}">{STATE_WORDS[info.state]}</b> · run <code>{short(info.id)}</code> · '
    head += f"{html.escape(info.method)} on {html.escape(info.model)}"
    body = ""
    if info.state == "queued":
        ahead = (queue_position or 1) - 1
        body = (f"Waiting for a free training slot: position <b>{queue_position}</b> in the queue ({ahead} run"
                f"{'' if ahead == 1 else 's'} ahead). It starts by itself; you may close this tab.")
    elif info.state in ("running", "cancelling") and p is not None:
        body = _running_html(info, p)
    elif info.state == "finished":
        body = f"Done in {_secs(info.duration_s)}: {_results_line(info)}."
    elif info.state == "cancelled":
        body = (f"Cancelled by you after {_secs(info.duration_s)}; the best state so far was kept and evaluated: "
                f"{_results_line(info)}." if info.results else "Cancelled before it started training.")
    elif info.state == "failed":
        body = f"It failed: {html.escape(info.error or 'unknown reason', quote=False)}. The log below shows how far it got."
    return f'<div id="run-status" class="run-status">{head}<br>{body}</div>'


def _running_html(info: JobInfo, p: Progress) -> str:
    if info.state == "cancelling":
        return "Stopping after the current step; the best epoch so far will be kept, evaluated and saved…"
    if p.phase == "preparing":
        return "Preparing: reading the data, loading the base model" + (
            " and computing the frozen encoder's features once…" if info.method == "head" else "…")
    if p.phase == "evaluating":
        return "Training done; evaluating on the held-out test set and saving the model…"
    epochs = info.params.get("epochs")
    left = f"about {_secs(p.eta_s)} left at most (early stopping may end it sooner)" if p.eta_s is not None else ""
    return (_bar(p.fraction) + f"Step <b>{p.step}</b> / {p.total_steps} ({100 * p.fraction:.0f} %) · epoch "
            f"{p.epoch:.1f} / {epochs} · {_secs(p.elapsed_s)} elapsed · {left}")


def loss_frame(p: Progress | None) -> pd.DataFrame:
    """Training loss per optimizer step (typed even when empty, so the plot's axes stay numeric)."""
    return pd.DataFrame(p.losses if p else [], columns=LOSS_COLUMNS).astype({"step": "int64", "loss": "float64"})


def val_frame(p: Progress | None) -> pd.DataFrame:
    """Validation accuracy and macro-F1 per epoch, long format (epoch, value, metric)."""
    rows = [(e, v, name) for e, name, v in (p.val if p else []) if name != "validation loss"]
    return pd.DataFrame(rows, columns=VAL_COLUMNS).astype({"epoch": "int64", "value": "float64", "metric": "str"})


def log_text(p: Progress | None, info: JobInfo | None) -> str:
    lines = list(p.log) if p else []
    if info is not None and info.state == "queued":
        lines.append("waiting in the queue")
    return "\n".join(lines) or "(nothing yet)"


def _fmt(v, digits=4):
    return "" if v is None else round(v, digits)


def history_frame(jobs: list[JobInfo]) -> pd.DataFrame:
    """One row per run (newest first) with model, method, key hyper-parameters, results, duration, status."""
    rows = []
    for j in jobs:
        p, r = j.params, j.results
        rows.append([_clock(j.created), short(j.id), j.model, j.method, p.get("epochs"),
                     f"{p.get('learning_rate')} / {p.get('head_learning_rate')}", p.get("max_length"),
                     _fmt(r.get("trainable_pct"), 3), _fmt(r.get("accuracy")), _fmt(r.get("macro_f1")),
                     _fmt(j.duration_s if j.finished else None, 1), j.state])
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def compare_frame(jobs: list[JobInfo]) -> pd.DataFrame:
    """Selected runs side by side: one column per run, one row per metric or setting."""
    if not jobs:
        return pd.DataFrame(columns=["", "(tick runs above to compare them)"])
    rows = {"method": lambda j: METHODS[j.method].title if j.method in METHODS else j.method,
            "model": lambda j: j.model, "status": lambda j: j.state,
            "test accuracy": lambda j: _fmt(j.results.get("accuracy")),
            "test macro-F1": lambda j: _fmt(j.results.get("macro_f1")),
            "majority baseline accuracy": lambda j: _fmt(j.results.get("baseline_accuracy")),
            "best validation macro-F1": lambda j: _fmt(j.results.get("best_val_macro_f1")),
            "best epoch / epochs run": lambda j: f"{j.results.get('best_epoch', '')} / {j.results.get('epochs_run', '')}",
            "trainable parameters": lambda j: f"{j.results.get('trainable_parameters', 0):,}",
            "trainable %": lambda j: _fmt(j.results.get("trainable_pct"), 3),
            "epochs (max)": lambda j: j.params.get("epochs"),
            "encoder / head lr": lambda j: f"{j.params.get('learning_rate')} / {j.params.get('head_learning_rate')}",
            "max_length (tokens)": lambda j: j.params.get("max_length"),
            "duration (s)": lambda j: _fmt(j.duration_s, 1)}
    data = {"": list(rows)}
    for j in jobs:
        data[short(j.id)] = [str(f(j)) for f in rows.values()]
    return pd.DataFrame(data)
