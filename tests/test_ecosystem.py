"""The bundle in the tools that load it: Optimum's ORTModelForSequenceClassification (in a cached virtual environment
of its own: optimum-onnx pins transformers < 4.58), transformers' AutoConfig / AutoTokenizer, Triton's model config
(tritonclient's ModelConfig protobuf) and ``predict.py --triton-repository``; all on the SMS head run's bundles.

The Optimum environment is built once per pinned requirement set under ``~/.cache/peft-onnx-tests/optimum-<hash>``
(``PEFT_TEST_CACHE`` moves it): about 1 min with pip's cache warm, then reused.
"""
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import run_without_ml_stack
from exporters.bundle import extract_bundle

#: verified together on Python 3.11 (torch pinned: optimum requires it, and unpinned it pulls a multi-GB CUDA build)
OPTIMUM_REQUIREMENTS = ["optimum-onnx[onnxruntime]==0.1.0", "optimum==2.1.0", "transformers==4.57.6",
                        "tokenizers==0.22.2", "huggingface_hub==0.36.2", "onnxruntime==1.32.0", "torch==2.13.0"]
GRAPHS = {"fp32": "onnx/model.onnx", "int8": "onnx/model_quantized.onnx"}
ONNX_TO_TRITON = {onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.FLOAT: "TYPE_FP32"}

# Runs in the Optimum environment: {"folder", "file_name", "texts", "max_length", "alone", "disabled"} on stdin ->
# logits (the texts padded as one batch, or one at a time with "alone"; ONNX Runtime's "disabled" graph fusions off
# as in predict.py, or none), labels through config.id2label, the pipeline's labels, and the default session's
# labels (no fusion disabled).
OPTIMUM_SCRIPT = r"""
import json, sys
import numpy as np
import onnxruntime as ort
from optimum.onnxruntime import ORTModelForSequenceClassification
from transformers import AutoTokenizer, pipeline

req = json.load(sys.stdin)
def load(disabled):
    opts = ort.SessionOptions()
    if disabled:
        opts.add_session_config_entry("optimization.disable_specified_optimizers", ",".join(disabled))
    return ORTModelForSequenceClassification.from_pretrained(req["folder"], subfolder="onnx",
                                                             file_name=req["file_name"], session_options=opts)
tok = AutoTokenizer.from_pretrained(req["folder"])
def logits(model, texts):
    enc = tok(texts, padding=True, truncation=True, max_length=req["max_length"], return_tensors="np")
    return np.asarray(model(**enc).logits, dtype=np.float64)
def score(model, texts):
    return np.concatenate([logits(model, [t]) for t in texts]) if req["alone"] else logits(model, texts)
texts, model, default = req["texts"], load(req["disabled"]), load([])
out = score(model, texts)
classify = pipeline("text-classification", model=model, tokenizer=tok)
json.dump({"logits": out.tolist(), "labels": [model.config.id2label[int(i)] for i in out.argmax(-1)],
           "pipeline": [r["label"] for r in classify(texts, truncation=True)],
           "default_labels": [model.config.id2label[int(i)] for i in score(default, texts).argmax(-1)],
           "model_max_length": tok.model_max_length}, sys.stdout)
"""


def _cache() -> Path:
    return Path(os.environ.get("PEFT_TEST_CACHE") or Path.home() / ".cache" / "peft-onnx-tests")


@pytest.fixture(scope="session")
def optimum_python() -> Path:
    """The Python of a virtual environment with OPTIMUM_REQUIREMENTS, created if missing (a ``.complete`` marker
    is written last, so an interrupted install is redone)."""
    key = "\n".join(OPTIMUM_REQUIREMENTS + [sys.version.split()[0]])
    venv = _cache() / f"optimum-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").is_file():
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              *OPTIMUM_REQUIREMENTS], capture_output=True, text=True, timeout=1800)
        assert pip.returncode == 0, pip.stderr[-3000:]
        (venv / ".complete").write_text(key)
    return python


@pytest.fixture(scope="module")
def folders(head_export, tmp_path_factory) -> dict[str, Path]:
    """The unzipped fp32 and int8 SMS bundles."""
    return {p: extract_bundle(head_export.bundles[p], tmp_path_factory.mktemp(f"eco_{p}")) for p in GRAPHS}


def _predictor(folder: Path):
    """(the bundle's own predict.py ``Predictor``, that predict module), imported from the unzipped folder."""
    sys.path.insert(0, str(folder))  # predict.py imports postprocess.py beside it
    sys.modules.pop("postprocess", None)
    try:
        spec = importlib.util.spec_from_file_location(f"bundle_predict_{folder.name}", folder / "predict.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("postprocess", None)
    return mod.Predictor(folder), mod


@pytest.mark.parametrize("precision", list(GRAPHS))
def test_optimum_loads_the_bundle_and_matches_predict_py(precision, optimum_python, folders, head_run):
    """ORTModelForSequenceClassification from the unzipped bundle (config.json at its root, the graph in onnx/):
    logits within 1e-5 of predict.py's on the run's held-out SMS rows; labels via config.id2label and the
    text-classification pipeline (one text at a time) equal predict.py's.

    fp32 runs with ONNX Runtime's default session. int8 runs with predict.py's session settings (the
    SkipLayerNormalization fusion off) and one text at a time on both sides: the fused kernel rounds the residual
    sums differently before they are quantized, which moves int8 logits (static int8: up to 0.18 on SMS; dynamic
    int8, which scales activations per batch, also moves with padding); with Optimum's default session its labels
    still agree on >= 95% of rows."""
    folder, texts = folders[precision], [str(t) for t in head_run.data.splits["test"]["text"]]
    (pred, module), alone = _predictor(folder), precision == "int8"
    request = {"folder": str(folder), "file_name": Path(GRAPHS[precision]).name, "texts": texts, "alone": alone,
               "max_length": head_run.train_config.max_length,
               "disabled": module.DISABLED_OPTIMIZERS if alone else []}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} | {"HF_HUB_OFFLINE": "1"}
    p = subprocess.run([str(optimum_python), "-c", OPTIMUM_SCRIPT], input=json.dumps(request), capture_output=True,
                       text=True, timeout=600, env=env, cwd=folder.parent)  # not from inside: see the README
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout)
    ours = np.concatenate([pred.logits([t]) for t in texts]) if alone else pred.logits(texts)
    np.testing.assert_allclose(np.asarray(got["logits"]), ours, atol=1e-5, rtol=0)
    labels = [pred.labels[i] for i in pred.post.decide(ours)[0]]
    assert got["labels"] == labels and got["pipeline"] == labels and set(labels) == {"ham", "spam"}
    assert np.mean(np.asarray(got["default_labels"]) == np.asarray(labels)) >= (0.95 if alone else 1.0)
    assert got["model_max_length"] == head_run.train_config.max_length  # truncates where predict.py does


def test_autoconfig_and_autotokenizer_read_the_bundle(folders, head_run):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(folders["fp32"])
    assert config.model_type == "bert" and config.architectures == ["BertForSequenceClassification"]
    assert config.id2label == {0: "ham", 1: "spam"} and config.label2id == {"ham": 0, "spam": 1}
    assert config.num_labels == 2 and config.problem_type == "single_label_classification"
    assert config.hidden_size == 384 and config.vocab_size == 30522  # the base model's own fields
    ours = config.peft_onnx_bundle
    assert ours["format"] == "peft-onnx-bundle/2" and ours["model_file"] == "onnx/model.onnx"
    assert AutoConfig.from_pretrained(folders["int8"]).peft_onnx_bundle["model_file"] == "onnx/model_quantized.onnx"
    tok = AutoTokenizer.from_pretrained(folders["fp32"])
    text = str(head_run.data.splits["test"]["text"][0])
    assert tok(text, truncation=True)["input_ids"] == head_run.tokenizer(text, truncation=True, max_length=64)[
        "input_ids"]


def triton_matches_graph(folder: Path):
    """The bundle's triton-config/config.pbtxt parses as Triton's ModelConfig and names the graph's real inputs and
    outputs with their types and dims (batch dim left out, -1 where dynamic). Returns the parsed ModelConfig."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    ours = json.loads((folder / "config.json").read_text())["peft_onnx_bundle"]
    cfg = text_format.Parse((folder / "triton-config" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 64 and cfg.HasField("dynamic_batching")
    graph = onnx.load(str(folder / ours["model_file"]), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    for declared, values in ((cfg.input, [v for v in graph.input if v.name not in weights]),
                             (cfg.output, list(graph.output))):
        want = [(v.name, ONNX_TO_TRITON[v.type.tensor_type.elem_type],
                 [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim][1:])
                for v in values]
        got = [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in declared]
        assert got == want
    return cfg


@pytest.mark.parametrize("precision", list(GRAPHS))
def test_triton_config_describes_the_graph(precision, folders):
    cfg = triton_matches_graph(folders[precision])
    assert [t.name for t in cfg.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [(t.name, list(t.dims)) for t in cfg.output] == [("logits", [2])]


def test_predict_py_writes_a_triton_model_repository(folders, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    folder, repo = folders["int8"], tmp_path / "models"
    run_without_ml_stack(folder / "predict.py", ["--triton-repository", str(repo), "--triton-name", "sms"], tmp_path)
    cfg = text_format.Parse((repo / "sms" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert cfg.name == "sms" and cfg.platform == "onnxruntime_onnx"
    served = (repo / "sms" / "1" / "model.onnx").read_bytes()
    assert served == (folder / "onnx" / "model_quantized.onnx").read_bytes()  # Triton's file name, the int8 graph
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()) == ["sms/1/model.onnx",
                                                                                      "sms/config.pbtxt"]
    bad = subprocess.run([sys.executable, str(folder / "predict.py"), "--triton-repository", str(repo),
                          "--triton-name", "../x"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Triton model name" in bad.stderr and not (tmp_path / "x").exists()
    again = subprocess.run([sys.executable, str(folders["fp32"] / "predict.py"), "--triton-repository", str(repo),
                            "--triton-name", "sms"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr  # never overwritten (no stale version wins)
    assert (repo / "sms" / "1" / "model.onnx").read_bytes() == served


def test_predict_py_checks_output_before_scoring_and_keeps_numbers(folders, tmp_path):
    """--output into a missing folder or onto a folder: a one-line error (exit 2) before any scoring; the formula
    guard leaves plain numbers (ids such as -5) as they are and still neutralises formulas."""
    folder = folders["fp32"]
    for out in (tmp_path / "missing" / "p.csv", tmp_path):
        p = subprocess.run([sys.executable, str(folder / "predict.py"), "some text", "--output", str(out)],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and p.stderr.startswith("error: --output") and "Traceback" not in p.stderr
    sys.path.insert(0, str(folder))
    try:
        import postprocess
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("postprocess", None)
    assert [postprocess.safe_cell(v) for v in ("-5", "+3.5e-2", "=1+1", "-1+2", "@SUM(A1)", "text")] == [
        "-5", "+3.5e-2", "'=1+1", "'-1+2", "'@SUM(A1)", "text"]


def test_predict_py_still_reads_a_format_1_bundle(folders, head_run, tmp_path):
    """A bundle of the first format (model.onnx at the root, our fields at the top of config.json) scores the same
    with today's predict.py and postprocess.py."""
    new = folders["fp32"]
    old = tmp_path / "old"
    old.mkdir()
    for name in ("predict.py", "postprocess.py", "tokenizer.json"):
        shutil.copy(new / name, old / name)
    os.link(new / "onnx" / "model.onnx", old / "model.onnx")
    ours = json.loads((new / "config.json").read_text())["peft_onnx_bundle"]
    format1 = {k: v for k, v in ours.items() if k != "model_file"} | {"format": "peft-onnx-bundle/1"}
    (old / "config.json").write_text(json.dumps(format1))
    texts = [str(t) for t in head_run.data.splits["test"]["text"]][:20]
    (pred_new, _), (pred_old, _) = _predictor(new), _predictor(old)
    assert pred_old.model_path.endswith("/old/model.onnx") and pred_old.labels == ["ham", "spam"]
    np.testing.assert_array_equal(pred_old.logits(texts), pred_new.logits(texts))


def test_model_card_shows_each_ecosystem_use(folders):
    fp32, int8 = ((folders[p] / "README.md").read_text() for p in GRAPHS)
    assert 'subfolder="onnx",' in fp32 and 'file_name="model.onnx"' in fp32 and 'dtype: "fp32"' in fp32
    assert 'file_name="model_quantized.onnx"' in int8 and 'dtype: "q8"' in int8
    for card in (fp32, int8):
        assert "python predict.py --triton-repository models --triton-name classifier" in card
        assert 'pipeline("text-classification", "bundle"' in card
