"""Scoring a file with a saved run, and evaluating a saved run on a new labelled file: the core that the CLI verbs
(``peft_core.cli_runs``) and the app's "score or evaluate a file" share.

A run folder is what ``train --out`` or the app writes (``model/``, ``config.json``, ``report.json``).
"""
from __future__ import annotations

from pathlib import Path

from .errors import DataError, JobError


def model_dir(run: str) -> Path:
    path = Path(run) / "model" / "classifier_config.json"
    if not path.is_file():
        raise JobError(f"{run} is not a trained run folder (no model/classifier_config.json); give the folder that "
                       "train --out or the app wrote")
    return path.parent


def run_task(meta: dict):
    """The TaskSpec a saved model was trained for (runs saved before task kinds: single-label text)."""
    from .tasks import TaskSpec

    if "task" in meta:
        return TaskSpec.from_dict(meta["task"])
    return TaskSpec(kind="single_label", text_column="text", label_column="label", id2label=meta["id2label"],
                    modality=meta.get("modality", "text"))


def table_inputs(path: Path, spec) -> tuple[list, object]:
    """(model inputs, the file's frame) of a table to score: the run's text column(s), named if missing."""
    from .readers import read_upload

    frame = read_upload(path).frame
    wanted = [c for c in (spec.text_column, spec.text_pair_column) if c]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(f"{path.name} has no column {', '.join(map(repr, missing))}, which the run reads (its "
                        f"columns: {', '.join(map(str, frame.columns))}); rename the column or pick another run")
    a = frame[wanted[0]].fillna("").astype(str).tolist()
    if len(wanted) == 2:
        return list(zip(a, frame[wanted[1]].fillna("").astype(str).tolist())), frame
    return a, frame


def image_inputs(path: Path, into: Path) -> tuple[list, object]:
    """(image paths, a frame with their names in the zip) of a zip of images, extracted safely into ``into``."""
    import pandas as pd

    from .image_zip import extract_image, list_images, open_zip
    from .limits import Limits

    limits = Limits.from_env()
    with open_zip(path, limits) as z:
        entries, _skipped, _ignored = list_images(z, path.name, limits)
        budget, paths = [int(limits.max_unzipped_mb * 1e6)], []
        for i, (info, parts) in enumerate(entries):
            target = into / f"{i:06d}{Path(parts[-1]).suffix.lower()}"
            extract_image(z, info, "/".join(parts), target, budget, path.name)
            paths.append(str(target))
    return paths, pd.DataFrame({"file": ["/".join(p) for _, p in entries]})


def score_file(run_dir: str | Path, data: str | Path, work_dir: Path):
    """Every row of ``data`` (a table with the run's text column(s), or a zip of images, extracted into
    ``work_dir``) with the run's prediction: the file's own columns (images: ``file``, the name in the zip), then
    ``predicted`` (a label, "; "-joined labels, or a number; ``predicted_label`` if the file has a ``predicted``
    column) and, for single-label runs, its probability. Returns a pandas DataFrame.

    Raises:
        JobError: not a trained run folder. DataError: an unreadable file, a missing text column, an unsafe zip.
    """
    import numpy as np

    from .inference import predict_logits
    from .modeling import load_classifier
    from .tasks import get_task
    from .tasks.base import softmax

    model, processor, meta = load_classifier(model_dir(run_dir))
    spec, data = run_task(meta), Path(data)
    if data.suffix.lower() == ".zip":
        inputs, frame = image_inputs(data, work_dir)
    else:
        inputs, frame = table_inputs(data, spec)
    logits = np.asarray(predict_logits(model, processor, inputs, int(meta.get("max_length", 128))))
    frame = frame.copy()
    name = "predicted" if "predicted" not in frame.columns else "predicted_label"
    frame[name] = ["; ".join(p) if isinstance(p, list) else p for p in get_task(spec.kind).predict(spec, logits)]
    if spec.kind == "single_label":
        frame[name + "_probability"] = softmax(logits).max(1).round(4)
    return frame


def evaluate_file(run_dir: str | Path, data: str | Path, work_dir: Path):
    """Score the saved run on a labelled file with the training file's columns, as its held-out split was
    scored (the run's own label ids, thresholds, target mean and std) -> (the task kind's report, rows scored).

    The file is read as a held-out file beside the run's training file (``prepare_data``), so the same column
    rules, label checks and messages apply; the run is rebuilt from its folder (``runstore.load_run``).

    Raises:
        JobError: not a trained run folder. DataError: a bad file, or labels that do not map to the run's.
    """
    from .data import prepare_data
    from .inference import predict_logits
    from .runstore import load_run
    from .splits import split_inputs
    from .tasks import get_task

    model_dir(run_dir)
    run = load_run(run_dir)
    cfg = run.config
    prepared = prepare_data(cfg.train_file, data, text_column=cfg.text_column, label_column=cfg.label_column,
                            task=cfg.task or run.data.task.kind, text_pair_column=cfg.text_pair_column,
                            label_separator=cfg.label_separator, seed=cfg.train.seed, extract_dir=work_dir)
    test, spec = prepared.splits["test"], run.data.task  # the trained task: labels, thresholds, mean and std
    if list(prepared.task.labels) != list(spec.labels):
        raise DataError(f"{Path(data).name} does not map to the run's labels ({', '.join(spec.labels[:10])}"
                        f"{', ...' if len(spec.labels) > 10 else ''}); evaluate a file labelled like the training file")
    logits = predict_logits(run.model, run.tokenizer, split_inputs(test), run.train_config.max_length)
    report = get_task(spec.kind).evaluate(spec, test["label"], logits, run.data.splits["train"]["label"],
                                             Path(data).name)  # the report names the file, not "Held-out test"
    return report, len(test)
