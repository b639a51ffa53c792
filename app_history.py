"""The run history and the comparison of runs (step 5) as tables and chart frames (no gradio here).

Every run is summed up by its task kind's headline metric (records.py ``score_name`` / ``score`` /
``baseline_score``) and compared by the validation score its early stopping followed (``val_score``); records
and reports written before task kinds existed have macro-F1 only, and are read that way.
"""
from __future__ import annotations

import pandas as pd

from app_views import (_clock, _secs, _trains_encoder, best_val_of, epoch_axis, is_image_run, run_title,
                       score_of, short, task_title)
from peft_core.jobs import JobInfo
from peft_core.methods import METHODS

HISTORY_COLUMNS = ["started", "run", "data", "model · method", "settings", "metric", "score", "baseline",
                   "duration", "status"]
HISTORY_WIDTHS = ["11%", "13%", "13%", "12%", "17%", "7%", "6%", "7%", "7%", "7%"]  # words fit on one line
COMPARE_Y = "validation score"


def _fmt(v, digits=4):
    return "" if v is None else round(v, digits)


def _settings(j: JobInfo) -> str:
    """Key settings in one cell: "4 epochs · lr 0.0001 / 0.01 · max_length 64" (encoder / head learning rate;
    only the head's for a frozen encoder; no max_length for images)."""
    p = j.params
    rates = (f"{p.get('learning_rate')} / {p.get('head_learning_rate')}" if _trains_encoder(j)
             else f"{p.get('head_learning_rate')} (head)")
    text = f"{p.get('epochs')} epochs · lr {rates}"
    if p.get("solver") == "lbfgs":  # full-batch L-BFGS: no learning rate; epochs are iterations, L2 its term
        text = f"{p.get('epochs')} L-BFGS iterations · L2 {p.get('weight_decay')}"
    if (j.results or {}).get("precision") == "bf16":  # the steps ran under bf16 autocast (peft_core.precision)
        text += " · bf16"
    return text if is_image_run(j) else text + f" · max_length {p.get('max_length')}"


def history_frame(jobs: list[JobInfo]) -> pd.DataFrame:
    """One row per run (newest first): when, id and name, data file, model and method, settings, the task
    kind's headline metric with its score and baseline, duration in words, status (the trainable share is in the
    comparison)."""
    rows = []
    for j in jobs:
        name, score, baseline = score_of(j.results)
        rows.append([_clock(j.created), run_title(j), getattr(j, "dataset", ""), f"{j.model} · {j.method}",
                     _settings(j), name if j.results else "", _fmt(score), _fmt(baseline),
                     _secs(j.duration_s) if j.finished and j.started else "", j.state])
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def _best_val(j: JobInfo) -> str:
    name, value = best_val_of(j.results)
    return f"{value:.4f} ({name})" if value is not None else ""


def _test_score(j: JobInfo) -> str:
    name, score, _ = score_of(j.results)
    return f"{score:.4f} ({name})" if score is not None else ""


def compare_frame(jobs: list[JobInfo]) -> pd.DataFrame:
    """Selected runs side by side: one column per run, one row per metric or setting (accuracy only when a
    run has it, max_length only when a text run is among them)."""
    if not jobs:
        return pd.DataFrame(columns=["", "(tick runs above to compare them)"])
    text = any(not is_image_run(j) for j in jobs)
    rows = {"name": lambda j: getattr(j, "name", ""), "data": lambda j: getattr(j, "dataset", ""),
            "task": lambda j: task_title(j.results.get("task")) if j.results else "",
            "method": lambda j: METHODS[j.method].title if j.method in METHODS else j.method,
            "model": lambda j: j.model, "status": lambda j: j.state,
            "test score": _test_score,
            "baseline score": lambda j: _fmt(score_of(j.results)[2]),
            "test accuracy": lambda j: _fmt(j.results.get("accuracy")),
            "majority baseline accuracy": lambda j: _fmt(j.results.get("baseline_accuracy")),
            "best validation score": _best_val,
            "best epoch / epochs run": lambda j: f"{j.results.get('best_epoch', '')} / {j.results.get('epochs_run', '')}",
            "trainable parameters": lambda j: f"{j.results.get('trainable_parameters', 0):,}",
            "trainable %": lambda j: _fmt(j.results.get("trainable_pct"), 3),
            "epochs (max)": lambda j: j.params.get("epochs"),
            "encoder / head lr": lambda j: (f"{j.params.get('learning_rate') if _trains_encoder(j) else 'frozen'}"
                                            f" / {j.params.get('head_learning_rate')}"),
            "max_length (tokens)": lambda j: "" if is_image_run(j) else j.params.get("max_length"),
            "duration": lambda j: _secs(j.duration_s) if j.started else ""}
    if not text:
        del rows["max_length (tokens)"]
    if all(j.results.get("accuracy") is None for j in jobs):  # no single-label run among them
        del rows["test accuracy"], rows["majority baseline accuracy"]
    data = {"": list(rows)}
    for j in jobs:
        data[short(j.id)] = [str(f(j)) for f in rows.values()]
    return pd.DataFrame(data)


def compare_curves(histories: dict[str, list[dict]], score_names: dict[str, str] | None = None) -> pd.DataFrame:
    """Each run's validation score per epoch (the metric its early stopping followed: ``val_score``, or
    ``val_macro_f1`` in histories written before task kinds), long format (epoch per :func:`epoch_axis`,
    :data:`COMPARE_Y`, run) for one chart with a series per run. ``histories``: run label -> its report.json
    training history; ``score_names``: run label -> the score's name, added to the series name when the runs
    follow different metrics."""
    names = score_names or {}
    mixed = len({names.get(label, "macro-F1") for label in histories}) > 1
    rows = []
    for label, hist in histories.items():
        series = f"{label} · {names.get(label, 'macro-F1')}" if mixed else label
        for h in hist:
            value = h.get("val_score", h.get("val_macro_f1"))
            if value is not None:
                rows.append((int(h["epoch"]), float(value), series))
    frame = pd.DataFrame(rows, columns=["epoch", COMPARE_Y, "run"]).astype(
        {"epoch": "int64", COMPARE_Y: "float64", "run": "str"})
    return frame.assign(epoch=epoch_axis(frame["epoch"]))


NO_PER_CLASS = "(no per-class or per-label scores: regression runs are compared by their errors above)"


def compare_per_class(per_class: dict[str, list[dict]]) -> pd.DataFrame:
    """Per-class (single-label) or per-label (multi-label) test F1 with one column per run that has such
    scores (label order of the first run, then labels only others have); ``per_class``: run label -> the
    evaluation's per_class list (dicts with label, f1). When no ticked run has any, one row says so."""
    scored = {run: rows for run, rows in per_class.items() if rows}
    if per_class and not scored:
        return pd.DataFrame({"label": [NO_PER_CLASS]})
    labels: list[str] = []
    for rows in scored.values():
        labels += [r["label"] for r in rows if r["label"] not in labels]
    data = {"label": labels}
    for run, rows in scored.items():
        f1 = {r["label"]: round(float(r["f1"]), 4) for r in rows}
        data[f"F1 {run}"] = [f1.get(lab, "") for lab in labels]
    return pd.DataFrame(data)
