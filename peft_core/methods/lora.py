"""``lora``: LoRA adapters (Hu et al. 2021, arXiv:2106.09685) through ``peft``; the head trains in full.

Target modules default to the architecture's attention query/value projections (``ModelSpec.lora_targets``), as
in the paper. The head is in ``modules_to_save``, so an adapter checkpoint carries it. Before saving and export
the adapters are merged into the base weights (``merge_and_unload``), leaving a plain model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..checks import check_number
from ..errors import ConfigError
from .space import Knob, epochs, head_dropout

TRAIN_DEFAULTS = {"epochs": 4, "head_learning_rate": 1e-2, "learning_rate": 1e-3, "batch_size": 32,
                  "early_stopping_patience": 2, "probe_epochs": 60, "weight_decay": 0.01,
                  "solver": "adamw"}
# what a budgeted search tunes (``peft_core.search``): rank and scale as in the paper's sweeps, the adapter rate
SEARCH_SPACE = (Knob("method", "r", "choice", choices=(4, 8, 16)),
                Knob("method", "alpha", "choice", choices=(8.0, 16.0, 32.0)),
                Knob("train", "learning_rate", "log", 1e-4, 3e-3), epochs(2, 5), head_dropout())


@dataclass
class LoraMethodConfig:
    """LoRA rank ``r``, scaling ``alpha`` (update scaled by alpha / r), adapter ``dropout``, ``target_modules``
    (empty: the model's defaults)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.r = check_number("LoRA rank r", self.r, 1, None, whole=True)
        self.alpha = check_number("LoRA alpha", self.alpha, 0, None, lo_open=True)
        self.dropout = check_number("LoRA dropout", self.dropout, 0, 1, hi_open=True)
        if isinstance(self.target_modules, str):
            self.target_modules = [t.strip() for t in self.target_modules.split(",") if t.strip()]

    def to_dict(self) -> dict:
        return asdict(self)


def apply(model, config: LoraMethodConfig, spec):
    """Wrap ``model`` with peft LoRA adapters. Returns a ``peft.PeftModel``.

    Raises:
        ConfigError: none of the target modules exist in the model.
    """
    from peft import LoraConfig, get_peft_model

    targets = list(config.target_modules) or list(spec.lora_targets)
    cfg = LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                     target_modules=targets[0] if targets == ["all-linear"] else targets,
                     modules_to_save=["head"])
    if targets == ["all-linear"]:
        cfg.exclude_modules = ["head"]  # wrap the encoder's linears only
    try:
        model = get_peft_model(model, cfg)
    except ValueError as e:
        raise ConfigError(f"LoRA target modules {targets} not found in {spec.key}: {e}") from e
    _numpy_dropout(model)
    return model


def _numpy_dropout(model) -> None:
    """Swap peft's adapter dropout (``lora_dropout``, one ``nn.Dropout`` per adapter) for
    ``unpad.MaskDropout``: the same rate and scaling, with masks drawn by numpy instead of torch's slower CPU
    ``bernoulli_``. Nothing saved changes (dropout has no state)."""
    from torch import nn

    from ..unpad import MaskDropout

    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if isinstance(drops, nn.ModuleDict):
            for name, d in list(drops.items()):
                if type(d) is nn.Dropout and d.p > 0:
                    drops[name] = MaskDropout(d.p)


def merge(model):
    """Merge adapters into the base weights; returns the plain ``TextClassifier``."""
    return model.merge_and_unload()
