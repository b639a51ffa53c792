"""The app's layout, one function per step; each returns a dict of its components for ``app.build_demo`` to wire.

Layout only: no handlers and no core calls here (``app.py`` wires events, ``app_views`` formats values).
"""
from __future__ import annotations

import gradio as gr
import pandas as pd

import app_views as views


def data_and_model(defaults, model_choices, default_model, method_choices):
    """Steps 1 and 2: task, data upload, column pickers, preview; base model, method, hyper-parameters."""
    w = {}
    gr.Markdown("## 1 · Data\n**Text**: a table with a text column and a label column (CSV, TSV, JSON, JSONL, "
                "Parquet). **Images**: a .zip with one folder per class (optionally inside `train/` and "
                "`validation/` or `test/`). Without a test file, 20% is held out for testing and 10% for early "
                "stopping (stratified).")
    w["task"] = gr.Radio(label="Task", choices=[("Text classification", "text"), ("Image classification", "image")],
                         value="text", elem_id="task")
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
        w["label_col"] = gr.Dropdown(label="Label column", choices=[], interactive=True, elem_id="label-col",
                                     allow_custom_value=True)
    w["data_report"] = gr.Markdown(elem_id="data-report")
    w["image_preview"] = gr.Gallery(label="Sample images (class folder)", columns=8, height=200, visible=False,
                                    elem_id="image-preview")
    with gr.Row():
        w["preview"] = gr.Dataframe(pd.DataFrame(columns=["(upload a file)"]), label="Preview (first rows)",
                                    interactive=False, wrap=True, max_height=300, scale=3)
        w["classes"] = gr.Dataframe(pd.DataFrame(columns=["label", "train", "validation", "test", "share %"]),
                                    label="Class balance (rows per split)", interactive=False, max_height=300,
                                    scale=2)
    gr.Markdown("## 2 · Model and method")
    with gr.Row():
        w["model"] = gr.Dropdown(label="Base model", choices=model_choices, value=default_model,
                                 allow_custom_value=True,
                                 info="A bundled model, or type a local folder / Hugging Face Hub ID")
        w["method"] = gr.Radio(label="What to train", choices=method_choices, value="head", elem_id="method",
                               info="Linear probe: fastest; last N layers / LoRA: adapt the encoder too")
    # Whole-number fields (N, r, epochs, batch size, max_length, patience, seed) leave ``precision`` unset on
    # purpose: precision=0 makes Gradio run int(round(x)) before the handler, which fails on NaN / infinity with
    # no message to the API caller and silently rounds 2.5; TrainConfig and the method configs check the values
    # and name the field instead.
    with gr.Row():
        w["num_layers"] = gr.Number(label="N (top encoder layers to train)", value=2, visible=False)
        with gr.Row(visible=False) as w["lora_row"]:
            w["lora_r"] = gr.Number(label="LoRA rank r", value=8)
            w["lora_alpha"] = gr.Number(label="LoRA alpha", value=16)
            w["lora_dropout"] = gr.Number(label="LoRA dropout", value=0.1)
            w["lora_targets"] = gr.Textbox(label="Target modules", placeholder="default: query, value")
    with gr.Accordion("Hyper-parameters (defaults suit the chosen method)", open=False, elem_id="hp"):
        with gr.Row():
            w["hp"] = [gr.Number(label="Epochs (max)", value=defaults.epochs, elem_id="hp-epochs"),
                       gr.Number(label="Batch size", value=defaults.batch_size),
                       gr.Number(label="Encoder learning rate", value=defaults.learning_rate),
                       gr.Number(label="Head learning rate", value=defaults.head_learning_rate),
                       gr.Number(label="Weight decay", value=defaults.weight_decay)]
        with gr.Row():
            w["hp"] += [gr.Number(label="Warmup ratio", value=defaults.warmup_ratio),
                        gr.Number(label="max_length (tokens)", value=defaults.max_length,
                                  elem_id="hp-max-length"),
                        gr.Number(label="Head dropout", value=defaults.dropout),
                        gr.Number(label="Early-stopping patience (epochs, 0 = off)",
                                  value=defaults.early_stopping_patience, elem_id="hp-patience"),
                        gr.Number(label="Seed", value=defaults.seed)]
    w["trainable_md"] = gr.Markdown()
    return w


def train():
    """Step 3: start / cancel, the run picker, live status, curves, log, results."""
    w = {}
    gr.Markdown("## 3 · Train and evaluate\nTraining runs on the server: you can close or reload this page and "
                "come back to it. Runs are kept for this browser only.")
    with gr.Row():
        w["train_btn"] = gr.Button("Start training", variant="primary", elem_id="train-btn")
        w["cancel_btn"] = gr.Button("Cancel run", variant="stop", elem_id="cancel-btn")
        w["delete_btn"] = gr.Button("Delete run", elem_id="delete-btn")
    w["started"] = gr.Textbox(visible=False)  # id of the run just started (the /train API result) ...
    w["started_msg"] = gr.Markdown(visible=False)  # ... and its first status (the page shows the live one)
    w["run"] = gr.Dropdown(label="Run shown below (your runs, newest first)", choices=[], elem_id="run-picker", allow_custom_value=True,
                           interactive=True)
    w["status"] = gr.HTML(views.status_html(None, None, None), elem_id="status-box")
    with gr.Row():
        w["loss_plot"] = gr.LinePlot(views.loss_frame(None), x="step", y="loss", title="Training loss per step",
                                     x_title="optimizer step", y_title="cross-entropy", height=260)
        w["val_plot"] = gr.LinePlot(views.val_frame(None), x="epoch", y="value", color="metric",
                                    title="Validation metrics per epoch", x_title="epoch", y_title="score (0-1)",
                                    height=260)
    w["log"] = gr.Textbox(label="Log (latest lines)", lines=6, max_lines=12, interactive=False, elem_id="run-log")
    with gr.Row():
        w["metrics"] = gr.Dataframe(pd.DataFrame(columns=["metric", "model", "baseline"]), interactive=False,
                                    label="Held-out metrics vs. majority baseline", elem_id="metrics")
        w["per_class"] = gr.Dataframe(pd.DataFrame(columns=["label", "precision", "recall", "f1", "support"]),
                                      label="Per-class scores", interactive=False, max_height=300)
    with gr.Row():
        w["cm_img"] = gr.Image(label="Confusion matrix", show_label=False, type="filepath", interactive=False,
                                 elem_id="cm-img")
        w["curve_img"] = gr.Image(label="Training curve", show_label=False, type="filepath", interactive=False)
    w["miss_img"] = gr.Image(label="Misclassified held-out images", type="filepath", interactive=False,
                             visible=False, elem_id="miss-img")
    return w


def use():
    """Steps 4 and 5: try the selected run's model; export it."""
    w = {}
    gr.Markdown("## 4 · Try it\nUses the run selected in step 3.")
    with gr.Row():
        with gr.Column(scale=3):
            w["text_in"] = gr.Textbox(label="Text", placeholder="Type a message to classify", lines=2)
            w["image_in"] = gr.Image(label="Image", type="filepath", sources=["upload", "clipboard"], height=220,
                                     visible=False, elem_id="image-in")
        w["label_out"] = gr.Label(label="Predicted label probabilities (top 5)", num_top_classes=5, scale=2)
    with gr.Row():
        w["try_btn"] = gr.Button("Predict", elem_id="try-btn")
        w["try_img_btn"] = gr.Button("Predict the image", visible=False, elem_id="try-img-btn")
    gr.Markdown("## 5 · Export\nONNX export of the run selected in step 3, then a parity check against PyTorch on "
                "held-out rows. The bundle is offered only if parity passes (max |Δlogit| ≤ 1e-4, same labels).")
    w["export_btn"] = gr.Button("Export ONNX bundle", variant="primary", elem_id="export-btn")
    w["export_md"] = gr.Markdown(elem_id="export-md")
    w["parity"] = gr.Dataframe(pd.DataFrame(columns=["name", "batch_size", "rows", "max_tokens", "max_abs_diff",
                                                     "argmax_agreement", "passed"]),
                               label="Parity checks (PyTorch vs ONNX Runtime)", interactive=False)
    w["bundle"] = gr.File(label="Download a bundle (the first one is the recommended default)", file_count="multiple",
                          visible=False, interactive=False, elem_id="bundle-file")
    return w


def history():
    """Step 6: the run table, side-by-side comparison, config download / upload."""
    w = {}
    gr.Markdown("## 6 · Your runs\nEvery run started from this browser. Tick runs to compare them; download a "
                "run's config, or upload one to fill steps 2 and the hyper-parameters from it.")
    w["history"] = gr.Dataframe(views.history_frame([]), label="Run history", interactive=False, wrap=True,
                                elem_id="history")
    w["compare_pick"] = gr.CheckboxGroup(label="Compare runs", choices=[], elem_id="compare-pick")
    w["compare"] = gr.Dataframe(views.compare_frame([]), label="Side by side", interactive=False)
    with gr.Row():
        w["config_dl"] = gr.DownloadButton("Download the selected run's config.json", interactive=False,
                                           elem_id="config-dl")
        w["config_up"] = gr.File(label="Start from a config.json", file_types=[".json"], elem_id="config-up")
    w["config_msg"] = gr.Markdown()
    return w
