"""Gradio app: pick a base model, upload data, train a small part of the model, evaluate, export an ONNX bundle.

Thin UI only: widgets become config objects, the core (``peft_core``, ``exporters``) does the work, results
become widgets. Training runs are background jobs (``peft_core.jobs``): "Start training" queues a run and returns
at once; a 1-second ``gr.Timer`` follows the selected run's event log. Each browser keeps an owner token in
``gr.BrowserState`` (localStorage), so a reload or a closed tab finds its runs again; nobody else sees them.
Runs live under ``PEFT_RUNS_DIR`` (default ``./runs``); ``PEFT_MAX_CONCURRENT_RUNS`` (default 1) runs train at
once, the rest queue. ``python app.py`` serves on http://127.0.0.1:7860 (``GRADIO_SERVER_NAME``/``PORT`` apply).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

import app_files as files  # noqa: E402
import app_form as form  # noqa: E402
import app_layout as layout  # noqa: E402
import app_views as views  # noqa: E402
from peft_core.data import infer_columns, prepare_data, read_table  # noqa: E402
from peft_core.errors import PeftCoreError  # noqa: E402
from peft_core.jobs import JobError, JobManager, new_owner_token  # noqa: E402
from peft_core.limits import Limits  # noqa: E402
from peft_core.methods import METHODS  # noqa: E402
from peft_core.models import DEFAULT_MODEL, DEFAULT_MODELS, REGISTRY  # noqa: E402

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


def _download_link(request, run_id: str, name: str) -> str:
    """Absolute signed link to file ``name`` of run ``run_id`` (the caller has checked the owner)."""
    base = files.root_url(request, getattr(demo.app, "root_path", None)) if request is not None and \
        getattr(request, "request", None) is not None else demo.local_url.rstrip("/")
    return base + files.signed_path(browser_secret(), run_id, name)


def _with_methods(component, **methods):
    """Give ``component`` the ``methods`` (e.g. postprocess) by making it an instance of a subclass marked as a
    template of its class: the page shows the same widget, and the copies Gradio makes of a component on every
    ``gr.update`` (``type(block)(**kwargs)``) keep the methods, which an instance attribute would not."""
    from abc import ABCMeta

    base = type(component)
    attrs = {"is_template": True, "__module__": __name__, "__qualname__": base.__name__, **methods}
    # ABCMeta.__new__ directly: ComponentMeta.__new__ would re-register the events the base class already has
    # and write a .pyi stub next to this file
    component.__class__ = ABCMeta.__new__(type(base), base.__name__, (base,), attrs)
    return component


def _links_only(component):
    """Make a File / DownloadButton take signed download links (absolute URLs) as its value, shown as they are.
    Gradio would fetch a URL value into its cache (a copy per export) and copy a path value there (only from
    served folders); a FileData whose ``url`` is absolute goes to the browser unchanged."""
    from gradio.data_classes import FileData, ListFiles

    def link(url: str) -> FileData:
        return FileData(path=url, url=url, orig_name=url.split("?")[0].rsplit("/", 1)[-1])

    def postprocess(self, value):
        if value is None:
            return None
        return ListFiles(root=[link(v) for v in value]) if isinstance(value, list) else link(value)

    return _with_methods(component, postprocess=postprocess)


def _image_or_message(component):
    """gr.Image opens an upload with Pillow before the handler runs, so a file that is not an image fails there
    with Gradio's generic "upstream app raised an exception". Say what is wrong instead."""
    base = type(component)

    def preprocess(self, payload):
        try:
            return base.preprocess(self, payload)
        except (OSError, ValueError, SyntaxError) as e:  # PIL.UnidentifiedImageError is an OSError
            name = getattr(payload, "orig_name", None) or Path(getattr(payload, "path", None) or "the file").name
            raise gr.Error(f"{name} is not an image: upload PNG, JPEG, BMP, GIF, WebP or TIFF.",
                           print_exception=False) from e

    return _with_methods(component, preprocess=preprocess)


def _type_checked_by_reader(component):
    """A gr.File checks ``file_types`` before the handler runs and fails the whole event (every output turns to
    "Error", with a generic list of types). Pass the upload's path on instead: the readers say what the file is
    and how to fix it (load_preview shows that as one message). Spreadsheets get past the page's own type
    check too, so that the app can say how to convert them."""
    from gradio.data_classes import ListFiles
    from gradio.utils import NamedString

    def preprocess(self, payload):
        if payload is None:
            return None
        return NamedString((payload[0] if isinstance(payload, ListFiles) else payload).path)

    if component.file_count == "single" and component.type == "filepath":
        _with_methods(component, preprocess=preprocess)
        if component.file_types:
            component.file_types = list(component.file_types) + [t for t in SPREADSHEETS
                                                                 if t not in component.file_types]
    return component


SPREADSHEETS = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods", ".numbers")


def _upload_message(train_file, test_file, error: str) -> str:
    """The data report's text for an upload that cannot be used (``error``: the reader's message)."""
    sheets = [Path(f).name for f in (train_file, test_file) if f and Path(f).suffix.lower() in SPREADSHEETS]
    if sheets:
        error = (f"{sheets[0]} is a spreadsheet workbook, not a table file: save the sheet as CSV (File > Save as "
                 "> CSV UTF-8) and upload that")
    return f"**⚠ This file cannot be used:** {error.rstrip('.')}. Nothing else on the page was changed."


def quiet_console() -> None:
    """Keep the server console for what an operator can act on (the URL, errors, run deletions). For this
    process only (the core library is left alone): pandas' Pandas4Warning raised inside Gradio's queue,
    transformers' and huggingface_hub's progress bars and info lines (weight loading), and the ONNX exporter's
    INFO lines (``python app.py`` logs at INFO). Run by ``launch()``."""
    import warnings

    try:
        from pandas.errors import Pandas4Warning
    except ImportError:  # pandas < 3
        Pandas4Warning = None  # noqa: N806
    if Pandas4Warning is not None:  # e.g. "is_categorical_dtype is deprecated", from gr.LinePlot at every tick
        warnings.filterwarnings("ignore", category=Pandas4Warning, module=r"gradio(\.|$)")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    for name in ("onnxscript", "onnx_ir", "torch.onnx", "torch.export", "torch._dynamo", "httpx", "datasets"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _cached_copy(path) -> str:
    """A copy of a run file (a plot) in Gradio's cache, which a gr.Image may show; the runs folder is never
    served. The copy is removed by the cache clean-up (``cache_cleanup``)."""
    from gradio.processing_utils import save_file_to_cache
    from gradio.utils import get_upload_folder

    return save_file_to_cache(path, cache_dir=get_upload_folder())


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


def _prepare(train_file, test_file, text_col=None, label_col=None):
    """prepare_data for a check or a preview: a zip's images go to a temporary folder removed afterwards."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="peft_preview_") as tmp:
        return prepare_data(train_file, test_file or None, text_column=text_col or None,
                            label_column=label_col or None, extract_dir=tmp)


def _image_preview(train_file, test_file):
    """Zip chosen -> (sample table, gallery items, report markdown, class table, task 'image')."""
    import tempfile

    from peft_core.image_data import load_image_upload

    with tempfile.TemporaryDirectory(prefix="peft_preview_") as tmp:  # extracted once, removed afterwards
        frame, data = load_image_upload(train_file, test_file or None, extract_dir=tmp)
        sample = frame.groupby("label", sort=True).head(2).head(16)
        gallery = [(_thumbnail(p), f"{lab}") for p, lab in zip(sample["image"], sample["label"])]
    table = frame[["name", "label", "split"]].rename(columns={"name": "file", "label": "class folder"}).head(12)
    return table, gallery, data


def _thumbnail(path):
    """A small RGB copy of an image as a PIL image (Gradio stores it; the extracted file may go away)."""
    from peft_core.images import load_rgb

    img = load_rgb(path)
    img.thumbnail((160, 160))
    return img


def load_preview(train_file, test_file, text_col=None, label_col=None):
    """File chosen -> preview table, column pickers (inferred unless chosen), data report, class balance,
    image gallery (zip uploads), task. A cleared file clears the preview. A file that cannot be used leaves
    every widget as it was and says why, once, in the data report (raising would mark every output "Error")."""
    try:
        return _load_preview(train_file, test_file, text_col, label_col)
    except gr.Error as e:
        message = e.message
    except PeftCoreError as e:
        message = str(e)
    except Exception as e:
        log.exception("unexpected error in load_preview")
        message = f"unexpected error ({type(e).__name__}: {str(e)[:200]}); details are in the server log"
    report = _upload_message(train_file, test_file, message)
    return gr.skip(), gr.skip(), gr.skip(), report, gr.skip(), gr.skip(), gr.skip()


def _load_preview(train_file, test_file, text_col=None, label_col=None):
    if not train_file:
        return (pd.DataFrame(columns=["(upload a file)"]), gr.update(choices=[], value=None),
                gr.update(choices=[], value=None), "", None, gr.update(value=None, visible=False), gr.skip())
    if _is_zip(_need_file(train_file)):
        table, gallery, data = _image_preview(train_file, test_file)
        return (table, gr.update(choices=[], value=None), gr.update(choices=[], value=None),
                data.report.to_markdown(), data.report.class_table(), gr.update(value=gallery, visible=True),
                "image")
    frame, _ = read_table(_need_file(train_file))
    cols = list(frame.columns)
    text_col = text_col if text_col in cols else None
    label_col = label_col if label_col in cols else None
    chosen = text_col, label_col
    text_col, label_col = infer_columns(frame, text_col, label_col)
    data = _prepare(train_file, test_file, *chosen)  # columns not chosen are inferred there (and said so)
    return (views.preview_frame(frame, text_col, label_col), gr.update(choices=cols, value=text_col),
            gr.update(choices=cols, value=label_col),
            data.report.to_markdown(), data.report.class_table(), gr.update(value=None, visible=False), "text")


def task_changed(task, model):
    """Task switched -> the bundled model for it (a model typed by the user stays if it is not a bundled one
    of the other task), and which inputs to show."""
    image = task == "image"
    bundled_other = model in REGISTRY and REGISTRY[model].modality != task
    return (gr.update(value=DEFAULT_MODELS[task]) if bundled_other or not model else gr.update(),
            gr.update(visible=not image), gr.update(visible=not image), gr.update(visible=not image),
            gr.update(visible=image), gr.update(visible=image))


def method_defaults(method: str):
    """Method changed -> its default hyper-parameters and which method options to show."""
    from peft_core.training import TrainConfig

    cfg = TrainConfig().with_defaults(METHODS[method].train_defaults)
    return ([getattr(cfg, f) for f in HP_FIELDS]
            + [gr.update(visible=method == "last_n"), gr.update(visible=method == "lora"), cfg.probe_epochs])


def _method_config(method, num_layers, lora_r, lora_alpha, lora_dropout, lora_targets) -> dict:
    return {"head": {}, "last_n": {"num_layers": num_layers},
            "lora": {"r": lora_r, "alpha": lora_alpha, "dropout": lora_dropout,
                     "target_modules": lora_targets or ""}}[method]


def _run_config(train_file, test_file, text_col, label_col, model, method, hp, method_opts):
    from peft_core.pipeline import RunConfig
    from peft_core.training import TrainConfig

    train = TrainConfig(**dict(zip(HP_FIELDS, hp)))
    return RunConfig(train_file=_need_file(train_file), test_file=test_file or None, text_column=text_col or None,
                     label_column=label_col or None, model=model or "", method=method,
                     method_config=_method_config(method, *method_opts), train=train)


@user_errors
def count_trainable(train_file, test_file, text_col, label_col, model, method, *method_opts):
    """Load the base model with the method applied and report trainable parameters (before training)."""
    from peft_core.pipeline import build_model, trainable_summary

    num_labels, task = 2, "text"
    if train_file:
        try:
            data = _prepare(train_file, test_file, text_col, label_col)
        except PeftCoreError:
            return gr.skip()  # a file that cannot be used: the data report says why, once
        num_labels, task = data.task.num_labels, ("image" if _is_zip(train_file) else "text")
    if model in REGISTRY and REGISTRY[model].modality != task:
        model = DEFAULT_MODELS[task]  # the task switch is moving the model picker to this one
    *_, trainable, total = build_model(model or DEFAULT_MODELS[task], method, _method_config(method, *method_opts),
                                       num_labels)
    return f"**{trainable_summary(trainable, total)}** with a {num_labels}-class head."


def _mine(owner):
    """This owner's runs, or [] while the browser has no token yet."""
    try:
        return jobs().list(owner)
    except JobError:
        return []


def _picker(owner, value=None):
    runs = _mine(owner)
    return gr.update(choices=[views.run_choice(j) for j in runs], value=value, visible=bool(runs))


def on_load(owner):
    """Page opened or reloaded: make sure the browser has an owner token, then select its newest active run
    (re-attach) or else its newest run."""
    try:
        runs = jobs().list(owner)
    except JobError:
        owner, runs = new_owner_token(), []
    active = [j for j in runs if j.state in ("queued", "running", "cancelling")]
    pick = (active or runs or [None])[0]
    return owner, _picker(owner, pick.id if pick else None), gr.update(value=None)


@user_errors
def train_model(owner, train_file, test_file, text_col, label_col, model, method, epochs, batch_size,
                learning_rate, head_learning_rate, weight_decay, warmup_ratio, max_length, dropout,
                early_stopping_patience, seed, num_layers, lora_r, lora_alpha, lora_dropout, lora_targets,
                probe_epochs=None, run_name=""):
    """Check the inputs and queue a training run -> (run id, status HTML). Returns at once; follow the run
    with /status (API) or the live view (page). ``probe_epochs``: LP-FT warm-start epochs (None: the method's
    default); ``run_name``: an optional name or note shown with the run."""
    hp = (epochs, batch_size, learning_rate, head_learning_rate, weight_decay, warmup_ratio, max_length, dropout,
          early_stopping_patience, seed)
    method_opts = (num_layers, lora_r, lora_alpha, lora_dropout, lora_targets)
    cfg = _run_config(train_file, test_file, text_col, label_col, model, method, hp, method_opts)
    cfg.train = dataclasses.replace(cfg.train, probe_epochs=probe_epochs)  # validated like the others
    _prepare(cfg.train_file, cfg.test_file, cfg.text_column, cfg.label_column)
    if model and model in REGISTRY:  # a bundled model of the wrong kind: say so now, not after queueing
        from peft_core.pipeline import check_modality

        check_modality(REGISTRY[model], "image" if _is_zip(cfg.train_file) else "text")
    info = jobs().submit(owner, cfg, name=run_name or "")
    return info.id, views.status_html(info, None, jobs().queue_position(info.id))


@user_errors
def cancel_run(owner, run_id):
    """Cancel the selected run (queued: at once; training: after the current step, keeping the best epoch)."""
    if not run_id:
        raise gr.Error("No run selected.", print_exception=False)
    info = jobs().cancel(owner, run_id)
    return views.status_html(info, jobs().progress(owner, run_id), None)


@user_errors
def delete_run(owner, run_id):
    """Delete the selected run (its folder and record) once it has ended; frees its disk quota."""
    if not run_id:
        raise gr.Error("No run selected.", print_exception=False)
    jobs().delete(owner, run_id)
    gr.Info(f"Run {views.short(run_id)} deleted.")
    return _picker(owner, None)


def _results(info):
    """Outputs metrics, per-class, confusion matrix, misclassified images of a run (empty when it has no model
    or its report.json is not written yet) and whether there are results."""
    from peft_core.evaluation import EvalReport

    report_path = jobs().dir(info.id) / "report.json" if info else None
    if info is None or not info.has_model or not report_path.is_file():
        return (pd.DataFrame(columns=["metric", "model", "baseline"]),
                pd.DataFrame(columns=["label", "precision", "recall", "f1", "support"]), None,
                gr.update(value=None, visible=False), False)
    ev = EvalReport(**json.loads(report_path.read_text())["evaluation"])
    run_dir = jobs().dir(info.id)
    miss = run_dir / "misclassified.png"
    return (ev.metrics_table(), ev.per_class_table(), _cached_copy(run_dir / "confusion_matrix.png"),
            gr.update(value=_cached_copy(miss), visible=True) if miss.is_file() else gr.update(value=None,
                                                                                               visible=False),
            True)


POLL_OUTPUTS = ["status", "loss_plot", "val_plot", "log", "metrics", "per_class", "cm_img", "history", "run",
                "compare_pick", "config_dl", "miss_img", "live_col", "results_col", "cancel_btn", "delete_btn",
                "use_col", "use_note", "runs_col", "quota_md"]  # what poll returns after ``view``, in this order


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
        out |= form.run_lists(jobs(), owner, runs)
    info = next((j for j in runs if j.id == run_id), None)
    p = jobs().progress(owner, info.id) if info else None
    queue = views.queue_context(jobs(), owner, info, runs) if info and info.state == "queued" else None
    status = views.status_html(info, p, jobs().queue_position(info.id) if info else None, queue)
    if status != view.get("status"):
        view["status"], out["status"] = status, status
    live = (info.id, p.step, len(p.val), len(p.log), p.phase) if info else None
    if live != view.get("live"):
        view["live"] = live
        loss, val = views.loss_frame(p), views.val_chart(p)
        out |= {"loss_plot": gr.update(value=loss, visible=len(loss) > 0),
                "val_plot": gr.update(value=val, visible=len(val) > 0), "log": views.log_text(p, info),
                "live_col": gr.update(visible=info is not None)}
    # results refresh when the run, its state or its report.json changes (a run can end before its report is read)
    shown = (info.id, info.state, info.has_model, (jobs().dir(info.id) / "report.json").is_file()) if info else None
    if shown != view.get("shown"):
        view["shown"] = shown
        out |= form.shown(jobs(), info, *_results(info))
    link = (info.id, int(time.time() // (files.link_ttl_s() / 2))) if info else None
    if link != view.get("link"):
        view["link"] = link
        out["config_dl"] = gr.update(value=_download_link(request, info.id, "config.json") if info else None,
                                     interactive=info is not None)
    return (view, *[out.get(k, gr.skip()) for k in POLL_OUTPUTS])


@user_errors
def run_status(owner: str, run_id: str) -> dict:
    """State of one of your runs: state (queued / running / cancelling / finished / failed / cancelled),
    queue_position, phase, step, total_steps, epoch, elapsed_s, eta_s (seconds), error, params, results."""
    info = jobs().get(owner, run_id)
    p = jobs().progress(owner, run_id)
    return {"id": info.id, "state": info.state, "queue_position": jobs().queue_position(run_id),
            "phase": p.phase, "step": p.step, "total_steps": p.total_steps, "epoch": p.epoch,
            "elapsed_s": p.elapsed_s, "eta_s": p.eta_s, "error": info.error, "model": info.model,
            "method": info.method, "params": info.params, "results": info.results, "log": p.log}


@user_errors
def list_runs(owner: str) -> list:
    """Your runs, newest first (the records /status returns, without progress)."""
    return [j.to_dict() | {"owner": None} for j in jobs().list(owner)]


def new_owner() -> str:
    """A fresh owner token for API use: pass it as ``owner`` to /train, /status, /predict, /export."""
    return new_owner_token()


def _selected(run_id) -> str:
    if not run_id:
        raise gr.Error("Train a model first (step 3), or select one of your runs there.", print_exception=False)
    return run_id


@user_errors
def try_it(owner, run_id, text):
    """Text -> label probabilities of the selected run's model."""
    from peft_core.inference import predict_proba

    run = jobs().run(owner, _selected(run_id))
    if not (text or "").strip():
        raise gr.Error("Type a text to classify.", print_exception=False)
    if run.data.task.kind == "image-classification":
        raise gr.Error("The selected run is an image model: upload an image and press 'Predict the image'.",
                       print_exception=False)
    probs = predict_proba(run.model, run.tokenizer, [text], run.train_config.max_length)[0]
    return {label: float(p) for label, p in zip(run.data.task.labels, probs)}


@user_errors
def try_image(owner, run_id, image):
    """Image file -> label probabilities of the selected run's image model."""
    from peft_core.inference import predict_proba

    run = jobs().run(owner, _selected(run_id))
    if run.data.task.kind != "image-classification":
        raise gr.Error("The selected run is a text model: type a text and press 'Predict'.", print_exception=False)
    if not image:
        raise gr.Error("Upload an image to classify.", print_exception=False)
    try:
        probs = predict_proba(run.model, run.tokenizer, [image], run.train_config.max_length)[0]
    except ValueError as e:  # unreadable / too large image
        raise gr.Error(f"Cannot read this image: {e}. Upload a PNG, JPEG, BMP, GIF, WebP or TIFF file.",
                       print_exception=False) from e
    return {label: float(p) for label, p in zip(run.data.task.labels, probs)}


@user_errors
def export_bundle(owner, run_id, request: gr.Request = None, progress=gr.Progress()):
    """Export the selected run to ONNX, check parity, build the bundle -> summary, parity table, download links
    (offered only if parity passed; signed, valid ``PEFT_DOWNLOAD_LINK_TTL_S`` seconds, served without a copy
    in Gradio's cache). The progress bar follows the export's phases."""

    def phase(event):
        if event.kind == "phase" and event.total_steps:
            progress(event.step / event.total_steps, desc=event.message)

    progress(0, desc="exporting")
    res = jobs().export(owner, _selected(run_id), callbacks=[phase])
    ok = res.bundle is not None
    text = (f"**Ready to download** (run `{views.short(run_id)}`). " if ok else "**Export blocked.** ") + res.message
    names = [Path(res.bundle).name] + [Path(p).name for p in res.bundles.values() if p != res.bundle] if ok else []
    links = [_download_link(request, run_id, n) for n in names] or None
    return text, gr.update(value=views.parity_table(res.parity.to_table()), visible=True), gr.update(value=links,
                                                                                                 visible=ok)


@user_errors
def compare_runs(owner, run_ids):
    """Ticked runs -> side-by-side table, validation curves, per-class F1 (see ``app_form.compare``)."""
    return form.compare(jobs(), owner, run_ids)


@user_errors
def config_to_form(config_file):
    """An uploaded run config.json -> the model, method and hyper-parameter widgets (data stays as loaded)."""
    from peft_core.pipeline import RunConfig, versions

    try:
        doc = json.loads(Path(config_file).read_text())
        cfg = RunConfig(**doc["run"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise gr.Error(f"Not a PEFT Studio run config ({type(e).__name__}: {str(e)[:200]}). Use the "
                       "config.json downloaded from a run.", print_exception=False) from e
    t = cfg.train.with_defaults(METHODS[cfg.method].train_defaults)
    cfg.model = cfg.model or DEFAULT_MODELS["image" if _is_zip(cfg.train_file) else "text"]
    mc = cfg.method_cfg().to_dict()
    opts = [mc.get("r", 8), mc.get("alpha", 16), mc.get("dropout", 0.1),
            ", ".join(mc.get("target_modules") or []) if isinstance(mc.get("target_modules"), (list, tuple))
            else (mc.get("target_modules") or "")]
    here = versions()
    diff = [f"{k} {v} in the config, {here.get(k)} here" for k, v in doc.get("versions", {}).items()
            if here.get(k) != v]
    msg = (f"Form filled from the config: **{cfg.method}** on **{cfg.model}**, {t.epochs} epochs, max_length "
           f"{t.max_length}; it used text column '{cfg.text_column}' and label column '{cfg.label_column}'. "
           "Load the data in step 1 (the config's file path is not reused), then press **Start training**. "
           + ("Package versions differ: " + "; ".join(diff) + "." if diff else "Package versions match this server."))
    return ([cfg.model, cfg.method] + [getattr(t, f) for f in HP_FIELDS] + opts
            + [gr.update(value=mc.get("num_layers", 2), visible=cfg.method == "last_n"),
               gr.update(visible=cfg.method == "lora"), msg])


def build_demo() -> gr.Blocks:
    """The Blocks layout and its event wiring (built at import; launched under __main__)."""
    from peft_core.training import TrainConfig

    defaults = TrainConfig().with_defaults(METHODS["head"].train_defaults)
    private = dict(api_visibility="private")
    with gr.Blocks(title="PEFT Studio") as demo:
        owner = gr.BrowserState("", storage_key="peft_studio_owner", secret=browser_secret())
        view = gr.State({})
        gr.Markdown("# PEFT Studio\nFine-tune a small part of a pretrained text or image model on your labelled data, see "
                    "honest held-out results, and download a verified ONNX bundle that runs with ONNX Runtime "
                    "alone.")
        d, t, u = layout.data_and_model(defaults, MODEL_CHOICES, DEFAULT_MODEL, METHOD_CHOICES), layout.train(), layout.use()
        h = layout.history()
        timer = gr.Timer(1.0)
        _links_only(u["bundle"]), _links_only(h["config_dl"]), _image_or_message(u["image_in"])
        _type_checked_by_reader(d["train_file"]), _type_checked_by_reader(d["test_file"])

        data_inputs = [d["train_file"], d["test_file"]]
        data_outputs = [d["preview"], d["text_col"], d["label_col"], d["data_report"], d["classes"],
                        d["image_preview"], d["task"]]
        method_opts = [d["num_layers"], d["lora_r"], d["lora_alpha"], d["lora_dropout"], d["lora_targets"]]
        d["example_btn"].click(lambda: str(EXAMPLE), None, d["train_file"], **private)
        d["example_img_btn"].click(lambda: str(IMAGE_EXAMPLE), None, d["train_file"], **private)
        d["task"].change(task_changed, [d["task"], d["model"]],
                         [d["model"], d["columns_row"], u["text_in"], u["try_btn"], u["image_in"], u["try_img_btn"]],
                         **private)
        d["train_file"].change(load_preview, data_inputs, data_outputs, api_name="load_data")
        d["test_file"].change(load_preview, data_inputs + [d["text_col"], d["label_col"]], data_outputs, **private)
        for col in (d["text_col"], d["label_col"]):
            col.input(load_preview, data_inputs + [d["text_col"], d["label_col"]], data_outputs, **private)
        d["method"].input(method_defaults, d["method"], d["hp"] + [d["num_layers"], d["lora_row"], d["probe_epochs"]],
                          **private)
        d["method"].change(form.method_widgets, d["method"], [d["hp"][2], d["num_layers"], d["lora_row"],
                                                               d["probe_epochs"]], **private)
        d["task"].change(form.text_only, d["task"], d["hp"][HP_FIELDS.index("max_length")], **private)
        d["train_file"].change(form.preview_visible, d["train_file"], d["preview_row"], **private)
        count_inputs = data_inputs + [d["text_col"], d["label_col"], d["model"], d["method"]] + method_opts
        for trigger in (d["method"].change, d["model"].change, d["num_layers"].change, d["lora_r"].change,
                        d["label_col"].change):
            trigger(count_trainable, count_inputs, d["trainable_md"], **private)

        demo.load(on_load, owner, [owner, t["run"], u["bundle"]], **private)
        t["train_btn"].click(train_model, [owner] + data_inputs + [d["text_col"], d["label_col"], d["model"],
                                                                  d["method"]] + d["hp"] + method_opts
                             + [d["probe_epochs"], t["run_name"]],
                             [t["started"], t["started_msg"]], api_name="train"
                             ).success(_picker, [owner, t["started"]], t["run"], **private)
        t["cancel_btn"].click(cancel_run, [owner, t["run"]], t["status"], api_name="cancel", concurrency_limit=None)
        t["delete_btn"].click(delete_run, [owner, t["run"]], t["run"], api_name="delete", concurrency_limit=None)
        timer.tick(poll, [owner, t["run"], view], [view] + [{**t, **u, **h}[k] for k in POLL_OUTPUTS],
                   show_progress="hidden", concurrency_limit=None, **private)
        t["run"].change(lambda tok, run_id: form.run_to_form(jobs(), HP_FIELDS, tok, run_id), [owner, t["run"]],
                        [d["run_data_md"], d["task"], d["model"], d["method"]] + d["hp"] + method_opts[1:]
                        + [d["num_layers"], d["probe_epochs"]], **private)
        gr.api(run_status, api_name="status", concurrency_limit=None)
        gr.api(list_runs, api_name="runs", concurrency_limit=None)
        gr.api(new_owner, api_name="new_owner", concurrency_limit=None)
        u["try_btn"].click(try_it, [owner, t["run"], u["text_in"]], u["label_out"], api_name="predict",
                           concurrency_limit=None)
        u["try_img_btn"].click(try_image, [owner, t["run"], u["image_in"]], u["label_out"], api_name="predict_image",
                               concurrency_limit=None)
        u["text_in"].submit(try_it, [owner, t["run"], u["text_in"]], u["label_out"], concurrency_limit=None,
                            **private)
        u["export_btn"].click(export_bundle, [owner, t["run"]], [u["export_md"], u["parity"], u["bundle"]],
                              api_name="export", concurrency_id="export", concurrency_limit=1)
        h["compare_pick"].change(compare_runs, [owner, h["compare_pick"]],
                                 [h["compare"], h["compare_curves"], h["compare_f1"], h["compare_col"]], **private)
        h["config_up"].upload(config_to_form, h["config_up"],
                              [d["model"], d["method"]] + d["hp"] + method_opts[1:]
                              + [d["num_layers"], d["lora_row"], h["config_msg"]], **private)
        h["config_up"].upload(form.probe_from_config, h["config_up"], d["probe_epochs"], **private)
    return demo


demo = build_demo()


def launch(**kwargs):
    """Launch ``demo`` (queue: light calls such as preview, predict and status never wait behind training,
    which runs on the job manager's worker threads). Gradio serves only the examples folder and its cache;
    RUNS_ROOT and the state folder are blocked even if ``allowed_paths`` names them (see ``app_files``); run
    files go out through the signed download route. The cache is cleaned on ``cache_cleanup()``'s schedule."""
    quiet_console()
    Path(RUNS_ROOT).mkdir(parents=True, exist_ok=True)
    jobs()
    private = [str(Path(RUNS_ROOT).resolve()), str(files.state_dir(RUNS_ROOT))]
    kwargs.setdefault("max_file_size", Limits.from_env().max_upload_bytes)  # refused before it is stored
    kwargs.setdefault("allowed_paths", [str(EXAMPLE.parent)])
    kwargs["blocked_paths"] = list(kwargs.get("blocked_paths") or []) + private
    app_kwargs = dict(kwargs.get("app_kwargs") or {})
    app_kwargs["routes"] = list(app_kwargs.get("routes") or []) + [
        files.download_route(browser_secret, lambda: Path(RUNS_ROOT))]
    kwargs["app_kwargs"] = app_kwargs
    kwargs.setdefault("theme", gr.themes.Soft())
    demo.delete_cache = cache_cleanup()
    return demo.queue(default_concurrency_limit=4).launch(**kwargs)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
