"""Static int8 (calibrated on training rows): a row scores the same one at a time as in bulk (max |Δp| <= 1e-6) for
a text bundle and an image bundle; dynamic int8 does not; the task kind's gate decides, with dynamic int8 as the
fallback of a text model whose static int8 fails; the int8 report records mode, batch check and calibration."""
import dataclasses
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from exporters import quantize, quantize_static
from exporters.bundle import extract_bundle
from exporters.quantize_static import BATCH_TOLERANCE, batch_check, probabilities

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / "examples" / "mnist_digits.zip"


def _config(bundle: Path) -> dict:
    """This project's bundle config (under "peft_onnx_bundle" in the Hugging Face style config.json)."""
    cfg = json.loads(zipfile.ZipFile(bundle).read("config.json"))
    return cfg.get("peft_onnx_bundle", cfg)


def _graph(folder: Path) -> Path:
    """The bundle's one ONNX graph."""
    return next(p for p in folder.rglob("*.onnx"))


def _bundle_module(folder: Path, script: str):
    """The bundle's own predict.py (text or image template), imported from its folder (with its postprocess.py)."""
    import importlib.util

    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location(f"bundle_{script}_{id(folder)}", folder / f"{script}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("postprocess", None)
    return mod


# ---------------------------------------------------------------- text (the session's SMS head run)


def test_text_int8_bundle_is_static_and_batch_independent(head_run, head_export, tmp_path):
    q = head_export.int8
    assert q.mode == "static" and q.acceptable, q.summary()
    assert head_export.bundle == head_export.bundles["int8"]  # passed the gate: the default download
    assert q.batch_independent and q.batch["max_abs_diff"] <= BATCH_TOLERANCE and q.batch["flips"] == 0
    # the bundle's own predict.py: one text at a time vs all at once (length-sorted, padded batches of mixed lengths)
    folder = extract_bundle(head_export.bundles["int8"], tmp_path / "b")
    pred = _bundle_module(folder, "predict").Predictor(folder)
    texts = [str(t) for t in head_run.data.splits["test"]["text"]]
    alone = np.concatenate([pred.logits([t]) for t in texts])
    bulk = pred.logits(texts)
    assert np.abs(probabilities(alone, "single_label") - probabilities(bulk, "single_label")).max() <= 1e-6
    # batches in input order: every short text padded to its batch's longest
    check = batch_check(_graph(folder), head_run.tokenizer, texts, head_run.train_config.max_length, "single_label")
    assert check.rows == len(texts) and check.independent, check


def test_dynamic_int8_is_not_batch_independent(head_run, head_export, tmp_path):
    """The reason for static int8: dynamic int8's activation scale is computed per batch, padding included."""
    fp32 = _graph(extract_bundle(head_export.bundles["fp32"], tmp_path / "f"))
    dynamic = quantize.quantize_int8(fp32, tmp_path / "dynamic.onnx")
    texts = [str(t) for t in head_run.data.splits["test"]["text"]]
    ml = head_run.train_config.max_length
    assert batch_check(fp32, head_run.tokenizer, texts, ml, "single_label").max_abs_diff <= 1e-6  # fp32: exact
    shifted = batch_check(dynamic, head_run.tokenizer, texts, ml, "single_label")
    assert shifted.max_abs_diff > 1e-4 and not shifted.independent, shifted


def test_int8_report_records_mode_gate_batch_check_and_calibration(head_run, head_export):
    report = json.loads((head_run.run_dir / "export" / "int8.json").read_text())
    assert report["mode"] == "static" and report["batch_independent"] is True
    assert report["acceptable"] is True and report["metric"] == "accuracy"
    assert report["fp32_score"] - report["int8_score"] <= 0.01 + 1e-12  # the single-label gate: within 1 point
    check = report["batch_check"]
    assert check["rows"] == 64 and check["max_abs_diff"] <= 1e-6 and check["independent"] is True
    cal = report["calibration"]
    train_rows = len(head_run.data.splits["train"])
    assert cal["method"] == "MinMax" and cal["rows"] == min(256, train_rows) and 0 < cal["seconds"] < 600
    assert cal["op_types"] == ["MatMul"] and cal["quantized_nodes"] == 36  # 6 layers x (Q, K, V, out, 2 FFN)
    assert report["tried"] == []
    cfg = _config(head_export.bundles["int8"])
    assert cfg["int8"]["mode"] == "static" and cfg["int8"]["calibration"] == cal
    card = zipfile.ZipFile(head_export.bundles["int8"]).read("README.md").decode()
    assert "int8, static" in card and "batch-independent" in card
    assert "static, calibrated, batch-independent" in head_export.message


def test_static_failing_the_gate_falls_back_to_dynamic(head_run, head_export, tmp_path, monkeypatch):
    """Static int8 that loses accuracy is replaced by dynamic int8 when dynamic passes; the report keeps the
    static attempt. The real check scores both graphs; its verdicts are then forced (static fails, dynamic passes):
    on 80 held-out rows one row is 1.25 points, so the real verdicts of a given model could go either way."""
    real = quantize.check_int8

    def static_fails(fp32, path, *args, **kwargs):
        q = real(fp32, path, *args, **kwargs)
        dynamic = ".dynamic" in Path(path).name
        q.verdict = dataclasses.replace(q.verdict, int8=q.verdict.fp32 - (0.0 if dynamic else 0.05),
                                        acceptable=dynamic)
        return q

    monkeypatch.setattr(quantize, "check_int8", static_fails)
    fp32 = _graph(extract_bundle(head_export.bundles["fp32"], tmp_path / "f"))
    test, ml = head_run.data.splits["test"], head_run.train_config.max_length
    train = list(head_run.data.splits["train"]["text"])
    out = tmp_path / "model.int8.onnx"
    q, note = quantize_static.choose_int8(fp32, out, head_run.tokenizer, train, list(test["text"]), test["label"],
                                          ml, head_run.data.task, settings=quantize_static.StaticSettings(rows=32))
    assert note == "" and q.mode == "dynamic" and q.acceptable and out.is_file() and q.path == str(out)
    assert q.batch_independent is False
    assert [t["mode"] for t in q.tried] == ["static"] and q.tried[0]["acceptable"] is False
    assert q.tried[0]["calibration"]["rows"] == 32 and q.tried[0]["batch_independent"] is True
    assert not (tmp_path / "model.int8.dynamic.onnx").exists()
    # a CNN (dynamic int8 not possible): no int8 model, and the note says why
    q, note = quantize_static.choose_int8(fp32, out, head_run.tokenizer, train, list(test["text"]), test["label"],
                                          ml, head_run.data.task, settings=quantize_static.StaticSettings(rows=32),
                                          dynamic_ok=False)
    assert q is None and not out.exists() and "No int8 bundle: static int8 was tried" in note and "FLAGGED" in note


def test_calibration_rows_are_a_seeded_sample_and_text_batches_pad_per_batch(head_run):
    rows = [f"text {i}" for i in range(1000)]
    a, b = quantize_static.calibration_rows(rows, 100), quantize_static.calibration_rows(rows, 100)
    assert a == b and len(set(a)) == 100 and a == sorted(a, key=rows.index)
    assert quantize_static.calibration_rows(rows[:10], 100) == rows[:10]
    texts = ["hi", "a much longer message that needs many more tokens than the first one does", "ok see you then"]
    reader = quantize_static.RowsReader(head_run.tokenizer, texts, 64, ["input_ids", "attention_mask"], batch_size=1)
    widths = [reader.get_next()["input_ids"].shape[1] for _ in texts]
    assert len(set(widths)) == 3 and widths == sorted(widths, reverse=True)  # each batch its own width, longest first
    assert reader.get_next() is None
    same = quantize_static.RowsReader(head_run.tokenizer, texts, 64, ["input_ids", "attention_mask"], 2, True)
    feeds = [same.get_next(), same.get_next()]
    assert feeds[0]["input_ids"].shape[1] == feeds[1]["input_ids"].shape[1] == max(widths)
    assert feeds[1]["attention_mask"][:, -1].sum() == 0  # padding is masked
    with pytest.raises(ValueError, match="unknown calibration method"):
        quantize_static.quantize_static_int8("m.onnx", "q.onnx", head_run.tokenizer, texts, 64,
                                             quantize_static.StaticSettings(method="Median"))


# ---------------------------------------------------------------- images (EfficientNet-Lite0, 100 real digits)


@pytest.fixture(scope="module")
def image_export(tmp_path_factory):
    """A head run on 100 committed MNIST digits (10 per class), exported."""
    from exporters.run_export import export_run
    from peft_core.pipeline import RunConfig, fine_tune

    tmp = tmp_path_factory.mktemp("img_static")
    with zipfile.ZipFile(MNIST) as src, zipfile.ZipFile(tmp / "digits100.zip", "w") as dst:
        counts: dict[str, int] = {}
        for name in sorted(n for n in src.namelist() if n.endswith(".png")):
            label = name.split("/")[-2]
            if counts.get(label, 0) < 10:
                counts[label] = counts.get(label, 0) + 1
                dst.writestr(f"{label}/{counts[label]}.png", src.read(name))
    run = fine_tune(RunConfig(train_file=str(tmp / "digits100.zip"), method="head"), tmp / "run")
    return run, export_run(run, parity_rows=8)


def test_image_model_gets_a_static_int8_bundle_that_is_batch_independent(image_export, tmp_path):
    run, res = image_export
    q = res.int8
    assert q is not None and q.mode == "static" and "int8" in res.bundles, res.message
    assert q.calibration["op_types"][0] == "Conv" and q.calibration["quantized_nodes"] > 40
    assert q.calibration["rows"] == len(run.data.splits["train"]) and q.tried == []
    assert q.batch_independent and q.batch["max_abs_diff"] <= BATCH_TOLERANCE, q.batch
    assert res.bundle == res.bundles["int8" if q.acceptable else "fp32"]
    assert _config(res.bundles["int8"])["int8"]["mode"] == "static"
    # the bundle's predict.py: one image at a time vs batches of 32
    folder = extract_bundle(res.bundles["int8"], tmp_path / "b")
    clf = _bundle_module(folder, "predict").Classifier(folder)  # the image template, as predict.py
    paths = [Path(p) for p in run.data.splits["test"]["image"]]
    alone = np.concatenate([clf.logits([p]) for p in paths])
    bulk = clf.logits(paths, batch_size=32)
    assert np.abs(probabilities(alone, "single_label") - probabilities(bulk, "single_label")).max() <= 1e-6
