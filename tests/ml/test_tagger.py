"""CRFTagger.v2: dropout on the encoder output at a rate of its own; the same
scores as v1 at prediction time; trains and round-trips in crf_ner."""

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import fix_random_seed, set_dropout_rate

from helpers import (
    NER_SENTENCES,
    crf_ner_nlp,
    crf_tagger_config,
    ner_examples,
    randomize_params,
    tok2vec_config,
)
from spacy_rnn.ml.dropout import fixed_dropout

TOK2VEC = tok2vec_config(32, char_width=16)
WORDS = [NER_SENTENCES[0][0], NER_SENTENCES[1][0], ["Hi"]]


def _docs():
    vocab = spacy.blank("en").vocab
    return [Doc(vocab, words=w) for w in WORDS]


def _build(version: str, **kwargs):
    """CRFTagger.<version> with the same seed, so v1 and v2 start with the
    same weights; the emission layer (zero at first) gets random ones, else
    every emission score would be 0.0 whatever the layers before it compute."""
    fix_random_seed(0)
    fn = registry.architectures.get(f"spacy_rnn.CRFTagger.{version}")
    tok2vec = registry.resolve({"x": TOK2VEC})["x"]
    model = fn(tok2vec, nO=5, **kwargs)
    model.initialize(X=_docs())
    randomize_params(model.get_ref("output_layer"), seed=1)
    return model


def test_fixed_dropout_masks_forward_and_backward_alike():
    layer = fixed_dropout(0.5)
    layer.initialize()
    X = numpy.ones((200, 8), dtype="f")
    Y, backprop = layer(X, is_train=True)
    dX = backprop(numpy.ones_like(X))
    numpy.testing.assert_array_equal(Y, dX)
    assert set(numpy.unique(Y)) == {0.0, 2.0}  # inverted dropout: kept units scaled by 1/(1-p)
    assert 0.35 < (Y == 0).mean() < 0.65
    Y, _ = layer(X, is_train=False)
    numpy.testing.assert_array_equal(Y, X)


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_fixed_dropout_rejects_bad_rates(rate):
    with pytest.raises(ValueError, match="dropout"):
        fixed_dropout(rate)


def test_crf_tagger_v2_predicts_like_v1():
    v1, v2 = _build("v1"), _build("v2", dropout=0.5)
    params1 = [p for n in v1.walk() for p in (n.get_param(k) for k in n.param_names)]
    params2 = [p for n in v2.walk() for p in (n.get_param(k) for k in n.param_names)]
    assert len(params1) == len(params2)
    for a, b in zip(params1, params2):
        numpy.testing.assert_array_equal(a, b)
    docs = _docs()
    scores1 = v1.predict(docs)
    # Scores that differ by token and by tag, so that a v2 that scales or
    # shifts them at prediction time cannot match.
    assert all(s.std() > 0.05 and numpy.abs(s).max() > 0.1 for s in scores1)
    for a, b in zip(scores1, v2.predict(docs)):
        numpy.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_crf_tagger_v2_dropout_keeps_its_rate_in_training():
    """spaCy's update sets every "dropout_rate" to [training] dropout; the
    encoder-output dropout keeps its own rate and is active only in training."""
    model = _build("v2", dropout=0.5)
    set_dropout_rate(model, 0.0)  # the embedding dropout off: only the v2 dropout is left
    (node,) = [n for n in model.walk() if n.name == "fixed_dropout"]
    assert node.attrs["fixed_dropout_rate"] == 0.5
    docs = _docs()
    # Emission scores only (the CRF node passes them through); _build gave the
    # output layer random weights, so dropout shows in them.
    output = model.get_ref("output_layer")
    predicted = model.predict(docs)
    trained, backprop = model.begin_update(docs)
    assert any(not numpy.allclose(a, b) for a, b in zip(predicted, trained))
    backprop([numpy.ones_like(s) for s in trained])  # gradients flow through the mask
    no_dropout = _build("v2", dropout=0.0)
    no_dropout.get_ref("output_layer").set_param("W", output.get_param("W"))
    # Training and prediction take different torch paths: float32 rounding
    # (up to ~3e-7 seen on scores of order 1) is all that may differ.
    for a, b in zip(no_dropout.predict(docs), no_dropout.begin_update(docs)[0]):
        numpy.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_crf_ner_with_crf_tagger_v2_learns_and_round_trips():
    fix_random_seed(0)
    model = crf_tagger_config("v2", TOK2VEC, dropout=0.3)
    nlp = crf_ner_nlp(model)
    examples = ner_examples(nlp, NER_SENTENCES[:2])
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.03
    losses = []
    for _ in range(60):
        step = {}
        nlp.update(examples, sgd=optimizer, losses=step)
        losses.append(step["crf_ner"])
    assert losses[-1] < 0.1 * losses[0]
    assert nlp.evaluate(examples)["ents_f"] == 1.0
    other = crf_ner_nlp(model)
    other.from_bytes(nlp.to_bytes())
    texts = [" ".join(w) for w in WORDS]
    expected = [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(texts)]
    assert [[(e.start, e.end, e.label_) for e in d.ents] for d in other.pipe(texts)] == expected
