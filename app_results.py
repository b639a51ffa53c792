"""What step 3 shows of a trained run, read from its folder (no gradio here).

``report.json`` gives the task kind's evaluation report (``peft_core.tasks.report_from_dict``: its
``metrics_table``, ``per_class_table``, ``notes``) and the figures it wrote (``"plots"``: name -> file name in the
run folder; runs saved before task kinds have none, and their confusion matrix is ``confusion_matrix.png``).
``predictions.csv`` holds every held-out row, worst mistakes first (the kind's ``predictions_table``); the page
shows its first rows. File names read from report.json are reduced to a bare name inside the run folder.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from peft_core.tasks import report_from_dict

MISTAKE_ROWS = 20  # held-out rows shown in "where the model is wrong"; the download has all of them
CLIP = 200  # characters of a text shown in a table cell
EMPTY_METRICS = ["metric", "model", "baseline"]
EMPTY_PER_CLASS = ["label", "precision", "recall", "f1", "support"]
OLD_PLOTS = {"evaluation": "confusion_matrix.png", "misclassified": "misclassified.png"}


@dataclass
class RunResults:
    """A trained run's results for the page.

    Attributes:
        metrics: the kind's metrics beside its baseline (metric, model, baseline columns).
        per_class: per-class (single-label) or per-label (multi-label, with threshold) scores; empty for
            regression.
        notes: the report's notes as markdown ("" when none).
        figures: plot name ("evaluation", "misclassified", ...) -> PNG path in the run folder (existing files).
        mistakes: the first :data:`MISTAKE_ROWS` rows of predictions.csv, texts clipped (empty without one).
        held_out / wrong: rows in predictions.csv and how many of them are marked wrong (0 without one).
        predictions: the path of predictions.csv, None when the run has none.
    """

    metrics: pd.DataFrame
    per_class: pd.DataFrame
    notes: str = ""
    figures: dict[str, Path] = field(default_factory=dict)
    mistakes: pd.DataFrame = field(default_factory=pd.DataFrame)
    held_out: int = 0
    wrong: int = 0
    predictions: Path | None = None


def empty_results() -> RunResults:
    """What the page shows while a run has no results."""
    return RunResults(pd.DataFrame(columns=EMPTY_METRICS), pd.DataFrame(columns=EMPTY_PER_CLASS))


def read_results(run_dir: str | Path) -> RunResults | None:
    """The results of the run saved in ``run_dir``; None while its report.json is missing or unreadable (a run
    still being saved)."""
    run_dir = Path(run_dir)
    try:
        doc = json.loads((run_dir / "report.json").read_text())
        report = report_from_dict(doc["evaluation"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    names = {**OLD_PLOTS, **(doc.get("plots") or {})}
    figures = {k: run_dir / Path(v).name for k, v in names.items() if (run_dir / Path(v).name).is_file()}
    notes = "\n\n".join(f"Note: {n}" for n in getattr(report, "notes", []) or [])
    out = RunResults(_undefined_as_na(report.metrics_table()), report.per_class_table(), notes, figures)
    csv = run_dir / "predictions.csv"
    if csv.is_file():
        table = read_predictions(csv)
        out.mistakes = mistakes_frame(table, run_dir)
        out.held_out, out.predictions = len(table), csv
        out.wrong = int(table["wrong"].astype(str).str.lower().eq("true").sum()) if "wrong" in table else 0
    return out


def _undefined_as_na(table: pd.DataFrame) -> pd.DataFrame:
    """NaN scores (a correlation with a constant baseline is undefined) read "n/a" instead of "NaN"."""
    return table.astype(object).where(table.notna(), "n/a")


def read_predictions(csv: str | Path) -> pd.DataFrame:
    """predictions.csv as written (empty label sets stay "", not NaN)."""
    return pd.read_csv(csv, keep_default_na=False, dtype=str)


def _cell(value: str, run_dir: Path) -> str:
    """A table cell for people: an image path inside the run folder becomes its path under the images folder;
    long texts end in "…"."""
    images = str(run_dir / "data" / "images") + "/"
    if value.startswith(images):
        value = value[len(images):]
    return value[:CLIP] + "…" if len(value) > CLIP else value


def mistakes_frame(table: pd.DataFrame, run_dir: str | Path, rows: int = MISTAKE_ROWS) -> pd.DataFrame:
    """The first ``rows`` rows of a predictions table (worst mistakes first, as the kind sorted them) for the
    page: inputs clipped (the columns before ``true``: ``input``, or a pair's two texts under the file's column
    names), true and predicted ("(none)" for an empty label set), the kind's score columns (confidence, labels
    wrong, error...), and "wrong" as yes / no."""
    run_dir = Path(run_dir)
    out = table.head(rows).copy()
    for c in _input_columns(out.columns):
        out[c] = out[c].map(lambda v: _cell(str(v), run_dir))
    for c in ("true", "predicted"):
        if c in out:
            out[c] = out[c].replace("", "(none)")
    if "wrong" in out:
        out["wrong"] = out["wrong"].str.lower().map({"true": "yes", "false": "no"}).fillna(out["wrong"])
    return out.reset_index(drop=True)


WIDTH_WEIGHTS = {"true": 2, "predicted": 2}  # the inputs: 7 shared; other columns: 1


def _input_columns(columns) -> list:
    """The input columns of a predictions table: those before ``true`` (see ``tasks.base.input_columns``)."""
    columns = list(columns)
    return columns[:columns.index("true")] if "true" in columns else []


def column_widths(columns) -> list[str]:
    """Widths ("31.6%"...) of the mistakes table's columns: the texts get most of the row, true and predicted
    (label sets can be long) twice a score column, so every column is on screen with texts wrapped."""
    inputs = _input_columns(columns)
    weights = [(5 if len(inputs) == 1 else 3.5) if c in inputs else WIDTH_WEIGHTS.get(c, 1) for c in columns]
    return [f"{100 * w / sum(weights):.1f}%" for w in weights]


def mistakes_label(res: RunResults) -> str:
    """The title of the mistakes table: how many rows it shows of how many, and how many are wrong."""
    if res.predictions is None:
        return "Where the model is wrong (this run saved no predictions: train it again to see them)"
    shown = min(len(res.mistakes), res.held_out)
    return (f"Where the model is wrong: the {shown} worst of {res.held_out:,} held-out rows ({res.wrong:,} wrong); "
            "download them all below")
