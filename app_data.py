"""Handlers of steps 1-2 (data, model and method): the data preview, the task switch, method defaults, the
trainable-parameter count, and a run config uploaded into the form. Each turns widget values into core calls and
core results into widget updates; errors become one message (``app_state.user_errors``).
"""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pandas as pd

import app_form as form
import app_views as views
from app_components import SPREADSHEETS
from app_state import HP_FIELDS, _is_zip, _need_file, log, user_errors
from peft_core.data import prepare_data, read_table
from peft_core.errors import PeftCoreError
from peft_core.methods import METHODS, get_method
from peft_core.models import DEFAULT_MODELS, REGISTRY

def data_options(text_col=None, label_col=None, task=None, pair_col=None, separator=None) -> dict:
    """Step 1's choices -> the data keywords of ``prepare_data`` and ``RunConfig`` (None: inferred from the
    data): text_column, label_column, task (a key of ``peft_core.tasks.TASKS``), text_pair_column ("" for the
    "(none)" choice: no pair, even for well-known pairs of column names), label_separator."""
    return {"text_column": text_col or None, "label_column": label_col or None,
            "task": None if task in (None, "", views.INFERRED) else task,
            "text_pair_column": "" if pair_col in ("", views.NO_PAIR) else pair_col,
            "label_separator": separator or None}


def _prepare(train_file, test_file, **options):
    """prepare_data for a check or a preview (``options``: :func:`data_options`): a zip's images go to a
    temporary folder removed afterwards."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="peft_preview_") as tmp:
        return prepare_data(train_file, test_file or None, **options, extract_dir=tmp)


def _image_preview(train_file, test_file, options: dict | None = None):
    """Zip chosen -> (sample table, gallery items, PreparedData). ``options``: :func:`data_options` (a zip with a
    metadata file takes the label column, task and separator; a zip of class folders ignores them)."""
    import tempfile

    from peft_core.image_data import load_image_upload

    picked = {k: (options or {}).get(k) for k in ("label_column", "task", "label_separator")}
    with tempfile.TemporaryDirectory(prefix="peft_preview_") as tmp:  # extracted once, removed afterwards
        frame, data = load_image_upload(train_file, test_file or None, **picked, extract_dir=tmp)
        sample = frame.groupby("label", sort=True).head(2).head(16)
        gallery = [(_thumbnail(p), f"{lab}") for p, lab in zip(sample["image"], sample["label"])]
    table = frame[["name", "label", "split"]].rename(columns={"name": "file"}).head(12)
    return table, gallery, data


def _thumbnail(path):
    """A small RGB copy of an image as a PIL image (Gradio stores it; the extracted file may go away)."""
    from peft_core.images import load_rgb

    img = load_rgb(path)
    img.thumbnail((160, 160))
    return img


def load_data(train_file, test_file, task=None, separator=None):
    """A new training file (the /load_data API): :func:`load_preview` with every column inferred, under the
    task and label separator chosen (None: inferred)."""
    return load_preview(train_file, test_file, None, None, task, None, separator)


def load_preview(train_file, test_file, text_col=None, label_col=None, task=None, pair_col=None, separator=None):
    """File or choice changed -> preview table, column pickers (inferred unless chosen), data report (with the
    task it inferred and why), label balance, image gallery (zip uploads), data kind, second-text-column picker
    (pre-selected when the data report found a pair). A cleared file clears the preview. A file that cannot be
    used leaves every widget as it was and says why, once, in the data report (raising would mark every output
    "Error")."""
    try:
        return _load_preview(train_file, test_file, data_options(text_col, label_col, task, pair_col, separator))
    except gr.Error as e:
        message = e.message
    except PeftCoreError as e:
        message = str(e)
    except Exception as e:
        log.exception("unexpected error in load_preview")
        message = f"unexpected error ({type(e).__name__}: {str(e)[:200]}); details are in the server log"
    report = _upload_message(train_file, test_file, message)
    return gr.skip(), gr.skip(), gr.skip(), report, gr.skip(), gr.skip(), gr.skip(), gr.skip()


def _load_preview(train_file, test_file, options: dict):
    no_pair = gr.update(choices=[views.NO_PAIR], value=views.NO_PAIR)
    if not train_file:
        return (pd.DataFrame(columns=["(upload a file)"]), gr.update(choices=[], value=None),
                gr.update(choices=[], value=None), "", None, gr.update(value=None, visible=False), gr.skip(), no_pair)
    if _is_zip(_need_file(train_file)):
        table, gallery, data = _image_preview(train_file, test_file, options)
        return (table, gr.update(choices=[], value=None), gr.update(choices=[], value=None),
                data.report.to_markdown(), data.report.class_table(), gr.update(value=gallery, visible=True),
                "image", no_pair)
    frame, _ = read_table(_need_file(train_file))
    cols = list(frame.columns)
    options |= {k: v if v in cols or v == "" else None for k, v in options.items() if k.endswith("_column")}
    data = _prepare(train_file, test_file, **options)  # what is not chosen is inferred there (and said so)
    text_col, label_col = data.report.text_column, data.report.label_column
    pair_col = getattr(data.report, "text_pair_column", None) or data.task.text_pair_column
    return (views.preview_frame(frame, text_col, label_col, pair_col=pair_col),
            gr.update(choices=cols, value=text_col), gr.update(choices=cols, value=label_col),
            data.report.to_markdown(), data.report.class_table(), gr.update(value=None, visible=False),
            "text", gr.update(choices=[views.NO_PAIR] + cols, value=pair_col or views.NO_PAIR))


def preview_widths(pair_col):
    """Pair column shown or cleared -> the preview's column widths (the chosen columns come first: text and
    label, or the two texts and the label), so the label stays on screen beside long texts."""
    return gr.update(column_widths=["50%", "15%"] if pair_col in (None, "", views.NO_PAIR) else ["35%", "35%", "15%"])


def balance_title(table):
    """Class table shown -> its title by what it holds: rows per class or label and split, or (regression) the
    target's summary per split (a ``mean`` column)."""
    columns = table.columns if isinstance(table, pd.DataFrame) else (table or {}).get("headers", [])
    return gr.update(label="Target per split (its own units)" if "mean" in list(columns)
                     else "Label balance (rows per split)")


def _upload_message(train_file, test_file, error: str) -> str:
    """The data report's text for an upload that cannot be used (``error``: the reader's message)."""
    sheets = [Path(f).name for f in (train_file, test_file) if f and Path(f).suffix.lower() in SPREADSHEETS]
    if sheets:
        error = (f"{sheets[0]} is a spreadsheet workbook, not a table file: save the sheet as CSV (File > Save as "
                 "> CSV UTF-8) and upload that")
    return f"**⚠ This file cannot be used:** {error.rstrip('.')}. Nothing else on the page was changed."


def modality_changed(modality, model):
    """Data kind switched (text / images) -> the bundled model for it (a model typed by the user stays if it is
    not a bundled one of the other kind), and which inputs to show (column pickers, Try it's boxes)."""
    image = modality == "image"
    bundled_other = model in REGISTRY and REGISTRY[model].modality != modality
    return (gr.update(value=DEFAULT_MODELS[modality]) if bundled_other or not model else gr.update(),
            gr.update(visible=not image), gr.update(visible=not image), gr.update(visible=not image),
            gr.update(visible=image), gr.update(visible=image))


def method_defaults(method: str):
    """Method changed -> its default hyper-parameters and which method options to show."""
    from peft_core.training import TrainConfig

    cfg = TrainConfig().with_defaults(METHODS[method].train_defaults)
    return ([getattr(cfg, f) for f in HP_FIELDS]
            + [gr.update(visible=v) for v in form.option_rows(method)] + [cfg.probe_epochs])


def _method_config(method, num_layers, lora_r, lora_alpha, lora_dropout, lora_targets) -> dict:
    """The form's method fields -> the chosen method's options (its config class says which)."""
    return get_method(method).pick_options({"num_layers": num_layers, "r": lora_r, "alpha": lora_alpha,
                                            "dropout": lora_dropout, "target_modules": lora_targets or ""})


def _run_config(train_file, test_file, options: dict, model, method, hp, method_opts, class_weights=False):
    """The form's values -> RunConfig (``options``: :func:`data_options`; ``hp``: the ``HP_FIELDS`` numbers).
    Raises ConfigError (the field and value named) or gr.Error (no training file)."""
    from peft_core.pipeline import RunConfig
    from peft_core.training import TrainConfig

    train = TrainConfig(**dict(zip(HP_FIELDS, hp)), class_weights=bool(class_weights))
    return RunConfig(train_file=_need_file(train_file), test_file=test_file or None, **options, model=model or "",
                     method=method, method_config=_method_config(method, *method_opts), train=train)


@user_errors
def count_trainable(train_file, test_file, text_col, label_col, task, pair_col, separator, model, method,
                    *method_opts):
    """Load the base model with the method applied and report trainable parameters (before training)."""
    from peft_core.pipeline import build_model, trainable_summary
    from peft_core.tasks import get_task

    num_labels, modality, kind = 2, "text", None
    if train_file:
        try:
            data = _prepare(train_file, test_file, **data_options(text_col, label_col, task, pair_col, separator))
        except PeftCoreError:
            return gr.skip()  # a file that cannot be used: the data report says why, once
        num_labels, modality, kind = data.task.num_labels, data.task.modality, get_task(data.task)
    if model in REGISTRY and REGISTRY[model].modality != modality:
        model = DEFAULT_MODELS[modality]  # the data switch is moving the model picker to this one
    *_, trainable, total = build_model(model or DEFAULT_MODELS[modality], method,
                                       _method_config(method, *method_opts), num_labels)
    head = f"a {num_labels}-output head" + (f" ({kind.title[:1].lower() + kind.title[1:]})" if kind else "")
    return f"**{trainable_summary(trainable, total)}** with {head}."


@user_errors
def config_to_form(config_file):
    """An uploaded run config.json -> the model, method, hyper-parameter widgets, task and class weights (data
    stays as loaded)."""
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
    n_shown, lora_shown = form.option_rows(cfg.method)
    here = versions()
    diff = [f"{k} {v} in the config, {here.get(k)} here" for k, v in doc.get("versions", {}).items()
            if here.get(k) != v]
    pair = f" + '{cfg.text_pair_column}'" if cfg.text_pair_column else ""
    msg = (f"Form filled from the config: **{cfg.method}** on **{cfg.model}**, {t.epochs} epochs, max_length "
           f"{t.max_length}, task {_task_words(cfg.task)}; it used text column '{cfg.text_column}'{pair} and label "
           f"column '{cfg.label_column}'. "
           "Load the data in step 1 (the config's file path is not reused), then press **Start training**. "
           + ("Package versions differ: " + "; ".join(diff) + "." if diff else "Package versions match this server."))
    return ([cfg.model, cfg.method] + [getattr(t, f) for f in HP_FIELDS] + opts
            + [gr.update(value=mc.get("num_layers", 2), visible=n_shown), gr.update(visible=lora_shown),
               cfg.task or views.INFERRED, t.class_weights, msg])


def _task_words(task: str | None) -> str:
    """"inferred from the data" or the kind's title, lower case."""
    return "inferred from the data" if not task else views.task_title(task).lower()

