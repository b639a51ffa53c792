"""Checks on the chosen text and label columns: label normalisation, class counts, long texts.

Each function either returns notes for ``DataReport.warnings`` or raises a :class:`DataError` that says what is
wrong, where and how to fix it. Decisions (documented in the README, "Input rules and limits"):

* labels: surrounding spaces are removed ("spam " -> "spam", reported); whole numbers written as decimals become
  integers ("1.0", 1.0 -> 1, reported); labels that differ only in case ("Spam", "SPAM") stay separate classes
  and are reported as a warning naming the groups, because merging could join classes the user meant apart.
* texts longer than ``Limits.long_text_chars`` are counted in a warning; longer than ``Limits.max_text_chars``
  are cut to that length (the tokenizer keeps only the first ``max_length`` tokens anyway), also reported.
"""
from __future__ import annotations

import pandas as pd

from .errors import DataError
from .limits import Limits

INTEGRAL = r"[+-]?\d{1,18}(?:\.0*)?"  # "3", "-2", "1.0", "7.00": whole numbers that fit int64
ID_MIN_ROWS = 10  # below this, a label unique per row is just a tiny file (the split check explains it)
HINT = "choose the label column (--label-column, or the Label column picker in the app)"


def _examples(values: pd.Series, convert, n: int = 3) -> str:
    """'a' → 'b' for the first n distinct values."""
    return ", ".join(f"{v!r} → {convert(v)!r}" if isinstance(v, str) else f"{float(v)!r} → {convert(v)}"
                     for v in values.unique()[:n])


def _as_int(value: str) -> int:
    return int(value.split(".")[0])


def normalise_labels(labels: pd.Series, column: str) -> tuple[pd.Series, list[str]]:
    """Canonical label values: int64 when every label is a whole number, else stripped strings.

    Args:
        labels: the non-missing labels of one file (any dtype).
        column: the label column's name, for the notes.
    Returns:
        (labels, notes): int64 or str Series with the same index; notes for DataReport.warnings.
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
    if text.str.fullmatch(INTEGRAL).all():
        ints = text.map(_as_int).astype("int64")
        odd = text[ints.astype(str) != text]
        if len(odd):
            notes.append(f"labels in column {column!r} are whole numbers; {len(odd)} written differently were read "
                         f"as integers ({_examples(odd, _as_int)})")
        return ints, notes
    return text, notes


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


def check_split_sizes(labels: pd.Series, column: str, has_test_file: bool) -> None:
    """Every class needs one example per split it goes to (train, validation, and test unless a file is given).

    Raises:
        DataError: naming the classes (with their counts) that are too small.
    """
    need = 2 if has_test_file else 3
    counts = labels.value_counts()
    small = counts[counts < need]
    if len(small):
        splits = "train and validation" if has_test_file else "train, validation and test"
        listed = ", ".join(f"{c!r} ({n})" for c, n in small.head(10).items()) + (", ..." if len(small) > 10 else "")
        raise DataError(f"{len(small)} class(es) in column {column!r} have fewer than {need} examples, too few to "
                        f"split into {splits}: {listed}; add examples, remove those rows"
                        + ("" if has_test_file else ", or upload a separate test file"))


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
