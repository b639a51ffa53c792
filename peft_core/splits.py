"""What tables and image uploads share once loaded: the splits, the DataReport and PreparedData.

``peft_core.data`` (tables), ``peft_core.image_data`` (zips of class folders), ``peft_core.image_meta`` (zips with
a metadata file) and ``peft_core.target_kinds`` build on this module, and it imports none of them. Split rules:

* single-label: the held-out parts are stratified by label and seeded (``sklearn.model_selection.train_test_split``);
  multi-label and regression: seeded random parts (:func:`random_split`; regression stratified on quantile bins of
  the target when every bin has rows enough);
* rows of *rare* classes (too few examples to give one to every split, see
  :func:`peft_core.validation.rare_classes`) all stay in the training split; such classes cannot be validated
  (or tested), and macro-averaged scores leave them out (they are averaged over the classes present in the
  split scored). :func:`held_out_notes` says so in the DataReport. Multi-label rows holding a rare label stay in
  training the same way.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from .errors import DataError
from .tasks import TASKS, TaskSpec

SPLITS = ("train", "validation", "test")


@dataclass
class DataReport:
    """What was read, inferred, dropped and split; shown to the user before training.

    Attributes:
        rows_read: data rows (images for a zip) in all uploaded files together (header excluded).
        files: file name -> rows (images) read from it, the training file first, then a given test file.
        dropped_rows: rows removed, by reason (missing text, missing label, unknown test label).
        class_counts: label -> {"train": n, "validation": n, "test": n}: rows of each class (single-label), rows
            holding each label (multi-label); empty for regression.
        warnings: things the user should check (merged labels, classes that cannot be validated...).
        notes: plain information (which image folder became which split, the text pair found).
        task: the task kind (a key of ``peft_core.tasks.TASKS``); task_reason: why it was inferred or chosen.
        text_pair_column: the second text column of pair tasks, else None.
        targets: what the target holds, in words ("**3** classes", "**28** labels", "a number").
        target_summary: regression only: split -> {"count", "mean", "std" (population), "min", "max"} of the
            target in its own units.
        no_label_rows: multi-label only: split -> rows with an empty label set.
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
    files: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    task: str = "single_label"
    task_reason: str = ""
    text_pair_column: str | None = None
    targets: str = ""
    target_summary: dict[str, dict[str, float]] = field(default_factory=dict)
    no_label_rows: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def _read_line(self, unit: str) -> str:
        files = self.files or {Path(self.source).name: self.rows_read}
        if len(files) == 1:
            return f"**{self.rows_read}** {unit} read from `{next(iter(files))}` ({self.format})"
        listed = ", ".join(f"`{name}` {n}" for name, n in files.items())
        return f"**{self.rows_read}** {unit} read ({self.format}): {listed}"

    def to_markdown(self) -> str:
        """A short human summary (markdown) for the app and the CLI."""
        dropped = sum(self.dropped_rows.values())
        if self.format == "zip of image folders":
            head = f"{self._read_line('images')}; **{len(self.class_counts)}** classes (one per folder)."
        else:
            unit = "images" if self.text_column == "image" else "rows"
            inputs = ("images named in column **file_name**" if unit == "images" else
                      f"text column **{self.text_column}**" + (f", second text column **{self.text_pair_column}**"
                                                               if self.text_pair_column else ""))
            head = (f"{self._read_line(unit)}; {inputs}, label column **{self.label_column}**; "
                    f"{self.targets or f'**{len(self.class_counts)}** classes'}.")
        lines = [head]
        if self.task_reason:
            lines.append(f"Task: **{TASKS[self.task].title.lower()}**: {self.task_reason}.")
        lines.append("Split: " + ", ".join(f"{k} {v}" for k, v in self.split_sizes.items()) + ".")
        if self.target_summary:
            lines.append(f"Target `{self.label_column}` (mean / std / min / max): " + "; ".join(
                f"{s} {v['mean']:.4g} / {v['std']:.4g} / {v['min']:.4g} / {v['max']:.4g}"
                for s, v in self.target_summary.items()) + ".")
        if any(self.no_label_rows.values()):
            lines.append("Rows with no label: " + ", ".join(f"{s} {n}" for s, n in self.no_label_rows.items())
                         + ".")
        lines += self.notes
        if dropped:
            lines.append(("Skipped files: " if self.format == "zip of image folders" else "Dropped rows: ")
                         + ", ".join(f"{v} ({k})" for k, v in self.dropped_rows.items() if v) + ".")
        lines += [f"Warning: {w}" for w in self.warnings]
        return "\n\n".join(lines)

    def class_table(self) -> pd.DataFrame:
        """Target balance. Classes: one row per class (labels: per label, plus "(no label)" rows) with rows per
        split and the share of all rows. Regression: one row per split with the target's count, mean, std, min
        and max."""
        if self.target_summary:
            return pd.DataFrame([{"split": s, **v} for s, v in self.target_summary.items()])
        counts = dict(self.class_counts)
        if any(self.no_label_rows.values()):
            counts["(no label)"] = dict(self.no_label_rows)
        df = pd.DataFrame(counts, columns=list(counts)).T.fillna(0).astype(int)
        total = df.sum(axis=1)
        rows = sum(self.split_sizes.values()) or int(total.sum())
        df["share %"] = (100 * total / max(rows, 1)).round(1)
        return df.rename_axis("label").reset_index()


@dataclass
class PreparedData:
    """The result of ``prepare_data``: splits with columns ``text`` (str, plus ``text_pair`` for pair tasks) or
    ``image`` (file path), and ``label``: int64 class id (single-label), 0/1 int list of length num_labels in id
    order (multi-label), float in the target's own units (regression). ``file_rows``: tables only (else None):
    split -> the 0-based data row (header excluded) in its file of each row of the split, in split order (the
    test split's rows are in the test file when one was given); the label audit maps rows back with it."""

    splits: "datasets.DatasetDict"  # noqa: F821  (train / validation / test)
    task: TaskSpec
    report: DataReport
    file_rows: dict[str, list[int]] | None = None


def small_split_warnings(split_sizes: dict[str, int], threshold: int = 100) -> list[str]:
    """A warning when the held-out test split is small: one example is 1/n of the scores (a share such as accuracy
    moves by 1/n), so scores from a few dozen rows are rough (a 95 % interval is about +-1/sqrt(n) wide for
    accuracies near 0.5). Worded for every task kind."""
    n = split_sizes.get("test", 0)
    if 0 < n < threshold:
        return [f"the held-out test split has only {n} rows: each row is {100 / n:.1f} % of the test scores, so "
                "treat them as rough; upload more data (or a larger test file) for firmer numbers"]
    return []


def split_inputs(split) -> list:
    """The model inputs of one split: its ``text`` column (str) for text tasks, (text, text_pair) tuples for pair
    tasks (a ``text_pair`` column), ``image`` (file paths) for image tasks."""
    if "image" in split.column_names:
        return list(split["image"])
    if "text_pair" in split.column_names:
        return list(zip(split["text"], split["text_pair"]))
    return list(split["text"])


def stratified_split(df: pd.DataFrame, fraction: float, seed: int, what: str,
                     rare: Sequence = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out ``fraction`` of ``df`` (columns ``label`` and the inputs), stratified by label and seeded.

    Args:
        fraction: share of the splittable rows held out, in (0, 1).
        what: the held-out split's name ("test" or "validation"), for messages.
        rare: labels whose rows all stay on the kept side (see the module doc); a class with a single row left
            is kept whole as well.
    Returns:
        (kept, held_out) frames with fresh indexes.
    Raises:
        DataError: fewer held-out rows than classes to stratify (the message says how many rows are needed).
    """
    from sklearn.model_selection import train_test_split

    counts = df["label"].value_counts()
    keep = df["label"].isin(set(rare) | set(counts[counts < 2].index))
    whole, part = df[keep], df[~keep]
    k = part["label"].nunique()
    held = math.ceil(fraction * len(part))  # as sklearn rounds it
    more = ", or upload a separate test file" if what == "test" else ""
    if k < 2:
        raise DataError(f"too few rows for a stratified {what} split: fewer than 2 classes have 2 or more rows left "
                        f"to split; upload more rows{more}")
    if min(held, len(part) - held) < k:
        raise DataError(f"too few rows for a stratified {what} split: {fraction:.0%} of {len(part)} rows is {held} "
                        f"rows, but each of the {k} classes needs one; upload at least {math.ceil(k / fraction)} "
                        f"rows, or remove the smallest classes{more}")
    try:
        a, b = train_test_split(part, test_size=fraction, random_state=seed, stratify=part["label"])
    except ValueError as e:
        raise DataError(f"cannot make a stratified {what} split of {len(part)} rows with {k} classes ({e}); upload "
                        f"more rows{more}") from e
    return pd.concat([a, whole]).reset_index(drop=True), b.reset_index(drop=True)


def held_out_notes(class_counts: dict[str, dict[str, int]], column: str, given: dict[str, str] | None = None
                   ) -> list[str]:
    """Warnings naming the classes that have no example in the validation and/or test split.

    Args:
        class_counts: label -> split -> n, as in DataReport.
        column: the label column's name (or "class folder").
        given: split -> where it came from ("the test file", "folder val/") for splits not carved out here.
    """
    given = given or {}
    notes = []
    for split, use in (("validation", "early stopping cannot check them"),
                       ("test", "the test scores say nothing about them")):
        absent = [c for c, n in class_counts.items() if not n.get(split)]
        if not absent:
            continue
        why = (f"{given[split]} has none" if split in given else
               "too few examples to give this split one; their rows are used for training")
        listed = (", ".join(f"{c!r} ({sum(class_counts[c].values())} in all)" for c in absent[:10])
                  + (", ..." if len(absent) > 10 else ""))
        notes.append(f"{len(absent)} class(es) of {column!r} have no {split} example ({why}): {listed}; "
                     f"{use}, and {split} macro-F1 is averaged over the other classes")
    return notes


def to_datasets(parts: dict[str, pd.DataFrame], classes: list, column: str = "text"):
    """Splits as a ``datasets.DatasetDict`` and their class counts.

    Args:
        parts: split name -> frame with columns ``column`` (inputs) and ``label`` (a value of ``classes``).
        classes: label values in id order.
        column: the input column's name in the datasets ("text" or "image").
    Returns:
        (DatasetDict with ``column`` and label: int64 id, class_counts label -> split -> n).
    """
    import datasets

    to_id = {c: i for i, c in enumerate(classes)}
    splits, counts = {}, {str(c): {} for c in classes}
    for name, part in parts.items():
        ids = part["label"].map(to_id).astype("int64")
        splits[name] = datasets.Dataset.from_dict({column: part[column].tolist(), "label": ids.tolist()})
        for c, n in part["label"].value_counts().items():
            counts[str(c)][name] = int(n)
    return datasets.DatasetDict(splits), counts


def random_split(df: pd.DataFrame, fraction: float, seed: int, what: str, keep=None, strata=None
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out ``fraction`` of ``df`` at random (seeded), for targets that are not single classes.

    Args:
        keep: optional bool mask (aligned with ``df``) of rows that stay on the kept side (rare labels).
        strata: optional values to stratify on (regression: quantile bins of the target); used only when every
            stratum has 2 rows or more and the held-out part has a row for each, else the split is plain random.
    Returns:
        (kept, held_out) frames with fresh indexes.
    Raises:
        DataError: too few rows to give both sides one (the message says how many are needed).
    """
    from sklearn.model_selection import train_test_split

    mask = pd.Series(False, index=df.index) if keep is None else pd.Series(keep, index=df.index).astype(bool)
    whole, part = df[mask], df[~mask]
    held = math.ceil(fraction * len(part))
    if held < 1 or len(part) - held < 1:
        more = ", or upload a separate test file" if what == "test" else ""
        raise DataError(f"too few rows for a {what} split: {len(part)} rows can be split; upload at least "
                        f"{math.ceil(2 / fraction)} rows{more}")
    stratify = None
    if strata is not None:
        st = pd.Series(strata, index=df.index)[~mask]
        counts = st.value_counts()
        if len(counts) > 1 and counts.min() >= 2 and min(held, len(part) - held) >= len(counts):
            stratify = st
    a, b = train_test_split(part, test_size=fraction, random_state=seed, stratify=stratify)
    return pd.concat([a, whole]).reset_index(drop=True), b.reset_index(drop=True)


def frames_to_datasets(parts: dict[str, pd.DataFrame], columns: Sequence[str]):
    """Splits (frames whose ``label`` is already encoded) as a ``datasets.DatasetDict`` of ``columns`` + label."""
    import datasets

    return datasets.DatasetDict({name: datasets.Dataset.from_dict(
        {**{c: part[c].tolist() for c in columns}, "label": part["label"].tolist()}) for name, part in parts.items()})
