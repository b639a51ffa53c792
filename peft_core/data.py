"""Load an uploaded table into a ``datasets.DatasetDict`` with a TaskSpec and a DataReport.

Accepted formats (by extension, loaded through ``datasets``): CSV (delimiter sniffed among , ; TAB |), TSV, JSON
(an array of records), JSON Lines, Parquet. Text and label columns are inferred and can be overridden. Labels
may be strings or integers; ids follow the sorted label order. Without a given test file the upload is split
into train / validation / test, stratified by label and seeded (``sklearn.model_selection.train_test_split``).
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from .errors import DataError
from .tasks import TaskSpec

FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
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
        lines = [f"**{self.rows_read}** rows read from `{Path(self.source).name}` ({self.format}); "
                 f"text column **{self.text_column}**, label column **{self.label_column}**; "
                 f"**{len(self.class_counts)}** classes.",
                 "Split: " + ", ".join(f"{k} {v}" for k, v in self.split_sizes.items()) + "."]
        if dropped:
            lines.append("Dropped rows: " + ", ".join(f"{v} ({k})" for k, v in self.dropped_rows.items() if v) + ".")
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
    """The result of :func:`prepare_data`: splits with columns ``text`` (str) and ``label`` (int64 id)."""

    splits: "datasets.DatasetDict"  # noqa: F821  (train / validation / test)
    task: TaskSpec
    report: DataReport


def _sniff_delimiter(path: Path, encoding: str) -> str:
    """The delimiter among , ; TAB | that occurs most often in the header line (comma on a tie)."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    header = path.read_bytes()[:65536].decode(encoding, errors="replace").lstrip("\ufeff").splitlines()[:1]
    counts = {d: header[0].count(d) if header else 0 for d in ",;\t|"}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def _encoding(path: Path) -> str:
    head = path.read_bytes()[:1 << 20]
    if b"\x00" in head[:4096] and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path.name} looks like a binary file, not a text table; upload CSV, TSV, JSON, "
                        "JSONL or Parquet")
    try:
        head.decode("utf-8")
        return "utf-8-sig" if head.startswith(b"\xef\xbb\xbf") else "utf-8"
    except UnicodeDecodeError as e:
        if e.start > len(head) - 4:  # a multi-byte char cut by the 1 MiB window
            return "utf-8"
        return "latin-1"


def read_table(path: str | Path) -> tuple[pd.DataFrame, str]:
    """Read one uploaded file through ``datasets`` into a DataFrame.

    Returns:
        (frame, format) where format is one of "csv", "json", "parquet".
    Raises:
        DataError: missing file, unsupported extension, unreadable or empty content.
    """
    import datasets

    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path.name}: unsupported file type {path.suffix!r}; use one of "
                        + ", ".join(sorted(FORMATS)))
    if path.stat().st_size == 0:
        raise DataError(f"{path.name} is empty")
    kwargs: dict = {}
    if fmt == "csv":
        enc = _encoding(path)
        kwargs = {"delimiter": _sniff_delimiter(path, enc), "encoding": enc}
    datasets.disable_progress_bars()
    try:
        with tempfile.TemporaryDirectory(prefix="peft_data_") as cache:
            ds = datasets.load_dataset(fmt, data_files=str(path), split="train", cache_dir=cache, **kwargs)
            frame = ds.to_pandas()
    except Exception as e:  # datasets/pyarrow raise many types; all mean "cannot parse this file"
        if "corresponds to no data" in str(e):
            raise DataError(f"{path.name} has no data rows (only a header?)") from e
        raise DataError(f"{path.name} could not be read as {fmt.upper()}: {type(e).__name__}: "
                        f"{str(e).splitlines()[0][:300] if str(e) else ''}") from e
    if frame.empty or len(frame.columns) == 0:
        raise DataError(f"{path.name} has no data rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame, fmt


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


def _clean(frame: pd.DataFrame, text: str, label: str, dropped: dict[str, int]) -> pd.DataFrame:
    out = pd.DataFrame({"text": frame[text], "label": frame[label]})
    miss_text = out["text"].isna() | (out["text"].astype(str).str.strip() == "")
    dropped["missing text"] = dropped.get("missing text", 0) + int(miss_text.sum())
    out = out[~miss_text]
    miss_label = out["label"].isna() | (out["label"].astype(str).str.strip() == "")
    dropped["missing label"] = dropped.get("missing label", 0) + int(miss_label.sum())
    out = out[~miss_label].copy()
    out["text"] = out["text"].astype(str)
    lab = out["label"]
    if pd.api.types.is_float_dtype(lab) and (lab == lab.round()).all():
        lab = lab.astype("int64")
    out["label"] = lab.astype(str).str.strip() if not pd.api.types.is_integer_dtype(lab) else lab
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
    try:
        a, b = train_test_split(df, test_size=fraction, random_state=seed, stratify=df["label"])
    except ValueError as e:
        raise DataError(f"cannot make a stratified {what} split of {len(df)} rows with {len(counts)} classes "
                        f"({e}); upload more rows or a separate {what} file") from e
    return a.reset_index(drop=True), b.reset_index(drop=True)


def prepare_data(train_file: str | Path, test_file: str | Path | None = None, *, text_column: str | None = None,
                 label_column: str | None = None, test_fraction: float = 0.2, validation_fraction: float = 0.1,
                 seed: int = 42) -> PreparedData:
    """Load, validate and split an upload for text classification.

    Args:
        train_file: the upload (see module doc for formats).
        test_file: optional held-out file with the same columns; else ``test_fraction`` of the upload is held out.
        validation_fraction: share of all labelled rows used for early stopping (taken from the train part).
        seed: seed of the stratified splits.
    Returns:
        PreparedData with splits "train", "validation", "test" (columns text: str, label: int64).
    Raises:
        DataError: unreadable file, bad columns, fewer than 2 classes, classes too small to split,
            test labels unseen in training.
    """
    import datasets

    if not 0 < test_fraction < 0.9 or not 0 < validation_fraction < 0.5:
        raise DataError("test_fraction must be in (0, 0.9) and validation_fraction in (0, 0.5)")
    frame, fmt = read_table(train_file)
    text, label = infer_columns(frame, text_column, label_column)
    dropped: dict[str, int] = {}
    df = _clean(frame, text, label, dropped)
    rows_read = len(frame)
    warnings = []
    classes = _label_order(df["label"])
    if len(classes) < 2:
        raise DataError(f"column {label!r} has only one class ({classes[0] if classes else 'none'}) after "
                        "dropping empty rows; a classifier needs at least 2")
    if len(classes) > 0.5 * len(df):
        warnings.append(f"column {label!r} has {len(classes)} distinct values for {len(df)} rows: is it an id "
                        "rather than a label?")
    if test_file is not None:
        tframe, _ = read_table(test_file)
        for c in (text, label):
            if c not in tframe.columns:
                raise DataError(f"test file lacks column {c!r}; its columns are {list(tframe.columns)}")
        test = _clean(tframe, text, label, dropped)
        rows_read += len(tframe)
        unseen = ~test["label"].isin(classes)
        if unseen.any():
            dropped["test label not in training data"] = int(unseen.sum())
            test = test[~unseen].reset_index(drop=True)
        train, val = _split(df, validation_fraction, seed, "validation")
    else:
        rest, test = _split(df, test_fraction, seed, "test")
        train, val = _split(rest, validation_fraction / (1 - test_fraction), seed, "validation")
    id2label = {i: str(c) for i, c in enumerate(classes)}
    to_id = {c: i for i, c in enumerate(classes)}
    splits = {}
    counts: dict[str, dict[str, int]] = {str(c): {} for c in classes}
    for name, part in (("train", train), ("validation", val), ("test", test)):
        ids = part["label"].map(to_id).astype("int64")
        splits[name] = datasets.Dataset.from_dict({"text": part["text"].tolist(), "label": ids.tolist()})
        for c, n in part["label"].value_counts().items():
            counts[str(c)][name] = int(n)
    task = TaskSpec(kind="text-classification", text_column=text, label_column=label, id2label=id2label)
    report = DataReport(source=str(train_file), format=fmt, columns=list(frame.columns), text_column=text,
                        label_column=label, rows_read=rows_read, dropped_rows={k: v for k, v in dropped.items() if v},
                        split_sizes={k: len(v) for k, v in splits.items()}, class_counts=counts, warnings=warnings)
    return PreparedData(splits=datasets.DatasetDict(splits), task=task, report=report)
