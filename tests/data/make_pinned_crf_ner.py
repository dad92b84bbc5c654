"""Build the pinned `crf_ner` fixture of tests/pipeline/test_crf_ner_pinned.py.

Trains two tiny pipelines (sentencizer + crf_ner, one in the BIO scheme and
one in BILUO) for a few updates on hand-written sentences, saves them under
tests/data/pinned_crf_ner/{bio,biluo}/ and writes what they predict on a few
texts (entities, their confidences, the span group) to
tests/data/pinned_crf_ner/predictions.json.

The fixture pins the component's output: a change to decoding, confidences
or serialization that alters a prediction or a score fails the test. Rebuild
it only when such a change is intended:

    python tests/data/make_pinned_crf_ner.py
"""

import json
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import spacy
from spacy.language import Language
from spacy.training import Example
from thinc.api import fix_random_seed

import spacy_rnn  # noqa: F401  (registers the architectures and the factory)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for the record format shared with the test
from helpers import crf_ner_record  # noqa: E402
OUT = HERE / "pinned_crf_ner"

# Small widths: the saved fixture stays far under 1 MB.
TINY_MODEL = {
    "@architectures": "spacy_rnn.CRFTagger.v1",
    "nO": None,
    "tok2vec": {
        "@architectures": "spacy.Tok2Vec.v2",
        "embed": {
            "@architectures": "spacy_rnn.CharWordEmbed.v2",
            "width": 16,
            "attrs": ["PREFIX", "SUFFIX", "SHAPE"],
            "rows": [50, 50, 50],
            "include_static_vectors": False,
            "char_encoder": "lstm",
            "char_width": 8,
            "char_embed_size": 8,
            "max_chars": 12,
            "char_window": 3,
            "char_rows": 100,
            "dropout": 0.0,
            "word_rows": 200,
            "word_attr": "NORM",
            "word_dropout": 1.0,
            "tune_vectors": 0,
        },
        "encode": {
            "@architectures": "spacy_rnn.BiRNNEncoder.v1",
            "width": 16,
            "depth": 1,
            "cell": "lstm",
            "bidirectional": True,
            "dropout": 0.0,
        },
    },
}

# (text, [(start_char, end_char, label)]); several docs hold two sentences.
TRAIN: List[Tuple[str, List[Tuple[int, int, str]]]] = [
    ("Peter Blackburn met Anna Smith in Berlin.", [(0, 15, "PER"), (20, 30, "PER"),
                                                   (34, 40, "LOC")]),
    ("The European Commission said on Thursday it disagreed.", [(4, 23, "ORG")]),
    ("Germany imports beef from Britain. Anna sold it.", [(0, 7, "LOC"), (26, 33, "LOC"),
                                                          (35, 39, "PER")]),
    ("John Lennon lived in New York City.", [(0, 11, "PER"), (21, 34, "LOC")]),
    (
        "Reuters reported that Microsoft bought a firm in Paris.",
        [(0, 7, "ORG"), (22, 31, "ORG"), (49, 54, "LOC")],
    ),
    (
        "Maria flew to Madrid. She met Carlos Garcia there.",
        [(0, 5, "PER"), (14, 20, "LOC"), (30, 43, "PER")],
    ),
    ("The United Nations met in Geneva on Monday.", [(4, 18, "ORG"), (26, 32, "LOC")]),
    ("Nothing happened today.", []),
    ("Tom Hanks works for Sony in Tokyo.", [(0, 9, "PER"), (20, 24, "ORG"), (28, 33, "LOC")]),
    ("Paris is in France. London is in England.", [(0, 5, "LOC"), (12, 18, "LOC"),
                                                   (20, 26, "LOC"), (33, 40, "LOC")]),
]

# Seen and unseen words, one and two sentences, an empty text and a long one.
TEXTS = [
    "Peter Blackburn met Anna Smith in Berlin.",
    "Maria Lopez works for Microsoft in London. The Commission met in Madrid.",
    "Tom flew from Tokyo to Geneva with John Smith of Reuters.",
    "",
    "nothing to see here",
    "The United Nations and the European Commission met Carlos in Paris, France, "
    "on Monday. Anna Garcia said Sony would buy a firm in New York City. Britain "
    "agreed.",
]

SCHEMES = {"bio": "BIO", "biluo": "BILUO"}
N_UPDATES = 12


def make_nlp(scheme: str) -> Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("crf_ner", config={"model": TINY_MODEL, "scheme": scheme})
    return nlp


def examples(nlp: Language) -> List[Example]:
    out = []
    for text, ents in TRAIN:
        predicted = nlp.make_doc(text)
        reference = predicted.copy()
        reference.ents = [reference.char_span(s, e, label=lab, alignment_mode="strict")
                          for s, e, lab in ents]
        out.append(Example(predicted, reference))
    return out


def predictions(nlp: Language) -> List[Dict]:
    """What the pipeline writes on TEXTS, in one batch."""
    out = []
    for doc in nlp.pipe(TEXTS, batch_size=len(TEXTS)):
        out.append(crf_ner_record(doc, digits=8))
    return out


def build() -> Dict[str, List[Dict]]:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    record = {}
    for name, scheme in SCHEMES.items():
        fix_random_seed(0)
        nlp = make_nlp(scheme)
        train = examples(nlp)
        optimizer = nlp.initialize(lambda: train)
        optimizer.learn_rate = 0.02
        for _ in range(N_UPDATES):
            nlp.update(train, sgd=optimizer)
        nlp.to_disk(OUT / name)
        record[name] = predictions(spacy.load(OUT / name))
    with (OUT / "predictions.json").open("w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    return record


if __name__ == "__main__":
    for name, docs in build().items():
        print(name)
        for doc in docs:
            print("  ", doc["ents"], doc["scores"])
