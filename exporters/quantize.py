"""int8 dynamic quantization of the exported model (``onnxruntime.quantization.quantize_dynamic``) and its check.

Weights of MatMul/Gemm become int8 with per-channel scales; activations are quantized on the fly. The embedding
lookup stays fp32 (quantizing it cost accuracy here, ../shared/docs/GOTCHAS.md). The int8 model is judged on
the whole held-out split: its accuracy next to fp32's and its label agreement with fp32. It becomes the bundle's
default only if it loses at most ``max_accuracy_drop`` (default 1 point).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .parity import ort_session

DEFAULT_MAX_DROP = 0.01


@dataclass
class QuantReport:
    """int8 vs fp32 on the held-out rows. Accuracies are fractions; sizes in bytes."""

    path: str
    fp32_bytes: int
    int8_bytes: int
    rows: int
    fp32_accuracy: float
    int8_accuracy: float
    label_agreement: float
    max_abs_diff: float
    max_accuracy_drop: float
    seconds: float

    @property
    def accuracy_drop(self) -> float:
        return self.fp32_accuracy - self.int8_accuracy

    @property
    def finite(self) -> bool:
        """Whether every fp32 and int8 logit was a finite number (``max_abs_diff`` is NaN / inf otherwise)."""
        return math.isfinite(self.max_abs_diff)

    @property
    def acceptable(self) -> bool:
        return self.finite and self.accuracy_drop <= self.max_accuracy_drop + 1e-12

    def to_dict(self) -> dict:
        return dict(asdict(self), accuracy_drop=self.accuracy_drop, acceptable=self.acceptable)

    def summary(self) -> str:
        """One sentence: accuracies, label agreement, verdict. Sizes are left to the caller, which states the
        download (zip) sizes."""
        if not self.finite:
            return (f"int8: FLAGGED and not offered: its logits or fp32's are NaN or infinite on some of the "
                    f"{self.rows} held-out rows.")
        verdict = "offered as the default download" if self.acceptable else \
            f"FLAGGED: loses more than {100 * self.max_accuracy_drop:.1f} points, fp32 stays the default"
        change = round(100 * -self.accuracy_drop, 2) + 0.0  # + 0.0: a zero change prints "+0.00", not "-0.00"
        return (f"int8: held-out accuracy {self.int8_accuracy:.4f} vs fp32 {self.fp32_accuracy:.4f} "
                f"({change:+.2f} pt), same label as fp32 on {100 * self.label_agreement:.2f}% "
                f"of {self.rows} rows; {verdict}.")


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


def check_int8(fp32_path: str | Path, int8_path: str | Path, tokenizer, texts: Sequence[str],
               labels: Sequence[int], max_length: int, max_accuracy_drop: float = DEFAULT_MAX_DROP,
               progress: Callable[[int, int], None] | None = None) -> QuantReport:
    """Score fp32 and int8 ONNX models on the same held-out rows (length-sorted batches of 64).
    ``progress(done, total)``: rows scored by both models, at the start (0) and after every batch.
    NaN / infinite logits make ``max_abs_diff`` non-finite and the report not ``acceptable``."""
    from peft_core.inference import batch_inputs, sorted_batches, token_lengths

    t0 = time.perf_counter()
    texts, y = list(texts), np.asarray(labels)
    order = np.concatenate(sorted_batches(token_lengths(tokenizer, texts, max_length), 64))
    fp32, int8 = ort_session(fp32_path), ort_session(int8_path)
    names = [i.name for i in fp32.get_inputs()]
    feeds = [{k: v.numpy() for k, v in batch_inputs(tokenizer, [texts[i] for i in order[j:j + 64]],
                                                     max_length).items() if k in names}
             for j in range(0, len(order), 64)]
    tell = progress or (lambda done, total: None)
    a, b, done = [], [], 0
    tell(0, len(texts))
    for f in feeds:
        a.append(fp32.run(["logits"], f)[0])
        b.append(int8.run(["logits"], f)[0])
        done += len(a[-1])
        tell(done, len(texts))
    a, b = np.concatenate(a), np.concatenate(b)
    ys = y[order]
    return QuantReport(path=str(int8_path), fp32_bytes=Path(fp32_path).stat().st_size,
                       int8_bytes=Path(int8_path).stat().st_size, rows=len(texts),
                       fp32_accuracy=float((a.argmax(-1) == ys).mean()), int8_accuracy=float((b.argmax(-1) == ys).mean()),
                       label_agreement=float((a.argmax(-1) == b.argmax(-1)).mean()),
                       max_abs_diff=float(np.abs(a - b).max()), max_accuracy_drop=max_accuracy_drop,
                       seconds=time.perf_counter() - t0)
