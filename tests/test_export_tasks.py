"""Export of every task kind and of text pairs, on real data: multi-label (GoEmotions), regression (EmoBank
valence), pair single-label (SNLI) and pair regression (STS-B). Each case trains a linear probe on a small seeded
sample, exports it, and checks: parity (ONNX vs PyTorch logits <= 1e-4), the int8 verdict in the kind's metric,
the task spec in the bundle's config.json, the bundle's predict.py (run with only onnxruntime, tokenizers, numpy)
reproducing PyTorch's predictions, the model card's metrics, and a run reloaded from its folder predicting the
same. The image bundle's predict.py is checked on a multi-label probe of real MNIST tags, and for every kind on
real MNIST digits with a small ONNX model of the bundle's interface."""
import csv
import importlib.util
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run_without_ml_stack
from exporters.bundle import TEMPLATES, extract_bundle
from peft_core.tasks import TASKS, TaskSpec, get_task

EXAMPLES = ROOT / "examples"


@dataclass
class Case:
    """One real data set: its committed sample under examples/ and its columns."""

    sample: str
    task: str
    text: str
    label: str
    pair: str | None = None
    separator: str | None = None


CASES = {
    "goemotions": Case("goemotions_sample.csv", "multi_label", "text", "labels", separator=";"),
    "emobank": Case("emobank_sample.csv", "regression", "text", "valence"),
    "snli": Case("snli_sample.csv", "single_label", "premise", "label", pair="hypothesis"),
    "stsb": Case("stsb_sample.csv", "regression", "sentence1", "score", pair="sentence2"),
}
ROWS = 420  # ~300 train, ~40 validation, ~80 test rows after the 20 % / 10 % splits
MAX_LENGTH = 64


def _train(name: str, folder: Path):
    """A linear probe on ROWS seeded rows of the case's real data; returns (run, export result)."""
    from exporters.run_export import export_run
    from peft_core.pipeline import RunConfig, fine_tune
    from peft_core.training import TrainConfig

    case = CASES[name]
    path = folder / f"{name}.csv"
    pd.read_csv(EXAMPLES / case.sample).sample(n=ROWS, random_state=0).to_csv(path, index=False)
    cfg = RunConfig(train_file=str(path), text_column=case.text, label_column=case.label, task=case.task,
                    text_pair_column=case.pair, label_separator=case.separator, method="head",
                    train=TrainConfig(max_length=MAX_LENGTH))
    run = fine_tune(cfg, folder / "run")
    return run, export_run(run, parity_rows=17)


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory):
    run, res = _train(request.param, tmp_path_factory.mktemp(request.param))
    return request.param, run, res


def _config(res, precision="fp32") -> dict:
    """The bundle's own config section ("peft_onnx_bundle" of its Hugging Face style config.json)."""
    return json.loads(zipfile.ZipFile(res.bundles[precision]).read("config.json"))["peft_onnx_bundle"]


def test_parity_int8_verdict_and_task_spec_in_the_bundle(exported):
    name, run, res = exported
    spec, kind = run.data.task, get_task(run.data.task)
    assert res.parity.passed and res.parity.max_abs_diff <= 1e-4, res.parity.summary()
    assert spec.input_kind == ("text_pair" if CASES[name].pair else "text")
    assert "token_type_ids" in res.onnx.input_names  # MiniLM marks the second text of a pair with segment id 1
    cfg, hf = _config(res), json.loads(zipfile.ZipFile(res.bundles["fp32"]).read("config.json"))
    for member in ("config.json", "metrics.json", "parity.json"):  # standard JSON: JavaScript refuses NaN / Infinity
        json.loads(zipfile.ZipFile(res.bundles["fp32"]).read(member), parse_constant=lambda c: pytest.fail(c))
    assert cfg["task"] == spec.to_dict() and hf["problem_type"] == spec.problem_type
    assert hf["id2label"] == spec.to_dict()["id2label"] and hf["label2id"] == {v: k for k, v in spec.id2label.items()}
    assert cfg["task"]["kind"] == CASES[name].task and cfg["task"]["text_pair_column"] == CASES[name].pair
    if kind.calibrates:
        assert cfg["task"]["thresholds"] == spec.thresholds and len(spec.thresholds) == spec.num_labels
    test = run.data.splits["test"]
    same = kind.int8_verdict(spec, test["label"], run.test_logits, run.test_logits)  # fp32 ONNX == PyTorch
    q = res.int8
    assert q.metric == same.metric and q.rows == len(test)
    assert q.verdict.fp32 == pytest.approx(same.fp32, abs=1e-3)
    entry = _config(res, "int8")["int8"]
    assert entry["metric"] == same.metric and entry["acceptable"] == q.acceptable
    assert entry["int8_score"] == q.verdict.int8 and entry["limit"] == q.verdict.limit
    assert same.metric in res.message and res.bundle == res.bundles["int8" if q.acceptable else "fp32"]
    if res.parity.outputs == 1:  # one logit: argmax agreement would be vacuous, so the summary leaves it out
        assert "argmax" not in res.parity.summary()


def _reads(row: dict, spec: TaskSpec):
    """A prediction as predict.py writes it in its CSV row, in the terms of ``TaskKind.predict``."""
    return {"single_label": lambda: row["label"],
            "multi_label": lambda: [n for n in spec.labels if n in row["labels"].split("; ")],
            "regression": lambda: float(row["prediction"])}[spec.kind]()


def _same(spec: TaskSpec, got: list, want: list) -> None:
    if spec.target_std:  # numbers: ONNX logits within 1e-4 of PyTorch's, times the target's std
        np.testing.assert_allclose(got, want, atol=2e-4 * spec.target_std)
    else:
        assert got == want


def test_bundle_predict_script_reproduces_pytorch_predictions(exported, tmp_path):
    name, run, res = exported
    spec, case = run.data.task, CASES[name]
    folder = extract_bundle(res.bundles["fp32"], tmp_path / "bundle")
    test = run.data.splits["test"]
    columns = {case.text: test["text"]} | ({case.pair: test["text_pair"]} if case.pair else {})
    pd.DataFrame(columns).to_csv(tmp_path / "in.csv", index=False)  # the training file's column names
    run_without_ml_stack(folder / "predict.py", ["--csv", str(tmp_path / "in.csv"), "--output",
                                                 str(tmp_path / "out.csv")], tmp_path, timeout=120)
    rows = list(csv.DictReader(open(tmp_path / "out.csv", encoding="utf-8", newline="")))
    want = get_task(spec).predict(spec, run.test_logits)
    assert len(rows) == len(want) and all(r["error"] == "" for r in rows)
    _same(spec, [_reads(r, spec) for r in rows], want)
    if case.pair:  # the input's own columns come back as they are
        assert [r[case.pair] for r in rows] == test["text_pair"] and list(rows[0])[:2] == [case.text, case.pair]

    first = [test["text"][0]] + (["--text-pair", test["text_pair"][0]] if case.pair else [])
    out = subprocess.run([sys.executable, str(folder / "predict.py"), *first], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    shown = out.stdout.strip().split("\t")[0]
    expected = want[0]
    if spec.target_std:
        assert float(shown) == pytest.approx(expected, abs=1e-3 * spec.target_std)
    else:
        assert shown == (expected if isinstance(expected, str) else "; ".join(expected) or "(none)")


def test_predict_script_refuses_a_pair_misuse(exported, tmp_path):
    name, run, res = exported
    folder = extract_bundle(res.bundles["fp32"], tmp_path / "bundle")
    argv = ["one text"] if CASES[name].pair else ["one text", "--text-pair", "another"]
    out = subprocess.run([sys.executable, str(folder / "predict.py"), *argv], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert ("scores text pairs" if CASES[name].pair else "scores single texts") in out.stderr


def test_predict_csv_keeps_the_inputs_columns_and_names_its_own_apart(exported, tmp_path):
    """Found by a fresh user: the output CSV replaced the file's true label column with the prediction under the
    same name and dropped its id column. Now every input column stays and a clashing prediction column is
    predicted_<name>; a missing column is a user error (exit 2)."""
    name, run, res = exported
    case, test = CASES[name], run.data.splits["test"]
    folder = extract_bundle(res.bundles["fp32"], tmp_path / "bundle")
    frame = pd.read_csv(EXAMPLES / case.sample).head(4)
    frame.insert(0, "row_id", [f"row{i}" for i in range(len(frame))])
    frame.to_csv(tmp_path / "in.csv", index=False)
    run_without_ml_stack(folder / "predict.py", ["--csv", str(tmp_path / "in.csv"), "--output",
                                                 str(tmp_path / "out.csv")], tmp_path, timeout=120)
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert list(out.columns[:len(frame.columns)]) == list(frame.columns)
    assert out["row_id"].tolist() == frame["row_id"].tolist()
    assert out[case.label].tolist() == frame[case.label].astype(str).tolist()  # the truth is kept
    clash = {"single_label": "predicted_label", "multi_label": "predicted_labels", "regression": "prediction"}
    assert clash[case.task] in out.columns and (out["error"] == "").all()
    flag = ["--pair-column", "nope"] if case.pair else ["--column", "nope"]
    p = subprocess.run([sys.executable, str(folder / "predict.py"), "--csv", str(tmp_path / "in.csv"), *flag],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "has no column 'nope'" in p.stderr and len(test) > 0


def test_model_card_reports_the_kinds_metrics(exported):
    name, run, res = exported
    card = zipfile.ZipFile(res.bundles["fp32"]).read("README.md").decode()
    report = run.eval_report
    assert report.headline_name in card and f"{report.headline:.4f}" in card
    assert f"{report.baseline_headline:.4f}" in card and run.data.task.problem_type in card
    if CASES[name].pair:
        assert f"--pair-column {CASES[name].pair}" in card


def test_a_reloaded_run_predicts_what_the_trained_one_did(exported):
    from peft_core.data import split_inputs
    from peft_core.inference import predict_logits
    from peft_core.runstore import load_run

    name, run, res = exported
    again = load_run(run.run_dir)
    assert again.data.task == run.data.task  # thresholds, target mean / std, the pair column
    test = again.data.splits["test"]
    assert split_inputs(test) == split_inputs(run.data.splits["test"])
    logits = predict_logits(again.model, again.tokenizer, split_inputs(test), again.train_config.max_length)
    np.testing.assert_allclose(logits, run.test_logits, atol=1e-5)
    spec = again.data.task
    _same(spec, get_task(spec).predict(spec, logits), get_task(run.data.task).predict(run.data.task, run.test_logits))


def test_image_multi_label_bundle_predicts_label_sets_like_pytorch(tmp_path):
    """A linear probe on 120 real MNIST tags (even / prime / greater_than_4 per digit, from examples/mnist_tags.zip):
    parity, then the image bundle's predict.py (onnxruntime, numpy, Pillow only) gives PyTorch's label sets."""
    from peft_core.data import split_inputs
    from exporters.run_export import export_run
    from peft_core.pipeline import RunConfig, fine_tune

    with zipfile.ZipFile(EXAMPLES / "mnist_tags.zip") as z:
        meta = pd.read_csv(z.open("mnist_tags/metadata.csv"), dtype=str, keep_default_na=False)
        meta = meta.sample(n=120, random_state=0)
        with zipfile.ZipFile(tmp_path / "tags.zip", "w") as out:
            out.writestr("tags/metadata.csv", meta.to_csv(index=False))
            for name in meta["file_name"]:
                out.writestr(f"tags/{name}", z.read(f"mnist_tags/{name}"))
    run = fine_tune(RunConfig(train_file=str(tmp_path / "tags.zip"), method="head"), tmp_path / "run")
    spec = run.data.task
    assert spec.kind == "multi_label" and spec.input_kind == "image" and spec.thresholds
    res = export_run(run, parity_rows=8)
    assert res.parity.passed and res.parity.max_abs_diff <= 1e-4, res.parity.summary()
    # static int8 (Conv) is the default only when it passes the micro-F1 gate; PyTorch's label sets: the fp32 bundle
    assert res.bundle == res.bundles["int8" if res.int8 is not None and res.int8.acceptable else "fp32"]
    folder = extract_bundle(res.bundles["fp32"], tmp_path / "bundle")
    hf = json.loads((folder / "config.json").read_text())
    assert hf["peft_onnx_bundle"]["task"] == spec.to_dict() and hf["problem_type"] == "multi_label_classification"
    images = tmp_path / "imgs"
    images.mkdir()
    for i, p in enumerate(split_inputs(run.data.splits["test"])):
        (images / f"{i:03d}.png").write_bytes(Path(p).read_bytes())
    run_without_ml_stack(folder / "predict.py", [str(images), "--output", str(tmp_path / "out.csv")], tmp_path,
                         also_blocked=("tokenizers",))
    rows = list(csv.DictReader(open(tmp_path / "out.csv", encoding="utf-8", newline="")))
    want = get_task(spec).predict(spec, run.test_logits)
    assert [_reads(r, spec) for r in rows] == want and len(rows) == len(want)
    assert any(want) and not all(w == want[0] for w in want)  # real label sets, not one answer for every image


# ---- the bundles' post-processing (templates/postprocess.py), for every registered task kind

def _load(path: Path):
    """A bundle script as a module (not run as __main__)."""
    spec = importlib.util.spec_from_file_location(f"bundle_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SPECS = {  # one spec per registered kind, with the fields its predictions depend on
    "single_label": TaskSpec("single_label", "text", "label", {0: "ham", 1: "spam", 2: "other"}),
    "multi_label": TaskSpec("multi_label", "text", "labels", {0: "joy", 1: "anger", 2: "fear"},
                            thresholds=[0.3, 0.5, 0.8]),
    "regression": TaskSpec("regression", "text", "valence", {0: "valence"}, target_mean=3.0, target_std=0.35),
}


def test_every_registered_kind_has_bundle_post_processing():
    assert set(SPECS) == set(TASKS)
    assert set(_load(TEMPLATES / "postprocess.py").KINDS) == set(TASKS)


@pytest.mark.parametrize("kind", list(TASKS))
def test_bundle_post_processing_predicts_what_the_task_kind_does(kind):
    post = _load(TEMPLATES / "postprocess.py")
    spec = SPECS[kind]
    logits = np.random.default_rng(0).normal(0, 2, (200, spec.num_labels)).astype(np.float32)
    cfg = {"task": spec.to_dict(), "id2label": spec.to_dict()["id2label"]}  # format 1: our fields at the top
    p = post.for_config({"peft_onnx_bundle": {"task": spec.to_dict()}})  # format 2: under "peft_onnx_bundle"
    assert post.labels(cfg) == post.labels(post.bundle_config({"peft_onnx_bundle": {"task": spec.to_dict()}}))
    assert post.model_file(cfg) == "model.onnx"  # a format-1 bundle's graph sits at its root
    decisions, probs = p.decide(logits)
    got = [_reads(dict(zip(p.header(), p.cells(d, None if probs is None else probs[i]))), spec)
           for i, d in enumerate(decisions)]
    _same(spec, got, get_task(spec).predict(spec, logits))


def _tiny_image_model(path: Path, num_labels: int) -> None:
    """pixel_values float32 [batch, 3, H, W] -> channel means -> linear layer -> logits [batch, num_labels]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(1).normal(0, 3, (3, num_labels)).astype(np.float32)
    b = np.linspace(-0.5, 0.5, num_labels).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["pixel_values"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("Gemm", ["flat", "w", "b"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_labels])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize("kind", list(TASKS))
def test_image_bundle_predict_script_gives_the_kinds_predictions(kind, tmp_path):
    """predict_image.py + postprocess.py on 30 real MNIST digits with a small model of the bundle's interface:
    its CSV holds ``TaskKind.predict`` of the same logits (labels, label sets, or numbers in the target's units)."""
    import shutil

    spec = SPECS[kind]
    folder = tmp_path / "bundle"
    folder.mkdir()
    shutil.copy(TEMPLATES / "predict_image.py", folder / "predict.py")
    shutil.copy(TEMPLATES / "postprocess.py", folder / "postprocess.py")
    (folder / "onnx").mkdir()
    _tiny_image_model(folder / "onnx" / "model.onnx", spec.num_labels)
    task = TaskSpec.from_dict(spec.to_dict() | {"modality": "image"}).to_dict()
    pre = {"size": {"height": 32, "width": 32}, "resample": 2, "resample_name": "bilinear",
           "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}
    ours = {"modality": "image", "task": task, "preprocessing": pre, "model_file": "onnx/model.onnx"}
    (folder / "config.json").write_text(json.dumps({"id2label": task["id2label"], "peft_onnx_bundle": ours}))
    images = tmp_path / "digits"
    with zipfile.ZipFile(EXAMPLES / "mnist_digits.zip") as z:
        for n in [n for n in z.namelist() if n.endswith(".png")][:30]:
            (images / Path(n).parent.name).mkdir(parents=True, exist_ok=True)
            (images / Path(n).parent.name / Path(n).name).write_bytes(z.read(n))
    run_without_ml_stack(folder / "predict.py", [str(images), "--output", str(tmp_path / "out.csv")], tmp_path,
                         also_blocked=("tokenizers",))
    rows = list(csv.DictReader(open(tmp_path / "out.csv", encoding="utf-8", newline="")))
    clf = _load(folder / "predict.py").Classifier(folder)  # the script's own preprocessing and session
    logits = clf.logits([Path(r["path"]) for r in rows])
    assert len(rows) == 30 and np.ptp(logits) > 0
    _same(spec, [_reads(r, spec) for r in rows], get_task(spec).predict(spec, logits))
