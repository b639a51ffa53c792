"""Checks on the chosen text and label columns: label normalisation, class counts, long texts.

Each function either returns notes for ``DataReport.warnings`` or raises a :class:`DataError` that says what is
wrong, where and how to fix it. Decisions (documented in the README, "Input rules and limits"):

* labels: surrounding spaces are removed ("spam " -> "spam", reported). A column whose labels are all integers
  or whole numbers written as decimals ("1", "1.0", "7.00", 1.0) becomes integer classes, and every group of
  spellings merged into one class is named ("'1' and '1.0' → 1"). If any label is written with a leading zero
  or plus sign ("01", "+1", "007": ids, zip codes), all labels stay text, and labels equal as numbers are named
  in a warning. Labels that differ only in case ("Spam", "SPAM") stay separate classes and are reported as a
  warning naming the groups, because merging could join classes the user meant apart.
* classes with too few rows to give one to every split (fewer than 3, or 2 with a test file) keep all their
  rows in training; they cannot be validated or tested, and the report says so. At least 2 classes must be
  left to validate.
* texts longer than ``Limits.long_text_chars`` are counted in a warning; longer than ``Limits.max_text_chars``
  are cut to that length (the tokenizer keeps only the first ``max_length`` tokens anyway), also reported.
"""
from __future__ import annotations

import pandas as pd

from .errors import DataError
from .limits import Limits

PLAIN_INT = r"0|-?[1-9]\d{0,17}"  # "0", "3", "-2": integers as written by str(int), that fit int64
DECIMAL_WHOLE = r"(?:0|-?[1-9]\d{0,17})\.0+"  # "1.0", "7.00": whole numbers written as decimals
NUMBER = r"[+-]?\d+(?:\.\d*)?"  # any plain number spelling ("01", "+1", "1.50")
ID_MIN_ROWS = 10  # below this, a label unique per row is just a tiny file (the split check explains it)
HINT = "choose the label column (--label-column, or the Label column picker in the app)"


def _examples(values: pd.Series, convert, n: int = 3) -> str:
    """'a' → 'b' for the first n distinct values."""
    return ", ".join(f"{v!r} → {convert(v)!r}" if isinstance(v, str) else f"{float(v)!r} → {convert(v)}"
                     for v in values.unique()[:n])


def _as_int(value: str) -> int:
    return int(value.split(".")[0])


def _joined(values: list[str]) -> str:
    """"'1' and '1.0'", "'2', '2.0' and '2.00'"."""
    quoted = [repr(v) for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _integer_notes(text: pd.Series, ints: pd.Series, column: str) -> list[str]:
    """Notes naming every group of spellings merged into one integer class, and respelled labels."""
    spellings = pd.DataFrame({"text": text, "int": ints}).drop_duplicates().sort_values(["int", "text"])
    merged, respelled = [], []
    for value, group in spellings.groupby("int", sort=True):
        names = group["text"].tolist()
        if len(names) > 1:
            merged.append(f"{_joined(names)} → {value}")
        elif names[0] != str(value):
            respelled.append(f"{names[0]!r} → {value}")
    notes = []
    if merged:
        notes.append(f"labels in column {column!r} written differently but equal as whole numbers were merged "
                     f"into one class each: {'; '.join(merged)}")
    if respelled:
        notes.append(f"labels in column {column!r} are whole numbers written as decimals and are used as integers "
                     f"({', '.join(respelled[:5])}{', ...' if len(respelled) > 5 else ''})")
    return notes


def _numeric_twins(text: pd.Series, column: str) -> list[str]:
    """A warning naming labels kept as text that are equal as numbers ('1', '01', '1.0')."""
    uniq = pd.Series(text.unique())
    numeric = uniq[uniq.str.fullmatch(NUMBER)]
    groups = [sorted(g.tolist()) for _, g in numeric.groupby(numeric.astype(float)) if len(g) > 1]
    if not groups:
        return []
    return [f"labels in column {column!r} are kept as text, because some are written with a leading zero or "
            f"plus sign (like ids or zip codes); so these labels, equal as numbers, stay separate classes: "
            f"{'; '.join(' / '.join(map(repr, g)) for g in groups[:10])}{'; ...' if len(groups) > 10 else ''}. If they mean the same class, write "
            "them the same way in the file"]


def normalise_labels(labels: pd.Series, column: str) -> tuple[pd.Series, list[str]]:
    """Canonical label values: int64 when every label is an integer or a whole number written as a decimal
    ("1", "-2", "1.0", "7.00", 1.0), else stripped strings (so "01", "+1" and "007" keep every label as text).

    Args:
        labels: the non-missing labels of one file (any dtype).
        column: the label column's name, for the notes.
    Returns:
        (labels, notes): int64 or str Series with the same index; notes for DataReport.warnings naming every
        group of spellings merged into one class ("'1' and '1.0' → 1").
    """
    notes: list[str] = []
    if pd.api.types.is_bool_dtype(labels):
        return labels.astype(str), notes
    if pd.api.types.is_integer_dtype(labels):
        return labels.astype("int64"), notes
    if pd.api.types.is_float_dtype(labels):
        if (labels == labels.round()).all() and labels.abs().max() < 2 ** 53:
            notes.append(f"labels in column {column!r} were stored as decimal numbers; being whole numbers they "
                         f"are used as integer classes ({_examples(labels, int)})")
            return labels.astype("int64"), notes
        return labels.astype(str), notes
    raw = labels.astype(str)
    text = raw.str.strip()
    spaced = raw[raw != text]
    if len(spaced):
        notes.append(f"{len(spaced)} label(s) in column {column!r} had spaces around them, which were removed "
                     f"({_examples(spaced, str.strip)})")
    if (text.str.fullmatch(PLAIN_INT) | text.str.fullmatch(DECIMAL_WHOLE)).all():
        ints = text.map(_as_int).astype("int64")
        return ints, notes + _integer_notes(text, ints, column)
    return text, notes + _numeric_twins(text, column)


def case_variants(labels: pd.Series, column: str) -> list[str]:
    """A warning naming label groups that differ only in upper/lower case (kept as separate classes)."""
    if not (labels.dtype == object or pd.api.types.is_string_dtype(labels)):
        return []
    uniq = pd.Series(labels.unique())
    groups = [sorted(g.tolist()) for _, g in uniq.groupby(uniq.str.casefold()) if len(g) > 1]
    if not groups:
        return []
    listed = "; ".join(" / ".join(repr(v) for v in g) for g in groups[:5]) + ("; ..." if len(groups) > 5 else "")
    return [f"labels in column {column!r} differ only in upper/lower case and are kept as separate classes: "
            f"{listed}. If they mean the same class, write them the same way in the file"]


def check_classes(labels: pd.Series, column: str, inferred: bool, limits: Limits) -> list[str]:
    """Refuse label columns a classifier cannot learn from; warn about suspicious ones.

    Args:
        labels: cleaned labels of the training file (no missing values).
        inferred: the label column was chosen by inference, not by the user.
    Raises:
        DataError: fewer than 2 classes; an inferred column with a different value in every row (an id);
            more classes than ``limits.max_classes``.
    """
    counts = labels.value_counts()
    n, k = len(labels), len(counts)
    if k < 2:
        raise DataError(f"column {column!r} has only one class ({counts.index[0] if k else 'none'}) after dropping "
                        f"empty rows; a classifier needs at least 2 — add examples of other classes or {HINT}")
    if inferred and n >= ID_MIN_ROWS and k == n:
        raise DataError(f"the label column {column!r} was inferred, but it has a different value in every row ({n} "
                        f"values in {n} rows): it looks like an id, not a label; {HINT}")
    if k > limits.max_classes:
        raise DataError(f"column {column!r} has {k:,} classes; the limit is {limits.max_classes:,} "
                        f"(PEFT_MAX_CLASSES); is it really the label? Otherwise {HINT}, or raise the limit")
    if k > 0.5 * n:
        return [f"column {column!r} has {k} distinct values for {n} rows: is it an id rather than a label?"]
    return []


def rare_classes(labels: pd.Series, column: str, carved: tuple[str, ...] = ("validation", "test")) -> list:
    """The classes too small to give an example to training and to every split carved out of the same data
    (``carved``: "validation" and "test", or only "validation" when a test file is given, so 3 or 2 rows). Their
    rows stay in training; the DataReport names them (``peft_core.splits.held_out_notes``).

    Args:
        labels: cleaned labels of the data the splits are carved from.
        carved: the held-out splits carved from it.
    Returns:
        the rare labels, most frequent first (empty when nothing is carved).
    Raises:
        DataError: fewer than 2 classes would be left to validate (naming the small classes and their counts).
    """
    need = 1 + len(carved)
    counts = labels.value_counts()
    small = counts[counts < need]
    if carved and len(counts) - len(small) < 2:
        splits = " and ".join(("train", *carved)).replace(" and ", ", ", len(carved) - 1)
        listed = ", ".join(f"{c!r} ({n})" for c, n in small.head(10).items()) + (", ..." if len(small) > 10 else "")
        test = ("" if "test" not in carved or not (small == 2).any() else
                ", or upload a separate test file (then 2 examples per class are enough)")
        raise DataError(f"{len(small)} of the {len(counts)} classes in column {column!r} have fewer than {need} "
                        f"examples, too few to split into {splits}: {listed}; that leaves {len(counts) - len(small)} "
                        f"class(es) to validate, and at least 2 are needed: add examples of those classes (at least "
                        f"{need} each){test}, or {HINT}")
    return small.index.tolist()


def check_texts(texts: pd.Series, limits: Limits, name: str) -> tuple[pd.Series, list[str]]:
    """Count long texts and cut overlong ones.

    Args:
        texts: str Series; name: the file name for the notes.
    Returns:
        (texts cut to ``limits.max_text_chars`` characters, notes).
    """
    lengths = texts.str.len()
    notes = []
    long = int((lengths > limits.long_text_chars).sum())
    if long:
        notes.append(f"{name}: {long} text(s) are longer than {limits.long_text_chars:,} characters (longest "
                     f"{int(lengths.max()):,}); the model reads only the first max_length tokens of each text "
                     "(128 by default, a few hundred words) and ignores the rest")
    over = int((lengths > limits.max_text_chars).sum())
    if over:
        texts = texts.str.slice(0, limits.max_text_chars)
        notes.append(f"{name}: {over} text(s) were cut to {limits.max_text_chars:,} characters "
                     "(PEFT_MAX_TEXT_CHARS)")
    return texts, notes
