"""One run, end to end: data -> model -> method -> train -> evaluate -> save, then export -> parity -> bundle.

The app and the CLI both call :func:`fine_tune` and :func:`export_run` (or the smaller steps they are made
of); neither does any work of its own. A run lives in its own folder::

    run_dir/config.json        RunConfig + package versions
    run_dir/events.jsonl       progress events (JSONL)
    run_dir/model/             fine-tuned PyTorch model (safetensors) + tokenizer, adapters merged
    run_dir/adapter/           LoRA only: the peft adapter (with the head) before merging
    run_dir/report.json        data report, trainable parameters, training history, evaluation
    run_dir/confusion_matrix.png, run_dir/training.png
    run_dir/export/parity.json, int8.json                               after export
    run_dir/bundle-fp32.zip, run_dir/bundle-int8.zip                   the two bundles: the only copies of the
                                                                        fp32 / int8 ONNX models (see export_run)
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from .callbacks import Callback, Control, JsonlLogger, Phase, ProgressEvent, StopRequested
from .data import PreparedData, prepare_data, split_inputs
from .errors import ConfigError, NonFiniteError, RunCancelled
from .evaluation import EvalReport, plot_training
from .methods import count_parameters, get_method
from .models import DEFAULT_MODELS, ModelSpec, get_spec, load_backbone
from .modeling import TextClassifier, make_classifier, save_classifier
from .tasks import get_task
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

    def __post_init__(self) -> None:
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
    """Outcome of :func:`export_run`: how the fp32 ONNX model was exported (its file is removed once bundled:
    read it from the bundle) and its parity report, the int8 report, the bundle zips by precision, and
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
    result = train(model, tokenizer, data.splits, tcfg, listeners, control, accelerator=acc, task=data.task)
    if result.cancelled and not result.best_epoch:
        raise RunCancelled(phase=result.cancelled_in)
    method = get_method(cfg.method)
    if method.merge is not None:
        if main:
            model.save_pretrained(str(run_dir / "adapter"))
        model = method.merge(model)
    model.eval()
    logits, report = _evaluate(acc, model, tokenizer, data, tcfg, listeners, None if result.cancelled else control)
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


def bundle_config(run: Run, onnx_export, parity) -> dict:
    """The ``config.json`` written into the bundle."""
    tok, image = run.tokenizer, data_modality(run.data) == "image"
    inputs = ({"preprocessing": tok.to_dict()} if image else
              {"max_length": run.train_config.max_length, "pad_token": tok.pad_token, "pad_token_id": tok.pad_token_id})
    return {"format": "peft-onnx-bundle/1", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "modality": "image" if image else "text",
            "task": run.data.task.to_dict(), "id2label": run.data.task.to_dict()["id2label"], **inputs,
            "input_names": onnx_export.input_names, "onnx": onnx_export.to_dict() | {"path": "model.onnx"},
            "base_model": run.spec.to_dict(), "method": run.config.method,
            "method_config": run.config.method_cfg().to_dict(), "train_config": run.train_config.to_dict(),
            "trainable_parameters": run.trainable_parameters, "total_parameters": run.total_parameters,
            "data": {"source": Path(run.data.report.source).name, "split_sizes": run.data.report.split_sizes},
            "metrics": run.eval_report.to_dict() | {"per_class": run.eval_report.per_class},
            "parity": {"passed": parity.passed, "max_abs_diff": parity.max_abs_diff,
                       "argmax_agreement": parity.argmax_agreement, "summary": parity.summary()},
            "versions": versions()}


def export_run(run: Run, parity_rows: int = 68, int8: bool = True,
               callbacks: Sequence[Callback] = ()) -> ExportResult:
    """Export ``run`` to ONNX, check parity on its held-out rows, and, if parity passed, write
    ``bundle-fp32.zip`` and (with ``int8``) a dynamically quantized ``bundle-int8.zip`` scored on the whole
    held-out split. ``callbacks`` get "phase" events (:class:`~peft_core.callbacks.Phase`): "exporting" (0/1, 1/1),
    "parity" (rows compared), "int8" (rows scored), "bundle" (zips written).

    The ONNX files are made in ``run_dir/export/`` and removed at the end (also when parity fails or a step
    raises): the bundles hold the only copy, the run keeps ``model/`` (PyTorch) to predict and re-export from,
    and ``export/`` keeps ``parity.json`` / ``int8.json``. Sizes in the message are the zip (download) sizes in
    MB = 10**6 bytes.

    Raises:
        NonFiniteError: the model's weights hold NaN / inf (nothing is written).
        ExportError: the exporter itself failed.
    """
    test, max_length, out = run.data.splits["test"], run.train_config.max_length, run.run_dir / "export"
    check_finite_weights(run.model)
    try:
        return _export(run, split_inputs(test), test["label"], max_length, out, parity_rows, int8, callbacks)
    finally:
        for name in ("model.onnx", "model.int8.onnx"):
            (out / name).unlink(missing_ok=True)


def check_finite_weights(model) -> None:
    """Raise NonFiniteError naming the first parameter or buffer of ``model`` holding NaN or infinite values."""
    import torch

    bad = [n for n, t in [*model.named_parameters(), *model.named_buffers()]
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise NonFiniteError(f"the model's weights hold NaN or infinite values ({len(bad)} tensor(s), first "
                             f"{bad[0]!r}), so there is nothing to export: train it again with a lower learning rate")


def _export(run: Run, texts, labels, max_length: int, out: Path, parity_rows: int, int8: bool,
            callbacks) -> ExportResult:
    from exporters.bundle import build_bundle
    from exporters.onnx import export_onnx
    from exporters.parity import check_parity
    from exporters.quantize import check_int8, quantizable_share, quantize_int8

    def emit(event: ProgressEvent) -> None:
        for cb in callbacks:
            cb(event)

    phase = Phase(emit, "exporting", 1).start()
    onnx_export = export_onnx(run.model, run.tokenizer, texts[:3], out / "model.onnx", max_length)
    phase.finish()
    phase = Phase(emit, "parity", 0)  # check_parity reports its total
    parity = check_parity(run.model, run.tokenizer, onnx_export.path, texts, max_length,
                          rows_per_check=parity_rows, progress=phase)
    (out / "parity.json").write_text(json.dumps(parity.to_dict(), indent=2))
    if not parity.passed:
        return ExportResult(onnx_export, parity, None, "No bundle: " + parity.summary())
    quant, note = None, ""
    share = quantizable_share(onnx_export.path) if int8 else 1.0
    if share < 0.2:  # MiniLM: 0.47 (its embeddings are the rest)
        int8, note = False, (" No int8 bundle: dynamic int8 quantization covers MatMul/Gemm weights, only "
                             f"{100 * share:.2g}% of this model's; its convolutions stay fp32.")
    if int8:
        phase = Phase(emit, "int8", len(texts)).start()
        q_path = quantize_int8(onnx_export.path, out / "model.int8.onnx")
        quant = check_int8(onnx_export.path, q_path, run.tokenizer, texts, labels, max_length, progress=phase)
        (out / "int8.json").write_text(json.dumps(quant.to_dict(), indent=2))
    cfg = bundle_config(run, onnx_export, parity)
    todo = {"fp32": (onnx_export.path, cfg | {"precision": "fp32"})}
    if quant is not None and quant.finite:  # an int8 model with NaN / inf outputs is not bundled
        todo["int8"] = (q_path, cfg | {"precision": "int8", "int8": quant.to_dict()})
    phase, bundles = Phase(emit, "bundle", len(todo)).start(), {}
    for precision, (path, config) in todo.items():
        bundles[precision] = build_bundle(run.run_dir / f"bundle-{precision}.zip", path, run.tokenizer, config, parity)
        phase(len(bundles))
    default = "int8" if quant is not None and quant.acceptable else "fp32"
    message = (parity.summary() + (" " + quant.summary() if quant is not None else "") + note + " "
               + download_sizes(bundles, default))
    return ExportResult(onnx_export, parity, bundles[default], message, quant, bundles)


def download_sizes(bundles: dict, default: str) -> str:
    """The bundles' download (zip) sizes, default first, in MB = 10**6 bytes, as one sentence, e.g.
    ``Downloads: int8 bundle 53.3 MB (default), fp32 bundle 83.1 MB (zip sizes, MB = 10^6 bytes).``"""
    order = sorted(bundles, key=lambda p: p != default)
    parts = [f"{p} bundle {Path(bundles[p]).stat().st_size / 1e6:.1f} MB" + (" (default)" if p == default else "")
             for p in order]
    return "Downloads: " + ", ".join(parts) + " (zip sizes, MB = 10^6 bytes)."
