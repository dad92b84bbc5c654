"""The word table (ml/words.py): a vocabulary grown in training, UNK for every
other word, word dropout alpha / (alpha + count), gradients into the rows used,
serialization of the vocabulary, use in CharWordEmbed and spaCy's Tok2Vec."""
import pickle

import numpy
import pytest
import spacy
from numpy.testing import assert_allclose
from spacy.training import Example
from spacy.vectors import Vectors
from thinc.api import Adam, Config, fix_random_seed
from thinc.types import Ragged

from spacy_rnn.ml.embed import CharWordEmbed
from spacy_rnn.ml.words import UNK, WordIndex, WordTable, word_table_rows
from test_embed import TAGGER_CONFIG  # tests/ml is on the path (no package)


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


def make_table(nlp, rows=100, alpha=0.0, width=4):
    fix_random_seed(0)
    model = WordTable(width, rows, attr="NORM", alpha=alpha)
    model.initialize(X=[nlp.make_doc("x")])
    return model


def test_index_grows_in_training_only_and_unknown_words_share_unk(nlp):
    model = make_table(nlp)
    train = [nlp.make_doc("The cat sat"), nlp.make_doc("the dog")]
    before, _ = word_table_rows(model, train, is_train=False)
    assert (before == UNK).all() and len(model.attrs["index"]) == 0
    rows, lengths = word_table_rows(model, train, is_train=True)
    assert lengths.tolist() == [3, 2]
    # NORM is lower-cased: "The" and "the" are one word, with one row
    assert rows[0] == rows[3] != UNK and len(set(rows.tolist())) == 4
    assert len(model.attrs["index"]) == 4
    test = [nlp.make_doc("THE cat zebra aardvark")]
    rows, _ = word_table_rows(model, test, is_train=False)
    assert rows[0] != UNK and rows[1] != UNK and rows[2] == rows[3] == UNK
    assert len(model.attrs["index"]) == 4  # inference adds nothing
    Y = model.predict(test).data
    assert_allclose(Y[2], Y[3], atol=0, rtol=0)  # unseen words: the one UNK vector
    assert numpy.abs(Y[0] - Y[2]).max() > 0
    counts = model.attrs["index"].counts[model.attrs["index"].find(
        numpy.array([nlp.vocab.strings["the"]], dtype=numpy.uint64))]
    assert counts.tolist() == [2]


def test_full_table_maps_new_words_to_unk(nlp):
    model = make_table(nlp, rows=3)
    word_table_rows(model, [nlp.make_doc("a b c d e")], is_train=True)
    assert len(model.attrs["index"]) == 3
    rows, _ = word_table_rows(model, [nlp.make_doc("a b c d e")], is_train=False)
    assert sorted(rows.tolist()) == [UNK, UNK, 1, 2, 3]
    assert rows.max() < model.get_param("E").shape[0]


def test_word_dropout_rate_is_alpha_over_alpha_plus_count(nlp):
    numpy.random.seed(0)
    alpha = 3000.0
    model = make_table(nlp, alpha=alpha)
    doc = nlp.make_doc(" ".join(["word"] * 1000 + ["other"] * 3000))
    rows, _ = word_table_rows(model, [doc], is_train=True)
    # counts after this batch: 1000 and 3000 -> dropped with p = 0.75 and 0.5
    assert abs((rows[:1000] == UNK).mean() - alpha / (alpha + 1000)) < 0.05
    assert abs((rows[1000:] == UNK).mean() - alpha / (alpha + 3000)) < 0.03
    rows, _ = word_table_rows(model, [doc], is_train=True)  # counts now 2000 and 6000
    assert abs((rows[:1000] == UNK).mean() - alpha / (alpha + 2000)) < 0.05
    assert abs((rows[1000:] == UNK).mean() - alpha / (alpha + 6000)) < 0.03
    no_dropout = make_table(nlp, alpha=0.0)
    rows, _ = word_table_rows(no_dropout, [doc], is_train=True)
    assert (rows != UNK).all()


def test_gradient_goes_to_the_rows_used(nlp):
    model = make_table(nlp, width=3)
    docs = [nlp.make_doc("a b a"), nlp.make_doc("c")]
    Y, backprop = model.begin_update(docs)
    E = model.get_param("E")
    rows, _ = word_table_rows(model, docs, is_train=False)
    assert_allclose(Y.data, E[rows], atol=0, rtol=0)
    dY = numpy.arange(12, dtype="f").reshape(4, 3)
    backprop(Ragged(dY, Y.lengths))
    dE = model.get_grad("E")
    expected = numpy.zeros_like(E)
    numpy.add.at(expected, rows, dY)
    assert_allclose(dE, expected, atol=1e-6)
    assert_allclose(dE[rows[0]], dY[0] + dY[2], atol=1e-6)  # both "a" tokens


def test_index_serialization_round_trip(nlp):
    model = make_table(nlp)
    word_table_rows(model, [nlp.make_doc("one two two three")], is_train=True)
    data = WordIndex.from_dict(model.attrs["index"].to_dict())
    for name in ("keys", "rows", "counts"):
        assert (getattr(data, name) == getattr(model.attrs["index"], name)).all()
    fresh = WordTable(4, 100).from_bytes(model.to_bytes())
    docs = [nlp.make_doc("two three four")]
    assert_allclose(fresh.predict(docs).data, model.predict(docs).data, atol=0, rtol=0)
    assert fresh.attrs["index"].counts.tolist() == model.attrs["index"].counts.tolist()
    unpickled = pickle.loads(pickle.dumps(model))
    assert_allclose(unpickled.predict(docs).data, model.predict(docs).data, atol=0, rtol=0)
    # A loaded index keeps counting when training goes on (msgpack arrays are read-only).
    for loaded in (fresh, unpickled):
        word_table_rows(loaded, [nlp.make_doc("two three")], is_train=True)
        index = loaded.attrs["index"]
        assert len(index) == 3
        assert sorted(index.counts.tolist()) == [1, 2, 3]


@pytest.mark.parametrize("kwargs,message", [
    ({"word_rows": -1}, "word_rows"),
    ({"word_dropout": -0.1}, "word_dropout"),
])
def test_embed_rejects_bad_word_table_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CharWordEmbed(8, **kwargs)


def test_embed_word_table_only_and_batch_invariance(nlp):
    fix_random_seed(0)
    model = CharWordEmbed(8, attrs=[], rows=[], char_encoder=None, word_rows=50)
    docs = [nlp.make_doc("Peter lives in Brussels ."), nlp.make_doc("EU rejects it")]
    model.initialize(X=docs)
    Ys, backprop = model.begin_update(docs)
    backprop([numpy.ones_like(y) for y in Ys])
    model.finish_update(Adam(0.01))
    batched = model.predict(docs)
    for doc, Y in zip(docs, batched):
        assert_allclose(model.predict([doc])[0], Y, atol=1e-6)


def word_table_tagger_config() -> Config:
    """test_embed's tagger, its embedding reduced to SHAPE and the word table."""
    config = Config().from_str(TAGGER_CONFIG)
    embed = config["components"]["tagger"]["model"]["tok2vec"]["embed"]
    embed.update({"attrs": ["SHAPE"], "rows": [50], "char_encoder": None,
                  "word_rows": 100, "word_dropout": 0.0})
    return config


def test_word_table_in_spacy_pipeline_learns_and_round_trips(tmp_path):
    """Words tell the tags apart only through the word table (same shapes)."""
    fix_random_seed(0)
    nlp = spacy.util.load_model_from_config(word_table_tagger_config(), auto_fill=True)
    data = [("cats like fish", ["N", "V", "N"]), ("dogs eat bones", ["N", "V", "N"]),
            ("fish like dogs", ["N", "V", "N"]), ("like eat like", ["V", "V", "V"])]
    examples = [Example.from_dict(nlp.make_doc(t), {"tags": tags}) for t, tags in data]
    nlp.initialize(get_examples=lambda: examples)
    optimizer = Adam(0.01)
    for _ in range(80):
        nlp.update(examples, sgd=optimizer)
    assert [t.tag_ for t in nlp("bones eat cats")] == ["N", "V", "N"]
    assert [t.tag_ for t in nlp("eat like eat")] == ["V", "V", "V"]
    texts = ["bones eat cats", "zebra like", ""]
    expected = [[t.tag_ for t in doc] for doc in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "nlp")
    reloaded = spacy.load(tmp_path / "nlp")
    assert [[t.tag_ for t in doc] for doc in reloaded.pipe(texts)] == expected
    table = reloaded.get_pipe("tagger").model.get_ref("tok2vec").get_ref("embed")
    assert len(table.get_ref("word_table").attrs["index"]) == 6
    reloaded.update(examples[:1], sgd=Adam(0.01))  # training goes on from a loaded pipeline
    assert len(table.get_ref("word_table").attrs["index"]) == 6
    unpickled = pickle.loads(pickle.dumps(nlp))
    assert [[t.tag_ for t in doc] for doc in unpickled.pipe(texts)] == expected


# Fine-tuned static vectors (CharWordEmbed tune_vectors): a zero-initialized
# correction per word seen in training, the pretrained vector for every other


def _vectors_nlp():
    nlp = spacy.blank("en")
    words = ["the", "cat", "dog", "zebra"]
    data = numpy.random.RandomState(0).uniform(-1, 1, (4, 5)).astype("f")
    keys = [nlp.vocab.strings.add(w) for w in words]
    nlp.vocab.vectors = Vectors(data=data, keys=keys, attr="LOWER")
    return nlp


def _tuned_embed(nlp, tune_vectors=10):
    fix_random_seed(0)
    model = CharWordEmbed(8, attrs=[], rows=[], char_encoder=None, include_static_vectors=True,
                          tune_vectors=tune_vectors, word_dropout=0.0)
    model.initialize(X=[nlp.make_doc("the cat")])
    return model


def test_tuned_vectors_start_static_and_move_only_seen_words():
    nlp = _vectors_nlp()
    tuned, static = _tuned_embed(nlp), _tuned_embed(nlp, tune_vectors=0)
    test = [nlp.make_doc("The cat zebra dog")]
    for a, b in zip(tuned.predict(test), static.predict(test)):
        assert_allclose(a, b, atol=1e-6)  # zero corrections at first
    vectors = tuned.get_ref("vectors")
    train = [nlp.make_doc("The cat")]
    optimizer = Adam(0.05)
    for _ in range(5):
        Ys, backprop = tuned.begin_update(train)
        backprop([numpy.ones_like(Y) for Y in Ys])
        tuned.finish_update(optimizer)
    D = vectors.get_param("D")
    assert len(vectors.attrs["index"]) == 2 and (D[0] == 0).all()
    assert (numpy.abs(D[1:3]).sum(axis=1) > 0).all() and (D[3:] == 0).all()
    # "zebra" and "dog" were not seen in training: pretrained vector, tuned projection
    V = nlp.vocab.vectors.data
    Y = tuned.get_ref("vectors").predict(test).data
    W = vectors.get_param("W")
    assert_allclose(Y[2], W @ V[3], atol=1e-5)
    assert_allclose(Y[3], W @ V[2], atol=1e-5)
    the = numpy.array([nlp.vocab.strings["the"]], dtype=numpy.uint64)
    rows = vectors.attrs["index"].lookup(the)
    assert_allclose(Y[0], W @ (V[0] + D[rows[0]]), atol=1e-5)
    fresh = CharWordEmbed(8, attrs=[], rows=[], char_encoder=None, include_static_vectors=True,
                          tune_vectors=10).from_bytes(tuned.to_bytes())
    for a, b in zip(fresh.predict(test), tuned.predict(test)):
        assert_allclose(a, b, atol=0, rtol=0)


def test_tuned_vectors_gradient_is_the_projected_output_gradient():
    nlp = _vectors_nlp()
    model = _tuned_embed(nlp).get_ref("vectors")
    docs = [nlp.make_doc("the cat the unknownword")]
    Y, backprop = model.begin_update(docs)
    dY = numpy.random.RandomState(1).uniform(-1, 1, Y.data.shape).astype("f")
    backprop(Ragged(dY, Y.lengths))
    W = model.get_param("W")
    rows = model.attrs["index"].lookup(model.attrs["index"].keys)
    index = model.attrs["index"]
    the = index.lookup(numpy.array([nlp.vocab.strings["the"]], dtype=numpy.uint64))[0]
    dD = model.get_grad("D")
    assert_allclose(dD[the], (dY[0] + dY[2]) @ W, atol=1e-5)
    assert (dD[0] == 0).all() and len(rows) == 3


def test_tune_vectors_needs_static_vectors():
    with pytest.raises(ValueError, match="include_static_vectors"):
        CharWordEmbed(8, tune_vectors=5)
    with pytest.raises(ValueError, match="tune_vectors"):
        CharWordEmbed(8, include_static_vectors=True, tune_vectors=-1)


def test_v2_defaults_have_the_word_table_and_v1_configs_keep_their_model(tmp_path):
    """A crf_ner saved with a v1 embed block that predates the word table (no
    word_rows key) must load without one: spaCy fills missing keys from the
    factory's default only when the default names the same architecture."""
    from spacy_rnn.ml.embed import CharWordEmbed_v2

    v2 = CharWordEmbed_v2(8)
    assert v2.has_ref("word_table") and v2.get_ref("word_table").get_dim("nV") == 30001
    assert CharWordEmbed(8).has_ref("words") and not CharWordEmbed(8).has_ref("word_table")
    nlp = spacy.blank("en")
    old_block = {"@architectures": "spacy_rnn.CharWordEmbed.v1", "width": 16,
                 "rows": [100, 50, 50, 50], "char_encoder": None}
    tok2vec = {"@architectures": "spacy.Tok2Vec.v2", "embed": old_block,
               "encode": {"@architectures": "spacy_rnn.BiRNNEncoder.v1", "width": 16, "depth": 1}}
    nlp.add_pipe("crf_ner", config={"model": {"@architectures": "spacy_rnn.CRFTagger.v1",
                                              "tok2vec": tok2vec}})
    names = [node.name for node in nlp.get_pipe("crf_ner").model.walk()]
    assert "word_table" not in names and "hashembed" in names
    default = spacy.blank("en")
    default.add_pipe("crf_ner")
    assert "word_table" in [node.name for node in default.get_pipe("crf_ner").model.walk()]
