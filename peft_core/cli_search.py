"""``python -m peft_core search``: find the best settings for a dataset within a wall-clock budget.

    python -m peft_core search --data train.csv --budget-min 15 --out search/ [--methods head,last_n,lora]

Each trial is a normal run folder under ``OUT/trials/NNN`` (``predict --run``, ``evaluate``, ``export`` and ``runs
--dir OUT/trials`` work on it). One line per trial as it ends, then the leaderboard (best validation score first;
the best marked ★; test metrics shown but never used to choose), saved as ``OUT/leaderboard.csv`` and
``OUT/leaderboard.json``, and the command that exports the best trial. The first Ctrl-C stops the running trial
as ``train`` does (it keeps its best epoch) and ends the search with its leaderboard; a second quits at once.
See ``peft_core.search`` for the search itself.
"""
from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    """Add the ``search`` verb to ``python -m peft_core``'s sub-parsers."""
    from .cli_args import add_data_arguments
    from .methods import METHODS

    s = sub.add_parser("search", help="find the best settings within a time budget (Optuna: TPE + median pruning)")
    add_data_arguments(s, test_help="held-out file with the same columns (default: split from --data)",
                       task_help="task kind (default: inferred)",
                       model_help="base model (default: the bundled one for the data)")
    s.add_argument("--budget-min", type=float, required=True, help="wall-clock budget in minutes")
    s.add_argument("--methods", default=",".join(m for m, spec in METHODS.items() if spec.search_space),
                   help="comma-separated methods to search over (default: %(default)s)")
    s.add_argument("--seed", type=int, default=42, help="seed of the runs (and so of the data split)")
    s.add_argument("--sampler-seed", type=int, default=0, help="seed of the TPE sampler")
    s.add_argument("--max-epochs", type=int, help="cap on any trial's epochs (default: the knobs' ranges)")
    s.add_argument("--max-length", type=int, default=128, help="tokens per text (longer texts are truncated)")
    s.add_argument("--batch-size", type=int, help="batch size of every trial (default: the method's)")
    s.add_argument("--out", required=True, help="search folder: trials/NNN run folders and the leaderboard")


def base_config(args):
    """The flags as the base RunConfig of every trial (method defaults for whatever the search does not tune)."""
    from .pipeline import RunConfig
    from .training import TrainConfig

    return RunConfig(train_file=args.data, test_file=args.test_data, text_column=args.text_column,
                     label_column=args.label_column, task=args.task, text_pair_column=args.text_pair_column,
                     label_separator=args.label_separator, model=args.model,
                     train=TrainConfig(max_length=args.max_length, seed=args.seed, batch_size=args.batch_size))


def cmd_search(args, stop_on_ctrl_c) -> int:
    """Run the search; ``stop_on_ctrl_c``: the CLI's context manager yielding a Control that Ctrl-C sets.
    Exit status 0 (a best trial found), 1 (no trial produced a model), 130 (stopped with Ctrl-C)."""
    import tempfile

    from .data import prepare_data
    from .errors import ConfigError
    from .feature_memo import reuse_pooled_features
    from .progress import format_duration
    from .search import check_methods, run_search
    from .search_runners import InProcessRunner

    if not args.budget_min or args.budget_min <= 0:
        raise ConfigError(f"--budget-min must be a positive number of minutes, got {args.budget_min}")
    methods = check_methods([m.strip() for m in args.methods.split(",") if m.strip()])
    base, out = base_config(args), Path(args.out)
    scratch = tempfile.TemporaryDirectory(prefix="peft_search_")
    data = prepare_data(base.train_file, base.test_file, text_column=base.text_column,
                        label_column=base.label_column, task=base.task, text_pair_column=base.text_pair_column,
                        label_separator=base.label_separator, test_fraction=base.test_fraction,
                        validation_fraction=base.validation_fraction, seed=base.train.seed,
                        extract_dir=scratch.name)
    sizes = {k: len(v) for k, v in data.splits.items()}
    print(f"== Search: {', '.join(methods)} for {format_duration(args.budget_min * 60)} on {Path(args.data).name} "
          f"(train {sizes['train']}, validation {sizes['validation']}, test {sizes['test']}; "
          f"choosing by the validation split only)", flush=True)
    with stop_on_ctrl_c() as control, reuse_pooled_features():
        result = run_search(base, args.budget_min * 60, InProcessRunner(out / "trials", data), methods,
                            seed=args.sampler_seed, on_trial=_print_trial, stop=control, epoch_cap=args.max_epochs,
                            out_dir=out)
    scratch.cleanup()
    return _print_result(result, out, stopped=control.should_stop)


def _print_trial(rec) -> None:
    if rec.state == "running":
        print(f"trial {rec.number + 1}: {rec.method} {rec.settings()} …", flush=True)
        return
    score = "" if rec.val_score is None else f"validation {rec.val_score:.4f}, "
    test = rec.test.get("accuracy")
    print(f"trial {rec.number + 1}: {rec.state}: {score}{len(rec.val_scores)} epoch(s), {rec.seconds:.0f} s"
          + (f", test accuracy {test:.4f}" if test is not None else "") + (f" ({rec.error})" if rec.error else ""),
          flush=True)


def _print_result(result, out: Path, stopped: bool) -> int:
    import pandas as pd

    board = result.leaderboard()
    with pd.option_context("display.max_colwidth", 70, "display.width", 250):
        print("== Leaderboard (best validation score first; test metrics shown, never used to choose)\n"
              + board.drop(columns=["run"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"{len(result.trials)} trial(s) in {result.seconds:.0f} s ({result.ended}"
          + (f"; {result.skipped} skipped: too long for the time left" if result.skipped else "")
          + f"); leaderboard saved to {out / 'leaderboard.csv'} and {out / 'leaderboard.json'}")
    best = result.best
    if best is None:
        print("no trial produced a model", file=sys.stderr)
        return 130 if stopped else 1
    print(f"Best: trial {best.number + 1} ({best.method} {best.settings()}), {result.score_name} "
          f"{best.val_score:.4f}; its run folder is {best.run_dir}\nExport it with: python -m peft_core export "
          f"--run {best.run_dir}")
    return 130 if stopped else 0
