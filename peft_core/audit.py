"""Label audit: rank the rows whose given label the data itself disputes (likely mislabelled rows).

Steps (:func:`audit_labels`): read and split the upload as training does (``peft_core.data.prepare_data``, same
seed, so the same held-out rows); encode the training and validation rows once with the frozen base model's pooled
features (the ``head`` method's model and the feature path of ``peft_core.feeds``); fit k-fold linear probes on the
features for out-of-fold predicted probabilities and let cleanlab flag the label issues
(``peft_core.audit_probe``). The task kind says how its targets are audited (``TaskKind.label_audit``): single-label
and multi-label classification (single texts, text pairs, images); other kinds are refused.

Which rows: the training and validation rows. The held-out test rows are not audited, so that the test scores
stay an independent check (cleaning them with the model's own view would flatter it): in the written file their
``label_issue`` and ``suggested_label`` cells are empty, as are those of rows dropped on reading (no text, no
label). With a separate test file, every row of the uploaded file is audited.

Row numbers: ``row`` is the 1-based data row of the uploaded file (1 = the first row under the header; in a CSV
without multi-line cells that is line ``row + 1``). Image zips name each image by its path in the zip instead.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .audit_probe import AUDITS, check_folds
from .errors import ConfigError
from .splits import PreparedData, split_inputs
from .tasks import get_task

AUDITED_SPLITS = ("train", "validation")
#: the columns added to the written file
ADDED_COLUMNS = ("suggested_label", "label_issue")


@dataclass
class AuditResult:
    """What :func:`audit_labels` found.

    Attributes:
        issues: the flagged rows, most likely mislabelled first: ``row`` (1-based data row; images: the path in
            the zip), the input (``text``, or the pair's two columns; none for images), ``given_label``,
            ``suggested_label``, ``confidence`` (the out-of-fold probability of the suggested label, 0..1; for
            multi-label see ``audit_probe.MultiLabelAudit.suggest``), ``given_label_probability``.
        rows: every audited row in file order with the same columns plus ``label_issue`` (bool).
        audited / flagged: row counts; seconds: wall time of the whole audit (reading, encoding, probes).
        kind: the task kind; model: the base model; folds: k; notes: what the user should know.
        image_paths: images only: path in the zip -> extracted file (for thumbnails).
    """

    issues: pd.DataFrame
    rows: pd.DataFrame
    audited: int
    flagged: int
    seconds: float
    kind: str
    model: str
    folds: int
    source: str
    is_image: bool
    notes: list[str] = field(default_factory=list)
    image_paths: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for people: rows audited, issues found, time."""
        share = 100 * self.flagged / max(self.audited, 1)
        return (f"{self.audited} rows audited ({', '.join(AUDITED_SPLITS)} splits; {self.folds}-fold linear probes "
                f"on {self.model} features), {self.flagged} likely label issue(s) ({share:.1f} %), "
                f"{self.seconds:.1f} s")


def _prepare(data_file, test_file, options: dict, seed: int) -> tuple[PreparedData, dict[str, str]]:
    """(PreparedData, extracted image path -> path in the zip (images; {} for tables)) for the upload."""
    from .data import prepare_data
    from .image_data import is_image_upload, load_image_upload

    if is_image_upload(data_file):
        keep = ("label_column", "task", "label_separator", "test_fraction", "validation_fraction", "extract_dir")
        found, data = load_image_upload(data_file, test_file, seed=seed,
                                        **{k: v for k, v in options.items() if k in keep})
        return data, dict(zip(found["image"].astype(str), found["name"].astype(str)))
    return prepare_data(data_file, test_file, seed=seed, **options), {}


def audit_kind(data: PreparedData):
    """The task kind's audit (``audit_probe.AUDITS``). Raises ConfigError for kinds that cannot be audited."""
    kind = get_task(data.task)
    if kind.label_audit not in AUDITS:
        raise ConfigError(f"label audit works for single-label and multi-label classification; this file is "
                          f"{kind.title.lower()} (column {data.task.label_column!r})")
    return AUDITS[kind.label_audit]


def encode(data: PreparedData, model: str, max_length: int = 128,
           tick: Callable[[int], None] = lambda rows: None) -> np.ndarray:
    """Pooled frozen features of the audited rows (train then validation): float32 [n, hidden].

    The base model is built as the ``head`` method builds it (``pipeline.build_model``: everything frozen) and its
    ``features`` (the pooled encoder output the head sees) run once per row in length-sorted batches
    (``feeds.map_tracked``), on the CPU. ``tick(rows)`` after each batch.

    Raises:
        ModelLoadError, ConfigError (a model for the other modality).
    """
    import torch

    from .feeds import map_tracked
    from .models import DEFAULT_MODELS
    from .pipeline import build_model, check_modality, data_modality

    modality = data_modality(data)
    clf, processor, spec, _, _ = build_model(model or DEFAULT_MODELS[modality], "head", {}, data.task.num_labels)
    check_modality(spec, modality)
    clf.eval()
    inputs = [x for s in AUDITED_SPLITS for x in split_inputs(data.splits[s])]
    return map_tracked(lambda b: clf.features(**b), processor, inputs, max_length, torch.device("cpu"),
                       tick).numpy()


def _names(data: PreparedData, targets) -> list[str]:
    """Targets in the user's terms: a class name, or label names joined by the file's separator (or ";")."""
    labels = data.task.labels
    sep = data.task.label_separator or ";"
    return [labels[t] if isinstance(t, (int, np.integer)) else sep.join(labels[j] for j in t) for t in targets]


def _where(data: PreparedData, names: dict[str, str]) -> tuple[str, list]:
    """("row", 1-based file rows) for tables, ("row", names in the zip) for images, of the audited rows."""
    if data.file_rows is not None:
        return "row", [data.file_rows[s][i] + 1 for s in AUDITED_SPLITS for i in range(len(data.splits[s]))]
    return "row", [names.get(str(p), Path(str(p)).name) for s in AUDITED_SPLITS for p in data.splits[s]["image"]]


def _table(data: PreparedData, where: list, values, probs: np.ndarray, audit, flagged: np.ndarray) -> pd.DataFrame:
    """Every audited row: row, input column(s), given / suggested label, confidence, given-label probability,
    label_issue, and ``rank`` (1 = most likely mislabelled; empty when not flagged)."""
    from .tasks.base import input_columns

    inputs = [x for s in AUDITED_SPLITS for x in split_inputs(data.splits[s])]
    cols = input_columns(inputs, data.task)
    if "input" in cols:  # images: ``row`` already names the image
        cols = {} if data.task.modality == "image" else {"text": cols["input"]}
    suggested, conf, given_p = audit.suggest(values, probs)
    values = list(values)
    given = [int(v) for v in values] if not audit.multi else audit.labels(values)
    frame = pd.DataFrame({"row": where, **cols, "given_label": _names(data, given),
                          "suggested_label": _names(data, suggested), "confidence": np.round(conf, 4),
                          "given_label_probability": np.round(given_p, 4)})
    frame["label_issue"] = False
    frame.loc[flagged, "label_issue"] = True
    frame["rank"] = pd.array([pd.NA] * len(frame), dtype="Int64")
    frame.loc[flagged, "rank"] = np.arange(1, len(flagged) + 1)
    return frame


def audit_labels(data_file: str | Path, test_file: str | Path | None = None, *, model: str = "", folds: int = 5,
                 seed: int = 42, max_length: int = 128, data: PreparedData | None = None,
                 progress: Callable[[float, str], None] | None = None, **options) -> AuditResult:
    """Find likely mislabelled rows of an upload (see the module doc).

    Args:
        data_file / test_file: as for ``prepare_data`` (a table or an image zip; with a test file every row of
            ``data_file`` is audited).
        model: base model (registry key, folder or Hub ID; "" = the bundled model for the data).
        folds: k of the k-fold probes (2..rows); seed: the splits' and folds' seed (42, as training's default,
            gives the same held-out rows as a run with the default seed).
        data: an already prepared upload (must come from ``data_file`` with the same seed).
        progress: ``progress(share done 0..1, what)``; encoding is the first 80 %.
        options: ``prepare_data`` keywords: text_column, label_column, task, text_pair_column, label_separator,
            test_fraction, validation_fraction.
    Returns:
        AuditResult (issues ranked, every audited row, counts, seconds).
    Raises:
        ConfigError: a task kind that cannot be audited, bad folds, a model of the other modality.
        DataError: unreadable or unusable data (as ``prepare_data``); ModelLoadError.
    """
    start = time.perf_counter()
    say = progress or (lambda share, what: None)
    say(0.0, "reading the data")
    names: dict[str, str] = {}
    if data is None:
        data, names = _prepare(data_file, test_file, options, seed)
    audit = audit_kind(data)
    values = [v for s in AUDITED_SPLITS for v in data.splits[s]["label"]]
    check_folds(folds, len(values))
    done = [0]

    def tick(rows: int) -> None:
        done[0] += rows
        say(0.8 * done[0] / len(values), f"encoding {done[0]}/{len(values)} rows")

    x = encode(data, model, max_length, tick)
    probs = audit.out_of_fold(x, values, data.task.num_labels, folds, seed,
                              lambda share: say(0.8 + 0.18 * share, "fitting the linear probes"))
    say(0.98, "finding label issues (cleanlab)")
    flagged = audit.issues(values, probs)
    _, where = _where(data, names)
    rows = _table(data, where, values, probs, audit, flagged)
    issues = rows.iloc[flagged].drop(columns=["label_issue"]).reset_index(drop=True)
    notes = [] if data.file_rows is None or test_file is not None else [
        f"the {len(data.splits['test'])} held-out test rows were not audited (they stay an independent check)"]
    from .models import DEFAULT_MODELS

    return AuditResult(issues, rows, len(values), len(flagged), time.perf_counter() - start, data.task.kind,
                       model or DEFAULT_MODELS[data.task.modality], int(folds), str(data_file),
                       data.task.modality == "image", notes, {v: k for k, v in names.items()})


def write_audited(result: AuditResult, out_path: str | Path) -> Path:
    """Write the uploaded file with the two added columns ``suggested_label`` and ``label_issue`` (True/False;
    both empty for rows not audited: held-out test rows and rows dropped on reading), as CSV.

    Tables keep every column and row of the upload (read as ``peft_core.readers`` reads it). Image zips give one
    row per audited image: ``image`` (path in the zip), ``label``, and the two columns.

    Returns the path written. Raises DataError when the upload can no longer be read.
    """
    out_path = Path(out_path)
    audited = result.rows.set_index("row")
    if result.is_image:
        frame = pd.DataFrame({"image": audited.index, "label": audited["given_label"].to_numpy()})
        keys = frame["image"]
    else:
        from .readers import read_upload

        frame = read_upload(result.source).frame.copy()
        keys = pd.Series(np.arange(1, len(frame) + 1))
    for col in ADDED_COLUMNS:
        frame[col] = keys.map(audited[col]).astype(object).where(keys.isin(audited.index), "").to_numpy()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_path, index=False)
    return out_path
