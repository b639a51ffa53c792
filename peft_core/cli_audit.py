"""The ``audit`` verb of ``python -m peft_core``: find likely mislabelled rows (see ``peft_core.audit``).

    python -m peft_core audit --data FILE [--test-data FILE] [--text-column C] [--label-column C] [--task KIND]
                              [--model M] [--folds 5] [--seed 42] [--out FILE.csv] [--top 20]

Prints the summary (rows audited, issues found, seconds) and the top of the ranked table, and writes the upload
with the two added columns ``suggested_label`` and ``label_issue`` (default: ``<data stem>_audited.csv`` beside the
current folder). Errors (a task kind that cannot be audited, bad data) exit with code 2 through ``cli.main``.
"""
from __future__ import annotations

from pathlib import Path


def add_audit_parser(sub) -> None:
    """Add the ``audit`` verb to ``python -m peft_core``'s sub-parsers."""
    from .cli_args import add_data_arguments

    a = sub.add_parser("audit", help="find likely mislabelled rows (k-fold linear probes + cleanlab)")
    add_data_arguments(a, test_help="held-out file (then every row of --data is audited; without it the held-out "
                       "test split carved from --data is not audited)",
                       task_help="task kind (default: inferred); single-label and multi-label can be audited",
                       model_help="base model whose frozen features the probes use (default: the bundled model "
                       "for the data)")
    a.add_argument("--folds", type=int, default=5, help="k of the k-fold linear probes")
    a.add_argument("--seed", type=int, default=42, help="seed of the splits and folds (training's default: 42)")
    a.add_argument("--out", help="CSV to write: the upload plus suggested_label and label_issue "
                   "(default: <data stem>_audited.csv)")
    a.add_argument("--top", type=int, default=20, help="rows of the ranked table to print")


def cmd_audit(args) -> int:
    """Run the audit, print the summary and the top rows, write the file. Returns 0."""
    import pandas as pd

    from .audit import audit_labels, write_audited

    options = {k: getattr(args, k) for k in ("text_column", "label_column", "text_pair_column", "task",
                                             "label_separator") if getattr(args, k)}
    result = audit_labels(args.data, args.test_data, model=args.model, folds=args.folds, seed=args.seed, **options)
    print(result.summary())
    for note in result.notes:
        print(f"note: {note}")
    if len(result.issues):
        print("row = data row of the file (1 = first row under the header); confidence = the probe's out-of-fold "
              "probability of the suggested label")
        with pd.option_context("display.max_colwidth", 60, "display.width", 200):
            print(result.issues.head(max(args.top, 0)).to_string(index=False))
    out = Path(args.out or f"{Path(args.data).stem}_audited.csv")
    write_audited(result, out)
    print(f"{len(result.rows)} audited rows marked in {out} (columns suggested_label, label_issue)")
    return 0


COMMANDS = {"audit": cmd_audit}
