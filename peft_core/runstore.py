"""Rebuild a trained :class:`~peft_core.pipeline.Run` from its folder (after a restart, or once evicted from
memory), so any finished run can still be used for predictions and exported.

It reads ``config.json`` (the RunConfig, whose data files point at the run's own ``data/`` copies),
``report.json`` (parameter counts, training history, evaluation) and ``model/`` (weights, tokenizer, labels),
and re-prepares the data with the recorded seed, which reproduces the same train / validation / test split.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import JobError


def load_run(run_dir: str | Path):
    """Load the run saved in ``run_dir``.

    Raises:
        JobError: the folder lacks ``config.json``, ``report.json`` or ``model/`` (not a trained run).
    """
    from .data import prepare_data
    from .modeling import load_classifier
    from .models import ModelSpec
    from .pipeline import Run, RunConfig, images_dir
    from .tasks import TaskSpec, report_from_dict
    from .training import TrainConfig, TrainResult

    run_dir = Path(run_dir)
    needed = [run_dir / "config.json", run_dir / "report.json", run_dir / "model" / "classifier_config.json"]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise JobError(f"{run_dir.name} has no trained model to load (missing {', '.join(missing)})")
    cfg = RunConfig(**json.loads(needed[0].read_text())["run"])
    report = json.loads(needed[1].read_text())
    model, tokenizer, meta = load_classifier(run_dir / "model")
    spec_dict = dict(meta["base_model"])
    spec_dict["lora_targets"] = tuple(spec_dict.get("lora_targets", ()))
    spec = ModelSpec(**spec_dict)
    data = prepare_data(cfg.train_file, cfg.test_file, text_column=cfg.text_column, label_column=cfg.label_column,
                        task=cfg.task, text_pair_column=cfg.text_pair_column, label_separator=cfg.label_separator,
                        test_fraction=cfg.test_fraction, validation_fraction=cfg.validation_fraction,
                        seed=cfg.train.seed, extract_dir=images_dir(run_dir))
    if "task" in meta:  # the trained task: its tuned thresholds / target mean and std
        data.task = TaskSpec.from_dict(meta["task"])
    training = {k: v for k, v in report["training"].items() if k != "step_losses"}
    names = report.get("plots") or {n: f"{n}.png" for n in ("confusion_matrix", "training", "misclassified")}
    plots = {name: run_dir / file for name, file in names.items() if (run_dir / file).is_file()}
    return Run(run_dir, cfg, data, spec, model, tokenizer, TrainConfig(**report["train_config"]),
               report["trainable_parameters"], report["total_parameters"], TrainResult(**training),
               report_from_dict(report["evaluation"]), None, plots)
