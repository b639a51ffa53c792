"""Each registered method trains exactly the parameters it promises, and training lowers the loss on real data."""
import pytest
import torch

from peft_core.data import prepare_data
from peft_core.methods import METHODS
from peft_core.pipeline import build_model
from peft_core.training import TrainConfig, train

EXPECTED_TRAINABLE = {  # parameter-name predicate per method, on all-MiniLM-L6-v2 (6 layers)
    "head": lambda n: n.startswith("head."),
    "last_n": lambda n: n.startswith("head.") or n.startswith("backbone.encoder.layer.4.")
    or n.startswith("backbone.encoder.layer.5."),
    "lora": lambda n: "lora_" in n or ("head" in n and "modules_to_save" in n),
}


def test_every_method_has_a_test():
    assert set(EXPECTED_TRAINABLE) == set(METHODS)


@pytest.fixture(scope="module")
def small(sms_small):
    return prepare_data(sms_small)


@pytest.mark.parametrize("method", list(METHODS))
def test_method_trains_only_its_parameters(method, small):
    model, tok, spec, trainable, total = build_model("minilm", method, {}, small.task.num_labels)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(EXPECTED_TRAINABLE[method](n) for n in names), sorted(names)[:5]
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad) and trainable < total
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = TrainConfig(epochs=2, max_length=48, early_stopping_patience=0).with_defaults(METHODS[method].train_defaults)
    res = train(model, tok, small.splits, cfg)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= names, f"frozen parameters changed: {sorted(changed - names)[:5]}"
    assert any(EXPECTED_TRAINABLE[method](n) and "head" not in n for n in changed) or method == "head"
    k = max(1, min(5, len(res.step_losses) // 2))  # head: 2 full-batch L-BFGS iterations, one loss each
    first, last = sum(res.step_losses[:k]) / k, sum(res.step_losses[-k:]) / k
    assert last < first, (first, last)
    assert len(res.history) == 2 and 0 <= res.history[-1]["val_accuracy"] <= 1


@pytest.mark.parametrize("cls,field,name,value,expected", [
    ("lora", "alpha", "LoRA alpha", float("nan"), "must be a finite number > 0"),
    ("lora", "alpha", "LoRA alpha", float("inf"), "must be a finite number > 0"),
    ("lora", "alpha", "LoRA alpha", "16", "must be a number > 0"),
    ("lora", "r", "LoRA rank r", float("nan"), "must be a whole number >= 1"),
    ("lora", "r", "LoRA rank r", float("inf"), "must be a whole number >= 1"),
    ("lora", "dropout", "LoRA dropout", float("nan"), r"must be a finite number in \[0, 1\)"),
    ("lora", "dropout", "LoRA dropout", 1.0, r"must be a number in \[0, 1\)"),
    ("last_n", "num_layers", "num_layers", float("nan"), "must be a whole number >= 1"),
    ("last_n", "num_layers", "num_layers", float("-inf"), "must be a whole number >= 1"),
    ("last_n", "num_layers", "num_layers", 1.5, "must be a whole number"),
])
def test_method_configs_refuse_non_finite_and_malformed_numbers(cls, field, name, value, expected):
    from peft_core.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"^{name} {expected}, got {value!r}$"):
        METHODS[cls].config_cls(**{field: value})


def test_method_configs_keep_good_values_as_numbers():
    lora = METHODS["lora"].config_cls(r=8.0, alpha=16, dropout=0)
    assert (lora.r, lora.alpha, lora.dropout) == (8, 16.0, 0.0) and isinstance(lora.r, int)
    assert METHODS["last_n"].config_cls(num_layers=3.0).num_layers == 3


def test_each_method_takes_only_the_options_its_config_declares():
    from peft_core.methods import METHODS

    form = {"num_layers": 3, "r": 4, "alpha": 8.0, "dropout": 0.0, "target_modules": "query"}
    picked = {name: m.pick_options(form) for name, m in METHODS.items()}
    assert picked["head"] == {} and picked["last_n"] == {"num_layers": 3}
    assert picked["lora"] == {"r": 4, "alpha": 8.0, "dropout": 0.0, "target_modules": "query"}
    for name, m in METHODS.items():  # what the picked options build is the method's own config
        assert m.config_cls(**picked[name]).to_dict().keys() == set(m.options)
    assert [n for n, m in METHODS.items() if not m.trains_encoder] == ["head"]
