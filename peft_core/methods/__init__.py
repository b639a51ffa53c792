"""Parameter-efficient methods, registered by name (after peft's one-folder-per-tuner layout).

:data:`METHODS` is the only list of methods: the app's choices, the CLI's ``--method`` and the parametrized
tests all read it. A method is a config dataclass (validating itself) plus ``apply(model, config, spec)`` that
freezes / wraps the model so only the chosen parameters train, plus the training defaults that make it converge.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Callable

from ..errors import ConfigError
from . import head, last_n, lora
from .common import count_parameters, freeze  # noqa: F401  (public here)


@dataclass(frozen=True)
class Method:
    """A registered method: name, title, config class, apply function and TrainConfig defaults."""

    name: str
    title: str
    config_cls: type
    apply: Callable
    train_defaults: dict = field(default_factory=dict)
    merge: Callable | None = None  # turns a wrapped model back into a plain one before saving/export
    # what TrainConfig.learning_rate means for this method (the app's label); None: the encoder stays frozen and
    # its features are computed once
    encoder_lr_label: str | None = None
    # what a budgeted search tunes (``methods.space.Knob``s, from the method module's SEARCH_SPACE)
    search_space: tuple = ()

    @property
    def trains_encoder(self) -> bool:
        """True when encoder weights (layers or adapters) train, i.e. ``learning_rate`` is used."""
        return self.encoder_lr_label is not None

    @property
    def options(self) -> tuple[str, ...]:
        """The method's own option names: the fields of its config class (e.g. ``("num_layers",)``)."""
        return tuple(f.name for f in fields(self.config_cls))

    def pick_options(self, values: dict) -> dict:
        """``values`` (every method's options by name, from a form or CLI flags) -> this method's options."""
        return {k: values[k] for k in self.options if k in values}


METHODS: dict[str, Method] = {
    m.name: m for m in (
        Method("head", "Linear probe (head only)", head.HeadConfig, head.apply, head.TRAIN_DEFAULTS,
               search_space=head.SEARCH_SPACE),
        Method("last_n", "Last N layers + head", last_n.LastNConfig, last_n.apply, last_n.TRAIN_DEFAULTS,
               encoder_lr_label="Encoder learning rate (last N layers)", search_space=last_n.SEARCH_SPACE),
        Method("lora", "LoRA adapters + head", lora.LoraMethodConfig, lora.apply, lora.TRAIN_DEFAULTS, lora.merge,
               encoder_lr_label="LoRA adapter learning rate", search_space=lora.SEARCH_SPACE),
    )
}


def get_method(name: str) -> Method:
    """Registry lookup. Raises ConfigError naming the accepted methods."""
    if name not in METHODS:
        raise ConfigError(f"method {name!r} is unknown; choose one of {', '.join(METHODS)}")
    return METHODS[name]
