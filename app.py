"""Gradio app: pick a base model, upload data, train a small part of the model, evaluate, export an ONNX bundle.

Thin UI only: widgets become config objects, the core (``peft_core``, ``exporters``) does the work, results
become widgets. Per-user state lives in ``gr.State``; each run writes its own folder under ``PEFT_RUNS_DIR``
(default ``./runs``). ``python app.py`` serves it on http://127.0.0.1:7860 (``GRADIO_SERVER_NAME``/``PORT`` apply).
"""
from __future__ import annotations

import functools
import logging
import os
import time
import uuid
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from peft_core.callbacks import Control, ProgressEvent  # noqa: E402
from peft_core.data import infer_columns, prepare_data, read_table  # noqa: E402
from peft_core.errors import PeftCoreError  # noqa: E402
from peft_core.limits import Limits  # noqa: E402
from peft_core.methods import METHODS  # noqa: E402
from peft_core.models import DEFAULT_MODEL, REGISTRY  # noqa: E402

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE / "examples" / "sms_spam.csv"
RUNS_ROOT = Path(os.environ.get("PEFT_RUNS_DIR", HERE / "runs")).resolve()
log = logging.getLogger("peft_app")

HP_FIELDS = ["epochs", "batch_size", "learning_rate", "head_learning_rate", "weight_decay", "warmup_ratio",
             "max_length", "dropout", "early_stopping_patience", "seed"]
METHOD_CHOICES = [(f"{m.title}", name) for name, m in METHODS.items()]
MODEL_CHOICES = [(spec.title, key) for key, spec in REGISTRY.items()]


class Session:
    """One browser session's state: the stop flag and the last trained run (never shared between users)."""

    def __init__(self) -> None:
        self.control = Control()
        self.run = None
        self.export = None

    def __deepcopy__(self, memo):  # gr.State copies its initial value per session: give each a fresh one
        return Session()


def user_errors(fn):
    """Show core errors as a message; log anything else and show a short message (never a traceback).
    Outputs keep their earlier values because the handler raises instead of returning."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except PeftCoreError as e:
            raise gr.Error(str(e), print_exception=False) from e
        except Exception as e:
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Unexpected error ({type(e).__name__}: {str(e)[:200]}). Details are in the server "
                           "log; your earlier results are unchanged.", print_exception=False) from e

    return wrapper


def _need_file(path) -> str:
    if not path:
        raise gr.Error("No training file yet: upload a CSV/TSV/JSON/JSONL/Parquet file or click "
                       "'Use the example data'.", print_exception=False)
    return str(path)


@user_errors
def load_preview(train_file, test_file, text_col=None, label_col=None):
    """File chosen -> preview table, column pickers (inferred unless chosen), data report, class balance."""
    frame, _ = read_table(_need_file(train_file))
    cols = list(frame.columns)
    text_col = text_col if text_col in cols else None
    label_col = label_col if label_col in cols else None
    text_col, label_col = infer_columns(frame, text_col, label_col)
    data = prepare_data(train_file, test_file or None, text_column=text_col, label_column=label_col)
    return (frame.head(12), gr.update(choices=cols, value=text_col), gr.update(choices=cols, value=label_col),
            data.report.to_markdown(), data.report.class_table())


def method_defaults(method: str):
    """Method changed -> its default hyper-parameters and which method options to show."""
    from peft_core.training import TrainConfig

    cfg = TrainConfig().with_defaults(METHODS[method].train_defaults)
    return ([getattr(cfg, f) for f in HP_FIELDS]
            + [gr.update(visible=method == "last_n"), gr.update(visible=method == "lora")])


def _method_config(method, num_layers, lora_r, lora_alpha, lora_dropout, lora_targets) -> dict:
    return {"head": {}, "last_n": {"num_layers": num_layers},
            "lora": {"r": lora_r, "alpha": lora_alpha, "dropout": lora_dropout,
                     "target_modules": lora_targets or ""}}[method]


def _run_config(train_file, test_file, text_col, label_col, model, method, hp, method_opts):
    from peft_core.pipeline import RunConfig
    from peft_core.training import TrainConfig

    train = TrainConfig(**dict(zip(HP_FIELDS, hp)))
    return RunConfig(train_file=_need_file(train_file), test_file=test_file or None, text_column=text_col or None,
                     label_column=label_col or None, model=model or DEFAULT_MODEL, method=method,
                     method_config=_method_config(method, *method_opts), train=train)


@user_errors
def count_trainable(train_file, test_file, text_col, label_col, model, method, *method_opts):
    """Load the base model with the method applied and report trainable parameters (before training)."""
    from peft_core.pipeline import build_model, trainable_summary

    num_labels = 2
    if train_file:
        data = prepare_data(train_file, test_file or None, text_column=text_col or None,
                            label_column=label_col or None)
        num_labels = data.task.num_labels
    *_, trainable, total = build_model(model or DEFAULT_MODEL, method, _method_config(method, *method_opts),
                                       num_labels)
    return f"**{trainable_summary(trainable, total)}** with a {num_labels}-class head."


@user_errors
def train_model(session: Session, train_file, test_file, text_col, label_col, model, method, epochs, batch_size,
                learning_rate, head_learning_rate, weight_decay, warmup_ratio, max_length, dropout,
                early_stopping_patience, seed, num_layers, lora_r, lora_alpha, lora_dropout, lora_targets,
                progress=gr.Progress()):
    """Train -> status, metrics, per-class table, confusion matrix, training curve; enables Try it / Export."""
    from peft_core.pipeline import fine_tune

    hp = (epochs, batch_size, learning_rate, head_learning_rate, weight_decay, warmup_ratio, max_length, dropout,
          early_stopping_patience, seed)
    method_opts = (num_layers, lora_r, lora_alpha, lora_dropout, lora_targets)
    cfg = _run_config(train_file, test_file, text_col, label_col, model, method, hp, method_opts)
    session.control = Control()
    notes, last = [], [0.0]

    def on_event(ev: ProgressEvent):
        if ev.kind == "message":
            notes.append(ev.message)
        elif ev.kind == "step" and ev.total_steps and time.monotonic() - last[0] > 0.25:  # throttle UI updates
            last[0] = time.monotonic()
            progress(ev.step / ev.total_steps, desc=f"epoch {ev.epoch:.1f} · loss {ev.loss:.4f}")

    progress(0, desc="loading data and model")
    run = fine_tune(cfg, RUNS_ROOT / uuid.uuid4().hex, [on_event], session.control)
    session.run, session.export = run, None
    r = run.train_result
    status = (f"{'Stopped by you' if r.cancelled else 'Finished'}: {len(r.history)} epochs in {r.seconds:.1f} s, "
              f"best epoch {r.best_epoch}{' (early stopping)' if r.stopped_early else ''}. "
              + " ".join(notes) + "\n\n" + run.eval_report.to_markdown())
    return (status, run.eval_report.metrics_table(), run.eval_report.per_class_table(),
            str(run.plots["confusion_matrix"]), str(run.plots["training"]))


def stop_training(session: Session) -> str:
    session.control.request_stop()
    return "Stopping after the current step; the best epoch so far is kept and evaluated."


@user_errors
def try_it(session: Session, text: str):
    """Text -> label probabilities of the last trained model."""
    from peft_core.inference import predict_proba

    if session.run is None:
        raise gr.Error("Train a model first (step 3).", print_exception=False)
    if not (text or "").strip():
        raise gr.Error("Type a text to classify.", print_exception=False)
    run = session.run
    probs = predict_proba(run.model, run.tokenizer, [text], run.train_config.max_length)[0]
    return {label: float(p) for label, p in zip(run.data.task.labels, probs)}


@user_errors
def export_bundle(session: Session, progress=gr.Progress()):
    """Export ONNX, check parity, build the bundle -> summary, parity table, download (only if parity passed)."""
    from peft_core.pipeline import export_run

    if session.run is None:
        raise gr.Error("Train a model first (step 3).", print_exception=False)
    progress(0.1, desc="exporting to ONNX")
    res = export_run(session.run)
    session.export = res
    ok = res.bundle is not None
    text = ("**Ready to download.** " if ok else "**Export blocked.** ") + res.message
    files = [str(res.bundle)] + [str(p) for p in res.bundles.values() if p != res.bundle] if ok else None
    return text, res.parity.to_table(), gr.update(value=files, visible=ok)


def build_demo() -> gr.Blocks:
    """The Blocks layout and its event wiring (built at import; launched under __main__)."""
    from peft_core.training import TrainConfig

    defaults = TrainConfig().with_defaults(METHODS["head"].train_defaults)
    with gr.Blocks(title="PEFT Studio") as demo:
        session = gr.State(Session())
        gr.Markdown("# PEFT Studio\nFine-tune a small part of a pretrained text model on your labelled data, see "
                    "honest held-out results, and download a verified ONNX bundle that runs with ONNX Runtime "
                    "alone.")
        gr.Markdown("## 1 · Data\nA table with a text column and a label column (CSV, TSV, JSON, JSONL, Parquet). "
                    "Without a test file, 20% is held out for testing and 10% for early stopping (stratified).")
        with gr.Row():
            train_file = gr.File(label="Training data", file_types=[".csv", ".tsv", ".txt", ".json", ".jsonl",
                                                                    ".parquet"])
            test_file = gr.File(label="Test data (optional)", file_types=[".csv", ".tsv", ".txt", ".json",
                                                                          ".jsonl", ".parquet"])
        example_btn = gr.Button("Use the example data (SMS Spam Collection, 5,574 messages)", size="sm")
        with gr.Row():
            text_col = gr.Dropdown(label="Text column", choices=[], interactive=True, allow_custom_value=True)
            label_col = gr.Dropdown(label="Label column", choices=[], interactive=True, allow_custom_value=True)
        data_report = gr.Markdown()
        with gr.Row():
            preview = gr.Dataframe(pd.DataFrame(columns=["(upload a file)"]), label="Preview (first rows)",
                                   interactive=False, wrap=True, max_height=300, scale=3)
            classes = gr.Dataframe(pd.DataFrame(columns=["label", "train", "validation", "test", "share %"]),
                                   label="Class balance (rows per split)", interactive=False, max_height=300, scale=2)

        gr.Markdown("## 2 · Model and method")
        with gr.Row():
            model = gr.Dropdown(label="Base model", choices=MODEL_CHOICES, value=DEFAULT_MODEL, allow_custom_value=True,
                                info="A bundled model, or type a local folder / Hugging Face Hub ID")
            method = gr.Radio(label="What to train", choices=METHOD_CHOICES, value="head",
                              info="Linear probe: fastest; last N layers / LoRA: adapt the encoder too")
        with gr.Row():
            num_layers = gr.Number(label="N (top encoder layers to train)", value=2, precision=0, visible=False)
            with gr.Row(visible=False) as lora_row:
                lora_r = gr.Number(label="LoRA rank r", value=8, precision=0)
                lora_alpha = gr.Number(label="LoRA alpha", value=16)
                lora_dropout = gr.Number(label="LoRA dropout", value=0.1)
                lora_targets = gr.Textbox(label="Target modules", placeholder="default: query, value")
        method_opts = [num_layers, lora_r, lora_alpha, lora_dropout, lora_targets]
        with gr.Accordion("Hyper-parameters (defaults suit the chosen method)", open=False):
            with gr.Row():
                hp = [gr.Number(label="Epochs (max)", value=defaults.epochs, precision=0),
                      gr.Number(label="Batch size", value=defaults.batch_size, precision=0),
                      gr.Number(label="Encoder learning rate", value=defaults.learning_rate),
                      gr.Number(label="Head learning rate", value=defaults.head_learning_rate),
                      gr.Number(label="Weight decay", value=defaults.weight_decay)]
            with gr.Row():
                hp += [gr.Number(label="Warmup ratio", value=defaults.warmup_ratio),
                       gr.Number(label="max_length (tokens)", value=defaults.max_length, precision=0),
                       gr.Number(label="Head dropout", value=defaults.dropout),
                       gr.Number(label="Early-stopping patience (epochs)", value=defaults.early_stopping_patience,
                                 precision=0),
                       gr.Number(label="Seed", value=defaults.seed, precision=0)]
        trainable_md = gr.Markdown()

        gr.Markdown("## 3 · Train and evaluate")
        with gr.Row():
            train_btn = gr.Button("Train", variant="primary")
            stop_btn = gr.Button("Stop", variant="stop")
        status = gr.Markdown()
        with gr.Row():
            metrics = gr.Dataframe(pd.DataFrame(columns=["metric", "model", "baseline"]), interactive=False,
                                   label="Held-out metrics vs. majority baseline")
            per_class = gr.Dataframe(pd.DataFrame(columns=["label", "precision", "recall", "f1", "support"]),
                                     label="Per-class scores", interactive=False, max_height=300)
        with gr.Row():
            cm_img = gr.Image(label="Confusion matrix", type="filepath", interactive=False)
            curve_img = gr.Image(label="Training curve", type="filepath", interactive=False)

        gr.Markdown("## 4 · Try it")
        with gr.Row():
            text_in = gr.Textbox(label="Text", placeholder="Type a message to classify", lines=2, scale=3)
            label_out = gr.Label(label="Predicted label probabilities", num_top_classes=5, scale=2)
        try_btn = gr.Button("Predict")

        gr.Markdown("## 5 · Export\nONNX export, then a parity check against PyTorch on held-out rows. The "
                    "bundle is offered only if parity passes (max |Δlogit| ≤ 1e-4, same labels).")
        export_btn = gr.Button("Export ONNX bundle", variant="primary")
        export_md = gr.Markdown()
        parity_df = gr.Dataframe(pd.DataFrame(columns=["name", "batch_size", "rows", "max_tokens", "max_abs_diff",
                                                       "argmax_agreement", "passed"]),
                                 label="Parity checks (PyTorch vs ONNX Runtime)", interactive=False)
        bundle_file = gr.File(label="Download a bundle (the first one is the recommended default)",
                              file_count="multiple", visible=False, interactive=False)

        data_inputs = [train_file, test_file]
        data_outputs = [preview, text_col, label_col, data_report, classes]
        example_btn.click(lambda: str(EXAMPLE), None, train_file, api_name=False)
        train_file.change(load_preview, data_inputs, data_outputs, api_name="load_data")
        test_file.change(load_preview, data_inputs + [text_col, label_col], data_outputs, api_name=False)
        for col in (text_col, label_col):
            col.input(load_preview, data_inputs + [text_col, label_col], data_outputs, api_name=False)
        method.change(method_defaults, method, hp + [num_layers, lora_row], api_name=False)
        count_inputs = data_inputs + [text_col, label_col, model, method] + method_opts
        for trigger in (method.change, model.change, num_layers.change, lora_r.change, label_col.change):
            trigger(count_trainable, count_inputs, trainable_md, api_name=False)
        train_btn.click(train_model, [session] + data_inputs + [text_col, label_col, model, method] + hp
                        + method_opts, [status, metrics, per_class, cm_img, curve_img], api_name="train")
        stop_btn.click(stop_training, session, status, api_name="stop", queue=False)
        try_btn.click(try_it, [session, text_in], label_out, api_name="predict")
        text_in.submit(try_it, [session, text_in], label_out, api_name=False)
        export_btn.click(export_bundle, session, [export_md, parity_df, bundle_file], api_name="export")
    return demo


demo = build_demo()


def launch(**kwargs):
    """Launch ``demo`` with the folders it serves files from allowed (runs, examples); uploads over the
    ``PEFT_MAX_UPLOAD_MB`` limit are refused by Gradio before they are stored (``prepare_data`` checks it too)."""
    RUNS_ROOT.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("max_file_size", Limits.from_env().max_upload_bytes)
    kwargs.setdefault("allowed_paths", [str(RUNS_ROOT), str(EXAMPLE.parent)])
    kwargs.setdefault("theme", gr.themes.Soft())
    return demo.queue(default_concurrency_limit=1).launch(**kwargs)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
