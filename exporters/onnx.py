"""Export a trained classifier to ONNX with the dynamo exporter (``torch.onnx.export(..., dynamo=True)``).

The graph takes exactly the inputs the tokenizer produces (``input_ids``, ``attention_mask`` and, for BERT-style
tokenizers, ``token_type_ids``; int64 [batch, sequence], both axes dynamic) bound by name, and returns one
output, ``logits`` (float32 [batch, num_labels]). Weights are embedded (no external ``.data`` file).
The dynamo exporter matched PyTorch to ~3e-8 on MiniLM where the legacy one drifted by 1.2e-2
(../shared/docs/GOTCHAS.md), so it is the only path. Text models are written at opset 23 (``TEXT_OPSET``), where
scaled-dot-product attention becomes one ONNX ``Attention`` node per layer instead of ~15 small ops (Transpose,
Where, IsNaN, Softmax...); ONNX Runtime runs that graph faster on CPU (bench/).
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


def tokenizer_input_names(tokenizer) -> list[str]:
    """The model inputs this tokenizer really produces, in a fixed order."""
    produced = tokenizer(["probe"], return_tensors="pt").keys()
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in produced]


def export_onnx(model: nn.Module, tokenizer, example_texts: Sequence[str], out_path: str | Path,
                max_length: int, opset: int | None = None) -> OnnxExport:
    """Export ``model`` (a TextClassifier or ImageClassifier, eval mode) to ``out_path``.

    Text: the example batch has 3 texts padded to at least 9 tokens, so neither axis is specialised to 1.
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
        names = tokenizer_input_names(tokenizer)
        texts = (list(example_texts) * 3)[:3] or ["example text"] * 3
        texts[0] = texts[0] + " padding example" * 4
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
    proto = onnx.load(str(out_path), load_external_data=False)
    got = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return OnnxExport(path=str(out_path), input_names=names, opset=int(got), seconds=time.perf_counter() - t0,
                      size_bytes=out_path.stat().st_size)
