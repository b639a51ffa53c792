"""The CLI does the whole job headless and fails with one clear line on bad input."""
import subprocess
import sys
import zipfile

from conftest import ROOT


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "peft_core", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def test_cli_trains_evaluates_and_exports(sms_small, tmp_path):
    out = tmp_path / "run"
    p = _cli("train", "--data", str(sms_small), "--method", "head", "--max-length", "64", "--out", str(out),
             "--export")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "accuracy" in p.stdout and "baseline (always 'ham')" in p.stdout
    assert "Parity PASSED" in p.stdout
    for precision in ("fp32", "int8"):
        assert "model.onnx" in zipfile.ZipFile(out / f"bundle-{precision}.zip").namelist()
    assert "int8:" in p.stdout and "held-out accuracy" in p.stdout
    assert "training:" in p.stderr  # the tqdm progress bar


def test_cli_bad_column_is_one_clear_line(sms_small, tmp_path):
    p = _cli("train", "--data", str(sms_small), "--label-column", "nope", "--out", str(tmp_path / "r"))
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "error: label column 'nope' is not in the file; columns are ['label', 'text']"]
    assert "Traceback" not in p.stderr


def test_cli_refuses_a_nan_lora_alpha_before_training(sms_small, tmp_path):
    p = _cli("train", "--data", str(sms_small), "--method", "lora", "--lora-alpha", "nan", "--out",
             str(tmp_path / "r"), timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["error: LoRA alpha must be a finite number > 0, got nan"]
    assert not (tmp_path / "r").exists()
