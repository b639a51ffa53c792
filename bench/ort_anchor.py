"""The inference anchor an ONNX user would otherwise pick: Optimum's O2 / O3 path, built from its parts.

Optimum's ``ORTOptimizer`` with ``AutoOptimizationConfig.O2()`` / ``O3()`` runs ONNX Runtime's transformer optimizer
(``onnxruntime.transformers.optimizer.optimize_model``, model_type "bert", the transformer fusions on; O3 adds
the GELU approximation) on a plain ``torch.onnx`` export (the TorchScript exporter Optimum uses, opset 17), and its
``ORTQuantizer`` with ``AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)`` then runs
``quantize_dynamic`` (int8 weights, per-tensor). :func:`build_anchor` does those steps on the same fine-tuned model
the bundle holds, in this process (optimum-onnx pins an older transformers, so it is not imported here).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx


def export_plain(model, tokenizer, path: Path, max_length: int) -> Path:
    """``model`` (a TextClassifier: input_ids, attention_mask[, token_type_ids] -> logits float32 [batch,
    num_labels]) exported with the TorchScript exporter at opset 17, batch and sequence axes dynamic: the graph
    shape ONNX Runtime's transformer optimizer matches (MatMul / Softmax attention, erf GELU). Returns ``path``.
    A deep copy is traced: tracing ``model`` itself (eager attention switched on for the trace, then back to SDPA)
    left its later PyTorch outputs changed (pooled features of padded batches off by up to 0.13; the bench's
    eager row lost about 1 point of accuracy), so the caller's model is never touched."""
    import copy

    import torch

    from peft_core.inference import batch_inputs

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)

    example = batch_inputs(tokenizer, ["a short text", "a second, somewhat longer example text"], max_length)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    args = tuple(example.get(n, torch.zeros_like(example["input_ids"])) for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    model = copy.deepcopy(model)
    config = model.backbone.config
    before = config._attn_implementation
    config._attn_implementation = "eager"  # the MatMul / Softmax attention the optimizer fuses (SDPA's trace is not)
    try:
        with torch.no_grad():
            torch.onnx.export(Logits(model.eval()), args, str(path), input_names=names, output_names=["logits"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)
    finally:
        config._attn_implementation = before
    return path


def build_anchor(model, tokenizer, folder: Path, max_length: int, level: str = "O2") -> Path:
    """The Optimum-style int8 graph of ``model`` in ``folder``: plain export, transformer optimizer at ``level``
    ("O2": fusions; "O3": fusions + GELU approximation), then ``quantize_dynamic`` (QInt8, per-tensor).
    Returns the int8 ONNX path. Raises ValueError for another level."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    if level not in ("O2", "O3"):
        raise ValueError(f"level must be O2 or O3, not {level!r}")
    folder.mkdir(parents=True, exist_ok=True)
    plain = export_plain(model, tokenizer, folder / "plain.onnx", max_length)
    cfg = model.backbone.config
    options = FusionOptions("bert")
    options.enable_gelu_approximation = level == "O3"
    opt = optimizer.optimize_model(str(plain), model_type="bert", num_heads=cfg.num_attention_heads,
                                   hidden_size=cfg.hidden_size, optimization_options=options, opt_level=2)
    fused = folder / f"optimized_{level}.onnx"
    opt.save_model_to_file(str(fused))
    out = folder / f"optimized_{level}_int8.onnx"
    quantize_dynamic(str(fused), str(out), weight_type=QuantType.QInt8, per_channel=False,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # contrib ops have no shape inference
    return out


class AnchorEngine:
    """Scores texts with an anchor graph as a pipeline does: batches of ``batch_size`` in the given order, each
    padded to its longest text; one ONNX Runtime session on every core. ``__call__(texts) -> label ids int64 [n]``."""

    def __init__(self, path: Path, tokenizer, max_length: int, batch_size: int = 64):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]
        self.tok, self.max_length, self.batch_size = tokenizer, max_length, batch_size

    def __call__(self, texts) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tok(list(texts[i:i + self.batch_size]), truncation=True, max_length=self.max_length,
                           padding=True, return_tensors="np")
            feed = {n: enc[n].astype(np.int64) if n in enc else np.zeros_like(enc["input_ids"], dtype=np.int64)
                    for n in self.names}
            out.append(self.session.run(["logits"], feed)[0].argmax(-1))
        return np.concatenate(out)
