"""Reports and the evaluate / compare / baseline commands: JSON, Markdown,
PNG and displaCy HTML outputs; clear errors on bad input. (The benchmark's
reports are tested in test_benchmark.py.)"""

import json

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span
from thinc.api import Config
from typer.testing import CliRunner

from spacy_rnn.cli import _load_commands, app
from spacy_rnn.evaluation import write_metrics
from spacy_rnn.reports import compare_metrics, make_report

_load_commands()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def runner():
    return CliRunner()


def _ner_docs(vocab):
    """Gold: 3 docs, 5 entities; prediction: 2 right, 1 boundary error, 1 type error, 1 miss."""
    s = [True, False, False, False, True, False, False]
    gold = [
        Doc(
            vocab,
            words=["Smith", "went", "to", "Paris", "He", "likes", "Rome"],
            sent_starts=s,
            ents=["B-PER", "O", "O", "B-LOC", "O", "O", "B-LOC"],
        ),
        Doc(vocab, words=["Acme", "Corp", "hired", "Jones"], ents=["B-ORG", "I-ORG", "O", "B-PER"]),
        Doc(vocab, words=["nothing", "here"], ents=["O", "O"]),
    ]
    pred = [
        Doc(
            vocab,
            words=["Smith", "went", "to", "Paris", "He", "likes", "Rome"],
            ents=["B-PER", "O", "O", "B-LOC", "O", "O", "O"],
        ),
        Doc(vocab, words=["Acme", "Corp", "hired", "Jones"], ents=["B-ORG", "O", "O", "B-LOC"]),
        Doc(vocab, words=["nothing", "here"], ents=["O", "O"]),
    ]
    return gold, pred


def said(result):
    """The command's output with wasabi's line wrapping undone."""
    return " ".join(result.output.split())


def _write(docs, path):
    DocBin(docs=docs, store_user_data=True).to_disk(path)
    return path


def test_reports_evaluate_cli_writes_json_md_png_html(tmp_path, runner):
    nlp = spacy.blank("en")
    gold, pred = _ner_docs(nlp.vocab)
    g, p = _write(gold, tmp_path / "gold.spacy"), _write(pred, tmp_path / "pred.spacy")
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(g),
            "--predictions",
            str(p),
            "--output",
            str(tmp_path / "m.json"),
            "--report",
            str(tmp_path / "r.md"),
            "--plots",
            str(tmp_path / "plots"),
            "--displacy",
            str(tmp_path / "errors.html"),
            "--name",
            "toy",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "seqeval default (conlleval)" in result.output  # the printed table
    metrics = json.loads((tmp_path / "m.json").read_text())
    ner = metrics["ner"]
    # 5 gold, 4 predicted, 2 right (Smith, Paris)
    for mode in ("default", "strict"):
        assert (ner["seqeval"][mode]["p"], ner["seqeval"][mode]["r"]) == pytest.approx(
            (2 / 4, 2 / 5)
        )
        assert set(ner["seqeval"][mode]["per_type"]["PER"]) >= {"p", "r", "f"}
    for mode in ("strict", "exact", "partial", "type"):
        assert set(ner["semeval"][mode]) >= {"p", "r", "f"}
    # exact: Acme boundary error is incorrect, Jones PER->LOC has the right span -> 3 of 4 / 5
    assert ner["semeval"]["exact"]["p"] == pytest.approx(3 / 4)
    assert ner["semeval"]["partial"]["p"] == pytest.approx(3.5 / 4)
    assert metrics["meta"]["system"] == "toy" and "textcat" not in metrics
    report = (tmp_path / "r.md").read_text()
    assert "per sentence of the reference" in report and "| LOC |" in report
    png = tmp_path / "plots" / "ner_f1_per_type.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[0] > 100
    page = (tmp_path / "errors.html").read_text()
    assert "Documents with errors: 2 of 3" in page
    assert (
        page.count("<tr><td>") == 2 and "doc 0" in page and "doc 1" in page and "doc 2" not in page
    )
    assert "Rome" in page and "Jones" in page


def test_reports_evaluate_cli_runs_a_model(tmp_path, runner):
    """--model runs a saved pipeline over the gold words: an entity ruler knowing Paris, Smith."""
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "LOC", "pattern": "Paris"}, {"label": "PER", "pattern": "Smith"}])
    nlp.to_disk(tmp_path / "model")
    gold, _ = _ner_docs(nlp.vocab)
    g = _write(gold, tmp_path / "gold.spacy")
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(g),
            "--model",
            str(tmp_path / "model"),
            "--output",
            str(tmp_path / "m.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    ner = json.loads((tmp_path / "m.json").read_text())["ner"]
    assert (ner["seqeval"]["default"]["p"], ner["seqeval"]["default"]["r"]) == pytest.approx(
        (1.0, 2 / 5)
    )
    assert ner["spacy"]["f"] == pytest.approx(2 * 1.0 * 0.4 / 1.4)


@Language.component("spacy_rnn_test_first_token_per")
def _first_token_per(doc):
    """Marks the first token of each doc it is given as PER: tells sentences from documents."""
    doc.ents = [Span(doc, 0, 1, label="PER")] if len(doc) else []
    return doc


def test_reports_evaluate_cli_reads_documents_as_the_pipeline_was_tuned(tmp_path, runner):
    """--model runs the gold docs as the pipeline's dev corpus was read in training:
    one gold sentence at a time after `gold_preproc = true`, whole documents after
    `gold_preproc = false` (spaCy's default, or with spacy_rnn.gold_sentences.v1);
    --gold-preproc / --no-gold-preproc override either way."""
    nlp = spacy.blank("en")
    nlp.add_pipe("spacy_rnn_test_first_token_per")
    dev_corpora = {
        "sentences": {"gold_preproc": True},
        "documents": {
            "gold_preproc": False,
            "augmenter": {"@augmenters": "spacy_rnn.gold_sentences.v1"},
        },
        "default": {},
    }
    for name, dev in dev_corpora.items():
        nlp.to_disk(tmp_path / name)
        config = Config().from_disk(tmp_path / name / "config.cfg", interpolate=False)
        config["corpora"]["dev"].update(dev)
        config.to_disk(tmp_path / name / "config.cfg")
    words = ["Smith", "came", ".", "Jones", "left", "."]
    gold = Doc(nlp.vocab, words=words, sent_starts=[True, False, False, True, False, False],
               ents=["B-PER", "O", "O", "B-PER", "O", "O"])
    g = _write([gold], tmp_path / "gold.spacy")
    for model, flags, recall, gold_preproc in [
        ("sentences", [], 1.0, True),
        ("documents", [], 0.5, False),
        ("default", [], 0.5, False),
        ("documents", ["--gold-preproc"], 1.0, True),
        ("sentences", ["--no-gold-preproc"], 0.5, False),
    ]:
        out = tmp_path / f"{model}{''.join(flags)}.json"
        args = ["evaluate", str(g), "--model", str(tmp_path / model), "--output", str(out), *flags]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        metrics = json.loads(out.read_text())
        assert metrics["ner"]["seqeval"]["default"]["r"] == pytest.approx(recall), (model, flags)
        assert metrics["meta"]["gold_preproc"] is gold_preproc


def test_reports_evaluate_cli_textcat(tmp_path, runner):
    nlp = spacy.blank("en")
    gold, pred = [], []
    for text, g, p in [
        ("good", "POS", 0.9),
        ("fine", "POS", 0.3),
        ("bad", "NEG", 0.2),
        ("awful", "NEG", 0.4),
    ]:
        gd, pd = nlp.make_doc(text), nlp.make_doc(text)
        gd.cats = {"POS": float(g == "POS"), "NEG": float(g == "NEG")}
        pd.cats = {"POS": p, "NEG": 1 - p}
        gold.append(gd), pred.append(pd)
    g, p = _write(gold, tmp_path / "gold.spacy"), _write(pred, tmp_path / "pred.spacy")
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(g),
            "--predictions",
            str(p),
            "--output",
            str(tmp_path / "m.json"),
            "--plots",
            str(tmp_path / "plots"),
            "--report",
            str(tmp_path / "r.md"),
            "--displacy",
            str(tmp_path / "e.html"),
        ],
    )
    assert result.exit_code == 0, result.output
    tc = json.loads((tmp_path / "m.json").read_text())["textcat"]
    # AUC: positives score {0.9, 0.3}, negatives {0.2, 0.4}: 3 of 4 pairs ranked right
    assert (
        tc["accuracy"] == 0.75
        and tc["roc_auc"] == 0.75
        and tc["confusion_matrix"]["matrix"] == [[2, 0], [1, 1]]
    )
    assert (tmp_path / "plots" / "textcat_confusion.png").read_bytes()[:8] == PNG_MAGIC
    assert "Documents with errors: 1 of 4" in (tmp_path / "e.html").read_text()
    assert "Confusion matrix" in (tmp_path / "r.md").read_text()


def test_reports_evaluate_cli_fails_clearly(tmp_path, runner):
    nlp = spacy.blank("en")
    gold, pred = _ner_docs(nlp.vocab)
    g, p = _write(gold, tmp_path / "gold.spacy"), _write(pred[:2], tmp_path / "pred.spacy")
    cases = [
        (["evaluate", str(g)], "exactly one of --model"),
        (
            ["evaluate", str(tmp_path / "missing.spacy"), "--predictions", str(p)],
            "missing.spacy: file not found",
        ),
        (["evaluate", str(g), "--predictions", str(p)], "3 gold documents but 2 predicted"),
        (
            ["evaluate", str(g), "--model", str(tmp_path / "nomodel")],
            "nomodel: model path not found",
        ),
    ]
    (tmp_path / "junk.spacy").write_bytes(b"not a docbin")
    cases.append(
        (["evaluate", str(tmp_path / "junk.spacy"), "--predictions", str(p)], "not a spaCy DocBin")
    )
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert message in said(result), (args, result.output)
        assert "Traceback" not in result.output


def _metrics(name, kind, f, tmp_path, acc=None):
    if acc is not None:
        body = {"textcat": {"accuracy": acc, "macro_f1": acc - 0.01, "roc_auc": acc + 0.05}}
    else:
        row = {"p": f, "r": f, "f": f}
        body = {
            "ner": {
                "seqeval": {"default": row, "strict": row},
                "semeval": {m: row for m in ("strict", "exact", "partial", "type")},
                "spacy": row,
            }
        }
    path = tmp_path / f"{name}.json"
    write_metrics(dict(meta={"system": name, "kind": kind, "split": "test"}, **body), path)
    return path


def test_reports_compare_table_chart_and_verdict(tmp_path, runner):
    paths = [
        _metrics("ner-crf", "baseline", 0.822, tmp_path),
        _metrics("ner-logreg", "baseline", 0.768, tmp_path),
        _metrics("bilstm-crf", "model", 0.871, tmp_path),
        _metrics("textcat-tfidf", "baseline", None, tmp_path, acc=0.82),
        _metrics("textcat-bilstm", "model", None, tmp_path, acc=0.80),
    ]
    comp = compare_metrics(paths, output=tmp_path / "t.md", plot=tmp_path / "c.png")
    assert [r["system"] for r in comp.ner_rows] == ["bilstm-crf", "ner-crf", "ner-logreg"]
    assert "**yes**" in comp.verdicts[0] and "+4.90 points" in comp.verdicts[0]
    assert "**no**" in comp.verdicts[1] and "-2.00 points" in comp.verdicts[1]
    table = (tmp_path / "t.md").read_text()
    assert "| bilstm-crf | model | test | 87.10 |" in table
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC
    result = runner.invoke(
        app,
        [
            "compare",
            *map(str, paths),
            "--output",
            str(tmp_path / "t2.md"),
            "--plot",
            str(tmp_path / "c2.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t2.md").read_text() == table
    only_baselines = compare_metrics(paths[:2])
    assert only_baselines.verdicts == [
        "NER: no model (kind other than 'baseline') among the inputs, "
        "so no verdict on model vs baseline."
    ]
    (tmp_path / "bad.json").write_text("{not json")
    result = runner.invoke(app, ["compare", str(tmp_path / "bad.json")])
    assert result.exit_code == 1 and "bad.json: not JSON (line 1" in said(result)
    (tmp_path / "other.json").write_text("{}")
    result = runner.invoke(app, ["compare", str(tmp_path / "other.json")])
    assert result.exit_code == 1 and "neither 'ner' nor 'textcat'" in said(result)


def test_reports_markdown_states_the_scoring_unit():
    vocab = spacy.blank("en").vocab
    gold, pred = _ner_docs(vocab)
    from spacy_rnn.evaluation import evaluate_docs

    report = make_report(evaluate_docs(gold, pred))
    assert "per sentence of the reference" in report and "conlleval" in report
    assert (
        "SemEval counts (strict): correct 2, incorrect 2, partial 0, missed 1, spurious 0" in report
    )


def test_reports_baseline_cli_on_docbins(tmp_path, runner):
    nlp = spacy.blank("en")
    docs = []
    for i in range(40):
        name, city = ["Smith", "Jones"][i % 2], ["Paris", "Rome", "Oslo"][i % 3]
        docs.append(
            Doc(nlp.vocab, words=[name, "visited", city, "."], ents=["B-PER", "O", "B-LOC", "O"])
        )
    paths = [
        _write(docs[:30], tmp_path / "train.spacy"),
        _write(docs[30:35], tmp_path / "dev.spacy"),
        _write(docs[35:], tmp_path / "test.spacy"),
    ]
    result = runner.invoke(
        app,
        [
            "baseline",
            "ner",
            *map(str, paths),
            "--output",
            str(tmp_path / "out"),
            "--kinds",
            "crf",
            "--max-iter",
            "30",
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "ner-crf-test.json").read_text())
    assert saved["ner"]["seqeval"]["default"]["f"] == 1.0  # the pattern is trivial
    result = runner.invoke(
        app,
        ["evaluate", str(paths[2]), "--predictions", str(tmp_path / "out" / "ner-crf-test.spacy")],
    )
    assert result.exit_code == 0 and "100.00" in result.output
    result = runner.invoke(
        app,
        ["baseline", "ner", *map(str, paths), "--output", str(tmp_path / "o"), "--kinds", "svm"],
    )
    assert result.exit_code == 1 and "each kind must be one of lr, crf" in said(result)
    result = runner.invoke(
        app, ["baseline", "pos", *map(str, paths), "--output", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "Unknown task 'pos'" in said(result)
