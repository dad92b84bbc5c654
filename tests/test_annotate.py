"""Raw text -> silver DocBin with a saved pipeline (an entity_ruler built here,
so no model download is needed)."""
import json
import subprocess
import sys

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_rnn.annotate import annotate, read_texts

TEXTS = [
    "Angela Merkel met Emmanuel Macron in Paris .",
    "Shares of Siemens rose in Frankfurt .",
    "Nothing to see here .",
]


@pytest.fixture(scope="module")
def ruler_model(tmp_path_factory):
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns(
        [
            {"label": "PER", "pattern": "Angela Merkel"},
            {"label": "PER", "pattern": "Emmanuel Macron"},
            {"label": "LOC", "pattern": "Paris"},
            {"label": "LOC", "pattern": "Frankfurt"},
            {"label": "ORG", "pattern": "Siemens"},
        ]
    )
    path = tmp_path_factory.mktemp("ruler") / "model"
    nlp.to_disk(path)
    return path


def _load(path):
    nlp = spacy.blank("en")
    return list(DocBin().from_disk(path).get_docs(nlp.vocab))


def _check(docs):
    assert [d.text for d in docs] == TEXTS
    assert [(e.text, e.label_) for e in docs[0].ents] == [
        ("Angela Merkel", "PER"),
        ("Emmanuel Macron", "PER"),
        ("Paris", "LOC"),
    ]
    assert [(e.text, e.label_) for e in docs[1].ents] == [("Siemens", "ORG"), ("Frankfurt", "LOC")]
    assert docs[2].ents == ()


def test_annotate_txt_lines(ruler_model, tmp_path):
    src = tmp_path / "raw.txt"
    src.write_text(TEXTS[0] + "\n\n" + TEXTS[1] + "\n" + TEXTS[2] + "\n", encoding="utf8")
    counts = annotate(ruler_model, src, tmp_path / "out.spacy")
    assert counts["docs"] == 3 and counts["entities"] == 5
    assert counts["labels"] == {"LOC": 2, "ORG": 1, "PER": 2}
    _check(_load(tmp_path / "out.spacy"))


def test_annotate_jsonl_and_limit(ruler_model, tmp_path):
    src = tmp_path / "raw.jsonl"
    lines = [json.dumps({"text": t, "id": i}) for i, t in enumerate(TEXTS)]
    src.write_text("\n".join(lines), encoding="utf8")
    counts = annotate(ruler_model, src, tmp_path / "out.spacy", limit=2)
    assert counts["format"] == "jsonl" and counts["docs"] == 2
    assert len(_load(tmp_path / "out.spacy")) == 2


def test_annotate_nltk_reuters_layout(ruler_model, tmp_path):
    root = tmp_path / "reuters"
    (root / "training").mkdir(parents=True)
    (root / "test").mkdir()
    for i, text in enumerate(TEXTS):
        split = "training" if i < 2 else "test"
        (root / split / str(i + 1)).write_text(text, encoding="ISO-8859-2")
    cats = "training/1 trade\ntraining/2 acq\ntest/3 earn\n"
    (root / "cats.txt").write_text(cats, encoding="utf8")
    counts = annotate(ruler_model, root, tmp_path / "out.spacy", fmt="nltk")
    assert counts["docs"] == 3
    docs = _load(tmp_path / "out.spacy")
    assert sorted(d.text for d in docs) == sorted(TEXTS)
    assert sum(len(d.ents) for d in docs) == 5


GOLD_ENTS = [
    ["B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "O"],
    ["O", "O", "B-ORG", "O", "O", "B-LOC", "O"],
    ["O", "O", "O", "O", "O"],
]


def test_annotate_output_feeds_evaluation(ruler_model, tmp_path):
    """The silver DocBin is a corpus the evaluation accepts and scores against a gold
    corpus written by hand: all 5 entities right, and one gold label changed costs
    exactly one of 5 in precision and recall (an empty or constant prediction scores 0)."""
    from spacy.tokens import Doc

    from spacy_rnn.evaluation import evaluate_ner, load_docs

    src = tmp_path / "raw.txt"
    src.write_text("\n".join(TEXTS), encoding="utf8")
    annotate(ruler_model, src, tmp_path / "silver.spacy")
    silver = load_docs(tmp_path / "silver.spacy")
    vocab = silver[0].vocab
    gold = [Doc(vocab, words=t.split(), ents=ents) for t, ents in zip(TEXTS, GOLD_ENTS)]
    scores = evaluate_ner(gold, silver)
    json.dumps(scores)  # a serialisable report
    default = scores["seqeval"]["default"]
    assert (default["p"], default["r"], default["f"]) == (1.0, 1.0, 1.0)
    support = {t: r["support"] for t, r in default["per_type"].items()}
    assert support == {"LOC": 2, "ORG": 1, "PER": 2}
    gold[1] = Doc(vocab, words=TEXTS[1].split(), ents=["O", "O", "B-ORG", "O", "O", "B-ORG", "O"])
    default = evaluate_ner(gold, silver)["seqeval"]["default"]
    assert (default["p"], default["r"]) == pytest.approx((4 / 5, 4 / 5))
    empty = [Doc(vocab, words=t.split()) for t in TEXTS]
    assert evaluate_ner(gold, empty)["seqeval"]["default"]["f"] == 0.0


def test_annotate_rejects_pipeline_without_ner(tmp_path):
    path = tmp_path / "blank"
    spacy.blank("en").to_disk(path)
    src = tmp_path / "raw.txt"
    src.write_text("text\n", encoding="utf8")
    with pytest.raises(ValueError, match="no component that sets doc.ents"):
        annotate(path, src, tmp_path / "out.spacy")


def test_annotate_bad_jsonl_names_line(tmp_path):
    src = tmp_path / "raw.jsonl"
    src.write_text('{"text": "fine"}\n{"body": "no text field"}\n', encoding="utf8")
    with pytest.raises(ValueError, match=r"raw.jsonl:2: expected an object with a string field"):
        list(read_texts(src, "jsonl"))
    src.write_text('{"text": "fine"}\n{"text": \n', encoding="utf8")
    with pytest.raises(ValueError, match=r"raw.jsonl:2: not valid JSON \(invalid JSON: Expecting"):
        list(read_texts(src, "jsonl"))


def test_annotate_encoding_errors_name_file_and_line(ruler_model, tmp_path):
    src = tmp_path / "raw.txt"
    src.write_bytes("Paris .\nSiemens cr\xe8me .\n".encode("latin-1"))
    with pytest.raises(ValueError) as err:
        list(read_texts(src, "txt"))
    message = str(err.value)
    assert message.startswith(f"{src}:2: cannot decode byte b'\\xe8'")
    assert "try --encoding cp1252" in message and "--skip-invalid" not in message
    counts = annotate(ruler_model, src, tmp_path / "out.spacy", encoding="latin-1")
    assert counts["docs"] == 2 and counts["labels"] == {"LOC": 1, "ORG": 1}
    assert _load(tmp_path / "out.spacy")[1].text == "Siemens crème ."


def test_annotate_cli(ruler_model, tmp_path):
    src = tmp_path / "raw.txt"
    src.write_text("\n".join(TEXTS), encoding="utf8")
    out = tmp_path / "out.spacy"
    ok = subprocess.run(
        [sys.executable, "-m", "spacy_rnn", "annotate", str(ruler_model), str(src), str(out)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "5 entities" in ok.stdout
    _check(_load(out))
    bad = subprocess.run(
        [sys.executable, "-m", "spacy_rnn", "annotate", str(tmp_path / "nope"), str(src), str(out)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "could not load the pipeline" in bad.stdout
    assert "Traceback" not in bad.stderr


def test_annotate_tsv_column(ruler_model, tmp_path):
    src = tmp_path / "raw.tsv"
    rows = "".join(f"{i % 2}\t{t}\n" for i, t in enumerate(TEXTS))
    src.write_text("label\tcontent\n" + rows, encoding="utf8")
    counts = annotate(ruler_model, src, tmp_path / "out.spacy", text_key="content")
    assert counts["format"] == "tsv" and counts["docs"] == 3
    _check(_load(tmp_path / "out.spacy"))
    with pytest.raises(ValueError, match=r"raw.tsv:1: no column 'text'"):
        list(read_texts(src, "tsv"))


def test_annotate_csv_and_sniffed_table(ruler_model, tmp_path):
    """CSV quoting (a text holding commas and quotes) and a table named .txt are
    read by the converters' table reader, found from the first line."""
    src = tmp_path / "raw.csv"
    src.write_text('id,text\n1,"Paris, ""the"" city ."\n2,Siemens .\n', encoding="utf8")
    assert [t for _, t in read_texts(src, "csv")] == ['Paris, "the" city .', "Siemens ."]
    sniffed = tmp_path / "table.txt"
    sniffed.write_text("label\ttext\n1\tParis .\n0\tFrankfurt .\n", encoding="utf8")
    counts = annotate(ruler_model, sniffed, tmp_path / "out.spacy")
    assert counts["format"] == "tsv" and counts["docs"] == 2 and counts["labels"] == {"LOC": 2}
    src.write_text("id,text\n1\n", encoding="utf8")
    with pytest.raises(ValueError, match=r"raw.csv:2: 1 columns, expected 2"):
        list(read_texts(src, "csv"))
