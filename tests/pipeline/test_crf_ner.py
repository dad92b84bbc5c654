"""The crf_ner component: overfitting real CoNLL-2003 sentences, serialization
round trips, multiprocessing, partial annotation, sentence boundaries,
confidences, shared tok2vec, configs."""

import json
import pickle
import subprocess
import sys

import numpy
import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

from helpers import crf_tagger_config, ent_tuples, tok2vec_config
from spacy_rnn.converters.conll import read_conll
from spacy_rnn.pipeline.augmenters import gold_sentences_augmenter

SMALL_MODEL = crf_tagger_config(
    tok2vec=tok2vec_config(
        64,
        cell="lstm",
        attrs=("NORM", "PREFIX", "SUFFIX", "SHAPE"),
        rows=(2000, 500, 1000, 500),
        char_width=32,
        char_embed_size=16,
        char_encoder="lstm",
    )
)


def first_sentences(conll_path, n_sents, tmp_path, n_per_doc=10):
    """Docs (n_per_doc sentences each, with sentence starts) from the first
    n_sents sentences of a CoNLL file."""
    lines, count = [], 0
    with open(conll_path, encoding="utf-8") as f:
        for line in f:
            lines.append(line)
            if not line.strip() and lines[-2].strip() and not lines[-2].startswith("-DOCSTART-"):
                count += 1
                if count == n_sents:
                    break
    path = tmp_path / "head.txt"
    path.write_text("".join(lines), encoding="utf-8")
    docs, _ = read_conll(path, n_sents=n_per_doc)
    return docs


def fresh_docs(nlp, references):
    return [
        eg.predicted
        for eg in (next(gold_sentences_augmenter(nlp, Example(ref, ref))) for ref in references)
    ]


@pytest.fixture(scope="module")
def trained(conll_dir, tmp_path_factory):
    """crf_ner overfit on the first 50 sentences of CoNLL-2003 train."""
    fix_random_seed(0)
    tmp = tmp_path_factory.mktemp("crf_ner")
    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner", config={"model": SMALL_MODEL})
    references = first_sentences(conll_dir / "train.txt", 50, tmp)
    references = [Doc(nlp.vocab).from_bytes(doc.to_bytes()) for doc in references]
    examples = [next(gold_sentences_augmenter(nlp, Example(ref, ref))) for ref in references]
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.03
    losses_seen = []
    for i in range(100):
        losses = {}
        nlp.update(examples, sgd=optimizer, losses=losses)
        losses_seen.append(losses["crf_ner"])
        if i % 5 == 4 and nlp.evaluate(examples)["ents_f"] >= 0.999:
            break
    return nlp, references, examples, losses_seen, tmp


def test_crf_ner_overfits_conll_sentences(trained):
    nlp, references, examples, losses, _ = trained
    assert sum(len(doc.ents) for doc in references) > 50
    assert losses[-1] < losses[0] / 20
    # Training stops at the first check with ents_f >= 0.999 (about 20 of the
    # 100 updates); with over 50 entities that is every entity right.
    assert len(losses) < 100
    scores = nlp.evaluate(examples)
    assert scores["ents_f"] == 1.0, scores
    docs = list(nlp.pipe(fresh_docs(nlp, references)))
    assert ent_tuples(docs) == ent_tuples(references)


def test_crf_ner_confidences(trained):
    nlp, references, _, _, _ = trained
    docs = list(nlp.pipe(fresh_docs(nlp, references)))
    for doc in docs:
        group = doc.spans["crf_ner"]
        scores = group.attrs["scores"]
        assert len(scores) == len(group) == len(doc.ents)
        assert [(s.start, s.end, s.label_) for s in group] == [
            (e.start, e.end, e.label_) for e in doc.ents
        ]
        assert all(0.0 <= s <= 1.0 for s in scores)
    # An overfit model is confident on its training entities.
    all_scores = [s for doc in docs for s in doc.spans["crf_ner"].attrs["scores"]]
    assert numpy.mean(all_scores) > 0.9


def test_crf_ner_serialization_round_trips(trained):
    nlp, references, _, _, tmp = trained
    expected_docs = list(nlp.pipe(fresh_docs(nlp, references)))
    expected = ent_tuples(expected_docs)
    expected_scores = [doc.spans["crf_ner"].attrs["scores"] for doc in expected_docs]

    def check(other):
        docs = list(other.pipe(fresh_docs(other, references)))
        assert ent_tuples(docs) == expected
        for doc, scores in zip(docs, expected_scores):
            numpy.testing.assert_allclose(doc.spans["crf_ner"].attrs["scores"], scores, rtol=1e-5)

    path = tmp / "model"
    nlp.to_disk(path)
    check(spacy.load(path))
    # to_bytes -> from_bytes into a fresh pipeline from the same config
    other = spacy.blank("en")
    other.add_pipe("crf_ner", config={"model": SMALL_MODEL})
    other.from_bytes(nlp.to_bytes())
    check(other)
    assert other.get_pipe("crf_ner").to_bytes() == nlp.get_pipe("crf_ner").to_bytes()
    check(pickle.loads(pickle.dumps(nlp)))
    # Two processes
    docs = list(nlp.pipe(fresh_docs(nlp, references), n_process=2, batch_size=2))
    assert ent_tuples(docs) == expected


def test_crf_ner_loads_without_importing_the_package(trained):
    """The entry points in setup.cfg are enough for spacy.load."""
    nlp, references, _, _, tmp = trained
    path = tmp / "model_entry_points"
    nlp.to_disk(path)
    words = [t.text for t in references[0]]
    expected = [(e.start, e.end, e.label_) for e in nlp(Doc(nlp.vocab, words=words)).ents]
    code = (
        "import json, sys, spacy\n"
        "from spacy.tokens import Doc\n"
        f"nlp = spacy.load({str(path)!r})\n"
        f"doc = nlp(Doc(nlp.vocab, words={words!r}))\n"
        "print(json.dumps([[e.start, e.end, e.label_] for e in doc.ents]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    assert [tuple(x) for x in json.loads(out.stdout.strip().splitlines()[-1])] == expected


def make_nlp(labels=("LOC", "PER"), **cfg):
    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner", config={"model": SMALL_MODEL, **cfg})
    return nlp


def example(nlp, words, ents, missing=(), sent_starts=None):
    """An example whose reference has `ents` [(start, end, label)] and no
    annotation (ent_iob 0) on the tokens in `missing`."""
    ref = Doc(nlp.vocab, words=words, sent_starts=sent_starts)
    tags = ["O"] * len(words)
    for s, e, label in ents:
        tags[s:e] = [f"B-{label}"] + [f"I-{label}"] * (e - s - 1)
    for i in missing:
        tags[i] = None
    ref = Doc(nlp.vocab, words=words, sent_starts=sent_starts, ents=tags)
    return Example(Doc(nlp.vocab, words=words, sent_starts=sent_starts), ref)


WORDS = "Peter Blackburn met Anna in Berlin and Paris today".split()


def test_crf_ner_missing_tokens_are_marginalised():
    """With tokens 6 and 7 unannotated, the loss is -log of the total
    probability of every annotation of them: exp(-loss) equals the sum of
    exp(-loss) over the 11 full annotations (BILUO, 2 labels) of tokens 6-7,
    with the same emission scores. So the labels the missing tokens might
    have are summed over, not guessed."""
    nlp = make_nlp(scheme="BILUO")
    ner = nlp.get_pipe("crf_ner")
    known = [(0, 2, "PER"), (3, 4, "PER"), (5, 6, "LOC")]
    eg = example(nlp, WORDS, known, missing=(6, 7))
    nlp.initialize(lambda: [example(nlp, WORDS, known)])
    rng = numpy.random.default_rng(0)
    scores = [rng.normal(size=(len(WORDS), len(ner.tags))).astype("float32") * 2]
    _, partial = ner.get_loss([eg], scores)
    labels = ["LOC", "PER"]
    completions = [[]]
    completions += [[(i, i + 1, lab)] for i in (6, 7) for lab in labels]
    completions += [[(6, 7, a), (7, 8, b)] for a in labels for b in labels]
    completions += [[(6, 8, lab)] for lab in labels]
    assert len(completions) == 11
    total = 0.0
    for extra in completions:
        _, full = ner.get_loss([example(nlp, WORDS, known + extra)], scores)
        total += numpy.exp(-full)
    assert numpy.exp(-partial) == pytest.approx(total, rel=1e-4)
    # A doc without any annotation adds exactly nothing: zero loss, zero gradient.
    d_scores, loss = ner.get_loss([example(nlp, WORDS, [], missing=range(len(WORDS)))], scores)
    assert loss == pytest.approx(0.0, abs=1e-4)
    assert numpy.abs(d_scores[0]).max() < 1e-5


def test_crf_ner_trains_on_partial_annotation():
    fix_random_seed(1)
    nlp = make_nlp()
    train = [
        example(nlp, WORDS, [(0, 2, "PER"), (5, 6, "LOC")], missing=(3, 7)),
        example(nlp, "Anna lives in Paris".split(), [(0, 1, "PER"), (3, 4, "LOC")], missing=(1,)),
    ]
    optimizer = nlp.initialize(lambda: train)
    optimizer.learn_rate = 0.01
    first = None
    for _ in range(40):
        losses = nlp.update(train, sgd=optimizer, losses={})
        first = first if first is not None else losses["crf_ner"]
    assert numpy.isfinite(losses["crf_ner"]) and losses["crf_ner"] < first / 5
    # The annotated tokens are learned; "lives" was unannotated, so it is not checked.
    doc = nlp("Anna lives in Paris")
    assert [doc[i].ent_iob_ + "-" + doc[i].ent_type_ for i in (0, 2, 3)] == ["B-PER", "O-", "B-LOC"]


def biased_nlp(scheme, **cfg):
    """A pipe whose emission scores favour one PER entity over everything."""
    nlp = make_nlp(scheme=scheme, **cfg)
    nlp.initialize(lambda: [example(nlp, WORDS, [(0, 2, "PER")])])
    ner = nlp.get_pipe("crf_ner")
    output = ner.model.get_ref("output_layer")
    b = output.get_param("b").copy()
    tags = ner.tags
    for tag, value in (("B-PER", 5.0), ("I-PER", 8.0), ("L-PER", 5.0), ("U-PER", 5.0)):
        if tag in tags:
            b[tags.index(tag)] = value
    output.set_param("b", b)
    return nlp


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_crf_ner_no_entity_crosses_a_sentence_boundary(scheme):
    nlp = biased_nlp(scheme)
    doc = nlp(Doc(nlp.vocab, words=WORDS))
    assert [(e.start, e.end) for e in doc.ents] == [(0, len(WORDS))]
    starts = [i in (0, 3, 4, 8) for i in range(len(WORDS))]
    doc = nlp(Doc(nlp.vocab, words=WORDS, sent_starts=starts))
    assert [(e.start, e.end) for e in doc.ents] == [(0, 3), (3, 4), (4, 8), (8, 9)]
    for ent in doc.ents:
        assert len(list(ent.sents)) == 1


def test_crf_ner_scores_with_the_seqeval_scorer():
    nlp = biased_nlp("BIO", scorer={"@scorers": "spacy_rnn.seqeval_scorer.v1"})
    starts = [i in (0, 3, 4, 8) for i in range(len(WORDS))]
    right = example(
        nlp, WORDS, [(0, 3, "PER"), (3, 4, "PER"), (4, 8, "PER"), (8, 9, "PER")], sent_starts=starts
    )
    wrong = example(nlp, WORDS, [(0, 2, "PER"), (3, 4, "PER")], sent_starts=starts)
    scores = nlp.evaluate([right])
    assert scores["seqeval_f"] == scores["ents_f"] == 1.0
    scores = nlp.evaluate([wrong])
    assert scores["seqeval_p"] == pytest.approx(1 / 4) and scores["seqeval_r"] == pytest.approx(
        1 / 2
    )


def test_crf_ner_write_ents_false_and_existing_ents():
    nlp = biased_nlp("BILUO")
    nlp.get_pipe("crf_ner").cfg["write_ents"] = False
    doc = nlp(Doc(nlp.vocab, words=WORDS))
    assert doc.ents == ()
    assert [(s.start, s.end) for s in doc.spans["crf_ner"]] == [(0, len(WORDS))]
    # Entities set before the component are kept; overlapping predictions are dropped.
    nlp.get_pipe("crf_ner").cfg["write_ents"] = True
    starts = [i in (0, 3, 4, 8) for i in range(len(WORDS))]
    doc = Doc(nlp.vocab, words=WORDS, sent_starts=starts)
    doc.ents = [Span(doc, 5, 6, "GPE")]
    doc = nlp(doc)
    assert [(e.start, e.end, e.label_) for e in doc.ents] == [
        (0, 3, "PER"),
        (3, 4, "PER"),
        (5, 6, "GPE"),
        (8, 9, "PER"),
    ]


def test_crf_ner_labels_and_empty_docs():
    nlp = make_nlp(scheme="BIO")
    ner = nlp.get_pipe("crf_ner")
    assert ner.add_label("PER") == 1 and ner.add_label("PER") == 0
    nlp.initialize(lambda: [example(nlp, WORDS, [(0, 2, "PER")])])
    assert ner.labels == ("PER",) and ner.tags == ["O", "B-PER", "I-PER"]
    with pytest.raises(ValueError, match="after it was initialized"):
        ner.add_label("ORG")
    docs = list(
        nlp.pipe(
            [Doc(nlp.vocab, words=[]), Doc(nlp.vocab, words=["Paris"]), Doc(nlp.vocab, words=[])]
        )
    )
    assert docs[0].ents == () and len(docs[0].spans["crf_ner"]) == 0
    assert nlp.update([Example(Doc(nlp.vocab), Doc(nlp.vocab))]) == {"crf_ner": 0.0}
    with pytest.raises(ValueError, match="BIO"):
        make_nlp(scheme="IOB1")
    empty = make_nlp()
    with pytest.raises(ValueError, match="no entity labels"):
        empty.initialize(lambda: [example(empty, WORDS, [])])


def test_crf_ner_with_shared_tok2vec_listener():
    fix_random_seed(2)
    nlp = spacy.blank("en")
    nlp.add_pipe("tok2vec", config={"model": SMALL_MODEL["tok2vec"]})
    listener = {"@architectures": "spacy.Tok2VecListener.v1", "width": 64, "upstream": "*"}
    nlp.add_pipe(
        "crf_ner",
        config={"model": {"@architectures": "spacy_rnn.CRFTagger.v1", "tok2vec": listener}},
    )
    train = [example(nlp, "Anna lives in Paris".split(), [(0, 1, "PER"), (3, 4, "LOC")])]
    optimizer = nlp.initialize(lambda: train)
    optimizer.learn_rate = 0.02
    tok2vec = nlp.get_pipe("tok2vec").model
    initial = tok2vec.to_bytes()
    first = nlp.update(train, sgd=optimizer, losses={})["crf_ner"]
    for _ in range(29):
        losses = nlp.update(train, sgd=optimizer, losses={})
    assert losses["crf_ner"] < first / 10
    # The shared tok2vec has no loss of its own: it learns from the
    # gradients crf_ner sends back through the listener.
    assert tok2vec.to_bytes() != initial
    doc = nlp("Anna lives in Paris")
    assert [(e.text, e.label_) for e in doc.ents] == [("Anna", "PER"), ("Paris", "LOC")]


@pytest.mark.parametrize(
    "name", ["ner_bilstm_crf.cfg", "ner_bilstm_crf_glove.cfg", "ner_bigru_crf.cfg"]
)
def test_crf_ner_configs_are_filled(repo_root, tmp_path, name):
    """`spacy init fill-config` leaves the shipped configs unchanged, and they
    use the factory's defaults (up to the encoder's cell)."""
    from spacy.cli.init_config import fill_config
    from thinc.api import Config

    path = repo_root / "configs" / name
    original = Config().from_disk(path, interpolate=False)
    filled, _ = fill_config(tmp_path / name, path, silent=True)
    assert filled.to_str() == original.to_str()
    assert original["components"]["crf_ner"]["factory"] == "crf_ner"
    cell = original["components"]["crf_ner"]["model"]["tok2vec"]["encode"]["cell"]
    assert cell == ("gru" if "bigru" in name else "lstm")


def test_crf_ner_gold_sentences_augmenter():
    """The registered augmenter keeps whole docs but gives the predicted doc
    the reference's tokens and sentence starts."""
    from spacy.util import registry

    nlp = spacy.blank("en")
    augmenter = registry.augmenters.get("spacy_rnn.gold_sentences.v1")()
    words = ["New", "York-based", "firm", ".", "It", "grew", "."]
    ref = Doc(nlp.vocab, words=words, sent_starts=[True, False, False, False, True, False, False])
    (eg,) = list(augmenter(nlp, Example(nlp.make_doc(ref.text), ref)))
    assert [t.text for t in eg.predicted] == words
    assert [s.start for s in eg.predicted.sents] == [0, 4]
    assert eg.reference is ref


def test_crf_ner_evaluates_with_averaged_torch_weights():
    """spaCy evaluates and saves model-best under
    `nlp.use_params(optimizer.averages)`: every torch parameter of the
    pipeline (character encoder, BiLSTM) then holds its average, as the thinc
    parameters (word table, CRF) do, and the trained weights return after."""
    fix_random_seed(0)
    nlp = make_nlp()
    examples = [example(nlp, WORDS, [(0, 2, "PER"), (3, 4, "PER"), (5, 6, "LOC")])]
    optimizer = Adam(0.01, use_averages=True)
    nlp.initialize(lambda: examples, sgd=optimizer)
    for _ in range(5):
        nlp.update(examples, sgd=optimizer)
    model = nlp.get_pipe("crf_ner").model
    shims = [shim for layer in model.walk() for shim in layer.shims]
    assert len(shims) == 2  # the character BiLSTM and the encoder
    before = {
        (shim.id, name): p.detach().numpy().copy()
        for shim in shims for name, p in shim._model.named_parameters()
    }
    assert all(key in optimizer.averages for key in before)
    with nlp.use_params(optimizer.averages):
        for shim in shims:
            for name, p in shim._model.named_parameters():
                numpy.testing.assert_allclose(
                    p.detach().numpy(), optimizer.averages[(shim.id, name)]
                )
    changed = [not numpy.allclose(before[key], optimizer.averages[key]) for key in before]
    assert any(changed)
    for shim in shims:
        for name, p in shim._model.named_parameters():
            numpy.testing.assert_array_equal(p.detach().numpy(), before[(shim.id, name)])
