"""Step 3's "Find the best settings": a budgeted search (``peft_core.search``) whose trials are this browser's runs.

"Start search" checks the data, then runs the search on a background thread; every trial is submitted to the job
manager (``search_runners.JobRunner``), so it is a normal run of the owner: in the run picker and the history,
comparable and exportable. The page's timer reads the search's status and leaderboard (best validation score
first, the best marked ★); "Stop search" stops the running trial (it keeps its best epoch) and ends the search;
"Show the best run" selects it in step 3. One search per owner at a time; nobody sees another owner's search.
The leaderboard is also saved (CSV + JSON) under the private state folder (``searches/<owner>/<search>/``).
A search lives in the app's process: a restart ends it (its finished trials stay in the history).

``PEFT_SEARCH_MAX_EPOCHS`` (an operator or test setting) caps the epochs of every trial.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import gradio as gr
import pandas as pd

import app_files as files
import app_state as state
from app_data import _prepare, data_options
from app_state import _need_file, user_errors
from peft_core.callbacks import Control
from peft_core.errors import ConfigError
from peft_core.jobs import owner_hash
from peft_core.methods import METHODS
from peft_core.progress import format_duration

SEARCHABLE = [(m.title, name) for name, m in METHODS.items() if m.search_space]
BOARD_COLUMNS = ["best", "trial", "method", "settings", "validation", "epochs", "test accuracy", "test macro-F1",
                 "state", "seconds"]
WIDTHS = ["5%", "5%", "7%", "33%", "10%", "7%", "9%", "9%", "8%", "7%"]


@dataclass
class _Search:
    """One owner's search: its settings, the trials so far (``peft_core.search.TrialRecord``), the result once
    ended, and the stop flag."""

    id: str
    budget_s: float
    methods: list
    started: float = field(default_factory=time.time)
    stop: Control = field(default_factory=Control)
    trials: list = field(default_factory=list)
    result: object = None
    error: str = ""
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


_LOCK = threading.Lock()
_SEARCHES: dict[str, _Search] = {}  # owner hash -> the owner's latest search


def section() -> dict:
    """The layout (inside step 3): an accordion with the budget, the methods, start / stop, the status line,
    the leaderboard and "Show the best run". Returns its components by name."""
    w = {}
    with gr.Accordion("Find the best settings (search within a time budget)", open=False, elem_id="search"):
        gr.Markdown("Tries methods and their main settings (learning rates or the linear probe's L2 term, N "
                    "layers, LoRA r and alpha, epochs, dropout) with Optuna, within the time you give, on the data and model chosen above. Each try is "
                    "a normal run in your history. Settings are chosen **on the validation split only**; the test "
                    "scores are shown, never used to choose. Runs that fall behind are stopped early.")
        with gr.Row(equal_height=True):
            w["budget"] = gr.Slider(0.5, 60, value=15, step=0.5, label="Time budget (minutes)",
                                    elem_id="search-budget", scale=2)
            w["methods"] = gr.CheckboxGroup(SEARCHABLE, value=[n for _, n in SEARCHABLE], label="Methods to try",
                                            elem_id="search-methods", scale=3)
        with gr.Row():
            w["start"] = gr.Button("Start search", variant="primary", elem_id="search-start")
            w["stop"] = gr.Button("Stop search", variant="stop", elem_id="search-stop", interactive=False)
            w["show_best"] = gr.Button("Show the best run", elem_id="search-best", interactive=False)
        w["status"] = gr.Markdown(elem_id="search-status")
        w["board"] = gr.Dataframe(pd.DataFrame(columns=BOARD_COLUMNS), label="Leaderboard (best validation score "
                                  "first, ★ = best)", interactive=False, wrap=True, elem_id="search-board",
                                  visible=False, column_widths=WIDTHS)
        w["sig"] = gr.State(None)
    return w


def wire(w: dict, owner, timer, d: dict, run_picker) -> None:
    """Events: start (with step 1-2's data, model, max_length, seed and class-weights fields), stop, show the best
    run (selects it in ``run_picker``), and the timer's refresh of status and leaderboard."""
    from app_runs import _picker
    from app_state import HP_FIELDS

    hp = d["hp"]
    inputs = [owner, d["train_file"], d["test_file"], d["text_col"], d["label_col"], d["task"], d["pair_col"],
              d["separator"], d["model"], hp[HP_FIELDS.index("max_length")], hp[HP_FIELDS.index("seed")],
              d["class_weights"], w["budget"], w["methods"]]
    private = dict(api_visibility="private")
    w["start"].click(start_search, inputs, w["status"], concurrency_limit=None, **private)
    w["stop"].click(stop_search, owner, w["status"], concurrency_limit=None, **private)
    w["show_best"].click(lambda tok: _picker(tok, best_run(tok)), owner, run_picker, **private)
    timer.tick(refresh, [owner, w["sig"]], [w["sig"], w["status"], w["board"], w["start"], w["stop"],
                                            w["show_best"]], show_progress="hidden", concurrency_limit=None,
               **private)


@user_errors
def start_search(owner, train_file, test_file, text_col, label_col, task, pair_col, separator, model, max_length,
                 seed, class_weights, budget_min, methods) -> str:
    """Check the data and settings, then start the owner's search on a background thread -> the status line.
    Raises gr.Error (shown) when a search of this owner is still running, no method is ticked, or the data or a
    setting is bad."""
    from peft_core.models import REGISTRY
    from peft_core.pipeline import RunConfig, check_modality
    from peft_core.training import TrainConfig

    key = owner_hash(owner)
    if not methods:
        raise gr.Error("Tick at least one method to try.", print_exception=False)
    if not budget_min or float(budget_min) <= 0:
        raise ConfigError(f"the time budget must be a positive number of minutes, got {budget_min!r}")
    options = data_options(text_col, label_col, task, pair_col, separator)
    fixed = {k: v for k, v in (("max_length", max_length), ("seed", seed)) if v is not None}  # empty: defaults
    base = RunConfig(train_file=_need_file(train_file), test_file=test_file or None, **options, model=model or "",
                     train=TrainConfig(**fixed, class_weights=bool(class_weights)))
    data = _prepare(base.train_file, base.test_file, **options)  # bad data: said now, not in every trial
    if model and model in REGISTRY:  # a bundled model of the wrong kind, too
        check_modality(REGISTRY[model], data.task.modality)
    with _LOCK:
        if key in _SEARCHES and _SEARCHES[key].running:
            raise gr.Error("A search is already running: stop it first.", print_exception=False)
        s = _Search(f"{time.strftime('%Y%m%d-%H%M%S')}", float(budget_min) * 60, list(methods))
        s.thread = threading.Thread(target=_run, args=(s, owner, key, base), daemon=True, name=f"search-{key[:8]}")
        _SEARCHES[key] = s
        s.thread.start()
    return status_text(s)


def _run(s: _Search, owner: str, key: str, base) -> None:
    """The search thread: trials as the owner's jobs; the leaderboard saved under the private state folder."""
    from peft_core.search import run_search
    from peft_core.search_runners import JobRunner

    cap = os.environ.get("PEFT_SEARCH_MAX_EPOCHS")
    folder = files.state_dir(state.RUNS_ROOT) / "searches" / key[:16] / s.id
    try:
        s.result = run_search(base, s.budget_s, JobRunner(state.jobs(), owner), s.methods, seed=0,
                              on_trial=lambda rec: _keep(s, rec), stop=s.stop,
                              epoch_cap=int(cap) if cap else None, out_dir=folder, poll_s=0.5)
    except Exception as e:  # noqa: BLE001 -- shown in the status line; the app goes on
        state.log.exception("search %s failed", s.id)
        s.error = f"{type(e).__name__}: {e}"


def _keep(s: _Search, rec) -> None:
    with _LOCK:
        if not any(t is rec for t in s.trials):
            s.trials.append(rec)


def _mine(owner) -> _Search | None:
    try:
        key = owner_hash(owner)
    except Exception:  # noqa: BLE001 -- no token yet (page loading)
        return None
    with _LOCK:
        return _SEARCHES.get(key)


@user_errors
def stop_search(owner) -> str:
    """Stop the owner's search: the running trial stops within a batch (keeping its best epoch), no other
    starts; the leaderboard follows."""
    s = _mine(owner)
    if s is None or not s.running:
        raise gr.Error("No search is running.", print_exception=False)
    s.stop.request_stop()
    return status_text(s) + " Stopping…"


def best_run(owner) -> str | None:
    """Run id of the owner's best trial so far (highest validation score with a model), or None."""
    from peft_core.search import mark_best

    s = _mine(owner)
    if s is None:
        return None
    with _LOCK:
        best = s.result.best if s.result is not None else mark_best(list(s.trials))
    return best.run_id if best else None


def board_frame(s: _Search | None) -> pd.DataFrame:
    """The leaderboard for the page: best validation score first, ★ on the best, scores to 4 decimals."""
    from peft_core.search import leaderboard, mark_best

    if s is None:
        return pd.DataFrame(columns=BOARD_COLUMNS)
    with _LOCK:
        trials = list(s.trials)
    mark_best(trials)
    names = [t.test.get("val_score_name") for t in trials if t.test.get("val_score_name")]
    df = leaderboard(trials, f"validation {names[0]}" if names else "validation").drop(columns="run")
    for col in (df.columns[4], "test accuracy", "test macro-F1"):
        df[col] = df[col].map(lambda v: "" if v is None or v != v else f"{v:.4f}")
    return df


def status_text(s: _Search | None) -> str:
    """One status paragraph: running (trial, time left, best so far) or ended (why, trials, wall time, best)."""
    if s is None:
        return ""
    if s.error:
        return f"**Search failed:** {s.error}"
    with _LOCK:
        trials = list(s.trials)
    from peft_core.search import mark_best

    best = mark_best(trials)
    best_txt = (f"best: trial {best.number + 1} ({best.method}), validation {best.val_score:.4f}"
                + (f", test accuracy {best.test['accuracy']:.4f}" if best.test.get("accuracy") is not None else "")
                if best else "no trial has a model yet")
    if s.running:
        left = max(0.0, s.budget_s - (time.time() - s.started))
        now = next((t for t in reversed(trials) if t.state == "running"), None)
        doing = f"trial {now.number + 1} ({now.method}) training" if now else "starting a trial"
        return (f"**Searching** ({', '.join(s.methods)}): {doing}; {format_duration(left)} left of "
                f"{format_duration(s.budget_s)}; {best_txt}.")
    r = s.result
    ended = {"budget": "time budget used", "stopped": "stopped"}.get(getattr(r, "ended", ""), getattr(r, "ended", ""))
    return (f"**Search ended** ({ended}): {len(trials)} trial(s) in {format_duration(getattr(r, 'seconds', 0))}; "
            f"{best_txt}. 'Show the best run' selects it above for results, Try it and export.")


def refresh(owner, sig):
    """Timer tick: the status line, the leaderboard and the buttons, when they changed (else gr.skip())."""
    s = _mine(owner)
    if s is None:
        return (sig, *[gr.skip()] * 5)
    with _LOCK:
        rows = [(t.number, t.state, t.val_score, len(t.val_scores)) for t in s.trials]
    now = (s.id, s.running, rows, s.error, int(time.time() // 5) if s.running else 0)
    if now == sig:
        return (sig, *[gr.skip()] * 5)
    board = board_frame(s)
    return (now, status_text(s), gr.update(value=board, visible=len(board) > 0), gr.update(interactive=not s.running),
            gr.update(interactive=s.running), gr.update(interactive=best_run(owner) is not None))
