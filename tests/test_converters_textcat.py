"""Text classification converter: SST-2 counts with texts unchanged, header
defaults, label maps, TSV/CSV/JSONL, line ends, encodings and each bad row."""

import csv
import json

import pytest

from spacy_rnn.converters import ConversionError, parse_label_map, read_textcat

SST2 = {"train": (67349, 29780, 37569), "dev": (872, 428, 444), "test": (1821, 912, 909)}


def _sst2_rows(path):
    """An independent reading: [(label, text)] after the header."""
    with open(path, encoding="utf-8", newline="") as f:
        lines = f.read().splitlines()
    return [tuple(line.split("\t")) for line in lines[1:] if line]


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_sst2_converts_with_texts_unchanged(sst2_dir, split):
    path = sst2_dir / f"{split}.tsv"
    docs, stats = read_textcat(path)
    n, neg, pos = SST2[split]
    assert len(docs) == stats.documents == n
    assert dict(stats.labels) == {"0": neg, "1": pos}
    assert stats.skipped == []
    rows = _sst2_rows(path)
    assert len(rows) == n
    for doc, (label, text) in zip(docs, rows):
        assert doc.text == text
        assert doc.cats == {"0": float(label == "0"), "1": float(label == "1")}


def test_sst2_label_map(sst2_dir):
    docs, stats = read_textcat(sst2_dir / "dev.tsv", label_map=parse_label_map("0=NEG,1=POS"))
    assert dict(stats.labels) == {"NEG": 428, "POS": 444}
    assert all(sorted(d.cats) == ["NEG", "POS"] and sum(d.cats.values()) == 1.0 for d in docs)
    assert docs[0].cats == {"NEG": 1.0, "POS": 0.0}


def _write(tmp_path, content, name):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_textcat_tsv_line_ends_and_header_names(tmp_path, newline):
    text = newline.join(["Review\tSentiment", 'a "quoted" film ,  really\tpos', "bad\tneg", ""])
    docs, stats = read_textcat(_write(tmp_path, text.encode("utf-8"), "x.tsv"))
    assert [d.text for d in docs] == ['a "quoted" film ,  really', "bad"]
    assert [d.cats for d in docs] == [{"neg": 0.0, "pos": 1.0}, {"neg": 1.0, "pos": 0.0}]


def test_textcat_csv_quoting_and_columns(tmp_path):
    path = tmp_path / "x.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "body", "stars"])
        writer.writerow(["1", 'He said "fine", then left', "5"])
        writer.writerow(["2", "line one\nline two", "1"])
    docs, stats = read_textcat(path, text_col="body", label_col="stars")
    assert [d.text for d in docs] == ['He said "fine", then left', "line one\nline two"]
    assert docs[1].cats == {"1": 1.0, "5": 0.0}
    with pytest.raises(
        ConversionError, match=r"no text column found in the header \['id', 'body', 'stars'\]"
    ):
        read_textcat(path)


def test_textcat_jsonl_and_multilabel(tmp_path):
    rows = [
        {"text": "good and funny", "labels": ["POS", "FUNNY"]},
        {"text": "dull", "labels": ["NEG"]},
    ]
    path = _write(tmp_path, "\n".join(json.dumps(r) for r in rows) + "\n", "x.jsonl")
    docs, stats = read_textcat(path, multilabel=True)
    assert docs[0].cats == {"FUNNY": 1.0, "NEG": 0.0, "POS": 1.0}
    assert docs[1].cats == {"FUNNY": 0.0, "NEG": 1.0, "POS": 0.0}
    assert dict(stats.labels) == {"POS": 1, "FUNNY": 1, "NEG": 1}
    tsv = _write(tmp_path, "text\tlabels\nfun\tA,B\nsad\tC\n", "m.tsv")
    docs, _ = read_textcat(tsv, multilabel=True)
    assert docs[0].cats == {"A": 1.0, "B": 1.0, "C": 0.0}


def test_textcat_explicit_label_set(tmp_path):
    path = _write(tmp_path, "label\ttext\n1\tok\n", "x.tsv")
    docs, _ = read_textcat(path, label_map={"0": "NEG", "1": "POS"})
    assert docs[0].cats == {"NEG": 0.0, "POS": 1.0}
    docs, _ = read_textcat(path, labels=["0", "1"])
    assert docs[0].cats == {"0": 0.0, "1": 1.0}


def test_textcat_encoding_option(tmp_path):
    path = _write(tmp_path, "label\ttext\n1\tcr\xe8me br\xfbl\xe9e\n".encode("latin-1"), "x.tsv")
    with pytest.raises(ConversionError) as err:
        read_textcat(path)
    assert err.value.line == 2 and "try --encoding cp1252" in str(err.value)
    docs, _ = read_textcat(path, encoding="latin-1")
    assert docs[0].text == "crème brûlée"


@pytest.mark.parametrize(
    "content,line,message",
    [
        ("label\ttext\n1\t\n", 2, "the row has no text"),
        ("label\ttext\n1\t   \n", 2, "the row has no text"),
        ("label\ttext\n\tsome text\n", 2, "the row has no label"),
        ("label\ttext\n1\ta\tb\n", 2, "this row has 3 column(s) but the header (line 1) has 2"),
        ("label\ttext\n0\tfine\n7\tnope\n", 3, "unknown label '7': the label map knows '0', '1'"),
    ],
)
def test_textcat_bad_rows(tmp_path, content, line, message):
    path = _write(tmp_path, content, "x.tsv")
    with pytest.raises(ConversionError) as err:
        read_textcat(path, label_map={"0": "NEG", "1": "POS"})
    assert err.value.line == line and str(err.value).startswith(f"{path}, line {line}: ")
    assert message in str(err.value) and "--skip-invalid" in str(err.value)


def test_textcat_skip_invalid_reports_rows(tmp_path):
    content = "label\ttext\n0\tfine\n7\tnope\n1\t\n\n1\tgreat\n"
    docs, stats = read_textcat(
        _write(tmp_path, content, "x.tsv"), label_map={"0": "NEG", "1": "POS"}, skip_invalid=True
    )
    assert [d.text for d in docs] == ["fine", "great"]
    assert [(r["line"], r["reason"].split(":")[0]) for r in stats.skipped] == [
        (3, "unknown label '7'"),
        (4, "the row has no text"),
        (5, "blank line"),
    ]


def test_textcat_skip_invalid_everything_skipped_lists_each_row(tmp_path):
    content = "label\ttext\n7\tnope\n1\t\n"
    with pytest.raises(ConversionError) as err:
        read_textcat(
            _write(tmp_path, content, "x.tsv"), label_map={"0": "NEG", "1": "POS"},
            skip_invalid=True,
        )
    message = str(err.value)
    assert "skipped every row (2 invalid line(s))" in message
    assert "line 2: unknown label '7'" in message and "line 3: the row has no text" in message


def test_textcat_bad_files(tmp_path):
    with pytest.raises(ConversionError, match="file not found"):
        read_textcat(tmp_path / "missing.tsv")
    with pytest.raises(ConversionError, match="file is empty"):
        read_textcat(_write(tmp_path, "", "e.tsv"))
    with pytest.raises(ConversionError, match="no rows with text and label found"):
        read_textcat(_write(tmp_path, "label\ttext\n", "h.tsv"))
    with pytest.raises(ConversionError, match="line 2: invalid JSON"):
        read_textcat(_write(tmp_path, '{"text": "a", "label": 1}\n{"text": \n', "x.jsonl"))
    with pytest.raises(ValueError, match="expected RAW=NAME"):
        parse_label_map("0:NEG")
