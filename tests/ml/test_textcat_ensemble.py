"""spacy_rnn.RNNTextCat.v3: the recurrent and the hashed n-gram paths' logits summed
under one softmax (textcat) or logistic (textcat_multilabel)."""
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

import spacy_rnn.ml.textcat_ensemble  # noqa: F401  (registers RNNTextCat.v3)

LABELS = ("POS", "NEG")


def _nlp(factory: str = "textcat", **kwargs):
    return rnn_textcat_nlp("v3", factory, **kwargs)


def _initialized(factory: str = "textcat", seed: int = 0, **kwargs):
    return initialized_rnn_textcat("v3", factory, seed, **kwargs)


def _scores(nlp, texts):
    model = nlp.get_pipe("textcat").model
    return model.ops.to_numpy(model.predict([nlp.make_doc(t) for t in texts]))


TEXTS = ["a great and moving film", "dull", "great fun and a tired plot", "film"]


def test_v3_shapes_softmax():
    nlp = _initialized()
    scores = _scores(nlp, TEXTS)
    assert scores.shape == (len(TEXTS), 2)
    numpy.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    assert (scores > 0).all() and (scores < 1).all()


def test_v3_shapes_multilabel():
    nlp = _initialized("textcat_multilabel")
    scores = _scores(nlp, TEXTS)
    assert scores.shape == (len(TEXTS), 2)
    assert (scores > 0).all() and (scores < 1).all()
    # independent logistic outputs: rows need not sum to 1
    assert not numpy.allclose(scores.sum(axis=1), 1.0, atol=1e-3)


@pytest.mark.parametrize("factory", ["textcat", "textcat_multilabel"])
def test_v3_scores_are_the_activation_of_the_summed_logits(factory):
    nlp = _initialized(factory)
    model = nlp.get_pipe("textcat").model
    docs = [nlp.make_doc(t) for t in TEXTS]
    recurrent, bow = model.layers[0].layers
    rnn_logits = model.ops.to_numpy(recurrent.predict(docs))
    bow_logits = model.ops.to_numpy(bow.predict(docs))
    assert numpy.abs(bow_logits).max() > 1e-3  # the n-gram path contributes
    assert numpy.abs(rnn_logits).max() > 1e-3
    logits = rnn_logits + bow_logits
    if factory == "textcat":
        expected = numpy.exp(logits - logits.max(axis=1, keepdims=True))
        expected /= expected.sum(axis=1, keepdims=True)
    else:
        expected = 1.0 / (1.0 + numpy.exp(-logits))
    numpy.testing.assert_allclose(model.ops.to_numpy(model.predict(docs)), expected,
                                  rtol=1e-4, atol=1e-6)


def test_v3_ngrams_reach_the_bow_path():
    """Bigrams are features: two texts of the same words in another order differ
    in the n-gram path's logits (unigram counts alone would make them equal)."""
    nlp = _initialized(ngram_size=2)
    bow = nlp.get_pipe("textcat").model.layers[0].layers[1]
    a, b = bow.predict([nlp.make_doc("not good bad"), nlp.make_doc("bad not good")])
    assert not numpy.allclose(a, b)
    nlp1 = _initialized(ngram_size=1)
    bow1 = nlp1.get_pipe("textcat").model.layers[0].layers[1]
    a, b = bow1.predict([nlp1.make_doc("not good bad"), nlp1.make_doc("bad not good")])
    numpy.testing.assert_allclose(a, b, rtol=1e-5)


def test_v3_learns_and_trains_both_paths():
    fix_random_seed(0)
    nlp = _nlp()
    examples = textcat_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    model = nlp.get_pipe("textcat").model
    sparse = model.get_ref("bow_layer")
    linear = model.get_ref("output_layer")
    bow_before = sparse.get_param("W").copy()
    rnn_before = linear.get_param("W").copy()
    losses = []
    for _ in range(40):
        losses.append(nlp.update(examples, sgd=optimizer, losses={})["textcat"])
    assert losses[-1] < 0.1 * losses[0], losses
    for text, label in TEXTCAT_DATA:
        cats = nlp(text).cats
        assert max(cats, key=cats.get) == label, (text, cats)
    assert not numpy.allclose(sparse.get_param("W"), bow_before)
    assert not numpy.allclose(linear.get_param("W"), rnn_before)


def test_v3_batch_invariance():
    nlp = _initialized()
    batch = _scores(nlp, TEXTS)
    one_by_one = numpy.vstack([_scores(nlp, [t]) for t in TEXTS])
    numpy.testing.assert_allclose(batch, one_by_one, rtol=1e-5, atol=1e-6)


def test_v3_empty_doc_is_a_probability_vector():
    nlp = _initialized()
    scores = _scores(nlp, ["", "great fun"])
    assert numpy.isfinite(scores).all()
    numpy.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


def test_v3_serialization_round_trip(tmp_path):
    nlp = _initialized()
    before = _scores(nlp, TEXTS)
    nlp.to_disk(tmp_path / "nlp")
    loaded = spacy.load(tmp_path / "nlp")
    numpy.testing.assert_allclose(_scores(loaded, TEXTS), before, rtol=1e-6)
    # bytes, into a fresh pipeline of the same config
    fresh = _nlp()
    fresh.from_bytes(nlp.to_bytes())
    numpy.testing.assert_allclose(_scores(fresh, TEXTS), before, rtol=1e-6)
    assert fresh.get_pipe("textcat").labels == nlp.get_pipe("textcat").labels


def test_v3_new_label_after_training_starts_near_zero():
    nlp = _initialized()
    before = _scores(nlp, TEXTS)
    textcat = nlp.get_pipe("textcat")
    textcat.add_label("MIXED")
    after = _scores(nlp, TEXTS)
    assert after.shape == (len(TEXTS), 3)
    assert (after[:, 2] < 1e-6).all()
    numpy.testing.assert_allclose(after[:, :2], before, rtol=1e-4)


@pytest.mark.parametrize("kwargs, key", [
    ({"pooling": "sum"}, "pooling"),
    ({"dropout": 1.0}, "dropout"),
    ({"ngram_size": 0}, "ngram_size"),
    ({"ngram_attr": "LEMMA"}, "ngram_attr"),
    ({"length": 0}, "length"),
])
def test_v3_rejects_bad_arguments(kwargs, key):
    with pytest.raises(ValueError, match=key):
        registry.resolve({"m": rnn_textcat_config("v3", **kwargs)})


def test_v3_in_a_config_string():
    config = spacy.util.load_config_from_str("""
[nlp]
lang = "en"
pipeline = ["textcat"]

[components]

[components.textcat]
factory = "textcat"

[components.textcat.model]
@architectures = "spacy_rnn.RNNTextCat.v3"
pooling = "max"
ngram_size = 3
ngram_attr = "LOWER"
length = 1024
""")
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    model = nlp.get_pipe("textcat").model
    assert model.attrs["pooling"] == "max"
    assert model.get_ref("bow_layer").attrs.get("length", 1024) == 1024


def test_v3_ngrams_equal_spacys_and_take_short_docs():
    from spacy.attrs import ORTH
    from spacy.ml.extract_ngrams import extract_ngrams as spacy_extract_ngrams

    from spacy_rnn.ml.textcat_ensemble import extract_ngrams

    nlp = spacy.blank("en")
    docs = [nlp.make_doc(t) for t in ["a great and moving film", "great", "a b a b"]]
    ours, _ = extract_ngrams(3, ORTH)(docs, is_train=False)
    theirs, _ = spacy_extract_ngrams(3, ORTH)(docs, is_train=False)
    for a, b in zip(ours, theirs):
        numpy.testing.assert_array_equal(a, b)
    (keys, vals, lengths), _ = extract_ngrams(3, ORTH)([nlp.make_doc(""), docs[1]], is_train=False)
    assert list(lengths) == [0, 1] and len(keys) == len(vals) == 1


def test_v3_ngram_scale_multiplies_the_ngram_logits():
    nlp1 = _initialized(seed=3)
    nlp3 = _initialized(seed=3, ngram_scale=3.0)
    docs = [nlp1.make_doc(t) for t in TEXTS]
    bow1 = nlp1.get_pipe("textcat").model.layers[0].layers[1]
    bow3 = nlp3.get_pipe("textcat").model.layers[0].layers[1]
    sparse1 = nlp1.get_pipe("textcat").model.get_ref("bow_layer")
    sparse3 = nlp3.get_pipe("textcat").model.get_ref("bow_layer")
    for name in ("W", "b"):
        sparse3.set_param(name, sparse1.get_param(name).copy())
    numpy.testing.assert_allclose(bow3.predict(docs), 3.0 * bow1.predict(docs), rtol=1e-5)
    with pytest.raises(ValueError, match="ngram_scale"):
        registry.resolve({"m": rnn_textcat_config("v3", ngram_scale=0.0)})
