"""Parity: PyTorch vs ONNX Runtime on real held-out rows, at several batch sizes, with padding.

Like optimum's export validation, every check runs and every failure is collected, then one
:class:`ParityReport` says whether the export may be shipped: max |delta logit| <= atol and identical argmax on
every row of every check. The last check feeds texts longer than ``max_length`` (truncation path); for text-pair
models (rows given as (text, text_pair) tuples) both texts of the pair are lengthened.

What the gate means per task kind: the logits are what every kind's predictions are made from, so the logit
tolerance is the test that holds for all of them. Argmax agreement is the single-label prediction itself; for
multi-label models it is the top-scoring label (the thresholded label sets can only differ where a probability lies
within ``atol / 4`` of its threshold, the sigmoid's largest slope being 1/4); for regression (one output column)
argmax is always 0, so agreement says nothing there and the summary leaves it out: the prediction
``logit * target_std + target_mean`` differs by at most ``atol * target_std`` in the target's units.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from peft_core.inference import batch_inputs, is_image_processor

DEFAULT_ATOL = 1e-4


@dataclass
class ParityCheck:
    """One comparison: ``rows`` texts in batches of ``batch_size``; ``max_tokens`` the longest padded batch."""

    name: str
    batch_size: int
    rows: int
    max_tokens: int
    max_abs_diff: float
    argmax_agreement: float
    passed: bool
    non_finite: str = ""  # which side gave NaN / inf logits, on how many rows ("" when all were finite)


@dataclass
class ParityReport:
    """All checks of one ONNX file. ``passed`` is False if any check failed or raised."""

    onnx_path: str
    atol: float
    checks: list[ParityCheck] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    outputs: int = 0  # logits per row (num_labels); 0: unknown. With 1 output, argmax agreement is vacuous

    @property
    def passed(self) -> bool:
        return bool(self.checks) and not self.failures

    @property
    def max_abs_diff(self) -> float:
        # np.max propagates NaN (Python's max keeps whichever comes first when one side is NaN)
        return float(np.max([c.max_abs_diff for c in self.checks])) if self.checks else float("nan")

    @property
    def argmax_agreement(self) -> float:
        rows = sum(c.rows for c in self.checks)
        return sum(c.argmax_agreement * c.rows for c in self.checks) / rows if rows else float("nan")

    def to_dict(self) -> dict:
        return dict(asdict(self), passed=self.passed, max_abs_diff=self.max_abs_diff,
                    argmax_agreement=self.argmax_agreement)

    def to_table(self) -> pd.DataFrame:
        df = pd.DataFrame([asdict(c) for c in self.checks])
        if len(df):
            df["max_abs_diff"] = df["max_abs_diff"].map(lambda v: f"{v:.2e}")
            df["passed"] = df["passed"].map({True: "yes", False: "NO"})
        return df

    def summary(self) -> str:
        """One sentence: verdict, worst logit difference, argmax agreement (left out for one-output models, where
        it is always 100 %), rows, and the failures."""
        verdict = "PASSED" if self.passed else "FAILED"
        rows = sum(c.rows for c in self.checks)
        agreement = "" if self.outputs == 1 else f", argmax agreement {100 * self.argmax_agreement:.2f}%"
        text = (f"Parity {verdict}: max |Δlogit| {self.max_abs_diff:.2e} (limit {self.atol:.0e}){agreement} over "
                f"{rows} rows.")
        return text + ("" if self.passed else " Failures: " + "; ".join(self.failures))


def ort_session(onnx_path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session with full graph optimisation."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])


def _as_inputs(texts: Sequence) -> list:
    """Rows as model inputs: str, or (str, str) for (text, text_pair) rows."""
    return [(str(t[0]), str(t[1])) if isinstance(t, (tuple, list)) else str(t) for t in texts]


def _too_long(texts: list, max_length: int) -> list:
    """Two copies of the longest row repeated past ``max_length`` tokens (both texts of a pair), then 3 rows."""
    def joined(t) -> str:
        return " ".join(t) if isinstance(t, tuple) else t

    longest = max(texts, key=lambda t: len(joined(t)))
    reps = 1 + 4 * max_length // max(len(joined(longest).split()), 1)
    long = tuple((p + " ") * reps for p in longest) if isinstance(longest, tuple) else (longest + " ") * reps
    return [long] * 2 + texts[:3]


def _compare(model, sess, tokenizer, texts: Sequence, max_length: int, batch_size: int, atol: float,
             name: str, progress=None) -> ParityCheck:
    """One check; ``progress(rows done in this check)`` after every batch. Non-finite logits on either side
    fail the check (a NaN difference is never within ``atol``)."""
    names = [i.name for i in sess.get_inputs()]
    worst, agree, longest, bad = 0.0, 0, 0, {"PyTorch": 0, "ONNX Runtime": 0}
    for i in range(0, len(texts), batch_size):
        inputs = batch_inputs(tokenizer, texts[i:i + batch_size], max_length)
        longest = max(longest, inputs["input_ids"].shape[1] if "input_ids" in inputs else 0)
        with torch.no_grad():
            ref = model(**inputs).float().numpy()
        got = sess.run(["logits"], {n: inputs[n].numpy() for n in names})[0]
        if got.shape != ref.shape:
            raise ValueError(f"output shape {got.shape} != PyTorch {ref.shape}")
        for side, logits in (("PyTorch", ref), ("ONNX Runtime", got)):
            bad[side] += int((~np.isfinite(logits)).any(-1).sum())
        with np.errstate(invalid="ignore"):  # inf - inf: NaN, counted above
            worst = float(np.max([worst, np.abs(got - ref).max()]))  # NaN stays NaN
        agree += int((got.argmax(-1) == ref.argmax(-1)).sum())
        if progress is not None:
            progress(len(texts[:i + batch_size]))
    n = len(texts)
    non_finite = "; ".join(f"{side} logits are NaN or infinite on {k} of {n} rows" for side, k in bad.items() if k)
    return ParityCheck(name, batch_size, n, longest, worst, agree / n,
                       bool(worst <= atol) and agree == n and not non_finite, non_finite)


def check_parity(model, tokenizer, onnx_path: str | Path, texts: Sequence, max_length: int,
                 batch_sizes: Sequence[int] = (1, 2, 17), rows_per_check: int = 68,
                 atol: float = DEFAULT_ATOL, progress: Callable[[int, int], None] | None = None) -> ParityReport:
    """Compare ``model`` (PyTorch, eval) and the ONNX file on ``texts`` (held-out rows, in their own order so
    batches mix lengths and need padding: texts, (text, text_pair) tuples, or image paths). ``progress(done,
    total)``: rows compared so far over all checks, at the start (0), after every batch and at the end (total).

    Returns:
        ParityReport; failures name the check and what differed, and any NaN / infinite logits on either side
        (such a model never passes). Never raises for a mismatch.
    """
    model = model.cpu().eval()
    report = ParityReport(onnx_path=str(onnx_path), atol=atol)
    texts = _as_inputs(texts)
    if not texts:
        report.failures.append("no held-out texts to compare on")
        return report
    try:
        sess = ort_session(onnx_path)
    except Exception as e:  # onnxruntime raises its own exception types for broken files
        report.failures.append(f"ONNX Runtime cannot load the model: {e}")
        return report
    shape = sess.get_outputs()[0].shape
    report.outputs = shape[-1] if shape and isinstance(shape[-1], int) else 0
    plans = [(f"batch {b}", texts[:max(rows_per_check, b)], b) for b in batch_sizes]
    if not is_image_processor(tokenizer):
        long_texts = _too_long(texts, max_length)
        plans.append(("over max_length", long_texts, len(long_texts)))
    total, before = sum(len(rows) for _, rows, _ in plans), 0
    tell = progress or (lambda done, total: None)
    tell(0, total)
    for name, rows, b in plans:
        try:
            check = _compare(model, sess, tokenizer, rows, max_length, b, atol, name,
                             lambda done, base=before: tell(base + done, total))
        except Exception as e:  # a runtime failure on one check is recorded, the others still run
            report.failures.append(f"{name}: {type(e).__name__}: {e}")
            continue
        finally:
            before += len(rows)
        report.checks.append(check)
        if check.non_finite:
            report.failures.append(f"{name}: {check.non_finite}; a model whose outputs are not finite numbers "
                                   "cannot be shipped")
        elif not check.passed:
            report.failures.append(f"{name}: max |Δlogit| {check.max_abs_diff:.2e} > {atol:.0e} or argmax "
                                   f"agreement {100 * check.argmax_agreement:.1f}% < 100%")
    tell(total, total)
    return report
