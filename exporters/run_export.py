"""Export one trained run: ONNX -> parity -> int8 -> bundles (the app's jobs and the CLI call :func:`export_run`).

The steps are the exporters of this package; this module composes them for a :class:`~peft_core.pipeline.Run`
and writes what the run folder keeps of an export::

    run_dir/export/parity.json, int8.json        the reports
    run_dir/bundle-fp32.zip, bundle-int8.zip     the bundles: the only copies of the fp32 / int8 ONNX models

Every task kind and input kind goes through the same calls: the held-out inputs come from ``split_inputs`` (texts,
(text, text_pair) tuples or image paths), the int8 model is judged by the run's task kind
(``TaskKind.int8_verdict``), and the bundle's ``config.json`` carries the task spec (kind, problem_type,
thresholds, target mean / std, text-pair column) that its ``predict.py`` reads.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

from peft_core.callbacks import Callback, Phase, ProgressEvent
from peft_core.errors import NonFiniteError
from peft_core.pipeline import ExportResult, Run, data_modality, versions
from peft_core.splits import split_inputs

from .bundle import build_bundle
from .hf_config import FORMAT, MODEL_FILES
from .onnx import export_onnx
from .parity import check_parity
from .quantize import quantizable_share
from .quantize_static import choose_int8

#: below this share of weights in MatMul/Gemm, dynamic int8 leaves most of the model fp32 (MiniLM: 0.47), so it is
#: not tried as the fallback of static int8
MIN_QUANTIZABLE_SHARE = 0.2


def bundle_config(run: Run, onnx_export, parity) -> dict:
    """This project's part of the bundle's ``config.json`` (its ``"peft_onnx_bundle"`` entry, see
    ``exporters.hf_config``): format, modality, the task spec (``TaskSpec.to_dict()``: kind, problem_type,
    id2label, num_labels, thresholds, target_mean / target_std, text_column / text_pair_column, input_kind),
    preprocessing (max_length and padding token, or the image preprocessing), ONNX inputs, base model, method and
    hyper-parameters, parameter counts, data, held-out metrics (the kind's report), parity and package versions;
    ``hf_base_config`` (the base model's own ``PretrainedConfig`` as a dict) is taken out by ``build_bundle`` for
    the config's top level."""
    tok, image, task = run.tokenizer, data_modality(run.data) == "image", run.data.task.to_dict()
    inputs = ({"preprocessing": tok.to_dict()} if image else
              {"max_length": run.train_config.max_length, "pad_token": tok.pad_token, "pad_token_id": tok.pad_token_id})
    return {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "modality": "image" if image else "text",
            "task": task, "id2label": task["id2label"], "problem_type": task["problem_type"], **inputs,
            "input_names": onnx_export.input_names, "onnx": onnx_export.to_dict(),
            "base_model": run.spec.to_dict(), "method": run.config.method,
            "method_config": run.config.method_cfg().to_dict(), "train_config": run.train_config.to_dict(),
            "trainable_parameters": run.trainable_parameters, "total_parameters": run.total_parameters,
            "data": {"source": Path(run.data.report.source).name, "split_sizes": run.data.report.split_sizes},
            "metrics": run.eval_report.to_dict(),
            "parity": {"passed": parity.passed, "max_abs_diff": parity.max_abs_diff,
                       "argmax_agreement": parity.argmax_agreement, "summary": parity.summary()},
            "versions": versions(), "hf_base_config": run.model.backbone.config.to_dict()}


def export_run(run: Run, parity_rows: int = 68, int8: bool = True,
               callbacks: Sequence[Callback] = ()) -> ExportResult:
    """Export ``run`` to ONNX, check parity on its held-out rows, and, if parity passed, write
    ``bundle-fp32.zip`` and (with ``int8``) ``bundle-int8.zip``: static int8 calibrated on the training rows
    (batch-independent), or dynamic int8 when static fails the gate and dynamic passes, judged on the whole
    held-out split by the run's task kind (see :func:`_int8`). ``callbacks`` get "phase" events
    (:class:`~peft_core.callbacks.Phase`): "exporting" (0/1, 1/1), "parity" (rows compared), "int8" (rows
    scored), "bundle" (zips written).

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
    """The steps of :func:`export_run` on the held-out ``texts`` (model inputs) and ``labels`` (targets)."""
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
    quant, note, q_path = None, "", out / "model.int8.onnx"
    if int8:
        quant, note = _int8(run, onnx_export.path, q_path, texts, labels, max_length, Phase(emit, "int8", len(texts)))
    cfg = bundle_config(run, onnx_export, parity)
    todo = {"fp32": (onnx_export.path, cfg | {"precision": "fp32"})}
    if quant is not None and quant.finite:  # an int8 model with NaN / inf outputs is not bundled
        todo["int8"] = (q_path, cfg | {"precision": "int8", "int8": quant.to_dict() | {"path": MODEL_FILES["int8"]},
                                       "onnx": cfg["onnx"] | {"size_bytes": q_path.stat().st_size}})
    phase, bundles = Phase(emit, "bundle", len(todo)).start(), {}
    for precision, (path, config) in todo.items():
        bundles[precision] = build_bundle(run.run_dir / f"bundle-{precision}.zip", path, run.tokenizer, config, parity)
        phase(len(bundles))
    default = "int8" if quant is not None and quant.acceptable else "fp32"
    message = (parity.summary() + (" " + quant.summary() if quant is not None else "") + note + " "
               + download_sizes(bundles, default))
    return ExportResult(onnx_export, parity, bundles[default], message, quant, bundles)


def _int8(run: Run, fp32_path: Path, q_path: Path, texts, labels, max_length: int, phase: Phase) -> tuple:
    """The int8 step: static int8 calibrated on the run's training inputs, dynamic int8 as the fallback where the
    graph's weights sit mostly in MatMul / Gemm (``quantize_static.choose_int8``); writes ``int8.json`` next to
    ``q_path``. Returns ``(QuantReport or None, note for the message)``."""
    phase.start()
    dynamic_ok = quantizable_share(fp32_path) >= MIN_QUANTIZABLE_SHARE
    quant, note = choose_int8(fp32_path, q_path, run.tokenizer, split_inputs(run.data.splits["train"]), texts, labels,
                              max_length, run.data.task, progress=phase, dynamic_ok=dynamic_ok)
    if quant is not None:
        (q_path.parent / "int8.json").write_text(json.dumps(quant.to_dict(), indent=2))
    return quant, note


def download_sizes(bundles: dict, default: str) -> str:
    """The bundles' download (zip) sizes, default first, in MB = 10**6 bytes, as one sentence, e.g.
    ``Downloads: int8 bundle 53.3 MB (default), fp32 bundle 83.1 MB (zip sizes, MB = 10^6 bytes).``"""
    order = sorted(bundles, key=lambda p: p != default)
    parts = [f"{p} bundle {Path(bundles[p]).stat().st_size / 1e6:.1f} MB" + (" (default)" if p == default else "")
             for p in order]
    return "Downloads: " + ", ".join(parts) + " (zip sizes, MB = 10^6 bytes)."
