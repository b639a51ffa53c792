"""Training precision (``peft_core.precision``): "auto" picks bf16 only on a CPU with native bf16; a bf16 run's
trainable layers really compute in bfloat16 during its steps, while weights, gradients, validation passes and the
head-only probe stay float32, and it learns as well as the fp32 run on real SMS rows."""
import pytest
import torch

from peft_core import precision
from peft_core.data import prepare_data
from peft_core.errors import ConfigError
from peft_core.methods import METHODS
from peft_core.pipeline import build_model
from peft_core.training import TrainConfig, train


@pytest.fixture(scope="module")
def small(sms_small):
    return prepare_data(sms_small)


@pytest.mark.parametrize("flags,want", [({"avx2", "fma", "avx512f", "avx512_vnni"}, "fp32"),
                                        ({"avx2", "avx512f", "avx512_bf16"}, "bf16"), ({"amx_bf16"}, "bf16"),
                                        (set(), "fp32")])
def test_auto_follows_the_cpu_flags(monkeypatch, flags, want):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert precision.resolve("auto", "cpu") == want
    assert precision.resolve("fp32") == "fp32" and precision.resolve("bf16") == "bf16"  # explicit: kept
    assert precision.resolve("auto", "cuda") == "fp32"  # a GPU: left to an explicit choice


def test_an_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="'fp16' is unknown; choose auto, fp32, bf16"):
        TrainConfig(precision="fp16")


def _last_n(small, prec, watch):
    torch.manual_seed(0)
    model, tok, *_ = build_model("minilm", "last_n", {"num_layers": 2}, small.task.num_labels)
    layer = model.backbone.encoder.layer[-1]
    layer.intermediate.dense.register_forward_hook(
        lambda m, i, out: watch.append((m.training, out.dtype)))
    cfg = TrainConfig(epochs=3, max_length=48, early_stopping_patience=0, probe_epochs=0,
                      precision=prec).with_defaults(METHODS["last_n"].train_defaults)
    res = train(model, tok, small.splits, cfg)
    return model, res


def test_bf16_steps_compute_in_bf16_and_learn_like_fp32(small):
    seen = {"bf16": [], "fp32": []}
    runs = {p: _last_n(small, p, seen[p]) for p in seen}
    (m16, r16), (_, r32) = runs["bf16"], runs["fp32"]
    assert (r16.precision, r32.precision) == ("bf16", "fp32")
    assert {dt for training, dt in seen["bf16"] if training} == {torch.bfloat16}  # every training step
    assert {dt for training, dt in seen["bf16"] if not training} == {torch.float32}  # validation: fp32
    assert {dt for _, dt in seen["fp32"]} == {torch.float32}
    trained = [p for p in m16.parameters() if p.requires_grad]
    assert trained and all(p.dtype == torch.float32 for p in trained)  # fp32 master weights
    best = {p: max(h["val_macro_f1"] for h in r.history) for p, r in (("bf16", r16), ("fp32", r32))}
    assert best["fp32"] > 0.85  # the comparison is between two runs that learned
    assert best["bf16"] >= best["fp32"] - 0.03, best
    assert r16.step_losses != r32.step_losses  # the two runs did differ


def test_the_head_alone_trains_in_fp32_whatever_is_asked(small):
    torch.manual_seed(0)
    model, tok, *_ = build_model("minilm", "head", {}, small.task.num_labels)
    cfg = TrainConfig(epochs=2, max_length=48, solver="adamw", precision="bf16").with_defaults(
        METHODS["head"].train_defaults)
    assert train(model, tok, small.splits, cfg).precision == "fp32"
