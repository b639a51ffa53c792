"""Reading the cells of a target column: label sets (lists, separated strings, one-hot columns) and numbers.

Every function names the file, the column, the rows (``places``: "line 7", "record 3", see
``peft_core.readers.Table.places``) and the fix when a cell cannot be read. Rules (README, "Task kinds"):

* label sets: a cell is a list (a JSON/JSONL array, or a CSV cell holding a JSON array such as ``["joy", "love"]``)
  or a string split on the separator (``;`` ``|`` ``,``: inferred by :func:`infer_separator`, or given); parts are
  stripped, empty parts dropped, repeats merged. An empty cell is a row with no label. A column mixing lists
  and plain values is refused.
* one-hot columns: every cell 0 or 1 (``0``, ``1``, ``0.0``, ``1.0``, true/false); anything else, an empty cell
  included, is refused.
* numbers: plain decimal numbers (``3``, ``-0.5``, ``1e-3``); NaN and infinity are refused, as are words.
"""
from __future__ import annotations

import json
import math
import re
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .errors import DataError

SEPARATORS = (";", "|", ",")
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
LEADING_ZERO = re.compile(r"[+-]?0\d")  # "01", "007": ids or codes, not quantities
ONE_HOT_TRUE = {"1", "1.0", "true"}
ONE_HOT_FALSE = {"0", "0.0", "false"}
SHOWN = 10  # rows named in one message

Places = Callable[[Sequence[int]], list[str]]


def is_missing(v) -> bool:
    """None, NaN, pd.NA or a blank string (a list is never missing, even when empty)."""
    if isinstance(v, (list, tuple, np.ndarray, dict)):
        return False
    if isinstance(v, str):
        return not v.strip()
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def as_list(v):
    """A cell as a list when it is one (a list, tuple or array, or a string holding a JSON array), else None."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return list(v)
    if isinstance(v, str) and v.strip().startswith("[") and v.strip().endswith("]"):
        try:
            got = json.loads(v)
        except json.JSONDecodeError:
            return None
        return got if isinstance(got, list) else None
    return None


def listed(places: list[str], values: list | None = None, total: int | None = None) -> str:
    """"line 4 ('x'), line 9 (empty), ... (12 in all)" for the first :data:`SHOWN` rows."""
    total = len(places) if total is None else total
    shown = [p if values is None else f"{p} (empty)" if is_missing(v) else f"{p} ({v!r})"
             for p, v in zip(places[:SHOWN], values[:SHOWN] if values is not None else places)]
    return ", ".join(shown) + (f", ... ({total} in all)" if total > SHOWN else "")


def _label_name(v) -> str | None:
    """One element of a label list as a label name (None for an element that cannot be one)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        return str(int(v))
    return None


def _scalar_name(v) -> str:
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        return str(int(v))
    return str(v)


def infer_separator(cells: pd.Series) -> str | None:
    """The separator joining several labels in one cell, or None when cells hold one label each.

    Of ``;`` ``|`` ``,``, the one found in the most cells is taken when splitting on it gives fewer distinct parts
    than there are distinct cells (the parts recur, combined in different sets: tags), not when every cell is
    unique text (a sentence with commas)."""
    text = pd.Series([c for c in cells if isinstance(c, str) and c.strip()], dtype=object)
    if text.empty:
        return None
    found = {s: int(text.str.contains(s, regex=False).sum()) for s in SEPARATORS}
    best = max(SEPARATORS, key=lambda s: (found[s], -SEPARATORS.index(s)))
    if not found[best]:
        return None
    parts = {p.strip() for cell in text.unique() for p in cell.split(best) if p.strip()}
    return best if len(parts) < text.nunique() else None


def read_sets(cells: pd.Series, column: str, file: str, places: Places, separator: str | None) -> list[list[str]]:
    """Label sets of a column's cells (see the module doc).

    Args:
        cells: the column as read (any dtype; index = row positions in the file's frame).
        separator: what joins several labels in a string cell (None: one label per cell).
    Returns:
        one sorted list of distinct label names (str) per cell; [] for an empty cell.
    Raises:
        DataError: lists mixed with plain values (naming the plain cells' rows); list elements that are not
            label names (nested lists, objects, booleans).
    """
    lists = [as_list(v) for v in cells]
    plain = [i for i, (v, lst) in enumerate(zip(cells, lists)) if lst is None and not is_missing(v)]
    n_lists = sum(lst is not None for lst in lists)
    if n_lists and plain:
        rows = cells.index[plain]
        raise DataError(f"{file}: column {column!r} mixes lists and single values: {n_lists} cells hold a list "
                        f"(like [\"a\", \"b\"]) but {len(plain)} do not: "
                        f"{listed(places(rows), [cells.iloc[i] for i in plain])}; write every cell as a list "
                        "(a single label as [\"a\"], no label as []), or every cell as labels joined by a separator")
    out, bad = [], []
    for i, (v, lst) in enumerate(zip(cells, lists)):
        if lst is None:
            parts = [] if is_missing(v) else _scalar_name(v).split(separator) if separator else [_scalar_name(v)]
        else:
            parts = [_label_name(x) for x in lst]
            if any(p is None for p in parts):
                bad.append(i)
                continue
        out.append(sorted({p.strip() for p in parts if p.strip()}))
    if bad:
        rows = cells.index[bad]
        raise DataError(f"{file}: column {column!r} has lists whose items are not label names (a label is a string "
                        f"or a whole number): {listed(places(rows), [cells.iloc[i] for i in bad])}; write each "
                        "list as label names, like [\"joy\", \"love\"]")
    return out


def binary_column(values: pd.Series) -> bool:
    """True when every cell is 0 or 1 (as written in :data:`ONE_HOT_TRUE` / :data:`ONE_HOT_FALSE`), both occur
    or not, and none is missing."""
    if values.isna().any() or values.empty:
        return False
    text = values.map(lambda v: str(v).strip().lower())
    return bool(text.isin(ONE_HOT_TRUE | ONE_HOT_FALSE).all())


def mostly_binary(values: pd.Series, share: float = 0.9) -> bool:
    """True when at least ``share`` of the cells (missing ones included) are 0 or 1 as :func:`binary_column` reads
    them, but not all: a one-hot label column with a few wrong cells, which inference keeps among the one-hot
    columns so that :func:`read_one_hot` names those cells instead of the column silently dropping out."""
    if values.empty:
        return False
    ok = values.map(lambda v: not is_missing(v) and str(v).strip().lower() in ONE_HOT_TRUE | ONE_HOT_FALSE)
    return bool(share <= ok.mean() < 1)


def read_one_hot(frame: pd.DataFrame, columns: list[str], file: str, places: Places) -> list[list[str]]:
    """Label sets from one-hot columns: row -> the names of the columns holding 1, in column order.

    Raises:
        DataError: a cell that is not 0 or 1 (empty cells included), naming column, rows and values.
    """
    hot = np.zeros((len(frame), len(columns)), dtype=bool)
    for j, c in enumerate(columns):
        text = frame[c].map(lambda v: "" if is_missing(v) else str(v).strip().lower())
        ok = text.isin(ONE_HOT_TRUE | ONE_HOT_FALSE)
        if not ok.all():
            rows = frame.index[~ok.to_numpy()]
            raise DataError(f"{file}: one-hot label column {c!r} must hold only 0 or 1, but {len(rows)} cell(s) do "
                            f"not: {listed(places(rows), frame[c][~ok.to_numpy()].tolist())}; write 1 where the "
                            f"row has the label {c!r} and 0 where it has not, or choose one label column "
                            f"instead of {', '.join(columns)}")
        hot[:, j] = text.isin(ONE_HOT_TRUE).to_numpy()
    return [[c for c, h in zip(columns, row) if h] for row in hot]


def numeric_cells(cells: pd.Series) -> pd.Series:
    """Which non-missing cells are written as numbers (decimal, or NaN / infinity), as a bool Series."""
    def ok(v) -> bool:
        if isinstance(v, bool):
            return False
        if isinstance(v, (int, float, np.integer, np.floating)):
            return True
        s = str(v).strip()
        return bool((NUMBER.fullmatch(s) and not LEADING_ZERO.match(s)) or NON_FINITE.fullmatch(s))
    return cells.map(ok).astype(bool)


def read_numbers(cells: pd.Series, column: str, file: str, places: Places, hint: str = "") -> pd.Series:
    """The numbers of a regression target column (float64; NaN where the cell is empty).

    Args:
        hint: the way out added to the words message (e.g. "or choose single-label to treat values as classes").
    Raises:
        DataError: a cell that is not a number (naming the rows and values), or NaN / infinity.
    """
    missing = cells.map(is_missing).astype(bool)
    present = cells[~missing]
    words = present[~numeric_cells(present)]
    if len(words):
        raise DataError(f"{file}: column {column!r} is a numeric target (regression), but {len(words)} of its "
                        f"{len(present)} filled cells are not numbers: "
                        f"{listed(places(words.index), words.tolist())}; write a number in each cell (a decimal point, "
                        f"not a comma), or leave the cell empty to drop the row{hint}")
    values = pd.Series(np.nan, index=cells.index, dtype="float64")
    values[~missing] = present.map(lambda v: float(str(v).strip()) if not isinstance(v, (int, float)) else float(v))
    bad = values[~missing & ~np.isfinite(values)]
    if len(bad):
        raise DataError(f"{file}: column {column!r} holds {len(bad)} value(s) that are not finite numbers (NaN or "
                        f"infinity): {listed(places(bad.index), cells[bad.index].tolist())}; a regression target "
                        "must be a finite number: fix those cells, or leave them empty to drop the rows")
    return values
