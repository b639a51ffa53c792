#!/usr/bin/env python3
"""Predict with this bundle. Needs only: onnxruntime (>= 1.23, for opset 23), tokenizers, numpy.

    python predict.py "first text" "second text"
    python predict.py --csv data.csv [--column text] [--output predictions.csv]
    python predict.py "a premise" --text-pair "a hypothesis"             # models of text pairs
    python predict.py --csv pairs.csv [--column premise --pair-column hypothesis] [--output predictions.csv]
    python predict.py --triton-repository models [--triton-name classifier]     # a Triton model repository

What a prediction is depends on the task (config.json "peft_onnx_bundle" > "task", see postprocess.py):
single-label: the label and its probability; multi-label: the set of labels whose probability reaches its
threshold, with every label's probability; regression: the number, in the target's units. Prints one
tab-separated line per text: the prediction, its probability (multi-label: those of the chosen labels;
regression: none), the text(s); or writes a CSV: the input CSV's own columns as they are (or ``text`` /
``text_pair`` for texts given as arguments), the prediction, every label's probability (not for regression), an
``error`` column; a prediction column whose name the input already has (its true ``label``) is written as
``predicted_<name>``.
A pair model takes pairs: one text plus ``--text-pair`` on the command line, or two CSV columns (by default the
training file's column names, from config.json). An empty (or whitespace-only) text on the command line is refused
(exit code 2), as in the app; an empty CSV row (either text of a pair) is not scored: its prediction and
probabilities stay empty and its error reads "empty text".
Files read from this folder: onnx/model.onnx or onnx/model_quantized.onnx (config.json "peft_onnx_bundle" >
"model_file"; its precision, fp32 or int8, is in config.json too), tokenizer.json, config.json, postprocess.py.
CSV input may be UTF-8 (with or without BOM) or Windows-1252, delimited by , ; TAB or |.
``--triton-repository DIR`` writes DIR/NAME/config.pbtxt (triton-config/config.pbtxt, named NAME) and
DIR/NAME/1/model.onnx (the graph) for Triton Inference Server's ONNX Runtime backend, and exits (exit code 2 on a
bad NAME).
"""
import argparse
import csv
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # postprocess.py sits beside this file (also when run with runpy or from elsewhere)
import postprocess  # noqa: E402
from postprocess import safe_cell  # noqa: E402


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
    """Tokenize, sort by length, pad per batch, run ONNX Runtime, then the task's post-processing.
    ``logits(items) -> float32 [n, num_labels]`` and ``predict(items) -> (predictions, probabilities)`` (see
    postprocess.py: single-label: label ids int64 [n] and softmax [n, K]; multi-label: 0/1 decisions [n, K] and
    sigmoids [n, K]; regression: values [n] and None), rows in input order. ``items``: texts, or (text,
    text_pair) tuples for a pair model, encoded as one sequence pair (truncated longest-first to max_length, as
    in training).

    One batch (a single text, a short list) runs on ``session``, whose operators use every core. Several batches
    run side by side on ``workers`` threads, each batch on one core (a second session with one intra-op thread,
    created on first use): small operators then need no thread synchronisation, which made bulk scoring ~1.2x
    faster on 2 cores (bench/)."""

    def __init__(self, folder=HERE, model_file=None, workers=None):
        folder = Path(folder)
        self.config = postprocess.read_config(folder)  # this project's section of config.json
        self.labels = postprocess.labels(self.config)
        self.post = postprocess.for_config(self.config)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.config["max_length"])
        self.tokenizer.no_padding()  # padded per batch below, to that batch's longest text
        self.pad_id = int(self.config["pad_token_id"])
        self.model_path = str(folder / (model_file or postprocess.model_file(self.config)))
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

    def logits(self, items, batch_size=64, max_tokens=MAX_TOKENS):
        """Batches hold rows of similar token count (longest first), at most ``batch_size`` rows and about
        ``max_tokens`` padded tokens (one row at least)."""
        items = [(str(i[0]), str(i[1])) if isinstance(i, (tuple, list)) else str(i) for i in items]
        enc = self.tokenizer.encode_batch(items)
        lengths = np.array([len(e.ids) for e in enc], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")
        batches, start = [], 0
        while start < len(order):
            width = max(int(lengths[order[start]]), 1)
            idx = order[start:start + max(1, min(batch_size, max_tokens // width))]
            batches.append((idx, width))
            start += len(idx)
        logits = np.zeros((len(items), len(self.labels)), dtype=np.float32)
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
        return logits

    def predict(self, items, batch_size=64, max_tokens=MAX_TOKENS):
        """``(predictions, probabilities)`` of the task (see the class doc), rows in input order."""
        return self.post.decide(self.logits(items, batch_size, max_tokens))


def _fail(message):
    """A user error: one line on stderr, exit code 2 (as argparse's own errors)."""
    print(message, file=sys.stderr)
    sys.exit(2)


def _arg_text(arg):
    """A command-line text as Python got it (undecodable bytes as surrogates) -> clean text: UTF-8, else
    Windows-1252, as for CSV files."""
    raw = arg.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def _parse(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("texts", nargs="*", help="texts to score (a pair model: one text, with --text-pair)")
    ap.add_argument("--text-pair", help="pair models: the second text of the one pair given on the command line")
    ap.add_argument("--csv", help="CSV file with a text column (pair models: two text columns)")
    ap.add_argument("--column", default=None, help="text column of --csv (default: from config, else 'text')")
    ap.add_argument("--pair-column", default=None,
                    help="pair models: second text column of --csv (default: from config, else 'text_pair')")
    ap.add_argument("--output", help="write predictions to this CSV instead of printing")
    ap.add_argument("--model", default=None, help="ONNX file in this folder (default: config.json's model_file)")
    ap.add_argument("--triton-repository", metavar="DIR",
                    help="write a Triton model repository entry DIR/NAME (config.pbtxt, 1/model.onnx) and exit")
    ap.add_argument("--triton-name", metavar="NAME", default="classifier",
                    help="the model's name (and folder) in --triton-repository (default classifier)")
    return ap, ap.parse_args(argv)


def _command_line_items(ap, args, pairs):
    """The texts (pairs) given as arguments; exits with one line on an empty text or a pair misuse."""
    texts = [_arg_text(t) for t in args.texts]
    if args.text_pair is not None:
        if not pairs:
            ap.error("--text-pair is for models of text pairs; this model scores single texts")
        if len(texts) != 1:
            ap.error(f"--text-pair pairs with exactly one text; {len(texts)} given")
        texts.append(_arg_text(args.text_pair))
    elif texts and pairs:
        ap.error("this model scores text pairs: give one text and --text-pair TEXT, or --csv FILE")
    empty = [n for n, t in enumerate(texts, 1) if not t.strip()]
    if empty:
        _fail(f"error: text {empty[0]} of {len(texts)} on the command line is empty; give a text with at least "
              "one non-space character")
    return [tuple(texts)] if args.text_pair is not None else texts


def main(argv=None):
    ap, args = _parse(argv)
    config = _config()
    if args.output and (problem := postprocess.output_problem(args.output)):
        _fail("error: " + problem)
    if args.triton_repository:
        sys.exit(postprocess.triton_command(HERE, args.triton_repository, args.triton_name))
    pairs = bool((config.get("task") or {}).get("text_pair_column"))
    items, parts = _command_line_items(ap, args, pairs), (lambda item: list(item) if pairs else [item])
    columns = ["text", "text_pair"] if pairs else ["text"]  # the output's input columns
    records = [dict(zip(columns, parts(t))) for t in items]
    if args.csv:
        csv_items, rows, columns, used = _read_csv_items(args.csv, args.column, args.pair_column, config, pairs)
        records = [dict(zip(used, parts(t))) for t in items] + rows
        items += csv_items
    if not items:
        ap.error("give texts as arguments or --csv FILE")
    model = args.model or postprocess.model_file(config)
    if not (HERE / model).is_file():
        _fail(f"error: no model file {model!r} in {HERE}")
    try:
        pred = Predictor(HERE, model)
    except ValueError as e:  # a task kind this script does not know
        _fail(f"error: {e}")
    except Exception as e:  # noqa: BLE001 - onnxruntime's own errors (e.g. --model names a file that is not ONNX)
        _fail(f"error: cannot load {model} as an ONNX model ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
    post = pred.post
    scored = [n for n, t in enumerate(items) if all(p.strip() for p in parts(t))]  # empty rows: flagged
    if scored:
        decisions, probs = pred.predict([items[n] for n in scored])
        results = {n: (decisions[i], None if probs is None else probs[i]) for i, n in enumerate(scored)}
    else:
        results = {}
    if args.output:
        # the input's own columns, all of them and as they are; a prediction column whose name the input already
        # uses (a CSV that carries its true `label`) is written as predicted_<name>
        added = [f"predicted_{h}" if h in columns else h for h in post.header() + ["error"]]
        with open(args.output, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(columns + added)
            for n, record in enumerate(records):
                cells = post.cells(*results[n]) if n in results else [""] * len(post.header())
                w.writerow([safe_cell(record.get(c) or "") for c in columns] + cells
                           + ["" if n in results else "empty text"])
        flagged = len(items) - len(scored)
        print(f"wrote {len(items)} rows to {args.output}: {len(scored)} predictions"
              + (f", {flagged} empty text(s) flagged in the error column, not scored" if flagged else ""),
              file=sys.stderr)
    else:
        for n, t in enumerate(items):
            shown = "\t".join(parts(t))
            print(f"{post.line(*results[n])}\t{shown}" if n in results else
                  f"-\t-\t{shown}\t(error: empty text, not scored)")


def _read_csv_items(path, column, pair_column, config, pairs):
    """(texts of one CSV column, or (text, text_pair) tuples of two for a pair model; the rows as dicts; the
    file's columns; the text column(s) used); exits with one line on a missing file, column or unreadable text."""
    try:
        raw = open(path, "rb").read()
    except OSError as e:
        _fail(f"error: cannot read {path}: {e.strerror}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    header = text.partition("\n")[0]
    delimiter = max(",;\t|", key=lambda d: (header.count(d), d == ","))
    # csv reads records itself: str.splitlines would also break rows at U+2028, form feeds and U+0085 in a text
    rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))
    if not rows:
        _fail(f"error: {path} has no data rows")
    task = config.get("task") or {}
    wanted = [("--column", [column] if column else [task.get("text_column") or "text", "text"])]
    if pairs:
        wanted.append(("--pair-column", [pair_column] if pair_column else
                       [task.get("text_pair_column") or "text_pair", "text_pair"]))
    cols = []
    for flag, names in wanted:
        col = next((c for c in names if c in rows[0]), None)
        if col is None:
            _fail(f"error: {path} has no column {' or '.join(repr(c) for c in dict.fromkeys(names))}; its "
                  f"columns are {list(rows[0])}; pass {flag} NAME")
        cols.append(col)
    fields = [c for c in rows[0] if c is not None]  # None: cells beyond the header's columns
    if pairs:
        return [(r[cols[0]] or "", r[cols[1]] or "") for r in rows], rows, fields, cols
    return [r[cols[0]] or "" for r in rows], rows, fields, cols


def _config():
    try:
        return postprocess.read_config(HERE)
    except (OSError, ValueError):
        return {}


if __name__ == "__main__":
    main()
