"""The classic machine-learning baselines every RNN result is shown next to.

NER works per sentence of the reference docs, on hand-made token features
(word, lowercase, prefixes/suffixes, shape, title/upper/digit flags and the
neighbouring words), either with a `DictVectorizer` + `LogisticRegression`
(each token classified on its own) or with a linear-chain CRF on the same
features (sklearn-crfsuite). Text classification uses TF-IDF word 1-2 grams +
`LogisticRegression`. Predictions are written as DocBin copies of the gold
docs, so `python -m spacy_rnn evaluate GOLD --predictions PRED` scores them
exactly like a spaCy pipeline.

Public API
----------
token_features(words, i) -> Dict[str, Any]
sentence_features(words) -> List[Dict[str, Any]]
doc_sentences(docs) -> List[(doc_index, start, words, iob_tags)]
train_ner_baseline(train_docs, kind="crf"|"lr", **params) -> NERBaseline
    NERBaseline.predict_tags(list of word lists) -> list of tag lists
predict_ner(model, docs) -> List[Doc]
    Copies of `docs` (words, spaces, sentence starts) whose ents are the model's.
    Per-token predictions can form invalid IOB2 (`O I-PER`); they become
    entities by conlleval's chunking (seqeval's default mode), so the written
    docs hold exactly the entities conlleval would score.
train_textcat_baseline(train_docs, **params) -> TextcatBaseline
predict_textcat(model, docs) -> List[Doc]  (doc.cats = class probabilities)
run_ner_baseline(train, dev, test, output_dir, kinds=("lr", "crf")) -> Dict[str, Dict]
run_textcat_baseline(train, dev, test, output_dir, c=None) -> Dict[str, Dict]
    Train (NER: fixed settings; textcat: C chosen on dev accuracy unless given),
    predict dev and test, write `<system>-<split>.spacy` and
    `<system>-<split>.json` (metrics from `spacy_rnn.evaluation`) under
    output_dir, return {"<system>-<split>": metrics}.
"""

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from seqeval.metrics.sequence_labeling import get_entities
from spacy.tokens import Doc, Span

from .evaluation import copy_doc, evaluate_ner, evaluate_textcat, save_docs, write_metrics
from .extras import require

Features = Dict[str, Any]
NER_KINDS = ("lr", "crf")


# --------------------------------------------------------------------------- features


def word_shape(word: str) -> str:
    """Collapsed shape: "McDonald's" -> "XxXx'x", "1996" -> "d", "U.S." -> "X.X."."""
    shape = re.sub("[A-Z]", "X", word)
    shape = re.sub("[a-z]", "x", shape)
    shape = re.sub("[0-9]", "d", shape)
    return re.sub(r"(.)\1+", r"\1", shape)


def _word_feats(word: str, prefix: str) -> Features:
    return {
        f"{prefix}lower": word.lower(),
        f"{prefix}shape": word_shape(word),
        f"{prefix}title": word.istitle(),
        f"{prefix}upper": word.isupper(),
    }


def token_features(words: Sequence[str], i: int) -> Features:
    """Features of token i in a sentence: the word, its form, and its neighbours."""
    word = words[i]
    feats: Features = {
        "bias": 1.0,
        "word": word,
        "lower": word.lower(),
        "prefix2": word[:2],
        "prefix3": word[:3],
        "suffix2": word[-2:],
        "suffix3": word[-3:],
        "shape": word_shape(word),
        "title": word.istitle(),
        "upper": word.isupper(),
        "digit": word.isdigit(),
        "has_digit": any(c.isdigit() for c in word),
        "hyphen": "-" in word,
        "first": i == 0,
    }
    for offset in (-2, -1, 1, 2):
        j = i + offset
        if 0 <= j < len(words):
            if abs(offset) == 1:
                feats.update(_word_feats(words[j], f"{offset:+d}:"))
            else:
                feats[f"{offset:+d}:lower"] = words[j].lower()
        else:
            feats[f"{offset:+d}:pad"] = True
    return feats


def sentence_features(words: Sequence[str]) -> List[Features]:
    return [token_features(words, i) for i in range(len(words))]


# --------------------------------------------------------------------------- docs <-> sentences


def doc_sentences(docs: Sequence[Doc]) -> List[Tuple[int, int, List[str], List[str]]]:
    """(doc index, sentence start, words, IOB2 tags) for each reference sentence."""
    out = []
    for d, doc in enumerate(docs):
        tags = ["O"] * len(doc)
        for ent in doc.ents:
            tags[ent.start] = f"B-{ent.label_}"
            for k in range(ent.start + 1, ent.end):
                tags[k] = f"I-{ent.label_}"
        if len(doc) == 0:
            continue
        bounds = (
            [(s.start, s.end) for s in doc.sents]
            if doc.has_annotation("SENT_START")
            else [(0, len(doc))]
        )
        for start, end in bounds:
            out.append((d, start, [t.text for t in doc[start:end]], tags[start:end]))
    return out


# --------------------------------------------------------------------------- NER


@dataclass
class NERBaseline:
    """A fitted token-feature NER model: "lr" (DictVectorizer + LogisticRegression) or "crf"."""

    kind: str
    model: Any
    vectorizer: Any = None
    train_seconds: float = 0.0
    params: Dict[str, Any] = field(default_factory=dict)

    def predict_tags(self, sentences: Sequence[Sequence[str]]) -> List[List[str]]:
        feats = [sentence_features(words) for words in sentences]
        if self.kind == "crf":
            return [list(tags) for tags in self.model.predict(feats)]
        flat = [f for sent in feats for f in sent]
        if not flat:
            return [[] for _ in sentences]
        labels = self.model.predict(self.vectorizer.transform(flat))
        out, k = [], 0
        for sent in feats:
            out.append([str(t) for t in labels[k:k + len(sent)]])
            k += len(sent)
        return out


def train_ner_baseline(
    train_docs: Sequence[Doc],
    kind: str = "crf",
    *,
    c: float = 1.0,
    max_iter: int = 100,
    c1: float = 0.1,
    c2: float = 0.1,
) -> NERBaseline:
    """Fit a token-feature NER baseline on the gold entities of `train_docs`.

    kind (str): "lr" for DictVectorizer + multinomial LogisticRegression (lbfgs,
        C=c, max_iter), "crf" for a CRFsuite linear-chain CRF (lbfgs, L1 c1,
        L2 c2, max_iter iterations, all transitions).
    """
    if kind not in NER_KINDS:
        raise ValueError(f"kind must be one of {NER_KINDS}, not {kind!r}")
    sents = doc_sentences(train_docs)
    if not sents:
        raise ValueError("no training sentences (the training docs hold no tokens)")
    if not any(tag != "O" for _, _, _, tags in sents for tag in tags):
        raise ValueError("the training docs hold no entities")
    start = time.perf_counter()
    if kind == "crf":
        sklearn_crfsuite = require("sklearn_crfsuite", "baselines", "The CRFsuite NER baseline")
        model = sklearn_crfsuite.CRF(
            algorithm="lbfgs", c1=c1, c2=c2, max_iterations=max_iter, all_possible_transitions=True
        )
        model.fit([sentence_features(w) for _, _, w, _ in sents], [t for _, _, _, t in sents])
        baseline = NERBaseline("crf", model, params={"c1": c1, "c2": c2, "max_iter": max_iter})
    else:
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.linear_model import LogisticRegression

        vectorizer = DictVectorizer(sparse=True)
        X = vectorizer.fit_transform([f for _, _, w, _ in sents for f in sentence_features(w)])
        y = [tag for _, _, _, tags in sents for tag in tags]
        model = LogisticRegression(C=c, max_iter=max_iter, solver="lbfgs")
        model.fit(X, y)
        baseline = NERBaseline("lr", model, vectorizer, params={"C": c, "max_iter": max_iter})
    baseline.train_seconds = time.perf_counter() - start
    return baseline


def predict_ner(model: NERBaseline, docs: Sequence[Doc]) -> List[Doc]:
    """Copies of `docs` with the model's entities (conlleval chunking of its tags)."""
    sents = doc_sentences(docs)
    tags = model.predict_tags([w for _, _, w, _ in sents])
    spans: List[List[Tuple[str, int, int]]] = [[] for _ in docs]
    for (d, start, _, _), seq in zip(sents, tags):
        for label, first, last in get_entities(seq):
            spans[d].append((label, start + first, start + last + 1))
    out = []
    for doc, doc_spans in zip(docs, spans):
        pred = copy_doc(doc)
        pred.set_ents([Span(pred, s, e, label=lab) for lab, s, e in doc_spans], default="outside")
        out.append(pred)
    return out


# --------------------------------------------------------------------------- textcat


@dataclass
class TextcatBaseline:
    """TF-IDF (word 1-2 grams) + LogisticRegression over mutually exclusive classes."""

    pipeline: Any
    labels: List[str]
    train_seconds: float = 0.0

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.pipeline.predict_proba(list(texts))


def _gold_class(doc: Doc, i: int) -> str:
    if not doc.cats:
        raise ValueError(f"training document {i} has no text categories (doc.cats is empty)")
    return max(doc.cats, key=doc.cats.get)


def train_textcat_baseline(
    train_docs: Sequence[Doc], *, c: float = 1.0, max_iter: int = 1000, min_df: int = 1
) -> TextcatBaseline:
    """Fit TF-IDF word uni+bigrams (sublinear tf) + LogisticRegression(C=c) on doc.cats."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = [d.text for d in train_docs]
    y = [_gold_class(d, i) for i, d in enumerate(train_docs)]
    if len(set(y)) < 2:
        raise ValueError(
            f"the training docs hold a single class ({sorted(set(y))}); need two or more"
        )
    start = time.perf_counter()
    pipe = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=min_df),
        LogisticRegression(C=c, max_iter=max_iter),
    )
    pipe.fit(texts, y)
    return TextcatBaseline(pipe, [str(c) for c in pipe.classes_], time.perf_counter() - start)


def predict_textcat(model: TextcatBaseline, docs: Sequence[Doc]) -> List[Doc]:
    """Copies of `docs` whose cats are the model's class probabilities."""
    probs = (
        model.predict_proba([d.text for d in docs]) if docs else np.zeros((0, len(model.labels)))
    )
    out = []
    for doc, row in zip(docs, probs):
        pred = copy_doc(doc)
        pred.cats = {label: float(p) for label, p in zip(model.labels, row)}
        out.append(pred)
    return out


# --------------------------------------------------------------------------- runs


def _meta(system: str, split: str, seconds: float, params: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "system": system,
        "kind": "baseline",
        "split": split,
        "train_seconds": round(seconds, 2),
        "params": params,
    }


def run_ner_baseline(
    train_docs: Sequence[Doc],
    dev_docs: Sequence[Doc],
    test_docs: Sequence[Doc],
    output_dir: Union[str, Path],
    kinds: Sequence[str] = NER_KINDS,
    **params: Any,
) -> Dict[str, Dict[str, Any]]:
    """Train each NER baseline, write predictions + metrics for dev and test."""
    output_dir = Path(output_dir)
    results: Dict[str, Dict[str, Any]] = {}
    names = {"lr": "ner-logreg", "crf": "ner-crf"}
    for kind in kinds:
        kind_params = {k: v for k, v in params.items() if v is not None}
        model = train_ner_baseline(train_docs, kind, **kind_params)
        for split, docs in (("dev", dev_docs), ("test", test_docs)):
            preds = predict_ner(model, docs)
            save_docs(preds, output_dir / f"{names[kind]}-{split}.spacy")
            metrics = {
                "meta": _meta(names[kind], split, model.train_seconds, model.params),
                "ner": evaluate_ner(docs, preds),
            }
            write_metrics(metrics, output_dir / f"{names[kind]}-{split}.json")
            results[f"{names[kind]}-{split}"] = metrics
    return results


TEXTCAT_C_GRID = (1.0, 2.0, 4.0, 8.0, 16.0)


def run_textcat_baseline(
    train_docs: Sequence[Doc],
    dev_docs: Sequence[Doc],
    test_docs: Sequence[Doc],
    output_dir: Union[str, Path],
    c: Optional[float] = None,
    c_grid: Sequence[float] = TEXTCAT_C_GRID,
) -> Dict[str, Dict[str, Any]]:
    """Train the TF-IDF + LogisticRegression baseline, write predictions + metrics.

    c (Optional[float]): the inverse L2 strength; None picks it from c_grid by
        dev accuracy (the test split is never looked at to choose it).
    """
    output_dir = Path(output_dir)
    dev_accuracy: Dict[str, float] = {}
    if c is None:
        best = None
        for value in c_grid:
            candidate = train_textcat_baseline(train_docs, c=value)
            acc = evaluate_textcat(dev_docs, predict_textcat(candidate, dev_docs))["accuracy"]
            dev_accuracy[str(value)] = acc
            if best is None or acc > best[0]:
                best = (acc, candidate)
        model = best[1]
    else:
        model = train_textcat_baseline(train_docs, c=c)
    results: Dict[str, Dict[str, Any]] = {}
    name = "textcat-tfidf-logreg"
    params: Dict[str, Any] = {"C": model.pipeline[-1].C, "ngram_range": [1, 2]}
    if dev_accuracy:
        params["dev_accuracy_by_C"] = dev_accuracy
    for split, docs in (("dev", dev_docs), ("test", test_docs)):
        preds = predict_textcat(model, docs)
        save_docs(preds, output_dir / f"{name}-{split}.spacy")
        metrics = {
            "meta": _meta(name, split, model.train_seconds, params),
            "textcat": evaluate_textcat(docs, preds),
        }
        write_metrics(metrics, output_dir / f"{name}-{split}.json")
        results[f"{name}-{split}"] = metrics
    return results
