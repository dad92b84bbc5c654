"""spacy_rnn.RNNTextCat.v1 and its pooling layers: hand computations on a tiny
model, numerical gradients, padding invariance, empty docs, config defaults.
Concatenated poolings ("attention+max") are checked the same ways."""
import zlib
from typing import List

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import spacy
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, Ragged, chain, concatenate, fix_random_seed

from helpers import randomize_params, tok2vec_config
from spacy_rnn.ml.textcat import (
    POOLINGS,
    RNNTextCat,
    pool_attention,
    pool_last,
    pool_max,
    pool_mean,
)

WIDTH = 6  # even: [forward half | backward half]
# Concatenated poolings: the one the SST-2 dev sweep tried, and ULMFiT's.
COMBINED = ("attention+max", "last+max+mean")
TEXTS = [
    "a gripping , funny film",
    "dull",
    "",
    "not worth the ticket , nor the popcorn , nor the parking",
]


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


@pytest.fixture
def docs(nlp) -> List[Doc]:
    return [nlp.make_doc(text) for text in TEXTS]


def word_vector(word: str, width: int = WIDTH) -> numpy.ndarray:
    """A fixed vector per word, seeded by the word itself."""
    rng = numpy.random.default_rng(zlib.crc32(word.encode("utf8")))
    return rng.normal(size=(width,)).astype("f")


def fixed_tok2vec(bidirectional: bool, width: int = WIDTH) -> Model[List[Doc], List[numpy.ndarray]]:
    """A stand-in tok2vec with known outputs: each token's vector is a fixed
    function of its text. Shaped like spacy.Tok2Vec.v2 (an "encode" ref carrying
    `bidirectional`), so RNNTextCat reads the direction as from BiRNNEncoder."""
    def embed_forward(model, docs, is_train):
        Xs = [
            numpy.asarray([word_vector(t.text, width) for t in doc], dtype="f").reshape(
                len(doc), width
            )
            for doc in docs
        ]
        return Xs, lambda dXs: []

    def encode_forward(model, Xs, is_train):
        return Xs, lambda dYs: dYs

    embed = Model("fixed_embed", embed_forward, dims={"nO": width})
    encode = Model(
        "identity_encode",
        encode_forward,
        dims={"nO": width},
        attrs={"bidirectional": bidirectional},
    )
    model = chain(embed, encode)
    model.set_ref("embed", embed)
    model.set_ref("encode", encode)
    model.set_dim("nO", width)
    return model


def states(doc: Doc, width: int = WIDTH) -> numpy.ndarray:
    rows = [word_vector(t.text, width) for t in doc]
    return numpy.asarray(rows, dtype="f").reshape(len(doc), width)


def pooled_by_hand(
    H: numpy.ndarray, pooling: str, bidirectional: bool, params=None
) -> numpy.ndarray:
    """The pooled vector of one doc, written out with plain numpy loops."""
    if "+" in pooling:
        return numpy.concatenate(
            [pooled_by_hand(H, name, bidirectional, params) for name in pooling.split("+")]
        )
    n, width = H.shape
    if n == 0:
        return numpy.zeros((width,), dtype="f")
    if pooling == "last":
        if not bidirectional:
            return H[n - 1]
        half = width // 2
        return numpy.concatenate([H[n - 1, :half], H[0, half:]])
    if pooling == "mean":
        return sum(H[t] for t in range(n)) / n
    if pooling == "max":
        return numpy.array([max(H[t, j] for t in range(n)) for j in range(width)])
    W, b, q = params["W"], params["b"], params["q"]
    scores = numpy.array([q @ numpy.tanh(W @ H[t] + b) for t in range(n)])
    weights = numpy.exp(scores) / numpy.exp(scores).sum()
    return sum(weights[t] * H[t] for t in range(n))


def _build(pooling: str, bidirectional: bool, exclusive: bool, docs, seed: int = 0):
    model = RNNTextCat(
        tok2vec=fixed_tok2vec(bidirectional),
        pooling=pooling,
        exclusive_classes=exclusive,
        nO=3,
        dropout=0.0,
    )
    model.initialize(X=docs)
    # Non-trivial parameters everywhere (the output layer starts at zero).
    return randomize_params(model, seed=seed, scale=1.0)


@pytest.mark.parametrize("pooling", POOLINGS + COMBINED)
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("exclusive", [True, False])
def test_textcat_pooling_equals_hand_computation(docs, pooling, bidirectional, exclusive):
    model = _build(pooling, bidirectional, exclusive, docs)
    attention = [node for node in model.get_ref("pooling").walk() if node.name == "pool_attention"]
    params = None
    if attention:
        params = {name: attention[0].get_param(name) for name in attention[0].param_names}
    out = model.get_ref("output_layer")
    W, b = out.get_param("W"), out.get_param("b")
    assert W.shape == (3, WIDTH * len(pooling.split("+")))
    scores = model.predict(docs)
    assert scores.shape == (len(docs), 3)
    for i, doc in enumerate(docs):
        pooled = pooled_by_hand(states(doc), pooling, bidirectional, params)
        logits = W @ pooled + b
        if exclusive:
            expected = numpy.exp(logits - logits.max()) / numpy.exp(logits - logits.max()).sum()
        else:
            expected = 1.0 / (1.0 + numpy.exp(-logits))
        numpy.testing.assert_allclose(scores[i], expected, rtol=1e-5, atol=1e-6)
    # the empty doc: bias only, a valid probability vector
    assert numpy.isfinite(scores).all()
    if exclusive:
        numpy.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


def test_textcat_last_reads_true_ends_not_padding(docs):
    """'last' takes the forward state at the last real token and the backward
    state at the first one: check it on explicit positions."""
    pool = pool_last(bidirectional=True)
    lengths = numpy.array([3, 0, 1, 2], dtype="i")
    X = numpy.arange(6 * 4, dtype="f").reshape(6, 4)
    pool.initialize(X=Ragged(X, lengths))
    Y = pool.predict(Ragged(X, lengths))
    expected = numpy.array(
        [
            [X[2, 0], X[2, 1], X[0, 2], X[0, 3]],
            [0, 0, 0, 0],
            [X[3, 0], X[3, 1], X[3, 2], X[3, 3]],
            [X[5, 0], X[5, 1], X[4, 2], X[4, 3]],
        ],
        dtype="f",
    )
    numpy.testing.assert_array_equal(Y, expected)


def _numeric_grad(f, X: numpy.ndarray, eps: float = 1e-6) -> numpy.ndarray:
    grad = numpy.zeros_like(X)
    for idx in numpy.ndindex(*X.shape):
        old = X[idx]
        X[idx] = old + eps
        up = f()
        X[idx] = old - eps
        down = f()
        X[idx] = old
        grad[idx] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize(
    "make_pool",
    [
        lambda: pool_last(bidirectional=True),
        lambda: pool_last(bidirectional=False),
        pool_mean,
        pool_max,
        pool_attention,
        lambda: pool_attention(nH=0),
        lambda: concatenate(pool_attention(), pool_max()),
        lambda: concatenate(pool_last(bidirectional=True), pool_max(), pool_mean()),
    ],
    ids=["last-bi", "last-uni", "mean", "max", "attention", "attention-noproj",
         "attention+max", "last+max+mean"],
)
def test_textcat_pooling_gradients_match_numerical(make_pool):
    rng = numpy.random.default_rng(1)
    lengths = numpy.array([3, 0, 1, 5, 2], dtype="i")
    X = rng.normal(size=(int(lengths.sum()), 4))  # float64 for a precise check
    pool = make_pool()
    pool.initialize(X=Ragged(X.astype("f"), lengths))
    nodes = [node for node in pool.walk() if node.param_names]
    for node in nodes:
        for name in node.param_names:
            node.set_param(name, rng.normal(size=node.get_param(name).shape))
    R = rng.normal(size=(len(lengths), pool.get_dim("nO")))

    def loss() -> float:
        return float((pool.predict(Ragged(X, lengths)) * R).sum())

    Y, backprop = pool.begin_update(Ragged(X, lengths))
    assert Y.shape == R.shape
    dX = backprop(R).dataXd
    numpy.testing.assert_allclose(dX, _numeric_grad(loss, X), rtol=1e-4, atol=1e-6)
    for node in nodes:
        for name in node.param_names:
            param = node.get_param(name)
            if param.size:
                numpy.testing.assert_allclose(
                    node.get_grad(name), _numeric_grad(loss, param), rtol=1e-4, atol=1e-6
                )


def test_textcat_all_empty_batch_pools_to_zeros():
    for pool in [pool_last(True), pool_mean(), pool_max(), pool_attention()]:
        pool.initialize(X=Ragged(numpy.zeros((1, 4), dtype="f"), numpy.array([1], dtype="i")))
        X = Ragged(numpy.zeros((0, 4), dtype="f"), numpy.array([0, 0], dtype="i"))
        Y, backprop = pool.begin_update(X)
        numpy.testing.assert_array_equal(Y, numpy.zeros((2, 4), dtype="f"))
        assert backprop(numpy.ones((2, 4), dtype="f")).dataXd.shape == (0, 4)


SMALL_TOK2VEC = tok2vec_config(
    16, depth=2, attrs=["NORM", "PREFIX", "SUFFIX", "SHAPE"], rows=[500, 100, 200, 50]
)


@pytest.mark.parametrize("pooling", POOLINGS + COMBINED)
def test_textcat_padding_invariant_with_birnn(nlp, pooling):
    """A doc alone and batched with longer and empty docs gets the same scores."""
    fix_random_seed(0)
    tok2vec = registry.resolve({"t": SMALL_TOK2VEC})["t"]
    model = RNNTextCat(tok2vec=tok2vec, pooling=pooling, nO=2, dropout=0.3)
    texts = TEXTS + ["ok", "a much longer review that runs on and on ."]
    docs = [nlp.make_doc(text) for text in texts]
    model.initialize(X=docs)
    randomize_params(model.get_ref("output_layer"), seed=0, scale=1.0)
    batched = model.predict(docs)
    for i, doc in enumerate(docs):
        alone = model.predict([doc])
        numpy.testing.assert_allclose(alone[0], batched[i], atol=1e-5)
    assert numpy.isfinite(batched).all()
    numpy.testing.assert_allclose(batched.sum(axis=1), 1.0, rtol=1e-5)
    # predict is deterministic (no dropout outside training)
    numpy.testing.assert_array_equal(model.predict(docs), batched)


def test_textcat_last_uses_encoder_direction():
    uni = tok2vec_config(
        16, depth=2, attrs=["NORM", "PREFIX", "SUFFIX", "SHAPE"], rows=[500, 100, 200, 50],
        bidirectional=False,
    )
    for config, expected in [(SMALL_TOK2VEC, True), (uni, False)]:
        tok2vec = registry.resolve({"t": config})["t"]
        model = RNNTextCat(tok2vec=tok2vec, pooling="last")
        assert model.get_ref("pooling").attrs["bidirectional"] is expected
    # an encoder that does not say (spaCy's MaxoutWindowEncoder): warn, assume
    # left-to-right
    maxout = {
        "@architectures": "spacy.Tok2Vec.v2",
        "embed": SMALL_TOK2VEC["embed"],
        "encode": {
            "@architectures": "spacy.MaxoutWindowEncoder.v2",
            "width": 16,
            "depth": 1,
            "window_size": 1,
            "maxout_pieces": 2,
        },
    }
    tok2vec = registry.resolve({"t": maxout})["t"]
    with pytest.warns(UserWarning, match="bidirectional"):
        model = RNNTextCat(tok2vec=tok2vec, pooling="last")
    assert model.get_ref("pooling").attrs["bidirectional"] is False


def test_textcat_defaults_fill_config(nlp):
    """`add_pipe("textcat")` with only the architecture name works: the default
    tok2vec (CharWordEmbed + BiRNNEncoder in Tok2Vec.v2) is filled in."""
    nlp = spacy.blank("en")
    nlp.add_pipe("textcat", config={"model": {"@architectures": "spacy_rnn.RNNTextCat.v1"}})
    cfg = nlp.config["components"]["textcat"]["model"]
    assert cfg["tok2vec"]["@architectures"] == "spacy.Tok2Vec.v2"
    assert cfg["tok2vec"]["embed"]["@architectures"] == "spacy_rnn.CharWordEmbed.v1"
    assert cfg["tok2vec"]["encode"]["@architectures"] == "spacy_rnn.BiRNNEncoder.v1"
    assert cfg["pooling"] in POOLINGS
    model = nlp.get_pipe("textcat").model
    assert model.get_ref("tok2vec").get_ref("encode").attrs["bidirectional"] is True
    # the same defaults when called from Python
    encode = RNNTextCat().get_ref("tok2vec").get_ref("encode")
    assert encode.get_dim("nO") == cfg["tok2vec"]["encode"]["width"]


def test_textcat_bad_arguments():
    tok2vec = fixed_tok2vec(True)
    for pooling in ["sum", "attention+sum", "max+max", "attention+", ""]:
        with pytest.raises(ValueError, match="pooling"):
            RNNTextCat(tok2vec=tok2vec, pooling=pooling)
    with pytest.raises(ValueError, match="dropout"):
        RNNTextCat(tok2vec=tok2vec, dropout=1.5)
    pool = pool_last(bidirectional=True)
    X = Ragged(numpy.zeros((2, 5), dtype="f"), numpy.array([2], dtype="i"))
    pool.initialize(X=X)
    with pytest.raises(ValueError, match="even width"):
        pool.predict(X)


def test_textcat_resize_output_keeps_old_scores(docs):
    model = _build("mean", True, True, docs)
    before = model.predict(docs)
    model = model.attrs["resize_output"](model, 4)
    after = model.predict(docs)
    assert after.shape == (len(docs), 4)
    # the new label starts with bias -5000: zero probability, old ones unchanged
    numpy.testing.assert_allclose(after[:, :3], before, rtol=1e-5, atol=1e-7)
    assert (after[:, 3] < 1e-6).all()


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=7), min_size=1, max_size=6),
    pooling=st.sampled_from(["last-bi", "last-uni", "mean", "max", "attention"]),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_textcat_pooling_batched_equals_alone(lengths, pooling, seed):
    """Property: each doc's pooled row is the same alone as in any batch."""
    rng = numpy.random.default_rng(seed)
    makers = {
        "last-bi": lambda: pool_last(True),
        "last-uni": lambda: pool_last(False),
        "mean": pool_mean,
        "max": pool_max,
        "attention": pool_attention,
    }
    pool = makers[pooling]()
    lengths = numpy.array(lengths, dtype="i")
    X = rng.normal(size=(int(lengths.sum()), 4)).astype("f")
    pool.initialize(X=Ragged(numpy.zeros((1, 4), dtype="f"), numpy.array([1], dtype="i")))
    for name in pool.param_names:
        pool.set_param(name, rng.normal(size=pool.get_param(name).shape).astype("f"))
    batched = pool.predict(Ragged(X, lengths))
    start = 0
    for i, n in enumerate(lengths):
        alone = pool.predict(Ragged(X[start:start + n], numpy.array([n], dtype="i")))
        numpy.testing.assert_allclose(batched[i], alone[0], rtol=1e-5, atol=1e-6)
        start += n


def test_textcat_pooled_dropout_keeps_its_rate(docs):
    """spaCy's update calls set_dropout_rate(model, drop) on the whole model;
    the pooled vector's dropout keeps the rate given to RNNTextCat."""
    from thinc.api import set_dropout_rate

    model = _build("mean", True, True, docs)
    dropout = [node for node in model.walk() if node.name == "fixed_dropout"]
    assert len(dropout) == 1 and dropout[0].attrs["fixed_dropout_rate"] == 0.0
    set_dropout_rate(model, 0.5)
    train_scores, _ = model.begin_update(docs)
    numpy.testing.assert_allclose(train_scores, model.predict(docs), rtol=1e-6)

    dropped = RNNTextCat(tok2vec=fixed_tok2vec(True), pooling="mean", nO=3, dropout=0.5)
    dropped.initialize(X=docs)
    randomize_params(dropped.get_ref("output_layer"), seed=0, scale=1.0)
    set_dropout_rate(dropped, 0.0)
    train_scores, _ = dropped.begin_update(docs)
    assert not numpy.allclose(train_scores, dropped.predict(docs))
