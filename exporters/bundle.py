"""The deployable bundle: one zip that serves with ONNX Runtime alone, and loads in Optimum, transformers.js, Triton.

Layout (format ``peft-onnx-bundle/2``; one zip per precision, each with one graph)::

    config.json               Hugging Face style (exporters.hf_config): the base model's config, model_type,
                              architectures, id2label / label2id, problem_type; this project's own fields (task
                              spec, max_length, padding token or image preprocessing, input names, base model,
                              method, metrics, parity, precision, int8 report, versions, model_file) under
                              "peft_onnx_bundle"
    tokenizer.json, tokenizer_config.json (+ special_tokens_map.json, vocab.txt when written)   text models
    preprocessor_config.json  image models (transformers' ViTImageProcessor layout)
    onnx/model.onnx           the fp32 graph (fp32 bundle), or
    onnx/model_quantized.onnx the int8 graph (int8 bundle): transformers.js' files for dtype "fp32" / "q8"
    triton-config/config.pbtxt       Triton ONNX Runtime backend config of that graph
    predict.py                needs only onnxruntime, tokenizers, numpy (images: onnxruntime, numpy, Pillow)
    demo.html                 in-browser demo with transformers.js (when exporters/templates/demo.html exists)
    postprocess.py            logits -> the task's predictions (numpy only)
    parity.json, metrics.json, README.md (model card)

The text model's ``tokenizer_config.json`` carries ``model_max_length`` = the training ``max_length``, so
tokenizers that truncate to it (transformers' ``truncation=True``, transformers.js' pipelines) cut texts where
predict.py does. The zip is written under a temporary name and renamed when complete, and is refused when parity
failed.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from peft_core.errors import ExportError
from peft_core.tasks import TaskSpec, get_task, report_from_dict

from .hf_config import MODEL_FILES, TRITON_CONFIG, hf_config, triton_config
from .parity import ParityReport

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = TEMPLATES / "predict.py"
IMAGE_TEMPLATE = TEMPLATES / "predict_image.py"
POSTPROCESS = TEMPLATES / "postprocess.py"
DEMO = TEMPLATES / "demo.html"  # in-browser demo with transformers.js; shipped when the template is there


def model_card(cfg: dict) -> str:
    """Markdown model card from the bundle config: data, method, the task kind's held-out metrics beside its
    baseline (``cfg["metrics"]``, the evaluation report's ``to_dict()``), export, parity, precision, use."""
    m, base, data = cfg["metrics"], cfg["base_model"], cfg.get("data", {})
    task = TaskSpec.from_dict(cfg["task"])
    report = report_from_dict(m)
    return f"""# {_title(task)}

Fine-tuned from **{base['source']}** (license: {base['license']}) with **{cfg['method']}**{_options(cfg['method_config'])};
{cfg['trainable_parameters']:,} of {cfg['total_parameters']:,} parameters
trained ({100 * cfg['trainable_parameters'] / cfg['total_parameters']:.3g}%).

## Data
Source file `{Path(data.get('source', '?')).name}`; split sizes {_sizes(data.get('split_sizes', {}))};
outputs (num_labels {task.num_labels}): {", ".join(task.labels)}.

## Held-out results ({m['split']}, {m['n']} rows)
{report.to_markdown()}

{_markdown_table(report.metrics_table())}

## Export
ONNX opset {cfg['onnx']['opset']}, {_io(cfg, task)}
fp32 export vs PyTorch: {cfg['parity']['summary']}

{_precision_line(cfg)}

## Use
The bundle's own scripts (`predict.py` reads `{cfg.get('model_file', 'model.onnx')}`):
```
{_use(task)}
```
{_ecosystem_use(task, cfg)}
Limitations: trained on the data above only; scores come from one held-out split and can differ on other data.
"""


def _title(task: TaskSpec) -> str:
    title = get_task(task).title
    if task.input_kind == "image":
        return f"Image model: {title.lower()} over {task.num_labels} output(s)"
    inputs = f"`{task.text_column}`" + (f" + `{task.text_pair_column}` (text pairs)" if task.text_pair_column else "")
    return f"Text model: {title.lower()} of `{task.label_column}` from {inputs}"


def _io(cfg: dict, task: TaskSpec) -> str:
    """The graph's inputs and output, and how the output becomes a prediction (the task's fields)."""
    k = task.num_labels
    if task.input_kind == "image":
        pre = cfg["preprocessing"]
        io = (f"input `pixel_values` (float32 [batch, 3, {pre['size']['height']}, {pre['size']['width']}], batch "
              f"dynamic), output `logits` (float32 [batch, {k}]); preprocessing: RGB, resize to "
              f"{pre['size']['height']}x{pre['size']['width']} ({pre['resample_name']}), /255, mean "
              f"{pre['image_mean']}, std {pre['image_std']}.")
    else:
        pairs = " (a text pair is one sequence pair, truncated longest-first)" if task.text_pair_column else ""
        io = (f"inputs {', '.join(cfg['input_names'])} (int64 [batch, sequence], dynamic), output `logits` "
              f"(float32 [batch, {k}]); texts truncated to {cfg['max_length']} tokens{pairs}.")
    fitted = []
    if task.thresholds:
        fitted.append("per-label thresholds " + ", ".join(f"{n} {t:.3f}" for n, t in zip(task.labels, task.thresholds)))
    if task.target_std:
        fitted.append(f"target mean {task.target_mean:.6g} and std {task.target_std:.6g}")
    return (io + f" problem_type `{task.problem_type}`: postprocess.py turns logits into predictions"
            + (f" ({'; '.join(fitted)}; in config.json \"peft_onnx_bundle\" > \"task\")." if fitted else "."))


def _use(task: TaskSpec) -> str:
    if task.input_kind == "image":
        return ("pip install onnxruntime numpy Pillow\npython predict.py photo.jpg\n"
                "python predict.py images/ --top-k 3 --output predictions.csv")
    install = 'pip install "onnxruntime>=1.23" tokenizers numpy  # opset 23 (ONNX Attention)\n'
    if task.text_pair_column:
        return (install + 'python predict.py "first text" --text-pair "second text"\n'
                f"python predict.py --csv file.csv --column {task.text_column} --pair-column "
                f"{task.text_pair_column} --output predictions.csv")
    return (install + 'python predict.py "some text"\n'
            "python predict.py --csv file.csv --column text --output predictions.csv")


def _ecosystem_use(task: TaskSpec, cfg: dict) -> str:
    """Model-card lines for Optimum (text only), transformers.js and Triton Inference Server, with this bundle's
    graph file and dtype; what they leave to postprocess.py (thresholds, the regression target's units)."""
    model_file = cfg.get("model_file", MODEL_FILES["fp32"])
    dtype, pipe = ("q8" if model_file == MODEL_FILES["int8"] else "fp32"), (
        "image-classification" if task.input_kind == "image" else "text-classification")
    parts = []
    if task.input_kind != "image":
        call = ('{"text": "first text", "text_pair": "second text"}' if task.text_pair_column else '"some text"')
        call += {"multi_label": ", top_k=None", "regression": ', function_to_apply="none"'}.get(task.kind, "")
        parts.append(f"""Optimum (`pip install "optimum-onnx[onnxruntime]"`; `bundle` = this unzipped folder):
```python
from optimum.onnxruntime import ORTModelForSequenceClassification
from transformers import AutoTokenizer, pipeline
model = ORTModelForSequenceClassification.from_pretrained("bundle", subfolder="onnx",
                                                          file_name="{Path(model_file).name}")
classify = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained("bundle"))
classify({call}, truncation=True)
```""")
    parts.append(_transformers_js(task, pipe, dtype) + """
Triton Inference Server (ONNX Runtime backend; `triton-config/config.pbtxt` describes the graph):
```
python predict.py --triton-repository models --triton-name classifier
tritonserver --model-repository models
```""")
    if task.kind == "multi_label":
        parts.append("A label is predicted when its sigmoid reaches its threshold (config.json \"peft_onnx_bundle\" > "
                     "\"task\" > \"thresholds\"), as postprocess.py does; sigmoid(logits) where the lines above give "
                     "logits.")
    elif task.kind == "regression":
        parts.append("These give the standardized value: prediction = logit * target_std + target_mean "
                     "(config.json \"peft_onnx_bundle\" > \"task\"), as postprocess.py computes.")
    return "\n".join(parts) + "\n"


def _transformers_js(task: TaskSpec, pipe: str, dtype: str) -> str:
    """The transformers.js lines: its pipeline where the pipeline's output is the prediction (a single label; a
    text's label probabilities, sigmoids for multi-label); else the model's logits: for text pairs (the pipeline
    takes one text; a pair longer than max_length loses its second text there), regression (the pipeline would
    apply softmax to the one logit, giving 1.0) and multi-label images (its image pipeline applies softmax)."""
    head = """transformers.js (`npm install @huggingface/transformers`; `bundle` = this unzipped folder):
```js
import {{ env, {names} }} from "@huggingface/transformers";
env.localModelPath = "./"; env.allowRemoteModels = false;
"""
    image, call = task.input_kind == "image", f'await pipeline("{pipe}", "bundle", {{ dtype: "{dtype}" }});'
    if task.kind == "single_label" and not task.text_pair_column or task.kind == "multi_label" and not (
            image or task.text_pair_column):
        every = ', { top_k: null }' if task.kind == "multi_label" else ""  # every label's probability
        example = '"photo.jpg"' if image else '"some text"'
        return head.format(names="pipeline") + f"""const classify = {call}
console.log(await classify({example}{every}));
```"""
    if image:
        return head.format(names="pipeline, RawImage") + f"""const classify = {call}
const {{ logits }} = await classify.model(await classify.processor(await RawImage.read("photo.jpg")));
```"""
    pair = ', text_pair: "second text"' if task.text_pair_column else ""
    return head.format(names="AutoTokenizer, AutoModelForSequenceClassification") + f"""\
const tokenizer = await AutoTokenizer.from_pretrained("bundle");
const model = await AutoModelForSequenceClassification.from_pretrained("bundle", {{ dtype: "{dtype}" }});
const {{ logits }} = await model(await tokenizer("first text", {{ truncation: true{pair} }}));
```"""


def _markdown_table(df) -> str:
    """A DataFrame as a markdown table; numbers with 4 decimals ("n/a" for NaN)."""
    def cell(v) -> str:
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else f"{v:.4f}"
        return str(v).replace("|", "\\|")

    rows = [list(map(cell, df.columns)), ["---"] * len(df.columns)] + [list(map(cell, r)) for r in df.itertuples(False)]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def _sizes(split_sizes: dict) -> str:
    """{"train": 3901, "test": 1115} -> "train 3,901, test 1,115" (rows or images per split)."""
    return ", ".join(f"{name} {n:,}" for name, n in split_sizes.items()) or "?"


def _options(method_config: dict) -> str:
    return " (" + ", ".join(f"{k}={v}" for k, v in method_config.items()) + ")" if method_config else ""


def _precision_line(cfg: dict) -> str:
    """The model card's precision sentence: fp32, or which int8 (``cfg["int8"]["mode"]``: "static", calibrated,
    whose outputs do not depend on the batch; "dynamic", whose outputs do; reports without a mode are dynamic),
    its held-out gate and the one-at-a-time vs bulk check (``batch_check``) when the report has one."""
    q = cfg.get("int8")
    if cfg.get("precision") != "int8" or not q:
        return ("Precision: fp32 (the model exactly as exported and checked above); a row scores the same whatever "
                "it is batched with.")
    gate = (f"Held-out {q['metric']} {q['int8_score']:.4f} vs fp32 {q['fp32_score']:.4f} (rule: {q['limit']}); int8 "
            f"gives {q.get('agreement_means', 'the same label as fp32')} on {100 * q['agreement']:.2f}% of "
            f"{q['rows']} rows.")
    check = q.get("batch_check") or {}
    flips = f", {check.get('flips')} label(s) differed" if len(cfg["task"]["id2label"]) > 1 else ""  # 1 output: no argmax
    measured = (f" (one at a time vs in bulk on {check['rows']} held-out rows: max |Δ| {check['max_abs_diff']:.1e} "
                f"in the outputs{flips})" if check else "")
    if q.get("mode") == "static":
        cal = q.get("calibration") or {}
        return (f"Precision: int8, static (ONNX Runtime static quantization of the checked fp32 model, activation "
                f"scales calibrated once on {cal.get('rows', '?')} training rows with {cal.get('method', '?')}). "
                f"{gate} Its scales are fixed, so a row's outputs do not depend on the rows batched beside it"
                f"{measured}: this int8 model is batch-independent, like the fp32 one.")
    return (f"Precision: int8, dynamic (ONNX Runtime dynamic quantization of the checked fp32 model). {gate} Dynamic "
            "quantization computes one activation scale per batch, so a row's outputs shift slightly with the rows "
            f"batched beside it{measured or ' (on SMS Spam, one at a time vs in bulk: 9 of 5,574 labels differed)'}: "
            "it is not batch-independent; use the fp32 bundle (or a static int8 one) where every row must score the "
            "same whatever it is batched with.")


def _shareable(obj):
    """A copy of a JSON-like ``obj`` in which every absolute path string is cut to its file name: a bundle is
    downloaded and shared, so the server's folders and run ids stay out of it."""
    if isinstance(obj, dict):
        return {k: _shareable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_shareable(v) for v in obj]
    if isinstance(obj, str) and os.path.isabs(obj):
        return Path(obj).name
    return obj


def strict_json(obj) -> str:
    """``obj`` as standard JSON (indent 2), NaN and infinities written as ``null``: Python's ``json`` would write
    the bare tokens ``NaN`` / ``Infinity``, which JavaScript's ``JSON.parse`` (transformers.js) and most other
    readers refuse (a regression run's baseline has no correlation: NaN)."""
    def finite(v):
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [finite(x) for x in v]
        return v

    return json.dumps(finite(obj), indent=2, allow_nan=False)


def build_bundle(out_zip: str | Path, onnx_path: str | Path, tokenizer, config: dict,
                 parity: ParityReport, extra_files: dict[str, str | Path] | None = None) -> Path:
    """Write the bundle zip (layout in the module doc).

    Args:
        onnx_path: the graph, stored as ``onnx/model.onnx`` (``config["precision"]`` "fp32", the default) or
            ``onnx/model_quantized.onnx`` ("int8").
        tokenizer: the run's tokenizer (``save_pretrained`` must write a fast ``tokenizer.json``), or for image
            models its ``ImagePreprocessor``.
        config: this project's bundle config (``run_export.bundle_config``: id2label, max_length, metrics,
            parity, ...) with ``hf_base_config``, the base model's config dict, which goes to config.json's top
            level; the rest goes under ``"peft_onnx_bundle"``.
        extra_files: arcname -> path of further files to include.
    Returns:
        Path of the finished zip.
    Raises:
        ExportError: parity failed (the bundle is not written), a text tokenizer without a fast version, or a
            graph Triton cannot batch; OSError: a file is missing.
    """
    if not parity.passed:
        raise ExportError("the ONNX model did not match PyTorch, so no bundle is offered: " + parity.summary())
    out_zip = Path(out_zip)
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    ours = dict(config)
    base_config = ours.pop("hf_base_config", None) or {}
    model_file = MODEL_FILES[ours.get("precision") or "fp32"]
    ours = _shareable(ours | {"model_file": model_file, "onnx": {**ours.get("onnx", {}), "path": model_file}})
    with tempfile.TemporaryDirectory(prefix="bundle_") as tmp:
        files = _processor_files(tokenizer, Path(tmp) / "tok", ours) | {model_file: Path(onnx_path)}
        files.update({k: Path(v) for k, v in (extra_files or {}).items()})
        texts = {"config.json": strict_json(_shareable(hf_config(ours, base_config))),
                 TRITON_CONFIG: triton_config(onnx_path),
                 "parity.json": strict_json(_shareable(parity.to_dict() | {"onnx_path": MODEL_FILES["fp32"]})),
                 "metrics.json": strict_json(ours["metrics"]), "README.md": model_card(ours)}
        _write_zip(out_zip, files, texts)
    return out_zip


def _processor_files(tokenizer, tok_dir: Path, ours: dict) -> dict[str, Path]:
    """arcname -> path of the input-processor files and scripts: ``preprocessor_config.json`` and the image
    predict.py, or the tokenizer files (``tokenizer_config.json`` with ``model_max_length`` = ``max_length``) and
    the text predict.py; both with postprocess.py (and demo.html when its template exists)."""
    tokenizer.save_pretrained(tok_dir)
    demo = {"demo.html": DEMO} if DEMO.is_file() else {}
    if ours.get("modality") == "image":
        return {"preprocessor_config.json": tok_dir / "preprocessor_config.json", "predict.py": IMAGE_TEMPLATE,
                "postprocess.py": POSTPROCESS} | demo
    if not (tok_dir / "tokenizer.json").exists():
        raise ExportError("the tokenizer has no fast (tokenizers) version, so predict.py cannot use it")
    files = {"tokenizer.json": tok_dir / "tokenizer.json", "predict.py": TEMPLATE, "postprocess.py": POSTPROCESS,
             **demo}
    tok_config = tok_dir / "tokenizer_config.json"
    if tok_config.exists():
        tc = json.loads(tok_config.read_text(encoding="utf-8"))
        tc["model_max_length"] = int(ours["max_length"])  # truncate where training and predict.py do
        for stale in ("max_length", "is_local", "local_files_only"):  # a call's arguments saved by transformers 5
            tc.pop(stale, None)
        tok_config.write_text(json.dumps(tc, indent=2), encoding="utf-8")
        files["tokenizer_config.json"] = tok_config
    for name in ("special_tokens_map.json", "vocab.txt"):
        if (tok_dir / name).exists():
            files[name] = tok_dir / name
    return files


def _write_zip(out_zip: Path, files: dict[str, Path], texts: dict[str, str]) -> None:
    """Write ``files`` (arcname -> path) and ``texts`` (arcname -> content) to ``out_zip`` under a temporary name,
    renamed when complete; entries and zip rw-r--r--."""
    fd, partial = tempfile.mkstemp(prefix=".bundle-", suffix=".zip.partial", dir=out_zip.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as z:
            for arc, src in files.items():
                z.write(src, arc)
            for arc, text in texts.items():  # rw-r--r--, like the copied files (writestr's default is rw-------)
                info = zipfile.ZipInfo(arc, date_time=time.localtime()[:6])
                info.external_attr, info.compress_type = 0o644 << 16, zipfile.ZIP_DEFLATED
                z.writestr(info, text)
        os.chmod(partial, 0o644)  # mkstemp makes it owner-only; a bundle is meant to be shared
        os.replace(partial, out_zip)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def extract_bundle(zip_path: str | Path, dest: str | Path) -> Path:
    """Unzip a bundle into ``dest`` refusing entries that would land outside it. Returns ``dest``."""
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            target = (dest / info.filename).resolve()
            if dest not in target.parents and target != dest:
                raise ExportError(f"bundle entry {info.filename!r} would be written outside {dest}")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    return dest
