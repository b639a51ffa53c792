"""Which columns are the inputs and the target, and which task kind the target asks for, with the reason in words.

Columns (explicit names win):

* the pair column: ``text_pair_column`` when given ("" means none); else the second of a well-known pair of column
  names (:data:`PAIRS`, case-insensitive) when both are in the file and the text column is not given or is the
  first of the pair. The text column is then the first of the pair.
* the target: ``label_column`` (several one-hot columns comma-joined: ``"toxic,obscene,insult"``); else a column
  named like a label (:data:`LABEL_NAMES`); else, when two or more columns hold only 0 and 1, those columns as
  one-hot labels; else the column with the fewest distinct values (at least 2), unless that column has more than
  :data:`FEW_CLASSES` of them and the file has numeric columns: then the first numeric column (a file of several
  scores, such as EmoBank's valence, arousal, dominance, gives its first one; the report names it).
* the text column: named like text (:data:`TEXT_NAMES`) or else the string column with the longest mean length.

Task kind (``task`` given wins, checked against the data):

* several one-hot columns, or a column of lists (JSON arrays), or strings joined by a separator (``;`` ``|``
  ``,``, or ``label_separator``): multi-label;
* a numeric column: regression, unless it holds whole numbers only and either at most :data:`FEW_CLASSES`
  distinct values (0/1/2, 1..5 stars) or a class-like name (:data:`CLASS_NAMES`): then single-label. A column
  that is at least 90 % numbers is read as numeric, so its words are named rather than turned into classes;
* anything else: single-label.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .errors import DataError
from .target_cells import (SEPARATORS, as_list, binary_column, infer_separator, is_missing, mostly_binary,
                           numeric_cells)
from .tasks import TASKS

LABEL_NAMES = ("label", "labels", "category", "class", "target", "intent", "sentiment", "y", "tags", "score",
               "rating")
TEXT_NAMES = ("text", "sentence", "message", "content", "review", "utterance", "document", "query", "sms")
PAIRS = (("premise", "hypothesis"), ("sentence1", "sentence2"), ("question1", "question2"), ("text_a", "text_b"),
         ("sentence_a", "sentence_b"), ("query", "passage"))
CLASS_NAMES = {"label", "labels", "class", "category", "intent", "sentiment", "topic", "class_id", "label_id"}
FEW_CLASSES = 10  # whole-number targets with at most this many values are classes by default
NUMERIC_SHARE = 0.9  # a column with at least this share of numbers is read as numeric
HINT = "choose the label column (--label-column, or the Label column picker in the app)"


@dataclass
class TargetChoice:
    """The chosen columns and task kind.

    Attributes:
        kind: a key of ``peft_core.tasks.TASKS``.
        label_columns: the target column, or the one-hot columns in file order.
        separator: multi-label only: what joins labels in a cell ("" for lists, one-hot columns or one label per
            cell); None for other kinds.
        reason: one sentence saying why this kind (shown in the data report).
        inferred: the target column was inferred, not named by the user.
        notes: plain information for the report (the pair inferred).
    """

    kind: str
    text_column: str
    label_columns: list[str]
    text_pair_column: str | None = None
    separator: str | None = None
    reason: str = ""
    inferred: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def label_column(self) -> str:
        """The target column's name; one-hot columns comma-joined."""
        return ",".join(self.label_columns)

    @property
    def one_hot(self) -> bool:
        return len(self.label_columns) > 1


def _check(cols: list, name: str, given: str | None) -> None:
    if given and given not in cols:
        raise DataError(f"{name} column {given!r} is not in the file; columns are {cols}")


def find_pair(cols: list, text_column: str | None, text_pair_column: str | None) -> tuple[str | None, list[str]]:
    """(pair column or None, notes saying which well-known pair was found)."""
    if text_pair_column is not None:
        return text_pair_column or None, []
    lower = {str(c).lower(): c for c in cols}
    for a, b in PAIRS:
        if a in lower and b in lower and text_column in (None, lower[a]):
            return lower[b], [f"Text pair: columns `{lower[a]}` and `{lower[b]}` are a well-known pair, so each row "
                              f"is read as a pair of texts (the tokenizer encodes them together); choose no second "
                              f"text column to use `{lower[a]}` alone."]
    return None, []


def _label_columns(frame: pd.DataFrame, label_column: str | None, taken: set) -> tuple[list[str], bool]:
    """(target columns, inferred)."""
    cols = list(frame.columns)
    if label_column:
        if label_column in cols:
            return [label_column], False
        names = [c.strip() for c in label_column.split(",") if c.strip()]
        if len(names) > 1:
            missing = [c for c in names if c not in cols]
            if missing:
                raise DataError(f"one-hot label column(s) {missing} are not in the file; columns are {cols}")
            return names, False
        _check(cols, "label", label_column)
    lower = {str(c).lower(): c for c in cols if c not in taken}
    named = next((lower[n] for n in LABEL_NAMES if n in lower), None)
    if named is not None:
        return [named], True
    binary = [c for c in cols if c not in taken and binary_column(frame[c])]
    if len(binary) >= 2:  # one-hot columns; one with a few cells other than 0/1 stays, to be named when read
        return [c for c in cols if c in binary or (c not in taken and mostly_binary(frame[c]))], True
    cands = [(frame[c].nunique(), c) for c in cols if c not in taken and frame[c].nunique() >= 2]
    if not cands:
        raise DataError(f"no label column found among {cols}: name one with at least 2 distinct values")
    fewest = min(cands)
    if fewest[0] > FEW_CLASSES:  # no class-like column: several numeric targets (EmoBank's V, A, D) -> the first
        numeric = [c for _, c in cands if numeric_cells(frame[c]).mean() >= NUMERIC_SHARE and not _id_like(frame[c])]
        if numeric:
            return [numeric[0]], True
    return [fewest[1]], True


def _id_like(s: pd.Series) -> bool:
    """A row id: whole numbers, a different one on every row (``row_id`` 0..n-1), never a target to infer."""
    v = pd.to_numeric(s, errors="coerce")
    return bool(v.notna().all() and v.is_unique and (v == v.round()).all())


def choose_labels(frame: pd.DataFrame, label_column: str | None, taken: set) -> tuple[list[str], bool]:
    """(target column(s), inferred) among the columns not in ``taken`` (see the module doc).

    Raises:
        DataError: a named column is not in the file; no column with 2 distinct values.
    """
    return _label_columns(frame, label_column, set(taken))


def _is_texty(s: pd.Series) -> bool:
    """A column of strings that are not all numbers (CSV cells are strings; an id column is not text)."""
    if not (s.dtype == object or pd.api.types.is_string_dtype(s)):
        return False
    return not pd.to_numeric(s.dropna().astype(str), errors="coerce").notna().all()


def _text(frame: pd.DataFrame, taken: set) -> str:
    cols = list(frame.columns)
    lower = {str(c).lower(): c for c in cols if c not in taken}
    text = next((lower[n] for n in TEXT_NAMES if n in lower), None)
    if text is None:
        texty = [c for c in cols if c not in taken and _is_texty(frame[c])]
        if not texty:
            raise DataError(f"no text column found among {cols}: the file needs a column of strings")
        text = max(texty, key=lambda c: frame[c].astype(str).str.len().mean())
    return text


def choose_columns(frame: pd.DataFrame, text_column: str | None = None, label_column: str | None = None,
                   text_pair_column: str | None = None) -> tuple[str, str | None, list[str], bool]:
    """(text column, pair column or None, target column(s), target inferred) by the rules of the module doc.

    Raises:
        DataError: a named column is not in the file; no plausible column; the same column chosen twice.
    """
    cols = list(frame.columns)
    _check(cols, "text", text_column)
    _check(cols, "second text (pair)", text_pair_column)
    pair, _ = find_pair(cols, text_column, text_pair_column)
    if pair is not None and text_column is None:
        first = next((a for a, b in PAIRS if b == str(pair).lower()), None)
        text_column = {str(c).lower(): c for c in cols}.get(first) if first else None
    labels, inferred = _label_columns(frame, label_column, {c for c in (text_column, pair) if c})
    try:
        text = text_column or _text(frame, set(labels) | {pair})
    except DataError:
        if pair is None and not inferred:
            raise
        roles = ([f"`{', '.join(labels)}` as the label{' (inferred)' if inferred else ''}"]
                 + ([f"`{pair}` as the second text"] if pair else []))
        raise DataError(f"no text column left among {cols} once {' and '.join(roles)} are taken: the file needs a "
                        "column of strings for the (first) text; name the columns with --text-column, "
                        "--label-column and --text-pair-column (the app's pickers)") from None
    for used in (text, pair):
        if used in labels:
            raise DataError(f"column {used!r} is chosen both as text and as label; choose different columns")
    if pair == text:
        raise DataError(f"text and second text (pair) column are both {text!r}; choose two different columns")
    return text, pair, labels, inferred


def _numeric_kind(cells: pd.Series, column: str) -> tuple[str, str] | None:
    """("regression" | "single_label", reason) for a numeric column, None when the column is not numeric."""
    num = numeric_cells(cells)
    if not len(cells) or num.mean() < NUMERIC_SHARE:
        return None
    values = pd.to_numeric(cells[num].astype(str).str.strip(), errors="coerce")
    finite = values[values.abs() < float("inf")]
    distinct = int(finite.nunique())
    whole = bool((finite == finite.round()).all())
    if whole and (distinct <= FEW_CLASSES or str(column).lower() in CLASS_NAMES):
        values = ", ".join(str(int(v)) for v in sorted(finite.unique())[:FEW_CLASSES])
        why = f"{distinct} distinct values" if distinct > FEW_CLASSES else f"only {distinct} distinct values ({values})"
        return "single_label", (f"`{column}` holds whole numbers with {why} → single-label (each value a class); "
                                "choose regression to predict them as numbers")
    return "regression", (f"`{column}` is numeric with {distinct} distinct values → regression; choose single-label "
                          "to treat values as classes")


def _check_separator(cells: pd.Series, column: str, separator: str) -> None:
    """Refuse a chosen separator found in no cell when another one joins the labels."""
    text = cells.astype(str)
    if text.str.contains(separator, regex=False).any():
        return
    other = infer_separator(cells)
    if other:
        n = int(text.str.contains(other, regex=False).sum())
        raise DataError(f"the label separator {separator!r} occurs in no cell of column {column!r}, but {other!r} "
                        f"joins labels in {n} cells; set the separator to {other!r}, or leave it empty to infer it")


def infer_kind(frame: pd.DataFrame, labels: list[str], task: str | None, separator: str | None
               ) -> tuple[str, str | None, str]:
    """(kind, separator, reason) for the target columns (see the module doc).

    Args:
        task: the kind chosen by the user (a key of TASKS, hyphens allowed) or None to infer.
        separator: the label separator chosen by the user, or None to infer.
    Raises:
        DataError: a choice that contradicts the data (one-hot columns with a single-label or regression task, a
            separator with another task than multi-label), an unknown task.
    """
    multi = "multi_label"
    if task is not None:
        task = str(task).strip().replace("-", "_")
        if task not in TASKS:
            raise DataError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if len(labels) > 1:
        if task not in (None, multi):
            raise DataError(f"several label columns ({', '.join(labels)}) are one-hot multi-label targets; "
                            f"choose the multi-label task, or one label column for {task.replace('_', '-')}")
        why = "hold only 0/1" if task is None else "were chosen"
        named = ", ".join(f"`{c}`" for c in labels)
        return multi, "", f"the {len(labels)} label columns {named} {why} → multi-label (one-hot)"
    column = labels[0]
    cells = frame[column][~frame[column].map(is_missing).astype(bool)]
    if separator and task not in (None, multi):
        raise DataError(f"a label separator ({separator!r}) splits multi-label sets; leave it empty for the "
                        f"{task.replace('_', '-')} task, or choose multi-label")
    if separator:
        _check_separator(cells, column, separator)
    has_lists = any(as_list(v) is not None for v in cells)
    if has_lists and task not in (None, multi):
        raise DataError(f"column {column!r} holds lists (several labels per row), which the "
                        f"{task.replace('_', '-')} task cannot read; choose multi-label, or another label column")
    if has_lists and task in (None, multi):
        return multi, "", f"column `{column}` holds lists of labels → multi-label"
    sep = separator if separator else infer_separator(cells) if task in (None, multi) else None
    if sep and task in (None, multi):
        how = "chosen" if separator else "inferred"
        return multi, sep, f"column `{column}` holds `{sep}`-separated sets ({how} separator) → multi-label"
    if task == multi:
        return multi, "", (f"multi-label as chosen; no separator ({' '.join(f'`{s}`' for s in SEPARATORS)}) "
                           f"was found in column `{column}`, so each cell is one label; set the label separator if "
                           "another one joins the labels")
    numeric = _numeric_kind(cells, column)
    if task is not None:
        return task, None, f"{task.replace('_', '-')} as chosen (column `{column}`)"
    if numeric:
        return numeric[0], None, numeric[1]
    return "single_label", None, (f"column `{column}` holds one value per row ({cells.nunique()} distinct) → "
                                  "single-label")
