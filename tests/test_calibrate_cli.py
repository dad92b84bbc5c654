"""Calibrating a saved pipeline: `python -m spacy_rnn calibrate`, the
`spacy_rnn.calibrate.v1` before_to_disk callback, and `evaluate`'s calibration
report with the probabilities of the missed gold entities."""

import json

import numpy
import pytest
import spacy
from helpers import crf_ner_nlp, ner_examples, randomize_params
from spacy.tokens import Doc, DocBin
from spacy.util import registry

from spacy_rnn.calibration import calibrate_pipeline

WORDS = "Anna met Peter in Berlin and Paris with Maria from Rome".split()


def overconfident_nlp():
    """A crf_ner pipeline with random, large weights: confident and often wrong."""
    nlp = crf_ner_nlp(scheme="BILUO")
    nlp.initialize(lambda: ner_examples(nlp))
    ner = nlp.get_pipe("crf_ner")
    randomize_params(ner.model, seed=3, scale=0.5)
    output = ner.model.get_ref("output_layer")
    output.set_param("W", output.get_param("W") * 20)
    output.set_param("b", output.get_param("b") * 20)
    return nlp


def gold_docs(nlp, n=40, seed=0):
    """Docs of random words whose gold holds the pipeline's own entities in
    every other doc (so a confidence near 1 is right about half the time),
    and in the others the same spans with another type, which the pipeline
    misses."""
    rng = numpy.random.default_rng(seed)
    docs = []
    for i in range(n):
        words = [str(w) for w in rng.choice(WORDS, size=rng.integers(3, 8))]
        pred = nlp(Doc(nlp.vocab, words=words))
        tags = ["O"] * len(words)
        for e in pred.ents:
            label = e.label_
            if i % 2:
                label = "LOC" if label != "LOC" else "PER"
            tags[e.start:e.end] = [f"B-{label}"] + [f"I-{label}"] * (len(e) - 1)
        docs.append(Doc(nlp.vocab, words=words, ents=tags))
    return docs


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("calibrate")
    nlp = overconfident_nlp()
    nlp.to_disk(tmp / "model")
    DocBin(docs=gold_docs(nlp, seed=0)).to_disk(tmp / "dev.spacy")
    DocBin(docs=gold_docs(nlp, seed=1)).to_disk(tmp / "test.spacy")
    return tmp


def _cli(args):
    from typer.testing import CliRunner

    from spacy_rnn.cli import _load_commands, app

    _load_commands()
    return CliRunner().invoke(app, [str(a) for a in args])


def test_calibrate_cli_saves_the_fitted_temperature(saved):
    result = _cli(["calibrate", saved / "model", saved / "dev.spacy", "--output",
                   saved / "calibrated"])
    assert result.exit_code == 0, result.output
    assert "temperature" in result.output and "dev NLL" in result.output
    nlp = spacy.load(saved / "model")
    dev = list(DocBin().from_disk(saved / "dev.spacy").get_docs(nlp.vocab))
    expected = calibrate_pipeline(nlp, dev)["crf_ner"]
    assert expected["temperature"] > 1.0 and expected["nll_after"] < expected["nll_before"]
    calibrated = spacy.load(saved / "calibrated")
    assert calibrated.get_pipe("crf_ner").cfg["temperature"] == pytest.approx(
        expected["temperature"]
    )
    # Same entities as before calibration, other confidences.
    words = WORDS[:6]
    a = spacy.load(saved / "model")(Doc(nlp.vocab, words=words))
    b = calibrated(Doc(calibrated.vocab, words=words))
    assert [(e.start, e.end, e.label_) for e in a.ents] == [
        (e.start, e.end, e.label_) for e in b.ents
    ]
    numpy.testing.assert_allclose(
        b.spans["crf_ner"].attrs["raw_scores"], a.spans["crf_ner"].attrs["scores"], rtol=1e-5
    )


def test_calibrate_cli_errors(saved, tmp_path):
    blank = spacy.blank("en")
    blank.to_disk(tmp_path / "blank")
    result = _cli(["calibrate", tmp_path / "blank", saved / "dev.spacy", "-o", tmp_path / "x"])
    assert result.exit_code == 1
    assert "no component with a temperature" in " ".join(result.output.split())
    result = _cli(["calibrate", saved / "model", tmp_path / "nope.spacy", "-o", tmp_path / "x"])
    assert result.exit_code == 1 and "file not found" in " ".join(result.output.split())


def test_calibrate_callback_fits_before_saving(saved):
    nlp = spacy.load(saved / "model")
    callback = registry.resolve(
        {"cb": {"@callbacks": "spacy_rnn.calibrate.v1", "dev_path": str(saved / "dev.spacy")}}
    )["cb"]
    calibrated = callback(nlp)
    # The copy that gets saved is calibrated; the pipeline in training is not touched.
    assert calibrated is not nlp and nlp.get_pipe("crf_ner").temperature == 1.0
    assert "temperature" not in nlp.get_pipe("crf_ner").cfg
    dev = list(DocBin().from_disk(saved / "dev.spacy").get_docs(nlp.vocab))
    fitted = calibrated.get_pipe("crf_ner").cfg["temperature"]
    assert fitted > 1.0
    assert calibrate_pipeline(spacy.load(saved / "model"), dev)["crf_ner"]["temperature"] == (
        pytest.approx(fitted)
    )
    with pytest.raises(ValueError, match="dev_path .* not found"):
        registry.resolve({"cb": {"@callbacks": "spacy_rnn.calibrate.v1", "dev_path": "nope"}})


def test_evaluate_cli_reports_calibration_and_missed_entities(saved):
    pytest.importorskip("matplotlib")
    out = saved / "eval"
    result = _cli([
        "evaluate", saved / "test.spacy", "--model", saved / "model", "--output",
        out / "m.json", "--report", out / "report.md", "--plots", out / "plots",
    ])
    assert result.exit_code == 0, result.output
    assert "Calibration of the ner confidences" in result.stdout
    metrics = json.loads((out / "m.json").read_text())
    part = metrics["ner"]["calibration"]
    assert part["scores"]["n"] > 10 and "raw_scores" not in part  # temperature 1
    assert 0.2 < part["scores"]["accuracy"] < 0.8
    # The missed gold entities and the probability the model gave each.
    nlp = spacy.load(saved / "model")
    ner = nlp.get_pipe("crf_ner")
    gold = list(DocBin().from_disk(saved / "test.spacy").get_docs(nlp.vocab))
    probs = []
    for doc in gold:
        pred = nlp(Doc(nlp.vocab, words=[t.text for t in doc]))
        found = {(e.start, e.end, e.label_) for e in pred.ents}
        missed = [(e.start, e.end, e.label_) for e in doc.ents
                  if (e.start, e.end, e.label_) not in found]
        probs.extend(ner.span_probabilities(Doc(nlp.vocab, words=[t.text for t in doc]), missed))
    assert part["missed"]["n"] == len(probs) >= 5
    assert part["missed"]["mean_probability"] == pytest.approx(numpy.mean(probs), rel=1e-4)
    assert part["missed"]["mean_probability"] < part["scores"]["mean_confidence"]
    report = (out / "report.md").read_text()
    assert "## Calibration of the ner confidences" in report
    assert "Missed gold entities" in report and "plots/ner_reliability.png" in report
    assert (out / "plots" / "ner_reliability.png").stat().st_size > 1000
