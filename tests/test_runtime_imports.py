"""A light runtime: loading and running a saved pipeline with `crf_ner` or with
`spacy_rnn.RNNTextCat` imports spaCy, thinc, torch, numpy and the model code, nothing of
the evaluation lab (scikit-learn, sklearn-crfsuite, matplotlib, nervaluate, seqeval, nltk).

The pipelines are built and saved here; a fresh interpreter loads them with `spacy.load`
alone (the package comes in through its entry points), runs them, and reports which lab
modules ended up in `sys.modules`.
"""
import json

import pytest
from helpers import (
    NER_SENTENCES,
    TEXTCAT_DATA,
    crf_ner_nlp,
    ner_examples,
    rnn_textcat_config,
    run_probe,
    textcat_examples,
    textcat_nlp,
)

LAB_MODULES = ("sklearn", "sklearn_crfsuite", "matplotlib", "nervaluate", "seqeval", "nltk")

PROBE = r"""
import json, sys
import spacy

lab = json.loads(sys.argv[1])
report = {"explicit import": "spacy_rnn" in sys.modules, "runs": {}}
for path in sys.argv[2:]:
    nlp = spacy.load(path)
    docs = [nlp("Anna went to Paris with Peter Blackburn ."), *nlp.pipe(["a great film", "dull"])]
    report["runs"][path] = {
        "pipe_names": nlp.pipe_names,
        "ents": [[(e.start, e.end, e.label_) for e in doc.ents] for doc in docs],
        "cats": [doc.cats for doc in docs],
    }
report["lab"] = sorted(
    name for name in sys.modules if name.split(".")[0] in lab
)
report["plugin"] = sorted(name for name in sys.modules if name.startswith("spacy_rnn"))
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def saved_pipelines(tmp_path_factory):
    """A crf_ner pipeline (whose config names the seqeval scorer, the one registered
    function that uses the lab) and a textcat pipeline with RNNTextCat.v2, initialized on
    the hand-made examples and saved."""
    root = tmp_path_factory.mktemp("runtime")
    ner = crf_ner_nlp(scorer={"@scorers": "spacy_rnn.seqeval_scorer.v1"})
    ner.initialize(lambda: ner_examples(ner, NER_SENTENCES[:3]))
    ner.to_disk(root / "crf_ner")
    textcat = textcat_nlp(rnn_textcat_config("v2", exclusive_classes=True))
    textcat.initialize(lambda: textcat_examples(textcat, TEXTCAT_DATA[:3]))
    textcat.to_disk(root / "textcat")
    return [root / "crf_ner", root / "textcat"]


@pytest.fixture(scope="module")
def report(saved_pipelines):
    return run_probe(PROBE, json.dumps(LAB_MODULES), *map(str, saved_pipelines))


def test_runtime_pipelines_load_and_run_through_entry_points(report, saved_pipelines):
    ner_path, textcat_path = map(str, saved_pipelines)
    assert report["explicit import"] is False
    assert "spacy_rnn.pipeline.crf_ner" in report["plugin"]
    assert "spacy_rnn.ml.textcat" in report["plugin"]
    ner, textcat = report["runs"][ner_path], report["runs"][textcat_path]
    assert ner["pipe_names"] == ["crf_ner"] and textcat["pipe_names"] == ["textcat"]
    # the text classifier ran: exclusive classes sum to one on every doc
    for cats in textcat["cats"]:
        assert set(cats) == {"POS", "NEG"} and abs(sum(cats.values()) - 1.0) < 1e-5, cats


def test_runtime_imports_nothing_of_the_lab(report):
    packages = sorted({name.split(".")[0] for name in report["lab"]})
    assert report["lab"] == [], (
        f"loading and running the pipelines imported lab modules: {packages} "
        "(find the culprit with `python -X importtime -c 'import spacy_rnn'`)"
    )
