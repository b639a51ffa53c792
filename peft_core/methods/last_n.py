"""``last_n``: the last N encoder layers and the head train; embeddings and earlier layers are frozen."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..checks import check_number
from ..errors import ConfigError
from .space import Knob, epochs, head_dropout

TRAIN_DEFAULTS = {"epochs": 4, "head_learning_rate": 1e-2, "learning_rate": 1e-4, "batch_size": 32,
                  "early_stopping_patience": 2, "probe_epochs": 0, "weight_decay": 0.01,
                  "solver": "adamw"}
# what a budgeted search tunes (``peft_core.search``); num_layers above the model's layer count fails that trial
SEARCH_SPACE = (Knob("method", "num_layers", "int", 1, 4), Knob("train", "learning_rate", "log", 1e-5, 3e-4),
                Knob("train", "head_learning_rate", "log", 1e-3, 3e-2), epochs(2, 6), head_dropout())


@dataclass
class LastNConfig:
    """num_layers: how many of the top encoder layers train (1..number of layers)."""

    num_layers: int = 2

    def __post_init__(self) -> None:
        self.num_layers = check_number("num_layers", self.num_layers, 1, None, whole=True)

    def to_dict(self) -> dict:
        return asdict(self)


def apply(model, config: LastNConfig, spec):
    """Freeze everything in the encoder except its last ``num_layers`` layers (or blocks / stages for image
    models) and the modules that follow them (``spec.trainable_after``, e.g. a CNN's final 1x1 convolution).

    Raises:
        ConfigError: ``num_layers`` exceeds the model's layer count.
    """
    from ..models import encoder_layers
    from .common import freeze

    layers = encoder_layers(model.backbone, spec)
    if config.num_layers > len(layers):
        raise ConfigError(f"num_layers={config.num_layers} but {spec.key} has only {len(layers)} layers")
    freeze(model.backbone)
    for layer in [*layers[len(layers) - config.num_layers:],
                  *(model.backbone.get_submodule(name) for name in spec.trainable_after)]:
        for p in layer.parameters():
            p.requires_grad_(True)
    return model
