"""Command-line arguments the verbs that read a labelled file share (``audit``, ``search``): which file, which
columns, which task kind, which base model. ``train`` has its own, longer help texts (``peft_core.cli``)."""
from __future__ import annotations


def add_data_arguments(p, test_help: str, task_help: str, model_help: str) -> None:
    """Add --data, --test-data, --text-column, --label-column, --task, --text-pair-column, --label-separator and
    --model to the argparse (sub)parser ``p``; the three help texts are the verb's own."""
    from .tasks import TASKS

    p.add_argument("--data", required=True, help="CSV / TSV / JSON / JSONL / Parquet table, or a zip of images")
    p.add_argument("--test-data", help=test_help)
    p.add_argument("--text-column", help="text column (default: inferred)")
    p.add_argument("--label-column", help="label / target column (default: inferred)")
    kinds = [k.replace("_", "-") for k in TASKS]
    p.add_argument("--task", choices=list(dict.fromkeys(kinds + list(TASKS))), metavar="{" + ",".join(kinds) + "}",
                   help=task_help)
    p.add_argument("--text-pair-column", help="second text column of a text-pair task (default: inferred)")
    p.add_argument("--label-separator", help="multi-label: separator of the label strings (default: inferred)")
    p.add_argument("--model", default="", help=model_help)
