"""Load an uploaded table into a ``datasets.DatasetDict`` with a TaskSpec and a DataReport.

Accepted formats (by extension, parsed by ``peft_core.readers``): CSV (delimiter sniffed among , ; TAB |), TSV,
JSON (an array of records), JSON Lines, Parquet. Text and label columns are inferred and can be overridden. Labels
may be strings or integers; ids follow the sorted label order. Labels and texts are checked by
``peft_core.validation``; sizes are bounded by ``peft_core.limits.Limits`` (``PEFT_*`` environment variables).
Without a given test file the upload is split into train / validation / test, stratified by label and seeded
(``sklearn.model_selection.train_test_split``); with one, the upload gives train / validation. The labels of both
files are normalised together. Rows of classes too small for every split stay in training (``peft_core.splits``).
The split machinery and the report types live in ``peft_core.splits``; they are re-exported here.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .errors import DataError
from .image_data import is_image_upload, prepare_image_data
from .limits import Limits
from .readers import FORMATS, Table, read_upload
from .splits import (DataReport, PreparedData, held_out_notes, small_split_warnings, split_inputs,
                     stratified_split, to_datasets)
from .tasks import TaskSpec
from .validation import case_variants, check_classes, check_texts, normalise_labels, rare_classes

__all__ = ["FORMATS", "DataReport", "Limits", "PreparedData", "infer_columns", "prepare_data", "read_table",
           "small_split_warnings", "split_inputs"]
LABEL_NAMES = ("label", "labels", "category", "class", "target", "intent", "sentiment", "y")
TEXT_NAMES = ("text", "sentence", "message", "content", "review", "utterance", "document", "query", "sms")


def read_table(path: str | Path, *, limits: Limits | None = None) -> tuple[pd.DataFrame, str]:
    """Read one uploaded file into a DataFrame (see :func:`peft_core.readers.read_upload` for the rules).

    Args:
        limits: size/row limits; default ``Limits.from_env()``.
    Returns:
        (frame, format) where format is one of "csv", "json", "parquet".
    Raises:
        DataError: missing, empty, too large or unsupported file; content that does not match the extension;
            unreadable content (with the line where known); duplicate column names; no data rows; too many rows.
    """
    table = read_upload(path, limits)
    return table.frame, table.format


def _is_texty(s: pd.Series) -> bool:
    """A column of strings that are not all numbers (CSV cells are strings; an id column is not text)."""
    if not (s.dtype == object or pd.api.types.is_string_dtype(s)):
        return False
    return not pd.to_numeric(s.dropna().astype(str), errors="coerce").notna().all()


def infer_columns(frame: pd.DataFrame, text_column: str | None = None,
                  label_column: str | None = None) -> tuple[str, str]:
    """Pick the text and label columns (explicit names win, then common names, then content).

    Heuristics: the label column is a column named like a label ("label", "category", ...) or else the column
    with the fewest distinct values (at least 2); the text column is a column named like text or else the
    string column with the longest mean length.

    Raises:
        DataError: a named column does not exist, or no plausible column is found.
    """
    cols = list(frame.columns)
    for name, given in (("text", text_column), ("label", label_column)):
        if given and given not in cols:
            raise DataError(f"{name} column {given!r} is not in the file; columns are {cols}")
    lower = {c.lower(): c for c in cols}
    label = label_column or next((lower[n] for n in LABEL_NAMES if n in lower and lower[n] != text_column), None)
    if label is None:
        cands = [(frame[c].nunique(), c) for c in cols if c != text_column and frame[c].nunique() >= 2]
        if not cands:
            raise DataError(f"no label column found among {cols}: name one with at least 2 distinct values")
        label = min(cands)[1]
    text = text_column or next((lower[n] for n in TEXT_NAMES if n in lower and lower[n] != label), None)
    if text is None:
        texty = [c for c in cols if c != label and _is_texty(frame[c])]
        if not texty:
            raise DataError(f"no text column found among {cols}: the file needs a column of strings")
        text = max(texty, key=lambda c: frame[c].astype(str).str.len().mean())
    if text == label:
        raise DataError(f"text and label column are both {text!r}; choose two different columns")
    return text, label


def _clean(table: Table, text: str, label: str, dropped: dict[str, int], notes: list[str],
           limits: Limits) -> pd.DataFrame:
    """The two chosen columns as ``text`` (str, cut to the limit) and ``label`` (as read), without rows missing
    either; counts of dropped rows go to ``dropped``, warnings to ``notes``."""
    frame = table.frame
    out = pd.DataFrame({"text": frame[text], "label": frame[label]})
    miss_text = out["text"].isna() | (out["text"].astype(str).str.strip() == "")
    dropped["missing text"] = dropped.get("missing text", 0) + int(miss_text.sum())
    out = out[~miss_text]
    miss_label = out["label"].isna() | (out["label"].astype(str).str.strip() == "")
    dropped["missing label"] = dropped.get("missing label", 0) + int(miss_label.sum())
    out = out[~miss_label].copy()
    out["text"], text_notes = check_texts(out["text"].astype(str), limits, Path(table.source).name)
    notes += table.warnings + text_notes
    return out.reset_index(drop=True)


def _normalise(parts: list[pd.DataFrame], names: list[str], label: str, notes: list[str]) -> list[pd.DataFrame]:
    """Labels of all files normalised together (one decision per column: ints or strings, see
    ``normalise_labels``), so a test file's labels match the training file's."""
    labels = pd.concat([p["label"] for p in parts], ignore_index=True)
    if len({str(p["label"].dtype) for p in parts}) > 1:
        labels = labels.astype(object)
    canon, label_notes = normalise_labels(labels, label)
    notes += [f"{' + '.join(names)}: {n}" for n in label_notes]
    out, start = [], 0
    for p in parts:
        out.append(p.assign(label=canon.iloc[start:start + len(p)].to_numpy()))
        start += len(p)
    return out


def _test_part(test: pd.DataFrame, name: str, classes: list, dropped: dict[str, int],
               notes: list[str]) -> pd.DataFrame:
    """The rows of a given test file whose labels occur in training."""
    unseen = ~test["label"].isin(classes)
    if unseen.any():
        dropped["test label not in training data"] = int(unseen.sum())
        notes.append(f"{name}: test labels not in the training data were dropped: "
                     f"{', '.join(map(repr, test['label'][unseen].unique()[:10].tolist()))}")
        test = test[~unseen].reset_index(drop=True)
    return test


def _read_test(test_file, text: str, label: str, limits: Limits) -> Table:
    table = read_upload(test_file, limits)
    for c in (text, label):
        if c not in table.frame.columns:
            raise DataError(f"test file {Path(test_file).name} lacks column {c!r}; its columns are "
                            f"{list(table.frame.columns)}")
    return table


def _file_names(train_file, test_file) -> list[str]:
    names = [Path(train_file).name] + ([Path(test_file).name] if test_file is not None else [])
    if len(names) == 2 and names[0] == names[1]:
        names[1] += " (test file)"
    return names


def prepare_data(train_file: str | Path, test_file: str | Path | None = None, *, text_column: str | None = None,
                 label_column: str | None = None, task: str | None = None, text_pair_column: str | None = None,
                 label_separator: str | None = None, test_fraction: float = 0.2, validation_fraction: float = 0.1,
                 seed: int = 42, limits: Limits | None = None,
                 extract_dir: str | Path | None = None) -> PreparedData:
    """Load, validate and split an upload for text classification (or, for a ``.zip`` of class folders, image
    classification: see ``peft_core.image_data``; ``extract_dir`` is where its images go).

    Args:
        train_file: the upload (see module doc for formats).
        test_file: optional held-out file with the same columns; else ``test_fraction`` of the upload is held out.
        validation_fraction: share of all labelled rows used for early stopping (taken from the train part).
        seed: seed of the stratified splits.
        limits: size limits; default ``Limits.from_env()`` (the ``PEFT_*`` environment variables).
    Returns:
        PreparedData with splits "train", "validation", "test" (columns text: str, label: int64). Rows of classes
        too small for every split stay in "train" (named in ``report.warnings``).
    Raises:
        DataError: unreadable or too large file, bad columns, fewer than 2 classes, an inferred label column that
            looks like an id, too many classes, fewer than 2 classes large enough to validate, too few rows for
            a stratified split.
    """
    if not 0 < test_fraction < 0.9 or not 0 < validation_fraction < 0.5:
        raise DataError("test_fraction must be in (0, 0.9) and validation_fraction in (0, 0.5)")
    limits = limits or Limits.from_env()
    if is_image_upload(train_file):
        return prepare_image_data(train_file, test_file, test_fraction=test_fraction,
                                  validation_fraction=validation_fraction, seed=seed, limits=limits,
                                  extract_dir=extract_dir)
    table = read_upload(train_file, limits)
    text, label = infer_columns(table.frame, text_column, label_column)
    tables = [table] + ([_read_test(test_file, text, label, limits)] if test_file is not None else [])
    names = _file_names(train_file, test_file)
    dropped: dict[str, int] = {}
    warnings: list[str] = []
    parts = _normalise([_clean(t, text, label, dropped, warnings, limits) for t in tables], names, label, warnings)
    df = parts[0]
    warnings += check_classes(df["label"], label, label_column is None, limits) + case_variants(df["label"], label)
    rare = rare_classes(df["label"], label, ("validation",) if test_file is not None else ("validation", "test"))
    classes = sorted(df["label"].unique().tolist())
    if test_file is not None:
        test = _test_part(parts[1], names[1], classes, dropped, warnings)
        train, val = stratified_split(df, validation_fraction, seed, "validation", rare)
    else:
        rest, test = stratified_split(df, test_fraction, seed, "test", rare)
        train, val = stratified_split(rest, validation_fraction / (1 - test_fraction), seed, "validation", rare)
    splits, counts = to_datasets({"train": train, "validation": val, "test": test}, classes)
    task = TaskSpec(kind="text-classification", text_column=text, label_column=label,
                    id2label={i: str(c) for i, c in enumerate(classes)})
    warnings += held_out_notes(counts, label, {"test": f"the test file {names[1]}"} if test_file else None)
    warnings += small_split_warnings({k: len(v) for k, v in splits.items()})
    report = DataReport(source=str(train_file), format=table.format, columns=list(table.frame.columns),
                        text_column=text, label_column=label, rows_read=sum(len(t.frame) for t in tables),
                        dropped_rows={k: v for k, v in dropped.items() if v},
                        split_sizes={k: len(v) for k, v in splits.items()}, class_counts=counts, warnings=warnings,
                        files={n: len(t.frame) for n, t in zip(names, tables)})
    return PreparedData(splits=splits, task=task, report=report)
