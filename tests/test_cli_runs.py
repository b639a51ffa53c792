"""CLI verbs over saved runs (peft_core.cli_runs): predict with a run and with its bundle, evaluate on a new
labelled file, export a saved run, list runs; on the session's real SMS linear-probe run and an MNIST image run."""
import shutil
import zipfile

import pandas as pd
import pytest

from peft_core.cli import main


def test_predict_with_a_run_matches_its_own_held_out_predictions(head_run, tmp_path, capsys):
    held = pd.read_csv(head_run.run_dir / "predictions.csv")  # input, true, predicted, confidence, wrong
    data = tmp_path / "new.csv"
    pd.DataFrame({"id": range(len(held)), "text": held["input"]}).to_csv(data, index=False)
    out = tmp_path / "scored.csv"
    assert main(["predict", "--run", str(head_run.run_dir), "--data", str(data), "--output", str(out)]) == 0
    scored = pd.read_csv(out)
    assert list(scored.columns) == ["id", "text", "predicted", "predicted_probability"]
    assert scored["predicted"].tolist() == held["predicted"].tolist()
    assert scored["predicted_probability"].round(3).tolist() == held["confidence"].round(3).tolist()
    assert "rows with predictions written" in capsys.readouterr().out


def test_predict_with_the_bundle_gives_the_same_labels(head_run, head_export, tmp_path):
    held = pd.read_csv(head_run.run_dir / "predictions.csv")
    data = tmp_path / "new.csv"
    pd.DataFrame({"text": held["input"]}).to_csv(data, index=False)
    out = tmp_path / "scored.csv"
    bundle = head_export.bundles["fp32"]
    assert main(["predict", "--bundle", str(bundle), "--data", str(data), "--output", str(out)]) == 0
    assert pd.read_csv(out)["label"].tolist() == held["predicted"].tolist()


def test_evaluate_on_a_new_labelled_file_gives_the_training_report(head_run, tmp_path, capsys):
    held = pd.read_csv(head_run.run_dir / "predictions.csv")
    data = tmp_path / "labelled.csv"
    pd.DataFrame({"text": held["input"], "label": held["true"]}).to_csv(data, index=False)
    assert main(["evaluate", "--run", str(head_run.run_dir), "--data", str(data)]) == 0
    text = capsys.readouterr().out
    assert f"File `labelled.csv` ({len(held)} rows)" in text and "Held-out" not in text  # the file, not the split
    assert f"{head_run.eval_report.accuracy:.4f}" in text and f"{head_run.eval_report.macro_f1:.4f}" in text


def test_bad_inputs_get_one_line_errors(head_run, tmp_path, capsys):
    data = tmp_path / "other.csv"
    pd.DataFrame({"message": ["hi"]}).to_csv(data, index=False)
    assert main(["predict", "--run", str(head_run.run_dir), "--data", str(data)]) == 2
    assert "has no column 'text', which the run reads (its columns: message)" in capsys.readouterr().err
    assert main(["predict", "--run", str(tmp_path), "--data", str(data)]) == 2
    assert "is not a trained run folder" in capsys.readouterr().err


def test_export_a_saved_run_and_list_runs(head_run, tmp_path, capsys):
    runs = tmp_path / "runs"
    copy = shutil.copytree(head_run.run_dir, runs / "sms_head")
    for old in copy.glob("bundle-*.zip"):
        old.unlink()
    assert main(["export", "--run", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "Bundle (int8" in out or "Bundle (fp32" in out
    bundles = sorted(p.name for p in copy.glob("bundle-*.zip"))
    assert "bundle-fp32.zip" in bundles and zipfile.ZipFile(copy / "bundle-fp32.zip").testzip() is None
    assert main(["runs", "--dir", str(runs)]) == 0
    listing = capsys.readouterr().out
    assert "sms_head" in listing and "single_label" in listing and "head" in listing
    assert f"{head_run.eval_report.headline:.4f}" in listing


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    from conftest import ROOT

    from peft_core.pipeline import RunConfig, fine_tune
    from peft_core.training import TrainConfig

    zip_path = ROOT / "examples" / "mnist_digits.zip"
    return fine_tune(RunConfig(train_file=str(zip_path), method="head", train=TrainConfig(epochs=5)),
                     tmp_path_factory.mktemp("img_run"))


def test_predict_a_zip_of_images_with_an_image_run(image_run, tmp_path):
    held = pd.read_csv(image_run.run_dir / "predictions.csv")
    paths = held["input"].tolist()[:20]
    data = tmp_path / "new_images.zip"
    with zipfile.ZipFile(data, "w") as z:
        for i, p in enumerate(paths):
            z.write(p, f"unlabelled/{i:03d}.png")
    out = tmp_path / "scored.csv"
    assert main(["predict", "--run", str(image_run.run_dir), "--data", str(data), "--output", str(out)]) == 0
    scored = pd.read_csv(out)
    assert scored["file"].tolist() == [f"unlabelled/{i:03d}.png" for i in range(len(paths))]
    assert scored["predicted"].astype(str).tolist() == held["predicted"].astype(str).tolist()[:20]


def test_the_app_scores_and_evaluates_a_file_with_the_selected_run(head_run, tmp_path, monkeypatch):
    """Step 4's "score or evaluate a file": the same core as the CLI verbs, on a copy of the real run in the app's
    runs folder; the scored file goes out through a signed link, and another owner gets nothing."""
    import json

    import app_score
    import app_state
    from peft_core.jobs import JobManager, new_owner_token, owner_hash

    owner, run_id = new_owner_token(), "a" * 32
    run_dir = shutil.copytree(head_run.run_dir, tmp_path / "runs" / run_id)
    results = {"task": "single_label", "accuracy": head_run.eval_report.accuracy, "score": 0.9}
    (run_dir / "status.json").write_text(json.dumps({"id": run_id, "owner": owner_hash(owner), "state": "finished",
                                                     "model": "minilm", "method": "head", "results": results}))
    monkeypatch.setattr(app_state, "RUNS_ROOT", tmp_path / "runs")
    monkeypatch.setattr(app_state, "_MANAGER", JobManager(tmp_path / "runs", runner=lambda *a: None))
    held = pd.read_csv(head_run.run_dir / "predictions.csv")
    data = tmp_path / "labelled.csv"
    pd.DataFrame({"text": held["input"], "label": held["true"]}).to_csv(data, index=False)

    link, summary, table = app_score.score_file(owner, run_id, str(data))
    assert link["visible"] and f"/peft/download/{run_id}/scored.csv?exp=" in link["value"]
    assert summary == f"Scored {len(held):,} rows of labelled.csv with run `{run_id[:8]}`."
    scored = pd.read_csv(run_dir / "scored.csv")
    assert scored["predicted"].tolist() == held["predicted"].tolist() and "label" in scored.columns

    _, report, table = app_score.evaluate_file(owner, run_id, str(data))
    assert f"({len(held):,} rows)" in report and f"{head_run.eval_report.accuracy:.4f}" in report
    assert table["visible"] and table["value"].equals(head_run.eval_report.metrics_table())  # training's table
    import gradio as gr

    with pytest.raises(gr.Error, match="no run"):
        app_score.score_file(new_owner_token(), run_id, str(data))
    with pytest.raises(gr.Error, match="Upload a file first"):
        app_score.evaluate_file(owner, run_id, None)
