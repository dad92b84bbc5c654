"""The one reader of text tables (converters, annotate, the benchmark's slicing):
formats from extension or first line, header or none, TSV/CSV/JSONL, CRLF,
BOM, quoted fields, and bad lines reported with their number."""

import pytest

from spacy_rnn.converters.table import find_column, looks_like_header, read_table, sniff_format
from spacy_rnn.converters.util import ConversionError, ConversionStats


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def _rows(table):
    return [(row.line, row.end_line, row.values) for row in table]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_table_tsv_header_and_line_ends(tmp_path, newline):
    content = newline.join(["label\tsentence", '1\ta "quoted" film', "", "0\tbad", ""])
    table = read_table(_write(tmp_path, "x.tsv", content))
    assert table.format == "tsv" and table.header == ["label", "sentence"]
    assert table.header_line == 1
    # TSV fields are literal: quotes stay, no CR is left on the last cell
    assert _rows(table) == [(2, 2, ["1", 'a "quoted" film']), (4, 4, ["0", "bad"])]


def test_table_header_modes(tmp_path):
    with_header = _write(tmp_path, "h.tsv", "Sentence\tLabel\nfine\t1\n")
    without = _write(tmp_path, "n.tsv", "fine\t1\nbad\t0\n")
    auto = read_table(with_header, header="auto")
    assert auto.header == ["Sentence", "Label"] and _rows(auto) == [(2, 2, ["fine", "1"])]
    auto = read_table(without, header="auto")
    assert auto.header is None and [r.values for r in auto] == [["fine", "1"], ["bad", "0"]]
    first = read_table(without, header="first")
    assert first.header == ["fine", "1"] and len(list(first)) == 1
    none = read_table(with_header, header="none")
    assert none.header is None and len(list(none)) == 2
    with pytest.raises(ValueError, match="header must be one of first, auto, none"):
        read_table(with_header, header="yes")
    assert looks_like_header(['"TEXT"', "x"]) and not looks_like_header(["1", "fine"])


def test_table_bom_is_not_part_of_the_header(tmp_path):
    path = _write(tmp_path, "b.csv", b"\xef\xbb\xbftext,label\r\nfine,1\r\n")
    table = read_table(path, header="auto")
    assert table.header == ["text", "label"] and [r.values for r in table] == [["fine", "1"]]
    assert sniff_format(path, trust_extension=False) == "csv"


def test_table_csv_quoted_fields_span_lines(tmp_path):
    content = 'id,text\n1,"He said ""fine"", then left"\n2,"line one\nline two"\n3,last\n'
    table = read_table(_write(tmp_path, "q.csv", content))
    assert _rows(table) == [
        (2, 2, ["1", 'He said "fine", then left']),
        (3, 4, ["2", "line one\nline two"]),
        (5, 5, ["3", "last"]),
    ]


def test_table_jsonl_rows_and_invalid_lines(tmp_path):
    path = _write(tmp_path, "x.jsonl", '{"text": "a", "label": 1}\n\n"bare"\n{"text": \nnull\n')
    stats = ConversionStats(input=str(path), format="jsonl")
    rows = list(read_table(path, stats=stats))
    assert [(r.line, r.values, r.error) for r in rows] == [
        (1, {"text": "a", "label": 1}, None),
        (3, "bare", None),
        (4, None, "invalid JSON: Expecting value (column 10)"),
        (5, None, None),  # JSON null is a row, not a blank line
    ]
    assert stats.skipped == [{"line": 2, "reason": "blank line"}]


def test_table_undecodable_line_is_named(tmp_path):
    path = _write(tmp_path, "l.tsv", "text\tlabel\nok\t1\ncr\xe8me\t0\n".encode("latin-1"))
    with pytest.raises(ConversionError) as err:
        read_table(path)
    assert err.value.line == 3 and str(err.value).startswith(f"{path}, line 3: cannot decode")
    assert "try --encoding cp1252" in str(err.value)
    stats = ConversionStats(input=str(path), format="tsv")
    table = read_table(path, skip_invalid=True, stats=stats)
    assert [r.values for r in table] == [["ok", "1"]]
    assert [s["line"] for s in stats.skipped] == [3]
    assert [r.values for r in read_table(path, encoding="latin-1")][1] == ["crème", "0"]


def test_table_malformed_csv_names_its_line(tmp_path):
    path = _write(tmp_path, "m.csv", 'text,label\nfine,1\n"bad" row,0\nok,1\n')
    with pytest.raises(ConversionError, match=r"m.csv, line 3: malformed CSV .*',' expected"):
        list(read_table(path))
    # a quote never closed does not swallow the rest of the file
    path = _write(tmp_path, "u.csv", 'text,label\nfine,1\n"open,0\nok,1\nok,0\n')
    with pytest.raises(ConversionError, match=r"u.csv, line 3: malformed CSV .*end of data"):
        list(read_table(path))


def test_table_format_errors(tmp_path):
    with pytest.raises(ConversionError, match="cannot tell the format from the extension '.txt'"):
        read_table(_write(tmp_path, "x.txt", "text\tlabel\n"))
    with pytest.raises(ConversionError, match="unknown table format 'xml'"):
        read_table(_write(tmp_path, "y.tsv", "text\tlabel\n"), "xml")
    with pytest.raises(ConversionError, match="file not found"):
        read_table(tmp_path / "missing.tsv")
    with pytest.raises(ConversionError, match="file is empty"):
        read_table(_write(tmp_path, "e.csv", "\n\n"))


def test_table_sniff_format(tmp_path):
    conll = _write(tmp_path, "train.txt", "-DOCSTART- -X- -X- O\n\nEU B-ORG\n")
    assert sniff_format(conll) is None
    assert sniff_format(_write(tmp_path, "a.txt", "label\tsentence\n1\tok\n")) == "tsv"
    assert sniff_format(_write(tmp_path, "b.txt", '{"text": "ok"}\n')) == "jsonl"
    assert sniff_format(_write(tmp_path, "c.txt", "{braces} in prose\n")) is None
    headerless = _write(tmp_path, "d.tsv", "1\tok\n")
    assert sniff_format(headerless) == "tsv"
    assert sniff_format(headerless, trust_extension=False) is None
    assert sniff_format(_write(tmp_path, "e.ndjson", '"bare"\n')) == "jsonl"


def test_table_find_column():
    header = ["id", "Body", "stars"]
    assert find_column(header, None, ("text", "body"), "text", "--text-col", "f", 1) == 1
    assert find_column(header, "body", (), "text", "--text-col", "f", 1) == 1
    assert find_column(header, "2", (), "label", "--label-col", "f", 1) == 2
    assert find_column(header, 0, (), "label", "--label-col", "f", 1) == 0
    with pytest.raises(ConversionError, match=r"f, line 1: no text column found in the header"):
        find_column(header, None, ("text",), "text", "--text-col", "f", 1)
    with pytest.raises(ConversionError, match=r"no column 'text' in the header \(id, Body, st"):
        find_column(header, "text", (), "text", "--text-key", "f", 1)
    with pytest.raises(ConversionError, match="--label-col 3 is out of range"):
        find_column(header, 3, (), "label", "--label-col", "f", 1)
