"""Step 1's "Check labels": the label audit of the chosen data (``peft_core.audit``, the same core as the CLI's
``audit`` verb), shown as a ranked table of likely mislabelled rows (with thumbnails of the top images for image
data) and a download of the uploaded file with ``suggested_label`` and ``label_issue`` added.

The audit runs in the server process (encoding the rows once takes seconds to a minute on a CPU) with a progress
bar. The download goes out as a copy in Gradio's cache (it holds only the user's own upload plus two columns);
the written file's temporary folder is removed right after Gradio copied it, on the next audit.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from app_data import _thumbnail, data_options
from app_state import _need_file, user_errors

#: flagged rows shown in the page (the download holds every row)
SHOWN_ROWS = 200
#: flagged images shown as thumbnails
SHOWN_IMAGES = 16
TABLE_COLUMNS = ["row", "given_label", "suggested_label", "confidence"]
_LAST_DIR: list[str] = []  # the previous audit's output folder, removed when the next one is written


def widgets() -> dict:
    """The "Check labels" button, the summary, the ranked table, the image thumbnails and the download."""
    w = {}
    with gr.Row(equal_height=False):
        w["audit_btn"] = gr.Button("Check labels", size="sm", elem_id="check-labels", scale=0, min_width=160,
                                   variant="primary")
        w["audit_md"] = gr.Markdown("Find rows whose label the data disputes (k-fold linear probes on the frozen "
                                    "base model's features, then cleanlab's confident learning).",
                                    elem_id="audit-summary")
    w["audit_table"] = gr.Dataframe(pd.DataFrame(columns=TABLE_COLUMNS), label="Likely label issues",
                                    interactive=False, wrap=True, max_height=360, visible=False,
                                    elem_id="audit-table")
    w["audit_gallery"] = gr.Gallery(label="Flagged images (given → suggested)", columns=8, height=220,
                                    visible=False, elem_id="audit-images")
    w["audit_dl"] = gr.DownloadButton("Download the file with suggested_label and label_issue", visible=False,
                                      elem_id="audit-dl", size="sm")
    return w


def _summary(result) -> str:
    found = (f"**{result.flagged}** likely label issue(s)" if result.flagged else
             "**No** likely label issues (0 rows flagged)")
    lines = [f"{found} among {result.audited} rows "
             f"({result.seconds:.1f} s; {result.folds}-fold linear probes on `{result.model}` features, "
             "cleanlab `find_label_issues`). Most likely first; **row** is "
             + ("the image's path in the zip" if result.is_image else
                "the data row of the file (1 = the first row under the header)")
             + "; **confidence** is the probe's out-of-fold probability of the suggested label. Review before "
             "changing anything: a flagged row may be a hard or ambiguous example."]
    lines += [f"Note: {n}." for n in result.notes]
    return "\n\n".join(lines)


def _gallery(result) -> list:
    """(thumbnail, caption) of the top flagged images."""
    top = result.issues.head(SHOWN_IMAGES)
    return [(_thumbnail(result.image_paths[r]), f"{r}: {g} → {s}")
            for r, g, s in zip(top["row"], top["given_label"], top["suggested_label"]) if r in result.image_paths]


def _table(result) -> dict:
    """The table update: the top flagged rows; the inputs share half the width, so the labels stay in view."""
    inputs = [c for c in result.issues.columns if c not in TABLE_COLUMNS + ["given_label_probability", "rank"]]
    frame = result.issues[TABLE_COLUMNS[:1] + inputs + TABLE_COLUMNS[1:]].head(SHOWN_ROWS)
    share = [f"{50 // len(inputs)}%"] * len(inputs) if inputs else []
    widths = ["30%" if result.is_image else "8%"] + share + ["15%", "15%", "12%"]
    return gr.update(value=frame, visible=True, column_widths=widths)


@user_errors
def check_labels(train_file, test_file, text_col, label_col, task, pair_col, separator, model,
                 progress=gr.Progress()):
    """Audit the chosen data -> (summary markdown, ranked table, image thumbnails, download button). No file, a
    task kind that cannot be audited or unusable data raise a message and leave the earlier results as they were.
    """
    from peft_core.audit import audit_labels, write_audited

    path = _need_file(train_file)
    options = data_options(text_col, label_col, task, pair_col, separator)
    with tempfile.TemporaryDirectory(prefix="peft_audit_images_") as images:
        result = audit_labels(path, test_file or None, model=model or "", extract_dir=images,
                              progress=lambda share, what: progress(share, desc=what), **options)
        gallery = _gallery(result) if result.is_image else []
    out_dir = tempfile.mkdtemp(prefix="peft_audit_")
    out = write_audited(result, Path(out_dir) / f"{Path(path).stem}_audited.csv")
    while _LAST_DIR:
        shutil.rmtree(_LAST_DIR.pop(), ignore_errors=True)
    _LAST_DIR.append(out_dir)
    return (_summary(result), _table(result),
            gr.update(value=gallery, visible=bool(gallery)),
            gr.update(value=str(out), visible=True, label=f"Download {out.name} (every row, two added columns)"))


def wire(d: dict) -> None:
    """Connect the button: step 1's file and choices and step 2's base model in; the audit widgets out."""
    inputs = [d["train_file"], d["test_file"], d["text_col"], d["label_col"], d["task"], d["pair_col"],
              d["separator"], d["model"]]
    outputs = [d["audit_md"], d["audit_table"], d["audit_gallery"], d["audit_dl"]]
    d["audit_btn"].click(check_labels, inputs, outputs, api_visibility="private", concurrency_limit=1)
