"""The deployable bundle: one zip that serves with ONNX Runtime alone.

Contents: ``model.onnx``, ``tokenizer.json`` (+ ``tokenizer_config.json``), ``config.json`` (labels, the task spec
with its kind, problem_type, multi-label thresholds, regression target mean / std and text-pair column, max_length,
padding token, input names, base model, method, hyper-parameters, metrics, parity), ``predict.py`` (needs only
onnxruntime, tokenizers, numpy) and ``postprocess.py`` (logits -> the task's predictions, numpy only); for image
models ``preprocessor_config.json`` and the preprocessing in ``config.json`` instead of the tokenizer, and a
``predict.py`` that needs only onnxruntime, numpy, Pillow; ``parity.json``, ``metrics.json`` and ``README.md``
(model card). The zip is written under a temporary name and renamed when complete, and is refused when parity
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

from .parity import ParityReport

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = TEMPLATES / "predict.py"
IMAGE_TEMPLATE = TEMPLATES / "predict_image.py"
POSTPROCESS = TEMPLATES / "postprocess.py"


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
```
{_use(task)}
```
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
            + (f" ({'; '.join(fitted)}; in config.json \"task\")." if fitted else "."))


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
    q = cfg.get("int8")
    if cfg.get("precision") != "int8" or not q:
        return "Precision: fp32 (the model exactly as exported and checked above)."
    return (f"Precision: int8 (ONNX Runtime dynamic quantization of the checked fp32 model). Held-out {q['metric']} "
            f"{q['int8_score']:.4f} vs fp32 {q['fp32_score']:.4f} (rule: {q['limit']}); int8 gives "
            f"{q.get('agreement_means', 'the same label as fp32')} on {100 * q['agreement']:.2f}% of {q['rows']} "
            "rows. Dynamic quantization computes one activation "
            "scale per batch, so a text's outputs shift slightly with the texts batched beside it (on SMS "
            "Spam, one at a time vs in bulk: 9 of 5,574 labels differed); use the fp32 bundle where every text must "
            "score the same whatever it is batched with.")


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


def build_bundle(out_zip: str | Path, onnx_path: str | Path, tokenizer, config: dict,
                 parity: ParityReport, extra_files: dict[str, str | Path] | None = None) -> Path:
    """Write the bundle zip.

    Args:
        config: the bundle config (see module doc); must hold id2label, max_length, metrics, parity, ...
        extra_files: arcname -> path of further files to include (e.g. ``model.int8.onnx``).
    Returns:
        Path of the finished zip.
    Raises:
        ExportError: parity failed (the bundle is not written) or a file is missing.
    """
    if not parity.passed:
        raise ExportError("the ONNX model did not match PyTorch, so no bundle is offered: " + parity.summary())
    out_zip = Path(out_zip)
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bundle_") as tmp:
        tok_dir = Path(tmp) / "tok"
        tokenizer.save_pretrained(tok_dir)
        if config.get("modality") == "image":
            files = {"model.onnx": Path(onnx_path), "preprocessor_config.json": tok_dir / "preprocessor_config.json",
                     "predict.py": IMAGE_TEMPLATE, "postprocess.py": POSTPROCESS}
        else:
            if not (tok_dir / "tokenizer.json").exists():
                raise ExportError("the tokenizer has no fast (tokenizers) version, so predict.py cannot use it")
            files = {"model.onnx": Path(onnx_path), "tokenizer.json": tok_dir / "tokenizer.json",
                     "predict.py": TEMPLATE, "postprocess.py": POSTPROCESS}
            if (tok_dir / "tokenizer_config.json").exists():
                files["tokenizer_config.json"] = tok_dir / "tokenizer_config.json"
        files.update({k: Path(v) for k, v in (extra_files or {}).items()})
        config = _shareable(config)
        texts = {"config.json": json.dumps(config, indent=2),
                 "parity.json": json.dumps(_shareable(parity.to_dict()), indent=2),
                 "metrics.json": json.dumps(config["metrics"], indent=2), "README.md": model_card(config)}
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
    return out_zip


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
