"""crf_ner over long documents with BiRNNEncoder.v2's windows: entities stay
valid across window cuts (the CRF decodes whole chains, whatever the
encoder's windows), and a doc that fits one window is tagged as without
windows."""
import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

from helpers import crf_tagger_config, tok2vec_config

WINDOW, CONTEXT = 8, 2  # cores of 4 tokens: cuts after tokens 3, 7, 11, ...

MODEL = crf_tagger_config(
    tok2vec=tok2vec_config(
        32,
        char_width=16,
        char_encoder="lstm",
        encode_version="v2",
        encode_args={"window": WINDOW, "window_context": CONTEXT},
    )
)

# Entities of 2-5 tokens among filler words; in the 60-token doc made of
# these sentences many of them cross a window cut.
SENTENCES = [
    (["the", "United", "Nations", "Security", "Council", "met", "today", "."], (1, 5, "ORG")),
    (["we", "saw", "New", "York", "City", "yesterday", "."], (2, 5, "LOC")),
    (["a", "talk", "by", "Peter", "Blackburn", "."], (3, 5, "PER")),
    (["he", "flew", "to", "Los", "Angeles", "then", "home", "again", "."], (3, 5, "LOC")),
]


def make_doc(vocab, order, with_ents=True):
    words, ents = [], []
    for i in order:
        sent, (start, end, label) = SENTENCES[i]
        ents.append((len(words) + start, len(words) + end, label))
        words.extend(sent)
    doc = Doc(vocab, words=words)
    if with_ents:
        doc.ents = [doc.char_span(doc[s].idx, doc[e - 1].idx + len(doc[e - 1]), label=lab)
                    for s, e, lab in ents]
    return doc, ents


@pytest.fixture(scope="module")
def trained():
    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner", config={"model": MODEL, "scheme": "BILUO"})
    orders = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]]
    examples = []
    for order in orders:
        reference, _ = make_doc(nlp.vocab, order)
        examples.append(Example(nlp.make_doc(reference.text), reference))
    nlp.initialize(lambda: examples)
    optimizer = Adam(0.01)
    for _ in range(60):
        nlp.update(examples, sgd=optimizer)
    return nlp


def test_entities_valid_across_window_cuts(trained):
    nlp = trained
    order = [0, 1, 2, 3, 2, 0, 3, 1, 1, 2]
    doc, gold = make_doc(nlp.vocab, order, with_ents=False)
    assert len(doc) > 6 * WINDOW
    stride = WINDOW - 2 * CONTEXT
    crossing = [(s, e, lab) for s, e, lab in gold if s // stride != (e - 1) // stride]
    assert len(crossing) >= 5  # the check below is about entities cut by windows
    doc = nlp(doc)
    found = [(ent.start, ent.end, ent.label_) for ent in doc.ents]
    # valid: inside the doc, in order, not overlapping, known labels, the same
    # as the span group written beside them
    assert all(0 <= s < e <= len(doc) for s, e, _ in found)
    assert all(a[1] <= b[0] for a, b in zip(found, found[1:]))
    assert {lab for _, _, lab in found} <= {"ORG", "LOC", "PER"}
    group = doc.spans["crf_ner"]
    assert [(s.start, s.end, s.label_) for s in group] == found
    assert len(group.attrs["scores"]) == len(found)
    # and the entities that cross a cut are found whole
    assert set(crossing) <= set(found), (crossing, found)


def test_windows_change_nothing_when_the_doc_fits(trained):
    nlp = trained
    encoder = next(node for node in nlp.get_pipe("crf_ner").model.walk()
                   if node.name == "birnn_encoder")
    short = Doc(nlp.vocab, words=SENTENCES[2][0])
    assert len(short) <= WINDOW
    long_doc, _ = make_doc(nlp.vocab, [0, 1, 2, 3], with_ents=False)
    windowed = nlp.get_pipe("crf_ner").model.predict([short, long_doc])
    try:
        encoder.attrs["window"] = 0
        whole = nlp.get_pipe("crf_ner").model.predict([short, long_doc])
    finally:
        encoder.attrs["window"] = WINDOW
    numpy.testing.assert_allclose(windowed[0], whole[0], atol=1e-5, rtol=0)
    # the long doc is read in windows, so the check above can fail
    assert numpy.abs(windowed[1] - whole[1]).max() > 1e-4
