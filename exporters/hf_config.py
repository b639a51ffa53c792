"""The bundle files that other tools load: a Hugging Face style ``config.json`` and a Triton ``config.pbtxt``.

``config.json`` (:func:`hf_config`) is the base model's own config (e.g. BertConfig's ``hidden_size``,
``vocab_size``...) with the classifier's ``model_type``, ``architectures``, ``id2label`` / ``label2id`` and
``problem_type``, so ``transformers.AutoConfig``, Optimum's ``ORTModelForSequenceClassification`` and transformers.js'
pipelines read the labels from it. Everything of this project (the task spec, preprocessing, ONNX inputs, metrics,
parity...) sits under the one key ``"peft_onnx_bundle"`` (:data:`FORMAT` ``peft-onnx-bundle/2``), whose
``model_file`` names the graph: ``onnx/model.onnx`` (fp32) or ``onnx/model_quantized.onnx`` (int8), the file names
transformers.js loads for ``dtype`` "fp32" / "q8".

``triton-config/config.pbtxt`` (:func:`triton_config`) is the Triton Inference Server model configuration of that graph
(ONNX Runtime backend), read from the graph's own inputs and outputs.
"""
from __future__ import annotations

from pathlib import Path

from peft_core.errors import ExportError

FORMAT = "peft-onnx-bundle/2"
#: precision -> the graph's path in the bundle (transformers.js: dtype "fp32" -> onnx/model.onnx, "q8" ->
#: onnx/model_quantized.onnx)
MODEL_FILES = {"fp32": "onnx/model.onnx", "int8": "onnx/model_quantized.onnx"}
TRITON_CONFIG = "triton-config/config.pbtxt"
#: Triton's max_batch_size: predict.py's own batches hold at most 64 texts too
TRITON_MAX_BATCH = 64
#: base-config keys not carried over: local paths, custom-code pointers, and the fields this config sets itself
DROPPED = {"_name_or_path", "auto_map", "architectures", "id2label", "label2id", "num_labels", "problem_type",
           "_commit_hash", "_attn_implementation_autoset"}
#: ONNX TensorProto element type -> Triton data type
TRITON_TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 5: "TYPE_INT16", 6: "TYPE_INT32", 7: "TYPE_INT64",
                9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64", 16: "TYPE_BF16"}


def hf_config(ours: dict, base_config: dict) -> dict:
    """The bundle's ``config.json``.

    Args:
        ours: the bundle config of this project (``run_export.bundle_config``: task, preprocessing, metrics...),
            stored under ``"peft_onnx_bundle"``.
        base_config: the base model's ``PretrainedConfig.to_dict()`` (BertConfig, ViTConfig, EfficientNetLiteConfig...).
    Returns:
        A JSON-ready dict: the base config's fields, then ``model_type``, ``architectures`` (the transformers
        class of this task, e.g. ``["BertForSequenceClassification"]``), ``id2label`` (str ids), ``label2id``,
        ``problem_type`` ("single_label_classification", "multi_label_classification" or "regression") and
        ``peft_onnx_bundle``. A base model type that transformers has no classifier for (the bundled
        EfficientNet-Lite0, ``efficientnet_lite``) is described as transformers' ``efficientnet`` (an image
        classifier that AutoConfig and transformers.js load), its own config kept as ``peft_onnx_bundle.base_config``.
    Raises:
        ExportError: ``base_config`` has no ``model_type``.
    """
    if not base_config.get("model_type"):
        raise ExportError("the base model's config has no model_type, so the bundle's config.json cannot name one")
    task, image = ours["task"], ours.get("modality") == "image"
    base = {k: v for k, v in base_config.items() if k not in DROPPED}
    model_type, arch = _classifier(base.get("model_type"), image, base_config.get("architectures"))
    if model_type != base.get("model_type"):
        ours = ours | {"base_config": {k: v for k, v in base_config.items() if k != "_name_or_path"}}
        base = _stand_in(model_type, base_config)
    id2label = {str(k): v for k, v in task["id2label"].items()}
    return {**base, "model_type": model_type, "architectures": [arch], "id2label": id2label,
            "label2id": {v: int(k) for k, v in id2label.items()}, "problem_type": task["problem_type"],
            "peft_onnx_bundle": ours}


def _classifier(model_type: str | None, image: bool, architectures) -> tuple[str, str]:
    """(model_type, classifier class name) that transformers knows for this base model type."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import (MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
                                                        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES)

    mapping = MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES if image else MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
    if model_type in mapping and model_type in CONFIG_MAPPING_NAMES:
        arch = mapping[model_type]
        return model_type, arch[0] if isinstance(arch, (tuple, list)) else arch
    if image:
        return "efficientnet", mapping["efficientnet"]
    stem = (architectures or ["Model"])[0].removesuffix("Model")  # a text type with no transformers classifier
    return str(model_type), f"{stem}ForSequenceClassification"


def _stand_in(model_type: str, base_config: dict) -> dict:
    """The fields of transformers' ``model_type`` config describing what is known of a base model transformers
    does not have (image size, pooled width, activation, dropout)."""
    from transformers import AutoConfig

    known = {"image_size": base_config.get("image_size"), "hidden_dim": base_config.get("hidden_size"),
             "dropout_rate": base_config.get("dropout_rate"), "drop_connect_rate": base_config.get("drop_connect_rate")}
    if str(base_config.get("model_type", "")).startswith("efficientnet_lite"):
        known["hidden_act"] = "relu6"  # EfficientNet-Lite: ReLU6, no squeeze-excitation
    cfg = AutoConfig.for_model(model_type, **{k: v for k, v in known.items() if v is not None}).to_dict()
    return {k: v for k, v in cfg.items() if k not in DROPPED}


def triton_config(onnx_path: str | Path, max_batch_size: int = TRITON_MAX_BATCH) -> str:
    """``config.pbtxt`` text for Triton's ONNX Runtime backend (``platform: "onnxruntime_onnx"``) serving the graph
    at ``onnx_path``: its real input and output names and types (int64 ids -> TYPE_INT64, float32 ->
    TYPE_FP32), dims without the batch dim (-1 where the graph's dim is dynamic, e.g. the sequence),
    ``max_batch_size`` and ``dynamic_batching { }``. No ``name``: Triton takes the model folder's name
    (``predict.py --triton-repository`` adds one).

    Raises:
        ExportError: an input or output whose first (batch) dim is fixed, or of a type Triton does not take.
    """
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    tensors = {"input": [v for v in graph.input if v.name not in weights], "output": list(graph.output)}
    lines = ["# Triton Inference Server model configuration of this bundle's ONNX graph (ONNX Runtime backend).",
             "# predict.py --triton-repository DIR writes DIR/<name>/config.pbtxt (this, named) and",
             "# DIR/<name>/1/model.onnx; then: tritonserver --model-repository DIR",
             'platform: "onnxruntime_onnx"', f"max_batch_size: {int(max_batch_size)}"]
    for kind, values in tensors.items():
        entries = [_triton_tensor(v) for v in values]
        lines.append(f"{kind} [\n" + ",\n".join(entries) + "\n]")
    lines.append("dynamic_batching { }")
    return "\n".join(lines) + "\n"


def _triton_tensor(value) -> str:
    """One ONNX graph input / output as a Triton ``ModelInput`` / ``ModelOutput`` block."""
    t = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
    if not dims or dims[0] != -1:
        raise ExportError(f"ONNX tensor {value.name!r} has no dynamic batch dim (shape {dims}), which Triton's "
                          "max_batch_size needs")
    if t.elem_type not in TRITON_TYPES:
        raise ExportError(f"ONNX tensor {value.name!r} has element type {t.elem_type}, which has no Triton type here")
    return (f'  {{\n    name: "{value.name}"\n    data_type: {TRITON_TYPES[t.elem_type]}\n'
            f"    dims: [ {', '.join(map(str, dims[1:]))} ]\n  }}")
