#!/usr/bin/env python3
"""Predict labels with this bundle. Needs only: onnxruntime, tokenizers, numpy.

    python predict.py "first text" "second text"
    python predict.py --csv data.csv [--column text] [--output predictions.csv]

Prints one line per text: label, probability, text (or writes a CSV with every class probability).
Files read from this folder: model.onnx (fp32; --model picks another), tokenizer.json, config.json.
"""
import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent


class Predictor:
    """Tokenize, pad per batch, run ONNX Runtime, softmax. ``predict(texts) -> (label ids [n], probs [n, K])``."""

    def __init__(self, folder=HERE, model_file="model.onnx"):
        folder = Path(folder)
        self.config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.labels = [self.config["id2label"][str(i)] for i in range(len(self.config["id2label"]))]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.config["max_length"])
        self.tokenizer.enable_padding(pad_id=self.config["pad_token_id"], pad_token=self.config["pad_token"])
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(folder / model_file), opts, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def _batch(self, texts):
        enc = self.tokenizer.encode_batch(list(texts))
        arrays = {"input_ids": [e.ids for e in enc], "attention_mask": [e.attention_mask for e in enc],
                  "token_type_ids": [e.type_ids for e in enc]}
        feed = {n: np.asarray(arrays[n], dtype=np.int64) for n in self.input_names}
        return self.session.run(["logits"], feed)[0]

    def predict(self, texts, batch_size=64):
        texts = [str(t) for t in texts]
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths pad less
        logits = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        for i in range(0, len(texts), batch_size):
            idx = order[i:i + batch_size]
            logits[idx] = self._batch([texts[j] for j in idx])
        z = np.exp(logits - logits.max(-1, keepdims=True))
        probs = z / z.sum(-1, keepdims=True)
        return probs.argmax(-1), probs


def _safe_cell(value):
    """Neutralise spreadsheet formulas in CSV output (cells starting with = + - @)."""
    s = str(value)
    return "'" + s if s[:1] in ("=", "+", "-", "@") else s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("texts", nargs="*", help="texts to classify")
    ap.add_argument("--csv", help="CSV file with a text column")
    ap.add_argument("--column", default=None, help="text column of --csv (default: from config, else 'text')")
    ap.add_argument("--output", help="write predictions to this CSV instead of printing")
    ap.add_argument("--model", default="model.onnx", help="ONNX file in this folder (e.g. model.int8.onnx)")
    args = ap.parse_args(argv)
    texts = list(args.texts)
    if args.csv:
        with open(args.csv, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        col = args.column or next((c for c in (_config_text_column(), "text") if rows and c in rows[0]), None)
        if not rows or col not in rows[0]:
            sys.exit(f"error: {args.csv} has no column {col!r}; pass --column NAME")
        texts += [r[col] for r in rows]
    if not texts:
        ap.error("give texts as arguments or --csv FILE")
    pred = Predictor(HERE, args.model)
    ids, probs = pred.predict(texts)
    if args.output:
        with open(args.output, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label", "probability"] + [f"p_{name}" for name in pred.labels])
            for t, i, p in zip(texts, ids, probs):
                w.writerow([_safe_cell(t), _safe_cell(pred.labels[i]), f"{p[i]:.6f}"] + [f"{x:.6f}" for x in p])
    else:
        for t, i, p in zip(texts, ids, probs):
            print(f"{pred.labels[i]}\t{p[i]:.4f}\t{t}")


def _config_text_column():
    try:
        return json.loads((HERE / "config.json").read_text(encoding="utf-8"))["task"]["text_column"]
    except (OSError, KeyError, ValueError):
        return "text"


if __name__ == "__main__":
    main()
