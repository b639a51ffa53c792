"""Gradio app: pick a base model, upload data, train a small part of the model, evaluate, export an ONNX bundle.

Thin UI only: widgets become config objects, the core (``peft_core``, ``exporters``) does the work, results
become widgets. Training runs are background jobs (``peft_core.jobs``): "Start training" queues a run and returns
at once; a 1-second ``gr.Timer`` follows the selected run's event log. Each browser keeps an owner token in
``gr.BrowserState`` (localStorage), so a reload or a closed tab finds its runs again; nobody else sees them.
Runs live under ``PEFT_RUNS_DIR`` (default ``./runs``); ``PEFT_MAX_CONCURRENT_RUNS`` (default 1) runs train at
once, the rest queue. ``python app.py`` serves on http://127.0.0.1:7860 (``GRADIO_SERVER_NAME``/``PORT`` apply).

Modules: ``app_layout`` (the page), ``app_data`` (steps 1-2 handlers), ``app_runs`` (runs, Try it, export,
history handlers), ``app_form`` / ``app_views`` / ``app_history`` (what the form, the status and the tables show),
``app_results`` (a run's results read from its folder), ``app_try`` (Try it per task kind), ``app_state`` (runs
folder, job manager, secret, links), ``app_components`` (component behaviour), ``app_files`` (what may be
downloaded).
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import gradio as gr  # noqa: E402

import app_audit  # noqa: E402
import app_files as files  # noqa: E402
import app_form as form  # noqa: E402
import app_layout as layout  # noqa: E402
import app_search  # noqa: E402
import app_score as score  # noqa: E402
import app_state as state  # noqa: E402
import app_tracking as tracking_ui  # noqa: E402
from app_components import _image_or_message, _links_only, _type_checked_by_reader, quiet_console  # noqa: E402
from app_data import (balance_title, config_to_form, count_trainable, load_data, load_preview,  # noqa: E402,F401
                      method_defaults, modality_changed, preview_widths, _image_preview)
from app_runs import (POLL_OUTPUTS, _picker, cancel_run, compare_runs, delete_run, export_bundle,  # noqa: E402,F401
                      list_runs, new_owner, on_load, poll, quota_line, restart_run, run_status, train_model, try_image,
                      try_image_details, try_it, try_it_details)
from app_state import (EXAMPLE, HP_FIELDS, IMAGE_EXAMPLE, METHOD_CHOICES, MODEL_CHOICES,  # noqa: E402,F401
                       browser_secret, cache_cleanup, jobs)
from peft_core.limits import Limits  # noqa: E402
from peft_core.methods import METHODS  # noqa: E402
from peft_core.models import DEFAULT_MODEL  # noqa: E402

PRIVATE = dict(api_visibility="private")  # page-only events: not in the API
# Download lists hold signed links, whose size Gradio cannot know: it would print "(size unknown)" beside each.
# The export summary gives the sizes (MB = 10^6 bytes, the unit of the whole page), so the link just says so.
CSS = """#bundle-file td.download a { font-size: 0; display: inline-block; }
#bundle-file td.download a::after { content: "download ⇣"; font-size: var(--text-md); }"""


def build_demo() -> gr.Blocks:
    """The Blocks layout and its event wiring (built at import; launched under __main__)."""
    from peft_core.training import TrainConfig

    defaults = TrainConfig().with_defaults(METHODS["head"].train_defaults)
    with gr.Blocks(title="PEFT Studio") as demo:
        owner = gr.BrowserState("", storage_key="peft_studio_owner", secret=browser_secret())
        view = gr.State({})
        gr.Markdown("# PEFT Studio\nFine-tune a small part of a pretrained text or image model on your labelled data, see "
                    "honest held-out results, and download a verified ONNX bundle that runs with ONNX Runtime "
                    "alone.")
        d, t, u = layout.data_and_model(defaults, MODEL_CHOICES, DEFAULT_MODEL, METHOD_CHOICES), layout.train(), layout.use()
        h = layout.history()
        timer = gr.Timer(1.0)
        _links_only(u["bundle"]), _links_only(h["config_dl"]), _links_only(t["predictions_dl"])
        _links_only(u["score_dl"]), _type_checked_by_reader(u["score_in"])
        _image_or_message(u["image_in"])
        _type_checked_by_reader(d["train_file"]), _type_checked_by_reader(d["test_file"])
        _wire_data_and_method(d, u)
        demo.load(form.solver_widgets, d["method"], [d["hp"][HP_FIELDS.index(f)] for f in form.SOLVER_FIELDS],
                  **PRIVATE)  # the first method's fields (the page opens on the linear probe)
        app_audit.wire(d)
        _wire_runs(demo, owner, view, timer, d, t, u, h)
        app_search.wire(t["search"], owner, timer, d, t["run"])
    return demo


def _method_opts(d) -> list:
    return [d["num_layers"], d["lora_r"], d["lora_alpha"], d["lora_dropout"], d["lora_targets"]]


def _data_choices(d) -> list:
    """Step 1's choices in ``app_data.load_preview`` order after the files: text, label, task, pair, separator."""
    return [d["text_col"], d["label_col"], d["task"], d["pair_col"], d["separator"]]


def _wire_data_and_method(d, u) -> None:
    """Steps 1-2: example buttons, data kind, task, preview, column pickers, method defaults, trainable-parameter
    count."""
    data_inputs = [d["train_file"], d["test_file"]]
    data_outputs = [d["preview"], d["text_col"], d["label_col"], d["data_report"], d["classes"],
                    d["image_preview"], d["modality"], d["pair_col"]]
    d["example_btn"].click(lambda: str(EXAMPLE), None, d["train_file"], **PRIVATE)
    d["example_img_btn"].click(lambda: str(IMAGE_EXAMPLE), None, d["train_file"], **PRIVATE)
    d["modality"].change(modality_changed, [d["modality"], d["model"]],
                         [d["model"], d["columns_row"], u["text_try_col"], u["try_btn"], u["image_in"],
                          u["try_img_btn"]], **PRIVATE)
    d["train_file"].change(load_data, data_inputs + [d["task"], d["separator"]], data_outputs, api_name="load_data")
    d["test_file"].change(load_preview, data_inputs + _data_choices(d), data_outputs, **PRIVATE)
    for choice in (d["text_col"], d["label_col"], d["task"], d["pair_col"]):
        choice.input(load_preview, data_inputs + _data_choices(d), data_outputs, **PRIVATE)
    d["separator"].submit(load_preview, data_inputs + _data_choices(d), data_outputs, **PRIVATE)
    d["pair_col"].change(preview_widths, d["pair_col"], d["preview"], **PRIVATE)
    d["classes"].change(balance_title, d["classes"], d["classes"], **PRIVATE)
    d["method"].input(method_defaults, d["method"], d["hp"] + [d["num_layers"], d["lora_row"], d["probe_epochs"]],
                      **PRIVATE)
    d["method"].change(form.method_widgets, d["method"], [d["hp"][2], d["num_layers"], d["lora_row"],
                                                           d["probe_epochs"]], **PRIVATE)
    d["method"].change(form.solver_widgets, d["method"], [d["hp"][HP_FIELDS.index(f)] for f in form.SOLVER_FIELDS],
                       **PRIVATE)
    d["modality"].change(form.text_only, d["modality"], d["hp"][HP_FIELDS.index("max_length")], **PRIVATE)
    d["train_file"].change(form.preview_visible, d["train_file"], d["preview_row"], **PRIVATE)
    count_inputs = data_inputs + _data_choices(d) + [d["model"], d["method"]] + _method_opts(d)
    for trigger in (d["method"].change, d["model"].change, d["num_layers"].change, d["lora_r"].change,
                    d["label_col"].change, d["task"].change, d["pair_col"].change):
        trigger(count_trainable, count_inputs, d["trainable_md"], **PRIVATE)


def _wire_runs(demo, owner, view, timer, d, t, u, h) -> None:
    """Steps 3-5: start / cancel / delete, the live view, the form refill, the API-only calls, Try it, export,
    compare and config upload."""
    method_opts = _method_opts(d)
    demo.load(on_load, owner, [owner, t["run"], u["bundle"]], **PRIVATE)
    t["train_btn"].click(train_model, [owner, d["train_file"], d["test_file"], d["text_col"], d["label_col"],
                                       d["model"], d["method"]] + d["hp"] + method_opts
                         + [d["probe_epochs"], t["run_name"], d["task"], d["pair_col"], d["separator"],
                            d["class_weights"], t["report_to"]],
                         [t["started"], t["started_msg"]], api_name="train"
                         ).success(_picker, [owner, t["started"]], t["run"], **PRIVATE)
    t["run"].change(tracking_ui.report_to_of_run, [owner, t["run"]], t["report_to"], **PRIVATE)
    h["config_up"].upload(tracking_ui.report_to_of_config, h["config_up"], t["report_to"], **PRIVATE)
    t["cancel_btn"].click(cancel_run, [owner, t["run"]], t["status"], api_name="cancel", concurrency_limit=None)
    t["delete_btn"].click(delete_run, [owner, t["run"]], t["run"], api_name="delete", concurrency_limit=None)
    t["restart_btn"].click(restart_run, [owner, t["run"]], t["status"], api_name="restart", concurrency_limit=None)
    timer.tick(poll, [owner, t["run"], view], [view] + [{**t, **u, **h}[k] for k in POLL_OUTPUTS],
               show_progress="hidden", concurrency_limit=None, **PRIVATE)
    t["run"].change(lambda tok, run_id: form.run_to_form(state.jobs(), HP_FIELDS, tok, run_id), [owner, t["run"]],
                    [d["run_data_md"], d["modality"], d["model"], d["method"]] + d["hp"] + method_opts[1:]
                    + [d["num_layers"], d["probe_epochs"], d["task"], d["class_weights"]], **PRIVATE)
    gr.api(run_status, api_name="status", concurrency_limit=None)
    gr.api(list_runs, api_name="runs", concurrency_limit=None)
    gr.api(new_owner, api_name="new_owner", concurrency_limit=None)
    _wire_try_it(owner, t, u)
    u["export_btn"].click(export_bundle, [owner, t["run"]], [u["export_md"], u["parity"], u["bundle"]],
                          api_name="export", concurrency_id="export", concurrency_limit=1
                          ).then(quota_line, owner, h["quota_md"], **PRIVATE)  # the bundles take disk
    # the chart is cleared first: Gradio's chart keeps the last value's axis type and series until given None
    h["compare_pick"].change(lambda: None, None, h["compare_curves"], **PRIVATE).then(
        compare_runs, [owner, h["compare_pick"]],
        [h["compare"], h["compare_curves"], h["compare_f1"], h["compare_col"]], **PRIVATE)
    h["config_up"].upload(config_to_form, h["config_up"],
                          [d["model"], d["method"]] + d["hp"] + method_opts[1:]
                          + [d["num_layers"], d["lora_row"], d["task"], d["class_weights"], h["config_msg"]],
                          **PRIVATE)
    h["config_up"].upload(form.probe_from_config, h["config_up"], d["probe_epochs"], **PRIVATE)


def _wire_try_it(owner, t, u) -> None:
    """Step 4's Try it: /predict and /predict_image answer with the label widget's value (the API's answer);
    on the page the kind's other widgets (per-label table, summary) follow."""
    text = [owner, t["run"], u["text_in"], u["text_pair_in"]]
    details = [u["label_out"], u["try_table"], u["try_md"]]
    for trigger, private in ((u["try_btn"].click, False), (u["text_in"].submit, True),
                             (u["text_pair_in"].submit, True)):
        api = PRIVATE if private else dict(api_name="predict")
        trigger(try_it, text, u["label_out"], concurrency_limit=None, **api).success(
            try_it_details, text, details, concurrency_limit=None, **PRIVATE)
    image = [owner, t["run"], u["image_in"]]
    u["try_img_btn"].click(try_image, image, u["label_out"], api_name="predict_image", concurrency_limit=None
                           ).success(try_image_details, image, details, concurrency_limit=None, **PRIVATE)
    scored = [u["score_dl"], u["eval_md"], u["eval_table"]]
    u["score_btn"].click(score.score_file, [owner, t["run"], u["score_in"]], scored, api_name="score_file",
                         concurrency_id="score", concurrency_limit=1)
    u["eval_btn"].click(score.evaluate_file, [owner, t["run"], u["score_in"]], scored, api_name="evaluate_file",
                        concurrency_id="score", concurrency_limit=1)


demo = build_demo()
state.DEMO = demo


def launch(**kwargs):
    """Launch ``demo`` (queue: light calls such as preview, predict and status never wait behind training,
    which runs on the job manager's worker threads). Gradio serves only the examples folder and its cache;
    RUNS_ROOT and the state folder are blocked even if ``allowed_paths`` names them (see ``app_files``); run
    files go out through the signed download route. The cache is cleaned on ``cache_cleanup()``'s schedule."""
    quiet_console()
    Path(state.RUNS_ROOT).mkdir(parents=True, exist_ok=True)
    state.jobs()
    private = [str(Path(state.RUNS_ROOT).resolve()), str(files.state_dir(state.RUNS_ROOT))]
    kwargs.setdefault("max_file_size", Limits.from_env().max_upload_bytes)  # refused before it is stored
    kwargs.setdefault("allowed_paths", [str(EXAMPLE.parent)])
    kwargs["blocked_paths"] = list(kwargs.get("blocked_paths") or []) + private
    app_kwargs = dict(kwargs.get("app_kwargs") or {})
    app_kwargs["routes"] = list(app_kwargs.get("routes") or []) + [
        files.download_route(browser_secret, lambda: Path(state.RUNS_ROOT))]
    kwargs["app_kwargs"] = app_kwargs
    kwargs.setdefault("theme", gr.themes.Soft())
    kwargs["css"] = CSS + "\n" + (kwargs.get("css") or "")
    demo.delete_cache = cache_cleanup()
    return demo.queue(default_concurrency_limit=4).launch(**kwargs)



def main() -> None:
    """``python app.py``: launch on GRADIO_SERVER_NAME (default 127.0.0.1); a bad setting in the environment
    (``PEFT_EXECUTOR``, ``PEFT_MAX_CONCURRENT_RUNS``, limits, ...) is one line on stderr and exit status 2."""
    from peft_core.errors import ConfigError, JobError

    logging.basicConfig(level=logging.INFO)
    try:
        launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    except (ConfigError, JobError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
