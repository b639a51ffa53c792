"""Page handlers that fill or show parts of the form: the selected run's data and settings back into steps 1-2,
method-specific fields, the comparison of runs.

Kept out of ``app.py`` (which wires them); each takes the job manager as ``manager`` (``app.jobs``), so nothing
here imports ``app``.
"""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

import app_history as history_views
import app_views as views
from app_try import try_kind
from peft_core.errors import PeftCoreError
from peft_core.jobs import TERMINAL, JobError, JobInfo
from peft_core.methods import METHODS
from peft_core.models import DEFAULT_MODELS

def option_rows(method: str) -> tuple[bool, bool]:
    """Method -> whether the N field and the LoRA row show: each when the method's config has its options."""
    options = METHODS[method].options if method in METHODS else ()
    return "num_layers" in options, "r" in options


def method_widgets(method: str):
    """Method chosen (by the user, a config or a run) -> (encoder / adapter learning rate: label and
    visibility, N, the LoRA row, the warm-start epochs): only what the method uses is shown."""
    m = METHODS.get(method)
    trains = bool(m and m.trains_encoder)
    return (gr.update(label=m.encoder_lr_label if trains else views.FROZEN_LR_LABEL, visible=trains),
            *(gr.update(visible=v) for v in option_rows(method)), gr.update(visible=trains))


#: hyper-parameter fields (app.HP_FIELDS names) that ``solver_widgets`` relabels or hides, in its output order
SOLVER_FIELDS = ("epochs", "batch_size", "head_learning_rate", "weight_decay", "warmup_ratio", "dropout")
#: per solver (``TrainConfig.solver``): label and info of the fields it reads differently; None: the field does not
#: apply (hidden). Fields not named keep the layout's label (mini-batch AdamW reads them all).
SOLVER_LABELS = {
    "lbfgs": {"epochs": ("Epochs (max L-BFGS iterations)", "The linear probe is fit on all cached rows at once "
                         "(full-batch L-BFGS, as scikit-learn's LogisticRegression); early stopping may end sooner"),
              "weight_decay": ("L2 weight decay", "L2 penalty of the head, C = 1 / value in scikit-learn's terms "
                               "(0.1 = C 10); the fit then tries a tenth of it and keeps what validates better"),
              "batch_size": None, "head_learning_rate": None, "warmup_ratio": None, "dropout": None},
}
ADAMW_LABELS = {"epochs": ("Epochs (max)", "Upper limit: early stopping may end training sooner"),
                "weight_decay": ("Weight decay", "AdamW weight decay (0.01 is typical; 0 = none)")}


def solver_widgets(method: str):
    """Method chosen -> updates of the SOLVER_FIELDS fields for the method's default solver: the linear probe's
    full-batch L-BFGS has no learning rate, batch, warmup or dropout, and reads epochs as iterations and weight
    decay as its L2 term."""
    m = METHODS.get(method)
    labels = SOLVER_LABELS.get((m.train_defaults.get("solver") if m else None) or "adamw", {})
    out = []
    for name in SOLVER_FIELDS:
        if name in labels and labels[name] is None:
            out.append(gr.update(visible=False))
        else:
            label, info = labels.get(name) or ADAMW_LABELS.get(name, (None, None))
            out.append(gr.update(visible=True, **({"label": label, "info": info} if label else {})))
    return tuple(out)


def text_only(modality: str):
    """Data kind switched -> max_length (tokens) is shown for text only."""
    return gr.update(visible=modality != "image")


def preview_visible(train_file):
    """The preview / class-balance row is shown once a training file is chosen."""
    return gr.update(visible=bool(train_file))


def _run_config(manager, owner: str, run_id: str):
    """(JobInfo, RunConfig with the method's defaults filled in, report.json data dict or {}) of a run.
    Raises JobError for a run that is not the owner's; ValueError / KeyError / OSError for a broken config."""
    from peft_core.pipeline import RunConfig

    info = manager.get(owner, run_id)
    run_dir = manager.dir(run_id)
    cfg = RunConfig(**json.loads((run_dir / "config.json").read_text())["run"])
    cfg.train = cfg.train.with_defaults(METHODS[cfg.method].train_defaults)
    report = run_dir / "report.json"
    data = json.loads(report.read_text()).get("data", {}) if report.is_file() else {}
    return info, cfg, data


def data_note(info: JobInfo, cfg, data: dict) -> str:
    """Step 1's note on the selected run's data: file name, columns (or images), task kind, test file."""
    name = info.dataset or Path(cfg.train_file).name
    test = f"test file {Path(cfg.test_file).name.removeprefix('test_')}" if cfg.test_file else \
        "no test file (20 % held out)"
    kind = info.results.get("task") or data.get("task") or cfg.task
    task = f"{views.task_title(kind).lower()}; " if kind else "task inferred from the data; "
    if name.lower().endswith(".zip"):
        what = f"images; {task}{test}"
    else:
        text_col = cfg.text_column or data.get("text_column") or "(inferred)"
        pair_col = cfg.text_pair_column or data.get("text_pair_column")
        label_col = cfg.label_column or data.get("label_column") or "(inferred)"
        texts = f"text columns `{text_col}` + `{pair_col}`" if pair_col else f"text column `{text_col}`"
        what = f"{texts}, label column `{label_col}`; {task}{test}"
    title = views.run_title(info).replace("`", "'")
    return (f"**Run `{title}` (shown in step 3) trained on `{name}`** ({what}). Its settings "
            "are in step 2. To train on other data, upload a file above.")


def run_to_form(manager, hp_fields: list[str], owner: str, run_id: str | None):
    """Run selected (picked, re-attached after a reload, just started) -> step 1's note on its data, then the
    data kind, model, method, hyper-parameters (``hp_fields`` order), LoRA r / alpha / dropout / targets, N,
    warm-start epochs, task choice and class weights it used. No run, or one that cannot be read: the note hides
    and the form is left as is."""
    keep = [gr.skip()] * (3 + len(hp_fields) + 8)
    if not run_id:
        return [gr.update(visible=False)] + keep
    try:
        info, cfg, data = _run_config(manager, owner, run_id)
    except (PeftCoreError, OSError, ValueError, KeyError, TypeError):  # not the owner's, or a broken folder
        return [gr.update(visible=False)] + keep
    mc = cfg.method_cfg().to_dict()
    targets = mc.get("target_modules") or ""
    modality = "image" if (info.dataset or cfg.train_file).lower().endswith(".zip") else "text"
    model = cfg.model or DEFAULT_MODELS[modality]
    return ([gr.update(value=data_note(info, cfg, data), visible=True), modality, model, cfg.method]
            + [getattr(cfg.train, f) for f in hp_fields]
            + [mc.get("r", 8), mc.get("alpha", 16), mc.get("dropout", 0.1),
               ", ".join(targets) if isinstance(targets, (list, tuple)) else targets,
               mc.get("num_layers", 2), cfg.train.probe_epochs, cfg.task or views.INFERRED,
               cfg.train.class_weights])


def probe_from_config(config_file):
    """An uploaded run config.json -> its warm-start epochs (the method's default when it left them unset);
    unchanged when the file is not a run config (``app.config_to_form`` says why)."""
    from peft_core.pipeline import RunConfig

    try:
        cfg = RunConfig(**json.loads(Path(config_file).read_text())["run"])
        return cfg.train.with_defaults(METHODS[cfg.method].train_defaults).probe_epochs
    except (PeftCoreError, OSError, ValueError, KeyError, TypeError):
        return gr.skip()


def _report(manager, run_id: str) -> dict:
    path = manager.dir(run_id) / "report.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def compare(manager, owner: str, run_ids):
    """Ticked runs -> (settings and metrics side by side, each run's validation score per epoch with a series
    per run, per-class / per-label test F1 with a column per run, the comparison box shown when a run is
    ticked)."""
    try:
        mine = {j.id: j for j in manager.list(owner)}
    except JobError:
        mine = {}
    runs = [mine[i] for i in run_ids or [] if i in mine]
    reports = {views.run_title(j): _report(manager, j.id) for j in runs}
    names = {views.run_title(j): views.best_val_of(j.results)[0] for j in runs}
    curves = history_views.compare_curves({k: r.get("training", {}).get("history", []) for k, r in reports.items()},
                                          names)
    f1 = history_views.compare_per_class({k: r.get("evaluation", {}).get("per_class", []) for k, r in reports.items()})
    return history_views.compare_frame(runs), curves if len(curves) else None, f1, gr.update(visible=bool(runs))


def run_lists(manager, owner: str, runs: list[JobInfo]) -> dict:
    """``app.poll`` outputs that follow the owner's run list: history, picker choices (never its value: a tick
    may race a pick), compare choices, the runs section, disk use against the quota."""
    return {"history": history_views.history_frame(runs),
            "run": gr.update(choices=[views.run_choice(j) for j in runs], visible=bool(runs)),
            "compare_pick": gr.update(choices=[views.run_choice(j) for j in runs if j.has_model]),
            "runs_col": gr.update(visible=bool(runs)),
            "quota_md": quota_line(manager, owner, runs)}


def quota_line(manager, owner: str, runs: list[JobInfo]) -> str:
    """Step 5's disk use against the per-owner quota ("" while the owner has no runs)."""
    return views.quota_text(manager.disk_usage(owner), manager.max_user_disk_mb) if runs else ""


def shown(manager, info: JobInfo | None) -> dict:
    """``app.poll`` outputs that follow the selected run's state: step 4 (shown with a model), its Try it
    widgets for the run's task kind and inputs (``app_try``: a second text box for pair runs, the label widget or
    the per-label table; the last prediction cleared), Cancel / Delete (active only when the action is
    possible; Restart only for an interrupted run). ``app_runs._results`` gives the results; ``app.poll`` renews
    the download links itself."""
    has_model = bool(info and info.has_model)
    out = {"use_col": gr.update(visible=has_model), "use_note": gr.update(visible=not has_model),
           "cancel_btn": gr.update(interactive=bool(info and info.state in ("queued", "running"))),
           "delete_btn": gr.update(interactive=bool(info and info.state in TERMINAL)),
           "restart_btn": gr.update(visible=bool(info and info.state == "interrupted")),
           # another run (or state): an earlier file's score or evaluation is not this run's
           "score_dl": gr.update(value=None, visible=False), "eval_md": "", "eval_table": gr.update(visible=False)}
    spec = run_task(manager.dir(info.id)) if has_model else None
    if spec is None:
        return out
    kind, pair = try_kind(spec), spec.input_kind == "text_pair"
    return out | {"text_in": gr.update(label=f"Text ({spec.text_column})" if pair else "Text"),
                  "text_pair_in": gr.update(label=f"Second text ({spec.text_pair_column})", visible=True)
                  if pair else gr.update(visible=False),
                  "label_out": gr.update(value=None, visible=kind.shows_label,
                                         label=kind.label_title.format(target=spec.labels[0])),
                  "try_table": gr.update(value=None, visible=False), "try_md": ""}


def run_task(run_dir: Path):
    """The TaskSpec a run's model was trained for (``model/classifier_config.json``: kind, labels, thresholds,
    pair column), or None when it cannot be read; runs saved before task kinds are single-label."""
    from peft_core.tasks import TaskSpec

    try:
        meta = json.loads((run_dir / "model" / "classifier_config.json").read_text())
        if "task" in meta:
            return TaskSpec.from_dict(meta["task"])
        return TaskSpec(kind="single_label", text_column="text", label_column="label",
                        id2label=meta["id2label"], modality=meta.get("modality", "text"))
    except (OSError, ValueError, KeyError, TypeError, PeftCoreError):
        return None
