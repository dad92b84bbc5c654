"""CharWordEmbed and its character encoders: character ids, batch invariance,
gradients, edge cases, static vectors keyed by LOWER, serialization, use in
spaCy's Tok2Vec with spaCy's own components."""
import pickle

import numpy
import pytest
import spacy
import torch
from numpy.testing import assert_allclose
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry
from spacy.vectors import Vectors
from thinc.api import Adam, fix_random_seed

from spacy_rnn.ml.embed import CharEncoder, CharTable, CharWordEmbed

SMALL = dict(char_width=6, char_embed_size=4, max_chars=8, char_rows=50)


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


def make_docs(nlp):
    texts = ["Peter Blackburn lives in Brussels .", "EU rejects German call", "a", "",
             "Ab-cd-" * 10 + " ok !"]
    return [nlp.make_doc(text) for text in texts]


def make_embed(nlp, width=8, seed=0, **kwargs):
    fix_random_seed(seed)
    settings = dict(SMALL)
    settings.update(kwargs)
    model = CharWordEmbed(width, rows=[100, 50, 50, 50], **settings)
    model.initialize(X=make_docs(nlp))
    return model


# Character ids


def test_char_table_keeps_start_and_end_of_long_words():
    table = CharTable(n_rows=1000, max_chars=6)
    ids, lengths = table.encode(["abcdefghij", "xy", "q", "", "naïve"])
    as_text = ["".join(chr(i - 1) for i in row if i) for row in ids]
    assert as_text == ["abchij", "xy", "q", "", "naïve"]
    assert lengths.tolist() == [6, 2, 1, 1, 5]  # an empty word is one padding step
    assert (ids[1, 2:] == 0).all()
    odd = CharTable(n_rows=1000, max_chars=5).encode(["abcdefg"])[0]
    assert "".join(chr(i - 1) for i in odd[0]) == "abcfg"  # ceil(5/2) first, floor(5/2) last


def test_char_table_hashes_codepoints_into_rows():
    ids, _ = CharTable(n_rows=10, max_chars=4).encode(["€𝔸a"])
    assert ids[0, :3].tolist() == [1 + ord(c) % 9 for c in "€𝔸a"]
    assert ids.max() < 10


def test_char_table_cache_agrees_with_encoding(nlp):
    table = CharTable(n_rows=1000, max_chars=7)
    words = ["Brussels", "a", "EU", "extraordinarily", "-", "Brussels"]
    orths = numpy.array([nlp.vocab.strings.add(w) for w in words], dtype=numpy.uint64)
    unique = numpy.unique(orths)
    for _ in range(2):  # cold, then cached
        ids, lengths = table(unique, nlp.vocab.strings)
        expected = table.encode([nlp.vocab.strings[int(o)] for o in unique])
        assert (ids == expected[0]).all() and (lengths == expected[1]).all()
    assert table.keys.shape[0] == unique.shape[0]
    more = numpy.unique(numpy.append(unique, numpy.uint64(nlp.vocab.strings.add("new"))))
    ids, _ = table(more, nlp.vocab.strings)
    assert (ids == table.encode([nlp.vocab.strings[int(o)] for o in more])[0]).all()


# Shapes, batch invariance, edge cases


@pytest.mark.parametrize("char_encoder", ["lstm", "cnn", None])
def test_embed_batch_invariance_and_shapes(nlp, char_encoder):
    model = make_embed(nlp, char_encoder=char_encoder)
    docs = make_docs(nlp)
    batched = model.predict(docs)
    assert [y.shape for y in batched] == [(len(doc), 8) for doc in docs]
    for doc, in_batch in zip(docs, batched):
        assert_allclose(model.predict([doc])[0], in_batch, atol=1e-5, rtol=0)


@pytest.mark.parametrize("char_encoder", ["lstm", "cnn"])
def test_embed_edge_cases(nlp, char_encoder):
    model = make_embed(nlp, char_encoder=char_encoder)
    empty = nlp.make_doc("")
    assert [y.shape for y in model.predict([empty])] == [(0, 8)]
    shapes = [y.shape for y in model.predict([empty, nlp.make_doc("x"), empty])]
    assert shapes == [(0, 8), (1, 8), (0, 8)]
    # 1-character and 60-character words; a 60-char word keeps its first and last 4 characters
    long_word = "a" * 4 + "b" * 52 + "c" * 4
    variant = "a" * 4 + "z" * 52 + "c" * 4
    Y = model.predict([Doc(nlp.vocab, words=["I", long_word, variant])])[0]
    assert numpy.isfinite(Y).all()
    chars = model.get_ref("chars") if model.has_ref("chars") else None
    assert chars is not None
    char_vectors = chars.predict([Doc(nlp.vocab, words=[long_word, variant])]).data
    assert_allclose(char_vectors[0], char_vectors[1], atol=1e-6)
    # a 5,000-token doc, trained through
    words = [f"w{i % 977}" for i in range(5000)]
    big = Doc(nlp.vocab, words=words)
    Ys, backprop = model.begin_update([big, empty])
    assert Ys[0].shape == (5000, 8) and numpy.isfinite(Ys[0]).all()
    backprop([numpy.ones_like(y) for y in Ys])
    model.finish_update(Adam(0.001))


# Gradients


@pytest.mark.parametrize("kind", ["lstm", "cnn"])
def test_char_encoder_numerical_gradient(nlp, kind):
    fix_random_seed(1)
    encoder = CharEncoder(kind, width=4, embed_size=3, max_chars=5, window=3, n_rows=40)
    encoder.initialize()
    docs = [Doc(nlp.vocab, words=["ab", "c", "abcdefg", "ab"]), Doc(nlp.vocab, words=["dcx"])]
    rng = numpy.random.default_rng(0)
    G = rng.normal(size=(5, 4))

    def loss():
        return float((encoder.predict(docs).data.astype("float64") * G).sum())

    Y, backprop = encoder.begin_update(docs)
    G32 = G.astype("float32")
    backprop(type(Y)(G32, Y.lengths))
    module = encoder.shims[0]._model
    eps = 1e-2
    checked = 0
    for name, param in module.named_parameters():
        grad = param.grad.clone()
        flat = param.data.view(-1)
        for index in rng.choice(flat.shape[0], size=min(6, flat.shape[0]), replace=False):
            if name == "embed.weight" and index < param.shape[1]:
                continue  # the padding row is fixed
            original = float(flat[index])
            flat[index] = original + eps
            plus = loss()
            flat[index] = original - eps
            minus = loss()
            flat[index] = original
            numeric = (plus - minus) / (2 * eps)
            assert abs(numeric - float(grad.view(-1)[index])) < 2e-3, (name, index)
            checked += 1
    assert checked > 10
    # the repeated word "ab" gets the sum of its two tokens' gradients: a check
    # that the per-word encoding is shared, not recomputed per token
    assert module.embed.weight.grad[0].abs().max() == 0


def test_embed_numerical_gradient_through_projection(nlp):
    """The whole layer: a char LSTM weight and a hash-embedding row."""
    model = make_embed(nlp, width=4, char_encoder="lstm")
    docs = [nlp.make_doc("ab cd ab"), nlp.make_doc("x")]
    rng = numpy.random.default_rng(0)
    G = [rng.normal(size=(len(doc), 4)).astype("float32") for doc in docs]

    def loss():
        return float(sum((y.astype("float64") * g).sum() for y, g in zip(model.predict(docs), G)))

    _, backprop = model.begin_update(docs)
    backprop([g.copy() for g in G])
    rnn = model.get_ref("chars").shims[0]._model.rnn
    eps = 1e-2
    for param in [rnn.weight_ih_l0, rnn.bias_hh_l0_reverse]:
        grad = float(param.grad.view(-1)[1])
        with torch.no_grad():
            param.view(-1)[1] += eps
            plus = loss()
            param.view(-1)[1] -= 2 * eps
            minus = loss()
            param.view(-1)[1] += eps
        assert abs((plus - minus) / (2 * eps) - grad) < 2e-3


# Static vectors keyed by LOWER (as a GloVe table)


def test_embed_static_vectors_keyed_by_lower():
    nlp = spacy.blank("en")
    data = numpy.asarray([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype="float32")
    nlp.vocab.vectors = Vectors(strings=nlp.vocab.strings, data=data, keys=["paris", "rain"],
                                attr="LOWER")
    fix_random_seed(0)
    model = CharWordEmbed(8, attrs=[], rows=[], include_static_vectors=True, char_encoder=None)
    docs = [nlp.make_doc("Paris PARIS paris unknownword")]
    model.initialize(X=docs)
    static = [node for node in model.walk() if node.name == "static_vectors"][0]
    V = static.predict(docs).data
    assert_allclose(V[0], V[1]) and assert_allclose(V[0], V[2])
    assert numpy.abs(V[0]).max() > 0 and numpy.abs(V[3]).max() == 0
    assert_allclose(V[0], static.get_param("W") @ data[0], rtol=1e-6)
    assert model.predict(docs)[0].shape == (4, 8)


# Settings, registry, serialization, determinism, dropout


@pytest.mark.parametrize("kwargs,message", [
    ({"rows": [10]}, "same length"),
    ({"char_encoder": "gru"}, "char_encoder"),
    ({"char_encoder": "lstm", "char_width": 5}, "even"),
    ({"char_encoder": "cnn", "char_window": 4}, "odd"),
    ({"attrs": [], "rows": [], "char_encoder": None}, "nothing to embed"),
])
def test_embed_rejects_bad_settings(kwargs, message):
    settings = {"width": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        CharWordEmbed(**settings)


def test_embed_from_registry_and_none_string(nlp):
    model = registry.resolve({"m": {"@architectures": "spacy_rnn.CharWordEmbed.v1", "width": 8,
                                    "char_encoder": "none"}})["m"]
    assert model.attrs["char_encoder"] == "none" and not model.has_ref("chars")
    model.initialize(X=make_docs(nlp))
    assert model.predict(make_docs(nlp))[0].shape == (6, 8)


@pytest.mark.parametrize("char_encoder", ["lstm", "cnn"])
def test_embed_serialization_round_trip(nlp, char_encoder):
    model = make_embed(nlp, char_encoder=char_encoder)
    docs = make_docs(nlp)
    Ys, backprop = model.begin_update(docs)
    backprop([numpy.ones_like(y) for y in Ys])
    model.finish_update(Adam(0.01))
    expected = model.predict(docs)
    fix_random_seed(7)  # a differently initialized model must not matter
    fresh = CharWordEmbed(8, rows=[100, 50, 50, 50], char_encoder=char_encoder, **SMALL)
    loaded = fresh.from_bytes(model.to_bytes())
    for a, b in zip(expected, loaded.predict(docs)):
        assert_allclose(a, b, atol=0, rtol=0)
    unpickled = pickle.loads(pickle.dumps(model))
    for a, b in zip(expected, unpickled.predict(docs)):
        assert_allclose(a, b, atol=0, rtol=0)


def _train_run(nlp):
    model = make_embed(nlp, char_encoder="lstm", dropout=0.3)
    optimizer = Adam(0.01)
    docs = make_docs(nlp)
    for _ in range(3):
        Ys, backprop = model.begin_update(docs)
        backprop([y - 0.1 for y in Ys])
        model.finish_update(optimizer)
    return model.predict(docs)


def test_embed_seeded_training_is_deterministic(nlp):
    for a, b in zip(_train_run(nlp), _train_run(nlp)):
        assert_allclose(a, b, atol=0, rtol=0)


def test_embed_dropout_only_in_training(nlp):
    model = make_embed(nlp, dropout=0.5)
    docs = make_docs(nlp)
    predicted = model.predict(docs)
    for a, b in zip(predicted, model.predict(docs)):
        assert_allclose(a, b, atol=0, rtol=0)
    trained, _ = model.begin_update(docs)
    assert max(numpy.abs(a - b).max() for a, b in zip(predicted, trained) if a.size) > 1e-3


# In spaCy: Tok2Vec.v2 with spaCy's tagger, to_disk -> spacy.load, pickle


TAGGER_CONFIG = """
[nlp]
lang = "en"
pipeline = ["tagger"]

[components]

[components.tagger]
factory = "tagger"

[components.tagger.model]
@architectures = "spacy.Tagger.v2"
nO = null

[components.tagger.model.tok2vec]
@architectures = "spacy.Tok2Vec.v2"

[components.tagger.model.tok2vec.embed]
@architectures = "spacy_rnn.CharWordEmbed.v1"
width = 16
rows = [200, 100, 100, 100]
char_encoder = "cnn"
char_width = 8
char_embed_size = 8

[components.tagger.model.tok2vec.encode]
@architectures = "spacy_rnn.BiRNNEncoder.v1"
width = 16
depth = 1
"""


def test_embed_in_spacy_tok2vec_tagger_overfits_and_round_trips(tmp_path):
    from thinc.api import Config

    fix_random_seed(0)
    nlp = spacy.util.load_model_from_config(Config().from_str(TAGGER_CONFIG), auto_fill=True)
    data = [("I like green eggs", ["N", "V", "J", "N"]), ("Eat blue ham", ["V", "J", "N"])]
    examples = [Example.from_dict(nlp.make_doc(t), {"tags": tags}) for t, tags in data]
    nlp.initialize(get_examples=lambda: examples)
    optimizer = Adam(0.01)
    for _ in range(60):
        losses = {}
        nlp.update(examples, sgd=optimizer, losses=losses)
    assert losses["tagger"] < 0.05
    assert [t.tag_ for t in nlp("I like blue ham")] == ["N", "V", "J", "N"]
    texts = ["I like blue ham", "", "Eat green eggs"]
    expected = [[t.tag_ for t in doc] for doc in nlp.pipe(texts)]
    scores = nlp.get_pipe("tagger").model.predict([nlp.make_doc(texts[0])])
    nlp.to_disk(tmp_path / "nlp")
    reloaded = spacy.load(tmp_path / "nlp")
    assert [[t.tag_ for t in doc] for doc in reloaded.pipe(texts)] == expected
    assert_allclose(reloaded.get_pipe("tagger").model.predict([reloaded.make_doc(texts[0])])[0],
                    scores[0], atol=0, rtol=0)
    unpickled = pickle.loads(pickle.dumps(nlp))
    assert [[t.tag_ for t in doc] for doc in unpickled.pipe(texts)] == expected


def test_embed_static_vectors_key_attr_survives_spacy_load(tmp_path):
    """spaCy 3.8 resets Vectors.attr to ORTH on to_disk/spacy.load; the layer
    keeps the LOWER it was initialized with, so "Paris" still finds "paris"."""
    from thinc.api import Config

    config = Config().from_str(TAGGER_CONFIG)
    config["components"]["tagger"]["model"]["tok2vec"]["embed"]["include_static_vectors"] = True
    fix_random_seed(0)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    data = numpy.asarray([[1.0, 0.0, 0.5], [0.0, 2.0, 0.0]], dtype="float32")
    nlp.vocab.vectors = Vectors(strings=nlp.vocab.strings, data=data, keys=["paris", "rain"],
                                attr="LOWER")
    examples = [Example.from_dict(nlp.make_doc("Paris rain"), {"tags": ["N", "V"]})]
    nlp.initialize(get_examples=lambda: examples)
    nlp.to_disk(tmp_path / "nlp")
    reloaded = spacy.load(tmp_path / "nlp")
    for pipeline in (nlp, reloaded):
        tagger_model = pipeline.get_pipe("tagger").model
        static = [n for n in tagger_model.walk() if n.name == "static_vectors"][0]
        V = static.predict([pipeline.make_doc("Paris RAIN nowhere")]).data
        assert_allclose(V[0], static.get_param("W") @ data[0], rtol=1e-6)
        assert_allclose(V[1], static.get_param("W") @ data[1], rtol=1e-6)
        assert numpy.abs(V[2]).max() == 0
    doc = nlp.make_doc("Paris rain")
    assert_allclose(reloaded.get_pipe("tagger").model.predict([reloaded.make_doc("Paris rain")])[0],
                    nlp.get_pipe("tagger").model.predict([doc])[0], atol=0, rtol=0)


def test_embed_static_vectors_need_a_table(nlp):
    model = CharWordEmbed(8, include_static_vectors=True, char_encoder=None)
    with pytest.raises(ValueError, match="vectors"):
        model.initialize(X=[nlp.make_doc("no vectors here")])


MULTIPROCESS_SCRIPT = """
import sys, spacy
from spacy.training import Example
from thinc.api import Adam, Config, fix_random_seed
sys.path.insert(0, sys.argv[1])
from test_embed import TAGGER_CONFIG
fix_random_seed(0)
nlp = spacy.util.load_model_from_config(Config().from_str(TAGGER_CONFIG), auto_fill=True)
examples = [Example.from_dict(nlp.make_doc("I like green eggs"), {"tags": ["N", "V", "J", "N"]})]
nlp.initialize(get_examples=lambda: examples)
texts = ["I like green eggs and ham", "Eat them"] * 20
single = [[t.tag_ for t in doc] for doc in nlp.pipe(texts)]
multi = [[t.tag_ for t in doc] for doc in nlp.pipe(texts, n_process=2, batch_size=5)]
assert multi == single
print("ok")
"""


def test_embed_pipeline_runs_in_several_processes(tmp_path):
    """nlp.pipe(n_process=2) after torch used two OpenMP threads in the parent
    (a forked worker would deadlock without the after-fork thread setting)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import signal

    env = dict(os.environ, OMP_NUM_THREADS="2")
    # its own process group, so that hung workers are ended with it
    command = [sys.executable, "-c", MULTIPROCESS_SCRIPT, str(Path(__file__).parent)]
    process = subprocess.Popen(command,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("nlp.pipe(n_process=2) hung")
    assert process.returncode == 0 and stdout.strip() == "ok", stderr[-2000:]


def test_char_lstm_dense_buckets_equal_the_packed_lstm(nlp):
    """On CPU the character BiLSTM reads the words in dense buckets of
    similar lengths; each word's encoding and the gradients are those of the
    packed call over the padded (n_words, n_chars) ids (the CUDA path)."""
    fix_random_seed(2)
    encoder = CharEncoder("lstm", width=6, embed_size=4, max_chars=8, n_rows=60)
    encoder.initialize()
    words = ["a", "Brussels", "EU", "rejects", "", "x" * 30, "a", "German", "call", "!"]
    docs = [Doc(nlp.vocab, words=[w for w in words if w]), Doc(nlp.vocab, words=["ab", "cde"])]
    Y, backprop = encoder.begin_update(docs)
    G = numpy.random.default_rng(3).normal(size=Y.data.shape).astype("float32")
    backprop(type(Y)(G, Y.lengths))
    module = encoder.shims[0]._model
    dense_grads = {name: p.grad.clone() for name, p in module.named_parameters()}
    module.zero_grad()
    # the reference: the padded ids through the packed path
    orths = numpy.concatenate([doc.to_array("ORTH") for doc in docs]).astype("uint64")
    uniq, inverse = numpy.unique(orths, return_inverse=True)
    ids, lengths = encoder.attrs["char_table"](uniq, nlp.vocab.strings)
    ids = ids[:, : int(lengths.max())]
    expected = module(
        torch.from_numpy(ids), torch.from_numpy(lengths),
        torch.from_numpy(inverse.reshape(-1).astype("int64")),
    )
    assert_allclose(Y.data, expected.detach().numpy(), atol=1e-6, rtol=0)
    (expected * torch.from_numpy(G)).sum().backward()
    for name, p in module.named_parameters():
        assert_allclose(dense_grads[name].numpy(), p.grad.numpy(), atol=1e-5, rtol=0)


def test_char_lstm_directions_in_two_threads_give_identical_results(nlp, monkeypatch):
    """The character BiLSTM's two directions side by side (threads.run_pair):
    bit for bit the encodings and gradients of running them in turn."""
    from helpers import count_direction_pairs
    from spacy_rnn.ml import threads

    calls = count_direction_pairs(monkeypatch)
    words = ["Peter", "Blackburn", "lives", "in", "Brussels", ".", "x" * 30] * 4
    docs = [Doc(nlp.vocab, words=words), Doc(nlp.vocab, words=["EU", "rejects", "German"])]
    results = {}
    try:
        for parallel in (False, True):
            threads.set_parallel_directions(parallel)
            fix_random_seed(2)
            encoder = CharEncoder("lstm", width=6, embed_size=4, max_chars=8, n_rows=60)
            encoder.initialize()
            Y, backprop = encoder.begin_update(docs)
            G = numpy.random.default_rng(3).normal(size=Y.data.shape).astype("float32")
            backprop(type(Y)(G, Y.lengths))
            grads = [p.grad.clone() for p in encoder.shims[0]._model.parameters()]
            results[parallel] = (Y.data.copy(), grads)
    finally:
        threads.set_parallel_directions(None)
    assert calls == [False, True]
    assert numpy.array_equal(results[False][0], results[True][0])
    assert all(torch.equal(a, b) for a, b in zip(results[False][1], results[True][1]))
