"""The linear probe's full-batch L-BFGS fit (``peft_core.full_batch``) on real SMS rows: it reaches the optimum
scikit-learn's LogisticRegression reaches on the same cached features, keeps the best validation iteration, stops
between iterations, and says when it cannot apply."""
import numpy as np
import pytest
import torch

from peft_core.callbacks import Control
from peft_core.data import prepare_data
from peft_core.methods import METHODS
from peft_core.pipeline import build_model
from peft_core.splits import split_inputs
from peft_core.training import TrainConfig, train


@pytest.fixture(scope="module")
def small(sms_small):
    return prepare_data(sms_small)


def _model(small):
    torch.manual_seed(0)
    return build_model("minilm", "head", {}, small.task.num_labels)[:2]


def _features(model, tok, small, split):
    from peft_core.inference import map_sorted

    return map_sorted(lambda b: model.features(**b), tok, split_inputs(small.splits[split]), 48).numpy()


def test_lbfgs_reaches_the_logistic_regression_optimum(small):
    """Without early stopping the fit runs to (near) the optimum of scikit-learn's objective with
    C = 1/weight_decay, and the best validation iteration it keeps predicts like scikit-learn's model."""
    from sklearn.linear_model import LogisticRegression

    model, tok = _model(small)
    events = []
    cfg = TrainConfig(max_length=48, epochs=300, early_stopping_patience=0, weight_decay=0.1).with_defaults(
        METHODS["head"].train_defaults)
    res = train(model, tok, small.splits, cfg, [events.append])
    assert res.cache == "pooled features" and not res.cancelled
    assert any("full-batch L-BFGS" in (e.message or "") for e in events if e.kind == "start")
    x = {s: _features(model, tok, small, s) for s in ("train", "test")}
    y = np.asarray(small.splits["train"]["label"])
    clf = LogisticRegression(C=10.0, max_iter=5000, tol=1e-8).fit(x["train"], y)
    best = res.history[res.best_epoch - 1]
    assert best["val_score"] == max(h["val_score"] for h in res.history)  # the best iteration was kept
    w = model.head[-1].weight.detach().numpy()
    if w.shape[0] == 2 and clf.coef_.shape[0] == 1:  # binary: sklearn keeps one row, the softmax head two
        assert np.corrcoef(w[1] - w[0], clf.coef_[0])[0, 1] > 0.95
    with torch.no_grad():
        logits = model.head(torch.from_numpy(x["test"]))
    agree = (logits.argmax(1).numpy() == clf.predict(x["test"])).mean()
    assert agree >= 0.98, agree


def test_lbfgs_stops_between_iterations(small):
    model, tok = _model(small)
    control, seen = Control(), []

    def stop_after_three(ev):
        if ev.kind == "step":
            seen.append(ev.step)
            if ev.step == 3:
                control.request_stop()

    cfg = TrainConfig(max_length=48).with_defaults(METHODS["head"].train_defaults)
    res = train(model, tok, small.splits, cfg, [stop_after_three], control)
    assert res.cancelled and seen == [1, 2, 3] and res.best_epoch >= 1


def test_lbfgs_without_cached_features_says_so_and_uses_adamw(small):
    model, tok = _model(small)
    events = []
    cfg = TrainConfig(max_length=32, epochs=1, feature_cache=False).with_defaults(METHODS["head"].train_defaults)
    res = train(model, tok, small.splits, cfg, [events.append])
    assert res.cache == "none" and len(res.history) == 1
    assert any("AdamW mini-batches instead" in (e.message or "") for e in events if e.kind == "message")
