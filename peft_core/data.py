"""Load an uploaded table into a ``datasets.DatasetDict`` with a TaskSpec and a DataReport.

Accepted formats (by extension, parsed by ``peft_core.readers``): CSV (delimiter sniffed among , ; TAB |), TSV,
JSON (an array of records), JSON Lines, Parquet. Text and label columns are inferred and can be overridden. Labels
may be strings or integers; ids follow the sorted label order. Labels and texts are checked by
``peft_core.validation``; sizes are bounded by ``peft_core.limits.Limits`` (``PEFT_*`` environment variables).
Without a given test file the upload is split into train / validation / test, stratified by label and seeded
(``sklearn.model_selection.train_test_split``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from .errors import DataError
from .limits import Limits
from .readers import FORMATS, Table, read_upload
from .tasks import TaskSpec
from .validation import case_variants, check_classes, check_split_sizes, check_texts, normalise_labels

__all__ = ["FORMATS", "DataReport", "Limits", "PreparedData", "infer_columns", "prepare_data", "read_table"]
LABEL_NAMES = ("label", "labels", "category", "class", "target", "intent", "sentiment", "y")
TEXT_NAMES = ("text", "sentence", "message", "content", "review", "utterance", "document", "query", "sms")


@dataclass
class DataReport:
    """What was read, inferred, dropped and split; shown to the user before training.

    Attributes:
        rows_read: data rows in the uploaded file(s) (header excluded).
        dropped_rows: rows removed, by reason (missing text, missing label, unknown test label).
        class_counts: label -> {"train": n, "validation": n, "test": n}.
    """

    source: str
    format: str
    columns: list[str]
    text_column: str
    label_column: str
    rows_read: int
    dropped_rows: dict[str, int] = field(default_factory=dict)
    split_sizes: dict[str, int] = field(default_factory=dict)
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        """A short human summary (markdown) for the app and the CLI."""
        dropped = sum(self.dropped_rows.values())
        if self.format == "zip of image folders":
            head = (f"**{self.rows_read}** images read from `{Path(self.source).name}` ({self.format}); "
                    f"**{len(self.class_counts)}** classes (one per folder).")
        else:
            head = (f"**{self.rows_read}** rows read from `{Path(self.source).name}` ({self.format}); "
                    f"text column **{self.text_column}**, label column **{self.label_column}**; "
                    f"**{len(self.class_counts)}** classes.")
        lines = [head,
                 "Split: " + ", ".join(f"{k} {v}" for k, v in self.split_sizes.items()) + "."]
        if dropped:
            lines.append(("Skipped files: " if self.format == "zip of image folders" else "Dropped rows: ") + ", ".join(f"{v} ({k})" for k, v in self.dropped_rows.items() if v) + ".")
        lines += [f"Warning: {w}" for w in self.warnings]
        return "\n\n".join(lines)

    def class_table(self) -> pd.DataFrame:
        """Class balance: one row per label with counts per split and the share of the whole."""
        df = pd.DataFrame(self.class_counts).T.fillna(0).astype(int)
        total = df.sum(axis=1)
        df["share %"] = (100 * total / max(int(total.sum()), 1)).round(1)
        return df.rename_axis("label").reset_index()


@dataclass
class PreparedData:
    """The result of :func:`prepare_data`: splits with columns ``text`` (str) or ``image`` (file path) and
    ``label`` (int64 id)."""

    splits: "datasets.DatasetDict"  # noqa: F821  (train / validation / test)
    task: TaskSpec
    report: DataReport


def small_split_warnings(split_sizes: dict[str, int], threshold: int = 100) -> list[str]:
    """A warning when the held-out test split is small: one example moves accuracy by 1/n, so scores from a few
    dozen rows are rough (a 95 % interval is about +-1/sqrt(n) wide for accuracies near 0.5)."""
    n = split_sizes.get("test", 0)
    if 0 < n < threshold:
        return [f"the held-out test split has only {n} rows: one example moves accuracy by {100 / n:.1f} points, so "
                "treat the scores as rough; upload more data (or a larger test file) for firmer numbers"]
    return []


def split_inputs(split) -> list:
    """The model inputs of one split: its ``text`` column (str) for text tasks, ``image`` (file paths) for
    image tasks."""
    return list(split["image" if "image" in split.column_names else "text"])


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
    return s.dtype == object or pd.api.types.is_string_dtype(s)


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
    """The two chosen columns as ``text`` (str, cut to the limit) and ``label`` (int64 or str, normalised),
    without rows missing either; counts of dropped rows go to ``dropped``, warnings to ``notes``."""
    frame = table.frame
    out = pd.DataFrame({"text": frame[text], "label": frame[label]})
    miss_text = out["text"].isna() | (out["text"].astype(str).str.strip() == "")
    dropped["missing text"] = dropped.get("missing text", 0) + int(miss_text.sum())
    out = out[~miss_text]
    miss_label = out["label"].isna() | (out["label"].astype(str).str.strip() == "")
    dropped["missing label"] = dropped.get("missing label", 0) + int(miss_label.sum())
    out = out[~miss_label].copy()
    name = Path(table.source).name
    out["text"], text_notes = check_texts(out["text"].astype(str), limits, name)
    out["label"], label_notes = normalise_labels(out["label"], label)
    notes += table.warnings + [f"{name}: {n}" for n in label_notes] + text_notes
    return out.reset_index(drop=True)


def _label_order(values: pd.Series) -> list:
    uniq = values.unique().tolist()
    return sorted(uniq)


def _split(df: pd.DataFrame, fraction: float, seed: int, what: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    counts = df["label"].value_counts()
    small = counts[counts < 2]
    if len(small):
        raise DataError(f"classes with a single example cannot be split into train and {what}: "
                        f"{', '.join(map(str, small.index[:10]))}; add examples, remove them, or upload a "
                        f"separate {what} file")
    held = math.ceil(fraction * len(df))  # as sklearn rounds it
    if min(held, len(df) - held) < len(counts):
        raise DataError(f"too few rows for a stratified {what} split: {fraction:.0%} of {len(df)} rows is {held} "
                        f"rows, but each of the {len(counts)} classes needs one; upload at least "
                        f"{math.ceil(len(counts) / fraction)} rows, or a separate {what} file")
    try:
        a, b = train_test_split(df, test_size=fraction, random_state=seed, stratify=df["label"])
    except ValueError as e:
        raise DataError(f"cannot make a stratified {what} split of {len(df)} rows with {len(counts)} classes "
                        f"({e}); upload more rows or a separate {what} file") from e
    return a.reset_index(drop=True), b.reset_index(drop=True)


def _test_part(test_file, text: str, label: str, classes: list, dropped: dict[str, int], notes: list[str],
               limits: Limits) -> tuple[pd.DataFrame, int]:
    """The cleaned rows of a given test file whose labels occur in training, and its row count."""
    table = read_upload(test_file, limits)
    for c in (text, label):
        if c not in table.frame.columns:
            raise DataError(f"test file {Path(test_file).name} lacks column {c!r}; its columns are "
                            f"{list(table.frame.columns)}")
    test = _clean(table, text, label, dropped, notes, limits)
    unseen = ~test["label"].isin(classes)
    if unseen.any():
        dropped["test label not in training data"] = int(unseen.sum())
        notes.append(f"test labels not in the training data were dropped: "
                     f"{', '.join(map(repr, test['label'][unseen].unique()[:10].tolist()))}")
        test = test[~unseen].reset_index(drop=True)
    return test, len(table.frame)


def _to_datasets(parts: dict[str, pd.DataFrame], classes: list):
    """(DatasetDict with text: str and label: int64 id, class_counts label -> split -> n)."""
    import datasets

    to_id = {c: i for i, c in enumerate(classes)}
    splits, counts = {}, {str(c): {} for c in classes}
    for name, part in parts.items():
        ids = part["label"].map(to_id).astype("int64")
        splits[name] = datasets.Dataset.from_dict({"text": part["text"].tolist(), "label": ids.tolist()})
        for c, n in part["label"].value_counts().items():
            counts[str(c)][name] = int(n)
    return datasets.DatasetDict(splits), counts


def prepare_data(train_file: str | Path, test_file: str | Path | None = None, *, text_column: str | None = None,
                 label_column: str | None = None, test_fraction: float = 0.2, validation_fraction: float = 0.1,
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
        PreparedData with splits "train", "validation", "test" (columns text: str, label: int64).
    Raises:
        DataError: unreadable or too large file, bad columns, fewer than 2 classes, an inferred label column that
            looks like an id, too many classes, classes too small to split, test labels unseen in training.
    """
    if not 0 < test_fraction < 0.9 or not 0 < validation_fraction < 0.5:
        raise DataError("test_fraction must be in (0, 0.9) and validation_fraction in (0, 0.5)")
    limits = limits or Limits.from_env()
    from .image_data import is_image_upload, prepare_image_data

    if is_image_upload(train_file):
        return prepare_image_data(train_file, test_file, test_fraction=test_fraction,
                                  validation_fraction=validation_fraction, seed=seed, limits=limits,
                                  extract_dir=extract_dir)
    table = read_upload(train_file, limits)
    text, label = infer_columns(table.frame, text_column, label_column)
    dropped: dict[str, int] = {}
    warnings: list[str] = []
    df = _clean(table, text, label, dropped, warnings, limits)
    warnings += check_classes(df["label"], label, label_column is None, limits) + case_variants(df["label"], label)
    check_split_sizes(df["label"], label, test_file is not None)
    classes = _label_order(df["label"])
    rows_read = len(table.frame)
    if test_file is not None:
        test, n = _test_part(test_file, text, label, classes, dropped, warnings, limits)
        rows_read += n
        train, val = _split(df, validation_fraction, seed, "validation")
    else:
        rest, test = _split(df, test_fraction, seed, "test")
        train, val = _split(rest, validation_fraction / (1 - test_fraction), seed, "validation")
    splits, counts = _to_datasets({"train": train, "validation": val, "test": test}, classes)
    task = TaskSpec(kind="text-classification", text_column=text, label_column=label,
                    id2label={i: str(c) for i, c in enumerate(classes)})
    warnings += small_split_warnings({k: len(v) for k, v in splits.items()})
    report = DataReport(source=str(train_file), format=table.format, columns=list(table.frame.columns),
                        text_column=text, label_column=label, rows_read=rows_read,
                        dropped_rows={k: v for k, v in dropped.items() if v},
                        split_sizes={k: len(v) for k, v in splits.items()}, class_counts=counts, warnings=warnings)
    return PreparedData(splits=splits, task=task, report=report)
