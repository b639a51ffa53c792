"""How each task kind's target is read, checked, split and encoded: the data side of ``peft_core.tasks``.

:data:`TARGETS` has one reader per key of ``peft_core.tasks.TASKS``; ``peft_core.data`` (tables) and
``peft_core.image_meta`` (zips with a metadata file) call :func:`build_targets` and never branch on a kind.
A reader takes the cleaned frames of the uploaded files (the training file first, then a given test file; columns:
the inputs, ``label`` as read, ``_row`` = the row's position in its file for messages) and returns the three
splits with ``label`` encoded as the data contract says (``peft_core.splits.PreparedData``):

* single-label: classes normalised over both files (``peft_core.validation``), rows missing a label dropped,
  stratified splits, rare classes kept in training, test rows of unseen classes dropped;
* multi-label: label sets (``peft_core.target_cells``); rows with no label kept and counted; labels of a test file
  unseen in training dropped from its sets (a warning names them); rows holding a label with too few rows for
  every split stay in training; a label with no row in the training split is refused by name; labels with fewer
  than :data:`FEW_POSITIVES` training rows are named in a warning. Ids follow the sorted label names (numerically
  when all are whole numbers), or the one-hot column order;
* regression: numbers (words, NaN and infinity refused by line), rows missing a target dropped, splits stratified
  on quantile bins; ``target_mean`` / ``target_std`` = the training split's mean and population standard deviation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from .errors import DataError
from .limits import Limits
from .splits import held_out_notes, random_split, stratified_split
from .target_cells import Places, is_missing, read_numbers, read_sets
from .task_infer import TargetChoice
from .validation import case_variants, check_classes, normalise_labels, rare_classes

FEW_POSITIVES = 5  # labels with fewer training rows are named in a warning
QUANTILE_BINS = 10


@dataclass
class TargetContext:
    """What a reader needs besides the frames: the choice, where rows come from, split settings, and the report's
    lists it appends to (``warnings``, ``dropped``: reason -> rows)."""

    choice: TargetChoice
    names: list[str]
    places: list[Places]
    limits: Limits
    seed: int
    test_fraction: float
    validation_fraction: float
    warnings: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def has_test(self) -> bool:
        return len(self.names) > 1

    def carve(self, df: pd.DataFrame, split: Callable, test: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
        """train / validation / test: ``split(frame, fraction, what) -> (kept, held)`` carves validation (and
        test, unless a test frame is given) out of ``df``."""
        if test is not None:
            train, val = split(df, self.validation_fraction, "validation")
            return {"train": train, "validation": val, "test": test}
        rest, test = split(df, self.test_fraction, "test")
        train, val = split(rest, self.validation_fraction / (1 - self.test_fraction), "validation")
        return {"train": train, "validation": val, "test": test}


@dataclass
class Targets:
    """A reader's result: splits with ``label`` encoded, the label names in id order, class counts, extra TaskSpec
    fields, the report's target words and summaries."""

    parts: dict[str, pd.DataFrame]
    id2label: dict[int, str]
    class_counts: dict[str, dict[str, int]]
    spec: dict = field(default_factory=dict)
    described: str = ""
    summary: dict = field(default_factory=dict)
    no_label: dict = field(default_factory=dict)


class SingleLabelTargets:
    """One class per row (today's behaviour, see ``peft_core.validation``)."""

    def build(self, frames: list[pd.DataFrame], ctx: TargetContext) -> Targets:
        column = ctx.choice.label_column
        kept = []
        for f in frames:
            miss = f["label"].map(is_missing).astype(bool)
            ctx.dropped["missing label"] = ctx.dropped.get("missing label", 0) + int(miss.sum())
            kept.append(f[~miss].reset_index(drop=True))
        parts = _normalise(kept, ctx.names, column, ctx.warnings)
        df = parts[0]
        ctx.warnings += (check_classes(df["label"], column, ctx.choice.inferred, ctx.limits)
                         + case_variants(df["label"], column))
        rare = rare_classes(df["label"], column, ("validation",) if ctx.has_test else ("validation", "test"))
        classes = sorted(df["label"].unique().tolist())
        test = _test_part(parts[1], ctx.names[1], classes, ctx) if ctx.has_test else None
        out = ctx.carve(df, lambda d, frac, what: stratified_split(d, frac, ctx.seed, what, rare), test)
        to_id = {c: i for i, c in enumerate(classes)}
        counts = {str(c): {} for c in classes}
        for name, part in out.items():
            for c, n in part["label"].value_counts().items():
                counts[str(c)][name] = int(n)
            out[name] = part.assign(label=part["label"].map(to_id).astype("int64"))
        given = {"test": f"the test file {ctx.names[1]}"} if ctx.has_test else None
        ctx.warnings += held_out_notes(counts, column, given)
        return Targets(out, {i: str(c) for i, c in enumerate(classes)}, counts,
                       described=f"**{len(classes)}** classes")


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


def _test_part(test: pd.DataFrame, name: str, classes: list, ctx: TargetContext) -> pd.DataFrame:
    """The rows of a given test file whose labels occur in training."""
    unseen = ~test["label"].isin(classes)
    if unseen.any():
        ctx.dropped["test label not in training data"] = int(unseen.sum())
        ctx.warnings.append(f"{name}: test labels not in the training data were dropped: "
                            f"{', '.join(map(repr, test['label'][unseen].unique()[:10].tolist()))}")
        test = test[~unseen].reset_index(drop=True)
    return test


def _label_order(names) -> list[str]:
    """Sorted label names; numerically when every name is a whole number ("2" before "10")."""
    names = sorted(set(names))
    if names and all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return names


class MultiLabelTargets:
    """Any number of labels per row (lists, separated strings or one-hot columns)."""

    def _sets(self, frame: pd.DataFrame, src: int, ctx: TargetContext) -> list[list[str]]:
        if ctx.choice.one_hot:  # read from the one-hot columns when the frame was cleaned
            return list(frame["label"])
        cells = pd.Series(frame["label"].to_numpy(), index=frame["_row"].to_numpy())
        return read_sets(cells, ctx.choice.label_column, ctx.names[src], ctx.places[src], ctx.choice.separator)

    def build(self, frames: list[pd.DataFrame], ctx: TargetContext) -> Targets:
        column = ctx.choice.label_column
        sets = [self._sets(f, i, ctx) for i, f in enumerate(frames)]
        labels = ctx.choice.label_columns if ctx.choice.one_hot else _label_order(x for s in sets[0] for x in s)
        if len(labels) > ctx.limits.max_classes:
            raise DataError(f"column {column!r} has {len(labels):,} labels; the limit is {ctx.limits.max_classes:,} "
                            "(PEFT_MAX_CLASSES); is it really the label column? Otherwise choose another, or raise "
                            "the limit")
        if len(labels) < 2:
            raise DataError(f"{ctx.names[0]}: column {column!r} holds {len(labels)} label(s) "
                            f"({', '.join(map(repr, labels)) or 'none'}); multi-label needs at least 2: add rows "
                            "with other labels, or check the label separator")
        if ctx.has_test:
            sets[1] = self._drop_unseen(sets[1], set(labels), ctx)
        df = frames[0].assign(label=sets[0])
        test = frames[1].assign(label=sets[1]) if ctx.has_test else None
        keep, rare = self._rare(sets[0], labels, 2 if ctx.has_test else 3)
        if rare:
            ctx.warnings.append(f"{len(rare)} label(s) of {column!r} have too few rows to give one to every split, "
                                f"so their rows stay in training (they cannot be validated or tested): "
                                f"{', '.join(f'{k!r} ({n})' for k, n in rare[:10])}")
        df["_keep"] = keep
        out = ctx.carve(df, lambda d, frac, what: random_split(d, frac, ctx.seed, what, keep=d["_keep"]), test)
        index = {lab: j for j, lab in enumerate(labels)}
        counts = {lab: {} for lab in labels}
        no_label = {}
        for name, part in out.items():
            hot = np.zeros((len(part), len(labels)), dtype=np.int64)
            for r, s in enumerate(part["label"]):
                hot[r, [index[x] for x in s]] = 1
            for lab, n in zip(labels, hot.sum(0)):
                if n:
                    counts[lab][name] = int(n)
            no_label[name] = int((hot.sum(1) == 0).sum())
            out[name] = part.drop(columns=["_keep"], errors="ignore").assign(label=hot.tolist())
        self._check_train(counts, column, ctx)
        ctx.warnings += _unheld_labels(counts, column, ctx)
        empty = sum(no_label.values())
        return Targets(out, dict(enumerate(labels)), counts, spec={"label_separator": ctx.choice.separator or ""},
                       described=f"**{len(labels)}** labels (a row may have several"
                                 + (f"; {empty} rows have none)" if empty else ")"), no_label=no_label)

    def _drop_unseen(self, sets: list[list[str]], known: set, ctx: TargetContext) -> list[list[str]]:
        unseen = sorted({x for s in sets for x in s} - known)
        if unseen:
            rows = sum(bool(set(s) - known) for s in sets)
            ctx.warnings.append(f"{ctx.names[1]}: {len(unseen)} label(s) not in the training data were dropped from "
                                f"the label sets of {rows} test row(s): {', '.join(map(repr, unseen[:10]))}"
                                + (", ..." if len(unseen) > 10 else ""))
        return [[x for x in s if x in known] for s in sets]

    @staticmethod
    def _rare(sets: list[list[str]], labels: list[str], need: int) -> tuple[list[bool], list[tuple[str, int]]]:
        """(rows holding a label with fewer than ``need`` rows, [(label, rows)] of those labels)."""
        n = pd.Series([x for s in sets for x in s], dtype=object).value_counts()
        rare = [(lab, int(n.get(lab, 0))) for lab in labels if 0 < n.get(lab, 0) < need]
        names = {lab for lab, _ in rare}
        return [bool(names.intersection(s)) for s in sets], rare

    @staticmethod
    def _check_train(counts: dict, column: str, ctx: TargetContext) -> None:
        none = [lab for lab, c in counts.items() if not c.get("train")]
        if none:
            raise DataError(f"{ctx.names[0]}: {len(none)} label(s) of {column!r} have no row in the training split, so "
                            f"the model cannot learn them: {', '.join(map(repr, none[:10]))}"
                            + (", ..." if len(none) > 10 else "") + "; add training rows with those labels, or "
                            "leave those label columns out")
        few = [(lab, c["train"]) for lab, c in counts.items() if c["train"] < FEW_POSITIVES]
        if few:
            ctx.warnings.append(f"{len(few)} label(s) of {column!r} have fewer than {FEW_POSITIVES} training rows, "
                                "too few to learn well: " + ", ".join(f"{lab!r} ({n})" for lab, n in few[:10])
                                + (", ..." if len(few) > 10 else ""))


def _unheld_labels(counts: dict, column: str, ctx: TargetContext) -> list[str]:
    """Warnings naming the labels with no row in the validation / test split (random splits, or a test file)."""
    notes = []
    for split, use in (("validation", "threshold tuning and early stopping cannot check them"),
                       ("test", "the test scores say nothing about them")):
        absent = [lab for lab, c in counts.items() if not c.get(split)]
        if absent:
            where = (f"the test file {ctx.names[1]} has none" if split == "test" and ctx.has_test else
                     "the random split gave them none, or they have too few rows")
            notes.append(f"{len(absent)} label(s) of {column!r} have no {split} row ({where}): "
                         + ", ".join(f"{lab!r} ({sum(counts[lab].values())} in all)" for lab in absent[:10])
                         + (", ..." if len(absent) > 10 else "") + f"; {use}, and {split} macro-F1 is averaged over "
                         "the other labels")
    return notes


def _summary(values: pd.Series) -> dict:
    return {"count": int(len(values)), "mean": float(values.mean()), "std": float(values.std(ddof=0)),
            "min": float(values.min()), "max": float(values.max())}


class RegressionTargets:
    """One number per row, in the target's own units."""

    def build(self, frames: list[pd.DataFrame], ctx: TargetContext) -> Targets:
        column = ctx.choice.label_column
        hint = ", or choose single-label to treat the values as classes" if ctx.choice.inferred else ""
        kept = []
        for i, f in enumerate(frames):
            cells = pd.Series(f["label"].to_numpy(), index=f["_row"].to_numpy())
            values = read_numbers(cells, column, ctx.names[i], ctx.places[i], hint).to_numpy()
            miss = np.isnan(values)
            ctx.dropped["missing target"] = ctx.dropped.get("missing target", 0) + int(miss.sum())
            kept.append(f.assign(label=values)[~miss].reset_index(drop=True))
        df = kept[0]
        if df["label"].nunique() < 2:
            raise DataError(f"{ctx.names[0]}: column {column!r} holds "
                            + (f"the same number ({df['label'].iloc[0]:g}) in every row" if len(df) else "no number")
                            + "; a regression target must vary: choose another column")
        bins = pd.qcut(df["label"], QUANTILE_BINS, labels=False, duplicates="drop")
        df["_bin"] = bins.to_numpy()

        def split(d, frac, what):
            return random_split(d, frac, ctx.seed, what, strata=d["_bin"])

        out = ctx.carve(df, split, kept[1] if ctx.has_test else None)
        out = {k: v.drop(columns=["_bin"], errors="ignore").assign(label=v["label"].astype("float64"))
               for k, v in out.items()}
        train = out["train"]["label"]
        summary = {k: _summary(v["label"]) for k, v in out.items() if len(v)}
        if ctx.choice.inferred:
            ctx.warnings += _id_like(df["label"], column)
        return Targets(out, {0: column}, {}, spec={"target_mean": float(train.mean()),
                                                   "target_std": float(train.std(ddof=0))},
                       described=f"a number per row ({df['label'].min():.4g} to {df['label'].max():.4g})",
                       summary=summary)


def _id_like(values: pd.Series, column: str) -> list[str]:
    """A warning when an inferred numeric target is a different whole number in every row (an id?)."""
    if len(values) >= 10 and values.nunique() == len(values) and (values == values.round()).all():
        return [f"column {column!r} has a different whole number in every row: is it an id rather than a target? "
                "If so, choose the label column"]
    return []


#: one reader per task kind (keys of ``peft_core.tasks.TASKS``)
TARGETS = {"single_label": SingleLabelTargets(), "multi_label": MultiLabelTargets(),
           "regression": RegressionTargets()}


def build_targets(frames: list[pd.DataFrame], ctx: TargetContext) -> Targets:
    """The chosen kind's reader applied to the cleaned frames (see the module doc)."""
    return TARGETS[ctx.choice.kind].build(frames, ctx)


__all__ = ["FEW_POSITIVES", "TARGETS", "TargetContext", "Targets", "build_targets"]


def assemble(targets: Targets, ctx: TargetContext, columns: list[str], modality: str = "text"):
    """(DatasetDict of ``columns`` + encoded label, TaskSpec) from a reader's result."""
    from .splits import frames_to_datasets
    from .tasks import TaskSpec

    c = ctx.choice
    spec = TaskSpec(kind=c.kind, text_column=c.text_column, label_column=c.label_column, id2label=targets.id2label,
                    modality=modality, text_pair_column=c.text_pair_column, **targets.spec)
    return frames_to_datasets(targets.parts, columns), spec
