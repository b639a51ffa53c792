"""The app's layout, one function per step; each returns a dict of its components for ``app.build_demo`` to wire.

Layout only: no handlers and no core calls here (``app.py`` wires events, ``app_views`` formats values).
"""
from __future__ import annotations

import gradio as gr
import pandas as pd

import app_audit
import app_history as history_views
import app_search
import app_views as views
from peft_core.tracking import TRACKERS

TRACKER_CHOICES = [(t.title, name) for name, t in TRACKERS.items()]  # (shown, value) for "Report to"


def data_and_model(defaults, model_choices, default_model, method_choices):
    """Steps 1 and 2: task, data upload, column pickers, preview; base model, method, hyper-parameters."""
    return data() | model_and_method(defaults, model_choices, default_model, method_choices)


def data():
    """Step 1: data kind, task, data upload, example buttons, column pickers, data report, preview and balance."""
    w = {}
    gr.Markdown("## 1 · Data\n**Text**: a table with a text column (two for text pairs, e.g. premise and "
                "hypothesis) and a target column: one class per row, several labels per row (lists, or labels "
                "joined by `;` `|` `,`), or a number (CSV, TSV, JSON, JSONL, Parquet). **Images**: a .zip with one "
                "folder per class (optionally inside `train/` and `validation/` or `test/`), or with a "
                "`metadata.csv` / `metadata.jsonl` (`file_name` and the target) for several labels or a number per "
                "image. Without a test file, 20% is held out for testing and 10% for early stopping.")
    with gr.Row(equal_height=True):
        w["modality"] = gr.Radio(label="Data", choices=[("Text", "text"), ("Images", "image")], value="text",
                                 elem_id="modality", scale=1)
        w["task"] = gr.Dropdown(label="Task", choices=views.task_choices(), value=views.INFERRED, elem_id="task",
                                interactive=True, scale=2, info="What the model predicts; the data report says "
                                "what it inferred from the target column and why")
    types = [".csv", ".tsv", ".txt", ".json", ".jsonl", ".parquet", ".zip"]
    with gr.Row():
        w["train_file"] = gr.File(label="Training data", file_types=types, elem_id="train-file")
        w["test_file"] = gr.File(label="Test data (optional)", file_types=types)
    with gr.Row():
        w["example_btn"] = gr.Button("Use the example text data (SMS Spam Collection, 5,574 messages)", size="sm",
                                     elem_id="example-text")
        w["example_img_btn"] = gr.Button("Use the example image data (300 MNIST digits)", size="sm",
                                         elem_id="example-image")
    with gr.Row(visible=True) as w["columns_row"]:
        w["text_col"] = gr.Dropdown(label="Text column", choices=[], interactive=True, elem_id="text-col",
                                    allow_custom_value=True)
        w["pair_col"] = gr.Dropdown(label="Second text column (text pairs)", choices=[views.NO_PAIR],
                                    value=views.NO_PAIR, interactive=True, elem_id="pair-col")
        w["label_col"] = gr.Dropdown(label="Label column", choices=[], interactive=True, elem_id="label-col",
                                     allow_custom_value=True)
        w["separator"] = gr.Textbox(label="Label separator", placeholder="multi-label: inferred (; | ,)",
                                    max_length=5, elem_id="separator", scale=0, min_width=220)
    w["data_report"] = gr.Markdown(elem_id="data-report")
    w["image_preview"] = gr.Gallery(label="Sample images (class folder)", columns=8, height=200, visible=False,
                                    elem_id="image-preview")
    w["run_data_md"] = gr.Markdown(visible=False, elem_id="run-data")
    with gr.Row(visible=False) as w["preview_row"]:  # shown once a file is chosen
        w["preview"] = gr.Dataframe(pd.DataFrame(columns=["(upload a file)"]), label="Preview (first rows)",
                                    interactive=False, wrap=True, max_height=300, scale=3, elem_id="preview",
                                    column_widths=["50%", "15%"])  # the chosen text and label columns come first
        w["classes"] = gr.Dataframe(pd.DataFrame(columns=["label", "train", "validation", "test", "share %"]),
                                    label="Label balance (rows per split)", interactive=False, max_height=300,
                                    scale=2, elem_id="classes")
    w.update(app_audit.widgets())  # "Check labels": the label audit (app_audit)
    return w


def model_and_method(defaults, model_choices, default_model, method_choices):
    """Step 2: base model, method, the method's options (LoRA, N, learning rate, warm start), hyper-parameters."""
    w = {}
    gr.Markdown("## 2 · Model and method")
    with gr.Row():
        w["model"] = gr.Dropdown(label="Base model", choices=model_choices, value=default_model,
                                 allow_custom_value=True, elem_id="model",
                                 info="A bundled model, or type a local folder / Hugging Face Hub ID")
        w["method"] = gr.Radio(label="What to train", choices=method_choices, value="head", elem_id="method",
                               info="Linear probe: fastest; last N layers / LoRA: adapt the encoder too")
    # Whole-number fields (N, r, epochs, batch size, max_length, patience, seed, warm-start epochs) leave
    # ``precision`` unset on purpose: precision=0 makes Gradio run int(round(x)) before the handler, which fails on
    # NaN / infinity with no message to the API caller and silently rounds 2.5; TrainConfig and the method configs
    # check the values and name the field instead.
    with gr.Row(visible=False, equal_height=True) as w["lora_row"]:
        w["lora_r"] = gr.Number(label="LoRA rank r", value=8, elem_id="lora-r",
                                info="Adapter size: 4-16 is typical; larger trains more parameters")
        w["lora_alpha"] = gr.Number(label="LoRA alpha", value=16, elem_id="lora-alpha",
                                    info="Scale: the adapters' update is multiplied by alpha / r")
        w["lora_dropout"] = gr.Number(label="LoRA dropout", value=0.1,
                                      info="Dropout on the adapters' input while training (0-0.3)")
        w["lora_targets"] = gr.Textbox(label="Target modules", placeholder="default: query, value",
                                       info="Layer names to adapt, comma-separated; empty: the model's default")
    with gr.Row(equal_height=True, elem_id="method-opts"):
        w["num_layers"] = gr.Number(label="N (top encoder layers to train)", value=2, visible=False,
                                    elem_id="num-layers", info="1 = only the last layer; more adapts more, slower")
        lr = gr.Number(label=views.FROZEN_LR_LABEL, value=defaults.learning_rate, visible=False, elem_id="hp-lr",
                       info=views.LR_INFO)
        w["probe_epochs"] = gr.Number(label="Warm-start epochs (head first)", value=None,
                                      visible=False, elem_id="probe-epochs", info=views.PROBE_INFO)
    w["hp"], w["class_weights"] = _hyperparameters(defaults, lr)  # app.HP_FIELDS order, then the checkbox
    w["trainable_md"] = gr.Markdown()
    return w


def _hyperparameters(defaults, lr):
    """The hyper-parameters accordion -> (its Number fields in ``app.HP_FIELDS`` order, the class-weights
    checkbox) (``lr``: the method's learning-rate field, shown beside the method)."""
    with gr.Accordion("Hyper-parameters (defaults suit the chosen method)", open=False, elem_id="hp"):
        with gr.Row(equal_height=True):
            epochs = gr.Number(label="Epochs (max)", value=defaults.epochs, elem_id="hp-epochs",
                               info="Upper limit: early stopping may end training sooner")
            batch = gr.Number(label="Batch size", value=defaults.batch_size,
                              info="Examples per optimizer step")
            patience = gr.Number(label="Early-stopping patience", value=defaults.early_stopping_patience,
                                 elem_id="hp-patience",
                                 info="Epochs without a better validation score; 0 = off")
        with gr.Row(equal_height=True):
            head_lr = gr.Number(label="Head learning rate", value=defaults.head_learning_rate,
                                info="AdamW step size for the new classification head")
            decay = gr.Number(label="Weight decay", value=defaults.weight_decay,
                              info="AdamW weight decay (0.01 is typical; 0 = none)")
            warmup = gr.Number(label="Warmup ratio", value=defaults.warmup_ratio,
                               info="Share of steps with a rising learning rate (0.1 = 10 %)")
        with gr.Row(equal_height=True):
            max_len = gr.Number(label="max_length (tokens)", value=defaults.max_length,
                                elem_id="hp-max-length", info="Longer texts are cut; shorter is faster (text only)")
            dropout = gr.Number(label="Head dropout", value=defaults.dropout,
                                info="Dropout before the head while training (0-0.5)")
            seed = gr.Number(label="Seed", value=defaults.seed,
                             info="Same seed, data and settings: same split and same result")
        weights = gr.Checkbox(label="Class weights (against imbalance)", value=defaults.class_weights,
                              elem_id="class-weights", info="Rare classes count more in the loss (single-label: "
                              "'balanced' weights; multi-label: each label's negatives / positives)")
    return [epochs, batch, lr, head_lr, decay, warmup, max_len, dropout, patience, seed], weights


def train():
    """Step 3: start / cancel, the run picker, live status, curves, log, results (each shown once it has
    something to show)."""
    w = {}
    gr.Markdown("## 3 · Train and evaluate\nTraining runs on the server: you can close or reload this page and "
                "come back to it. Runs are kept for this browser only.")
    with gr.Row():
        w["run_name"] = gr.Textbox(label="Run name or note (optional)", placeholder="e.g. LoRA r=4, more epochs",
                                   max_length=80, scale=3, elem_id="run-name")
        w["report_to"] = gr.CheckboxGroup(label="Report to (experiment tracking)", choices=TRACKER_CHOICES,
                                          value=[], scale=2, elem_id="report-to",
                                          info="Also log parameters, losses and metrics to these trackers "
                                               "(files in the run's tracking/ folder on the server)")
        w["train_btn"] = gr.Button("Start training", variant="primary", elem_id="train-btn", scale=2)
    w["search"] = app_search.section()  # "Find the best settings": its components by name
    w["started"] = gr.Textbox(visible=False)  # id of the run just started (the /train API result) ...
    w["started_msg"] = gr.Markdown(visible=False)  # ... and its first status (the page shows the live one)
    with gr.Row(equal_height=True):
        w["run"] = gr.Dropdown(label="Run shown below (your runs, newest first)", choices=[], elem_id="run-picker",
                               allow_custom_value=True, interactive=True, visible=False, scale=4)
        w["cancel_btn"] = gr.Button("Cancel run", variant="stop", elem_id="cancel-btn", interactive=False, scale=1)
        w["delete_btn"] = gr.Button("Delete run", elem_id="delete-btn", interactive=False, scale=1)
        w["restart_btn"] = gr.Button("Restart run", variant="primary", elem_id="restart-btn", visible=False, scale=1)
    w["status"] = gr.HTML(views.status_html(None, None, None), elem_id="status-box")
    with gr.Column(visible=False, elem_id="live") as w["live_col"]:  # a run is selected
        with gr.Row():
            w["loss_plot"] = gr.LinePlot(views.loss_frame(None), x="step", y="loss", title="Training loss per step",
                                         x_title="optimizer step", y_title="loss", height=260,
                                         visible=False, elem_id="loss-plot")
            w["val_plot"] = gr.ScatterPlot(None, x="epoch", y="value", color="metric",
                                           title="Validation scores per epoch", x_title="epoch",
                                           y_title="score", height=260, sort=views.EPOCH_ORDER,
                                           x_axis_format="d",
                                           visible=False, elem_id="val-plot")
        w["log"] = gr.Textbox(label="Log (latest lines)", lines=4, max_lines=12, interactive=False,
                              elem_id="run-log")
    with gr.Column(visible=False, elem_id="results") as w["results_col"]:  # the run has a model
        _results(w)
    return w


def _results(w) -> None:
    """Step 3's results: the task kind's metrics beside its baseline, per-class / per-label scores, the
    evaluation figure, misclassified images, the worst held-out rows and the download of every prediction."""
    with gr.Row():
        with gr.Column(scale=1):
            w["metrics"] = gr.Dataframe(pd.DataFrame(columns=["metric", "model", "baseline"]), interactive=False,
                                        label="Held-out metrics vs. baseline", elem_id="metrics", wrap=True,
                                        column_widths=["50%", "20%", "30%"])
            w["per_class"] = gr.Dataframe(pd.DataFrame(columns=["label", "precision", "recall", "f1", "support"]),
                                          label="Per-class scores", interactive=False, max_height=300,
                                          elem_id="per-class")
            w["eval_notes"] = gr.Markdown(elem_id="eval-notes")
        w["eval_img"] = gr.Image(label="Evaluation", show_label=False, type="filepath", interactive=False,
                                 elem_id="eval-img", scale=1)
    w["miss_img"] = gr.Image(label="Misclassified held-out images", type="filepath", interactive=False,
                             visible=False, elem_id="miss-img")
    w["mistakes"] = gr.Dataframe(pd.DataFrame(columns=["input", "true", "predicted"]), interactive=False, wrap=True,
                                 label="Where the model is wrong", max_height=520, elem_id="mistakes")
    w["predictions_dl"] = gr.DownloadButton("Download every held-out prediction (predictions.csv)",
                                            interactive=False, visible=False, elem_id="predictions-dl", size="sm")


def use():
    """Step 4: try the selected run's model and export it (shown once the selected run has a model)."""
    w = {}
    gr.Markdown("## 4 · Try it and export")
    w["use_note"] = gr.Markdown("Train a model in step 3 (or select one of your finished runs there): you can then "
                                "try it here and download it as an ONNX bundle.", elem_id="use-note")
    with gr.Column(visible=False, elem_id="use") as w["use_col"]:
        gr.Markdown("Uses the run selected in step 3.")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Column() as w["text_try_col"]:  # text runs: one box, two for pair runs
                    w["text_in"] = gr.Textbox(label="Text", placeholder="Type a text for the model", lines=2,
                                              elem_id="text-in")
                    w["text_pair_in"] = gr.Textbox(label="Second text", placeholder="Type the second text of the pair",
                                                   lines=2, visible=False,
                                                   elem_id="text-pair-in")
                w["image_in"] = gr.Image(label="Image", type="filepath", image_mode=None,  # the file as uploaded:
                                         sources=["upload", "clipboard"], height=220,  # alpha kept, as in training
                                         visible=False, elem_id="image-in")
            with gr.Column(scale=2):
                w["try_md"] = gr.Markdown(elem_id="try-md")  # the prediction in words, above its details
                w["label_out"] = gr.Label(label="Predicted class (top 5 probabilities)", num_top_classes=5,
                                          elem_id="label-out")
                w["try_table"] = gr.Dataframe(pd.DataFrame(columns=["label", "probability", "threshold", "chosen"]),
                                              label="Every label: probability, decision threshold, chosen",
                                              interactive=False, visible=False, max_height=360,
                                              elem_id="try-table")
        with gr.Row():
            w["try_btn"] = gr.Button("Predict", elem_id="try-btn")
            w["try_img_btn"] = gr.Button("Predict the image", visible=False, elem_id="try-img-btn")
        gr.Markdown("### Score or evaluate a file\nA table with the run's text column(s), or a zip of images. "
                    "*Score* adds the run's prediction to every row; *Evaluate* takes a labelled file like the "
                    "training file and reports it as the held-out split was reported.")
        with gr.Row():
            w["score_in"] = gr.File(label="File to score or evaluate", type="filepath", scale=3, elem_id="score-in",
                                    file_types=[".csv", ".tsv", ".txt", ".json", ".jsonl", ".parquet", ".zip"])
            with gr.Column(scale=1):
                w["score_btn"] = gr.Button("Score the file", elem_id="score-btn")
                w["eval_btn"] = gr.Button("Evaluate on the file (labelled)", elem_id="eval-btn")
        w["score_dl"] = gr.DownloadButton("Download the scored file (scored.csv)", visible=False, elem_id="score-dl")
        w["eval_md"] = gr.Markdown(elem_id="eval-md")
        w["eval_table"] = gr.Dataframe(label="Held-out style metrics on the file", interactive=False, visible=False,
                                       elem_id="eval-table")
        gr.Markdown("### Export\nONNX export of the run selected in step 3, then a parity check against PyTorch on "
                    "held-out rows. The bundle is offered only if parity passes (max |Δlogit| ≤ 1e-4, same labels).")
        w["export_btn"] = gr.Button("Export ONNX bundle", variant="primary", elem_id="export-btn")
        w["export_md"] = gr.Markdown(elem_id="export-md")
        w["parity"] = gr.Dataframe(pd.DataFrame(columns=["name", "batch_size", "rows", "max_tokens", "max_abs_diff",
                                                         "argmax_agreement", "passed"]),
                                   label="Parity checks (PyTorch vs ONNX Runtime)", interactive=False,
                                   visible=False, elem_id="parity")
        w["bundle"] = gr.File(label="Download a bundle (the first one is the recommended default)",
                              file_count="multiple", visible=False, interactive=False, elem_id="bundle-file")
    return w


def history():
    """Step 5: the run table and disk use, side-by-side comparison, config download / upload."""
    w = {}
    gr.Markdown("## 5 · Your runs\nEvery run started from this browser. Tick runs to compare them; download a "
                "run's config, or upload one to fill step 2 and the hyper-parameters from it.")
    with gr.Column(visible=False, elem_id="runs") as w["runs_col"]:  # once there is a run
        w["quota_md"] = gr.Markdown(elem_id="quota")
        w["history"] = gr.Dataframe(history_views.history_frame([]), label="Run history", interactive=False,
                                    wrap=True, column_widths=history_views.HISTORY_WIDTHS, max_height=1200,
                                    elem_id="history")
        w["compare_pick"] = gr.CheckboxGroup(label="Compare runs", choices=[], elem_id="compare-pick")
        with gr.Column(visible=False, elem_id="compare-box") as w["compare_col"]:  # once runs are ticked
            w["compare"] = gr.Dataframe(history_views.compare_frame([]), label="Side by side", interactive=False,
                                        wrap=True, max_height=2000, elem_id="compare")
            with gr.Row():
                w["compare_curves"] = gr.ScatterPlot(None, x="epoch", y=history_views.COMPARE_Y,
                                                     color="run", title="Validation score per epoch (each run's "
                                                     "selection metric)",
                                                     x_title="epoch", height=280, sort=views.EPOCH_ORDER,
                                                     x_axis_format="d",
                                                     elem_id="compare-curves")
                w["compare_f1"] = gr.Dataframe(history_views.compare_per_class({}),
                                               label="Per-class / per-label test F1", interactive=False,
                                               max_height=2000, elem_id="compare-f1")
        w["config_dl"] = gr.DownloadButton("Download the selected run's config.json", interactive=False,
                                           elem_id="config-dl")
    w["config_up"] = gr.File(label="Start from a config.json", file_types=[".json"], elem_id="config-up",
                             height=120)
    w["config_msg"] = gr.Markdown()
    return w
