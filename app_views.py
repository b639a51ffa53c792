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
from peft_core.models import REGISTRY
from peft_core.progress import Progress
from peft_core.tasks import TASKS

STATE_WORDS = {"queued": "Queued", "running": "Running", "cancelling": "Cancelling", "finished": "Finished",
               "failed": "Failed", "cancelled": "Cancelled", "interrupted": "Interrupted"}
INFERRED = "inferred"  # the task choice that lets the data decide
NO_PAIR = "(none)"  # the second-text-column choice of single-text tasks
FROZEN_LR_LABEL = "Encoder learning rate (unused: the encoder stays frozen)"
LR_INFO = "AdamW step size for the trained encoder layers or adapters"
PROBE_INFO = "LP-FT: fit the head alone for up to this many epochs first; 0 = off"
LOSS_COLUMNS = ["step", "loss"]
VAL_COLUMNS = ["epoch", "value", "metric"]


def task_choices() -> list[tuple[str, str]]:
    """The task dropdown: "inferred from the data", then one entry per registered task kind (its title)."""
    return [("Inferred from the data", INFERRED)] + [(k.title, name) for name, k in TASKS.items()]


def task_title(name: str | None) -> str:
    """A task kind's title ("Multi-label classification"); runs recorded before task kinds are single-label."""
    kind = TASKS.get((name or "single_label").replace("-", "_"))
    return kind.title if kind else str(name)


def score_of(results: dict) -> tuple[str, float | None, float | None]:
    """(metric name, held-out score, baseline score) a run is summed up by: its task kind's headline metric
    (records.py ``score_name`` / ``score`` / ``baseline_score``); records written before task kinds have
    macro-F1 only, and no baseline macro-F1."""
    if "score_name" in results:
        return results["score_name"], results.get("score"), results.get("baseline_score")
    return "macro-F1", results.get("macro_f1"), None


def best_val_of(results: dict) -> tuple[str, float | None]:
    """(validation score name, best validation score): what early stopping and best-epoch selection
    followed; older records: macro-F1."""
    if "best_val_score" in results:
        return results.get("val_score_name") or "score", results["best_val_score"]
    return "macro-F1", results.get("best_val_macro_f1")


def short(run_id: str) -> str:
    return run_id[:8]


def _clock(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else ""


def _secs(s: float | None) -> str:
    """Seconds as words: "42 s", "4 min 12 s", "1 h 3 min"; "?" for None."""
    if s is None:
        return "?"
    s = round(s)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def is_image_run(info: JobInfo) -> bool:
    """True when the run trained an image model (its model is a bundled image model, or its data a .zip)."""
    spec = REGISTRY.get(info.model)
    return spec.modality == "image" if spec else getattr(info, "dataset", "").lower().endswith(".zip")


def run_title(info: JobInfo) -> str:
    """Short id, then the run's name when it has one: "a1b2c3d4 “lora r=4”"."""
    name = getattr(info, "name", "")
    return f"{short(info.id)} “{name}”" if name else short(info.id)


def run_choice(info: JobInfo) -> tuple[str, str]:
    """(label, value) for the run picker:
    "a1b2c3d4 “first try” · sms.csv · head · finished · 2026-11-29 20:31"."""
    parts = [run_title(info), getattr(info, "dataset", ""), info.method, info.state, _clock(info.created)]
    return " · ".join(p for p in parts if p), info.id


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
    name, score, baseline = score_of(r)
    text = f"held-out {html.escape(name)} <b>{score:.4f}</b>" if score is not None else "held-out scores saved"
    if baseline is not None:
        text += f" (baseline {baseline:.4f})"
    if r.get("accuracy") is not None:  # single-label runs: accuracy too, beside the majority baseline's
        text += (f", accuracy <b>{r['accuracy']:.4f}</b> (majority baseline accuracy "
                 f"{r.get('baseline_accuracy') or 0:.4f})")
    return f"{text}; {epochs}"


PHASE_WORDS = {"preparing": "Preparing the data and the base model",
               "encoding": "Computing the frozen encoder's features", "training": "Training",
               "evaluating": "Evaluating on the held-out test set and saving the model",
               "exporting": "Exporting to ONNX", "parity": "Checking ONNX against PyTorch",
               "int8": "Quantizing to int8", "bundle": "Building the bundle"}


def _duration(s: float | None) -> str:
    """The progress module's format_duration when it has one, else :func:`_secs`."""
    import peft_core.progress as progress

    fmt = getattr(progress, "format_duration", None)
    return fmt(s) if fmt is not None and s is not None else _secs(s)


def status_html(info: JobInfo | None, p: Progress | None, queue_position: int | None,
                queue: dict | None = None) -> str:
    """The live status line of the selected run (state, progress bar, step, epoch, time left, outcome).
    ``queue``: what a queued run waits for (see :func:`queue_context`); without it only the position is said."""
    if info is None:
        return ('<div id="run-status" class="run-status">No run selected yet. Load data (step 1), choose a method '
                '(step 2), then press <b>Start training</b>.</div>')
    head = f'<b data-state="{info.state}">{STATE_WORDS[info.state]}</b> · run <code>{short(info.id)}</code> · '
    head += f"{html.escape(info.method)} on {html.escape(info.model)}"
    if getattr(info, "dataset", ""):
        head += f" · data {html.escape(info.dataset)}"
    body = ""
    if info.state == "queued":
        body = queue_html(queue or {"position": queue_position})
    elif info.state in ("running", "cancelling") and p is not None:
        body = _running_html(info, p)
    elif info.state == "finished":
        body = f"Done in {_secs(info.duration_s)}: {_results_line(info)}."
    elif info.state == "cancelled":
        body = (f"Cancelled by you after {_secs(info.duration_s)}; the best state so far was kept and evaluated: "
                f"{_results_line(info)}." if info.results else
                html.escape(info.error or "Cancelled before it started training.", quote=False))
    elif info.state == "interrupted":
        body = ("Interrupted: the app stopped while this run was training. Press <b>Restart run</b> to train it "
                "again from the start with the same settings and data.")
    elif info.state == "failed":
        body = f"It failed: {html.escape(info.error or 'unknown reason', quote=False)}. The log below shows how far it got."
    return f'<div id="run-status" class="run-status">{head}<br>{body}</div>'


def queue_context(manager, owner: str, info: JobInfo, runs: list[JobInfo]) -> dict:
    """What a queued run waits for, from the manager's public methods: position (1-based, all users), slots
    (runs trained at once), mine_running [(title, method, eta_s or None)] (the owner's runs training now),
    mine_ahead (the owner's runs queued before it). Other users' runs are counted, never described."""
    position = manager.queue_position(info.id)
    mine_running = []
    for j in runs:
        if j.state in ("running", "cancelling"):
            try:
                eta = manager.progress(owner, j.id).eta_s
            except Exception:  # noqa: BLE001 -- the run ended or vanished meanwhile: no estimate
                eta = None
            mine_running.append((run_title(j), j.method, eta))
    mine_ahead = [run_title(j) for j in runs if j.state == "queued" and j.id != info.id
                  and (manager.queue_position(j.id) or 0) < (position or 0)]
    return {"position": position, "slots": getattr(manager, "max_concurrent", 1), "mine_running": mine_running,
            "mine_ahead": mine_ahead}


def queue_html(q: dict) -> str:
    """A queued run's wait in words: what trains now, what is queued before it, roughly when it may start."""
    position, slots = q.get("position") or 1, q.get("slots") or 1
    running, ahead = q.get("mine_running") or [], q.get("mine_ahead") or []
    others_running = max(slots - len(running), 0) if "mine_running" in q else None
    others_ahead = position - 1 - len(ahead)
    parts = [f"your run <code>{html.escape(t)}</code> ({html.escape(m)}, "
             + (f"about {_duration(eta)} left)" if eta is not None else "time left not known yet)")
             + " is training" for t, m, eta in running]
    if others_running:
        parts.append(f"{others_running} run{'s' if others_running > 1 else ''} of other users "
                     f"{'are' if others_running > 1 else 'is'} training")
    if ahead:
        parts.append(f"your run{'s' if len(ahead) > 1 else ''} " + ", ".join(f"<code>{html.escape(t)}</code>"
                                                                           for t in ahead) + " queued before it")
    if others_ahead > 0:
        parts.append(f"{others_ahead} run{'s' if others_ahead > 1 else ''} of other users queued before it")
    text = (f"Waiting for a free training slot (this server trains {slots} run{'s' if slots > 1 else ''} at a "
            "time)")
    text += (": " + "; ".join(parts) + ". ") if parts else ". "
    etas = [eta for _t, _m, eta in running]
    if running and not others_running and not ahead and others_ahead <= 0 and None not in etas:
        text += f"It may start in about {_duration(min(etas))}, when your run ends. "
    elif parts:
        text += "It starts when those have ended; their time left is not known to this page. "
    return text + "It starts by itself; you may close this tab."


def _phase_html(p: Progress) -> str | None:
    """"Encoding – 120/400 – about 12 s left" from the per-phase fields, or None when there are none."""
    phase, done, total = getattr(p, "phase", ""), getattr(p, "phase_done", None), getattr(p, "phase_total", None)
    if not total or phase == "training":
        return None
    eta = getattr(p, "phase_eta_s", None)
    left = f"about {_duration(eta)} left" if eta is not None else "estimating…"
    word = PHASE_WORDS.get(phase, phase.capitalize())
    return _bar(min(1.0, (done or 0) / total)) + f"{word} – {done or 0}/{total} – {left}"


def _running_html(info: JobInfo, p: Progress) -> str:
    if info.state == "cancelling":
        return "Stopping after the current step; the best epoch so far will be kept, evaluated and saved…"
    phased = _phase_html(p)
    if phased:
        return phased
    if p.phase in ("preparing", "encoding"):
        return "Preparing: reading the data, loading the base model" + (
            " and computing the frozen encoder's features once…" if not _trains_encoder(info) else "…")
    if p.phase != "training":
        return PHASE_WORDS.get(p.phase, "Evaluating on the held-out test set and saving the model") + "…"
    epochs = info.params.get("epochs")
    left = f"about {_secs(p.eta_s)} left at most (early stopping may end it sooner)" if p.eta_s is not None else ""
    return (_bar(p.fraction) + f"Step <b>{p.step}</b> / {p.total_steps} ({100 * p.fraction:.0f} %) · epoch "
            f"{p.epoch:.1f} / {epochs} · {_secs(p.elapsed_s)} elapsed · {left}")


def loss_frame(p: Progress | None) -> pd.DataFrame:
    """Training loss per optimizer step (typed even when empty, so the plot's axes stay numeric)."""
    return pd.DataFrame(p.losses if p else [], columns=LOSS_COLUMNS).astype({"step": "int64", "loss": "float64"})


def val_frame(p: Progress | None) -> pd.DataFrame:
    """The named validation metrics per epoch (accuracy, macro-F1, micro-F1, RMSE, R²...: the task kind's), long
    format (epoch, value, metric); the loss and the generic ``val_score`` (a copy of one of them) left out."""
    rows = [(e, v, name) for e, name, v in (p.val if p else []) if name not in ("validation loss", "val_score")]
    return pd.DataFrame(rows, columns=VAL_COLUMNS).astype({"epoch": "int64", "value": "float64", "metric": "str"})


def val_chart(p: Progress | None, max_epochs: int | None = None) -> pd.DataFrame:
    """:func:`val_frame` for the page's chart, epochs as :func:`epoch_axis` gives them for a run of at most
    ``max_epochs`` epochs (one axis type for the whole run)."""
    frame = val_frame(p)
    return frame.assign(epoch=epoch_axis(frame["epoch"], max_epochs))


EPOCH_ORDER = [str(e) for e in range(1, 1001)]  # x order of epoch charts (text epochs would sort "10" < "2")
TEXT_EPOCHS_UP_TO = 20  # beyond this many epochs a labelled category per epoch crowds the axis


def epoch_axis(epochs: pd.Series, max_epochs: int | None = None) -> pd.Series:
    """Epoch numbers for a chart's x axis: as text ("1", "2", ... one category each, ordered by
    :data:`EPOCH_ORDER`) up to :data:`TEXT_EPOCHS_UP_TO` epochs, so a short run shows every whole epoch and no
    "1.5"; as int64 beyond, so the axis picks a few whole-number ticks (the chart formats them with "d").
    ``max_epochs``: decide by this instead of the epochs present (a live run keeps one axis type)."""
    top = max_epochs or (epochs.max() if len(epochs) else 0)
    if top <= TEXT_EPOCHS_UP_TO:
        return epochs.astype(int).astype(str)
    return epochs.astype("int64")


def log_text(p: Progress | None, info: JobInfo | None) -> str:
    lines = list(p.log) if p else []
    if info is not None and info.state == "queued":
        lines.append("waiting in the queue")
    return "\n".join(lines) or "(nothing yet)"


def quota_text(used_bytes: int, limit_mb: float) -> str:
    """The owner's disk use against the per-owner quota, in words (MB = 10**6 bytes; limit 0 = no limit)."""
    used = used_bytes / 1e6
    if not limit_mb:
        return f"Your runs use {used:,.0f} MB of disk (no per-user limit on this server)."
    return (f"Your runs use {used:,.0f} MB of {limit_mb:,.0f} MB ({100 * used / limit_mb:.0f} %); beyond that, "
            "your oldest ended runs are deleted when you start a new one.")


def preview_frame(frame: pd.DataFrame, text_col: str | None, label_col: str | None, rows: int = 12,
                  clip: int = 200, pair_col: str | None = None) -> pd.DataFrame:
    """The data preview: the chosen text (and second text) and label columns first, then the others; texts
    longer than ``clip`` characters end in "…" so a long message does not push the label off screen."""
    first = [c for c in (text_col, pair_col, label_col) if c in frame.columns]
    out = frame[first + [c for c in frame.columns if c not in first]].head(rows).copy()
    for c in out.columns:
        if out[c].dtype == object or pd.api.types.is_string_dtype(out[c]):
            out[c] = out[c].map(lambda v: v[:clip] + "…" if isinstance(v, str) and len(v) > clip else v)
    return out


def parity_table(table: pd.DataFrame) -> pd.DataFrame:
    """The parity checks for the page: without the ``max_tokens`` column when no check had tokens (images)."""
    if "max_tokens" in table.columns and not pd.to_numeric(table["max_tokens"], errors="coerce").fillna(0).any():
        return table.drop(columns="max_tokens")
    return table


def _trains_encoder(j: JobInfo) -> bool:
    return METHODS[j.method].trains_encoder if j.method in METHODS else True
