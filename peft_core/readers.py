"""Read one uploaded file into a DataFrame, or say precisely why it cannot be read.

CSV/TSV/TXT are parsed by ``pandas.read_csv`` (C engine) after the encoding is settled here (UTF-8, UTF-8 with
BOM, UTF-16 with BOM, else Windows-1252 / Latin-1) and the delimiter is chosen among , ; TAB | from the header
line; CSV cells are read as written (strings: "01" stays "01", so labels keep their spelling; empty cells are
missing). JSON (an array of records, ``{"data": [...]}``, or columns as lists) and JSON Lines are parsed with the
standard ``json`` module so errors carry line numbers; Parquet through ``pandas.read_parquet`` (pyarrow).
Nothing is written to disk. Every failure is a :class:`DataError` naming the file, the place and the fix.
"""
from __future__ import annotations

import csv
import io
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import DataError
from .limits import Limits

FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
MAGIC = [(b"PAR1", "a Parquet file", "rename it to .parquet"),
         (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook is one)", "save the sheet as CSV and upload that"),
         (b"\x1f\x8b", "a gzip archive", "decompress it and upload the file inside"),
         (b"%PDF", "a PDF document", "export the table as CSV"),
         (b"\x89PNG", "a PNG image", "upload a table (CSV, TSV, JSON, JSONL or Parquet)"),
         (b"\xff\xd8\xff", "a JPEG image", "upload a table (CSV, TSV, JSON, JSONL or Parquet)"),
         (b"\xd0\xcf\x11\xe0", "an old Excel/Office file", "save the sheet as CSV and upload that")]
CONTROL = bytes(b for b in range(32) if b not in b"\t\n\x0b\x0c\r\x1a\x1b")  # control bytes text never holds (NUL counted apart)
HTML = re.compile(rb"^\s*(<!doctype html|<html|<head|<body|<\?xml|<!--)", re.IGNORECASE)


@dataclass
class Table:
    """A parsed upload: ``frame`` (one row per record, columns named as in the file, stripped), its format
    ("csv", "json" or "parquet"), the file it came from, and notes for the DataReport (encoding guessed, mixed
    JSON keys, ...)."""

    frame: pd.DataFrame
    format: str
    source: str
    warnings: list[str] = field(default_factory=list)
    _places: list[str] | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        """The file's name, for messages."""
        return Path(self.source).name

    def places(self, rows) -> list[str]:
        """Where data rows (0-based positions in ``frame``) are in the file, for messages: "line 7" (CSV and
        JSON Lines; the header is line 1 of a CSV, and a quoted cell spanning lines is counted whole), "record 3"
        (a JSON array) or "row 3" (Parquet). Computed on first use by reading the file again."""
        if self._places is None:
            self._places = record_places(Path(self.source), self.format, len(self.frame))
        return [self._places[int(i)] if 0 <= int(i) < len(self._places) else f"row {int(i) + 1}" for i in rows]


def _check_kind(path: Path, fmt: str, head: bytes) -> None:
    """Refuse a file whose first bytes show it is something other than its extension says."""
    name = path.name
    for magic, what, fix in MAGIC:
        if head.startswith(magic) and not (magic == b"PAR1" and fmt == "parquet"):
            raise DataError(f"{name} is {what}, not a {fmt.upper()} table; {fix}")
    if HTML.match(head):
        raise DataError(f"{name} is an HTML/XML page, not a {fmt.upper()} table (a 'Save page as' or a download "
                        "link that returned a web page?); download the raw data file and upload that")
    if fmt == "parquet" and not head.startswith(b"PAR1"):
        raise DataError(f"{name} is not a Parquet file (it does not start with the Parquet marker 'PAR1'); "
                        "if it is CSV or JSON, give it that extension")
    if fmt == "csv" and head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        raise DataError(f"{name} looks like JSON, not CSV; rename it to .json (array) or .jsonl (one object "
                        "per line)")


def _decode(path: Path, data: bytes) -> tuple[str, str | None]:
    """Decoded text and a warning when the encoding had to be guessed.

    A file with null bytes is called binary when, the nulls removed, more than 1 % of its bytes are other
    control characters (or nothing is left); else it is a damaged text file and the message counts the null
    bytes and gives the line of the first.

    Raises:
        DataError: binary content or null bytes (with the line of the first one).
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), None
        except UnicodeDecodeError as e:
            raise DataError(f"{path.name} starts like UTF-16 text but is not valid UTF-16 ({e.reason} at byte "
                            f"{e.start}); save it again as UTF-8") from None
    nulls = data.count(b"\x00")
    if nulls:
        rest = data.replace(b"\x00", b"")
        control = len(rest) - len(rest.translate(None, CONTROL))
        if not rest.strip() or control > max(8, len(rest) // 100):
            raise DataError(f"{path.name} looks like a binary file, not a text table; upload CSV, TSV, JSON, JSONL "
                            "or Parquet")
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise DataError(f"{path.name} contains {nulls} null byte(s) (the first on line {line}); a text table "
                        "cannot hold them, so the file is probably damaged. Remove them (e.g. "
                        "`tr -d '\\000' < in.csv > out.csv`) or export the data again")
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        pass
    data = data.removeprefix(b"\xef\xbb\xbf")
    for enc, label in (("cp1252", "Windows-1252"), ("latin-1", "Latin-1")):
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        return text, (f"{path.name} is not UTF-8; it was read as {label} (Western European). If accented "
                      "letters look wrong, save the file as UTF-8 and upload it again")
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


def _delimiter(path: Path, text: str) -> str:
    """The delimiter among , ; TAB | that occurs most often in the header line (comma on a tie)."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    header = text[:65536].lstrip("\ufeff").splitlines()[:1]
    counts = {d: header[0].count(d) if header else 0 for d in ",;\t|"}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def _parser_message(name: str, error: Exception, sep: str) -> str:
    msg = str(error)
    eof = re.search(r"EOF inside string starting at row (\d+)", msg)
    if eof:
        return (f"{name}: a quote (\") opened on line {int(eof.group(1)) + 1} is never closed, so the rest of the "
                "file would be one text; close the quote, or double quotes inside quoted text (\"\"), or the "
                "file was cut off: upload it complete")
    return f"{name} could not be read as CSV (delimiter {sep!r}): {msg.splitlines()[-1][:300]}"


def _read_csv(path: Path, text: str, limits: Limits) -> pd.DataFrame:
    """Parse CSV text into str columns (cells as written: "01" stays "01", empty cells are missing); rows with
    more fields than the header are an error listing their lines."""
    sep = _delimiter(path, text)
    try:
        header = pd.read_csv(io.StringIO(text), sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            frame = pd.read_csv(io.StringIO(text), sep=sep, on_bad_lines="warn", index_col=False, dtype=str,
                                keep_default_na=False, na_values=[""], nrows=limits.max_rows + 1)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name} has no content (only blank lines)") from None
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(_parser_message(path.name, e, sep)) from e
    _check_duplicates(path, [str(c).strip() for c in header.iloc[0].tolist()])
    bad = [(int(a), int(b), int(c)) for w in caught
           for a, b, c in re.findall(r"line (\d+): expected (\d+) fields, saw (\d+)", str(w.message))]
    if bad:
        shown = ", ".join(f"line {a} has {c}" for a, _, c in bad[:5]) + (", ..." if len(bad) > 5 else "")
        shown_sep = {"\t": "TAB"}.get(sep, repr(sep))
        raise DataError(f"{path.name}: {len(bad)} row(s) have more fields than the {bad[0][1]} columns of the "
                        f"header ({shown}; lines counted from the header = line 1). A text that contains the "
                        f"delimiter {shown_sep} must be in double quotes; fix those rows or quote the text column")
    return frame


def _check_duplicates(path: Path, columns: list[str]) -> None:
    seen: dict[str, list[int]] = {}
    for i, c in enumerate(columns, start=1):
        seen.setdefault(c, []).append(i)
    dups = {c: pos for c, pos in seen.items() if len(pos) > 1}
    if dups:
        listed = "; ".join(f"{c!r} (columns {', '.join(map(str, pos))})" for c, pos in dups.items())
        raise DataError(f"{path.name} has duplicate column names: {listed}; give every column a unique name")


def _json_error(name: str, e: json.JSONDecodeError, where: str, at_end: bool) -> DataError:
    cut = " (the file seems cut off: upload it complete)" if at_end or e.msg.startswith("Unterminated") else ""
    what = e.msg.removesuffix(" starting at").removesuffix(" at").lower()
    return DataError(f"{name} is not valid JSON: {what} at {where}{cut}")


def _records(name: str, doc) -> list:
    if isinstance(doc, dict):
        lists = [v for v in doc.values() if isinstance(v, list)]
        if len(doc) == 1 and lists and all(isinstance(r, dict) for r in lists[0]):
            return lists[0]  # {"data": [{...}, ...]}
        if lists and len(lists) == len(doc) and len({len(v) for v in lists}) == 1:
            return pd.DataFrame(doc).to_dict(orient="records")  # columns as lists
        return [doc]
    if isinstance(doc, list):
        return doc
    raise DataError(f"{name} holds a single JSON {type(doc).__name__}; upload an array of records "
                    '([{"text": ..., "label": ...}, ...]) or JSON Lines (one object per line)')


def _read_json(path: Path, text: str) -> tuple[pd.DataFrame, list[str]]:
    """Parse a JSON document or JSON Lines; rows with differing keys are filled with missing values."""
    name = path.name
    if not text.strip():
        raise DataError(f"{name} has no content (only blank lines)")
    try:
        records = _records(name, json.loads(text))
    except json.JSONDecodeError as e:
        if e.msg != "Extra data":
            raise _json_error(name, e, f"line {e.lineno}, column {e.colno}", e.pos >= len(text.rstrip()) - 1) from None
        records = []  # several documents: JSON Lines
        lines = text.splitlines()
        last = max(i for i, line in enumerate(lines, start=1) if line.strip())
        for i, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as le:
                    raise _json_error(name, le, f"line {i} (column {le.colno})", i == last) from None
    bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
    if bad is not None:
        raise DataError(f"{name}: record {bad + 1} is a JSON {type(records[bad]).__name__}, not an object; every "
                        'row must be an object like {"text": ..., "label": ...}')
    frame = pd.DataFrame.from_records(records)
    notes = []
    keys = [frozenset(r) for r in records]
    if len(set(keys)) > 1:
        missing = {c: sum(c not in k for k in keys) for c in frame.columns}
        listed = ", ".join(f"{c!r} in {n}" for c, n in missing.items() if n)
        notes.append(f"{name}: records have different keys; missing keys were read as empty values ({listed} "
                     "row(s)); rows without text or label are dropped")
    return frame, notes


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow

    try:
        return pd.read_parquet(path)
    except (pyarrow.ArrowException, OSError, ValueError) as e:
        raise DataError(f"{path.name} is not a complete Parquet file (truncated or damaged: "
                        f"{str(e).split(': ')[-1].split('. ')[0][:200]}); export or upload it again") from e


def _csv_lines(path: Path, text: str) -> list[str]:
    """The line each data record of a CSV starts on (header = line 1; blank lines skipped as pandas does)."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=_delimiter(path, text))
    out, header = [], True
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except (StopIteration, csv.Error):
            return out
        if not record:
            continue
        if header:
            header = False
            continue
        out.append(f"line {start}")


def record_places(path: Path, fmt: str, n: int) -> list[str]:
    """Where each of the ``n`` data rows of a parsed upload is in its file (see :meth:`Table.places`)."""
    if fmt == "csv":
        return _csv_lines(path, _decode(path, path.read_bytes())[0])
    if fmt == "json":
        text = _decode(path, path.read_bytes())[0]
        try:
            json.loads(text)
        except json.JSONDecodeError:  # JSON Lines: one record per non-blank line
            return [f"line {i}" for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
        return [f"record {i}" for i in range(1, n + 1)]
    return [f"row {i}" for i in range(1, n + 1)]


def check_size(path: Path, limits: Limits, empty_hint: str, large_hint: str) -> int:
    """Size of an existing upload in bytes. Raises DataError (with the hint) when it is empty or over
    ``limits.max_upload_mb``."""
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path.name} is empty (0 bytes); {empty_hint}")
    if size > limits.max_upload_bytes:
        raise DataError(f"{path.name} is {size / 1e6:.3g} MB; the limit is {limits.max_upload_mb:g} MB "
                        f"(PEFT_MAX_UPLOAD_MB); {large_hint}")
    return size


def read_upload(path: str | Path, limits: Limits | None = None) -> Table:
    """Read one uploaded file, checking size, kind, encoding, structure and row count.

    Raises:
        DataError: missing, empty, too large or unsupported file; content that is not its extension's format;
            parse errors (with line numbers where known); duplicate column names; no data rows; too many rows.
    """
    limits = limits or Limits.from_env()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path.name}: unsupported file type {path.suffix!r}; use one of " + ", ".join(sorted(FORMATS)))
    check_size(path, limits, "upload a file with a header line and data rows",
               "upload a sample of the rows or raise the limit")
    data = path.read_bytes()
    _check_kind(path, fmt, data[:1024])
    notes: list[str] = []
    if fmt == "parquet":
        frame = _read_parquet(path)
    else:
        text, note = _decode(path, data)
        notes += [note] if note else []
        if fmt == "csv":
            frame = _read_csv(path, text, limits)
        else:
            frame, more = _read_json(path, text)
            notes += more
    frame.columns = [str(c).strip() for c in frame.columns]
    _check_duplicates(path, list(frame.columns))
    if len(frame.columns) == 0 or frame.empty:
        cols = f" ({', '.join(map(str, frame.columns))})" if len(frame.columns) else ""
        raise DataError(f"{path.name} has no data rows, only a header{cols}; add rows below the header")
    if len(frame) > limits.max_rows:
        raise DataError(f"{path.name} has more than {limits.max_rows:,} rows, the limit (PEFT_MAX_ROWS); upload a "
                        "sample of the rows or raise the limit")
    return Table(frame.reset_index(drop=True), fmt, str(path), notes)
