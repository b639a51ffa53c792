"""Data loading: every accepted format, column inference, label mapping, splits, and clear errors."""
import json

import pandas as pd
import pytest

from conftest import SMS, sms_subset
from peft_core.data import infer_columns, prepare_data, read_table
from peft_core.errors import DataError


@pytest.fixture(scope="module")
def frame():
    return sms_subset(200, seed=1)


def _write(frame, path, fmt):
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "semicolon":
        frame.to_csv(path, index=False, sep=";")
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif fmt == "json":
        path.write_text(json.dumps(frame.to_dict(orient="records")))
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)


@pytest.mark.parametrize("fmt,ext", [("csv", ".csv"), ("semicolon", ".csv"), ("tsv", ".tsv"), ("json", ".json"),
                                     ("jsonl", ".jsonl"), ("parquet", ".parquet")])
def test_every_format_loads_the_same_rows(frame, tmp_path, fmt, ext):
    path = tmp_path / f"data{ext}"
    _write(frame, path, fmt)
    got, _ = read_table(path)
    assert list(got.columns) == ["label", "text"]
    assert got["text"].tolist() == frame["text"].tolist()
    data = prepare_data(path)
    assert data.task.labels == ["ham", "spam"]
    assert sum(data.report.split_sizes.values()) == len(frame)


def test_full_example_split_is_stratified_and_disjoint():
    data = prepare_data(SMS)
    r = data.report
    assert r.rows_read == 5574 and r.split_sizes == {"train": 3901, "validation": 558, "test": 1115}
    assert (r.text_column, r.label_column) == ("text", "label")
    spam_share = {s: r.class_counts["spam"][s] / n for s, n in r.split_sizes.items()}
    assert max(spam_share.values()) - min(spam_share.values()) < 0.01  # stratified: 13.4% everywhere
    train, test = set(data.splits["train"]["text"]), set(data.splits["test"]["text"])
    # the corpus has duplicate texts, so overlap is possible only through them
    dup = pd.read_csv(SMS)["text"]
    assert train & test <= set(dup[dup.duplicated()])


def test_columns_inferred_from_content_when_names_are_unusual(frame):
    odd = frame.rename(columns={"text": "body", "label": "kind"}).assign(id=range(len(frame)))
    assert infer_columns(odd) == ("body", "kind")
    assert infer_columns(odd, text_column="body", label_column="kind") == ("body", "kind")


def test_integer_labels_and_given_test_file(frame, tmp_path):
    df = frame.assign(label=(frame["label"] == "spam").astype(int))
    df.iloc[:150].to_csv(tmp_path / "train.csv", index=False)
    df.iloc[150:].to_csv(tmp_path / "test.csv", index=False)
    data = prepare_data(tmp_path / "train.csv", tmp_path / "test.csv")
    assert data.task.id2label == {0: "0", 1: "1"}
    assert data.report.split_sizes["test"] == 50
    assert data.splits["test"]["label"] == df.iloc[150:]["label"].tolist()


def test_missing_labels_are_dropped_and_reported(frame, tmp_path):
    df = frame.copy()
    df.loc[:4, "label"] = None
    df.to_csv(tmp_path / "d.csv", index=False)
    data = prepare_data(tmp_path / "d.csv")
    assert data.report.dropped_rows == {"missing label": 5}
    assert sum(data.report.split_sizes.values()) == len(df) - 5


@pytest.mark.parametrize("content,message", [
    ("", "is empty"),
    ("text,label\n", "no data rows"),
    ("text,label\nhello,a\nworld,a\nagain,a\n", "only one class"),
])
def test_bad_files_give_specific_errors(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        prepare_data(path)


def test_unknown_column_and_tiny_class(frame, tmp_path):
    frame.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match="'nope' is not in the file"):
        prepare_data(tmp_path / "d.csv", label_column="nope")
    tiny = pd.concat([frame, pd.DataFrame({"label": ["rare"], "text": ["only one of these"]})])
    tiny.to_csv(tmp_path / "t.csv", index=False)
    data = prepare_data(tmp_path / "t.csv")  # a 1-row class is kept for training, and the report says so
    assert data.report.class_counts["rare"] == {"train": 1}
    assert any("no validation example" in w and "'rare'" in w for w in data.report.warnings)


def test_unsupported_extension_and_binary(tmp_path):
    (tmp_path / "x.xlsx").write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match="unsupported file type"):
        prepare_data(tmp_path / "x.xlsx")
    (tmp_path / "x.csv").write_bytes(b"\x00\x01\x02binary\x00" * 100)
    with pytest.raises(DataError, match="binary"):
        prepare_data(tmp_path / "x.csv")
