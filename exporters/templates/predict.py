#!/usr/bin/env python3
"""Predict labels with this bundle. Needs only: onnxruntime (>= 1.23, for opset 23), tokenizers, numpy.

    python predict.py "first text" "second text"
    python predict.py --csv data.csv [--column text] [--output predictions.csv]

Prints one line per text: label, probability, text (or writes a CSV with every class probability and an
``error`` column). An empty (or whitespace-only) text on the command line is refused (exit code 2), as in the
app; an empty CSV row is not scored: its label and probabilities stay empty and its error reads "empty text".
Files read from this folder: model.onnx (its precision, fp32 or int8, is in config.json), tokenizer.json,
config.json. CSV input may be UTF-8 (with or without BOM) or Windows-1252, delimited by , ; TAB or |.
"""
import argparse
import csv
import io
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent


#: most padded tokens per ONNX Runtime call: small batches of similar length keep the activations in cache
#: (measured fastest on a 2-core CPU; see the project's bench/)
MAX_TOKENS = 512

#: ONNX Runtime fusions left off: its SkipLayerNormalization CPU kernel ran slower than the Add + LayerNormalization
#: it replaces (int8 MiniLM, 512 SMS texts: 423 vs 468-524 texts/s, medians of 6 rounds; see the project's bench/)
DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]


def _cores():
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Predictor:
    """Tokenize, sort by length, pad per batch, run ONNX Runtime, softmax.
    ``predict(texts) -> (label ids int64 [n], probabilities float32 [n, K])``, rows in input order.

    One batch (a single text, a short list) runs on ``session``, whose operators use every core. Several batches
    run side by side on ``workers`` threads, each batch on one core (a second session with one intra-op thread,
    created on first use): small operators then need no thread synchronisation, which made bulk scoring ~1.2x
    faster on 2 cores (bench/)."""

    def __init__(self, folder=HERE, model_file="model.onnx", workers=None):
        folder = Path(folder)
        self.config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.labels = [self.config["id2label"][str(i)] for i in range(len(self.config["id2label"]))]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.config["max_length"])
        self.tokenizer.no_padding()  # padded per batch below, to that batch's longest text
        self.pad_id = int(self.config["pad_token_id"])
        self.model_path = str(folder / model_file)
        self.workers = max(1, int(workers or _cores()))
        self.session = self._session(0)  # 0: ONNX Runtime's default, one thread per physical core
        self._bulk = None
        self.input_names = [i.name for i in self.session.get_inputs()]

    def _session(self, threads):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.set_denormal_as_zero", "1")
        return ort.InferenceSession(self.model_path, opts, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=DISABLED_OPTIMIZERS)

    def _run(self, session, encodings, width):
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask, types = np.zeros_like(ids), np.zeros_like(ids)
        for r, e in enumerate(encodings):
            n = len(e.ids)
            ids[r, :n], mask[r, :n], types[r, :n] = e.ids, 1, e.type_ids
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return session.run(["logits"], {n: arrays[n] for n in self.input_names})[0]

    def predict(self, texts, batch_size=64, max_tokens=MAX_TOKENS):
        """Batches hold texts of similar token count (longest first), at most ``batch_size`` texts and about
        ``max_tokens`` padded tokens (one text at least)."""
        texts = [str(t) for t in texts]
        enc = self.tokenizer.encode_batch(texts)
        lengths = np.array([len(e.ids) for e in enc], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")
        batches, start = [], 0
        while start < len(order):
            width = max(int(lengths[order[start]]), 1)
            idx = order[start:start + max(1, min(batch_size, max_tokens // width))]
            batches.append((idx, width))
            start += len(idx)
        logits = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if len(batches) == 1 or self.workers == 1:
            for idx, width in batches:
                logits[idx] = self._run(self.session, [enc[j] for j in idx], width)
        else:
            if self._bulk is None:
                self._bulk = self._session(1)  # concurrent run() calls on one session are safe in ONNX Runtime

            def one(batch):
                return self._run(self._bulk, [enc[j] for j in batch[0]], batch[1])

            with ThreadPoolExecutor(self.workers) as pool:
                for (idx, _), out in zip(batches, pool.map(one, batches)):
                    logits[idx] = out
        z = np.exp(logits - logits.max(-1, keepdims=True))
        probs = z / z.sum(-1, keepdims=True)
        return probs.argmax(-1), probs


def _arg_text(arg):
    """A command-line text as Python got it (undecodable bytes as surrogates) -> clean text: UTF-8, else
    Windows-1252, as for CSV files."""
    raw = arg.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


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
    ap.add_argument("--model", default="model.onnx", help="ONNX file in this folder (default model.onnx)")
    args = ap.parse_args(argv)
    texts = [_arg_text(t) for t in args.texts]
    empty = [n for n, t in enumerate(texts, 1) if not t.strip()]
    if empty:
        print(f"error: text {empty[0]} of {len(texts)} on the command line is empty; give a text with at least "
              "one non-space character", file=sys.stderr)
        sys.exit(2)
    if args.csv:
        texts += _read_csv_column(args.csv, args.column)
    if not texts:
        ap.error("give texts as arguments or --csv FILE")
    if not (HERE / args.model).is_file():
        sys.exit(f"error: no model file {args.model!r} in {HERE}")
    pred = Predictor(HERE, args.model)
    scored = [n for n, t in enumerate(texts) if t.strip()]  # empty CSV rows are flagged, not scored
    ids, probs = pred.predict([texts[n] for n in scored]) if scored else ([], [])
    results = dict(zip(scored, zip(ids, probs)))
    if args.output:
        with open(args.output, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label", "probability"] + [f"p_{name}" for name in pred.labels] + ["error"])
            for n, t in enumerate(texts):
                if n not in results:
                    w.writerow([_safe_cell(t), "", ""] + [""] * len(pred.labels) + ["empty text"])
                    continue
                i, p = results[n]
                w.writerow([_safe_cell(t), _safe_cell(pred.labels[i]), f"{p[i]:.6f}"] + [f"{x:.6f}" for x in p]
                           + [""])
        flagged = len(texts) - len(scored)
        print(f"wrote {len(texts)} rows to {args.output}: {len(scored)} predictions"
              + (f", {flagged} empty text(s) flagged in the error column, not scored" if flagged else ""),
              file=sys.stderr)
    else:
        for n, t in enumerate(texts):
            if n not in results:
                print(f"-\t-\t{t}\t(error: empty text, not scored)")
                continue
            i, p = results[n]
            print(f"{pred.labels[i]}\t{p[i]:.4f}\t{t}")


def _read_csv_column(path, column):
    """Texts of one column of a CSV file; exits with one line on a missing file, column or unreadable text."""
    try:
        raw = open(path, "rb").read()
    except OSError as e:
        sys.exit(f"error: cannot read {path}: {e.strerror}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    header = text.partition("\n")[0]
    delimiter = max(",;\t|", key=lambda d: (header.count(d), d == ","))
    # csv reads records itself: str.splitlines would also break rows at U+2028, form feeds and U+0085 in a text
    rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))
    if not rows:
        sys.exit(f"error: {path} has no data rows")
    wanted = [column] if column else [_config_text_column(), "text"]
    col = next((c for c in wanted if c in rows[0]), None)
    if col is None:
        sys.exit(f"error: {path} has no column {' or '.join(repr(c) for c in wanted)}; its columns are "
                 f"{list(rows[0])}; pass --column NAME")
    return [r[col] or "" for r in rows]


def _config_text_column():
    try:
        return json.loads((HERE / "config.json").read_text(encoding="utf-8"))["task"]["text_column"]
    except (OSError, KeyError, ValueError):
        return "text"


if __name__ == "__main__":
    main()
