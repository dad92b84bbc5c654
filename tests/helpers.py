"""Small pipelines, configs, examples and corpus paths that many tests build.

Import it from any test file (tests/ is on the path through tests/conftest.py):

    from helpers import crf_ner_nlp, ner_examples, tok2vec_config

- Corpora: `DATA_DIR` (../shared/data beside the repo, or env SPACY_RNN_DATA) and
  `data_path(*parts)`, which skips the test when the path is absent, except under
  CI=true, where a missing corpus fails it. `head_lines` and `read_conll_columns`
  cut small slices of them.
- Configs (plain dicts, ready for `add_pipe(config={"model": ...})` or
  `registry.resolve`): `tok2vec_config` (spacy.Tok2Vec.v2 with CharWordEmbed.v1
  and BiRNNEncoder.v1, small by default), `crf_tagger_config`, `rnn_textcat_config`.
- Pipelines: `crf_ner_nlp`, `textcat_nlp` (blank English with one component,
  not initialized).
- Data: `NER_SENTENCES` / `ner_examples`, `TEXTCAT_DATA` / `textcat_examples`,
  `ent_tuples`, `crf_ner_record` (what crf_ner wrote on a doc, as JSON).
- Processes: `run_probe`, a script in a fresh interpreter (what a new process
  imports, registers and resolves) whose last output line is JSON.
- Weights: `randomize_params`, for tests that compare two models' outputs: a
  zero-initialised layer (the emission layer of CRFTagger, the output layer of
  RNNTextCat) makes every output equal whatever the layers before it compute.
"""
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy
import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Model, fix_random_seed

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SPACY_RNN_DATA", ROOT.parent / "shared" / "data"))


# --------------------------------------------------------------------------- corpora


def in_ci() -> bool:
    """True under CI=true, where a test may not skip for want of a corpus."""
    return os.environ.get("CI", "").lower() == "true"


def data_path(*parts: str) -> Path:
    """DATA_DIR joined with `parts` (e.g. data_path("conll2003", "train.txt")).

    When it does not exist, the calling test is skipped, or failed under
    CI=true: CI must run every corpus test, a laptop without the corpora need not.
    """
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        message = (
            f"corpus not found: {path} (set SPACY_RNN_DATA to the folder holding "
            "conll2003/ and sst2/)"
        )
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def head_lines(src: Path, dest: Path, n_rows: int, header: bool = True) -> Path:
    """Write the first n_rows lines of `src` to `dest` (after its header line
    when `header`), bytes and line endings unchanged; return `dest`."""
    with Path(src).open(encoding="utf8", newline="") as file_:
        lines = [line for _, line in zip(range(n_rows + int(header)), file_)]
    Path(dest).write_text("".join(lines), encoding="utf8", newline="")
    return Path(dest)


def read_conll_columns(path: Path, limit: int) -> List[Tuple[List[str], List[str], List[str]]]:
    """(words, POS tags, IOB entity tags) of the first `limit` sentences of a
    CoNLL-2003 file (columns: token POS chunk NER); -DOCSTART- lines are skipped."""
    sentences: List[Tuple[List[str], List[str], List[str]]] = []
    words: List[str] = []
    pos: List[str] = []
    ner: List[str] = []
    with Path(path).open(encoding="utf8") as file_:
        for line in file_:
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if words:
                    sentences.append((words, pos, ner))
                    if len(sentences) >= limit:
                        break
                words, pos, ner = [], [], []
                continue
            words.append(fields[0])
            pos.append(fields[1])
            ner.append(fields[-1])
    if words and len(sentences) < limit:
        sentences.append((words, pos, ner))
    return sentences


# --------------------------------------------------------------------------- configs


def tok2vec_config(
    width: int = 16,
    depth: int = 1,
    *,
    encode_width: Optional[int] = None,
    cell: Optional[str] = None,
    bidirectional: Optional[bool] = None,
    attrs: Sequence[str] = ("NORM", "SHAPE"),
    rows: Sequence[int] = (500, 100),
    char_width: int = 8,
    char_embed_size: int = 8,
    embed_version: str = "v1",
    encode_version: str = "v1",
    encode_args: Optional[Dict[str, Any]] = None,
    **embed: Any,
) -> Dict[str, Any]:
    """A small spacy.Tok2Vec.v2 block: CharWordEmbed.<embed_version> (`width`,
    hash tables `attrs`/`rows`, a char encoder of `char_width`, no static
    vectors, no dropout) >> BiRNNEncoder.<encode_version> (`encode_width`,
    default `width`; `depth`).

    `cell` and `bidirectional` are written only when given (else the encoder's
    defaults); the encoder's other arguments go in `encode_args` (e.g. window,
    window_context for v2); any other CharWordEmbed argument goes in `embed`
    (e.g. word_rows=50, char_encoder=None, dropout=0.2).
    """
    encode: Dict[str, Any] = {
        "@architectures": f"spacy_rnn.BiRNNEncoder.{encode_version}",
        "width": width if encode_width is None else encode_width,
        "depth": depth,
    }
    if cell is not None:
        encode["cell"] = cell
    if bidirectional is not None:
        encode["bidirectional"] = bidirectional
    encode.update(encode_args or {})
    return {
        "@architectures": "spacy.Tok2Vec.v2",
        "embed": {
            "@architectures": f"spacy_rnn.CharWordEmbed.{embed_version}",
            "width": width,
            "attrs": list(attrs),
            "rows": list(rows),
            "include_static_vectors": False,
            "char_width": char_width,
            "char_embed_size": char_embed_size,
            "dropout": 0.0,
            **embed,
        },
        "encode": encode,
    }


def crf_tagger_config(
    version: str = "v1", tok2vec: Optional[Dict[str, Any]] = None, **kwargs: Any
) -> Dict[str, Any]:
    """The model block of crf_ner: spacy_rnn.CRFTagger.<version> over `tok2vec`
    (default `tok2vec_config()`), nO left to the pipe; kwargs are the
    architecture's other arguments (dropout for v2, lm_words/lm_weight for v3)."""
    return {
        "@architectures": f"spacy_rnn.CRFTagger.{version}",
        "nO": None,
        "tok2vec": tok2vec_config() if tok2vec is None else tok2vec,
        **kwargs,
    }


def rnn_textcat_config(
    version: str = "v1", tok2vec: Optional[Dict[str, Any]] = None, **kwargs: Any
) -> Dict[str, Any]:
    """The model block of textcat: spacy_rnn.RNNTextCat.<version> over `tok2vec`
    (default `tok2vec_config()`); kwargs are its other arguments (pooling,
    exclusive_classes, dropout; lm_words/lm_weight for v2)."""
    return {
        "@architectures": f"spacy_rnn.RNNTextCat.{version}",
        "tok2vec": tok2vec_config() if tok2vec is None else tok2vec,
        **kwargs,
    }


# --------------------------------------------------------------------------- pipelines


def crf_ner_nlp(model: Optional[Dict[str, Any]] = None, **component: Any) -> Language:
    """spacy.blank("en") with one crf_ner pipe of `model` (default
    `crf_tagger_config()`); `component` holds the pipe's other settings
    (scheme, labels, ...). Not initialized."""
    nlp = spacy.blank("en")
    config = {"model": crf_tagger_config() if model is None else model, **component}
    nlp.add_pipe("crf_ner", config=config)
    return nlp


def textcat_nlp(
    model: Optional[Dict[str, Any]] = None, factory: str = "textcat"
) -> Language:
    """spacy.blank("en") with a pipe named "textcat" made by `factory`
    ("textcat" or "textcat_multilabel") over `model` (default
    `rnn_textcat_config()`, with exclusive_classes matching the factory).
    Not initialized."""
    if model is None:
        model = rnn_textcat_config(exclusive_classes=factory == "textcat")
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, name="textcat", config={"model": model})
    return nlp


# --------------------------------------------------------------------------- data

# Words and their IOB entity tags.
NER_SENTENCES: List[Tuple[List[str], List[str]]] = [
    (["Peter", "Blackburn", "went", "to", "Brussels", "."],
     ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]),
    (["EU", "rejects", "German", "call"], ["B-ORG", "O", "B-MISC", "O"]),
    (["Anna", "lives", "in", "Paris", "."], ["B-PER", "O", "O", "B-LOC", "O"]),
    (["Nothing", "happened", "here", "."], ["O", "O", "O", "O"]),
]

# Text and its label (POS or NEG): words that tell the labels apart at once.
TEXTCAT_DATA: List[Tuple[str, str]] = [
    ("a great and moving film", "POS"),
    ("a dull and tired film", "NEG"),
    ("great fun", "POS"),
    ("tired and dull", "NEG"),
]


def ner_examples(
    nlp: Language, sentences: Iterable[Tuple[List[str], List[str]]] = NER_SENTENCES
) -> List[Example]:
    """One Example per (words, IOB tags), its predicted doc unannotated."""
    return [
        Example(Doc(nlp.vocab, words=words), Doc(nlp.vocab, words=words, ents=tags))
        for words, tags in sentences
    ]


def textcat_examples(
    nlp: Language,
    data: Iterable[Tuple[str, str]] = TEXTCAT_DATA,
    labels: Sequence[str] = ("POS", "NEG"),
) -> List[Example]:
    """One Example per (text, label), with cats 1.0 for the label, 0.0 for the
    other `labels`."""
    return [
        Example.from_dict(
            nlp.make_doc(text), {"cats": {name: float(name == label) for name in labels}}
        )
        for text, label in data
    ]


def ent_tuples(docs: Iterable[Doc]) -> List[List[Tuple[int, int, str]]]:
    """(start, end, label) of each doc's entities, for comparing predictions."""
    return [[(e.start, e.end, e.label_) for e in doc.ents] for doc in docs]


def crf_ner_record(doc: Doc, digits: Optional[int] = None) -> Dict[str, Any]:
    """What crf_ner wrote on `doc`, as JSON: its text, sentence starts,
    entities, the span group and the group's scores (rounded to `digits` when
    given). The format of tests/data/pinned_crf_ner/predictions.json."""
    group = doc.spans["crf_ner"]
    scores = [float(score) for score in group.attrs["scores"]]
    return {
        "text": doc.text,
        "sents": [sent.start for sent in doc.sents] if len(doc) else [],
        "ents": [[ent.start, ent.end, ent.label_] for ent in doc.ents],
        "spans": [[span.start, span.end, span.label_] for span in group],
        "scores": scores if digits is None else [round(score, digits) for score in scores],
    }


# --------------------------------------------------------------------------- processes


def run_probe(code: str, *args: str, timeout: float = 600) -> Any:
    """Run `code` with `args` (sys.argv[1:]) in a fresh Python interpreter in
    the repository root and return the JSON of the last line it prints; the
    test fails with the tail of its stderr when it exits non-zero. For checks
    of what a new process imports or registers, which the test process (with
    everything already imported) cannot show."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- threads


def count_direction_pairs(monkeypatch: Any) -> List[bool]:
    """Let our bidirectional layers run their two directions side by side (two
    CPUs for the thread policy, batches of any size) and RETURN the list to
    which each layer's call appends whether it did (`threads.run_pair`)."""
    from spacy_rnn.ml import encode, threads

    monkeypatch.setattr(threads, "available_cpus", lambda *args, **kwargs: 2)
    calls: List[bool] = []

    def counted_pair(first: Any, second: Any, threaded: bool = True) -> Any:
        calls.append(threaded and threads.parallel_directions())
        return threads.run_pair(first, second, threaded)

    monkeypatch.setattr(encode, "run_pair", counted_pair)
    monkeypatch.setattr(encode, "PARALLEL_MIN_TOKENS", 1)
    return calls


# --------------------------------------------------------------------------- weights


def rnn_textcat_nlp(version: str, factory: str = "textcat", **model: Any) -> Language:
    """A blank pipeline with a `factory` textcat on RNNTextCat.`version` (small
    widths; exclusive classes for `textcat`), not initialized."""
    config = rnn_textcat_config(version, exclusive_classes=factory == "textcat", **model)
    return textcat_nlp(config, factory=factory)


def initialized_rnn_textcat(
    version: str, factory: str = "textcat", seed: int = 0, **model: Any
) -> Language:
    """`rnn_textcat_nlp` initialized on `textcat_examples`, its thinc weights
    drawn at random (seeded), so both paths of the model give non-trivial output."""
    fix_random_seed(seed)
    nlp = rnn_textcat_nlp(version, factory, **model)
    examples = textcat_examples(nlp)
    nlp.initialize(lambda: examples)
    randomize_params(nlp.get_pipe("textcat").model, seed=seed, scale=0.3)
    return nlp


def randomize_params(model: Model, seed: int = 0, scale: float = 0.5) -> Model:
    """Set every thinc parameter of `model` and the nodes under it to
    N(0, scale) values (float32, seeded); torch modules inside shims keep theirs.
    Returns `model`."""
    rng = numpy.random.default_rng(seed)
    for node in model.walk():
        for name in node.param_names:
            if node.has_param(name):
                shape = node.get_param(name).shape
                values = rng.normal(0.0, scale, shape).astype("float32")
                node.set_param(name, node.ops.asarray(values))
    return model
