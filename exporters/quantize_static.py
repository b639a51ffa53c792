"""Static int8 (calibrated) quantization of the exported model, and the batch-independence check.

``onnxruntime.quantization.quantize_static`` in QDQ format: weights int8 per channel, activations uint8 with scales
fixed once from real training rows (text: tokenized and padded per batch as :func:`peft_core.inference.batch_inputs`
does; images: the run's preprocessed ``pixel_values``). Fixed scales make a row's outputs independent of the rows
batched beside it, unlike dynamic quantization, which computes one activation scale per batch (padding included).

What is quantized (bench/results_int8.md has the measurements behind each default): the weight MatMuls of a
transformer (``MatMulConstBOnly``: attention's activation x activation products stay fp32), with the embedding
lookups (Gather), LayerNorm, Attention, Add and the classifier (Gemm) in fp32; in a CNN the Convs and the Add /
Clip / pooling between them, with the classifier (the graph's last Gemm / MatMul / Conv) in fp32.
On full SMS Spam (MiniLM head run, 1,115 held-out texts, fp32 accuracy 0.9857) static int8 scored: MinMax on 256
rows 0.9857, with dedicated QDQ pairs 0.9874 (the default, no slower); with shared pairs as the base: Percentile
0.9839, Entropy 0.9830 (same rows, padded to one width, which those calibrators need), MinMax on 64 rows 0.9839,
on 1,024 rows 0.9857, per-tensor weights 0.9803 (~1.2-1.3x faster), quantizing every op (embeddings and
classifier included, 23 MB instead of 59 MB) 0.9767. On MNIST (EfficientNet-Lite0 head run, 300 held-out digits, fp32 0.9033): Convs only 0.9167; Convs with
the Adds, Clips and pooling between them (the default) 0.9167 and ~1.5x faster (int8 stays int8 across them);
per-tensor weights 0.8400 (fails the gate: depthwise convolutions need per-channel scales). Every static variant
scored each row the same alone and in bulk (max |Δp| 0).
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .parity import ort_session

#: static int8 needs this much of a row's probability to stay put, one row at a time vs in bulk (|Δp|)
BATCH_TOLERANCE = 1e-6


@dataclass(frozen=True)
class StaticSettings:
    """How the static int8 model is made. Defaults: the measured choice (bench/results_int8.md).

    Attributes:
        method: calibration method, "MinMax", "Percentile" or "Entropy"
            (``onnxruntime.quantization.CalibrationMethod``).
        rows: training rows (texts / images) fed to calibration, at most (fewer when the split is smaller).
        batch_size: rows per calibration batch (text batches are length-sorted and padded to their longest row).
        text_ops / image_ops: ``op_types_to_quantize`` for a text model (inputs ``input_ids``) / an image model.
        exclude_last: keep the last quantizable node of the graph (the classifier head) in fp32.
        per_channel: one weight scale per output channel (else one per tensor).
        quantize_outputs: also quantize the outputs of the quantized ops (False: a MatMul / Conv returns fp32,
            which ONNX Runtime runs as one fused integer op, ``MatMulIntegerToFloat`` for MatMul).
        dedicated_pairs: each quantized node gets its own QuantizeLinear / DequantizeLinear pair (ONNX Runtime's
            ``DedicatedQDQPair``), so fewer fp32 consumers of the same tensor (residual Adds) read the rounded copy.
        seed: seeds the choice of calibration rows.
    """

    method: str = "MinMax"
    rows: int = 256
    batch_size: int = 16
    text_ops: tuple[str, ...] = ("MatMul",)
    image_ops: tuple[str, ...] = ("Conv", "Add", "Mul", "Clip", "GlobalAveragePool")
    exclude_last: bool = True
    per_channel: bool = True
    quantize_outputs: bool = False
    dedicated_pairs: bool = True
    seed: int = 0


@dataclass
class StaticInfo:
    """What calibration did: ``method``, ``rows`` fed, ``seconds`` (wall clock, quantization included),
    ``op_types`` quantized, ``excluded`` node names kept fp32, ``quantized_nodes`` (count)."""

    method: str
    rows: int
    seconds: float
    op_types: list
    excluded: list
    quantized_nodes: int

    def to_dict(self) -> dict:
        return asdict(self)


def calibration_rows(inputs: Sequence, n: int, seed: int = 0) -> list:
    """``n`` rows of ``inputs`` (training texts, text pairs or image paths) drawn without replacement with
    ``numpy.random.default_rng(seed)``, in their original order; all of them when there are at most ``n``."""
    inputs = list(inputs)
    if len(inputs) <= n:
        return inputs
    idx = np.sort(np.random.default_rng(seed).choice(len(inputs), n, replace=False))
    return [inputs[i] for i in idx]


class RowsReader:
    """A ``CalibrationDataReader``: feeds ``rows`` to the model as ``{input name: numpy array}`` batches
    (int64 [batch, longest] for text, float32 [batch, 3, H, W] ``pixel_values`` for images), ``batch_size`` rows
    per batch, texts length-sorted so that each batch pads little, as the exporter and parity code do.
    ``same_width``: pad every text batch to the longest calibration row instead (ONNX Runtime's histogram
    calibrators, Percentile and Entropy, stack all batches and need one shape)."""

    def __init__(self, tokenizer, rows: Sequence, max_length: int, input_names: Sequence[str], batch_size: int = 16,
                 same_width: bool = False):
        from peft_core.inference import sorted_batches, token_lengths

        self.tokenizer, self.rows, self.max_length = tokenizer, list(rows), max_length
        self.names = list(input_names)
        lengths = token_lengths(tokenizer, self.rows, max_length)
        self.width = int(lengths.max()) if same_width and len(lengths) else 0
        self.batches = iter(sorted_batches(lengths, batch_size))

    def get_next(self) -> dict | None:
        from peft_core.inference import batch_inputs

        idx = next(self.batches, None)
        if idx is None:
            return None
        feed = batch_inputs(self.tokenizer, [self.rows[i] for i in idx], self.max_length)
        feed = {k: v.numpy() for k, v in feed.items() if k in self.names}
        if self.width:  # pad on the right: input_ids with the pad token, the mask and token types with 0
            pad = {"input_ids": self.tokenizer.pad_token_id or 0}
            feed = {k: np.pad(v, ((0, 0), (0, self.width - v.shape[1])), constant_values=pad.get(k, 0))
                    for k, v in feed.items()}
        return feed

    def rewind(self) -> None:  # part of ORT's reader protocol; calibration reads once
        raise NotImplementedError


def _plan(fp32_path: Path, settings: StaticSettings) -> tuple[list[str], list[str]]:
    """(op types to quantize, node names to keep fp32) for this graph: image ops when the graph reads
    ``pixel_values``; with ``exclude_last`` the last MatMul / Gemm / Conv node (the classifier) is excluded."""
    import onnx

    model = onnx.load(str(fp32_path), load_external_data=False)
    image = any(i.name == "pixel_values" for i in model.graph.input)
    ops = list(settings.image_ops if image else settings.text_ops)
    heads = [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]
    return ops, (heads[-1:] if settings.exclude_last else [])


def quantize_static_int8(fp32_path: str | Path, out_path: str | Path, tokenizer, train_rows: Sequence,
                         max_length: int, settings: StaticSettings = StaticSettings()) -> StaticInfo:
    """Write the statically quantized (QDQ, per-channel int8 weights, uint8 activations) copy of ``fp32_path``
    to ``out_path``, calibrated on up to ``settings.rows`` of ``train_rows`` (the run's training inputs: texts,
    (text, text_pair) tuples or image paths; ``tokenizer``: the run's tokenizer or image preprocessor).

    Raises:
        ValueError: no training rows, or an unknown calibration method.
        (onnxruntime's own errors propagate when the graph cannot be calibrated.)
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not len(train_rows):
        raise ValueError("static int8 needs training rows to calibrate on")
    if settings.method not in CalibrationMethod.__members__:
        raise ValueError(f"unknown calibration method {settings.method!r}: one of "
                         f"{list(CalibrationMethod.__members__)}")
    t0 = time.perf_counter()
    rows = calibration_rows(train_rows, settings.rows, settings.seed)
    names = [i.name for i in ort_session(fp32_path).get_inputs()]
    ops, excluded = _plan(Path(fp32_path), settings)
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)  # it advises shape pre-processing on the root logger; that step fails here
    try:
        reader = RowsReader(tokenizer, rows, max_length, names, settings.batch_size, settings.method != "MinMax")
        quantize_static(str(fp32_path), str(out_path), reader,
                        quant_format=QuantFormat.QDQ, op_types_to_quantize=ops, per_channel=settings.per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                        calibrate_method=CalibrationMethod[settings.method], extra_options=_options(ops, settings))
    finally:
        root.setLevel(level)
    seconds = time.perf_counter() - t0
    return StaticInfo(settings.method, len(rows), seconds, ops, excluded, _count_quantized(out_path, ops))


def _options(ops: list[str], settings: StaticSettings) -> dict:
    """``extra_options`` of quantize_static: MatMuls with a constant weight only, symmetric int8 weights, dedicated
    QDQ pairs (``settings.dedicated_pairs``) and (unless ``settings.quantize_outputs``) no QuantizeLinear after
    the quantized ops."""
    options = {"MatMulConstBOnly": True, "WeightSymmetric": True, "DedicatedQDQPair": settings.dedicated_pairs}
    if not settings.quantize_outputs:
        options["OpTypesToExcludeOutputQuantization"] = list(ops)
    return options


def _count_quantized(path: str | Path, ops: Sequence[str]) -> int:
    """Number of nodes of the ``ops`` types that read a DequantizeLinear output (the quantized operators)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return sum(1 for n in model.graph.node if n.op_type in ops and any(i in dq for i in n.input))


def probabilities(logits: np.ndarray, kind: str) -> np.ndarray:
    """What a bundle reports from float32 logits [n, K]: softmax for "single_label", sigmoid for "multi_label",
    the logits themselves for "regression" (float64 [n, K])."""
    x = logits.astype(np.float64)
    if kind == "single_label":
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    if kind == "multi_label":
        return 1 / (1 + np.exp(-x))
    return x


@dataclass
class BatchCheck:
    """One row at a time vs in bulk on the same model: ``rows`` compared, ``max_abs_diff`` (max |Δp| over rows
    and outputs, probabilities as :func:`probabilities`), ``flips`` (rows whose argmax differs), ``bulk_batch``
    (rows per bulk batch, in input order so lengths mix and short rows are padded)."""

    rows: int
    max_abs_diff: float
    flips: int
    bulk_batch: int

    @property
    def independent(self) -> bool:
        return math.isfinite(self.max_abs_diff) and self.max_abs_diff <= BATCH_TOLERANCE

    def to_dict(self) -> dict:
        """rows, max_abs_diff, flips, bulk_batch and ``independent`` (max |Δp| <= :data:`BATCH_TOLERANCE`)."""
        return asdict(self) | {"independent": self.independent}


def batch_check(onnx_path: str | Path, tokenizer, rows: Sequence, max_length: int, kind: str,
                bulk_batch: int = 64, session=None) -> BatchCheck:
    """Score ``rows`` (model inputs) one at a time and in batches of ``bulk_batch`` in input order (texts padded
    to each batch's longest, as a bundle's ``predict.py`` pads), and compare the probabilities.

    Raises:
        ValueError: no rows.
    """
    from peft_core.inference import batch_inputs

    rows = list(rows)
    if not rows:
        raise ValueError("no rows to check")
    sess = session or ort_session(onnx_path)
    names = [i.name for i in sess.get_inputs()]

    def run(batch: list) -> np.ndarray:
        feed = batch_inputs(tokenizer, batch, max_length)
        return sess.run(["logits"], {k: v.numpy() for k, v in feed.items() if k in names})[0]

    single = np.concatenate([run([r]) for r in rows])
    bulk = np.concatenate([run(rows[i:i + bulk_batch]) for i in range(0, len(rows), bulk_batch)])
    a, b = probabilities(single, kind), probabilities(bulk, kind)
    with np.errstate(invalid="ignore"):
        diff = float(np.max(np.abs(a - b)))
    return BatchCheck(len(rows), diff, int((single.argmax(-1) != bulk.argmax(-1)).sum()), bulk_batch)


#: held-out rows of the one-at-a-time vs bulk check recorded in the int8 report (one bulk batch of mixed lengths)
BATCH_CHECK_ROWS = 64


def choose_int8(fp32_path: Path, out_path: Path, tokenizer, train_rows: Sequence, rows: Sequence, values: Sequence,
                max_length: int, spec, progress=None, settings: StaticSettings = StaticSettings(),
                dynamic_ok: bool = True):
    """Make the int8 model: static (calibrated on ``train_rows``) first; if it fails the task kind's gate on the
    held-out ``rows`` / ``values`` and ``dynamic_ok`` (the graph's weights sit mostly in MatMul / Gemm), dynamic
    int8 next, kept when it passes. Each candidate's report (``quantize.QuantReport``) carries ``mode``, the
    one-at-a-time vs bulk check on the first :data:`BATCH_CHECK_ROWS` held-out rows and, for static, the
    calibration; the chosen one lists the others in ``tried``.

    Returns:
        ``(report, note)``: the chosen model is at ``out_path``; ``report`` is None (and nothing is at
        ``out_path``) when static int8 failed or could not be made and dynamic int8 was not possible; ``note``
        then says why, else "".
    Raises:
        StopRequested: from ``progress`` (the run's stop flag); errors of dynamic quantization propagate (a
        static failure is recorded in ``tried`` instead).
    """
    from peft_core.callbacks import StopRequested

    from .quantize import check_int8, quantize_int8

    def judge(path: Path, mode: str, calibration: dict | None):
        q = check_int8(fp32_path, path, tokenizer, rows, values, max_length, spec, progress=progress)
        check = batch_check(path, tokenizer, list(rows)[:BATCH_CHECK_ROWS], max_length, spec.kind)
        q.mode, q.batch, q.calibration = mode, check.to_dict(), calibration
        return q

    tried, static = [], None
    try:
        info = quantize_static_int8(fp32_path, out_path, tokenizer, train_rows, max_length, settings)
        static = judge(out_path, "static", info.to_dict())
    except StopRequested:  # the run was told to stop (progress raises it): not a quantization failure
        raise
    except Exception as e:  # noqa: BLE001 -- onnxruntime raises its own types when a graph cannot be calibrated
        tried.append({"mode": "static", "error": f"{type(e).__name__}: {e}"})
    if static is not None and static.acceptable:
        return static, ""
    if not dynamic_ok:
        out_path.unlink(missing_ok=True)
        why = ("it failed: " + tried[0]["error"]) if static is None else static.summary()
        return None, (" No int8 bundle: static int8 was tried (dynamic int8 leaves this model's convolutions "
                      f"fp32), and {why}")
    other = out_path.with_name(out_path.stem + ".dynamic.onnx")
    try:
        dynamic = judge(quantize_int8(fp32_path, other), "dynamic", None)
        if static is None or dynamic.acceptable:
            os.replace(other, out_path)
            dynamic.path, static = str(out_path), (static.to_dict() if static is not None else None)
            dynamic.tried = tried + ([static] if static else [])
            return dynamic, ""
        static.tried = tried + [dynamic.to_dict()]
        return static, ""
    finally:
        other.unlink(missing_ok=True)
