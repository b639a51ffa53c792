"""Handlers of steps 3-4 and the history (training runs): start, cancel, delete, the timer's poll of the selected
run, the /status and /runs API, Try it, export with signed download links, and compare. Runs are jobs of
``app_state.jobs()``; every call names the caller's owner token, so nobody sees another's runs.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import gradio as gr

import app_files as files
import app_form as form
import app_results as results
import app_state as state
import app_views as views
from app_try import text_inputs, try_kind, try_view
from app_data import _prepare, _run_config, data_options
from app_state import download_link, user_errors
from peft_core.errors import JobError
from peft_core.jobs import TERMINAL, new_owner_token
from peft_core.models import REGISTRY
from peft_core.tracking import parse_report_to

def _mine(owner):
    """This owner's runs, or [] while the browser has no token yet."""
    try:
        return state.jobs().list(owner)
    except JobError:
        return []


def _picker(owner, value=None):
    runs = _mine(owner)
    return gr.update(choices=[views.run_choice(j) for j in runs], value=value, visible=bool(runs))


def on_load(owner):
    """Page opened or reloaded: make sure the browser has an owner token, then select its newest active run
    (re-attach) or else its newest run."""
    try:
        runs = state.jobs().list(owner)
    except JobError:
        owner, runs = new_owner_token(), []
    active = [j for j in runs if j.state in ("queued", "running", "cancelling")]
    pick = (active or runs or [None])[0]
    return owner, _picker(owner, pick.id if pick else None), gr.update(value=None)


@user_errors
def train_model(owner, train_file, test_file, text_col, label_col, model, method, epochs, batch_size,
                learning_rate, head_learning_rate, weight_decay, warmup_ratio, max_length, dropout,
                early_stopping_patience, seed, num_layers, lora_r, lora_alpha, lora_dropout, lora_targets,
                probe_epochs=None, run_name=None, task=None, text_pair_column=None, label_separator=None,
                class_weights=False, report_to=None):
    """Check the inputs and queue a training run -> (run id, status HTML). Returns at once; follow the run
    with /status (API) or the live view (page). ``probe_epochs``: LP-FT warm-start epochs (None: the method's
    default); ``run_name``: an optional name or note shown with the run; ``task``: a task kind of
    ``peft_core.tasks.TASKS`` ("inferred" or None: from the data); ``text_pair_column``: the second text of pair
    tasks (None: inferred from well-known column pairs; "(none)" or "": no pair); ``label_separator``:
    multi-label strings' separator (None: inferred); ``class_weights``: weight the loss against class
    imbalance; ``report_to``: experiment trackers (``peft_core.tracking.TRACKERS`` names, a list or a
    comma-separated string; logs in the run's ``tracking/`` folder on the server)."""
    hp = (epochs, batch_size, learning_rate, head_learning_rate, weight_decay, warmup_ratio, max_length, dropout,
          early_stopping_patience, seed)
    method_opts = (num_layers, lora_r, lora_alpha, lora_dropout, lora_targets)
    options = data_options(text_col, label_col, task, text_pair_column, label_separator)
    cfg = _run_config(train_file, test_file, options, model, method, hp, method_opts, class_weights)
    cfg.train = dataclasses.replace(cfg.train, probe_epochs=probe_epochs)  # validated like the others
    cfg.report_to = parse_report_to(report_to)  # ConfigError names the choices
    data = _prepare(cfg.train_file, cfg.test_file, **options)
    if model and model in REGISTRY:  # a bundled model of the wrong kind: say so now, not after queueing
        from peft_core.pipeline import check_modality

        check_modality(REGISTRY[model], data.task.modality)
    info = state.jobs().submit(owner, cfg, name=run_name or "")
    return info.id, views.status_html(info, None, state.jobs().queue_position(info.id))


@user_errors
def cancel_run(owner, run_id):
    """Cancel the selected run (queued: at once; training: after the current step, keeping the best epoch)."""
    if not run_id:
        raise gr.Error("No run selected.", print_exception=False)
    info = state.jobs().cancel(owner, run_id)
    return views.status_html(info, state.jobs().progress(owner, run_id), None)


@user_errors
def restart_run(owner, run_id):
    """Queue an interrupted run again (the app stopped while it trained): it trains from the start with its saved
    settings and data copy."""
    if not run_id:
        raise gr.Error("No run selected.", print_exception=False)
    info = state.jobs().restart(owner, run_id)
    return views.status_html(info, None, state.jobs().queue_position(run_id))


@user_errors
def delete_run(owner, run_id):
    """Delete the selected run (its folder and record) once it has ended; frees its disk quota."""
    if not run_id:
        raise gr.Error("No run selected.", print_exception=False)
    state.jobs().delete(owner, run_id)
    gr.Info(f"Run {views.short(run_id)} deleted.")
    return _picker(owner, None)


def _cached_copy(path) -> str:
    """A copy of a run file (a plot) in Gradio's cache, which a gr.Image may show; the runs folder is never
    served. The copy is removed by the cache clean-up (``cache_cleanup``). None when the file is missing."""
    from gradio.processing_utils import save_file_to_cache
    from gradio.utils import get_upload_folder

    if not Path(path).is_file():
        return None  # not written (yet): the widget stays empty
    return save_file_to_cache(path, cache_dir=get_upload_folder())


def _results(info) -> dict:
    """``poll`` outputs of the selected run's results (``app_results.read_results``): the kind's metrics and
    per-class / per-label table, its notes, the evaluation figure, misclassified images, the worst held-out
    rows, whether there are results at all (``poll`` shows the predictions download). Empty while the run has
    no model or its report.json is not written yet."""
    res = results.read_results(state.jobs().dir(info.id)) if info is not None and info.has_model else None
    ready = res is not None
    res = res or results.empty_results()
    figure = lambda name: _cached_copy(res.figures[name]) if name in res.figures else None  # noqa: E731
    return {"metrics": res.metrics, "per_class": gr.update(value=res.per_class, visible=len(res.per_class) > 0,
                                                           label=_per_class_label(res.per_class)),
            "eval_notes": res.notes, "eval_img": figure("evaluation"),
            "miss_img": gr.update(value=figure("misclassified"), visible="misclassified" in res.figures),
            "mistakes": gr.update(value=res.mistakes, label=results.mistakes_label(res), visible=ready,
                                  column_widths=results.column_widths(res.mistakes.columns)),
            "results_col": gr.update(visible=ready)}


def _per_class_label(table) -> str:
    return "Per-label scores and decision thresholds" if "threshold" in table else "Per-class scores"


# what poll returns after ``view``
POLL_OUTPUTS = ["status", "loss_plot", "val_plot", "log", "metrics", "per_class", "eval_img", "history", "run",
                "compare_pick", "config_dl", "miss_img", "live_col", "results_col", "cancel_btn", "delete_btn",
                "restart_btn", "use_col", "use_note", "runs_col", "quota_md", "eval_notes", "mistakes",
                "predictions_dl", "text_in", "text_pair_in", "label_out", "try_table", "try_md", "score_dl", "eval_md",
                "eval_table"]


def poll(owner, run_id, view, request: gr.Request = None):
    """Timer tick: refresh what changed for the selected run (status, curves, log, results) and the run lists.
    ``view`` (per tab) remembers what is on screen so unchanged outputs are skipped; the config download link
    is renewed before it expires. Returns ``view`` and the outputs named in POLL_OUTPUTS (gr.skip() for unchanged
    ones)."""
    view, out = dict(view or {}), {}
    runs = _mine(owner)
    sig = [(j.id, j.state, j.name) for j in runs]
    if sig != view.get("sig"):
        view["sig"] = sig
        out |= form.run_lists(state.jobs(), owner, runs)
    info = next((j for j in runs if j.id == run_id), None)
    p = state.jobs().progress(owner, info.id) if info else None
    queue = views.queue_context(state.jobs(), owner, info, runs) if info and info.state == "queued" else None
    status = views.status_html(info, p, state.jobs().queue_position(info.id) if info else None, queue)
    if status != view.get("status"):
        view["status"], out["status"] = status, status
    live = (info.id, p.step, len(p.val), len(p.log), p.phase) if info else None
    if info and view.get("live") and view["live"][0] != info.id:
        # another run: Gradio's chart keeps the last run's axis type and series (colors) until it is given
        # None, so clear it now and draw the new run's curves at the next tick
        view["live"], out["val_plot"] = None, gr.update(value=None)
    elif live != view.get("live"):
        view["live"] = live
        loss, val = views.loss_frame(p), views.val_chart(p, info.params.get("epochs") if info else None)
        out |= {"loss_plot": gr.update(value=loss, visible=len(loss) > 0),
                "val_plot": gr.update(value=val if len(val) else None, visible=len(val) > 0),
                "log": views.log_text(p, info),
                "live_col": gr.update(visible=info is not None)}
    # results refresh when the run, its state or its report.json changes (a run can end before its report is read);
    # the download links are renewed before they expire, and once predictions.csv is there
    shown = (info.id, info.state, info.has_model, (state.jobs().dir(info.id) / "report.json").is_file()) if info else None
    if shown != view.get("shown"):
        view["shown"] = shown
        out |= _results(info) | form.shown(state.jobs(), info)
    has_predictions = bool(info and (state.jobs().dir(info.id) / "predictions.csv").is_file())
    link = (info.id, int(time.time() // (files.link_ttl_s() / 2)), has_predictions) if info else None
    if link != view.get("link"):
        view["link"] = link
        out["config_dl"] = gr.update(value=download_link(request, info.id, "config.json") if info else None,
                                     interactive=info is not None)
        out["predictions_dl"] = gr.update(value=download_link(request, info.id, "predictions.csv")
                                          if has_predictions else None, interactive=has_predictions,
                                          visible=has_predictions)
    return (view, *[out.get(k, gr.skip()) for k in POLL_OUTPUTS])


@user_errors
def run_status(owner: str, run_id: str) -> dict:
    """State of one of your runs: state (queued / running / cancelling / finished / failed / cancelled /
    interrupted), queue_position, phase, step, total_steps, epoch, elapsed_s, eta_s (seconds; None once the run
    has ended), error, params, results."""
    info = state.jobs().get(owner, run_id)
    p = state.jobs().progress(owner, run_id)
    return {"id": info.id, "state": info.state, "queue_position": state.jobs().queue_position(run_id),
            "phase": p.phase, "step": p.step, "total_steps": p.total_steps, "epoch": p.epoch,
            "elapsed_s": p.elapsed_s, "eta_s": None if info.state in TERMINAL else p.eta_s, "error": info.error,
            "model": info.model, "method": info.method, "params": info.params, "results": info.results, "log": p.log}


@user_errors
def quota_line(owner) -> str:
    """The owner's disk use against the per-user quota (step 5), e.g. after an export added its bundles."""
    return form.quota_line(state.jobs(), owner, _mine(owner))


@user_errors
def list_runs(owner: str) -> list:
    """Your runs, newest first (the records /status returns, without progress)."""
    return [j.to_dict() | {"owner": None} for j in state.jobs().list(owner)]


def new_owner() -> str:
    """A fresh owner token for API use: pass it as ``owner`` to /train, /status, /predict, /export."""
    return new_owner_token()


def _selected(run_id) -> str:
    if not run_id:
        raise gr.Error("Train a model first (step 3), or select one of your runs there.", print_exception=False)
    return run_id


def _text_row(owner, run_id, text, text_pair):
    """The selected run's TryView (``app_try``) for a text, or a text pair for pair runs."""
    from peft_core.inference import predict_logits

    run = state.jobs().run(owner, _selected(run_id))
    spec = run.data.task
    if spec.input_kind == "image":
        raise gr.Error("The selected run is an image model: upload an image and press 'Predict the image'.",
                       print_exception=False)
    try:
        inputs = text_inputs(spec, text, text_pair)
    except ValueError as e:
        raise gr.Error(str(e)[:1].upper() + str(e)[1:] + ".", print_exception=False) from e
    return spec, try_view(spec, predict_logits(run.model, run.tokenizer, inputs, run.train_config.max_length))


def _image_row(owner, run_id, image):
    """The selected run's TryView for an image file."""
    from peft_core.inference import predict_logits

    run = state.jobs().run(owner, _selected(run_id))
    spec = run.data.task
    if spec.input_kind != "image":
        raise gr.Error("The selected run is a text model: type a text and press 'Predict'.", print_exception=False)
    if not image:
        raise gr.Error("Upload an image to predict from.", print_exception=False)
    try:
        logits = predict_logits(run.model, run.tokenizer, [image], run.train_config.max_length)
    except ValueError as e:  # unreadable / too large image
        raise gr.Error(f"Cannot read this image: {e}. Upload a PNG, JPEG, BMP, GIF, WebP or TIFF file.",
                       print_exception=False) from e
    return spec, try_view(spec, logits)


def _details(spec, view) -> tuple:
    """The page's per-kind widgets of a prediction: the label widget's visibility, the per-label table, the
    summary line."""
    kind = try_kind(spec)
    return (gr.update(visible=kind.shows_label),
            gr.update(value=view.table, visible=kind.shows_table) if kind.shows_table else gr.update(visible=False),
            view.summary)


@user_errors
def try_it(owner, run_id, text, text_pair=None):
    """Text (and, for pair runs, the second text) -> the selected run's prediction: label probabilities
    (single-label), the chosen labels "; "-joined (multi-label), the number in the target's units (regression)."""
    return _text_row(owner, run_id, text, text_pair)[1].label


@user_errors
def try_it_details(owner, run_id, text, text_pair=None):
    """The page's rest of a text prediction (see :func:`_details`)."""
    return _details(*_text_row(owner, run_id, text, text_pair))


@user_errors
def try_image(owner, run_id, image):
    """Image file -> the selected run's prediction (as :func:`try_it`)."""
    return _image_row(owner, run_id, image)[1].label


@user_errors
def try_image_details(owner, run_id, image):
    """The page's rest of an image prediction (see :func:`_details`)."""
    return _details(*_image_row(owner, run_id, image))


@user_errors
def export_bundle(owner, run_id, request: gr.Request = None, progress=gr.Progress()):
    """Export the selected run to ONNX, check parity, build the bundle -> summary, parity table, download links
    (offered only if parity passed; signed, valid ``PEFT_DOWNLOAD_LINK_TTL_S`` seconds, served without a copy
    in Gradio's cache). The progress bar follows the export's phases."""

    def phase(event):
        if event.kind == "phase" and event.total_steps:
            progress(event.step / event.total_steps, desc=event.message)

    progress(0, desc="exporting")
    res = state.jobs().export(owner, _selected(run_id), callbacks=[phase])
    ok = res.bundle is not None
    text = (f"**Ready to download** (run `{views.short(run_id)}`). " if ok else "**Export blocked.** ") + res.message
    names = [Path(res.bundle).name] + [Path(p).name for p in res.bundles.values() if p != res.bundle] if ok else []
    links = [download_link(request, run_id, n) for n in names] or None
    return text, gr.update(value=views.parity_table(res.parity.to_table()), visible=True), gr.update(value=links,
                                                                                                 visible=ok)


@user_errors
def compare_runs(owner, run_ids):
    """Ticked runs -> side-by-side table, validation curves, per-class F1 (see ``app_form.compare``)."""
    return form.compare(state.jobs(), owner, run_ids)

