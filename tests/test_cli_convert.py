"""`spacy-rnn convert` / `to-conll`: outputs, the JSON summary, and for each bad
input a one-paragraph message naming the file and line with exit status 1."""

import json
import subprocess
import sys

import pytest
import srsly
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_rnn.cli import app
from spacy_rnn.cli import convert as _convert  # noqa: F401  (registers the commands)
from spacy_rnn.converters import read_docbin

runner = CliRunner()

CONLL = (
    "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
    "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n"
)


def _run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result, " ".join(result.output.split())


def _assert_fails(args, *fragments):
    result, out = _run(*args)
    assert result.exit_code == 1, out
    assert "Traceback" not in result.output and not isinstance(
        result.exception, (ValueError, KeyError)
    )
    for fragment in fragments:
        assert fragment in out, out
    return out


def test_cli_convert_conll_and_back(tmp_path):
    src = tmp_path / "train.txt"
    src.write_text(CONLL, encoding="utf-8")
    out = tmp_path / "corpus" / "train.spacy"
    result, text = _run("convert", src, out, "--pos-col", "1")
    assert result.exit_code == 0, text
    assert "1 docs, 2 sentences, 4 tokens, 2 entities; scheme IOB2 (detected)" in text
    summary = srsly.read_json(tmp_path / "corpus" / "train.summary.json")
    assert summary["documents"] == 1 and summary["entities"] == {"ORG": 1, "PER": 1}
    assert summary["scheme"] == "IOB2" and summary["repairs"] == 0 and summary["skipped"] == []
    docs = read_docbin(out)
    assert [t.tag_ for t in docs[0]] == ["NNP", "VBZ", "NNP", "NNP"]
    back = tmp_path / "back.conll"
    result, text = _run("to-conll", out, back, "--scheme", "BILUO")
    assert result.exit_code == 0, text
    assert back.read_text() == (
        "-DOCSTART- -X- O\n\nEU NNP U-ORG\nrejects VBZ O\n\n"
        "Peter NNP B-PER\nBlackburn NNP L-PER\n\n"
    )
    again = tmp_path / "again.spacy"
    result, text = _run("convert", back, again)
    assert result.exit_code == 0 and "scheme BILUO (detected)" in text
    assert [(e.text, e.label_) for e in read_docbin(again)[0].ents] == [
        ("EU", "ORG"),
        ("Peter Blackburn", "PER"),
    ]


def test_cli_convert_sst_style_tsv_defaults(tmp_path):
    src = tmp_path / "dev.tsv"
    src.write_bytes(b"label\tsentence\r\n0\tdull .\r\n1\tgreat fun\r\n")
    out = tmp_path / "dev.spacy"
    result, text = _run("convert", src, out, "--label-map", "0=NEG,1=POS")
    assert result.exit_code == 0, text
    docs = read_docbin(out)
    assert [(d.text, d.cats) for d in docs] == [
        ("dull .", {"NEG": 1.0, "POS": 0.0}),
        ("great fun", {"NEG": 0.0, "POS": 1.0}),
    ]
    summary = json.loads((tmp_path / "dev.summary.json").read_text())
    assert summary["format"] == "tsv" and summary["labels"] == {"NEG": 1, "POS": 1}
    # a file lacking a class still gets every category with --label-set
    src.write_text("label\tsentence\nPOS\tfine\n", encoding="utf-8")
    result, text = _run("convert", src, out, "--label-set", "NEG,POS")
    assert result.exit_code == 0, text
    assert read_docbin(out)[0].cats == {"NEG": 0.0, "POS": 1.0}


def test_cli_convert_output_directory(tmp_path):
    src = tmp_path / "a.conll"
    src.write_text("x B-PER\n", encoding="utf-8")
    result, text = _run("convert", src, tmp_path)
    assert result.exit_code == 0, text
    assert (tmp_path / "a.spacy").exists() and (tmp_path / "a.summary.json").exists()


def test_cli_convert_skip_invalid_reported(tmp_path):
    src = tmp_path / "x.conll"
    src.write_text("a B-PER\n\nb X-PER\n\nc O\n", encoding="utf-8")
    result, text = _run("convert", src, tmp_path / "x.spacy", "--skip-invalid")
    assert result.exit_code == 0, text
    assert "1 line(s) skipped" in text and "line 3: Invalid tag 'X-PER'" in text
    assert srsly.read_json(tmp_path / "x.summary.json")["skipped"][0]["line"] == 3


@pytest.mark.parametrize(
    "content,args,fragments",
    [
        (None, [], ["missing.conll: file not found"]),
        ("", [], ["file is empty"]),
        ("-DOCSTART- -X- -X- O\n\n", [], ["no sentences found"]),
        ("a x B-PER\nb O\n", [], ["line 2: this line has 2 column(s) but the file's lines have 3"]),
        ("a O\nb B-\n", [], ["line 2: Invalid tag 'B-': the entity type after 'B-' is empty"]),
        ("a O\nb X-PER\n", [], ["line 2: Invalid tag 'X-PER': unknown prefix 'X'"]),
        ("a O\nb S-PER\n", ["--scheme", "IOB2"], ["line 2: Tag 'S-PER' is not a IOB2 tag"]),
        ("a O\n", ["--scheme", "IOX"], ["Unknown tag scheme 'IOX'"]),
        (
            "a O\n",
            ["--tag-col", "5"],
            ["line 1: --tag-col is 5, but the file's lines have 2 column(s)"],
        ),
        (b"a O\nb\xff O\n", [], ["line 2: cannot decode byte b'\\xff' as utf-8", "try --encoding"]),
        ("label\ttext\n1\t\n", [], ["line 2: the row has no text"]),
        ("label\ttext\n2\tx\n", ["--label-map", "0=NEG,1=POS"], ["line 2: unknown label '2'"]),
        ("label\ttext\n1\tx\n", ["--label-map", "0-NEG"], ["expected RAW=NAME"]),
        ("label\ttext\n1\tx\n", ["--format", "xml"], ["unknown format 'xml'"]),
        ("x", ["--format", "conll"], ["x.spacy: is already a spaCy DocBin"]),
    ],
)
def test_cli_convert_bad_input(tmp_path, content, args, fragments):
    name = "x.tsv" if content is not None and ("label\t" in str(content)) else "x.conll"
    name = "x.spacy" if content == "x" else name
    src = tmp_path / ("missing.conll" if content is None else name)
    if isinstance(content, bytes):
        src.write_bytes(content)
    elif content is not None:
        src.write_text(content, encoding="utf-8")
    args = ["convert", src, tmp_path / "out.spacy", *args]
    out = _assert_fails(args, "✘", str(src), *fragments)
    assert out.count("✘") == 1  # one paragraph
    assert not (tmp_path / "out.spacy").exists()


def test_cli_to_conll_bad_input(tmp_path):
    _assert_fails(
        ["to-conll", tmp_path / "none.spacy", tmp_path / "o.conll"], "none.spacy: file not found"
    )
    junk = tmp_path / "junk.spacy"
    junk.write_bytes(b"not a docbin")
    _assert_fails(
        ["to-conll", junk, tmp_path / "o.conll"], "junk.spacy: not a readable spaCy DocBin"
    )
    good = tmp_path / "g.spacy"
    DocBin().to_disk(good)
    _assert_fails(
        ["to-conll", good, tmp_path / "o.conll", "--scheme", "XYZ"], "Unknown tag scheme 'XYZ'"
    )


def test_cli_module_entry_point_on_conll2003_valid(conll_dir, tmp_path):
    """`python -m spacy_rnn convert` as a user runs it, on the real valid split."""
    out = tmp_path / "valid.spacy"
    proc = subprocess.run(
        [sys.executable, "-m", "spacy_rnn", "convert", str(conll_dir / "valid.txt"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = srsly.read_json(tmp_path / "valid.summary.json")
    assert (
        summary["documents"],
        summary["sentences"],
        summary["tokens"],
        summary["entities_total"],
    ) == (
        216,
        3250,
        51362,
        5942,
    )


def test_cli_convert_skip_invalid_all_skipped_lists_lines(tmp_path):
    src = tmp_path / "x.conll"
    src.write_text("a X-PER\n\nb B-\n", encoding="utf-8")
    out = _assert_fails(
        ["convert", src, tmp_path / "x.spacy", "--skip-invalid"],
        "skipped every sentence (2 invalid line(s))",
        "line 1: Invalid tag 'X-PER'",
        "line 3: Invalid tag 'B-'",
    )
    assert "no token lines" not in out


def test_cli_convert_bom_only_line_counts_as_blank(tmp_path):
    src = tmp_path / "dev.txt"
    src.write_bytes("EU B-ORG\nrejects O\n\n\ufeff\n".encode("utf-8"))
    result, text = _run("convert", src, tmp_path / "dev.spacy")
    assert result.exit_code == 0, text
    assert "1 docs, 1 sentences, 2 tokens, 1 entities" in text


def _usage(command):
    from spacy_rnn.cli import _load_commands

    _load_commands()
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    return usage.split("[OPTIONS]", 1)[1].split(), result.output


@pytest.mark.parametrize(
    "command,arguments",
    [
        ("convert", ["INPUT", "OUTPUT"]),
        ("to-conll", ["INPUT", "OUTPUT"]),
        ("evaluate", ["GOLD"]),
        ("baseline", ["TASK", "TRAIN", "DEV", "TEST"]),
        ("compare", ["METRICS..."]),
        ("vectors", ["OUTPUT"]),
    ],
)
def test_cli_help_arguments_are_plain_uppercase_metavars(command, arguments):
    """Every command names its arguments alike: UPPERCASE, no {braces}."""
    pieces, output = _usage(command)
    assert pieces == arguments
    assert "{" not in output and "}" not in output


def test_cli_vectors_help_keeps_initialize_section_name():
    """Rich markup would swallow a bare "[initialize]" in the help text."""
    _, output = _usage("vectors")
    assert "[initialize] vectors" in " ".join(output.split())


def test_cli_every_command_usage_is_uppercase_without_braces():
    """The same holds for every command registered on the app, whoever adds it."""
    from spacy_rnn.cli import _load_commands

    _load_commands()
    names = [info.name for info in app.registered_commands]
    assert {"convert", "evaluate", "annotate", "benchmark"} <= set(names)
    for name in names:
        pieces, output = _usage(name)
        assert all(p.isupper() and "{" not in p for p in pieces), (name, pieces)
        usage = next(line for line in output.splitlines() if "Usage:" in line)
        assert "{" not in usage, (name, usage)
