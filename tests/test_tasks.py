"""Task kinds (peft_core.tasks): targets, losses, thresholds, reports, and text pairs through the feeds."""
import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT
from peft_core.errors import ConfigError
from peft_core.tasks import TASKS, TaskSpec, get_task, report_from_dict
from peft_core.tasks.multi_label import tune_thresholds

GOEMOTIONS = ROOT / "examples" / "goemotions_sample.csv"
SNLI = ROOT / "examples" / "snli_sample.csv"
EMOBANK = ROOT / "examples" / "emobank_sample.csv"


def _goemotions_matrix(n=400):
    """The first n rows' label sets of the committed GoEmotions sample as a multi-hot matrix (rows, labels)."""
    df = pd.read_csv(GOEMOTIONS).head(n)
    sets = [str(s).split(";") for s in df["labels"]]
    names = sorted({x for s in sets for x in s})
    return np.array([[int(name in s) for name in names] for s in sets]), names


def test_registry_names_every_kind_once_and_get_task_reads_hyphens():
    assert list(TASKS) == ["single_label", "multi_label", "regression"]
    assert get_task("multi-label") is TASKS["multi_label"]
    with pytest.raises(ConfigError, match="unknown task 'ranking'"):
        get_task("ranking")


def test_old_task_specs_still_load():
    spec = TaskSpec.from_dict({"kind": "image-classification", "text_column": "image", "label_column": "class folder",
                               "id2label": {"0": "cat", "1": "dog"}})
    assert (spec.kind, spec.modality, spec.problem_type) == ("single_label", "image", "single_label_classification")
    again = TaskSpec.from_dict(spec.to_dict())
    assert again == spec


def test_tuned_thresholds_give_each_label_its_best_f1_on_real_label_sets():
    """On GoEmotions label sets with noisy scores: a label with MIN_POSITIVES+ positives gets a threshold no observed
    probability beats for its F1 (within the allowed range); rarer labels share the micro-F1-best threshold;
    labels absent from the split keep 0.5."""
    from sklearn.metrics import f1_score

    from peft_core.tasks.multi_label import MIN_POSITIVES, THRESHOLD_RANGE

    y, names = _goemotions_matrix()
    rng = np.random.default_rng(0)
    probs = np.clip(0.35 * y + rng.uniform(0, 0.7, y.shape), 0, 1)
    y[:, 0] = 0  # a label with no positive in this split
    t = tune_thresholds(y, probs)
    assert t[0] == 0.5
    grid = [c for c in np.unique(probs) if THRESHOLD_RANGE[0] <= c <= THRESHOLD_RANGE[1]]
    pos = y.sum(0)
    rare = [j for j in range(1, y.shape[1]) if 0 < pos[j] < MIN_POSITIVES]
    assert rare and len({t[j] for j in rare}) == 1  # one shared threshold
    micro = f1_score(y, probs >= t[rare[0]], average="micro")
    assert micro >= max(f1_score(y, probs >= c, average="micro") for c in grid[::25]) - 1e-12
    for j in range(1, y.shape[1]):
        if pos[j] < MIN_POSITIVES:
            continue
        got = f1_score(y[:, j], probs[:, j] >= t[j], zero_division=0)
        best = max(f1_score(y[:, j], probs[:, j] >= c, zero_division=0) for c in np.unique(probs[:, j])
                   if THRESHOLD_RANGE[0] <= c <= THRESHOLD_RANGE[1])
        assert got == pytest.approx(best), names[j]


def test_balanced_class_weights_match_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 0, 1, 0])
    spec = TaskSpec("single_label", "text", "label", {0: "a", 1: "b", 2: "c"})
    obj = get_task(spec).objective(spec, y, class_weights=True)
    np.testing.assert_allclose(obj.weights, compute_class_weight("balanced", classes=np.arange(3), y=y.numpy()),
                               rtol=1e-6)


def test_multi_label_pos_weight_is_negatives_over_positives_and_weights_the_loss():
    y, names = _goemotions_matrix(200)
    spec = TaskSpec("multi_label", "text", "labels", dict(enumerate(names)))
    kind = get_task(spec)
    t = kind.targets(spec, y.tolist())
    assert t.dtype == torch.float32 and t.shape == y.shape
    obj = kind.objective(spec, t, class_weights=True)
    pos = y.sum(0)
    np.testing.assert_allclose(obj.weights, (len(y) - pos) / np.maximum(pos, 1), rtol=1e-6)
    logits = torch.zeros_like(t)
    plain = kind.objective(spec, t).loss(logits, t)
    assert float(plain) == pytest.approx(np.log(2), rel=1e-6)  # sigmoid(0) = 0.5 on every cell
    assert float(obj.loss(logits, t)) > float(plain)  # rare positives weigh more


def test_multi_label_head_starts_at_each_labels_training_frequency_and_lora_heads_get_it_too():
    from peft_core.pipeline import build_model
    from peft_core.training import _set_output_bias

    y, names = _goemotions_matrix(200)
    spec = TaskSpec("multi_label", "text", "labels", dict(enumerate(names)))
    kind = get_task(spec)
    t = kind.targets(spec, y.tolist())
    bias = kind.objective(spec, t).output_bias
    freq = np.clip(y.mean(0), 1e-3, 1 - 1e-3)
    np.testing.assert_allclose(1 / (1 + np.exp(-np.array(bias))), freq, rtol=1e-5)
    assert kind.objective(spec, t, class_weights=True).output_bias is None
    assert get_task("single_label").objective(TaskSpec("single_label", "text", "label", {0: "a", 1: "b"}),
                                              torch.tensor([0, 1])).output_bias is None
    model = build_model("minilm", "lora", {}, spec.num_labels)[0]
    _set_output_bias(model, bias)
    outs = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)]
    assert outs and all(np.allclose(m.bias.detach().numpy(), bias, atol=1e-6) for m in outs)


def test_regression_targets_are_standardised_and_predictions_come_back_in_units():
    df = pd.read_csv(EMOBANK)
    y = df["valence"].to_numpy(dtype=float)
    spec = TaskSpec("regression", "text", "valence", {0: "valence"}, target_mean=float(y.mean()),
                    target_std=float(y.std()))
    kind = get_task(spec)
    z = kind.targets(spec, y)
    assert z.shape == (len(y), 1)
    assert float(z.mean()) == pytest.approx(0, abs=1e-5) and float(z.std(unbiased=False)) == pytest.approx(1, abs=1e-4)
    np.testing.assert_allclose(kind.predict(spec, z.numpy()), y, atol=1e-5)
    report = kind.evaluate(spec, y, z.numpy(), y)
    assert report.rmse == pytest.approx(0, abs=1e-5) and report.spearman == pytest.approx(1)
    assert report.baseline["rmse"] == pytest.approx(y.std(), rel=1e-6)  # the mean predicts with RMSE = std


@pytest.mark.parametrize("kind", list(TASKS))
def test_every_kind_reports_beside_a_baseline_and_round_trips_through_its_dict(kind):
    y, names = _goemotions_matrix(300)
    rng = np.random.default_rng(1)
    if kind == "multi_label":
        spec, values = TaskSpec(kind, "text", "labels", dict(enumerate(names))), y.tolist()
        logits = 3 * (y - 0.5) + rng.normal(0, 2, y.shape)
    elif kind == "single_label":
        ids = y.argmax(1)
        spec, values = TaskSpec(kind, "text", "label", dict(enumerate(names))), ids.tolist()
        logits = np.eye(len(names))[ids] * 2 + rng.normal(0, 1, (len(ids), len(names)))
    else:
        vals = y.sum(1).astype(float)
        spec, values = TaskSpec(kind, "text", "n_labels", {0: "n_labels"}, target_mean=1.0, target_std=0.5), vals
        logits = ((vals - 1.0) / 0.5 + rng.normal(0, 0.5, len(vals)))[:, None]
    task = get_task(spec)
    report = task.evaluate(spec, values, logits, values)
    table = report.metrics_table()
    assert table.shape[1] == 3 and "baseline" in table.columns[2]
    assert report_from_dict(report.to_dict()) == report
    assert isinstance(report.headline, float) and report.headline_name in report.to_markdown()
    preds = task.predictions_table(spec, ["text"] * len(values), values, logits)
    assert len(preds) == len(values) and {"true", "predicted", "wrong"} <= set(preds.columns)
    assert preds["wrong"].iloc[0] or not preds["wrong"].any()  # mistakes first


def _pair_split(n=64):
    df = pd.read_csv(SNLI).head(n)
    return list(zip(df["premise"], df["hypothesis"]))


def test_pairs_are_encoded_as_one_sequence_pair_with_segment_ids():
    from peft_core.inference import batch_inputs
    from peft_core.models import get_spec, load_backbone

    _, tok, _ = load_backbone(get_spec("minilm"))
    pairs = _pair_split(4)
    enc = batch_inputs(tok, pairs, 128)
    first = enc["input_ids"][0][enc["attention_mask"][0].bool()]
    assert (first == tok.sep_token_id).sum() == 2  # [CLS] a [SEP] b [SEP]
    seg = enc["token_type_ids"][0][enc["attention_mask"][0].bool()]
    assert seg[0] == 0 and seg[-1] == 1 and set(seg.tolist()) == {0, 1}
    solo = batch_inputs(tok, [p[0] for p in pairs], 128)
    assert (solo["token_type_ids"] == 0).all()


@pytest.mark.parametrize("method,options", [("head", {}), ("last_n", {"num_layers": 2})])
def test_pair_features_from_the_cache_equal_recomputing(method, options):
    """A frozen prefix cached for sequence pairs gives the logits the whole model gives."""
    from peft_core.feeds import make_feed
    from peft_core.pipeline import build_model
    from peft_core.training import make_accelerator

    torch.manual_seed(0)
    model, tok, *_ = build_model("minilm", method, options, 3)
    pairs = _pair_split(48)
    acc = make_accelerator()
    feed = make_feed(model, tok, {"train": pairs}, 128, acc, use_cache=True)
    assert feed.kind != "none"
    model.eval()
    cached = feed.all_logits(feed.module, "train")
    from peft_core.inference import predict_logits

    np.testing.assert_allclose(cached.numpy(), predict_logits(model, tok, pairs, 128), atol=2e-5)


def test_thresholds_of_the_wrong_length_are_refused():
    with pytest.raises(ConfigError, match="2 thresholds for 3 labels"):
        TaskSpec("multi_label", "text", "labels", {0: "a", 1: "b", 2: "c"}, thresholds=[0.5, 0.5])
    for a, b in itertools.product([0.0, -1.0], [None]):
        with pytest.raises(ConfigError, match="target_std must be > 0"):
            TaskSpec("regression", "text", "y", {0: "y"}, target_mean=b, target_std=a)
