"""Export safety and progress: a model with NaN / infinite weights or outputs never passes parity and leaves no
ONNX file or bundle behind; an export reports its phases ("exporting", "parity", "int8", "bundle")."""
import copy
import dataclasses
import math

import numpy as np
import onnx
import pytest
import torch

from exporters.bundle import extract_bundle
from exporters.parity import ParityCheck, ParityReport, check_parity
from peft_core.errors import NonFiniteError
from exporters.run_export import export_run


def _with_head(run, weight=None, bias=None):
    """A deep copy of ``run.model`` whose classification head has the given weight / bias values."""
    model = copy.deepcopy(run.model)
    with torch.no_grad():
        if weight is not None:
            model.head[1].weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        if bias is not None:
            model.head[1].bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return model


@pytest.fixture(scope="module")
def fp32_onnx(head_export, tmp_path_factory) -> str:
    return str(extract_bundle(head_export.bundles["fp32"], tmp_path_factory.mktemp("fp32")) / "onnx" / "model.onnx")


def test_parity_fails_on_nan_pytorch_logits(head_run, fp32_onnx):
    nan_model = _with_head(head_run, bias=[math.nan, 0.0])
    texts = list(head_run.data.splits["test"]["text"])
    report = check_parity(nan_model, head_run.tokenizer, fp32_onnx, texts, 64, batch_sizes=(1, 17), rows_per_check=17)
    assert not report.passed and math.isnan(report.max_abs_diff)
    assert "Parity FAILED: max |Δlogit| nan" in report.summary()
    assert report.failures[0].startswith("batch 1: PyTorch logits are NaN or infinite on 17 of 17 rows")


def test_parity_fails_on_nan_onnx_logits(head_run, fp32_onnx, tmp_path):
    proto = onnx.load(fp32_onnx)
    bias = next(t for t in proto.graph.initializer if t.name == "model.head.1.bias")
    bias.CopyFrom(onnx.numpy_helper.from_array(np.array([0.0, np.nan], dtype=np.float32), bias.name))
    onnx.save(proto, str(tmp_path / "nan.onnx"))
    texts = list(head_run.data.splits["test"]["text"])
    report = check_parity(head_run.model, head_run.tokenizer, tmp_path / "nan.onnx", texts, 64, batch_sizes=(2,),
                          rows_per_check=6)
    assert not report.passed
    assert report.failures[0].startswith("batch 2: ONNX Runtime logits are NaN or infinite on 6 of 6 rows")


def test_max_abs_diff_keeps_nan_whichever_check_comes_first():
    ok, bad = (ParityCheck(n, 1, 4, 8, d, 1.0, False) for n, d in (("a", 1e-6), ("b", math.nan)))
    for checks in ([ok, bad], [bad, ok]):
        assert math.isnan(ParityReport("m.onnx", 1e-4, checks=checks).max_abs_diff)


def test_a_model_with_nan_weights_is_refused_before_anything_is_written(head_run, tmp_path):
    run = dataclasses.replace(head_run, run_dir=tmp_path / "nan_run", model=_with_head(head_run, bias=[0, math.nan]))
    with pytest.raises(NonFiniteError, match=r"the model's weights hold NaN or infinite values \(1 tensor\(s\), "
                                              r"first 'head.1.bias'\), so there is nothing to export"):
        export_run(run)
    assert not (tmp_path / "nan_run").exists()


def test_infinite_outputs_fail_parity_and_leave_no_onnx_file_or_bundle(head_run, tmp_path):
    # finite weights whose logits overflow float32: +-1e38 * (sum of the pooled features) + 3.4e38
    huge = _with_head(head_run, weight=np.stack([np.full(384, 1e38), np.full(384, -1e38)]), bias=[3.4e38, 3.4e38])
    run = dataclasses.replace(head_run, run_dir=tmp_path / "inf_run", model=huge)
    res = export_run(run, parity_rows=4)
    assert res.bundle is None and res.bundles == {} and "Parity FAILED" in res.message
    assert "logits are NaN or infinite" in res.message
    files = sorted(p.relative_to(tmp_path / "inf_run").as_posix() for p in (tmp_path / "inf_run").rglob("*"))
    assert files == ["export", "export/parity.json"]


def test_export_reports_each_phase_until_done(head_run, tmp_path):
    events = []
    run = dataclasses.replace(head_run, run_dir=tmp_path / "run")
    res = export_run(run, parity_rows=4, callbacks=[events.append])
    assert res.bundle is not None
    assert {e.kind for e in events} == {"phase"}
    phases = [e.message for e in events]
    order = list(dict.fromkeys(phases))
    assert order == ["exporting", "parity", "int8", "bundle"]
    for name in order:
        mine = [e for e in events if e.message == name]
        assert mine[0].step == 0 and mine[-1].step == mine[-1].total_steps > 0, name
        assert [e.step for e in mine] == sorted(e.step for e in mine), name  # done never goes back
        assert all(e.total_steps == mine[-1].total_steps for e in mine) and mine[-1].elapsed_s >= 0, name
    assert [e for e in events if e.message == "int8"][-1].total_steps == len(head_run.data.splits["test"])
    assert [e for e in events if e.message == "bundle"][-1].total_steps == 2
    assert len([e for e in events if e.message == "parity"]) > 4  # reported while it runs, not only at the ends


def test_int8_summary_never_says_minus_zero_points():
    from exporters.quantize import QuantReport

    same = QuantReport("m.onnx", 90, 60, rows=1115, fp32_accuracy=0.9857, int8_accuracy=0.9857,
                       label_agreement=1.0, max_abs_diff=0.01, max_accuracy_drop=0.01, seconds=1.0)
    assert "(+0.00 pt)" in same.summary()
    worse = QuantReport("m.onnx", 90, 60, rows=80, fp32_accuracy=0.9875, int8_accuracy=0.975,
                        label_agreement=0.9875, max_abs_diff=0.01, max_accuracy_drop=0.01, seconds=1.0)
    assert "(-1.25 pt)" in worse.summary() and "FLAGGED" in worse.summary()
