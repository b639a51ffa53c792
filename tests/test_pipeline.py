"""A run end to end on real data: beats the majority baseline, saves, reloads (LoRA too) to identical predictions."""
import numpy as np
import pytest
import torch

from peft_core.inference import predict_logits
from peft_core.modeling import load_classifier
from peft_core.pipeline import RunConfig, fine_tune
from peft_core.training import TrainConfig


def test_head_run_beats_the_majority_baseline(head_run):
    r = head_run.eval_report
    assert r.n == head_run.data.report.split_sizes["test"] == 80
    assert r.baseline_label == "ham"
    assert r.accuracy > r.baseline_accuracy + 0.05 and r.macro_f1 > r.baseline_macro_f1 + 0.3
    assert np.asarray(r.confusion).sum() == r.n
    for name in ("confusion_matrix.png", "training.png", "report.json", "config.json", "events.jsonl"):
        assert (head_run.run_dir / name).stat().st_size > 0


def test_saved_model_reloads_to_the_same_predictions(head_run):
    model, tok, cfg = load_classifier(head_run.run_dir / "model")
    texts = head_run.data.splits["test"]["text"]
    np.testing.assert_array_equal(predict_logits(model, tok, texts, 64), head_run.test_logits)
    assert cfg["id2label"] == {"0": "ham", "1": "spam"}


def test_lora_run_saved_and_loaded_predicts_exactly_the_same(sms_small, tmp_path):
    from peft import PeftModel

    from peft_core.pipeline import build_model

    cfg = RunConfig(train_file=str(sms_small), method="lora", method_config={"r": 4},
                    train=TrainConfig(epochs=1, max_length=48))
    run = fine_tune(cfg, tmp_path)
    texts = run.data.splits["test"]["text"]
    model, tok, _ = load_classifier(tmp_path / "model")
    np.testing.assert_array_equal(predict_logits(model, tok, texts, 48), run.test_logits)
    # the adapter checkpoint carries the trained head too: base + adapter reproduces the merged model
    base, tok2, *_ = build_model("minilm", "head", {}, 2)
    with_adapter = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    np.testing.assert_allclose(predict_logits(with_adapter, tok2, texts, 48), run.test_logits, atol=1e-4)
    assert (predict_logits(with_adapter, tok2, texts, 48).argmax(-1) == run.test_logits.argmax(-1)).all()


def test_bad_method_option_is_a_config_error(sms_small):
    from peft_core.errors import ConfigError

    with pytest.raises(ConfigError, match="num_layers"):
        RunConfig(train_file=str(sms_small), method="last_n", method_config={"num_layers": 0})
    with pytest.raises(ConfigError, match="unknown"):
        RunConfig(train_file=str(sms_small), method="full")
    with pytest.raises(ConfigError, match="only 6 layers"):
        fine_tune(RunConfig(train_file=str(sms_small), method="last_n", method_config={"num_layers": 7},
                            train=TrainConfig(epochs=1)), "/tmp/unused-run")
    torch.manual_seed(0)
