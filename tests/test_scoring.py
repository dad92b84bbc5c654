"""The registered scorer spacy_rnn.seqeval_scorer.v1: resolvable from config,
same figures as spacy_rnn.evaluation, usable by nlp.evaluate and by
`spacy train` to pick model-best."""

import json

import pytest
import spacy
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.util import registry
from thinc.api import Config

from spacy_rnn.evaluation import evaluate_ner
from spacy_rnn.scoring import make_seqeval_scorer, seqeval_score


def _doc(vocab, sents, sent_starts=True):
    words = [w for ws, _ in sents for w in ws]
    tags = [t for _, ts in sents for t in ts]
    starts = [i == 0 for ws, _ in sents for i in range(len(ws))] if sent_starts else None
    return Doc(vocab, words=words, sent_starts=starts, ents=tags)


@pytest.fixture
def pair():
    nlp = spacy.blank("en")
    s1 = (["in", "New", "York"], ["O", "B-LOC", "I-LOC"])
    s2 = (["Times", "said", "Smith"], ["B-ORG", "O", "B-PER"])
    gold = _doc(nlp.vocab, [s1, s2])
    pred = Doc(
        nlp.vocab,
        words=[w for w, _ in zip(*s1)] + [w for w, _ in zip(*s2)],
        ents=["O", "B-ORG", "I-ORG", "I-ORG", "O", "B-PER"],
    )
    return nlp, gold, pred


def test_scoring_resolves_from_config():
    config = Config().from_str(
        '[scorer]\n@scorers = "spacy_rnn.seqeval_scorer.v1"\nsemeval = true\n'
    )
    scorer = registry.resolve(config)["scorer"]
    assert callable(scorer)
    assert registry.scorers.get("spacy_rnn.seqeval_scorer.v1") is make_seqeval_scorer


def test_scoring_keys_and_figures_equal_evaluation(pair):
    _, gold, pred = pair
    scores = make_seqeval_scorer(semeval=True)([Example(pred, gold)])
    metrics = evaluate_ner([gold], [pred])
    for key in (
        "ents_p",
        "ents_r",
        "ents_f",
        "ents_per_type",
        "seqeval_p",
        "seqeval_r",
        "seqeval_f",
        "seqeval_strict_p",
        "seqeval_strict_r",
        "seqeval_strict_f",
        "seqeval_per_type",
    ):
        assert key in scores, key
    # sentence 1: ORG for LOC, wrong; sentence 2: I-ORG "Times" right (conlleval), PER right
    assert scores["seqeval_p"] == pytest.approx(2 / 3) and scores["seqeval_r"] == pytest.approx(
        2 / 3
    )
    assert scores["seqeval_f"] == pytest.approx(metrics["seqeval"]["default"]["f"])
    assert (
        scores["seqeval_strict_f"]
        == pytest.approx(metrics["seqeval"]["strict"]["f"])
        == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    )
    # spaCy's own figure is per document: only PER matches of 2 predicted, 3 gold
    assert (
        scores["ents_f"]
        == pytest.approx(metrics["spacy"]["f"])
        == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    )
    assert scores["seqeval_per_type"]["PER"] == {"p": 1.0, "r": 1.0, "f": 1.0}
    for mode in ("strict", "exact", "partial", "type"):
        assert scores[f"semeval_{mode}_f"] == pytest.approx(metrics["semeval"][mode]["f"])
    assert "semeval_strict_f" not in seqeval_score([Example(pred, gold)])


def test_scoring_aligns_retokenized_predictions():
    """During training the predicted doc may be re-tokenized from text: entities are aligned."""
    nlp = spacy.blank("en")
    gold = Doc(
        nlp.vocab,
        words=["Smith", "visited", "New", "York", "."],
        spaces=[True, True, True, False, False],
        ents=["B-PER", "O", "B-LOC", "I-LOC", "O"],
    )
    pred = nlp.make_doc("Smith visited New York.")
    pred.ents = [pred.char_span(0, 5, label="PER"), pred.char_span(14, 22, label="LOC")]
    scores = seqeval_score([Example(pred, gold)])
    assert scores["seqeval_f"] == 1.0 and scores["ents_f"] == 1.0


def test_scoring_used_by_nlp_evaluate(pair):
    nlp, gold, _ = pair
    ner = nlp.add_pipe("ner", config={"scorer": {"@scorers": "spacy_rnn.seqeval_scorer.v1"}})
    for label in ("LOC", "ORG", "PER"):
        ner.add_label(label)
    nlp.initialize()
    scores = nlp.evaluate([Example(nlp.make_doc(gold.text), gold)])
    assert {"seqeval_f", "seqeval_strict_f", "ents_f"} <= set(scores)
    assert 0.0 <= scores["seqeval_f"] <= 1.0


TRAIN_CFG = """
[paths]
train = null
dev = null
[system]
seed = 0
[nlp]
lang = "en"
pipeline = ["ner"]
batch_size = 16
[components]
[components.ner]
factory = "ner"
[components.ner.scorer]
@scorers = "spacy_rnn.seqeval_scorer.v1"
[components.ner.model]
@architectures = "spacy.TransitionBasedParser.v2"
state_type = "ner"
hidden_width = 16
maxout_pieces = 2
use_upper = true
[components.ner.model.tok2vec]
@architectures = "spacy.HashEmbedCNN.v2"
width = 32
depth = 1
embed_size = 500
window_size = 1
maxout_pieces = 2
subword_features = true
pretrained_vectors = null
[corpora]
[corpora.train]
@readers = "spacy.Corpus.v1"
path = ${paths.train}
[corpora.dev]
@readers = "spacy.Corpus.v1"
path = ${paths.dev}
[training]
max_steps = 40
eval_frequency = 10
patience = 0
dropout = 0.1
[training.score_weights]
seqeval_f = 1.0
ents_f = 0.0
[training.optimizer]
@optimizers = "Adam.v1"
learn_rate = 0.01
[initialize]
"""


def test_scoring_drives_spacy_train_model_best(tmp_path, capsys):
    """`spacy train` with score_weights seqeval_f = 1.0 logs seqeval and picks model-best by it."""
    from spacy.cli.train import train

    nlp = spacy.blank("en")
    names = ["Smith", "Jones", "Brown"]
    cities = ["Paris", "Berlin", "Rome"]
    docs = []
    for i in range(30):
        words = [names[i % 3], "flew", "to", cities[(i // 3) % 3], "."]
        docs.append(
            Doc(
                nlp.vocab,
                words=words,
                sent_starts=[True] + [False] * 4,
                ents=["B-PER", "O", "O", "B-LOC", "O"],
            )
        )
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    DocBin(docs=docs[:10]).to_disk(tmp_path / "dev.spacy")
    # fill the partial config with spaCy's defaults, as `spacy init fill-config` does
    cfg = Config().from_str(
        TRAIN_CFG,
        overrides={
            "paths.train": str(tmp_path / "train.spacy"),
            "paths.dev": str(tmp_path / "dev.spacy"),
        },
    )
    filled = spacy.util.load_model_from_config(cfg, auto_fill=True).config
    filled.to_disk(tmp_path / "cfg.cfg")
    train(tmp_path / "cfg.cfg", tmp_path / "out")
    table = capsys.readouterr().out
    header = next(line for line in table.splitlines() if "SEQEVAL_F" in line).split()
    col = header.index("SEQEVAL_F") - len(
        header
    )  # counted from the right ("LOSS NER" is two words)
    logged = [
        float(line.split()[col]) / 100 for line in table.splitlines() if line.strip()[:1].isdigit()
    ]
    assert len(logged) == 5  # steps 0, 10, 20, 30, 40
    meta = json.loads((tmp_path / "out" / "model-best" / "meta.json").read_text())
    perf = meta["performance"]
    # the table shows seqeval F1; model-best holds the best logged seqeval F1 (score weight 1.0)
    assert perf["seqeval_f"] == pytest.approx(max(logged), abs=1e-4)
    assert filled["training"]["score_weights"]["seqeval_f"] == 1.0
    assert perf["seqeval_f"] > 0.5  # the toy pattern is learnable in 40 steps
