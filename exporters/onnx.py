"""Export a trained classifier to ONNX with the dynamo exporter (``torch.onnx.export(..., dynamo=True)``).

The graph takes exactly the inputs the tokenizer produces (``input_ids``, ``attention_mask`` and, for BERT-style
tokenizers, ``token_type_ids``; int64 [batch, sequence], both axes dynamic) bound by name, and returns one
output, ``logits`` (float32 [batch, num_labels]). Text-pair models (examples given as (text, text_pair) tuples)
are probed and exported with pairs, so a tokenizer that marks the second text with ``token_type_ids`` 1 gets that
input in the graph. Weights are embedded (no external ``.data`` file).
The dynamo exporter matched PyTorch to ~3e-8 on MiniLM where the legacy one drifted by 1.2e-2
(../shared/docs/GOTCHAS.md), so it is the only path. Text models are written at opset 23 (``TEXT_OPSET``), where
scaled-dot-product attention becomes one ONNX ``Attention`` node per layer instead of ~15 small ops (Transpose,
Where, IsNaN, Softmax...); ONNX Runtime runs that graph faster on CPU (bench/). The exporter feeds that node
4-D [batch, heads, sequence, head_size] tensors through a Reshape + Transpose per input and back for its output;
``attention_to_3d`` rewrites each such node to the op's 3-D form ([batch, sequence, hidden] in and out,
``q_num_heads``/``kv_num_heads`` attributes), removing 8 nodes per layer (int8 bundle, batch-1 p50 on SMS texts
4.26 -> 3.89 ms, medians of 5 rounds; bench/).
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from peft_core.errors import ExportError
from peft_core.inference import batch_inputs, is_image_processor


#: opset of text exports (ONNX ``Attention`` op, onnxruntime >= 1.23); images keep the exporter's default
TEXT_OPSET = 23


@dataclass
class OnnxExport:
    """Where and how a model was exported. ``opset``: the default-domain opset of the written graph."""

    path: str
    input_names: list[str]
    output_names: list[str] = field(default_factory=lambda: ["logits"])
    opset: int = 0
    seconds: float = 0.0
    size_bytes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class _LogitsOnly(nn.Module):
    """Wrapper with named tensor arguments returning only the logits tensor."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)


class _ImageLogits(nn.Module):
    """Image wrapper: ``pixel_values`` float32 [batch, 3, H, W] -> logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values)


def tokenizer_input_names(tokenizer, pair: bool = False) -> list[str]:
    """The model inputs this tokenizer really produces (for a sequence pair when ``pair``), in a fixed order."""
    produced = tokenizer(["probe"], *([["probe"]] if pair else []), return_tensors="pt").keys()
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in produced]


def _example_batch(example_texts: Sequence) -> list:
    """3 example inputs, the first lengthened so the batch needs padding: texts, or (text, text_pair) tuples
    (the first text of the pair is lengthened)."""
    texts = (list(example_texts) * 3)[:3] or ["example text"] * 3
    first = texts[0]
    texts[0] = (str(first[0]) + " padding example" * 4, str(first[1])) if isinstance(first, (tuple, list)) else \
        str(first) + " padding example" * 4
    return texts


def export_onnx(model: nn.Module, tokenizer, example_texts: Sequence, out_path: str | Path,
                max_length: int, opset: int | None = None) -> OnnxExport:
    """Export ``model`` (a TextClassifier or ImageClassifier, eval mode) to ``out_path``.

    Text: the example batch has 3 texts (or, for pair models, (text, text_pair) tuples, tokenized as sequence
    pairs) padded to at least 9 tokens, so neither axis is specialised to 1; the graph's inputs are those the
    tokenizer produces for such a batch (``token_type_ids`` included for BERT-style tokenizers).
    Images (``tokenizer`` is an ``ImagePreprocessor``, ``example_texts`` image paths): 3 example images, dynamic
    batch axis, fixed height and width from the preprocessor.
    Raises:
        ExportError: the exporter failed (message names the stage).
    """
    import onnx

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=4096)
    if is_image_processor(tokenizer):  # images: pixel_values [batch, 3, H, W], only the batch axis dynamic
        names = ["pixel_values"]
        args = (batch_inputs(tokenizer, (list(example_texts) * 3)[:3], max_length)["pixel_values"],)
        dynamic = {"pixel_values": {0: batch}}
        wrapper = _ImageLogits(model.cpu().eval()).eval()
    else:
        texts = _example_batch(example_texts)
        names = tokenizer_input_names(tokenizer, pair=isinstance(texts[0], tuple))
        inputs = batch_inputs(tokenizer, texts, max_length)
        args = tuple(inputs[n].cpu() for n in names)
        seq = torch.export.Dim("sequence", min=1, max=max(max_length, 9))
        dynamic = {n: {0: batch, 1: seq} for n in names}
        wrapper = _LogitsOnly(model.cpu().eval()).eval()
        opset = opset or TEXT_OPSET
    t0 = time.perf_counter()
    # the exporter logs one warning per absent torchvision op; they do not concern text models
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper, args, input_names=names, output_names=["logits"], opset_version=opset, dynamo=True,
                dynamic_shapes=dynamic, external_data=False, verbose=False)
            program.save(str(out_path))
    except Exception as e:  # the exporter raises many internal types; report them as one export failure
        raise ExportError(f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from e
    if not is_image_processor(tokenizer):
        heads = getattr(getattr(getattr(model, "backbone", None), "config", None), "num_attention_heads", None)
        if heads:
            attention_to_3d(out_path, int(heads))
    proto = onnx.load(str(out_path), load_external_data=False)
    got = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return OnnxExport(path=str(out_path), input_names=names, opset=int(got), seconds=time.perf_counter() - t0,
                      size_bytes=out_path.stat().st_size)


def _attention_4d(op, q, k, v, mask, q_shape, k_shape, v_shape, y_shape):
    """Pattern: the exporter's 4-D ONNX Attention between per-input Reshape+Transpose and the inverse on its output."""
    qt = op.Transpose(op.Reshape(q, q_shape), perm=[0, 2, 1, 3], _outputs=["qt"])
    kt = op.Transpose(op.Reshape(k, k_shape), perm=[0, 2, 1, 3], _outputs=["kt"])
    vt = op.Transpose(op.Reshape(v, v_shape), perm=[0, 2, 1, 3], _outputs=["vt"])
    y = op.Attention(qt, kt, vt, mask, _outputs=["y"])
    return op.Reshape(op.Transpose(y, perm=[0, 2, 1, 3]), y_shape)


def attention_to_3d(path: str | Path, num_heads: int) -> int:
    """Rewrite, in place, every 4-D ONNX ``Attention`` node of the model at ``path`` that sits between
    Reshape [B, S, H, d] + Transpose [B, H, S, d] of its query/key/value and the inverse on its output, into the
    op's 3-D form: inputs and output [batch, sequence, num_heads * head_size] float32, ``q_num_heads =
    kv_num_heads = num_heads`` (ONNX operator spec, Attention-23), other attributes (scale, is_causal...) kept.
    Nodes whose transposed inputs do not have ``num_heads`` on axis 1 are left alone.
    Returns the number of nodes rewritten (0 for a model without such attention). Uses the onnxscript pattern
    rewriter (``onnxscript.rewriter.pattern``)."""
    import onnx_ir as ir
    import onnx_ir.passes.common  # noqa: F401  (registers ir.passes.common)
    from onnxscript.rewriter import pattern

    def heads_on_axis_1(context, qt, kt, vt, **_) -> bool:
        return all(t.shape is not None and len(t.shape) == 4 and t.shape[1] == num_heads for t in (qt, kt, vt))

    def to_3d(op, q, k, v, mask, y, **_):
        attrs = {name: attr.value for name, attr in y.producer().attributes.items()}
        return op.Attention(q, k, v, mask, q_num_heads=num_heads, kv_num_heads=num_heads, **attrs)

    model = ir.load(str(path))
    rule = pattern.RewriteRule(_attention_4d, to_3d, heads_on_axis_1)
    count = rule.apply_to_model(model)
    if count:
        ir.passes.common.RemoveUnusedNodesPass()(model)  # the shape computations only the old Reshapes used
        ir.save(model, str(path))
    return int(count)
