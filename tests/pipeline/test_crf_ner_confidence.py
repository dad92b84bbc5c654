"""crf_ner's confidences at the pipeline level: the span group's scores and
`span_probabilities` against brute-force enumeration of every tag path of
every sentence (BILUO and BIO, padded batches of docs of different lengths,
docs split into several sentence chains), the n best paths, the temperature
(entities unchanged, scores rescaled, raw scores kept, saved with the
pipeline) and its fit on dev data."""

import itertools
import pickle

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import fix_random_seed

from helpers import crf_tagger_config, tok2vec_config
from spacy_rnn.calibration import binary_nll
from spacy_rnn.schemes import is_valid, tags_to_spans

SMALL_MODEL = crf_tagger_config(
    tok2vec=tok2vec_config(
        32, cell="lstm", rows=(500, 50), char_width=16, char_encoder="lstm"
    )
)
LABELS = ("LOC", "PER")
WORDS = "Anna met Peter in Berlin and Paris".split()


def random_nlp(scheme, scale=3.0, seed=0, **cfg):
    """An initialized crf_ner pipeline with random weights, its output layer
    and CRF scores scaled so that the marginals are far from uniform."""
    fix_random_seed(seed)
    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner", config={"model": SMALL_MODEL, "scheme": scheme, **cfg})
    ner = nlp.get_pipe("crf_ner")
    ref = Doc(nlp.vocab, words=WORDS, ents=["B-PER", "O", "B-PER", "O", "B-LOC", "O", "B-LOC"])
    ner.initialize(lambda: [Example(Doc(nlp.vocab, words=WORDS), ref)], nlp=nlp, labels=LABELS)
    rng = numpy.random.default_rng(seed)
    output = ner.model.get_ref("output_layer")
    output.set_param("W", output.get_param("W") * scale)
    output.set_param("b", rng.normal(size=output.get_param("b").shape).astype("f") * scale)
    crf = ner.model.get_ref("crf")
    for name in ("transitions", "start", "end"):
        shape = crf.get_param(name).shape
        crf.set_param(name, rng.normal(size=shape).astype("f"))
    return nlp


def batch_docs(vocab):
    """Docs of different lengths; two of them split into sentences (chains of
    1 to 4 tokens, so brute force stays small)."""
    return [
        Doc(vocab, words=WORDS[:3]),
        Doc(vocab, words=WORDS, sent_starts=[1, 0, 0, 1, 0, 1, 0]),
        Doc(vocab, words=WORDS[2:4]),
        Doc(vocab, words=WORDS[:5], sent_starts=[1, 0, 1, 1, 0]),
        Doc(vocab, words=WORDS[4:5]),
    ]


def chains(doc):
    if doc.has_annotation("SENT_START"):
        return [(s.start, s.end) for s in doc.sents]
    return [(0, len(doc))]


def enumerate_paths(ner, emission, temperature=1.0):
    """(tags, log score) of every valid tag path of one chain (L, K) under the
    component's CRF, every potential divided by the temperature."""
    crf = ner.model.get_ref("crf")
    trans, start, end = (
        crf.get_param(name).astype("float64") for name in ("transitions", "start", "end")
    )
    tags = ner.tags
    L = emission.shape[0]
    out = []
    for path in itertools.product(range(len(tags)), repeat=L):
        names = [tags[k] for k in path]
        if not is_valid(names, ner.cfg["scheme"]):
            continue
        p = numpy.array(path)
        score = start[p[0]] + end[p[-1]] + emission[numpy.arange(L), p].sum()
        score += trans[p[:-1], p[1:]].sum()
        out.append((names, score / temperature))
    return out


def brute_force(ner, doc, emission, temperature=1.0):
    """Per chain of the doc: {(start, end, label): probability} of every entity
    any path holds, the best path's entities and the sorted path probabilities
    with their entities, in doc token offsets."""
    # Forbidden paths have probability 0 up to exp(NEG): the valid ones carry Z.
    found = []
    scheme = ner.cfg["scheme"]
    for first, last in chains(doc):
        paths = enumerate_paths(ner, emission[first:last].astype("float64"), temperature)
        log_z = numpy.logaddexp.reduce([s for _, s in paths])
        probs = {}
        ranked = sorted(paths, key=lambda item: -item[1])
        for names, score in paths:
            for s, e, label in tags_to_spans(names, ner.cfg["scheme"]):
                key = (first + s, first + e, label)
                probs[key] = numpy.logaddexp(probs.get(key, -numpy.inf), score - log_z)
        paths_out = [
            (
                float(numpy.exp(score - log_z)),
                [(first + s, first + e, lab) for s, e, lab in tags_to_spans(names, scheme)],
            )
            for names, score in ranked
        ]
        found.append(({k: float(numpy.exp(v)) for k, v in probs.items()}, paths_out))
    return found


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_crf_ner_confidences_match_brute_force(scheme):
    nlp = random_nlp(scheme)
    ner = nlp.get_pipe("crf_ner")
    docs = batch_docs(nlp.vocab)
    emissions = [ner.model.ops.to_numpy(x) for x in ner.model.predict(docs)]
    out = list(nlp.pipe(batch_docs(nlp.vocab), batch_size=len(docs)))
    n_ents = 0
    for doc, emission in zip(out, emissions):
        per_chain = brute_force(ner, doc, emission)
        expected_ents, expected_scores = [], []
        for probs, paths in per_chain:
            best = paths[0][1]
            expected_ents.extend(best)
            expected_scores.extend(probs[ent] for ent in best)
        group = doc.spans["crf_ner"]
        assert [(s.start, s.end, s.label_) for s in group] == expected_ents
        assert [(e.start, e.end, e.label_) for e in doc.ents] == expected_ents
        numpy.testing.assert_allclose(group.attrs["scores"], expected_scores, rtol=1e-4)
        assert "raw_scores" not in group.attrs  # temperature 1
        n_ents += len(expected_ents)
        # span_probabilities: every span of every chain, predicted or not,
        # and one across two sentences (0: no path of a chain can hold it).
        spans, expected = [], []
        for probs, _ in per_chain:
            for (s, e, label) in probs:
                spans.append((s, e, label))
                expected.append(probs[(s, e, label)])
        if len(chains(doc)) > 1:
            spans.append((0, len(doc), "PER"))
            expected.append(0.0)
        spans.append((0, 1, "MISC"))  # a label the component does not know
        expected.append(0.0)
        sent_starts = None
        if doc.has_annotation("SENT_START"):
            sent_starts = [bool(t.is_sent_start) for t in doc]
        fresh = Doc(nlp.vocab, words=[t.text for t in doc], sent_starts=sent_starts)
        got = ner.span_probabilities(fresh, spans)
        numpy.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-8)
    assert n_ents >= 3
    # The same numbers when each doc runs alone (no padding effects).
    alone = [nlp(doc) for doc in batch_docs(nlp.vocab)]
    for a, b in zip(alone, out):
        numpy.testing.assert_allclose(
            a.spans["crf_ner"].attrs["scores"], b.spans["crf_ner"].attrs["scores"], rtol=1e-4
        )


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_crf_ner_n_best_paths_match_brute_force(scheme):
    k = 4
    nlp = random_nlp(scheme, n_best=k, seed=2)
    ner = nlp.get_pipe("crf_ner")
    assert ner.n_best == k and "n_best" not in ner.cfg
    docs = batch_docs(nlp.vocab)
    emissions = [ner.model.ops.to_numpy(x) for x in ner.model.predict(docs)]
    out = list(nlp.pipe(batch_docs(nlp.vocab), batch_size=len(docs)))
    for doc, emission in zip(out, emissions):
        group = doc.spans["crf_ner_nbest"]
        per_chain = brute_force(ner, doc, emission)
        assert group.attrs["sentences"] == [list(c) for c in chains(doc)]
        expected_rows = []
        for c, (_, paths) in enumerate(per_chain):
            probs = [p for p, _ in paths[:k]] + [0.0] * (k - len(paths[:k]))
            numpy.testing.assert_allclose(group.attrs["probs"][c], probs, rtol=1e-4, atol=1e-9)
            assert sum(group.attrs["probs"][c]) <= 1.0 + 1e-9
            for rank, (p, ents) in enumerate(paths[:k]):
                expected_rows.extend((s, e, lab, rank + 1, p) for s, e, lab in ents)
        rows = [
            (s.start, s.end, s.label_, r, p)
            for s, r, p in zip(group, group.attrs["ranks"], group.attrs["path_probs"])
        ]
        assert [row[:4] for row in rows] == [row[:4] for row in expected_rows]
        numpy.testing.assert_allclose(
            [row[4] for row in rows], [row[4] for row in expected_rows], rtol=1e-4
        )
        # Path 1 is doc.ents.
        assert [(s, e, lab) for s, e, lab, r, _ in rows if r == 1] == [
            (e.start, e.end, e.label_) for e in doc.ents
        ]
    # n_best = 1 writes no n-best group; bad values are refused.
    assert "crf_ner_nbest" not in random_nlp(scheme)(Doc(nlp.vocab, words=WORDS)).spans
    with pytest.raises(ValueError, match="n_best must be an integer >= 1"):
        random_nlp(scheme, n_best=0)
    empty = nlp(Doc(nlp.vocab, words=[]))
    assert len(empty.spans["crf_ner_nbest"]) == 0


def test_crf_ner_temperature_rescales_scores_and_round_trips(tmp_path):
    nlp = random_nlp("BILUO", seed=6)
    ner = nlp.get_pipe("crf_ner")
    before = nlp(Doc(nlp.vocab, words=WORDS[:4]))
    ner.cfg["temperature"] = 2.5
    after = nlp(Doc(nlp.vocab, words=WORDS[:4]))
    assert [(e.start, e.end, e.label_) for e in after.ents] == [
        (e.start, e.end, e.label_) for e in before.ents
    ]
    assert len(after.ents) >= 1
    group = after.spans["crf_ner"]
    numpy.testing.assert_allclose(
        group.attrs["raw_scores"], before.spans["crf_ner"].attrs["scores"], rtol=1e-5
    )
    assert not numpy.allclose(group.attrs["scores"], group.attrs["raw_scores"])
    # The scores are brute force at T = 2.5.
    emission = ner.model.ops.to_numpy(ner.model.predict([after])[0])
    probs, paths = brute_force(ner, after, emission, temperature=2.5)[0]
    expected = [probs[ent] for ent in paths[0][1]]
    numpy.testing.assert_allclose(group.attrs["scores"], expected, rtol=1e-4)

    def check(other):
        assert other.get_pipe("crf_ner").cfg["temperature"] == 2.5
        doc = other(Doc(other.vocab, words=WORDS[:4]))
        numpy.testing.assert_allclose(
            doc.spans["crf_ner"].attrs["scores"], group.attrs["scores"], rtol=1e-5
        )
        numpy.testing.assert_allclose(
            doc.spans["crf_ner"].attrs["raw_scores"], group.attrs["raw_scores"], rtol=1e-5
        )

    nlp.to_disk(tmp_path / "model")
    check(spacy.load(tmp_path / "model"))
    other = spacy.blank("en")
    other.add_pipe("crf_ner", config={"model": SMALL_MODEL, "scheme": "BILUO"})
    other.from_bytes(nlp.to_bytes())
    check(other)
    check(pickle.loads(pickle.dumps(nlp)))
    # n_best is a setting of the run: a loaded pipeline takes it from the config override.
    loaded = spacy.load(tmp_path / "model", config={"components": {"crf_ner": {"n_best": 3}}})
    assert loaded.get_pipe("crf_ner").n_best == 3
    assert "crf_ner_nbest" in loaded(Doc(loaded.vocab, words=WORDS[:4])).spans
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        ner.cfg["temperature"] = 0.0
        nlp(Doc(nlp.vocab, words=WORDS[:4]))


def test_crf_ner_calibrate_lowers_the_dev_nll():
    """An over-confident random pipeline: the fitted temperature lowers the
    binary NLL of the predicted entities' correctness on the dev docs, and the
    component's new scores give exactly that NLL."""
    nlp = random_nlp("BILUO", scale=12.0, seed=4)
    ner = nlp.get_pipe("crf_ner")
    rng = numpy.random.default_rng(5)
    words = "Anna met Peter in Berlin and Paris with Maria from Rome".split()
    examples = []
    found = 0
    for i in range(30):
        chosen = [str(w) for w in rng.choice(words, size=rng.integers(3, 8))]
        doc = nlp(Doc(nlp.vocab, words=chosen))
        # Gold: half of the predicted entities, so that confidence ~1 is wrong half the time.
        keep = list(doc.ents) if i % 2 == 0 else []
        found += len(doc.ents)
        ref = Doc(nlp.vocab, words=chosen, ents=_iob(len(chosen), keep))
        examples.append(Example(Doc(nlp.vocab, words=chosen), ref))
    assert found >= 20
    result = ner.calibrate(examples)
    assert 0.3 < result["accuracy"] < 0.7
    assert result["temperature"] > 1.0 and ner.cfg["temperature"] == result["temperature"]
    assert result["nll_after"] < result["nll_before"] - 0.05
    assert result["n_entities"] == found
    conf, correct = [], []
    for eg in examples:
        doc = nlp(Doc(nlp.vocab, words=[t.text for t in eg.reference]))
        gold = {(e.start, e.end, e.label_) for e in eg.reference.ents}
        conf.extend(doc.spans["crf_ner"].attrs["scores"])
        correct.extend((s.start, s.end, s.label_) in gold for s in doc.spans["crf_ner"])
        raw = doc.spans["crf_ner"].attrs["raw_scores"]
        assert len(raw) == len(doc.spans["crf_ner"])
    assert binary_nll(conf, correct) == pytest.approx(result["nll_after"], rel=1e-4)


def _iob(n, ents):
    tags = ["O"] * n
    for e in ents:
        tags[e.start:e.end] = [f"B-{e.label_}"] + [f"I-{e.label_}"] * (len(e) - 1)
    return tags
