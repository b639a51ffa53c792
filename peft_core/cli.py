"""Headless entry point: ``python -m peft_core train --data FILE --method head --out DIR --export``; the verbs
over saved runs (``predict``, ``evaluate``, ``export``, ``runs``) are in ``peft_core.cli_runs``.

It builds the same RunConfig the app builds, calls the same core functions, and prints the same report: data
summary, trainable parameters, progress bars on stderr (one per phase: "preparing", "encoding" when frozen
features are cached, "training" over optimizer steps, "evaluating" over the held-out rows), held-out metrics
beside the task kind's baseline (majority class, frequent labels or the training mean), per-class / per-label
scores, and the parity table. ``--task`` and ``--text-pair-column`` override what the data report infers.

Exit status: 0 done; 1 parity failed (no bundle); 2 an error a user can cause (one line, no traceback);
130 cancelled with Ctrl-C. The first Ctrl-C asks the run to stop within one batch, as the app's cancel does: a
run with a finished epoch keeps its best epoch, is evaluated and saved, and skips the export; one stopped
earlier prints "cancelled: ... there is no model to offer". A second Ctrl-C quits at once.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading

from .cli_audit import COMMANDS as AUDIT_COMMANDS, add_audit_parser
from .cli_runs import COMMANDS, add_parsers, print_export
from .cli_search import add_parser as add_search_parser, cmd_search
from .errors import PeftCoreError, RunCancelled
from .methods import METHODS
from .tasks import TASKS
from .precision import PRECISIONS
from .training import SOLVERS
from .tracking import TRACKERS
from .models import DEFAULT_MODELS, REGISTRY


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m peft_core", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="fine-tune, evaluate and optionally export a bundle")
    t.add_argument("--data", required=True, help="training file: CSV, TSV, JSON, JSONL or Parquet")
    t.add_argument("--test-data", help="held-out file with the same columns (default: split from --data)")
    t.add_argument("--text-column", help="text column (default: inferred)")
    t.add_argument("--label-column", help="label / target column (default: inferred); several 0/1 columns of a "
                   "one-hot multi-label file: comma-joined names")
    kinds = [k.replace("_", "-") for k in TASKS]
    t.add_argument("--task", choices=list(dict.fromkeys(kinds + list(TASKS))), metavar="{" + ",".join(kinds) + "}",
                   help="task kind (default: inferred from the label column, and said in the data report)")
    t.add_argument("--text-pair-column", help="second text column of a text-pair task (NLI, similarity; default: "
                   "inferred for premise/hypothesis, sentence1/sentence2, question1/question2, text_a/text_b)")
    t.add_argument("--label-separator", help="multi-label: separator of the label strings (default: inferred "
                   "among ; | ,)")
    t.add_argument("--model", default="",
                   help=f"base model: one of {', '.join(REGISTRY)}, a local folder, or a Hub ID (default: "
                        f"{DEFAULT_MODELS['text']} for a table, {DEFAULT_MODELS['image']} for a zip of image folders)")
    t.add_argument("--method", default="head", choices=list(METHODS), help="what to train")
    t.add_argument("--out", required=True, help="run folder to write (model, reports, plots, bundle)")
    t.add_argument("--export", action="store_true",
                   help="export ONNX, check parity, write bundle-fp32.zip and bundle-int8.zip")
    t.add_argument("--report-to", default="none", metavar="{" + ",".join(TRACKERS) + ",none}",
                   help="experiment trackers to log parameters, losses and metrics to, comma-separated (logs in "
                        "OUT/tracking; MLflow: MLFLOW_TRACKING_URI when set; Trackio: TRACKIO_DIR when set)")
    g = t.add_argument_group("hyper-parameters (default: the method's)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--learning-rate", type=float, help="encoder / adapter learning rate")
    g.add_argument("--head-learning-rate", type=float)
    g.add_argument("--weight-decay", type=float, help="AdamW weight decay; with --solver lbfgs the L2 "
                   "strength, C = 1/weight_decay as in scikit-learn (default: the method's)")
    g.add_argument("--solver", choices=list(SOLVERS), help="adamw: mini-batch AdamW; lbfgs: full-batch L-BFGS "
                   "of the head on cached features (default: the method's; head: lbfgs)")
    g.add_argument("--precision", choices=["auto", *PRECISIONS], default="auto",
                   help="compute precision of the trainable part's forward in AdamW steps (auto: bf16 on a CPU "
                        "with native bf16, avx512_bf16 / amx_bf16, else fp32; weights and optimizer stay fp32)")
    g.add_argument("--warmup-ratio", type=float, default=0.1)
    g.add_argument("--max-length", type=int, default=128, help="tokens per text (longer texts are truncated)")
    g.add_argument("--dropout", type=float, default=0.1, help="head dropout")
    g.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: off)")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--probe-epochs", type=int,
                   help="linear-probe warm start: head-only epochs before the encoder part trains (0: off)")
    g.add_argument("--no-feature-cache", action="store_true", help="recompute a frozen encoder every step")
    g.add_argument("--class-weights", action="store_true",
                   help="weight the loss against imbalance (single-label: balanced class weights; multi-label: "
                        "per-label pos_weight)")
    m = t.add_argument_group("method options")
    m.add_argument("--num-layers", type=int, default=2, help="last_n: how many top layers train")
    m.add_argument("--lora-r", type=int, default=8)
    m.add_argument("--lora-alpha", type=float, default=16.0)
    m.add_argument("--lora-dropout", type=float, default=0.1)
    m.add_argument("--lora-targets", default="", help="comma-separated module names (default: per model)")
    add_parsers(sub)
    add_search_parser(sub)
    add_audit_parser(sub)
    return ap


def _method_config(args) -> dict:
    """The method flags -> the chosen method's options (its config class says which)."""
    return METHODS[args.method].pick_options({"num_layers": args.num_layers, "r": args.lora_r,
                                              "alpha": args.lora_alpha, "dropout": args.lora_dropout,
                                              "target_modules": args.lora_targets})


def _run_config(args):
    """The flags as the RunConfig the app would build."""
    from .pipeline import RunConfig
    from .training import TrainConfig

    tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                       head_learning_rate=args.head_learning_rate, weight_decay=args.weight_decay,
                       warmup_ratio=args.warmup_ratio, max_length=args.max_length, dropout=args.dropout,
                       early_stopping_patience=args.patience, seed=args.seed,
                       feature_cache=not args.no_feature_cache, probe_epochs=args.probe_epochs,
                       class_weights=args.class_weights, solver=args.solver,
                       precision=args.precision)
    return RunConfig(train_file=args.data, test_file=args.test_data, text_column=args.text_column,
                     label_column=args.label_column, task=args.task, text_pair_column=args.text_pair_column,
                     label_separator=args.label_separator, model=args.model, method=args.method,
                     method_config=_method_config(args), train=tcfg, report_to=args.report_to)


def cmd_train(args) -> int:
    from .callbacks import TqdmBar
    from .data import prepare_data
    from exporters.run_export import export_run

    from .pipeline import fine_tune
    from .training import make_accelerator

    cfg = _run_config(args)

    main = make_accelerator().is_main_process  # under `accelerate launch`, only the main process reports/exports
    say = print if main else (lambda *a, **k: None)

    def _print_table(df) -> None:
        say(df.to_string(index=False))

    import atexit
    import shutil
    import tempfile

    scratch = tempfile.mkdtemp(prefix="peft_cli_")  # extracted images of a zip upload; removed at exit
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    data = prepare_data(cfg.train_file, cfg.test_file, text_column=cfg.text_column, label_column=cfg.label_column,
                        task=cfg.task, text_pair_column=cfg.text_pair_column, label_separator=cfg.label_separator,
                        seed=cfg.train.seed, extract_dir=scratch)
    say("== Data\n" + data.report.to_markdown().replace("**", ""))
    _print_table(data.report.class_table())

    shown = []

    def show_message(ev):  # the first message is the trainable-parameter summary; later ones (tracking) as they are
        if ev.kind == "message":
            model = args.model or DEFAULT_MODELS[data.task.modality]
            say(f"== Model {model}, method {args.method}: {ev.message}" if not shown else ev.message)
            shown.append(ev.message)

    bar = TqdmBar(mininterval=2, file=sys.stderr)
    try:
        with _stop_on_ctrl_c() as control:
            run = fine_tune(cfg, args.out, [show_message, bar], control=control, data=data)
    finally:
        bar.close()
    _print_results(run, say)
    if run.train_result.cancelled:
        print("cancelled with Ctrl-C: the best epoch so far was kept, evaluated and saved"
              + ("; no export" if args.export else ""), file=sys.stderr)
        return 130
    if args.export and main:
        return print_export(export_run(run, callbacks=[bar]))  # a bar per export phase
    return 0


def _print_results(run, say) -> None:
    """The training summary, held-out metrics beside the task kind's baseline, per-class / per-label scores,
    saved files."""
    r = run.train_result
    say(f"== Training: {len(r.history)} epochs in {r.seconds:.1f} s (best epoch {r.best_epoch}"
        f"{', stopped early' if r.stopped_early else ''}{', cancelled with Ctrl-C' if r.cancelled else ''}; "
        f"cache: {r.cache})")
    say("== Evaluation\n" + run.eval_report.to_markdown().replace("**", ""))
    say(run.eval_report.metrics_table().to_string(index=False, na_rep="n/a"))  # NaN: a correlation undefined
    per_class = run.eval_report.per_class_table()
    if 0 < len(per_class) <= 30:
        say(per_class.to_string(index=False))
    say(f"Model saved to {run.run_dir / 'model'}; plots {', '.join(str(p) for p in run.plots.values())}; "
        f"held-out predictions {run.run_dir / 'predictions.csv'}")


@contextlib.contextmanager
def _stop_on_ctrl_c():
    """Within the block, the first Ctrl-C (SIGINT) sets the yielded Control's stop flag instead of raising
    KeyboardInterrupt; a second one raises it. Signals are caught only in the main thread (elsewhere: no-op)."""
    from .callbacks import Control

    control = Control()

    def handle(signum, frame) -> None:
        if control.should_stop:
            raise KeyboardInterrupt
        control.request_stop()
        print("\nstopping after the current batch (Ctrl-C again to quit at once)", file=sys.stderr)

    main_thread = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, handle) if main_thread else None
    try:
        yield control
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = _parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight loading/saving bars would drown the report
    try:
        search = {"search": lambda a: cmd_search(a, _stop_on_ctrl_c)}
        return ({"train": cmd_train} | search | COMMANDS | AUDIT_COMMANDS)[args.command](args)
    except RunCancelled as e:
        print(f"cancelled: {e}", file=sys.stderr)
        return 130
    except PeftCoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
