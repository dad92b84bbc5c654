"""CRFTagger.v2: dropout on the encoder output at a rate of its own; the same
scores as v1 at prediction time; trains and round-trips in crf_ner."""

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry
from thinc.api import fix_random_seed, set_dropout_rate

from spacy_rnn.ml.dropout import fixed_dropout

TOK2VEC = {
    "@architectures": "spacy.Tok2Vec.v2",
    "embed": {
        "@architectures": "spacy_rnn.CharWordEmbed.v1",
        "width": 32,
        "attrs": ["NORM", "SHAPE"],
        "rows": [500, 100],
        "include_static_vectors": False,
        "char_width": 16,
        "char_embed_size": 8,
        "dropout": 0.0,
    },
    "encode": {"@architectures": "spacy_rnn.BiRNNEncoder.v1", "width": 32, "depth": 1},
}

WORDS = [
    ["Peter", "Blackburn", "went", "to", "Brussels", "."],
    ["EU", "rejects", "German", "call"],
    ["Hi"],
]


def _docs():
    vocab = spacy.blank("en").vocab
    return [Doc(vocab, words=w) for w in WORDS]


def _build(version: str, **kwargs):
    fix_random_seed(0)
    fn = registry.architectures.get(f"spacy_rnn.CRFTagger.{version}")
    tok2vec = registry.resolve({"x": TOK2VEC})["x"]
    model = fn(tok2vec, nO=5, **kwargs)
    model.initialize(X=_docs())
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
    for a, b in zip(v1.predict(docs), v2.predict(docs)):
        numpy.testing.assert_allclose(a, b, rtol=1e-6)


def test_crf_tagger_v2_dropout_keeps_its_rate_in_training():
    """spaCy's update sets every "dropout_rate" to [training] dropout; the
    encoder-output dropout keeps its own rate and is active only in training."""
    model = _build("v2", dropout=0.5)
    set_dropout_rate(model, 0.0)  # the embedding dropout off: only the v2 dropout is left
    (node,) = [n for n in model.walk() if n.name == "fixed_dropout"]
    assert node.attrs["fixed_dropout_rate"] == 0.5
    docs = _docs()
    # Emission scores only (the CRF node passes them through): zero-initialized
    # output weights would hide the dropout, so give them values.
    output = model.get_ref("output_layer")
    W = numpy.random.RandomState(0).normal(size=output.get_param("W").shape)
    output.set_param("W", W.astype("float32"))
    predicted = model.predict(docs)
    trained, backprop = model.begin_update(docs)
    assert any(not numpy.allclose(a, b) for a, b in zip(predicted, trained))
    backprop([numpy.ones_like(s) for s in trained])  # gradients flow through the mask
    no_dropout = _build("v2", dropout=0.0)
    no_dropout.get_ref("output_layer").set_param("W", output.get_param("W"))
    for a, b in zip(no_dropout.predict(docs), no_dropout.begin_update(docs)[0]):
        numpy.testing.assert_allclose(a, b, rtol=1e-6)


def test_crf_ner_with_crf_tagger_v2_learns_and_round_trips():
    fix_random_seed(0)
    model = {
        "@architectures": "spacy_rnn.CRFTagger.v2",
        "nO": None,
        "dropout": 0.3,
        "tok2vec": TOK2VEC,
    }
    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner", config={"model": model})
    examples = []
    for words, ents in [
        (WORDS[0], ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]),
        (WORDS[1], ["B-ORG", "O", "B-MISC", "O"]),
    ]:
        doc = Doc(nlp.vocab, words=words)
        examples.append(Example(doc, Doc(nlp.vocab, words=words, ents=ents)))
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.03
    losses = []
    for _ in range(60):
        step = {}
        nlp.update(examples, sgd=optimizer, losses=step)
        losses.append(step["crf_ner"])
    assert losses[-1] < 0.1 * losses[0]
    assert nlp.evaluate(examples)["ents_f"] == 1.0
    other = spacy.blank("en")
    other.add_pipe("crf_ner", config={"model": model})
    other.from_bytes(nlp.to_bytes())
    texts = [" ".join(w) for w in WORDS]
    expected = [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(texts)]
    assert [[(e.start, e.end, e.label_) for e in d.ents] for d in other.pipe(texts)] == expected
