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
from peft_core.data import infer_columns, prepare_data, read_table
from peft_core.errors import PeftCoreError
from peft_core.methods import METHODS, get_method
from peft_core.models import DEFAULT_MODELS, REGISTRY

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


def _upload_message(train_file, test_file, error: str) -> str:
    """The data report's text for an upload that cannot be used (``error``: the reader's message)."""
    sheets = [Path(f).name for f in (train_file, test_file) if f and Path(f).suffix.lower() in SPREADSHEETS]
    if sheets:
        error = (f"{sheets[0]} is a spreadsheet workbook, not a table file: save the sheet as CSV (File > Save as "
                 "> CSV UTF-8) and upload that")
    return f"**⚠ This file cannot be used:** {error.rstrip('.')}. Nothing else on the page was changed."


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
            + [gr.update(visible=v) for v in form.option_rows(method)] + [cfg.probe_epochs])


def _method_config(method, num_layers, lora_r, lora_alpha, lora_dropout, lora_targets) -> dict:
    """The form's method fields -> the chosen method's options (its config class says which)."""
    return get_method(method).pick_options({"num_layers": num_layers, "r": lora_r, "alpha": lora_alpha,
                                            "dropout": lora_dropout, "target_modules": lora_targets or ""})


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
    n_shown, lora_shown = form.option_rows(cfg.method)
    here = versions()
    diff = [f"{k} {v} in the config, {here.get(k)} here" for k, v in doc.get("versions", {}).items()
            if here.get(k) != v]
    msg = (f"Form filled from the config: **{cfg.method}** on **{cfg.model}**, {t.epochs} epochs, max_length "
           f"{t.max_length}; it used text column '{cfg.text_column}' and label column '{cfg.label_column}'. "
           "Load the data in step 1 (the config's file path is not reused), then press **Start training**. "
           + ("Package versions differ: " + "; ".join(diff) + "." if diff else "Package versions match this server."))
    return ([cfg.model, cfg.method] + [getattr(t, f) for f in HP_FIELDS] + opts
            + [gr.update(value=mc.get("num_layers", 2), visible=n_shown), gr.update(visible=lora_shown), msg])

