"""Step 4's "score or evaluate a file" for the selected run: the same core as the CLI's ``predict --run`` and
``evaluate --run`` (``peft_core.scoring``). The scored file is written into the run folder as ``scored.csv``
(the latest one) and goes out through a signed download link, like the run's other files."""
from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

import app_state as state
from app_state import download_link, user_errors


def _run_dir(owner, run_id) -> Path:
    if not run_id:
        raise gr.Error("No run selected: pick one of your finished runs in step 3.", print_exception=False)
    info = state.jobs().get(owner, run_id)
    if not info.has_model:
        raise gr.Error(f"Run {run_id[:8]} is {info.state}: it has no trained model to score with.",
                       print_exception=False)
    return state.jobs().dir(run_id)


def _file(upload) -> Path:
    if not upload:
        raise gr.Error("Upload a file first (a table with the run's text column, or a zip of images).",
                       print_exception=False)
    return Path(upload)


@user_errors
def score_file(owner, run_id, upload, request: gr.Request = None):
    """Score the uploaded file with the selected run -> the download button of ``scored.csv`` (every row of the
    file with its prediction) and a one-line summary."""
    from peft_core.scoring import score_file as score

    run_dir, path = _run_dir(owner, run_id), _file(upload)
    with tempfile.TemporaryDirectory(prefix="peft_score_") as tmp:
        frame = score(run_dir, path, Path(tmp))
    frame.to_csv(run_dir / "scored.csv", index=False)
    return (gr.update(value=download_link(request, run_id, "scored.csv"), visible=True,
                      label=f"Download the scored file (scored.csv, {len(frame):,} rows)"),
            f"Scored {len(frame):,} rows of {path.name} with run `{run_id[:8]}`.", gr.update(visible=False))


@user_errors
def evaluate_file(owner, run_id, upload):
    """Evaluate the selected run on the uploaded labelled file -> (report markdown, metrics table)."""
    from peft_core.scoring import evaluate_file as evaluate

    run_dir, path = _run_dir(owner, run_id), _file(upload)
    with tempfile.TemporaryDirectory(prefix="peft_eval_") as tmp:
        report, rows = evaluate(run_dir, path, Path(tmp))
    text = f"**Run `{run_id[:8]}` on {path.name}** ({rows:,} rows)\n\n" + report.to_markdown()
    return gr.update(visible=False), text, gr.update(value=report.metrics_table(), visible=True)
