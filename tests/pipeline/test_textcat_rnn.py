"""spacy_rnn.RNNTextCat.v1 inside spaCy's `textcat` and `textcat_multilabel`:
it learns real SST-2 sentences, survives to_disk -> spacy.load and pickling,
handles empty docs, and `configs/textcat_bilstm.cfg` trains with spaCy's loop."""
import pickle
from typing import Dict, List

import numpy
import pytest
import spacy
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.training.initialize import init_nlp
from spacy.training.loop import train as train_nlp
from spacy.util import load_config, registry
from thinc.api import Adam, fix_random_seed

from helpers import head_lines, rnn_textcat_config, textcat_nlp, tok2vec_config
from spacy_rnn.converters import read_textcat
from spacy_rnn.ml.textcat import POOLINGS

SST2_LABELS = {"0": "NEG", "1": "POS"}

# Small widths: enough to memorise 100 sentences in a few epochs on one core.
SMALL_TOK2VEC = tok2vec_config(
    32,
    attrs=["NORM", "PREFIX", "SUFFIX", "SHAPE"],
    rows=[2000, 500, 1000, 200],
    char_width=16,
    char_embed_size=16,
)


@pytest.fixture(scope="module")
def train_sentences(sst2_dir, tmp_path_factory) -> List[Doc]:
    """100 SST-2 training rows of 6+ tokens (sentences and long phrases)."""
    path = head_lines(sst2_dir / "train.tsv", tmp_path_factory.mktemp("sst2") / "train.tsv", 3000)
    docs, _ = read_textcat(path, label_map=SST2_LABELS)
    docs = [doc for doc in docs if len(doc) >= 6][:100]
    assert len(docs) == 100
    assert 20 <= sum(doc.cats["POS"] for doc in docs) <= 80
    return docs


def make_nlp(factory: str, pooling: str) -> spacy.Language:
    model = rnn_textcat_config(
        tok2vec=SMALL_TOK2VEC,
        pooling=pooling,
        exclusive_classes=factory == "textcat",
        dropout=0.0,
    )
    return textcat_nlp(model, factory)


def accuracy(nlp: spacy.Language, docs: List[Doc]) -> float:
    predicted = nlp.pipe(doc.text for doc in docs)
    hits = [
        (pred.cats["POS"] > 0.5) == (gold.cats["POS"] > 0.5) for pred, gold in zip(predicted, docs)
    ]
    return float(numpy.mean(hits))


def overfit(nlp: spacy.Language, docs: List[Doc], max_epochs: int = 30) -> float:
    fix_random_seed(0)
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in docs]
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(0.005))
    rng = numpy.random.default_rng(0)
    acc = 0.0
    for epoch in range(max_epochs):
        order = rng.permutation(len(examples))
        for start in range(0, len(order), 16):
            nlp.update([examples[i] for i in order[start:start + 16]], sgd=optimizer)
        acc = accuracy(nlp, docs)
        if acc >= 0.99:
            break
    return acc


def cats_of(nlp: spacy.Language, texts: List[str]) -> List[Dict[str, float]]:
    return [doc.cats for doc in nlp.pipe(texts)]


@pytest.mark.parametrize("factory", ["textcat", "textcat_multilabel"])
@pytest.mark.parametrize("pooling", POOLINGS + ("attention+max",))
def test_textcat_rnn_overfits_sst2_and_roundtrips(train_sentences, tmp_path, factory, pooling):
    nlp = make_nlp(factory, pooling)
    assert overfit(nlp, train_sentences) >= 0.99

    texts = [doc.text for doc in train_sentences[:20]] + ["", "a"]
    expected = cats_of(nlp, texts)
    # nlp.pipe (batched, with an empty doc) and nlp() agree. (An empty doc on
    # its own never reaches the model: spaCy's textcat gives a batch without
    # any token all-zero scores.)
    for text, cats in zip(texts, expected):
        if not text:
            continue
        for label, score in nlp(text).cats.items():
            assert score == pytest.approx(cats[label], abs=1e-5)
    # the empty doc inside a batch still gets a probability vector
    for cats in expected:
        values = numpy.array(list(cats.values()))
        assert numpy.isfinite(values).all() and ((0 <= values) & (values <= 1)).all()
        if factory == "textcat":
            assert values.sum() == pytest.approx(1.0, abs=1e-5)

    nlp.to_disk(tmp_path / "model")
    loaded = spacy.load(tmp_path / "model")
    assert loaded.get_pipe("textcat").model.attrs["pooling"] == pooling
    unpickled = pickle.loads(pickle.dumps(nlp))
    for other in (loaded, unpickled):
        for cats, other_cats in zip(expected, cats_of(other, texts)):
            assert other_cats.keys() == cats.keys()
            for label in cats:
                assert other_cats[label] == pytest.approx(cats[label], abs=1e-6)

    scores = nlp.evaluate([Example(nlp.make_doc(d.text), d) for d in train_sentences])
    assert scores["cats_score"] >= 0.98


def test_textcat_rnn_train_config_dev_score_rises(sst2_dir, repo_root, tmp_path):
    """`spacy train configs/textcat_bilstm.cfg` (the CLI's own steps) on a
    slice of SST-2: the dev score climbs from the first evaluation."""
    train_docs, _ = read_textcat(
        head_lines(sst2_dir / "train.tsv", tmp_path / "train.tsv", 1500), label_map=SST2_LABELS
    )
    dev_docs, _ = read_textcat(
        head_lines(sst2_dir / "dev.tsv", tmp_path / "dev.tsv", 200), label_map=SST2_LABELS
    )
    DocBin(docs=train_docs).to_disk(tmp_path / "train.spacy")
    DocBin(docs=dev_docs).to_disk(tmp_path / "dev.spacy")

    scores: List[float] = []

    @registry.loggers("spacy_rnn_test.capture_scores.v1")
    def capture_scores():
        def setup(nlp, stdout=None, stderr=None):
            def log_step(info):
                if info is not None and info.get("other_scores"):
                    scores.append(info["score"])

            return log_step, lambda: None

        return setup

    prefix = "components.textcat.model.tok2vec"
    overrides = {
        "paths.train": str(tmp_path / "train.spacy"),
        "paths.dev": str(tmp_path / "dev.spacy"),
        "training.max_steps": 120,
        "training.eval_frequency": 40,
        f"{prefix}.embed.width": 32,
        f"{prefix}.embed.char_width": 16,
        f"{prefix}.encode.width": 32,
    }
    config = load_config(
        repo_root / "configs" / "textcat_bilstm.cfg", overrides=overrides, interpolate=False
    )
    config["training"]["logger"] = {"@loggers": "spacy_rnn_test.capture_scores.v1"}
    nlp = init_nlp(config)
    (tmp_path / "output").mkdir()
    train_nlp(nlp, tmp_path / "output")
    print("dev cats_score per evaluation:", [round(x, 3) for x in scores])
    assert len(scores) >= 3
    # The dev slice is 105 NEG / 95 POS: a constant label scores a macro F of
    # 0.34 at most. Measured with seeds 0-4 (this setup, 120 steps): the
    # untrained model (first evaluation) scores 0.385-0.542; the best later
    # evaluation 0.612-0.687 with RNNTextCat.v3 and 0.619-0.660 with v4, a climb
    # of 0.144-0.260 and 0.110-0.236; the config's seed with v4: 0.485 -> 0.619,
    # last 0.594. The floor of 0.60 lies above every untrained score.
    assert max(scores[1:]) >= scores[0] + 0.10, scores
    assert max(scores) >= 0.60, scores
    assert scores[-1] > scores[0], scores
    assert scores[-1] >= 0.55, scores
    best = spacy.load(tmp_path / "output" / "model-best")
    pooling = config["components"]["textcat"]["model"]["pooling"]
    assert best.get_pipe("textcat").model.attrs["pooling"] == pooling
    dev = [Example(best.make_doc(doc.text), doc) for doc in dev_docs]
    assert best.evaluate(dev)["cats_score"] == pytest.approx(max(scores), abs=1e-6)


@pytest.mark.parametrize("name", ["textcat_bilstm", "textcat_bilstm_glove"])
def test_textcat_rnn_configs_are_complete(repo_root, name):
    """The shipped configs are already filled (nothing left to defaults) and
    build the pipeline; the GloVe variant has the static vectors on and takes
    word identity from them instead of a hashed NORM table (chosen on dev)."""
    path = repo_root / "configs" / f"{name}.cfg"
    config = load_config(path, interpolate=False)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.pipe_names == ["textcat"]
    assert nlp.config.interpolate()["components"] == config.interpolate()["components"]
    model = nlp.get_pipe("textcat").model
    assert model.get_ref("tok2vec").get_ref("encode").attrs["bidirectional"] is True
    embed = config["components"]["textcat"]["model"]["tok2vec"]["embed"]
    assert embed["include_static_vectors"] is (name == "textcat_bilstm_glove")
    assert ("NORM" in embed["attrs"]) is (name == "textcat_bilstm")
