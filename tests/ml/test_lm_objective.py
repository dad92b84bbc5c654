"""The language-model objective of CRFTagger.v3 (spacy_rnn.ml.lm_objective):
targets never cross docs, its loss and gradients match a direct computation
and finite differences, no half of the encoder sees the word it predicts,
prediction is untouched, and it trains and round-trips in crf_ner and in
textcat (RNNTextCat.v2)."""

import pickle

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry
from thinc.api import Model, fix_random_seed

from helpers import (
    TEXTCAT_DATA,
    crf_ner_nlp,
    crf_tagger_config,
    randomize_params,
    rnn_textcat_config,
    textcat_examples,
    textcat_nlp,
    tok2vec_config,
)
from spacy_rnn.ml.lm_objective import lm_targets, with_lm_objective

TOK2VEC = tok2vec_config(
    16, encode_width=8, attrs=["SHAPE"], rows=[100], word_rows=50, word_dropout=0.0
)

WORDS = [
    ["Peter", "Blackburn", "went", "to", "Brussels", "."],
    ["EU", "rejects", "German", "call"],
    ["Hi"],
    [],
    ["to", "Brussels"],
]


def _docs(vocab=None):
    vocab = vocab or spacy.blank("en").vocab
    return [Doc(vocab, words=w) for w in WORDS]


def _tok2vec():
    return registry.resolve({"x": TOK2VEC})["x"]


def _model(n_words=6, weight=0.5):
    fix_random_seed(0)
    model = with_lm_objective(_tok2vec(), n_words, weight)
    model.initialize(X=_docs())
    rng = numpy.random.default_rng(0)
    model.set_param("W", rng.normal(0, 0.5, model.get_param("W").shape).astype("f"))
    model.set_param("b", rng.normal(0, 0.5, model.get_param("b").shape).astype("f"))
    return model


def test_lm_targets_stay_inside_each_doc():
    lengths = numpy.array([3, 0, 1, 2])
    rows = numpy.array([10, 11, 12, 20, 30, 31])
    src_f, tgt_f, src_b, tgt_b = lm_targets(lengths, rows)
    # next words: 0->1, 1->2 (doc 0), 4->5 (doc 3); the one-token doc has none
    assert src_f.tolist() == [0, 1, 4] and tgt_f.tolist() == [11, 12, 31]
    assert src_b.tolist() == [1, 2, 5] and tgt_b.tolist() == [10, 11, 30]


def _direct_loss(model, Ys, docs):
    """The objective written out token by token, with the model's own word rows."""
    index = model.attrs["index"]
    W, b = model.get_param("W").astype("float64"), model.get_param("b").astype("float64")
    nH = W.shape[2]
    total = 0.0
    for doc, Y in zip(docs, Ys):
        rows = index.lookup(doc.to_array("NORM").astype("uint64"))
        for t in range(len(doc)):
            for d, s, cols in ((0, t + 1, slice(0, nH)), (1, t - 1, slice(nH, 2 * nH))):
                if 0 <= s < len(doc):
                    logits = W[d] @ Y[t, cols].astype("float64") + b[d]
                    logits = logits - logits.max()
                    total -= logits[rows[s]] - numpy.log(numpy.exp(logits).sum())
    return total * model.attrs["weight"]


def test_lm_loss_matches_direct_computation():
    model = _model()
    docs = _docs()
    Ys, _ = model(docs, is_train=True)
    assert len(model.attrs["index"]) == 6  # the first 6 distinct words seen; the rest UNK
    assert model.attrs["loss"] == pytest.approx(_direct_loss(model, Ys, docs), rel=1e-4)


def test_lm_gradient_matches_finite_differences():
    """d(objective)/d(encoder output) and d/dW, against central differences of
    the direct loss (the upstream gradient is zero, so only the objective's is left)."""
    model = _model()
    docs = _docs()
    captured = {}
    # the encoder replaced by fixed outputs and a backprop that keeps its gradient
    Ys2, _ = model.layers[0](docs, is_train=False)
    model.layers[0] = Model(
        "spy", lambda m, X, is_train: (Ys2, lambda dY: captured.setdefault("dY", dY))
    )
    Ys3, backprop = model(docs, is_train=True)
    backprop([numpy.zeros_like(Y) for Y in Ys3])
    dY = captured["dY"]
    eps = 1e-2
    for i, t, j in [(0, 0, 1), (0, 3, 6), (1, 2, 0), (4, 1, 5), (0, 5, 2)]:
        plus = [Y.copy() for Y in Ys2]
        minus = [Y.copy() for Y in Ys2]
        plus[i][t, j] += eps
        minus[i][t, j] -= eps
        numeric = (_direct_loss(model, plus, docs) - _direct_loss(model, minus, docs)) / (2 * eps)
        assert dY[i][t, j] == pytest.approx(numeric, rel=2e-2, abs=2e-3)
    dW = model.get_grad("W")
    W = model.get_param("W")
    for idx in [(0, 1, 0), (1, 3, 2), (0, 0, 3)]:
        for sign, store in ((1, "p"), (-1, "m")):
            W2 = W.copy()
            W2[idx] += sign * eps
            model.set_param("W", W2)
            captured[store] = _direct_loss(model, Ys2, docs)
        model.set_param("W", W)
        numeric = (captured["p"] - captured["m"]) / (2 * eps)
        assert dW[idx] == pytest.approx(numeric, rel=2e-2, abs=2e-3)


def test_objective_runs_torch_under_the_thread_policy(monkeypatch):
    """The objective's softmax runs with the policy's number of torch threads
    (spacy_rnn.ml.threads) and leaves the caller's own setting as it was."""
    import torch

    from spacy_rnn.ml.threads import set_torch_threads

    model = _model()
    seen = []
    cross_entropy = torch.nn.functional.cross_entropy

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return cross_entropy(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", spy)
    caller = torch.get_num_threads()
    try:
        set_torch_threads(1)
        torch.set_num_threads(2)
        model(_docs(), is_train=True)
        assert seen == [1, 1]  # forward and backward direction
        assert torch.get_num_threads() == 2
    finally:
        set_torch_threads(None)
        torch.set_num_threads(caller)


def test_no_half_sees_the_word_it_predicts():
    """Changing the word at t + 1 leaves the forward half at t as it was, and
    changing the word at t - 1 leaves the backward half at t: the encoder
    cannot copy its targets."""
    tok2vec = _tok2vec()
    vocab = spacy.blank("en").vocab
    tok2vec.initialize(X=_docs(vocab))
    base = Doc(vocab, words=["a", "b", "c", "d", "e"])
    changed = Doc(vocab, words=["a", "b", "X", "d", "e"])
    (Y0,), _ = tok2vec([base], is_train=False)
    (Y1,), _ = tok2vec([changed], is_train=False)
    nH = Y0.shape[1] // 2
    numpy.testing.assert_allclose(Y0[:2, :nH], Y1[:2, :nH], atol=1e-6)  # forward before token 2
    numpy.testing.assert_allclose(Y0[3:, nH:], Y1[3:, nH:], atol=1e-6)  # backward after it
    assert not numpy.allclose(Y0[2:, :nH], Y1[2:, :nH])


def test_prediction_is_the_plain_tagger():
    """v3 with v1's weights gives v1's emission scores at prediction time. The
    emission layer starts at zero, so it gets random weights first: through
    zeros every score is 0.0, whatever the encoder's output."""
    fix_random_seed(0)
    v1 = registry.architectures.get("spacy_rnn.CRFTagger.v1")(_tok2vec(), nO=5)
    v1.initialize(X=_docs())
    randomize_params(v1.get_ref("output_layer"), seed=1)
    v3 = registry.architectures.get("spacy_rnn.CRFTagger.v3")(_tok2vec(), nO=5, lm_words=20)
    v3.initialize(X=_docs())
    v3.get_ref("tok2vec").from_bytes(v1.get_ref("tok2vec").to_bytes())
    v3.get_ref("output_layer").from_bytes(v1.get_ref("output_layer").to_bytes())
    docs = _docs()
    scores1 = v1.predict(docs)
    assert all(s.std() > 0.01 for s in scores1 if len(s) > 1)
    for a, b in zip(scores1, v3.predict(docs)):
        numpy.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("change", [{"bidirectional": False}, {"depth": 2}])
def test_needs_a_one_layer_bidirectional_birnn_encoder(change):
    tok2vec = registry.resolve({"x": {**TOK2VEC, "encode": {**TOK2VEC["encode"], **change}}})["x"]
    model = registry.architectures.get("spacy_rnn.CRFTagger.v3")(tok2vec, nO=5)
    with pytest.raises(ValueError, match="one-layer bidirectional spacy_rnn.BiRNNEncoder.v1"):
        model.initialize(X=_docs())
    with pytest.raises(ValueError, match="lm_words must be >= 1"):
        registry.architectures.get("spacy_rnn.CRFTagger.v3")(_tok2vec(), lm_words=0)


TRAIN = [
    ("Peter Blackburn went to Brussels .", [(0, 15, "PER"), (24, 32, "LOC")]),
    ("EU rejects German call to boycott British lamb .",
     [(0, 2, "ORG"), (11, 17, "MISC"), (34, 41, "MISC")]),
    ("Anna lives in Paris .", [(0, 4, "PER"), (14, 19, "LOC")]),
]


def _nlp():
    return crf_ner_nlp(crf_tagger_config("v3", TOK2VEC, lm_words=30, lm_weight=1.0))


def test_crf_ner_trains_with_the_objective_and_round_trips(tmp_path):
    fix_random_seed(0)
    nlp = _nlp()
    examples = [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in TRAIN]
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01
    model = nlp.get_pipe("crf_ner").model
    lm = model.get_ref("lm_objective")
    assert lm.name == "lm_objective" and lm is model.layers[0]
    lm_losses, losses = [], []
    for _ in range(90):
        step = nlp.update(examples, sgd=optimizer, drop=0.0)
        lm_losses.append(step["crf_ner_lm"])
        assert step["crf_ner_lm"] == lm.attrs["loss"]
        losses.append(step["crf_ner"])
    # the objective is learned (the sentences are memorised)
    assert lm_losses[-1] < 0.5 * lm_losses[0]
    assert losses[-1] < 0.1 * losses[0]
    texts = [t for t, _ in TRAIN]
    expected = [[(e.text, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]
    assert expected[0] == [("Peter Blackburn", "PER"), ("Brussels", "LOC")]
    nlp.to_disk(tmp_path / "m")
    for other in (spacy.load(tmp_path / "m"), pickle.loads(pickle.dumps(nlp))):
        assert [[(e.text, e.label_) for e in doc.ents] for doc in other.pipe(texts)] == expected
        index = other.get_pipe("crf_ner").model.layers[0].attrs["index"]
        assert len(index) == len(lm.attrs["index"])
        # Training goes on from the loaded pipeline (as `spacy train` with a sourced component).
        more = [Example.from_dict(other.make_doc(t), {"entities": e}) for t, e in TRAIN]
        step = other.update(more, sgd=optimizer, drop=0.0)
        assert 0 < step["crf_ner_lm"] < lm_losses[0]


def test_rnn_textcat_v2_learns_the_objective_and_predicts_as_v1(tmp_path):
    fix_random_seed(0)
    nlp = textcat_nlp(rnn_textcat_config("v2", TOK2VEC, lm_words=30, lm_weight=1.0))
    data = TEXTCAT_DATA
    examples = textcat_examples(nlp, data)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01
    lm = nlp.get_pipe("textcat").model.get_ref("lm_objective")
    assert lm.name == "lm_objective"
    lm_losses = []
    for _ in range(90):
        nlp.update(examples, sgd=optimizer, drop=0.0)
        lm_losses.append(lm.attrs["loss"])
    assert lm_losses[-1] < 0.5 * lm_losses[0]
    texts = [t for t, _ in data]
    cats = [doc.cats for doc in nlp.pipe(texts)]
    assert [max(c, key=c.get) for c in cats] == [c for _, c in data]
    # v1 with the same weights predicts the same scores
    v1 = textcat_nlp(rnn_textcat_config("v1", TOK2VEC))
    v1.initialize(lambda: examples)
    v2_model = nlp.get_pipe("textcat").model
    v1_model = v1.get_pipe("textcat").model
    v1_model.get_ref("tok2vec").from_bytes(v2_model.get_ref("tok2vec").to_bytes())
    v1_model.get_ref("pooling").from_bytes(v2_model.get_ref("pooling").to_bytes())
    v1_model.get_ref("output_layer").from_bytes(v2_model.get_ref("output_layer").to_bytes())
    for a, b in zip(v1.pipe(texts), cats):
        assert a.cats == pytest.approx(b, abs=1e-6)
    nlp.to_disk(tmp_path / "tc")
    assert [doc.cats for doc in spacy.load(tmp_path / "tc").pipe(texts)] == cats
