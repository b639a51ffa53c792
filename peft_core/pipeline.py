"""One run, end to end: data -> model -> method -> train -> evaluate -> save, then export -> parity -> bundle.

The app and the CLI both call :func:`fine_tune` and ``exporters.run_export.export_run`` (or the smaller steps
they are made of); neither does any work of its own. A run lives in its own folder::

    run_dir/config.json        RunConfig + package versions
    run_dir/events.jsonl       progress events (JSONL)
    run_dir/model/             fine-tuned PyTorch model (safetensors) + tokenizer, adapters merged
    run_dir/adapter/           LoRA only: the peft adapter (with the head) before merging
    run_dir/report.json        data report, trainable parameters, training history, evaluation
    run_dir/confusion_matrix.png, run_dir/training.png
    run_dir/tracking/          with report_to: TensorBoard events, MLflow / Trackio stores (peft_core.tracking)
    run_dir/export/parity.json, int8.json                               after export
    run_dir/bundle-fp32.zip, run_dir/bundle-int8.zip                   the two bundles: the only copies of the
                                                                        fp32 / int8 ONNX models (exporters.run_export)
"""
from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from .callbacks import Callback, Control, JsonlLogger, Phase, ProgressEvent, StopRequested
from .data import PreparedData, prepare_data, split_inputs
from .errors import ConfigError, RunCancelled
from .evaluation import EvalReport, plot_training
from .methods import count_parameters, get_method
from .models import DEFAULT_MODELS, ModelSpec, get_spec, load_backbone
from .modeling import TextClassifier, make_classifier, save_classifier
from .tasks import get_task
from .tracking import parse_report_to, run_tracking
from .training import TrainConfig, TrainResult, make_accelerator, train


@dataclass
class RunConfig:
    """Everything that defines a run (serialisable; the bundle and ``config.json`` carry it).

    Attributes:
        train_file / test_file: uploads (see ``peft_core.data``); without test_file, ``test_fraction`` of the
            upload is held out and ``validation_fraction`` is used for early stopping.
        model: registry key (e.g. "minilm", "efficientnet-lite0"), local folder, or Hub ID; empty: the bundled
            model for the data (``models.DEFAULT_MODELS``: minilm for tables, efficientnet-lite0 for image zips).
        method: key of ``peft_core.methods.METHODS``; method_config: fields of that method's config class.
        task: key of ``peft_core.tasks.TASKS`` (None: inferred from the data, see ``peft_core.data``);
            text_pair_column: the second text of pair tasks (None: inferred from well-known column pairs);
            label_separator: multi-label strings' separator (None: inferred).
        report_to: experiment trackers of ``peft_core.tracking.TRACKERS`` ("tensorboard", "mlflow", "trackio";
            a comma-separated string is accepted; empty: none).
    """

    train_file: str
    test_file: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    task: str | None = None
    text_pair_column: str | None = None
    label_separator: str | None = None
    model: str = ""
    method: str = "head"
    method_config: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    test_fraction: float = 0.2
    validation_fraction: float = 0.1
    report_to: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.report_to = parse_report_to(self.report_to)
        if isinstance(self.train, dict):
            self.train = TrainConfig(**self.train)
        if self.task:
            self.task = get_task(self.task).name
        method = get_method(self.method)
        try:
            method.config_cls(**self.method_config)
        except TypeError as e:
            raise ConfigError(f"bad option for method {self.method!r}: {e}") from e

    def method_cfg(self):
        return get_method(self.method).config_cls(**self.method_config)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Run:
    """A trained run held in memory (the model is plain: LoRA adapters already merged)."""

    run_dir: Path
    config: RunConfig
    data: PreparedData
    spec: ModelSpec
    model: TextClassifier
    tokenizer: object
    train_config: TrainConfig
    trainable_parameters: int
    total_parameters: int
    train_result: TrainResult
    eval_report: EvalReport
    test_logits: object  # float32 [n_test, num_labels]
    plots: dict[str, Path] = field(default_factory=dict)


@dataclass
class ExportResult:
    """Outcome of ``exporters.run_export.export_run``: how the fp32 ONNX model was exported (its file is removed
    once bundled: read it from the bundle) and its parity report, the int8 report, the bundle zips by precision, and
    ``bundle``: the default download (int8 when it keeps accuracy; None when parity failed)."""

    onnx: object
    parity: object
    bundle: Path | None
    message: str
    int8: object = None
    bundles: dict = field(default_factory=dict)


def versions() -> dict:
    """Versions of the packages that shape results, for reproducibility."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "accelerate", "datasets", "tokenizers", "onnx", "onnxruntime",
                "scikit-learn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def build_model(model: str, method: str, method_config: dict, num_labels: int, dropout: float = 0.1):
    """Load the base model, add a fresh head, apply the method.

    Returns:
        (model, tokenizer, completed ModelSpec, trainable parameter count, total parameter count).
    Raises:
        ModelLoadError, ConfigError.
    """
    m = get_method(method)
    backbone, tokenizer, spec = load_backbone(get_spec(model))
    clf = make_classifier(backbone, num_labels, spec, dropout)
    wrapped = m.apply(clf, m.config_cls(**method_config), spec)
    trainable, total = count_parameters(wrapped)
    return wrapped, tokenizer, spec, trainable, total


def trainable_summary(trainable: int, total: int) -> str:
    return f"{trainable:,} trainable of {total:,} parameters ({100 * trainable / total:.3g}%)"


def fine_tune(cfg: RunConfig, run_dir: str | Path, callbacks: Sequence[Callback] = (),
              control: Control | None = None, data: PreparedData | None = None) -> Run:
    """Run data preparation (unless ``data`` is given), training, evaluation on the held-out split, and save
    everything into ``run_dir``.

    Progress ("phase" events, see ``callbacks.Phase``): "preparing" (done 0 / 1 / 2 of 2: started, data read,
    model built), then ``training.train``'s "encoding" and "training", then "evaluating" (held-out rows done /
    total, once per batch). The preparing events reach ``callbacks``, and ``run_dir/events.jsonl`` only when
    ``run_dir`` exists already (app jobs): a new folder is made only once data and model are known to be good.

    Stop flag (``control``): checked between the preparing steps, then as ``train`` says (encoding batches, the
    LP-FT probe, every step, validation batches), then per batch of the held-out evaluation unless the stop came
    earlier (a run cancelled after its first epoch is still evaluated and saved, with ``train_result.cancelled``).

    Raises:
        RunCancelled: stopped before the first epoch ended (while preparing, encoding, in the probe or in epoch
            1), or during the held-out evaluation; nothing but config.json and events.jsonl is written then.
        DataError, ModelLoadError, ConfigError (bad input); other exceptions are bugs.
    """
    acc = make_accelerator()
    main = acc.is_main_process  # only the main process writes (several under ``accelerate launch``)
    control, run_dir = control or Control(), Path(run_dir)
    log = JsonlLogger(run_dir / "events.jsonl") if main and run_dir.is_dir() else None
    early = [*([log] if log else []), *callbacks] if main else []
    data, tcfg, modality, (model, tokenizer, spec, trainable, total) = _prepare(cfg, run_dir, data, Phase(
        lambda ev: [cb(ev) for cb in early], "preparing", 2, control))
    listeners = [log or JsonlLogger(run_dir / "events.jsonl"), *callbacks] if main else []
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps({"run": cfg.to_dict(), "versions": versions()}, indent=2))
    for cb in listeners:
        cb(ProgressEvent("message", message=trainable_summary(trainable, total)))
    with run_tracking(cfg, tcfg, data, run_dir, listeners, (trainable, total), main) as tracking:
        result = train(model, tokenizer, data.splits, tcfg, listeners, control, accelerator=acc, task=data.task)
        if result.cancelled and not result.best_epoch:
            raise RunCancelled(phase=result.cancelled_in)
        method = get_method(cfg.method)
        if method.merge is not None:
            if main:
                model.save_pretrained(str(run_dir / "adapter"))
            model = method.merge(model)
        model.eval()
        logits, report = _evaluate(acc, model, tokenizer, data, tcfg, listeners,
                                   None if result.cancelled else control)
        tracking.log_report(report)
    run = Run(run_dir, cfg, data, spec, model, tokenizer, tcfg, trainable, total, result, report, logits, {})
    if main:
        _save(run, modality, acc.num_processes)
    acc.wait_for_everyone()
    return run


def _evaluate(acc, model, tokenizer, data: PreparedData, tcfg: TrainConfig, listeners, control) -> tuple:
    """The "evaluating" phase of :func:`fine_tune`: fit the task kind's decision rule on the validation split
    when it has one (multi-label thresholds, into ``data.task``), then predict and score the held-out split.
    Returns (test logits float32 [n, num_labels], the kind's report). Raises RunCancelled when stopped."""
    kind, test, val = get_task(data.task), data.splits["test"], data.splits["validation"]
    evaluating = Phase(lambda ev: [cb(ev) for cb in listeners], "evaluating", len(test), control)
    try:
        notes = []
        if kind.calibrates:
            val_logits = predict_sharded(acc, model, tokenizer, split_inputs(val), tcfg.max_length)
            notes = kind.calibrate(data.task, val["label"], val_logits)
        logits = predict_sharded(acc, model, tokenizer, split_inputs(test), tcfg.max_length, evaluating)
    except StopRequested:
        raise RunCancelled("cancelled during the held-out evaluation: the trained model was not evaluated, so "
                           "there is no model to offer", "evaluating") from None
    report = kind.evaluate(data.task, test["label"], logits, data.splits["train"]["label"], "test")
    report.notes[:0] = notes
    return logits, report


def _prepare(cfg: RunConfig, run_dir: Path, data: PreparedData | None, phase: Phase) -> tuple:
    """The "preparing" phase of :func:`fine_tune`: read the data (unless given), build the model.
    Returns (data, filled-in TrainConfig, modality, build_model's tuple). Raises RunCancelled when stopped."""
    import torch

    try:
        phase.start()
        data = data or prepare_data(cfg.train_file, cfg.test_file, text_column=cfg.text_column,
                                    label_column=cfg.label_column, task=cfg.task,
                                    text_pair_column=cfg.text_pair_column, label_separator=cfg.label_separator,
                                    test_fraction=cfg.test_fraction,
                                    validation_fraction=cfg.validation_fraction, seed=cfg.train.seed,
                                    extract_dir=images_dir(run_dir))
        phase.advance()
        tcfg = cfg.train.with_defaults(get_method(cfg.method).train_defaults)
        torch.manual_seed(tcfg.seed)  # the fresh head's initialisation is part of the run
        modality = data_modality(data)
        built = build_model(cfg.model or DEFAULT_MODELS[modality], cfg.method, cfg.method_config,
                            data.task.num_labels, tcfg.dropout)
        check_modality(built[2], modality)
        phase.advance()
    except StopRequested:
        raise RunCancelled(phase="preparing") from None
    return data, tcfg, modality, built


def _save(run: Run, modality: str, processes: int) -> None:
    """Write the trained run into its folder: model/, plots, report.json (fills ``run.plots``)."""
    data, test, report, run_dir = run.data, run.data.splits["test"], run.eval_report, run.run_dir
    kind = get_task(data.task)
    meta = {"task": data.task.to_dict(), "id2label": data.task.to_dict()["id2label"],
            "problem_type": data.task.problem_type,
            "max_length": run.train_config.max_length, "base_model": run.spec.to_dict(), "method": run.config.method,
            "method_config": run.config.method_cfg().to_dict(), "modality": modality}
    save_classifier(run.model, run.tokenizer, run_dir / "model", meta)
    inputs = split_inputs(test)
    run.plots.update(kind.plots(data.task, report, test["label"], run.test_logits, run_dir, inputs))
    kind.predictions_table(data.task, inputs, test["label"], run.test_logits).to_csv(
        run_dir / "predictions.csv", index=False)
    run.plots["training"] = plot_training(run.train_result.step_losses, run.train_result.history,
                                          run.train_result.score_name, run_dir / "training.png")
    (run_dir / "report.json").write_text(json.dumps(
        _report_dict(run) | {"processes": processes, "plots": {k: Path(v).name for k, v in run.plots.items()}},
        indent=2))


def images_dir(run_dir: str | Path) -> Path | None:
    """Where a run's zip upload is extracted: ``run_dir/data/images`` when the run folder exists already (app
    jobs), else None (a temporary folder)."""
    return Path(run_dir) / "data" / "images" if Path(run_dir).is_dir() else None


def data_modality(data: PreparedData) -> str:
    """"image" for image data, "text" for tables (one text or a pair)."""
    return data.task.modality


def check_modality(spec: ModelSpec, modality: str) -> None:
    """Raises ConfigError when the base model does not take this kind of data."""
    if spec.modality != modality:
        raise ConfigError(f"model {spec.key!r} is a{'n' if spec.modality == 'image' else ''} {spec.modality} model "
                          f"but the data are {'images' if modality == 'image' else 'texts'}; pick "
                          f"{DEFAULT_MODELS[modality]!r} or another {modality} model")


def predict_sharded(acc, model, tokenizer, texts, max_length: int, phase: Phase | None = None):
    """Logits for every text exactly once: each process predicts a contiguous shard, all shards are gathered in
    order. float32 [n, num_labels]. With ``phase`` (unstarted), its rows are reported once per batch and a stop
    raises StopRequested between batches."""
    import numpy as np

    from .feeds import map_tracked, sharded

    texts = list(texts)
    model.eval()
    device = next(model.parameters()).device
    tick = (lambda rows: phase.advance(rows * acc.num_processes)) if phase else (lambda rows: None)
    if phase:
        phase.total = len(texts)
        phase.start()
    rows = sharded(acc, lambda ix: list(map_tracked(lambda b: model(**b), tokenizer, [texts[i] for i in ix],
                                                    max_length, device, tick).numpy()) if len(ix) else [],
                   len(texts))
    if phase:
        phase.finish()
    return np.stack(rows)


def _report_dict(run: Run) -> dict:
    return {"data": run.data.report.to_dict(), "trainable_parameters": run.trainable_parameters,
            "total_parameters": run.total_parameters, "train_config": run.train_config.to_dict(),
            "training": run.train_result.to_dict() | {"step_losses": None}, "evaluation": run.eval_report.to_dict()}
