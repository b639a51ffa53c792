"""Turn this bundle's logits into the task's predictions, and read this bundle's config.json. Needs only numpy (and
the standard library). Used by predict.py.

config.json is Hugging Face style (format peft-onnx-bundle/2): this project's fields sit under its
"peft_onnx_bundle" key (:func:`bundle_config`), whose "model_file" names the graph (onnx/model.onnx or
onnx/model_quantized.onnx); in bundles of format peft-onnx-bundle/1 they are the whole file and the graph is
model.onnx. The task is that section's "task" entry: ``kind`` (single_label, multi_label or regression), ``id2label``,
``thresholds`` (multi-label), ``target_mean`` / ``target_std`` (regression). Per kind:

* single_label: softmax over the logits; the prediction is the most probable label.
* multi_label: one sigmoid per label; the prediction is every label whose probability >= its threshold (tuned on
  the validation split; 0.5 when none was tuned), possibly none.
* regression: one logit; the prediction is ``logit * target_std + target_mean``, in the target's own units.

Bundles written before task kinds (no "kind", or "text-classification" / "image-classification") are single-label.
"""
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np


def softmax(logits):
    """Row-wise softmax: float64 [n, k], rows sum to 1."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def sigmoid(logits):
    """Element-wise logistic function: float64, same shape."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def safe_cell(text):
    """Neutralise spreadsheet formulas in CSV output (a cell starting with = + - @ gets a leading apostrophe;
    OWASP's CSV-injection advice); a plain number such as ``-5`` or ``+3.2e-4`` is no formula and stays as it is."""
    s = str(text)
    if s[:1] in ("+", "-") and _NUMBER.fullmatch(s):
        return s
    return "'" + s if s[:1] in ("=", "+", "-", "@") else s


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def output_problem(path):
    """Why a CSV cannot be written to ``path`` (its folder is missing, or it is a folder), or None; checked before
    any scoring, so a long run does not end in an error."""
    target = Path(path)
    if target.is_dir():
        return f"--output {path} is a folder: give a file name, e.g. {target / 'predictions.csv'}"
    if not target.resolve().parent.is_dir():
        return f"--output {path}: the folder {target.resolve().parent} does not exist; create it first"
    return None


class SingleLabel:
    """``decide(logits) -> (label ids int64 [n], probabilities float64 [n, k])``."""

    ranks = True  # a prediction is one label out of a ranking, so "top k" labels make sense

    def __init__(self, task, labels):
        self.labels = labels

    def decide(self, logits):
        probs = softmax(logits)
        return probs.argmax(-1), probs

    def header(self):
        """CSV columns of one prediction (``cells`` gives their values, label names made formula-safe)."""
        return ["label", "probability"] + [f"p_{name}" for name in self.labels]

    def cells(self, pred, probs):
        return [safe_cell(self.labels[pred]), f"{probs[pred]:.6f}"] + [f"{p:.6f}" for p in probs]

    def line(self, pred, probs):
        """Printed: label, its probability."""
        return f"{self.labels[pred]}\t{probs[pred]:.4f}"


class MultiLabel:
    """``decide(logits) -> (decisions int 0/1 [n, k], probabilities float64 [n, k])``."""

    ranks = False

    def __init__(self, task, labels):
        self.labels = labels
        self.thresholds = np.asarray(task.get("thresholds") or [0.5] * len(labels), dtype=np.float64)

    def decide(self, logits):
        probs = sigmoid(logits)
        return (probs >= self.thresholds).astype(np.int64), probs

    def chosen(self, pred):
        return [self.labels[j] for j in np.flatnonzero(pred)]

    def header(self):
        return ["labels"] + [f"p_{name}" for name in self.labels]

    def cells(self, pred, probs):
        return [safe_cell("; ".join(self.chosen(pred)))] + [f"{p:.6f}" for p in probs]

    def line(self, pred, probs):
        """Printed: the labels ("(none)" when no label passes its threshold), then their probabilities."""
        names = self.chosen(pred)
        shown = "; ".join(f"{probs[j]:.4f}" for j in np.flatnonzero(pred))
        return f"{'; '.join(names) or '(none)'}\t{shown or '-'}"


class Regression:
    """``decide(logits) -> (values float64 [n] in the target's units, None)``."""

    ranks = False

    def __init__(self, task, labels):
        self.target = labels[0]
        self.mean = float(task.get("target_mean") or 0.0)
        self.std = float(task.get("target_std") or 1.0)

    def decide(self, logits):
        return np.asarray(logits, dtype=np.float64)[:, 0] * self.std + self.mean, None

    def header(self):
        return ["prediction"]

    def cells(self, pred, probs):
        return [f"{pred:.6f}"]

    def line(self, pred, probs):
        """Printed: the predicted value."""
        return f"{pred:.4f}"


KINDS = {"single_label": SingleLabel, "multi_label": MultiLabel, "regression": Regression}


def for_config(config):
    """The post-processor of a bundle config (see the module doc).
    Raises:
        ValueError: a task kind this script does not know (a newer bundle format)."""
    config = bundle_config(config)
    task = config.get("task") or {}
    kind = str(task.get("kind") or "single_label").replace("-", "_")
    kind = "single_label" if kind in ("text_classification", "image_classification") else kind
    if kind not in KINDS:
        raise ValueError(f"task kind {kind!r} is not one this predict.py knows ({', '.join(KINDS)})")
    return KINDS[kind](task, labels(config))


def bundle_config(raw):
    """A parsed config.json -> this project's section of it: "peft_onnx_bundle" (format 2), else the whole dict
    (format 1, or a section already)."""
    return raw.get("peft_onnx_bundle", raw)


def read_config(folder):
    """This project's section of ``folder``/config.json (see :func:`bundle_config`). Raises OSError, ValueError."""
    return bundle_config(json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")))


def labels(config):
    """The output names in id order (the task's id2label; format 1: the top-level id2label)."""
    id2label = (config.get("task") or {}).get("id2label") or config["id2label"]
    return [id2label[str(i)] for i in range(len(id2label))]


def model_file(config):
    """The graph's path in the bundle folder: "onnx/model.onnx", "onnx/model_quantized.onnx" (format 1:
    "model.onnx")."""
    return config.get("model_file") or "model.onnx"


def triton_command(folder, dest, name):
    """``predict.py --triton-repository dest --triton-name name``: writes the entry (:func:`write_triton_repository`)
    and says where on stderr. Returns the exit code: 0, or 2 with one error line (a bad name, an existing entry,
    a missing file)."""
    try:
        out = write_triton_repository(folder, dest, name)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'config.pbtxt'} and {out / '1' / 'model.onnx'}; serve with: tritonserver "
          f"--model-repository {dest}", file=sys.stderr)
    return 0


def write_triton_repository(folder, dest, name):
    """A Triton Inference Server model repository entry from this bundle: ``dest/name/config.pbtxt`` (the bundle's
    triton-config/config.pbtxt with ``name`` added) and ``dest/name/1/model.onnx`` (a copy of the bundle's graph).
    Returns ``dest/name``.

    Raises:
        ValueError: a ``name`` that is not a plain folder name (letters, digits, ``_ . -``).
        FileNotFoundError: the bundle has no triton-config/config.pbtxt (format 1) or no graph.
        FileExistsError: ``dest/name`` exists and is not empty (it is never overwritten).
    """
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name or ""):
        raise ValueError(f"Triton model name {name!r}: use letters, digits, _ . - (it becomes a folder name)")
    folder = Path(folder)
    pbtxt = (folder / "triton-config" / "config.pbtxt").read_text(encoding="utf-8")
    graph = folder / model_file(read_config(folder))
    if not graph.is_file():
        raise FileNotFoundError(f"no ONNX graph {graph}")
    out = Path(dest) / name
    if out.exists() and any(out.iterdir()):  # Triton serves the highest version folder: an old one could win
        raise FileExistsError(f"{out} already exists; remove it or choose another --triton-name")
    (out / "1").mkdir(parents=True, exist_ok=True)
    (out / "config.pbtxt").write_text(f'name: "{name}"\n' + pbtxt, encoding="utf-8")
    shutil.copyfile(graph, out / "1" / "model.onnx")
    return out
