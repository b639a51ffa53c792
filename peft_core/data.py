"""Load an uploaded table into a ``datasets.DatasetDict`` with a TaskSpec and a DataReport.

Accepted formats (by extension, parsed by ``peft_core.readers``): CSV (delimiter sniffed among , ; TAB |), TSV,
JSON (an array of records), JSON Lines, Parquet. The text column, a second text column (pairs), the target column(s)
and the task kind (single-label, multi-label, regression) are inferred, with the reason in the report, and can be
overridden (``peft_core.task_infer``). Targets are read, checked, split and encoded per task kind
(``peft_core.target_kinds``, cells by ``peft_core.target_cells``): class labels may be strings or integers, ids
follow the sorted label order, and labels are checked by ``peft_core.validation``; sizes are bounded by
``peft_core.limits.Limits`` (``PEFT_*`` environment variables). Without a given test file the upload is split into
train / validation / test (single-label: stratified by label; other kinds: at random; seeded,
``sklearn.model_selection.train_test_split``); with one, the upload gives train / validation. The targets of both
files are read together. Rows of classes too small for every split stay in training (``peft_core.splits``).
The split machinery and the report types live in ``peft_core.splits``; they are re-exported here.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .errors import DataError
from .image_data import is_image_upload, prepare_image_data
from .limits import Limits
from .readers import FORMATS, Table, read_upload
from .splits import DataReport, PreparedData, small_split_warnings, split_inputs
from .target_cells import is_missing, listed, read_one_hot
from .target_kinds import TargetContext, assemble, build_targets
from .task_infer import LABEL_NAMES, TEXT_NAMES, TargetChoice, choose_columns, find_pair, infer_kind
from .validation import check_texts

__all__ = ["FORMATS", "LABEL_NAMES", "TEXT_NAMES", "DataReport", "Limits", "PreparedData", "choose_target",
           "infer_columns", "prepare_data", "read_table", "small_split_warnings", "split_inputs"]


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


def infer_columns(frame: pd.DataFrame, text_column: str | None = None,
                  label_column: str | None = None) -> tuple[str, str]:
    """Pick the text and label columns (explicit names win, then common names, then content); see
    ``peft_core.task_infer`` for the rules (one-hot label columns come back comma-joined).

    Raises:
        DataError: a named column does not exist, or no plausible column is found.
    """
    text, _, labels, _ = choose_columns(frame, text_column, label_column, "")
    return text, ",".join(labels)


def _pair_rows(frame: pd.DataFrame, choice: TargetChoice, table: Table, dropped: dict[str, int],
               notes: list[str]) -> pd.Series:
    """Rows whose second text is empty (counted and named in a warning). Raises DataError when every row's is."""
    col = choice.text_pair_column
    miss = frame["text_pair"].map(is_missing).astype(bool)
    if miss.any():
        if miss.all():
            raise DataError(f"{table.name}: the second text column {col!r} is empty in every row "
                            f"({len(frame)} rows); choose the column that holds the second texts, or none for "
                            "single texts")
        dropped["missing second text"] = dropped.get("missing second text", 0) + int(miss.sum())
        places = table.places(frame["_row"][miss])
        notes.append(f"{table.name}: {int(miss.sum())} row(s) have an empty second text (column {col!r}) and were "
                     f"dropped: {listed(places)}; fill those cells to keep the rows")
    return miss


def _clean(table: Table, choice: TargetChoice, dropped: dict[str, int], notes: list[str],
           limits: Limits) -> pd.DataFrame:
    """The chosen columns as ``text`` (str, cut to the limit), ``text_pair`` (pair tasks), ``label`` (as read;
    label sets for one-hot columns) and ``_row`` (the row's position in the file), without rows missing a text;
    counts of dropped rows go to ``dropped``, warnings to ``notes``."""
    frame = table.frame
    out = pd.DataFrame({"text": frame[choice.text_column], "_row": range(len(frame))})
    if choice.text_pair_column:
        out["text_pair"] = frame[choice.text_pair_column]
    out["label"] = (read_one_hot(frame, choice.label_columns, table.name, table.places) if choice.one_hot
                    else frame[choice.label_column])
    miss_text = out["text"].map(is_missing).astype(bool)
    dropped["missing text"] = dropped.get("missing text", 0) + int(miss_text.sum())
    out = out[~miss_text]
    if choice.text_pair_column:
        out = out[~_pair_rows(out, choice, table, dropped, notes)]
    out = out.copy()
    name = table.name
    out["text"], text_notes = check_texts(out["text"].astype(str), limits, name)
    if choice.text_pair_column:
        out["text_pair"], pair_notes = check_texts(out["text_pair"].astype(str), limits, f"{name} (second text)")
        text_notes += pair_notes
    notes += table.warnings + text_notes
    return out.reset_index(drop=True)


def _read_test(test_file, columns: list[str], limits: Limits) -> Table:
    table = read_upload(test_file, limits)
    for c in columns:
        if c not in table.frame.columns:
            raise DataError(f"test file {Path(test_file).name} lacks column {c!r}; its columns are "
                            f"{list(table.frame.columns)}")
    return table


def _file_names(train_file, test_file) -> list[str]:
    names = [Path(train_file).name] + ([Path(test_file).name] if test_file is not None else [])
    if len(names) == 2 and names[0] == names[1]:
        names[1] += " (test file)"
    return names


def choose_target(frame: pd.DataFrame, text_column: str | None = None, label_column: str | None = None,
                  task: str | None = None, text_pair_column: str | None = None,
                  label_separator: str | None = None) -> TargetChoice:
    """The columns and task kind of a table, inferred where not given, with the reason (see
    ``peft_core.task_infer``). ``text_pair_column=""`` means no pair (None: inferred for well-known pairs).

    Raises:
        DataError: a named column is missing, no plausible column, a task choice that contradicts the data.
    """
    text, pair, labels, inferred = choose_columns(frame, text_column, label_column, text_pair_column)
    kind, sep, reason = infer_kind(frame, labels, task, label_separator)
    notes = find_pair(list(frame.columns), text_column, text_pair_column)[1] if pair else []
    return TargetChoice(kind, text, labels, pair, sep, reason, inferred, notes)


def prepare_data(train_file: str | Path, test_file: str | Path | None = None, *, text_column: str | None = None,
                 label_column: str | None = None, task: str | None = None, text_pair_column: str | None = None,
                 label_separator: str | None = None, test_fraction: float = 0.2, validation_fraction: float = 0.1,
                 seed: int = 42, limits: Limits | None = None,
                 extract_dir: str | Path | None = None) -> PreparedData:
    """Load, validate and split an upload: a table (single text or a text pair), or a ``.zip`` of images (class
    folders, or a ``metadata.csv`` / ``metadata.jsonl``: see ``peft_core.image_data``; ``extract_dir`` is where
    its images go).

    Args:
        train_file: the upload (see module doc for formats).
        test_file: optional held-out file with the same columns; else ``test_fraction`` of the upload is held out.
        text_column / text_pair_column / label_column: column names (None: inferred; ``text_pair_column=""``:
            no pair; ``label_column`` may name several one-hot columns comma-joined).
        task: a key of ``peft_core.tasks.TASKS`` (None: inferred, the report says why).
        label_separator: what joins several labels in a cell (multi-label; None: inferred among ; | ,).
        validation_fraction: share of all labelled rows used for early stopping (taken from the train part).
        seed: seed of the splits.
        limits: size limits; default ``Limits.from_env()`` (the ``PEFT_*`` environment variables).
    Returns:
        PreparedData with splits "train", "validation", "test": columns text (str) [+ text_pair (str)] or image
        (path), and label: int64 class id / 0-1 int list of length num_labels / float (by task kind; see
        ``peft_core.splits.PreparedData``). Rows of classes too small for every split stay in "train" (named in
        ``report.warnings``).
    Raises:
        DataError: unreadable or too large file, bad columns, targets that do not fit the task (see
            ``peft_core.target_kinds`` and ``peft_core.target_cells``: cells named with their lines), too few rows
            for the splits.
    """
    if not 0 < test_fraction < 0.9 or not 0 < validation_fraction < 0.5:
        raise DataError("test_fraction must be in (0, 0.9) and validation_fraction in (0, 0.5)")
    limits = limits or Limits.from_env()
    if is_image_upload(train_file):
        return prepare_image_data(train_file, test_file, label_column=label_column, task=task,
                                  label_separator=label_separator, test_fraction=test_fraction,
                                  validation_fraction=validation_fraction, seed=seed, limits=limits,
                                  extract_dir=extract_dir)
    table = read_upload(train_file, limits)
    choice = choose_target(table.frame, text_column, label_column, task, text_pair_column, label_separator)
    needed = [c for c in (choice.text_column, choice.text_pair_column) if c] + choice.label_columns
    tables = [table] + ([_read_test(test_file, needed, limits)] if test_file is not None else [])
    ctx = TargetContext(choice, _file_names(train_file, test_file), [t.places for t in tables], limits, seed,
                        test_fraction, validation_fraction)
    frames = [_clean(t, choice, ctx.dropped, ctx.warnings, limits) for t in tables]
    targets = build_targets(frames, ctx)
    inputs = ["text", "text_pair"] if choice.text_pair_column else ["text"]
    splits, spec = assemble(targets, ctx, inputs)
    sizes = {k: len(v) for k, v in splits.items()}
    report = DataReport(source=str(train_file), format=table.format, columns=list(table.frame.columns),
                        text_column=choice.text_column, label_column=choice.label_column,
                        rows_read=sum(len(t.frame) for t in tables),
                        dropped_rows={k: v for k, v in ctx.dropped.items() if v}, split_sizes=sizes,
                        class_counts=targets.class_counts, warnings=ctx.warnings + small_split_warnings(sizes),
                        files={n: len(t.frame) for n, t in zip(ctx.names, tables)}, notes=choice.notes,
                        task=choice.kind, task_reason=choice.reason, text_pair_column=choice.text_pair_column,
                        targets=targets.described, target_summary=targets.summary, no_label_rows=targets.no_label)
    file_rows = {k: [int(r) for r in v["_row"]] for k, v in targets.parts.items()}
    return PreparedData(splits=splits, task=spec, report=report, file_rows=file_rows)
