"""Operator settings that bound what a hosted app loads: local model folders and remote code."""
import pytest

from peft_core.errors import ModelLoadError
from peft_core.models import get_spec, load_backbone, trust_remote_code


def minilm_folder() -> str:
    return get_spec("minilm").resolve()


def test_hosted_app_refuses_local_model_folders_outside_the_allowed_one(monkeypatch, tmp_path):
    monkeypatch.setenv("PEFT_HOSTED", "1")
    monkeypatch.delenv("PEFT_MODELS_DIR", raising=False)
    with pytest.raises(ModelLoadError, match="local model folders are not available on this hosted app"):
        load_backbone(get_spec(minilm_folder()))
    monkeypatch.setenv("PEFT_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelLoadError, match=f"outside {tmp_path}"):
        load_backbone(get_spec(minilm_folder()))
    link = tmp_path / "escape"
    link.symlink_to(minilm_folder())  # a link inside the allowed folder to a folder outside it
    with pytest.raises(ModelLoadError, match="not available"):
        load_backbone(get_spec(str(link)))


def test_local_folders_load_when_allowed_and_bundled_models_always(monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("PEFT_HOSTED", "1")
    monkeypatch.setenv("PEFT_MODELS_DIR", str(Path(minilm_folder()).parent))
    backbone, tok, spec = load_backbone(get_spec(minilm_folder()))
    assert spec.modality == "text" and backbone.config.model_type == "bert"
    assert load_backbone(get_spec("minilm"))[2].key == "minilm"


def test_remote_code_only_when_the_operator_enables_it(monkeypatch):
    monkeypatch.delenv("PEFT_TRUST_REMOTE_CODE", raising=False)
    assert trust_remote_code() is False
    monkeypatch.setenv("PEFT_TRUST_REMOTE_CODE", "1")
    assert trust_remote_code() is True
    seen = []
    import transformers

    real = transformers.AutoConfig.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", spy)
    monkeypatch.delenv("PEFT_TRUST_REMOTE_CODE")
    load_backbone(get_spec(minilm_folder()))
    assert seen[0] is False and True not in seen  # our call says False; transformers' inner calls never True


def test_operator_caps_epochs(monkeypatch):
    from peft_core.errors import ConfigError
    from peft_core.training import TrainConfig

    monkeypatch.setenv("PEFT_MAX_EPOCHS", "20")
    assert TrainConfig(epochs=20).epochs == 20
    with pytest.raises(ConfigError, match=r"epochs must be a number in \[1, 20\], got 21"):
        TrainConfig(epochs=21)
