"""Data rules beyond parsing: advice in refusals for small classes, numeric label spellings, null bytes, per-file
counts, macro averages over present classes, the app preview's column inference, the data modules' import graph."""
import ast
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import sms_subset
from peft_core.data import prepare_data
from peft_core.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def frame():
    return sms_subset(200, seed=4)


def _csv(frame, path):
    frame.to_csv(path, index=False)
    return path


def test_refusals_for_small_classes_advise_only_what_can_be_done(frame, tmp_path):
    two = pd.concat([frame[frame["label"] == "ham"], frame[frame["label"] == "spam"].head(2)])
    _csv(two, tmp_path / "two.csv")
    with pytest.raises(DataError, match=r"1 of the 2 classes in column 'label' have fewer than 3 examples, too few "
                                        r"to split into train, validation and test: 'spam' \(2\); that leaves 1 "
                                        r"class\(es\) to validate, and at least 2 are needed: add examples of "
                                        r"those classes \(at least 3 each\), or upload a separate test file"):
        prepare_data(tmp_path / "two.csv")
    many = frame.iloc[:60].assign(label=[f"topic{i % 15}" for i in range(60)])  # 4 rows per class
    _csv(many, tmp_path / "many.csv")
    _csv(many, tmp_path / "many_test.csv")
    with pytest.raises(DataError, match=r"too few rows for a stratified validation split: 10% of 60 rows is 6 rows, "
                                        r"but each of the 15 classes needs one; upload at least 150 rows") as e:
        prepare_data(tmp_path / "many.csv", tmp_path / "many_test.csv")
    assert "validation file" not in str(e.value)  # neither the app nor the CLI takes one


def test_every_merge_of_numeric_labels_is_named(frame, tmp_path):
    spellings = {"ham": ["1", "1.0"], "spam": ["2", "2.00", "2.0"]}
    seen = {"ham": 0, "spam": 0}

    def spell(lab):
        seen[lab] += 1
        return spellings[lab][seen[lab] % len(spellings[lab])]

    df = frame.assign(label=[spell(lab) for lab in frame["label"]])
    data = prepare_data(_csv(df, tmp_path / "n.csv"))
    assert data.task.id2label == {0: "1", 1: "2"}
    assert any("merged into one class each: '1' and '1.0' → 1; '2', '2.0' and '2.00' → 2" in w
               for w in data.report.warnings), data.report.warnings


def test_labels_with_leading_zeros_or_plus_signs_stay_distinct_text(frame, tmp_path):
    codes = ["01", "1", "1.0", "+1"]
    df = frame.assign(label=[codes[i % 4] for i in range(len(frame))])
    data = prepare_data(_csv(df, tmp_path / "z.csv"))
    assert data.task.labels == ["+1", "01", "1", "1.0"]  # four classes, spelled as in the file
    assert all(sum(c.values()) == 50 for c in data.report.class_counts.values())
    assert any("kept as text, because some are written with a leading zero or plus sign" in w
               and "'+1' / '01' / '1' / '1.0'" in w for w in data.report.warnings), data.report.warnings
    zips = frame.assign(label=[["02139", "10001"][i % 2] for i in range(len(frame))])  # zip codes keep their 0
    assert prepare_data(_csv(zips, tmp_path / "zip.csv")).task.labels == ["02139", "10001"]


@pytest.mark.parametrize("damage, count, line", [
    (lambda lines: lines.__setitem__(57, lines[57][:5] + "\x00" * 500 + lines[57][5:]), 500, 58),  # a damaged block
    (lambda lines: lines.append("\x00" * 4096), 4096, 202),  # a write cut short: the tail padded with nulls
])
def test_text_file_with_many_null_bytes_names_them_and_the_line(frame, tmp_path, damage, count, line):
    lines = frame.to_csv(index=False).splitlines(keepends=True)
    damage(lines)
    (tmp_path / "nul.csv").write_text("".join(lines))
    with pytest.raises(DataError, match=rf"nul\.csv contains {count} null byte\(s\) \(the first on line {line}\)"):
        prepare_data(tmp_path / "nul.csv")


def test_binary_files_are_still_called_binary(tmp_path):
    (tmp_path / "b.csv").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="looks like a binary file"):
        prepare_data(tmp_path / "b.csv")


def test_report_names_each_file_with_its_own_row_count(frame, tmp_path):
    frame.iloc[:150].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[150:].to_csv(tmp_path / "holdout.csv", index=False)
    r = prepare_data(tmp_path / "train.csv", tmp_path / "holdout.csv").report
    assert r.rows_read == 200 and r.files == {"train.csv": 150, "holdout.csv": 50}
    assert "**200** rows read (csv): `train.csv` 150, `holdout.csv` 50" in r.to_markdown()
    single = prepare_data(tmp_path / "train.csv").report
    assert single.files == {"train.csv": 150} and "**150** rows read from `train.csv`" in single.to_markdown()


def test_validation_macro_f1_is_over_the_classes_present():
    from sklearn.metrics import f1_score

    from peft_core.tasks import TaskSpec, get_task

    y = torch.tensor([0, 0, 1, 1, 0, 1])
    pred = torch.tensor([0, 0, 1, 2, 0, 1])  # class 2 has no validation example but is predicted once
    logits = torch.nn.functional.one_hot(pred, 3).float() * 5
    spec = TaskSpec("single_label", "text", "label", {0: "a", 1: "b", 2: "c"})
    got = get_task(spec).objective(spec, y).metrics(logits, y)["val_macro_f1"]
    per_class = f1_score(y.numpy(), pred.numpy(), labels=[0, 1, 2], average=None)
    assert per_class[2] == 0  # sklearn's default would average this 0 in
    assert got == pytest.approx(per_class[:2].mean())


def test_test_macro_f1_is_over_the_classes_present_and_says_so():
    from sklearn.metrics import f1_score

    from peft_core.evaluation import EvalReport, evaluate

    y = np.array([0, 0, 0, 1, 1, 1])
    pred = np.array([0, 0, 2, 1, 1, 0])
    rep = evaluate(y, np.eye(3)[pred], ["a", "b", "c"], train_labels=[0, 0, 1, 2])
    assert rep.macro_f1 == pytest.approx(f1_score(y, pred, labels=[0, 1], average="macro"))
    assert rep.baseline_macro_f1 == pytest.approx(f1_score(y, np.zeros(6, int), labels=[0, 1], average="macro"))
    assert rep.per_class[2]["support"] == 0
    assert len(rep.notes) == 1 and "no example of 1 of the 3 classes ('c')" in rep.notes[0]
    assert "averaged over the 2 classes present" in rep.notes[0] and rep.notes[0] in rep.to_markdown()
    assert rep.metrics_table()["metric"].tolist() == ["accuracy", "macro-F1 (over the 2 of 3 classes in the test "
                                                      "split)"]
    old = {k: v for k, v in rep.to_dict().items() if k not in ("notes", "macro_over")}  # a report.json from before
    assert EvalReport(**old).metrics_table()["metric"].tolist() == ["accuracy", "macro-F1"]


def test_app_preview_says_an_inferred_label_column_looks_like_an_id(frame, tmp_path):
    import app

    df = pd.DataFrame({"label": range(1000, 1000 + len(frame)), "kind": frame["label"], "text": frame["text"]})
    df.to_csv(tmp_path / "ids.csv", index=False)
    refused = app.load_preview(str(tmp_path / "ids.csv"), None)  # the data report says why; nothing else changes
    assert re.search("was inferred, but it has a different value in every row.*looks like an id", refused[3]), refused[3]
    assert refused[3].startswith("**⚠ This file cannot be used:**")
    shown = app.load_preview(str(tmp_path / "ids.csv"), None, "text", "kind")  # the user's choice is used
    assert "label column **kind**" in shown[3]


def _imports(path: Path) -> set[str]:
    """peft_core modules a module imports anywhere (top level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            out.add(f"peft_core.{node.module}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("peft_core."):
            out.add(node.module)
    return out


def test_data_modules_do_not_import_each_other_in_a_cycle():
    graph = {f"peft_core.{p.stem}": _imports(p) for p in (ROOT / "peft_core").glob("*.py")}
    for start in ("peft_core.data", "peft_core.image_data", "peft_core.splits", "peft_core.image_zip"):
        seen, todo = set(), list(graph.get(start, ()))
        while todo:
            mod = todo.pop()
            if mod not in seen:
                seen.add(mod)
                todo += graph.get(mod, ())
        assert start not in seen, f"{start} imports itself through {sorted(seen & set(graph))}"
    from peft_core.data import DataReport, PreparedData, small_split_warnings, split_inputs  # noqa: F401  re-exported
