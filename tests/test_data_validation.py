"""Bad uploads get a specific DataError (what, where, how to fix); odd-but-valid ones load and are reported.

Every case starts from real SMS rows (``sms_subset``) mutated into the malformed variant, written to tmp_path.
"""
import json

import pandas as pd
import pytest

from conftest import sms_subset
from peft_core.data import prepare_data, read_table
from peft_core.errors import ConfigError, DataError
from peft_core.limits import Limits


@pytest.fixture(scope="module")
def frame():
    return sms_subset(200, seed=2)


def _csv(frame, path, **kw):
    frame.to_csv(path, index=False, **kw)
    return path


# ---- empty, header-only, not what the extension says ------------------------------------------------------------

def test_empty_and_blank_files(tmp_path):
    (tmp_path / "e.csv").write_bytes(b"")
    with pytest.raises(DataError, match=r"e\.csv is empty \(0 bytes\)"):
        prepare_data(tmp_path / "e.csv")
    (tmp_path / "b.jsonl").write_text("\n  \n")
    with pytest.raises(DataError, match=r"b\.jsonl has no content \(only blank lines\)"):
        prepare_data(tmp_path / "b.jsonl")


@pytest.mark.parametrize("ext", [".csv", ".json", ".parquet"])
def test_header_only_file(frame, tmp_path, ext):
    path = tmp_path / f"h{ext}"
    empty = frame.iloc[:0]
    if ext == ".csv":
        empty.to_csv(path, index=False)
    elif ext == ".json":
        path.write_text("[]")
    else:
        empty.to_parquet(path, index=False)
    cols = "" if ext == ".json" else r" \(label, text\)"
    with pytest.raises(DataError, match=rf"has no data rows, only a header{cols}"):
        prepare_data(path)


def _html(frame):
    return "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>" + frame.head(3).to_html() + "</body>"


@pytest.mark.parametrize("name,make,message", [
    ("bin.csv", lambda f: bytes(range(256)) * 40, "looks like a binary file"),
    ("page.csv", lambda f: _html(f).encode(), "is an HTML/XML page, not a CSV table"),
    ("sheet.csv", lambda f: b"PK\x03\x04" + f.to_csv().encode(), r"is a ZIP archive \(an Excel .xlsx"),
    ("records.csv", lambda f: f.to_json(orient="records").encode(), r"looks like JSON, not CSV; rename it to .json"),
    ("table.parquet", lambda f: f.to_csv(index=False).encode(), "is not a Parquet file"),
    ("page.json", lambda f: _html(f).encode(), "is an HTML/XML page, not a JSON table"),
])
def test_content_that_is_not_what_the_extension_says(frame, tmp_path, name, make, message):
    (tmp_path / name).write_bytes(make(frame))
    with pytest.raises(DataError, match=message):
        prepare_data(tmp_path / name)


def test_truncated_parquet(frame, tmp_path):
    frame.to_parquet(tmp_path / "full.parquet", index=False)
    data = (tmp_path / "full.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.parquet is not a complete Parquet file \(truncated or damaged"):
        prepare_data(tmp_path / "cut.parquet")


def test_truncated_json_and_jsonl(frame, tmp_path):
    text = json.dumps(frame.to_dict(orient="records"))
    (tmp_path / "cut.json").write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match=r"cut\.json is not valid JSON: .* at line 1, column \d+ \(the file seems "
                                        r"cut off"):
        prepare_data(tmp_path / "cut.json")
    lines = frame.to_json(orient="records", lines=True)
    cut = lines[: lines.index('"text":"', len(lines) // 2) + 12]  # inside a record's text
    (tmp_path / "cut.jsonl").write_text(cut)
    last = len(cut.splitlines())
    with pytest.raises(DataError, match=rf"cut\.jsonl is not valid JSON: .* at line {last} .*seems cut off"):
        prepare_data(tmp_path / "cut.jsonl")
    broken = lines.splitlines()
    broken[9] = broken[9].replace('":', '" ', 1)  # a damaged record in the middle
    (tmp_path / "mid.jsonl").write_text("\n".join(broken))
    with pytest.raises(DataError, match=r"mid\.jsonl is not valid JSON: expecting ':' delimiter at line 10 "):
        prepare_data(tmp_path / "mid.jsonl")


def test_null_bytes_in_a_text_file(frame, tmp_path):
    lines = frame.to_csv(index=False).splitlines(keepends=True)
    lines[57] = lines[57][:5] + "\x00" + lines[57][5:]
    (tmp_path / "nul.csv").write_text("".join(lines))
    with pytest.raises(DataError, match=r"contains 1 null byte\(s\) \(the first on line 58\)"):
        prepare_data(tmp_path / "nul.csv")


# ---- delimiters, encodings, quoting --------------------------------------------------------------------------------

@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_other_delimiters_are_accepted(frame, tmp_path, sep):
    path = _csv(frame, tmp_path / "d.csv", sep=sep)
    got, fmt = read_table(path)
    assert fmt == "csv" and list(got.columns) == ["label", "text"]
    assert got["text"].tolist() == frame["text"].tolist()


def test_latin1_utf8_bom_and_utf16_are_accepted(frame, tmp_path):
    latin1 = frame[frame["text"].map(lambda t: t.isascii())]  # a few real texts have curly quotes
    accented = latin1.assign(text=latin1["text"] + " café déjà vu")
    for name, encoding in (("latin1.csv", "latin-1"), ("bom.csv", "utf-8-sig"), ("utf16.tsv", "utf-16")):
        path = _csv(accented, tmp_path / name, sep="\t" if name.endswith(".tsv") else ",", encoding=encoding)
        data = prepare_data(path)
        assert data.report.columns == ["label", "text"]  # no "\ufefflabel"
        texts = [t for split in data.splits.values() for t in split["text"]]
        assert sorted(texts) == sorted(accented["text"])
        not_utf8 = [w for w in data.report.warnings if "is not UTF-8; it was read as Windows-1252" in w]
        assert len(not_utf8) == (encoding == "latin-1")


def test_quoted_newlines_inside_text_are_accepted(frame, tmp_path):
    multi = frame.assign(text=frame["text"].str.replace(" ", "\n", n=2, regex=False))
    path = _csv(multi, tmp_path / "nl.csv")
    assert path.read_text().count("\n") > len(frame) + 100
    got, _ = read_table(path)
    assert len(got) == len(frame) and got["text"].tolist() == multi["text"].tolist()
    assert prepare_data(path).report.rows_read == len(frame)


def test_ragged_rows_name_their_lines(frame, tmp_path):
    lines = frame.to_csv(index=False).splitlines()
    lines[5] += ",extra,fields"
    lines[40] += ",x"
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"2 row\(s\) have more fields than the 2 columns of the header \(line 6 has "
                                        r"4, line 41 has 3; .*must be in double quotes"):
        prepare_data(tmp_path / "r.csv")


def test_unclosed_quote_names_its_line(frame, tmp_path):
    plain = frame[~frame["text"].str.contains('[",]')]  # no other quotes in the file
    lines = plain.to_csv(index=False).splitlines()
    lines[30] = 'ham,"never closed ' + lines[30].split(",", 1)[1]
    (tmp_path / "q.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r'a quote \(\"\) opened on line 31 is never closed'):
        prepare_data(tmp_path / "q.csv")


def test_duplicate_column_names_are_named(frame, tmp_path):
    df = frame.assign(copy=frame["text"])
    df.columns = ["label", "text", "text "]  # the same name once spaces are stripped
    _csv(df, tmp_path / "dup.csv")
    with pytest.raises(DataError, match=r"dup\.csv has duplicate column names: 'text' \(columns 2, 3\)"):
        prepare_data(tmp_path / "dup.csv")


# ---- labels ---------------------------------------------------------------------------------------------------------

def test_single_class(frame, tmp_path):
    _csv(frame[frame["label"] == "ham"], tmp_path / "one.csv")
    with pytest.raises(DataError, match=r"column 'label' has only one class \(ham\).*choose the label column"):
        prepare_data(tmp_path / "one.csv")


def test_too_few_rows_for_the_classes(frame, tmp_path):
    many = frame.iloc[:60].assign(label=[f"topic{i % 15}" for i in range(60)])  # 4 rows per class
    _csv(many, tmp_path / "many.csv")
    with pytest.raises(DataError, match=r"too few rows for a stratified test split: 20% of 60 rows is 12 rows, "
                                        r"but each of the 15 classes needs one; upload at least 75 rows"):
        prepare_data(tmp_path / "many.csv")


def test_rare_classes_stay_in_training_and_are_named(frame, tmp_path):
    extra = pd.DataFrame({"label": ["rare", "rare", "odd"], "text": frame["text"].iloc[:3].tolist()})
    _csv(pd.concat([frame, extra]), tmp_path / "small.csv")
    data = prepare_data(tmp_path / "small.csv")
    counts = data.report.class_counts
    assert counts["rare"] == {"train": 2} and counts["odd"] == {"train": 1}
    assert counts["ham"]["validation"] and counts["spam"]["test"]
    warnings = " | ".join(data.report.warnings)
    assert ("2 class(es) of 'label' have no validation example (too few examples to give this split one; their "
            "rows are used for training): 'odd' (1 in all), 'rare' (2 in all); early stopping cannot check them"
            in warnings)
    assert "2 class(es) of 'label' have no test example" in warnings and "test macro-F1 is averaged" in warnings
    _csv(frame.iloc[:50], tmp_path / "test.csv")  # with a test file, 2 rows are enough to validate a class
    data = prepare_data(tmp_path / "small.csv", tmp_path / "test.csv")
    assert data.report.class_counts["odd"] == {"train": 1} and sum(data.report.class_counts["rare"].values()) == 2
    assert any("have no test example (the test file test.csv has none): 'odd' (1 in all), 'rare' (2 in all)" in w
               for w in data.report.warnings)


def test_inferred_label_column_that_is_an_id(frame, tmp_path):
    df = pd.DataFrame({"label": range(1000, 1000 + len(frame)), "kind": frame["label"], "text": frame["text"]})
    _csv(df, tmp_path / "ids.csv")
    with pytest.raises(DataError, match=r"the label column 'label' was inferred, but it has a different value in "
                                        r"every row \(200 values in 200 rows\).*choose the label column"):
        prepare_data(tmp_path / "ids.csv")
    assert prepare_data(tmp_path / "ids.csv", label_column="kind").task.labels == ["ham", "spam"]
    with pytest.raises(DataError, match="fewer than 3 examples"):  # chosen explicitly: no guess, the split says why
        prepare_data(tmp_path / "ids.csv", label_column="label")


def test_labels_differing_in_case_or_spaces(frame, tmp_path):
    variants = ["Spam", "spam ", "SPAM", " spam"]
    spam = frame.index[frame["label"] == "spam"]
    df = frame.copy()
    df.loc[spam, "label"] = [variants[i % 4] for i in range(len(spam))]
    data = prepare_data(_csv(df, tmp_path / "case.csv"))
    assert data.task.labels == ["SPAM", "Spam", "ham", "spam"]  # case kept apart, spaces removed
    warnings = " | ".join(data.report.warnings)
    assert "label(s) in column 'label' had spaces around them, which were removed ('spam ' → 'spam'" in warnings
    assert "differ only in upper/lower case and are kept as separate classes: 'SPAM' / 'Spam' / 'spam'" in warnings


def test_float_like_labels_become_integers(frame, tmp_path):
    as_float = frame.assign(label=(frame["label"] == "spam").astype(float))
    as_float.to_parquet(tmp_path / "f.parquet")
    data = prepare_data(tmp_path / "f.parquet")
    assert data.task.id2label == {0: "0", 1: "1"}
    assert any("stored as decimal numbers; being whole numbers they are used as integer classes (0.0 → 0"
               in w for w in data.report.warnings)
    data = prepare_data(_csv(as_float, tmp_path / "f.csv"))
    assert data.task.id2label == {0: "0", 1: "1"}
    assert any("are whole numbers written as decimals and are used as integers ('0.0' → 0, '1.0' → 1)" in w
               for w in data.report.warnings)
    mixed = [{"text": t, "label": [1, 1.0, "1.0"][i % 3] if lab == "spam" else [0, "0"][i % 2]}
             for i, (t, lab) in enumerate(zip(frame["text"], frame["label"]))]
    (tmp_path / "m.json").write_text(json.dumps(mixed))
    data = prepare_data(tmp_path / "m.json")
    assert data.task.id2label == {0: "0", 1: "1"}
    assert sum(data.report.class_counts["1"].values()) == int((frame["label"] == "spam").sum())
    assert any("equal as whole numbers were merged into one class each: '1' and '1.0' → 1" in w
               for w in data.report.warnings)


# ---- texts, mixed JSON schema ----------------------------------------------------------------------------------------

def test_long_texts_are_counted_and_overlong_ones_cut(frame, tmp_path):
    df = frame.copy()
    df.loc[:2, "text"] = df.loc[:2, "text"].map(lambda t: (t + " ") * (6000 // len(t) + 1))  # > 5,000 chars
    df.loc[3, "text"] = "x" * 30_000
    data = prepare_data(_csv(df, tmp_path / "long.csv"))
    warnings = " | ".join(data.report.warnings)
    assert "long.csv: 4 text(s) are longer than 5,000 characters (longest 30,000)" in warnings
    assert "long.csv: 1 text(s) were cut to 20,000 characters (PEFT_MAX_TEXT_CHARS)" in warnings
    lengths = [len(t) for s in data.splits.values() for t in s["text"]]
    assert max(lengths) == 20_000 and sum(n > 5000 for n in lengths) == 4


def test_mixed_schema_jsonl_loads_with_missing_values_reported(frame, tmp_path):
    records = frame.to_dict(orient="records")
    for r in records[:3]:
        del r["label"]
    for r in records[3:10]:
        r["source"] = "forum"
    (tmp_path / "mixed.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    data = prepare_data(tmp_path / "mixed.jsonl")
    assert sorted(data.report.columns) == ["label", "source", "text"]
    assert data.report.dropped_rows == {"missing label": 3}
    assert sum(data.report.split_sizes.values()) == len(frame) - 3
    assert any("records have different keys; missing keys were read as empty values ('label' in 3, 'source' in "
               f"{len(frame) - 7} row(s))" in w for w in data.report.warnings)


# ---- limits ---------------------------------------------------------------------------------------------------------

def test_limits_from_environment_are_enforced(frame, tmp_path, monkeypatch):
    path = _csv(frame, tmp_path / "d.csv")
    monkeypatch.setenv("PEFT_MAX_UPLOAD_MB", "0.01")
    with pytest.raises(DataError, match=r"d\.csv is 0\.0\d+ MB; the limit is 0\.01 MB \(PEFT_MAX_UPLOAD_MB\)"):
        prepare_data(path)
    monkeypatch.delenv("PEFT_MAX_UPLOAD_MB")
    monkeypatch.setenv("PEFT_MAX_ROWS", "150")
    with pytest.raises(DataError, match=r"d\.csv has more than 150 rows, the limit \(PEFT_MAX_ROWS\)"):
        prepare_data(path)
    monkeypatch.delenv("PEFT_MAX_ROWS")
    four = frame.assign(label=[f"c{i % 4}" for i in range(len(frame))])
    monkeypatch.setenv("PEFT_MAX_CLASSES", "3")
    with pytest.raises(DataError, match=r"column 'label' has 4 classes; the limit is 3 \(PEFT_MAX_CLASSES\)"):
        prepare_data(_csv(four, tmp_path / "four.csv"))
    assert prepare_data(tmp_path / "four.csv", limits=Limits(max_classes=4)).task.num_labels == 4
    monkeypatch.setenv("PEFT_MAX_TEXT_CHARS", "40")
    data = prepare_data(path)
    assert max(len(t) for t in data.splits["train"]["text"]) == 40


def test_bad_limit_values_are_config_errors(monkeypatch):
    assert Limits.from_env({}) == Limits()
    assert Limits.from_env({"PEFT_MAX_ROWS": "1_000", "PEFT_MAX_UPLOAD_MB": "2.5"}).max_upload_bytes == 2_500_000
    with pytest.raises(ConfigError, match=r"environment variable PEFT_MAX_ROWS='lots' is not a whole number"):
        Limits.from_env({"PEFT_MAX_ROWS": "lots"})
    with pytest.raises(ConfigError, match=r"limit max_classes \(PEFT_MAX_CLASSES\) must be a positive number"):
        Limits(max_classes=0)
    with pytest.raises(ConfigError, match=r"max_classes \(PEFT_MAX_CLASSES\) must be at least 2"):
        Limits(max_classes=1)


def test_cli_reports_a_limit_in_one_line_and_writes_nothing(frame, tmp_path, monkeypatch, capsys):
    from peft_core.cli import main

    path = _csv(frame, tmp_path / "d.csv")
    before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PEFT_MAX_ROWS", "100")
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: d.csv has more than 100 rows, the limit (PEFT_MAX_ROWS); upload a "
                                        "sample of the rows or raise the limit"]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no run folder, no cache, no temp files


def test_reading_writes_nothing_next_to_the_upload(frame, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _csv(frame, tmp_path / "ok.csv")
    frame.to_json(tmp_path / "ok.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "ok.parquet", index=False)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for name in ("ok.csv", "ok.jsonl", "ok.parquet"):
        prepare_data(tmp_path / name)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


# ---- properties of column and label inference (hypothesis) ----------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from peft_core.data import LABEL_NAMES, TEXT_NAMES, infer_columns  # noqa: E402

TEXTS = sms_subset(400, seed=3)["text"].drop_duplicates().head(120).tolist()
KNOWN = {n.lower() for n in LABEL_NAMES + TEXT_NAMES}
NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,9}", fullmatch=True).filter(lambda n: n.lower() not in KNOWN)
WORDS = st.from_regex(r"[A-Za-z][A-Za-z_-]{0,7}", fullmatch=True)
CLASSES = st.one_of(st.lists(st.integers(-10**6, 10**6), min_size=2, max_size=20, unique=True),
                    st.lists(WORDS, min_size=2, max_size=20, unique=True))
PROPS = settings(max_examples=25, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def _labelled(classes: list, n: int) -> list:
    return [classes[i % len(classes)] for i in range(n)]


@PROPS
@given(classes=CLASSES, text_name=st.one_of(st.sampled_from(TEXT_NAMES), NAMES),
       label_name=st.one_of(st.sampled_from(LABEL_NAMES), NAMES), with_id=st.booleans(), order=st.randoms())
def test_text_and_label_columns_are_inferred_whatever_the_names_and_order(classes, text_name, label_name,
                                                                          with_id, order):
    if text_name.lower() == label_name.lower():
        label_name += "_2"
    cols = {text_name: TEXTS[:80], label_name: _labelled(classes, 80)}
    if with_id and "row_id" not in (text_name, label_name):
        cols["row_id"] = list(range(80))
    names = list(cols)
    order.shuffle(names)
    assert infer_columns(pd.DataFrame({c: cols[c] for c in names})) == (text_name, label_name)


@PROPS
@given(classes=CLASSES, fmt=st.sampled_from(["csv", "jsonl", "parquet"]), seed=st.integers(0, 1000))
def test_labels_map_to_sorted_ids_and_round_trip(tmp_path, classes, fmt, seed):
    labels = _labelled(classes, 12 * len(classes) + 12)  # enough rows for a class in every split
    texts = [f"{TEXTS[i % len(TEXTS)]} #{i}" for i in range(len(labels))]  # unique, to trace rows
    df = pd.DataFrame({"text": texts, "label": labels}).sample(frac=1, random_state=seed)
    path = tmp_path / f"d.{fmt}"
    {"csv": lambda: df.to_csv(path, index=False), "jsonl": lambda: df.to_json(path, orient="records", lines=True),
     "parquet": lambda: df.to_parquet(path, index=False)}[fmt]()
    data = prepare_data(path, seed=seed)
    assert data.task.id2label == {i: str(c) for i, c in enumerate(sorted(classes))}  # ints sort as numbers
    truth = dict(zip(texts, map(str, labels)))
    for split in data.splits.values():
        assert all(data.task.id2label[i] == truth[t] for t, i in zip(split["text"], split["label"]))
    assert sum(data.report.split_sizes.values()) == len(labels)
