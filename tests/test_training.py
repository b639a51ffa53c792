"""Training loop behaviour: feature cache equivalence, early stopping, cancel, config validation."""
import pytest
import torch

from peft_core.callbacks import Control
from peft_core.data import prepare_data
from peft_core.errors import ConfigError
from peft_core.methods import METHODS
from peft_core.pipeline import build_model
from peft_core.training import TrainConfig, train


@pytest.fixture(scope="module")
def small(sms_small):
    return prepare_data(sms_small)


def _run(small, method="head", method_config=None, **kw):
    torch.manual_seed(0)
    model, tok, *_ = build_model("minilm", method, method_config or {}, small.task.num_labels)
    cfg = TrainConfig(max_length=48, **kw).with_defaults(METHODS[method].train_defaults)
    return model, train(model, tok, small.splits, cfg)


_head_run = _run


@pytest.mark.parametrize("method,options,kind", [("head", {}, "pooled features"),
                                                 ("last_n", {"num_layers": 2}, "frozen-prefix token states")])
def test_cache_gives_the_same_model_as_recomputing(small, method, options, kind):
    # fp32: without the cache the frozen prefix would run under the trainable part's bf16 autocast too
    kw = dict(epochs=2, early_stopping_patience=0, solver="adamw", precision="fp32")
    m1, r1 = _run(small, method, options, feature_cache=True, **kw)
    m2, r2 = _run(small, method, options, feature_cache=False, **kw)
    assert r1.used_feature_cache and not r2.used_feature_cache
    assert (r1.cache, r2.cache) == (kind, "none")
    trained = {n: p for n, p in m1.named_parameters() if p.requires_grad}
    other = dict(m2.named_parameters())
    for n, p in trained.items():
        torch.testing.assert_close(p, other[n], atol=2e-5, rtol=1e-4, msg=n)
    for h1, h2 in zip(r1.history, r2.history):
        assert h1["val_accuracy"] == h2["val_accuracy"]
        assert h1["val_loss"] == pytest.approx(h2["val_loss"], abs=1e-5)
    import numpy as np

    np.testing.assert_allclose(r1.step_losses, r2.step_losses, atol=1e-4)


def test_token_state_cache_past_its_ram_budget_is_memory_mapped_and_equal(small, monkeypatch):
    """Past ``PEFT_CACHE_RAM_MB`` the last_n token states go to a memory-mapped file, written batch by batch while
    encoding (never held in RAM all at once), and read back as the in-RAM cache holds them."""
    import numpy as np

    from peft_core import feeds
    from peft_core.splits import split_inputs
    from peft_core.training import make_accelerator

    texts = {s: split_inputs(small.splits[s])[:150] for s in ("train", "validation")}
    torch.manual_seed(0)
    model, tok, *_ = build_model("minilm", "last_n", {"num_layers": 2}, small.task.num_labels)
    acc = make_accelerator()
    in_ram = feeds.make_feed(model, tok, texts, 48, acc, use_cache=True)
    written, batches = [], [0]  # (store type, batches encoded so far) at each put
    monkeypatch.setattr(feeds, "CACHE_RAM_BYTES", 4096)
    monkeypatch.setattr(feeds._TokenStates, "put", lambda self, i, st, put=feeds._TokenStates.put: (
        written.append((type(self.data), batches[0])), put(self, i, st))[1])
    monkeypatch.setattr(feeds, "batch_inputs", lambda *a, f=feeds.batch_inputs: (
        batches.__setitem__(0, batches[0] + 1), f(*a))[1])
    spilled = feeds.make_feed(model, tok, texts, 48, acc, use_cache=True)
    assert spilled.kind == in_ram.kind == "frozen-prefix token states"
    for split in texts:
        assert not in_ram.states[split].spilled and spilled.states[split].spilled
        assert isinstance(spilled.states[split].data, np.memmap)
        np.testing.assert_array_equal(np.asarray(spilled.states[split].data), in_ram.states[split].data)
    assert [t for t, _ in written] == [np.memmap] * sum(map(len, texts.values()))  # one put per row, to the file
    assert written[0][1] == 1 and len({b for _, b in written}) == batches[0]  # each batch's rows as it is encoded
    model.eval()
    np.testing.assert_array_equal(spilled.all_logits(spilled.module, "validation").numpy(),
                                  in_ram.all_logits(in_ram.module, "validation").numpy())


def test_early_stopping_restores_the_best_epoch(small):
    model, res = _head_run(small, epochs=60, early_stopping_patience=2, head_learning_rate=0.2, warmup_ratio=0.0,
                           solver="adamw")
    assert res.stopped_early and len(res.history) < 60
    best = max(res.history, key=lambda h: (round(h["val_macro_f1"], 6), -round(h["val_loss"], 6)))
    assert res.best_epoch == best["epoch"]
    last3 = res.history[-3:]  # stopped after 2 epochs improving neither macro-F1 nor loss
    for h in last3[1:]:
        assert h["val_macro_f1"] <= max(x["val_macro_f1"] for x in res.history[:-2]) + 1e-6
        assert h["val_loss"] >= min(x["val_loss"] for x in res.history[:-2]) - 1e-6
    assert best["val_macro_f1"] > 0.8  # it trained past the majority-class plateau


def test_stop_flag_cancels_within_a_step(small):
    model, tok, *_ = build_model("minilm", "head", {}, small.task.num_labels)
    control = Control()
    seen = []

    def stop_after_three(ev):
        if ev.kind == "step":
            seen.append(ev.step)
            if ev.step == 3:
                control.request_stop()

    cfg = TrainConfig(max_length=48, solver="adamw").with_defaults(METHODS["head"].train_defaults)
    res = train(model, tok, small.splits, cfg, [stop_after_three], control)
    assert res.cancelled and seen == [1, 2, 3] and res.history == []


def test_a_head_run_reports_its_encoding_before_its_first_step(small):
    model, tok, *_ = build_model("minilm", "head", {}, small.task.num_labels)
    events = []
    cfg = TrainConfig(max_length=32, epochs=1).with_defaults(METHODS["head"].train_defaults)
    train(model, tok, small.splits, cfg, [events.append])
    kinds = [(e.kind, e.message if e.kind == "phase" else "") for e in events]
    encoding = [e for e in events if e.kind == "phase" and e.message == "encoding"]
    rows = len(small.splits["train"]) + len(small.splits["validation"])
    done = [e.step for e in encoding]
    assert done[0] == 0 and done[-1] == rows and len(done) >= 4 and done == sorted(set(done))
    assert {e.total_steps for e in encoding} == {rows}
    assert kinds.index(("phase", "encoding")) < kinds.index(("step", ""))
    assert max(i for i, k in enumerate(kinds) if k == ("phase", "encoding")) < kinds.index(("start", ""))
    training = [e for e in events if e.kind == "phase" and e.message == "training"]
    assert training[0].step == 0 and training[-1].step == training[-1].total_steps == events[-2].step


@pytest.mark.parametrize("method,options,kw", [("head", {}, {}), ("last_n", {"num_layers": 1}, {}),
                                               ("lora", {"r": 4}, {"probe_epochs": 3})])
def test_a_stop_while_encoding_ends_training_within_a_batch(small, method, options, kw):
    """The stop flag is honoured between the batches of the feature cache (and of the LP-FT probe's)."""
    model, tok, *_ = build_model("minilm", method, options, small.task.num_labels)
    control, events = Control(), []

    def stop_after_one_batch(ev):
        events.append(ev)
        if ev.kind == "phase" and ev.message == "encoding" and ev.step > 0:
            control.request_stop()

    cfg = TrainConfig(max_length=32, epochs=2, **kw).with_defaults(METHODS[method].train_defaults)
    res = train(model, tok, small.splits, cfg, [stop_after_one_batch], control)
    encoding = [e.step for e in events if e.kind == "phase" and e.message == "encoding"]
    assert res.cancelled and res.history == [] and res.best_epoch == 0 and res.step_losses == []
    assert encoding == [0, 64]  # stopped after the first batch of 64 rows
    assert [e.kind for e in events][-1] == "end" and not any(e.kind in ("start", "step") for e in events)


@pytest.mark.parametrize("field,value", [("epochs", 0), ("learning_rate", -1.0), ("batch_size", 2.5),
                                         ("max_length", 4), ("warmup_ratio", "0.1")])
def test_config_names_the_bad_field(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("field", ["epochs", "batch_size", "max_length", "early_stopping_patience", "seed",
                                   "probe_epochs"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_config_refuses_non_finite_whole_numbers(field, value):
    with pytest.raises(ConfigError, match=rf"^{field} must be a whole number in \[.*\], got {value!r}$"):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("field", ["learning_rate", "head_learning_rate", "weight_decay", "warmup_ratio", "dropout"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_config_refuses_non_finite_rates(field, value):
    with pytest.raises(ConfigError, match=rf"^{field} must be a finite number in \[.*\], got {value!r}$"):
        TrainConfig(**{field: value})


def _poison(model):
    """Set every LoRA scaling (alpha / r) of ``model`` to NaN, as ``--lora-alpha nan`` did before configs
    refused it."""
    hit = 0
    for m in model.modules():
        if isinstance(getattr(m, "scaling", None), dict):
            m.scaling = {k: float("nan") for k in m.scaling}
            hit += 1
    assert hit == 12  # query and value in each of the 6 layers


def test_nan_training_loss_stops_lora_training_with_a_clear_error(tmp_path):
    from conftest import sms_subset
    from peft_core.errors import NonFiniteError, PeftCoreError

    sms_subset(60).to_csv(tmp_path / "tiny.csv", index=False)
    tiny = prepare_data(tmp_path / "tiny.csv")
    model, tok, *_ = build_model("minilm", "lora", {}, tiny.task.num_labels)
    _poison(model)
    cfg = TrainConfig(epochs=1, max_length=32, probe_epochs=0).with_defaults(METHODS["lora"].train_defaults)
    steps = []
    with pytest.raises(NonFiniteError) as err:
        train(model, tok, tiny.splits, cfg, [lambda ev: steps.append(ev.step) if ev.kind == "step" else None])
    assert isinstance(err.value, PeftCoreError) and steps == []  # stopped at the first step
    assert str(err.value) == (
        "the training loss became NaN at step 1 of epoch 1, so training stopped and no model was kept: lower the "
        "learning rate (encoder/adapters 0.001, head 0.01) or the method's scaling (e.g. LoRA alpha), then train "
        "again")


@pytest.mark.parametrize("at,expected", [("step 3", "the training loss became NaN at step 4 of epoch 1"),
                                         ("epoch end", "the validation loss became NaN at the end of epoch 1")])
def test_loss_turning_nan_mid_training_stops_it(small, at, expected):
    from peft_core.errors import NonFiniteError

    torch.manual_seed(0)
    model, tok, *_ = build_model("minilm", "head", {}, small.task.num_labels)
    cfg = TrainConfig(epochs=2, max_length=48, early_stopping_patience=0, solver="adamw").with_defaults(
        METHODS["head"].train_defaults)
    per_epoch = []

    def diverge(ev):  # the head's bias turns NaN after a given optimizer step, as a diverging run's weights do
        if ev.kind == "start":
            per_epoch.append(ev.total_steps // cfg.epochs)
        if ev.kind == "step" and ev.step == (3 if at == "step 3" else per_epoch[0]):
            with torch.no_grad():
                model.head[1].bias.fill_(float("nan"))

    with pytest.raises(NonFiniteError, match="^" + expected + ", so training stopped"):
        train(model, tok, small.splits, cfg, [diverge])


@pytest.mark.parametrize("method,options", [("lora", {"r": 8}), ("last_n", {"num_layers": 2})])
def test_padding_free_steps_match_the_stock_forward(small, method, options, monkeypatch):
    """A training step on packed real tokens gives the stock padded forward's logits and gradients."""
    from peft_core import unpad
    from peft_core.inference import batch_inputs

    calls = []
    real = unpad.run_layers
    monkeypatch.setattr(unpad, "run_layers", lambda *a: calls.append(1) or real(*a))

    torch.manual_seed(0)
    model, tok, *_ = build_model("minilm", method, options, small.task.num_labels)
    texts = list(small.splits["train"]["text"][:24])
    batch = batch_inputs(tok, texts, 128)
    assert batch["attention_mask"].float().mean() < 0.6  # a real shuffled batch: mostly padding
    y = torch.tensor(small.splits["train"]["label"][:24])
    model.train()
    for m in model.modules():  # dropout off, so both paths compute the same function
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    got = {}
    for unpadded in (True, False):
        inner = model.base_model.model if hasattr(model, "peft_config") else model
        inner.unpadded_training = unpadded
        model.zero_grad(set_to_none=True)
        logits = model(**batch)
        torch.nn.functional.cross_entropy(logits, y).backward()
        got[unpadded] = (logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert len(calls) == 1  # the padding-free path ran once, the stock one once
    torch.testing.assert_close(got[True][0], got[False][0], atol=2e-5, rtol=1e-4)
    assert got[True][1].keys() == got[False][1].keys() and len(got[True][1]) > 2
    for n, g in got[True][1].items():
        torch.testing.assert_close(g, got[False][1][n], atol=1e-5, rtol=1e-3, msg=n)


def test_dropout_mask_drops_at_rate_p_and_scales_like_torch():
    import numpy as np

    from peft_core.unpad import dropout_mask

    m = dropout_mask((1000, 1000), 0.1, np.random.default_rng(1))
    assert m.dtype == torch.float32 and m.shape == (1000, 1000)
    assert torch.unique(m).tolist() == [0.0, pytest.approx(1 / 0.9)]  # inverted dropout, as torch scales
    assert abs((m == 0).float().mean().item() - 0.1) < 0.002  # 1e6 draws: binomial sd 3e-4
    same = dropout_mask((1000, 1000), 0.1, np.random.default_rng(1))
    other = dropout_mask((1000, 1000), 0.1, np.random.default_rng(2))
    assert torch.equal(m, same) and not torch.equal(m, other)
    assert abs((dropout_mask((1000, 1000), 0.5, np.random.default_rng(3)) == 0).float().mean().item() - 0.5) < 0.002
    assert torch.equal(dropout_mask((3, 4), 1.0, np.random.default_rng(4)), torch.zeros(3, 4))  # p=1: all dropped


def test_lora_adapter_dropout_uses_numpy_masks_at_its_rate(small):
    from peft_core.unpad import MaskDropout

    model, *_ = build_model("minilm", "lora", {"r": 8, "dropout": 0.2}, small.task.num_labels)
    drops = [d for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict)
             for d in m.lora_dropout.values()]
    assert drops and all(type(d) is MaskDropout and d.p == 0.2 for d in drops)  # one per adapted projection
    d, x = drops[0], torch.ones(500, 384)
    torch.manual_seed(3)
    y = d.train()(x)
    assert abs((y == 0).float().mean().item() - 0.2) < 0.01 and torch.unique(y).tolist() == [0.0, pytest.approx(1.25)]
    torch.manual_seed(3)
    assert torch.equal(d(x), y)  # reproducible under torch.manual_seed
    assert not torch.equal(d(x), y)  # and a new mask on the next call
    assert torch.equal(d.eval()(x), x)  # off in eval mode


@pytest.mark.parametrize("method,options", [("lora", {"r": 8}), ("last_n", {"num_layers": 2})])
def test_padding_free_dropout_path_is_the_stock_layer_math(small, method, options, monkeypatch):
    """With the encoder layers' dropout on, the padding-free step writes attention out by hand and applies its
    own masks; with masks of ones it must compute exactly the stock (dropout-free) layer."""
    from peft_core import unpad
    from peft_core.inference import batch_inputs

    masks = []
    monkeypatch.setattr(unpad, "dropout_mask", lambda shape, p, rng: masks.append(p) or torch.ones(tuple(shape)))
    torch.manual_seed(0)
    model, tok, *_ = build_model("minilm", method, options, small.task.num_labels)
    batch = batch_inputs(tok, list(small.splits["train"]["text"][:24]), 128)
    y = torch.tensor(small.splits["train"]["label"][:24])
    model.train()
    layer_drops = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and ".layer." in n
                   and "lora" not in n]
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    inner = model.base_model.model if hasattr(model, "peft_config") else model
    got = {}
    for unpadded in (True, False):
        inner.unpadded_training = unpadded
        for m in layer_drops:
            m.p = 0.1 if unpadded else 0.0
        model.zero_grad(set_to_none=True)
        logits = model(**batch)
        torch.nn.functional.cross_entropy(logits, y).backward()
        got[unpadded] = (logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    chunks = len(unpad._Plan(batch["attention_mask"]).chunks)  # model.train(): all 6 layers run padding-free
    assert masks == [0.1] * (6 * (chunks + 2))  # per layer: attention probabilities per chunk, 2 hidden dropouts
    torch.testing.assert_close(got[True][0], got[False][0], atol=2e-5, rtol=1e-4)
    for n, g in got[True][1].items():
        torch.testing.assert_close(g, got[False][1][n], atol=1e-5, rtol=1e-3, msg=n)


@pytest.mark.parametrize("phase", ["preparing", "encoding", "training", "evaluating"])
def test_fine_tune_stopped_in_any_phase_before_it_has_a_model_raises_run_cancelled(tmp_path, phase):
    """A stop takes effect in the phase it comes in; with no finished epoch (or an unevaluated model) there is
    nothing to offer, so nothing but config.json and events.jsonl is written."""
    from conftest import sms_subset
    from peft_core.errors import RunCancelled
    from peft_core.pipeline import RunConfig, fine_tune

    data = tmp_path / "sms100.csv"
    sms_subset(100).to_csv(data, index=False)
    control, seen = Control(), []

    def stop_at_start_of_phase(ev):
        seen.append((ev.kind, ev.message if ev.kind == "phase" else "", ev.step))
        if ev.kind == "phase" and ev.message == phase and ev.step == 0:
            control.request_stop()

    run_dir = tmp_path / "run"
    run_dir.mkdir()  # as an app job's folder: the preparing events are logged too
    cfg = RunConfig(train_file=str(data), method="head", train=TrainConfig(max_length=32, epochs=1))
    with pytest.raises(RunCancelled) as e:
        fine_tune(cfg, run_dir, [stop_at_start_of_phase], control)
    assert e.value.phase == phase
    assert str(e.value) == ("cancelled during the held-out evaluation: the trained model was not evaluated, so "
                            "there is no model to offer" if phase == "evaluating" else
                            "cancelled before the first epoch ended: there is no model to offer")
    assert seen[-1][0] == ("end" if phase in ("encoding", "training") else "phase")  # train says it ended
    assert [k for k in seen if k[0] == "phase"][-1][1] == phase, seen  # no later phase began
    assert sorted(p.name for p in run_dir.iterdir()) == (["events.jsonl"] if phase == "preparing" else
                                                          ["config.json", "events.jsonl"])
