"""The softmax temperature of a text classifier over spacy_rnn.RNNTextCat:
fitted on dev data (lower gold-class NLL, same predicted classes), applied at
prediction as softmax(z / T), saved with the pipeline."""

import pickle

import numpy
import pytest
import spacy
from helpers import randomize_params, rnn_textcat_config, textcat_examples, textcat_nlp
from spacy.tokens import Doc
from thinc.api import fix_random_seed

from spacy_rnn.calibration import calibratable, calibrate_pipeline, scale_probabilities
from spacy_rnn.ml.textcat import get_temperature, has_temperature, set_temperature

WORDS = "a great dull and moving tired film fun".split()


def overconfident_textcat(version="v1"):
    fix_random_seed(0)  # the encoder's torch weights too
    nlp = textcat_nlp(rnn_textcat_config(version))
    nlp.initialize(lambda: textcat_examples(nlp))
    # v3 adds the n-gram path's logits: a smaller weight scale gives as confident a
    # model without probabilities below float32's range, which the fit (working
    # from the pipeline's probabilities) cannot resolve.
    randomize_params(nlp.get_pipe("textcat").model, seed=2, scale=2.0 if version == "v1" else 1.5)
    return nlp


def gold_docs(nlp, n=60, seed=0):
    """Random texts labelled with the classifier's own guess in two docs of
    three, with the other class in the third: a confident model is right
    two times in three."""
    rng = numpy.random.default_rng(seed)
    docs = []
    for i in range(n):
        words = [str(w) for w in rng.choice(WORDS, size=rng.integers(2, 6))]
        guess = max(nlp(Doc(nlp.vocab, words=words)).cats.items(), key=lambda kv: kv[1])[0]
        label = guess if i % 3 else ("NEG" if guess == "POS" else "POS")
        doc = Doc(nlp.vocab, words=words)
        doc.cats = {"POS": float(label == "POS"), "NEG": float(label == "NEG")}
        docs.append(doc)
    return docs


@pytest.mark.parametrize("version", ["v1", "v3"])
def test_textcat_temperature_fit_and_round_trip(tmp_path, version):
    nlp = overconfident_textcat(version)
    model = nlp.get_pipe("textcat").model
    assert has_temperature(model) and get_temperature(model) == 1.0
    assert calibratable(nlp) == ["textcat"]
    dev = gold_docs(nlp)
    texts = [[t.text for t in doc] for doc in dev]
    before = [nlp(Doc(nlp.vocab, words=w)).cats for w in texts]
    assert numpy.mean([max(c.values()) for c in before]) > 0.9
    result = calibrate_pipeline(nlp, dev)["textcat"]
    T = result["temperature"]
    assert T > 1.5 and get_temperature(model) == T
    assert result["nll_after"] < result["nll_before"] - 0.1
    assert 0.55 < result["accuracy"] < 0.8 and result["n"] == len(dev)
    after = [nlp(Doc(nlp.vocab, words=w)).cats for w in texts]
    labels = sorted(before[0])
    raw = numpy.array([[c[label] for label in labels] for c in before])
    got = numpy.array([[c[label] for label in labels] for c in after])
    # softmax(z / T) recomputed from the float32 probabilities: exact where none of
    # a doc's probabilities underflowed (below 1e-9 the logits are lost to rounding).
    exact = raw.min(axis=1) > 1e-9
    assert exact.sum() >= len(raw) - 5
    numpy.testing.assert_allclose(
        got[exact], scale_probabilities(raw[exact], T), rtol=1e-4, atol=1e-6
    )
    assert (got.argmax(1) == raw.argmax(1)).all()
    # The gold-class NLL the fit reports is the pipeline's own.
    gold = numpy.array([labels.index(max(d.cats, key=d.cats.get)) for d in dev])
    nll = -numpy.log(got[numpy.arange(len(gold)), gold]).mean()
    assert nll == pytest.approx(result["nll_after"], rel=1e-3)

    def check(other):
        assert get_temperature(other.get_pipe("textcat").model) == pytest.approx(T)
        cats = other(Doc(other.vocab, words=texts[0])).cats
        assert [cats[label] for label in labels] == pytest.approx(got[0].tolist(), rel=1e-5)

    nlp.to_disk(tmp_path / "model")
    check(spacy.load(tmp_path / "model"))
    other = textcat_nlp(rnn_textcat_config(version))
    other.get_pipe("textcat").add_label("POS")
    other.get_pipe("textcat").add_label("NEG")
    other.from_bytes(nlp.to_bytes())
    check(other)
    check(pickle.loads(pickle.dumps(nlp)))
    with pytest.raises(ValueError, match="finite number > 0"):
        set_temperature(model, 0.0)


def test_textcat_multilabel_has_no_temperature():
    nlp = textcat_nlp(factory="textcat_multilabel")
    nlp.initialize(lambda: textcat_examples(nlp))
    assert not has_temperature(nlp.get_pipe("textcat").model)
    assert calibratable(nlp) == []
    with pytest.raises(ValueError, match="exclusive_classes"):
        get_temperature(nlp.get_pipe("textcat").model)


def test_textcat_calibrate_cli(tmp_path):
    from spacy.tokens import DocBin
    from typer.testing import CliRunner

    from spacy_rnn.cli import _load_commands, app

    nlp = overconfident_textcat()
    nlp.to_disk(tmp_path / "model")
    DocBin(docs=gold_docs(nlp)).to_disk(tmp_path / "dev.spacy")
    _load_commands()
    result = CliRunner().invoke(app, [
        "calibrate", str(tmp_path / "model"), str(tmp_path / "dev.spacy"), "-o",
        str(tmp_path / "out"),
    ])
    assert result.exit_code == 0, result.output
    assert "60 documents" in " ".join(result.output.split())
    assert get_temperature(spacy.load(tmp_path / "out").get_pipe("textcat").model) > 1.5
