"""spacy_rnn.baselines: features, conlleval chunking of per-token predictions,
and the baselines learning on small slices of CoNLL-2003 and SST-2."""

import json
import re
import sys

import pytest
from spacy.tokens import Doc
from spacy.vocab import Vocab

from spacy_rnn.baselines import (
    NERBaseline,
    copy_doc,
    doc_sentences,
    predict_ner,
    predict_textcat,
    run_ner_baseline,
    run_textcat_baseline,
    token_features,
    train_ner_baseline,
    train_textcat_baseline,
    word_shape,
)
from spacy_rnn.converters import read_conll, read_textcat
from spacy_rnn.evaluation import evaluate_ner, evaluate_textcat, load_docs

VOCAB = Vocab()


def head(path, n_lines, tmp_dir):
    """The first n_lines of a corpus file (reading all of train costs most of the test time)."""
    with open(path, encoding="utf8", newline="") as f:
        lines = [line for _, line in zip(range(n_lines), f)]
    out = tmp_dir / path.name
    out.write_text("".join(lines), encoding="utf8", newline="")
    return out


@pytest.fixture(scope="module")
def conll(conll_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conll")
    # 30 training documents (about 500 sentences, 7k tokens), 10 test documents
    train, _ = read_conll(head(conll_dir / "train.txt", 9000, tmp), vocab=VOCAB)
    test, _ = read_conll(head(conll_dir / "test.txt", 3000, tmp), vocab=VOCAB)
    assert len(train) >= 30 and len(test) >= 10
    return train[:30], test[:10]


@pytest.fixture(scope="module")
def sst(sst2_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sst2")
    train, _ = read_textcat(head(sst2_dir / "train.tsv", 8001, tmp))
    dev, _ = read_textcat(sst2_dir / "dev.tsv")
    test, _ = read_textcat(head(sst2_dir / "test.tsv", 401, tmp))
    assert len(train) == 8000 and len(test) == 400
    return train, dev, test


def test_baselines_word_shape_and_features():
    assert word_shape("McDonald's") == "XxXx'x"
    assert word_shape("1996") == "d" and word_shape("U.S.") == "X.X."
    feats = token_features(["EU", "rejects", "German", "call"], 2)
    assert feats["word"] == "German" and feats["lower"] == "german" and feats["title"] is True
    assert feats["suffix3"] == "man" and feats["prefix2"] == "Ge"
    assert (
        feats["-1:lower"] == "rejects" and feats["+1:lower"] == "call" and feats["-2:lower"] == "eu"
    )
    assert feats["+2:pad"] is True and "-2:pad" not in feats
    assert token_features(["EU"], 0)["upper"] is True


class FixedTags(NERBaseline):
    def __init__(self, tags):
        super().__init__("lr", None)
        self.tags = tags

    def predict_tags(self, sentences):
        return [self.tags[: len(s)] for s in sentences]


def test_baselines_predictions_use_conlleval_chunking():
    """Ill-formed per-token output (O I-PER I-PER B-LOC I-ORG) becomes conlleval's entities."""
    gold = Doc(VOCAB, words=["a", "b", "c", "d", "e"], sent_starts=[True] + [False] * 4)
    pred = predict_ner(FixedTags(["O", "I-PER", "I-PER", "B-LOC", "I-ORG"]), [gold])[0]
    assert [(e.label_, e.start, e.end) for e in pred.ents] == [
        ("PER", 1, 3),
        ("LOC", 3, 4),
        ("ORG", 4, 5),
    ]
    assert [t.is_sent_start for t in pred] == [t.is_sent_start for t in gold]
    assert [t.text for t in pred] == [t.text for t in gold]


def test_baselines_doc_sentences_and_copy():
    doc = Doc(
        VOCAB,
        words=["A", "b", "C", "d"],
        sent_starts=[True, False, True, False],
        ents=["B-PER", "O", "B-LOC", "I-LOC"],
    )
    assert doc_sentences([doc]) == [
        (0, 0, ["A", "b"], ["B-PER", "O"]),
        (0, 2, ["C", "d"], ["B-LOC", "I-LOC"]),
    ]
    copy = copy_doc(doc)
    assert not copy.ents and [t.is_sent_start for t in copy] == [True, False, True, False]


def test_baselines_reject_bad_training_data():
    no_ents = Doc(VOCAB, words=["a", "b"], ents=["O", "O"])
    with pytest.raises(ValueError, match="no entities"):
        train_ner_baseline([no_ents], "lr")
    with pytest.raises(ValueError, match="kind must be one of"):
        train_ner_baseline([no_ents], "svm")
    one = Doc(VOCAB, words=["good"])
    one.cats = {"POS": 1.0, "NEG": 0.0}
    with pytest.raises(ValueError, match="single class"):
        train_textcat_baseline([one, one])


@pytest.mark.parametrize("kind,min_f", [("lr", 0.45), ("crf", 0.5)])
def test_baselines_ner_learns_on_conll_slice(conll, kind, min_f):
    train, test = conll
    model = train_ner_baseline(train, kind, max_iter=50)
    preds = predict_ner(model, test)
    metrics = evaluate_ner(test, preds)
    # an untrained tagger predicting "O" everywhere scores 0; these learn from ~500 sentences
    assert metrics["seqeval"]["default"]["f"] > min_f, metrics["seqeval"]["default"]
    # docs hold conlleval's chunking, so the two seqeval modes agree on them
    assert metrics["seqeval"]["strict"]["f"] == metrics["seqeval"]["default"]["f"]
    # it also does better on its own training data than on unseen test
    train_f = evaluate_ner(train[:10], predict_ner(model, train[:10]))["seqeval"]["default"]["f"]
    assert train_f > metrics["seqeval"]["default"]["f"]


def test_baselines_run_ner_writes_predictions_and_metrics(conll, tmp_path):
    train, test = conll
    results = run_ner_baseline(
        train[:10], test[:3], test[3:6], tmp_path, kinds=["crf"], max_iter=20
    )
    assert set(results) == {"ner-crf-dev", "ner-crf-test"}
    saved = json.loads((tmp_path / "ner-crf-test.json").read_text())
    assert saved["meta"]["kind"] == "baseline" and saved["meta"]["system"] == "ner-crf"
    preds = load_docs(tmp_path / "ner-crf-test.spacy")
    rescored = evaluate_ner(test[3:6], preds)
    # JSON keeps floats exactly: re-scoring the written DocBin gives the written figures
    assert (
        rescored["seqeval"] == saved["ner"]["seqeval"]
        and rescored["semeval"] == saved["ner"]["semeval"]
    )


def test_baselines_textcat_learns_on_sst2_slice(sst, tmp_path):
    train, dev, test = sst
    model = train_textcat_baseline(train)
    preds = predict_textcat(model, dev)
    assert set(preds[0].cats) == {"0", "1"} and sum(preds[0].cats.values()) == pytest.approx(1.0)
    metrics = evaluate_textcat(dev, preds)
    # majority class on dev is 50.9%; TF-IDF + LR on 8k phrases gets well above
    assert metrics["accuracy"] > 0.70, metrics["accuracy"]
    assert metrics["roc_auc"] > 0.78 and metrics["positive_label"] == "1"
    results = run_textcat_baseline(train[:2000], dev[:100], test, tmp_path)
    saved = json.loads((tmp_path / "textcat-tfidf-logreg-test.json").read_text())
    assert saved["textcat"]["accuracy"] == pytest.approx(
        results["textcat-tfidf-logreg-test"]["textcat"]["accuracy"]
    )
    assert len(load_docs(tmp_path / "textcat-tfidf-logreg-test.spacy")) == 400
    # C is chosen on dev accuracy: the kept C is the best of the grid, and the dev
    # figures written are those of the kept model
    params = saved["meta"]["params"]
    by_c = params["dev_accuracy_by_C"]
    assert len(by_c) == 5 and by_c[str(params["C"])] == max(by_c.values())
    dev_saved = json.loads((tmp_path / "textcat-tfidf-logreg-dev.json").read_text())
    assert dev_saved["textcat"]["accuracy"] == by_c[str(params["C"])]


def test_baselines_crf_without_extra_says_what_to_install(monkeypatch):
    # None in sys.modules makes `import sklearn_crfsuite` fail as if it were not installed
    monkeypatch.setitem(sys.modules, "sklearn_crfsuite", None)
    doc = Doc(VOCAB, words=["Ann", "sings"], ents=["B-PER", "O"])
    with pytest.raises(ImportError, match=re.escape('pip install "spacy-rnn[baselines]"')):
        train_ner_baseline([doc], "crf")
    # the other baseline needs no extra
    assert train_ner_baseline([doc, Doc(VOCAB, words=["sings"], ents=["O"])], "lr").kind == "lr"
