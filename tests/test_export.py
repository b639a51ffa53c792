"""Export + parity + bundle: ONNX matches PyTorch on held-out rows, predict.py needs only onnxruntime/tokenizers."""
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import run_without_ml_stack
from exporters.bundle import extract_bundle
from exporters.parity import check_parity, ort_session
from peft_core.inference import batch_inputs, predict_logits


@pytest.fixture(scope="module")
def fp32_onnx(head_export, tmp_path_factory) -> str:
    """The exported fp32 ONNX file, read from its bundle (the run folder keeps no other copy)."""
    return str(extract_bundle(head_export.bundles["fp32"], tmp_path_factory.mktemp("fp32")) / "onnx" / "model.onnx")


def test_parity_passes_at_every_batch_size(head_export):
    p = head_export.parity
    assert p.passed, p.summary()
    assert p.max_abs_diff <= 1e-4 and p.argmax_agreement == 1.0
    assert {c.batch_size for c in p.checks} >= {1, 2, 17}
    assert any(c.max_tokens == 64 for c in p.checks)  # the over-max_length check hit the truncation length
    assert head_export.onnx.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    assert head_export.onnx.opset >= 18


def test_onnx_axes_are_dynamic(head_run, fp32_onnx):
    sess = ort_session(fp32_onnx)
    texts = list(head_run.data.splits["test"]["text"])
    for n in (1, 2, 17):
        inputs = batch_inputs(head_run.tokenizer, texts[:n], 64)
        out = sess.run(["logits"], {k: v.numpy() for k, v in inputs.items()})[0]
        assert out.shape == (n, 2)
    for tokens in (2, 7, 64):
        ids = np.full((2, tokens), 1000, dtype=np.int64)
        ids[:, 0], ids[:, -1] = 101, 102
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        assert sess.run(["logits"], feed)[0].shape == (2, 2)


def test_attention_runs_in_its_3d_form(fp32_onnx):
    import onnx

    graph = onnx.load(fp32_onnx).graph
    attention = [n for n in graph.node if n.op_type == "Attention"]
    assert len(attention) == 6  # one per MiniLM layer, each fed [batch, sequence, hidden] directly
    assert all({a.name: a.i for a in n.attribute}.get("q_num_heads") == 12 for n in attention)
    assert not any(n.op_type == "Transpose" for n in graph.node)  # the per-head Reshape+Transpose chains are gone


def test_bulk_scoring_on_parallel_workers_matches_one_session(head_run, head_export, tmp_path):
    folder = extract_bundle(head_export.bundles["fp32"], tmp_path / "bundle")
    sys.path.insert(0, str(folder))
    try:
        import importlib

        import predict
        importlib.reload(predict)  # another test may have imported an older bundle's predict.py
    finally:
        sys.path.pop(0)
    texts = list(head_run.data.splits["test"]["text"])
    serial = predict.Predictor(folder, workers=1)
    parallel = predict.Predictor(folder, workers=2)
    ids1, p1 = serial.predict(texts, max_tokens=64)
    ids2, p2 = parallel.predict(texts, max_tokens=64)
    assert parallel._bulk is not None and serial._bulk is None  # the parallel path really ran
    np.testing.assert_allclose(p2, p1, atol=1e-5)
    assert (ids1 == ids2).all() and len(ids1) == len(texts)
    one = parallel.predict(texts[:1])[1]  # a single batch runs on the all-cores session
    np.testing.assert_allclose(one, p1[:1], atol=1e-5)


def test_parity_detects_a_wrong_model(head_run, fp32_onnx):
    import copy

    import torch

    other = copy.deepcopy(head_run.model)
    with torch.no_grad():
        other.head[1].bias += 0.01
    report = check_parity(other, head_run.tokenizer, fp32_onnx, head_run.data.splits["test"]["text"][:20],
                          64, batch_sizes=(1,), rows_per_check=4)
    assert not report.passed and "max |Δlogit|" in report.failures[0]


def test_bundle_contents_and_predict_script(head_run, head_export, tmp_path):
    fp32 = head_export.bundles["fp32"]
    names = set(zipfile.ZipFile(fp32).namelist())
    assert {"onnx/model.onnx", "tokenizer.json", "config.json", "triton-config/config.pbtxt", "predict.py", "README.md",
            "parity.json"} <= names
    assert Path(fp32).stat().st_mode & 0o644 == 0o644  # readable by others: a bundle is meant to be shared
    assert all(zipfile.ZipFile(fp32).getinfo(n).external_attr >> 16 & 0o644 == 0o644 for n in ("config.json",
                                                                                              "README.md"))
    folder = extract_bundle(fp32, tmp_path / "bundle")
    hf = json.loads((folder / "config.json").read_text())
    assert hf["id2label"] == {"0": "ham", "1": "spam"} and hf["problem_type"] == "single_label_classification"
    assert hf["model_type"] == "bert" and hf["architectures"] == ["BertForSequenceClassification"]
    cfg = hf["peft_onnx_bundle"]  # this project's fields
    assert cfg["format"] == "peft-onnx-bundle/2" and cfg["model_file"] == "onnx/model.onnx"
    assert cfg["max_length"] == 64 and cfg["method"] == "head"
    assert json.loads((folder / "tokenizer_config.json").read_text())["model_max_length"] == 64
    assert cfg["metrics"]["accuracy"] == head_run.eval_report.accuracy and cfg["parity"]["passed"]
    assert cfg["data"]["source"] == "sms_small.csv"  # the file name only: no server path leaks into the bundle
    card = (folder / "README.md").read_text()
    assert "apache-2.0" in card and f"{head_run.eval_report.accuracy:.4f}" in card
    sizes = ", ".join(f"{k} {v:,}" for k, v in cfg["data"]["split_sizes"].items())
    assert f"split sizes {sizes};" in card and "{" not in card.split("## Data")[1].split("##")[0]  # words, no dict

    test = head_run.data.splits["test"]
    texts = list(test["text"])
    (tmp_path / "in.csv").write_text("text\n" + "\n".join('"' + t.replace('"', '""') + '"' for t in texts))
    run_without_ml_stack(folder / "predict.py", ["--csv", str(tmp_path / "in.csv"), "--output",
                                                 str(tmp_path / "out.csv")], tmp_path, timeout=120)
    import csv

    rows = list(csv.DictReader(open(tmp_path / "out.csv", encoding="utf-8")))
    torch_labels = [head_run.data.task.labels[i] for i in predict_logits(head_run.model, head_run.tokenizer, texts,
                                                                          64).argmax(-1)]
    assert [r["label"] for r in rows] == torch_labels
    assert len(rows) == len(texts)


def test_int8_bundle_is_scored_and_chosen_by_accuracy(head_run, head_export, tmp_path):
    q = head_export.int8
    assert q.rows == head_run.eval_report.n
    assert q.fp32_accuracy == head_run.eval_report.accuracy  # fp32 ONNX labels == PyTorch labels on every row
    assert q.int8_bytes < 0.8 * q.fp32_bytes and q.label_agreement >= 0.97
    assert head_export.bundle == head_export.bundles["int8" if q.acceptable else "fp32"]
    cfg = json.loads(zipfile.ZipFile(head_export.bundles["int8"]).read("config.json"))["peft_onnx_bundle"]
    assert cfg["precision"] == "int8" and cfg["model_file"] == "onnx/model_quantized.onnx" and cfg["int8"]["int8_accuracy"] == q.int8_accuracy


def test_predict_script_prints_labels_for_arguments(head_export, tmp_path):
    folder = extract_bundle(head_export.bundles["int8"], tmp_path / "b")
    out = subprocess.run([sys.executable, str(folder / "predict.py"), "WINNER! Claim your free prize now, call 09061701461",
                          "ok see you at home later"], capture_output=True, text=True, check=True, timeout=120).stdout
    lines = out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["spam", "ham"]


def test_bundle_holds_no_server_paths(head_export):
    def strings(obj):
        if isinstance(obj, dict):
            return [x for v in obj.values() for x in strings(v)]
        if isinstance(obj, list):
            return [x for v in obj for x in strings(v)]
        return [obj] if isinstance(obj, str) else []

    z = zipfile.ZipFile(head_export.bundles["int8"])
    for name in ("config.json", "parity.json"):
        found = strings(json.loads(z.read(name)))
        assert found and not [x for x in found if x.startswith("/") or ":\\" in x], name
    assert json.loads(z.read("parity.json"))["onnx_path"] == "onnx/model.onnx"  # parity checks the fp32 graph


def test_predict_script_keeps_rows_with_line_separators_and_odd_argument_bytes(head_export, tmp_path):
    import csv

    folder = extract_bundle(head_export.bundles["fp32"], tmp_path / "b")
    texts = ["hello\u2028world", "free prize\x0cnow call", "next\x85line", "ok"]  # not quoted in the file
    (tmp_path / "in.csv").write_text("text\n" + "\n".join(texts) + "\n", encoding="utf-8")
    subprocess.run([sys.executable, str(folder / "predict.py"), "--csv", str(tmp_path / "in.csv"), "--output",
                    str(tmp_path / "out.csv")], capture_output=True, check=True, timeout=120)
    rows = list(csv.DictReader(open(tmp_path / "out.csv", encoding="utf-8", newline="")))
    assert [r["text"] for r in rows] == texts  # one prediction per CSV row, none split at U+2028/FF/NEL
    out = subprocess.run([sys.executable, str(folder / "predict.py"), b"caf\xe9 prize"], capture_output=True,
                         timeout=120)  # Windows-1252 bytes on a UTF-8 command line
    assert out.returncode == 0, out.stderr.decode()[-500:]
    assert out.stdout.decode("utf-8").strip().endswith("caf\u00e9 prize")


def test_extract_refuses_paths_outside(tmp_path):
    from peft_core.errors import ExportError

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../outside.txt", "x")
    with pytest.raises(ExportError, match="outside"):
        extract_bundle(evil, tmp_path / "dest")
    assert not (tmp_path / "outside.txt").exists()


def test_run_folder_keeps_one_copy_of_each_model(head_run, head_export):
    run_dir = head_run.run_dir
    loose = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*.onnx"))
    assert loose == []  # the fp32 and int8 ONNX models live only in their bundles
    assert sorted(p.name for p in (run_dir / "export").iterdir()) == ["int8.json", "parity.json"]
    for precision, graph in (("fp32", "onnx/model.onnx"), ("int8", "onnx/model_quantized.onnx")):
        names = zipfile.ZipFile(head_export.bundles[precision]).namelist()
        assert [n for n in names if n.endswith(".onnx")] == [graph]  # one graph per zip
    assert (run_dir / "model" / "head.safetensors").is_file()  # what predictions and a re-export start from
    assert list((run_dir / "model" / "backbone").glob("*.safetensors"))


def test_export_message_states_the_download_sizes_in_one_unit(head_export):
    import re

    sizes = {p: Path(z).stat().st_size / 1e6 for p, z in head_export.bundles.items()}
    default = next(p for p, z in head_export.bundles.items() if z == head_export.bundle)
    other = ({"int8", "fp32"} - {default}).pop()
    msg = head_export.message
    # every size stated is a zip's, in one unit: the default download first, then the other one
    assert re.findall(r"(\d+(?:\.\d+)?) MB", msg) == [f"{sizes[default]:.1f}", f"{sizes[other]:.1f}"], msg
    assert f"{default} bundle {sizes[default]:.1f} MB (default)" in msg and "(zip sizes, MB = 10^6 bytes)" in msg


def _empty_rows_csv(path):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerows([["text"], ["WINNER! Claim your free prize now, call 09061701461"], [""], ["   "],
                     ["ok see you at home later"]])


def test_predict_script_refuses_empty_texts_and_flags_empty_csv_rows(head_export, tmp_path):
    import csv

    folder = extract_bundle(head_export.bundles["int8"], tmp_path / "b")
    for argv, which in (([""], "text 1 of 1"), (["   "], "text 1 of 1"), (["hello", "\t "], "text 2 of 2")):
        p = subprocess.run([sys.executable, str(folder / "predict.py"), *argv], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 2 and p.stdout == "", (argv, p.stdout)
        assert p.stderr.strip().splitlines() == [f"error: {which} on the command line is empty; give a text with "
                                                 "at least one non-space character"]
    _empty_rows_csv(tmp_path / "in.csv")
    run_without_ml_stack(folder / "predict.py", ["--csv", str(tmp_path / "in.csv"), "--output",
                                                 str(tmp_path / "out.csv")], tmp_path, timeout=120)
    rows = list(csv.DictReader(open(tmp_path / "out.csv", encoding="utf-8", newline="")))
    assert [(r["label"], r["error"]) for r in rows] == [("spam", ""), ("", "empty text"), ("", "empty text"),
                                                        ("ham", "")]
    assert rows[1]["probability"] == rows[1]["p_ham"] == rows[1]["p_spam"] == ""
    assert float(rows[0]["p_spam"]) > 0.5
    printed = subprocess.run([sys.executable, str(folder / "predict.py"), "--csv", str(tmp_path / "in.csv")],
                             capture_output=True, text=True, check=True, timeout=120).stdout.splitlines()
    assert [line.split("\t")[0] for line in printed] == ["spam", "-", "-", "ham"]
    assert printed[1].endswith("(error: empty text, not scored)")
