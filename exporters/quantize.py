"""int8 dynamic quantization of the exported model (``onnxruntime.quantization.quantize_dynamic``) and its check.

Weights of MatMul/Gemm become int8 with per-channel scales; activations are quantized on the fly. The embedding
lookup stays fp32 (quantizing it cost accuracy here, ../shared/docs/GOTCHAS.md). The int8 model is judged on
the whole held-out split in the task kind's gate metric (``TaskKind.int8_verdict``: single-label accuracy within 1
point of fp32, multi-label micro-F1 within 1 point, regression RMSE at most 2 % above fp32's), beside how often it
agrees with fp32's predictions. It becomes the bundle's default only if the kind accepts it.

Dynamic int8 is the export's fallback: static int8, calibrated on training rows and batch-independent, is tried
first (``quantize_static.choose_int8``); :class:`QuantReport` records which ``mode`` was chosen.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from peft_core.tasks import Int8Verdict, TaskSpec, get_task

from .parity import ort_session

#: the single-label gate (accuracy points), for reports built from accuracies (see :class:`QuantReport`)
DEFAULT_MAX_DROP = 0.01


@dataclass(init=False)
class QuantReport:
    """int8 vs fp32 on the held-out rows. Sizes in bytes; ``verdict``: the task kind's judgement in its gate
    metric (``verdict.metric``: "accuracy", "micro-F1", "RMSE"...; ``verdict.agreement``: share of rows where int8
    and fp32 predict the same, for regression within 1 % of the target's standard deviation)."""

    path: str
    fp32_bytes: int
    int8_bytes: int
    rows: int
    verdict: Int8Verdict
    max_abs_diff: float
    seconds: float

    def __init__(self, path: str, fp32_bytes: int, int8_bytes: int, rows: int, verdict: Int8Verdict | None = None,
                 max_abs_diff: float = math.nan, seconds: float = 0.0, *, fp32_accuracy: float | None = None,
                 int8_accuracy: float | None = None, label_agreement: float | None = None,
                 max_accuracy_drop: float = DEFAULT_MAX_DROP, mode: str = "dynamic", batch: dict | None = None,
                 calibration: dict | None = None):
        """Give ``verdict``, or (as before task kinds) ``fp32_accuracy`` / ``int8_accuracy`` / ``label_agreement``
        fractions, judged as single-label: acceptable when int8 loses at most ``max_accuracy_drop``.
        ``mode``: "dynamic" or "static" (calibrated); ``batch``: the one-at-a-time vs bulk check
        (``quantize_static.BatchCheck.to_dict()``: rows, max_abs_diff, flips, bulk_batch, independent; None: not
        checked); ``calibration``: static int8's ``StaticInfo.to_dict()`` (None for dynamic). ``tried``: reports
        (dicts) of int8 modes tried before this one and not chosen, set by the caller.
        Raises:
            ValueError: neither a verdict nor the three accuracies."""
        if verdict is None:
            if None in (fp32_accuracy, int8_accuracy, label_agreement):
                raise ValueError("give the task kind's verdict, or fp32_accuracy, int8_accuracy and label_agreement")
            verdict = Int8Verdict("accuracy", fp32_accuracy, int8_accuracy, label_agreement,
                                  f"accuracy at most {100 * max_accuracy_drop:g} point below fp32",
                                  fp32_accuracy - int8_accuracy <= max_accuracy_drop + 1e-12)
        self.path, self.fp32_bytes, self.int8_bytes, self.rows = path, fp32_bytes, int8_bytes, rows
        self.verdict, self.max_abs_diff, self.seconds = verdict, max_abs_diff, seconds
        self.mode, self.batch, self.calibration, self.tried = mode, batch, calibration, []

    @property
    def batch_independent(self) -> bool | None:
        """Whether a row's outputs were the same one at a time as in bulk (None: not checked)."""
        return None if self.batch is None else bool(self.batch["independent"])

    @property
    def metric(self) -> str:
        return self.verdict.metric

    def _accuracy(self, value: float) -> float | None:
        return value if self.metric == "accuracy" else None

    @property
    def fp32_accuracy(self) -> float | None:
        """fp32's held-out accuracy when accuracy is the gate metric (single-label), else None."""
        return self._accuracy(self.verdict.fp32)

    @property
    def int8_accuracy(self) -> float | None:
        """int8's held-out accuracy when accuracy is the gate metric (single-label), else None."""
        return self._accuracy(self.verdict.int8)

    @property
    def label_agreement(self) -> float:
        """Share of rows where int8 predicts what fp32 predicts (see the class doc)."""
        return self.verdict.agreement

    @property
    def accuracy_drop(self) -> float | None:
        return None if self.fp32_accuracy is None else self.fp32_accuracy - self.int8_accuracy

    @property
    def finite(self) -> bool:
        """Whether every fp32 and int8 logit was a finite number (``max_abs_diff`` is NaN / inf otherwise)."""
        return math.isfinite(self.max_abs_diff)

    @property
    def acceptable(self) -> bool:
        return self.finite and bool(self.verdict.acceptable)

    def to_dict(self) -> dict:
        """JSON-ready: sizes, rows, the gate (``metric``, ``fp32_score``, ``int8_score``, ``agreement``,
        ``agreement_means``, ``limit``, ``unit``, ``acceptable``), max |Δlogit|, seconds, ``mode`` ("static" /
        "dynamic"), ``batch_independent``, ``batch_check``, ``calibration`` (rows, method, seconds...), ``tried``;
        with accuracy as the gate
        also the names reports had before task kinds (``fp32_accuracy``, ``int8_accuracy``, ``label_agreement``, ``accuracy_drop``)."""
        v = self.verdict
        d = {"path": self.path, "fp32_bytes": self.fp32_bytes, "int8_bytes": self.int8_bytes, "rows": self.rows,
             "metric": v.metric, "fp32_score": v.fp32, "int8_score": v.int8, "agreement": v.agreement,
             "limit": v.limit, "unit": v.unit, "agreement_means": v.agreement_means, "acceptable": self.acceptable,
             "max_abs_diff": self.max_abs_diff, "seconds": self.seconds, "mode": self.mode,
             "batch_independent": self.batch_independent, "batch_check": self.batch,
             "calibration": self.calibration, "tried": self.tried}
        if self.fp32_accuracy is not None:
            d |= {"fp32_accuracy": self.fp32_accuracy, "int8_accuracy": self.int8_accuracy,
                  "label_agreement": self.label_agreement, "accuracy_drop": self.accuracy_drop}
        return d

    def change(self) -> str:
        """int8's change from fp32 in the unit its limit is stated in: percentage points ("-0.38 pt") for shares
        such as accuracy and F1, percent of fp32's value ("+1.20 %") for limits given in % (RMSE)."""
        v = self.verdict
        if v.unit == "%":
            rel = 100 * (v.int8 - v.fp32) / abs(v.fp32) if v.fp32 else math.inf * np.sign(v.int8 - v.fp32)
            return f"{round(rel, 2) + 0.0:+.2f} %"
        return f"{round(100 * (v.int8 - v.fp32), 2) + 0.0:+.2f} pt"  # + 0.0: "+0.00", never "-0.00"

    def summary(self) -> str:
        """One sentence: the gate metric for int8 and fp32, agreement, verdict. Sizes are left to the caller,
        which states the download (zip) sizes."""
        if not self.finite:
            return (f"int8: FLAGGED and not offered: its logits or fp32's are NaN or infinite on some of the "
                    f"{self.rows} held-out rows.")
        v = self.verdict
        verdict = "offered as the default download" if self.acceptable else \
            f"FLAGGED: the rule is {v.limit}, so fp32 stays the default"
        how = {"static": "static, calibrated"}.get(self.mode, self.mode) + (
            "" if self.batch_independent is None else
            ", batch-independent" if self.batch_independent else ", outputs shift with the batch")
        return (f"int8: ({how}) held-out {v.metric} {v.int8:.4f} vs fp32 {v.fp32:.4f} ({self.change()}); int8 "
                f"gives {v.agreement_means} on {100 * v.agreement:.2f}% of {self.rows} rows; {verdict}.")


def quantizable_share(onnx_path: str | Path) -> float:
    """Share (0..1) of the model's weight elements that dynamic quantization covers (initializers feeding MatMul
    or Gemm). Near 1 for transformers; small for CNNs, whose weights sit in Conv nodes: ONNX Runtime's dynamic
    int8 Conv (ConvInteger) ran ~10x slower than fp32 on EfficientNet-Lite0 here, so those are left in fp32."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    sizes = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    covered = {i for n in model.graph.node if n.op_type in ("MatMul", "Gemm") for i in n.input if i in sizes}
    total = sum(sizes.values())
    return sum(sizes[i] for i in covered) / total if total else 0.0


def quantize_int8(fp32_path: str | Path, out_path: str | Path) -> Path:
    """Write the dynamically quantized copy of ``fp32_path`` to ``out_path`` (MatMul/Gemm, per-channel int8)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it advises shape pre-processing on the root logger; that step fails here
    try:
        quantize_dynamic(str(fp32_path), str(out_path), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"])
    finally:
        root.setLevel(level)
    return Path(out_path)


def check_int8(fp32_path: str | Path, int8_path: str | Path, tokenizer, texts: Sequence, values: Sequence,
               max_length: int, spec: TaskSpec, progress: Callable[[int, int], None] | None = None) -> QuantReport:
    """Score fp32 and int8 ONNX models on the same held-out rows (length-sorted batches of 64) and judge int8 with
    ``get_task(spec).int8_verdict(spec, values, fp32_logits, int8_logits)``.

    Args:
        texts: the rows' model inputs (texts, or (text, text_pair) tuples); values: their ``label`` column (the
            data contract's targets of ``spec``'s kind).
        progress: ``progress(done, total)``: rows scored by both models, at the start (0) and after every batch.
    Returns:
        QuantReport; NaN / infinite logits make ``max_abs_diff`` non-finite and the report not ``acceptable``.
    """
    from peft_core.inference import batch_inputs, sorted_batches, token_lengths

    t0 = time.perf_counter()
    texts = list(texts)
    fp32, int8 = ort_session(fp32_path), ort_session(int8_path)
    names = [i.name for i in fp32.get_inputs()]
    tell = progress or (lambda done, total: None)
    a, b, done = [None] * len(texts), [None] * len(texts), 0
    tell(0, len(texts))
    for idx in sorted_batches(token_lengths(tokenizer, texts, max_length), 64):
        feed = {k: v.numpy() for k, v in batch_inputs(tokenizer, [texts[i] for i in idx], max_length).items()
                if k in names}
        for out, sess in ((a, fp32), (b, int8)):
            for i, row in zip(idx, sess.run(["logits"], feed)[0]):
                out[i] = row
        done += len(idx)
        tell(done, len(texts))
    a, b = np.stack(a), np.stack(b)  # float32 [n, num_labels], input order
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, which makes the report not finite
        diff = float(np.max(np.abs(a - b)))
    with np.errstate(all="ignore"):
        verdict = get_task(spec).int8_verdict(spec, values, a, b)
    return QuantReport(str(int8_path), Path(fp32_path).stat().st_size, Path(int8_path).stat().st_size, len(texts),
                       verdict, diff, time.perf_counter() - t0)
