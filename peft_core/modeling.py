"""The classifiers: a pretrained encoder, a pooling step and a fresh linear head (text or image).

``TextClassifier`` wraps any ``transformers.AutoModel`` encoder. Pooling follows the base model: for
sentence-transformers models what their ``modules.json`` says (mean over real tokens, then L2 normalisation
when a Normalize module follows), the first ([CLS]) token otherwise. Saved as ``backbone/``
(``save_pretrained``, safetensors, with the tokenizer), ``head.safetensors`` and ``classifier_config.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

POOLINGS = ("mean", "cls")


class TextClassifier(nn.Module):
    """Encoder + pooling + dropout + linear head.

    Args:
        backbone: a transformers encoder returning ``last_hidden_state`` [batch, seq, hidden].
        num_labels: number of classes.
        pooling: "mean" (mask-weighted mean of token states) or "cls" (first token).
        normalize: L2-normalise the pooled vector (as sentence-transformers' Normalize module does).
        dropout: dropout probability before the linear head.
    """

    def __init__(self, backbone: nn.Module, num_labels: int, pooling: str = "mean", dropout: float = 0.1,
                 normalize: bool = False):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.backbone = backbone
        self.pooling = pooling
        self.normalize = bool(normalize)
        hidden = backbone.config.hidden_size
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_labels))
        #: training steps of BERT-style encoders run padding-free (``peft_core.unpad``); off: the stock forward
        self.unpadded_training = True

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[batch, seq, hidden] float, [batch, seq] int -> [batch, hidden] float."""
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [b, s, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled encoder output: int64 [batch, seq] ids and mask -> float32 [batch, hidden]. In training mode
        with gradients on, BERT-style encoders run padding-free (same numbers, see ``peft_core.unpad``)."""
        if self.training and self.unpadded_training and torch.is_grad_enabled():
            from . import unpad

            if unpad.encoder_layers(self.backbone) is not None:
                return self.pool(unpad.encode(self.backbone, input_ids, attention_mask, token_type_ids),
                                 attention_mask)
        kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
        return self.pool(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits: float32 [batch, num_labels]."""
        return self.head(self.features(input_ids, attention_mask, token_type_ids))


class ImageClassifier(nn.Module):
    """Image encoder + pooling + dropout + linear head; the image counterpart of :class:`TextClassifier`.

    Args:
        backbone: a transformers vision model taking ``pixel_values`` float32 [batch, 3, H, W].
        pooling: "pooler" (the model's ``pooler_output``, flattened: global average for CNNs) or "cls"
            (``last_hidden_state[:, 0]``, the ViT class token).
    """

    def __init__(self, backbone: nn.Module, num_labels: int, pooling: str = "pooler", dropout: float = 0.1,
                 normalize: bool = False):
        super().__init__()
        if pooling not in ("pooler", "cls"):
            raise ValueError(f"image pooling must be 'pooler' or 'cls', got {pooling!r}")
        self.backbone, self.pooling, self.normalize = backbone, pooling, bool(normalize)
        cfg = backbone.config
        hidden = getattr(cfg, "hidden_size", None) or (cfg.hidden_sizes[-1] if hasattr(cfg, "hidden_sizes") else
                                                       None)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(int(hidden), num_labels))

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """float32 [batch, 3, H, W] -> float32 [batch, hidden]."""
        return self.pooled(self.backbone(pixel_values=pixel_values))

    def pooled(self, out) -> torch.Tensor:
        """The pooled vector [batch, hidden] from a backbone output."""
        pooled = out.last_hidden_state[:, 0] if self.pooling == "cls" else out.pooler_output.flatten(1)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits: float32 [batch, num_labels]."""
        return self.head(self.features(pixel_values))


def make_classifier(backbone: nn.Module, num_labels: int, spec, dropout: float = 0.1) -> nn.Module:
    """The classifier class for ``spec.modality`` around ``backbone`` with a fresh head."""
    cls = ImageClassifier if spec.modality == "image" else TextClassifier
    return cls(backbone, num_labels, spec.pooling, dropout, spec.normalize)


def save_classifier(model: nn.Module, tokenizer, out_dir: str | Path, meta: dict) -> Path:
    """Write the model (safetensors) and its processor (tokenizer, or ``preprocessor_config.json`` for images)
    to ``out_dir``; ``meta`` (labels, base model...) goes into ``classifier_config.json``. Returns the folder."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.backbone.save_pretrained(out / "backbone", safe_serialization=True)
    tokenizer.save_pretrained(out / "backbone")
    save_file({k: v.detach().contiguous().cpu() for k, v in model.head.state_dict().items()},
              str(out / "head.safetensors"))
    cfg = dict(meta, pooling=model.pooling, normalize=model.normalize, dropout=float(model.head[0].p),
               num_labels=model.head[1].out_features,
               modality="image" if isinstance(model, ImageClassifier) else "text")
    (out / "classifier_config.json").write_text(json.dumps(cfg, indent=2))
    return out


def load_classifier(folder: str | Path) -> tuple[nn.Module, object, dict]:
    """Load what :func:`save_classifier` wrote. Returns (model in eval mode, tokenizer, config dict).

    Raises:
        FileNotFoundError: the folder lacks ``classifier_config.json``.
    """
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    from . import efficientnet_lite  # noqa: F401  (registers efficientnet_lite with AutoModel)
    from .images import ImagePreprocessor

    folder = Path(folder)
    cfg = json.loads((folder / "classifier_config.json").read_text())
    from .models import trust_remote_code

    backbone = AutoModel.from_pretrained(folder / "backbone", trust_remote_code=trust_remote_code())
    image = cfg.get("modality") == "image"
    tokenizer = (ImagePreprocessor.from_pretrained(folder / "backbone") if image
                 else AutoTokenizer.from_pretrained(folder / "backbone"))
    cls = ImageClassifier if image else TextClassifier
    model = cls(backbone, cfg["num_labels"], cfg["pooling"], cfg["dropout"], cfg.get("normalize", False))
    model.head.load_state_dict(load_file(str(folder / "head.safetensors")))
    return model.eval(), tokenizer, cfg
