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
    src.write_text("\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate(TEXTS)), encoding="utf8")
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
    (root / "cats.txt").write_text("training/1 trade\ntraining/2 acq\ntest/3 earn\n", encoding="utf8")
    counts = annotate(ruler_model, root, tmp_path / "out.spacy", fmt="nltk")
    assert counts["docs"] == 3
    docs = _load(tmp_path / "out.spacy")
    assert sorted(d.text for d in docs) == sorted(TEXTS)
    assert sum(len(d.ents) for d in docs) == 5


def test_annotate_output_feeds_evaluation(ruler_model, tmp_path):
    """The silver DocBin is a corpus the evaluation accepts: scored against itself, F1 is 1."""
    from spacy_rnn.evaluation import evaluate_ner, load_docs

    src = tmp_path / "raw.txt"
    src.write_text("\n".join(TEXTS), encoding="utf8")
    annotate(ruler_model, src, tmp_path / "silver.spacy")
    docs = load_docs(tmp_path / "silver.spacy")
    scores = evaluate_ner(docs, docs)
    assert json.dumps(scores)  # serialisable report
    flat = json.dumps(scores)
    assert '"f1": 1.0' in flat or '"f": 1.0' in flat


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
    with pytest.raises(ValueError, match=r"raw.jsonl:2: expected an object with a string field 'text'"):
        list(read_texts(src, "jsonl"))


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
    src.write_text("label\tcontent\n" + "".join(f"{i % 2}\t{t}\n" for i, t in enumerate(TEXTS)), encoding="utf8")
    counts = annotate(ruler_model, src, tmp_path / "out.spacy", text_key="content")
    assert counts["format"] == "tsv" and counts["docs"] == 3
    _check(_load(tmp_path / "out.spacy"))
    with pytest.raises(ValueError, match=r"raw.tsv:1: no column 'text'"):
        list(read_texts(src, "tsv"))
