"""Pinned output of saved `crf_ner` pipelines (BIO and BILUO): the entities,
the span group and each entity's confidence must be what they were when the
fixture was built (tests/data/make_pinned_crf_ner.py), and the loaded model
must serialize to the bytes it was loaded from. A refactor of decoding,
confidences or serialization that changes any of them fails here."""

import json
from pathlib import Path

import pytest
import spacy
from spacy.util import load_model_from_config

from helpers import crf_ner_record

FIXTURE = Path(__file__).resolve().parent.parent / "data" / "pinned_crf_ner"
EXPECTED = json.loads((FIXTURE / "predictions.json").read_text(encoding="utf-8"))
SCHEMES = {"bio": "IOB2", "biluo": "BILUO"}


# The confidences come from the encoder's float32 matrix products, whose last
# bits differ between CPU instruction sets (pinned on an AMD EPYC, the BILUO
# scores differ by 1.1e-6 on an Intel Xeon with the same code) and between
# batched and single-doc calls: 1e-5 absorbs float32 rounding, while a real
# change to decoding or confidences moves a score by far more.
FLOAT32_TOLERANCE = 1e-5


def assert_same(got: list, expected: list, tolerance: float = FLOAT32_TOLERANCE) -> None:
    assert len(got) == len(expected)
    for doc, want in zip(got, expected):
        assert doc["text"] == want["text"]
        assert doc["sents"] == want["sents"], doc["text"]
        assert doc["ents"] == want["ents"], doc["text"]
        assert doc["spans"] == want["spans"], doc["text"]
        assert doc["scores"] == pytest.approx(want["scores"], abs=tolerance, rel=0), doc["text"]


@pytest.fixture(scope="module", params=sorted(SCHEMES))
def pinned(request):
    return request.param, spacy.load(FIXTURE / request.param)


def test_crf_ner_pinned_fixture_is_meaningful():
    """The fixture pins entities of several labels, with confidences away
    from 0 and 1, in both schemes; a degenerate fixture would pin nothing."""
    for name in SCHEMES:
        docs = EXPECTED[name]
        scores = [s for doc in docs for s in doc["scores"]]
        labels = {ent[2] for doc in docs for ent in doc["ents"]}
        assert len(scores) >= 10 and len(labels) >= 2
        assert all(0.05 < s < 0.95 for s in scores)
        assert any(len(doc["sents"]) > 1 and doc["ents"] for doc in docs)
        assert any(ent[1] - ent[0] > 1 for doc in docs for ent in doc["ents"])
    size = sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file())
    assert size < 1_000_000


def test_crf_ner_pinned_predictions_in_one_batch(pinned):
    name, nlp = pinned
    assert nlp.get_pipe("crf_ner").cfg["scheme"] == SCHEMES[name]
    texts = [doc["text"] for doc in EXPECTED[name]]
    got = [crf_ner_record(doc) for doc in nlp.pipe(texts, batch_size=len(texts))]
    assert_same(got, EXPECTED[name])


def test_crf_ner_pinned_predictions_one_doc_at_a_time(pinned):
    """Batching changes no entity; the confidences move by float32 rounding
    (the encoder's batched matrix products) alone."""
    name, nlp = pinned
    got = [crf_ner_record(nlp(doc["text"])) for doc in EXPECTED[name]]
    assert_same(got, EXPECTED[name])


def test_crf_ner_pinned_serialization_is_unchanged(pinned):
    """The loaded component writes back the bytes of the saved files."""
    name, nlp = pinned
    ner = nlp.get_pipe("crf_ner")
    assert ner.model.to_bytes() == (FIXTURE / name / "crf_ner" / "model").read_bytes()
    saved_cfg = json.loads((FIXTURE / name / "crf_ner" / "cfg").read_text(encoding="utf-8"))
    assert ner.cfg == saved_cfg
    reloaded = load_model_from_config(nlp.config)
    reloaded.from_bytes(nlp.to_bytes())
    assert reloaded.get_pipe("crf_ner").model.to_bytes() == ner.model.to_bytes()
