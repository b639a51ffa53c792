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
    first, last = sum(res.step_losses[:5]) / 5, sum(res.step_losses[-5:]) / 5
    assert last < first, (first, last)
    assert len(res.history) == 2 and 0 <= res.history[-1]["val_accuracy"] <= 1
