"""spacy_rnn.RNNTextCat.v4: v3's recurrent and n-gram paths, each trained on its own
loss, docs classified from the mean of their logits."""
import numpy
import pytest
import spacy
from helpers import (
    TEXTCAT_DATA,
    initialized_rnn_textcat,
    rnn_textcat_config,
    textcat_examples,
    rnn_textcat_nlp,
)
from spacy.util import registry
from thinc.api import fix_random_seed

import spacy_rnn.ml.textcat_ensemble  # noqa: F401  (registers RNNTextCat.v4)
from spacy_rnn.ml.textcat import get_temperature, set_temperature

TEXTS = ["a great and moving film", "dull", "great fun and a tired plot", "film"]


def _nlp(factory: str = "textcat", **kwargs):
    return rnn_textcat_nlp("v4", factory, **kwargs)


def _initialized(factory: str = "textcat", seed: int = 0, **kwargs):
    return initialized_rnn_textcat("v4", factory, seed, **kwargs)


def _act(logits, exclusive):
    if exclusive:
        e = numpy.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return 1.0 / (1.0 + numpy.exp(-logits))


def _paths(model, docs):
    recurrent, bow = model.layers
    return (model.ops.to_numpy(recurrent.predict(docs)),
            model.ops.to_numpy(bow.predict(docs)))


@pytest.mark.parametrize("factory", ["textcat", "textcat_multilabel"])
def test_v4_scores_are_the_activation_of_the_mean_logits(factory):
    nlp = _initialized(factory)
    model = nlp.get_pipe("textcat").model
    docs = [nlp.make_doc(t) for t in TEXTS]
    rnn_logits, bow_logits = _paths(model, docs)
    assert numpy.abs(bow_logits).max() > 1e-3 and numpy.abs(rnn_logits).max() > 1e-3
    expected = _act((rnn_logits + bow_logits) / 2, factory == "textcat")
    scores = model.ops.to_numpy(model.predict(docs))
    assert scores.shape == (len(TEXTS), 2)
    numpy.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("factory", ["textcat", "textcat_multilabel"])
def test_v4_each_path_gets_its_own_loss_gradient(factory):
    """The textcat components' gradient (scores - truth) reaches each path as
    act(path logits) - truth; an element the loss leaves out (0) trains neither."""
    exclusive = factory == "textcat"
    nlp = _initialized(factory, dropout=0.0)  # training logits = predicted logits
    model = nlp.get_pipe("textcat").model
    docs = [nlp.make_doc(t) for t in TEXTS]
    truth = numpy.asarray([[1, 0], [0, 1], [1, 0], [0, 1]], dtype="f")
    not_missing = numpy.ones_like(truth)
    not_missing[3] = 0.0  # a doc without gold labels
    rnn_logits, bow_logits = _paths(model, docs)
    scores, backprop = model.begin_update(docs)
    linear, sparse = model.get_ref("output_layer"), model.get_ref("bow_layer")
    for layer in (linear, sparse):
        layer.set_grad("b", numpy.zeros_like(layer.get_param("b")))
    backprop((scores - truth) * not_missing)
    for layer, logits in ((linear, rnn_logits), (sparse, bow_logits)):
        expected = ((_act(logits, exclusive) - truth) * not_missing).sum(axis=0)
        numpy.testing.assert_allclose(layer.get_grad("b"), expected, rtol=1e-3, atol=1e-5)


def test_v4_learns_and_trains_both_paths():
    fix_random_seed(0)
    nlp = _nlp()
    examples = textcat_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    model = nlp.get_pipe("textcat").model
    docs = [nlp.make_doc(text) for text, _ in TEXTCAT_DATA]
    gold = numpy.asarray([["POS", "NEG"].index(label) for _, label in TEXTCAT_DATA])
    losses = []
    for _ in range(40):
        losses.append(nlp.update(examples, sgd=optimizer, losses={})["textcat"])
    # the mean of two logits is less sure than their sum: a slower fall than v3's
    assert losses[-1] < 0.5 * losses[0], losses
    for text, label in TEXTCAT_DATA:
        cats = nlp(text).cats
        assert max(cats, key=cats.get) == label, (text, cats)
    # each path is a classifier of the training data by itself
    for logits in _paths(model, docs):
        assert (logits.argmax(axis=1) == gold).all()


def test_v4_temperature_and_serialization(tmp_path):
    nlp = _initialized()
    model = nlp.get_pipe("textcat").model
    docs = [nlp.make_doc(t) for t in TEXTS]
    rnn_logits, bow_logits = _paths(model, docs)
    assert get_temperature(model) == 1.0
    set_temperature(model, 2.0)
    expected = _act((rnn_logits + bow_logits) / 4, True)
    numpy.testing.assert_allclose(model.ops.to_numpy(model.predict(docs)), expected,
                                  rtol=1e-4, atol=1e-6)
    before = model.ops.to_numpy(model.predict(docs))
    nlp.to_disk(tmp_path / "nlp")
    loaded = spacy.load(tmp_path / "nlp")
    after = loaded.get_pipe("textcat").model.predict([loaded.make_doc(t) for t in TEXTS])
    numpy.testing.assert_allclose(after, before, rtol=1e-6)


def test_v4_new_label_after_training_starts_near_zero():
    nlp = _initialized()
    model = nlp.get_pipe("textcat").model
    before = model.ops.to_numpy(model.predict([nlp.make_doc(t) for t in TEXTS]))
    nlp.get_pipe("textcat").add_label("MIXED")
    model = nlp.get_pipe("textcat").model
    after = model.ops.to_numpy(model.predict([nlp.make_doc(t) for t in TEXTS]))
    assert after.shape == (len(TEXTS), 3)
    assert (after[:, 2] < 1e-6).all()
    numpy.testing.assert_allclose(after[:, :2], before, rtol=1e-4)


def test_v4_rejects_bad_arguments():
    with pytest.raises(ValueError, match="RNNTextCat.v4: ngram_size"):
        registry.resolve({"m": rnn_textcat_config("v4", ngram_size=0)})
