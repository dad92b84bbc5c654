"""NER and text-classification evaluation: one module behind the CLI, the
scorers, the baselines and the workflows.

Sequence metrics are computed per sentence of the reference, as conlleval
does: each gold sentence (the reference doc's `doc.sents` when it has
SENT_START annotation; otherwise the whole doc) is one tag sequence. A model
that runs over whole documents can predict an entity that crosses a gold
sentence boundary; per sentence, that prediction is cut at the boundary (the
piece after it starts with `I-`), which is what conlleval, seqeval and the
published CoNLL figures assume. spaCy's own `ents_*` figures are per document
(as `spacy.ner_scorer.v1` computes them) and are reported next to them.

Public API
----------
evaluate_ner(gold_docs, pred_docs) -> dict
    {"unit", "n_docs", "n_sentences", "n_tokens", "labels",
     "spacy": {p, r, f, per_type},
     "seqeval": {"default": {p, r, f, support, per_type}, "strict": {...}},
     "semeval": {"strict"|"exact"|"partial"|"type": {p, r, f, correct, incorrect,
                 partial, missed, spurious, possible, actual, per_type}}}
    All figures are fractions in [0, 1]; an undefined figure (nothing to find
    and nothing predicted) is 0.0, as conlleval prints it.
evaluate_tags(gold_seqs, pred_seqs) -> dict
    The "seqeval" and "semeval" parts of the above, from IOB2 tag sequences
    (lists of lists of str). Raw tag input is where seqeval's two modes differ:
    "default" is conlleval-compatible (an `I-X` after `O` opens an entity),
    "strict" is IOB2 strict mode (only `B-X` opens one).
sentence_sequences(gold_docs, pred_docs) -> (gold_seqs, pred_seqs)
    Per-sentence IOB2 tags of the reference and of the prediction projected
    onto the reference tokens.
example_sequences(examples) -> (gold_seqs, pred_seqs)
    The same from spaCy `Example`s (used by the registered scorer).
evaluate_textcat(gold_docs, pred_docs, positive_label=None, threshold=0.5) -> dict
    {"labels", "n_docs", "accuracy", "macro_f1", "per_class": {L: {p, r, f, support}},
     "confusion_matrix": {"labels", "matrix" (rows gold, columns predicted)},
     "roc_auc" and "positive_label" (binary tasks only)}
evaluate_docs(gold_docs, pred_docs) -> dict
    {"ner": ..., "textcat": ...}, each part present when the gold holds that annotation.
    Each part has a "calibration" entry when the predictions carry confidences
    (see below), else none.
ner_calibration(gold_docs, pred_docs, spans_key=None, missed_probs=None) -> dict or None
    How well the entities' confidences (doc.spans[spans_key].attrs["scores"], the
    CRF marginals of crf_ner) match their correctness (exact span and type among
    the gold entities): {"spans_key", "scores" (spacy_rnn.calibration's report:
    n, accuracy, ece, ece_width, brier, nll, reliability rows, precision_at),
    "raw_scores" (the same for attrs["raw_scores"], the scores at temperature 1,
    when the component has another temperature), "missed" (the gold entities not predicted, with the
    probability the model gave each, when `missed_probs` is given)}.
textcat_calibration(gold_docs, pred_docs, threshold=0.5) -> dict
    The same report for the predicted class's probability against the gold class.
missed_entities(gold_docs, pred_docs) -> per doc [(start, end, label)]
missed_entity_probabilities(nlp, gold_docs, missed, gold_preproc=False) -> List[float]
    The probability a pipeline's crf_ner gives each missed gold entity.
load_docs(path, vocab=None) -> List[Doc];  save_docs(docs, path)
copy_doc(doc, vocab=None) -> Doc
    Words, spaces and sentence starts of a doc, nothing else.
predict_docs(nlp_or_path, gold_docs, batch_size=64, gold_preproc=False) -> List[Doc]
    Runs a pipeline over the reference words (gold tokenization, like
    `gold_preproc`), not over re-tokenized text.
dev_corpus_config(config) -> dict;  reads_documents(config) -> bool
    How a pipeline's dev corpus was read in training: its config block, and
    whether it gave whole documents with the gold sentences
    (`spacy_rnn.gold_sentences.v1`), as the evaluation then should.
seqeval_scores(gold_seqs, pred_seqs) -> dict;  semeval_scores(gold_seqs, pred_seqs) -> dict
    The two halves of evaluate_tags, without its input checks.
error_doc_indices(gold_docs, pred_docs) -> List[int]
write_metrics(metrics, path);  read_metrics(path) -> dict

Tokenization: predicted docs normally carry the same words as the reference.
When they do not, the predicted entities are projected onto the reference
tokens with spaCy's `Example` alignment (what spaCy's own scorer does); when
the texts themselves differ the docs cannot be aligned and a ValueError
names the document.
"""

import json
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from spacy.scorer import get_ner_prf
from spacy.tokens import Doc, DocBin, Span, SpanGroup
from spacy.training import Example
from spacy.util import filter_spans
from spacy.vocab import Vocab

Tags = List[str]
UNIT = (
    "sentence of the reference (gold sentence boundaries; a document without them is one "
    "sequence), as conlleval; spaCy ents_* are per document"
)
SEMEVAL_MODES = {"strict": "strict", "exact": "exact", "partial": "partial", "type": "ent_type"}
SEQEVAL_MODES = ("default", "strict")


# --------------------------------------------------------------------------- docs -> tags


def _spans_to_iob(spans: Iterable[Tuple[str, int, int]], n: int) -> Tags:
    """IOB2 tags of length n from non-overlapping (label, start, end) spans."""
    tags = ["O"] * n
    for label, start, end in spans:
        tags[start] = f"B-{label}"
        for i in range(start + 1, end):
            tags[i] = f"I-{label}"
    return tags


def _gold_spans(gold: Doc) -> List[Tuple[str, int, int]]:
    # Tokens with missing annotation (ent_iob == 0) are read as "O".
    return [(e.label_, e.start, e.end) for e in gold.ents]


def _pred_spans(example: Example, index: int) -> List[Tuple[str, int, int]]:
    """Predicted entities in reference token offsets."""
    pred, gold = example.predicted, example.reference
    if len(pred) == len(gold) and all(p.text == g.text for p, g in zip(pred, gold)):
        return [(e.label_, e.start, e.end) for e in pred.ents]
    try:
        x2y = example.alignment.x2y
    except Exception as err:  # spaCy raises ValueError on texts that cannot be aligned
        raise ValueError(
            f"document {index}: the predicted tokens cannot be aligned with the reference "
            f"({err}). Predictions must hold the same text as the gold document."
        ) from err
    # As spaCy's get_ner_prf: a predicted entity covers the reference tokens its
    # tokens align to; overlapping projections keep the longest (filter_spans).
    spans = []
    for ent in pred.ents:
        indices = x2y[ent.start:ent.end]
        if len(indices):
            spans.append(gold[int(indices[0]):int(indices[-1]) + 1])
            spans[-1].label_ = ent.label_
    return [(s.label_, s.start, s.end) for s in filter_spans(spans)]


def _sentence_bounds(gold: Doc) -> List[Tuple[int, int]]:
    if len(gold) == 0:
        return []
    if gold.has_annotation("SENT_START"):
        return [(s.start, s.end) for s in gold.sents]
    return [(0, len(gold))]


def _make_example(pred: Doc, gold: Doc, index: int) -> Example:
    if pred.text != gold.text and [t.text for t in pred] != [t.text for t in gold]:
        raise ValueError(
            f"document {index}: predicted text differs from the reference "
            f"(gold starts {gold.text[:60]!r}, prediction starts {pred.text[:60]!r}). "
            "Gold and predictions must be the same documents in the same order."
        )
    try:
        return Example(pred, gold)
    except Exception as err:
        raise ValueError(
            f"document {index}: cannot pair prediction with reference ({err})"
        ) from err


def example_sequences(examples: Iterable[Example]) -> Tuple[List[Tags], List[Tags]]:
    """Per-sentence IOB2 tag sequences (gold, predicted) from spaCy Examples."""
    gold_seqs: List[Tags] = []
    pred_seqs: List[Tags] = []
    for i, eg in enumerate(examples):
        gold = eg.reference
        n = len(gold)
        gold_tags = _spans_to_iob(_gold_spans(gold), n)
        pred_tags = _spans_to_iob(_pred_spans(eg, i), n)
        for start, end in _sentence_bounds(gold):
            gold_seqs.append(gold_tags[start:end])
            pred_seqs.append(pred_tags[start:end])
    return gold_seqs, pred_seqs


def make_examples(gold_docs: Sequence[Doc], pred_docs: Sequence[Doc]) -> List[Example]:
    """Pair predictions with references; precise errors for mismatched inputs."""
    if len(gold_docs) != len(pred_docs):
        raise ValueError(
            f"{len(gold_docs)} gold documents but {len(pred_docs)} predicted documents: "
            "predictions must hold the same documents, in the same order."
        )
    return [_make_example(p, g, i) for i, (g, p) in enumerate(zip(gold_docs, pred_docs))]


def sentence_sequences(
    gold_docs: Sequence[Doc], pred_docs: Sequence[Doc]
) -> Tuple[List[Tags], List[Tags]]:
    """Per-sentence IOB2 tags (gold, predicted on the reference tokens)."""
    return example_sequences(make_examples(gold_docs, pred_docs))


# --------------------------------------------------------------------------- metrics


def _prf(p: float, r: float, f: float, **extra: Any) -> Dict[str, Any]:
    out = {"p": float(p), "r": float(r), "f": float(f)}
    out.update(extra)
    return out


def _check_seqs(gold_seqs: Sequence[Tags], pred_seqs: Sequence[Tags]) -> None:
    if len(gold_seqs) != len(pred_seqs):
        raise ValueError(f"{len(gold_seqs)} gold sequences but {len(pred_seqs)} predicted ones")
    for i, (g, p) in enumerate(zip(gold_seqs, pred_seqs)):
        if len(g) != len(p):
            raise ValueError(f"sequence {i}: {len(g)} gold tags but {len(p)} predicted tags")
        for tag in list(g) + list(p):
            if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
                raise ValueError(f"sequence {i}: tag {tag!r} is not IOB (O, B-X or I-X)")


def seqeval_scores(gold_seqs: Sequence[Tags], pred_seqs: Sequence[Tags]) -> Dict[str, Any]:
    """seqeval micro and per-type P/R/F in default (conlleval) and strict IOB2 mode."""
    # imported here: loading a pipeline (the runtime plugin) does not need seqeval
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    out: Dict[str, Any] = {}
    gold_seqs = [list(s) for s in gold_seqs if len(s)]
    pred_seqs = [list(s) for s in pred_seqs if len(s)]
    for mode in SEQEVAL_MODES:
        if not gold_seqs:
            out[mode] = _prf(0.0, 0.0, 0.0, support=0, per_type={})
            continue
        kwargs = {"mode": "strict", "scheme": IOB2} if mode == "strict" else {}
        with warnings.catch_warnings():
            # macro averages over zero types warn; we only read micro and per-type rows
            warnings.simplefilter("ignore")
            report = classification_report(
                gold_seqs, pred_seqs, output_dict=True, zero_division=0, **kwargs
            )
        micro = report["micro avg"]
        per_type = {
            label: _prf(
                row["precision"], row["recall"], row["f1-score"], support=int(row["support"])
            )
            for label, row in sorted(report.items())
            if not label.endswith(" avg")
        }
        out[mode] = _prf(
            micro["precision"],
            micro["recall"],
            micro["f1-score"],
            support=int(micro["support"]),
            per_type=per_type,
        )
    return out


def _semeval_row(result: Any) -> Dict[str, Any]:
    return _prf(
        result.precision,
        result.recall,
        result.f1,
        correct=result.correct,
        incorrect=result.incorrect,
        partial=result.partial,
        missed=result.missed,
        spurious=result.spurious,
        possible=result.possible,
        actual=result.actual,
    )


def semeval_scores(gold_seqs: Sequence[Tags], pred_seqs: Sequence[Tags]) -> Dict[str, Any]:
    """SemEval'13 strict / exact / partial / type figures from nervaluate, overall and per type."""
    gold_seqs = [list(s) for s in gold_seqs if len(s)]
    pred_seqs = [list(s) for s in pred_seqs if len(s)]
    labels = sorted({t[2:] for seq in list(gold_seqs) + list(pred_seqs) for t in seq if t != "O"})
    empty = {
        "p": 0.0,
        "r": 0.0,
        "f": 0.0,
        "correct": 0,
        "incorrect": 0,
        "partial": 0,
        "missed": 0,
        "spurious": 0,
        "possible": 0,
        "actual": 0,
    }
    if not gold_seqs:
        return {mode: dict(empty, per_type={}) for mode in SEMEVAL_MODES}
    from nervaluate import Evaluator  # imported here, as seqeval above

    results = Evaluator(gold_seqs, pred_seqs, tags=labels or ["_"], loader="list").evaluate()
    out: Dict[str, Any] = {}
    for mode, nv_name in SEMEVAL_MODES.items():
        overall = results["overall"].get(nv_name)
        row = _semeval_row(overall) if overall is not None else dict(empty)
        row["per_type"] = {
            label: _semeval_row(results["entities"][label][nv_name])
            for label in labels
            if label in results["entities"]
        }
        out[mode] = row
    return out


def evaluate_tags(gold_seqs: Sequence[Tags], pred_seqs: Sequence[Tags]) -> Dict[str, Any]:
    """seqeval (default + strict) and SemEval figures from IOB2 tag sequences."""
    _check_seqs(gold_seqs, pred_seqs)
    return {
        "seqeval": seqeval_scores(gold_seqs, pred_seqs),
        "semeval": semeval_scores(gold_seqs, pred_seqs),
    }


def _spacy_ents(examples: Sequence[Example]) -> Dict[str, Any]:
    scores = get_ner_prf(examples)
    per_type = {
        label: _prf(row["p"], row["r"], row["f"])
        for label, row in sorted((scores["ents_per_type"] or {}).items())
    }
    return _prf(
        scores["ents_p"] or 0.0, scores["ents_r"] or 0.0, scores["ents_f"] or 0.0, per_type=per_type
    )


def evaluate_ner(gold_docs: Sequence[Doc], pred_docs: Sequence[Doc]) -> Dict[str, Any]:
    """All NER figures for predictions against references (see the module docstring)."""
    gold_docs, pred_docs = list(gold_docs), list(pred_docs)
    examples = make_examples(gold_docs, pred_docs)
    gold_seqs, pred_seqs = example_sequences(examples)
    labels = sorted(
        {e.label_ for d in gold_docs for e in d.ents}
        | {e.label_ for d in pred_docs for e in d.ents}
    )
    metrics: Dict[str, Any] = {
        "unit": UNIT,
        "n_docs": len(gold_docs),
        "n_sentences": sum(1 for s in gold_seqs if s),
        "n_tokens": sum(len(d) for d in gold_docs),
        "labels": labels,
        "spacy": _spacy_ents(examples),
    }
    metrics.update(evaluate_tags(gold_seqs, pred_seqs))
    return metrics


# --------------------------------------------------------------------------- textcat

_POSITIVE_NAMES = ("POSITIVE", "POS", "1", "TRUE", "YES")


def _labels_of(docs: Sequence[Doc]) -> List[str]:
    return sorted({label for d in docs for label in d.cats})


def evaluate_textcat(
    gold_docs: Sequence[Doc],
    pred_docs: Sequence[Doc],
    positive_label: Optional[str] = None,
    threshold: float = 0.5,
) -> Dict[str, Any]:
    """Accuracy, macro F1, per-class P/R/F1, confusion matrix, ROC AUC (binary).

    Classes are mutually exclusive: the gold class is the gold doc's highest cat,
    the predicted class the highest predicted score. With a single cat label L
    (a binary task stored as one score), the classes are L (score >= threshold)
    and "not L".
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    gold_docs, pred_docs = list(gold_docs), list(pred_docs)
    if len(gold_docs) != len(pred_docs):
        raise ValueError(
            f"{len(gold_docs)} gold documents but {len(pred_docs)} predicted documents"
        )
    if not gold_docs:
        raise ValueError("no documents to evaluate")
    cat_labels = _labels_of(gold_docs)
    if not cat_labels:
        raise ValueError("the gold documents hold no text categories (doc.cats is empty)")
    single = len(cat_labels) == 1
    classes = [cat_labels[0], f"not {cat_labels[0]}"] if single else cat_labels

    def decide(cats: Dict[str, float], i: int, what: str) -> str:
        if single:
            if cat_labels[0] not in cats:
                raise ValueError(f"{what} document {i} has no score for {cat_labels[0]!r}")
            return classes[0] if cats[cat_labels[0]] >= threshold else classes[1]
        missing = [label for label in cat_labels if label not in cats]
        if missing:
            raise ValueError(
                f"{what} document {i} has no score for {missing} (it has {sorted(cats)})"
            )
        return max(cat_labels, key=lambda label: cats[label])

    y_true = [decide(g.cats, i, "gold") for i, g in enumerate(gold_docs)]
    y_pred = [decide(p.cats, i, "predicted") for i, p in enumerate(pred_docs)]
    p, r, f, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=classes)
    out: Dict[str, Any] = {
        "labels": classes,
        "n_docs": len(gold_docs),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)
        ),
        "per_class": {
            label: _prf(p[k], r[k], f[k], support=int(support[k]))
            for k, label in enumerate(classes)
        },
        "confusion_matrix": {"labels": classes, "matrix": matrix.tolist()},
    }
    if len(classes) == 2:
        if positive_label is None:
            named = [c for c in cat_labels if c.upper() in _POSITIVE_NAMES]
            positive_label = named[0] if named else cat_labels[-1]
        if positive_label not in cat_labels:
            raise ValueError(f"positive_label {positive_label!r} is not one of {cat_labels}")
        truth = np.asarray([t == positive_label for t in y_true])
        scores = np.asarray([d.cats[positive_label] for d in pred_docs], dtype="f")
        out["positive_label"] = positive_label
        # AUC is undefined with a single class in the gold; report None then.
        out["roc_auc"] = (
            float(roc_auc_score(truth, scores)) if 0 < truth.sum() < len(truth) else None
        )
    return out


# --------------------------------------------------------------------------- calibration


def _char_spans(spans: Iterable[Any]) -> List[Tuple[int, int, str]]:
    return [(span.start_char, span.end_char, span.label_) for span in spans]


def _scored_key(docs: Sequence[Doc], spans_key: Optional[str]) -> Optional[str]:
    """The span group with confidences ("scores" in its attrs): `spans_key`, or the
    first such group of the docs (crf_ner's is "crf_ner")."""
    for doc in docs:
        for key, group in doc.spans.items():
            if (spans_key is None or key == spans_key) and "scores" in group.attrs:
                return key
    return None


def ner_confidences(
    gold_docs: Sequence[Doc], pred_docs: Sequence[Doc], spans_key: Optional[str] = None
) -> Optional[Dict[str, Any]]:
    """Each predicted entity's confidence and whether it is right (same
    characters and type as a gold entity): {"spans_key", "confidence",
    "correct", "raw_confidence" (or None)}; None when no doc has scored spans."""
    key = _scored_key(pred_docs, spans_key)
    if key is None:
        return None
    conf, raw, correct = [], [], []
    has_raw = True
    for i, (gold, pred) in enumerate(zip(gold_docs, pred_docs)):
        if pred.text != gold.text:
            _make_example(pred, gold, i)  # raises with a precise message
        group = pred.spans[key] if key in pred.spans else []
        if not len(group):
            continue
        scores = group.attrs.get("scores")
        if scores is None or len(scores) != len(group):
            raise ValueError(
                f"document {i}: doc.spans[{key!r}] holds {len(group)} spans but "
                f"{0 if scores is None else len(scores)} scores"
            )
        truth = set(_char_spans(gold.ents))
        correct.extend(span in truth for span in _char_spans(group))
        conf.extend(float(x) for x in scores)
        if "raw_scores" in group.attrs:
            raw.extend(float(x) for x in group.attrs["raw_scores"])
        else:
            has_raw = False
    return {
        "spans_key": key,
        "confidence": conf,
        "correct": correct,
        "raw_confidence": raw if has_raw and len(raw) == len(conf) and raw else None,
    }


def missed_entities(
    gold_docs: Sequence[Doc], pred_docs: Sequence[Doc], spans_key: Optional[str] = None
) -> List[List[Tuple[int, int, str]]]:
    """Per doc, the gold entities (token offsets of the gold doc) that are not
    among the predicted ones (doc.spans[spans_key] when it has scores, else
    doc.ents), compared by characters and type."""
    key = _scored_key(pred_docs, spans_key)
    out = []
    for gold, pred in zip(gold_docs, pred_docs):
        predicted = pred.spans[key] if key is not None and key in pred.spans else pred.ents
        found = set(_char_spans(predicted))
        out.append(
            [(e.start, e.end, e.label_) for e in gold.ents
             if (e.start_char, e.end_char, e.label_) not in found]
        )
    return out


def missed_entity_probabilities(
    nlp: Any,
    gold_docs: Sequence[Doc],
    missed: Sequence[Sequence[Tuple[int, int, str]]],
    gold_preproc: bool = False,
    component: Optional[str] = None,
    batch_size: int = 64,
) -> List[float]:
    """The probability the pipeline's crf_ner (or `component`) gives each missed
    gold entity (`missed_entities`), in order: the CRF marginal of the entity's
    tag path at the component's temperature, run as `predict_docs` runs it
    (whole docs, or each gold sentence with `gold_preproc`; an entity across
    two of those gets 0)."""
    from .calibration import calibration_examples

    names = [n for n, p in nlp.pipeline if hasattr(p, "batch_span_probabilities")]
    name = component or (names[0] if names else None)
    if name is None or name not in names:
        raise ValueError(f"the pipeline has no component that scores spans ({component or ''})")
    proc = nlp.get_pipe(name)
    examples = calibration_examples(nlp, gold_docs, name, gold_preproc)
    # Each example is a gold doc or one of its sentences, in order.
    units: List[Tuple[int, int, int]] = []  # (gold doc, first token, end token)
    for d, gold in enumerate(gold_docs):
        if gold_preproc and len(gold) and gold.has_annotation("SENT_START"):
            units.extend((d, s.start, s.end) for s in gold.sents)
        else:
            units.append((d, 0, len(gold)))
    where: Dict[Tuple[int, int], Tuple[int, Tuple[int, int, str]]] = {}
    spans: List[List[Tuple[int, int, str]]] = [[] for _ in units]
    for u, (d, lo, hi) in enumerate(units):
        for k, (s, e, label) in enumerate(missed[d]):
            if lo <= s and e <= hi:
                where[(d, k)] = (u, len(spans[u]))
                spans[u].append((s - lo, e - lo, label))
    probs: List[List[float]] = []
    for lo in range(0, len(examples), batch_size):
        docs = [eg.predicted for eg in examples[lo:lo + batch_size]]
        probs.extend(
            p.tolist() for p in proc.batch_span_probabilities(docs, spans[lo:lo + batch_size])
        )
    out = []
    for d, ents in enumerate(missed):
        for k in range(len(ents)):
            place = where.get((d, k))
            out.append(probs[place[0]][place[1]] if place is not None else 0.0)
    return out


def _missed_report(probs: Sequence[float]) -> Dict[str, Any]:
    p = np.asarray(probs, dtype="float64")
    return {
        "n": int(len(p)),
        "mean_probability": float(p.mean()) if len(p) else 0.0,
        "median_probability": float(np.median(p)) if len(p) else 0.0,
        "share_at_least": {
            str(t): float((p >= t).mean()) if len(p) else 0.0 for t in (0.1, 0.3, 0.5)
        },
        "histogram": {
            "edges": [i / 10 for i in range(11)],
            "counts": np.histogram(p, bins=10, range=(0.0, 1.0))[0].tolist(),
        },
    }


def ner_calibration(
    gold_docs: Sequence[Doc],
    pred_docs: Sequence[Doc],
    spans_key: Optional[str] = None,
    missed_probs: Optional[Sequence[float]] = None,
) -> Optional[Dict[str, Any]]:
    """Calibration of the predicted entities' confidences (see the module docstring)."""
    from .calibration import calibration_report

    found = ner_confidences(gold_docs, pred_docs, spans_key)
    if found is None:
        return None
    out: Dict[str, Any] = {
        "spans_key": found["spans_key"],
        "unit": "predicted entity; correct = exact span and type in the gold",
        "scores": calibration_report(found["confidence"], found["correct"]),
    }
    if found["raw_confidence"] is not None:
        out["raw_scores"] = calibration_report(found["raw_confidence"], found["correct"])
    if missed_probs is not None:
        out["missed"] = _missed_report(missed_probs)
    return out


def textcat_confidences(
    gold_docs: Sequence[Doc], pred_docs: Sequence[Doc], threshold: float = 0.5
) -> Tuple[List[float], List[bool]]:
    """The predicted class's probability per doc and whether it is the gold
    class, with `evaluate_textcat`'s classes (for a single cat label L: L when
    its score >= threshold, with probability p, else "not L" with 1 - p)."""
    cat_labels = _labels_of(gold_docs)
    if not cat_labels:
        raise ValueError("the gold documents hold no text categories (doc.cats is empty)")
    conf, correct = [], []
    for i, (gold, pred) in enumerate(zip(gold_docs, pred_docs)):
        missing = [label for label in cat_labels if label not in pred.cats]
        if missing:
            raise ValueError(f"predicted document {i} has no score for {missing}")
        if len(cat_labels) == 1:
            label = cat_labels[0]
            p = float(pred.cats[label])
            conf.append(p if p >= threshold else 1.0 - p)
            correct.append((p >= threshold) == (gold.cats.get(label, 0.0) >= threshold))
        else:
            guess = max(cat_labels, key=lambda name: pred.cats[name])
            conf.append(float(pred.cats[guess]))
            correct.append(guess == max(cat_labels, key=lambda name: gold.cats.get(name, 0.0)))
    return conf, correct


def textcat_calibration(
    gold_docs: Sequence[Doc], pred_docs: Sequence[Doc], threshold: float = 0.5
) -> Dict[str, Any]:
    """Calibration of the predicted class's probability against the gold class."""
    from .calibration import calibration_report

    conf, correct = textcat_confidences(gold_docs, pred_docs, threshold)
    out = {
        "unit": "document; confidence = the predicted class's probability",
        "scores": calibration_report(np.clip(conf, 0.0, 1.0), correct),
    }
    return out


# --------------------------------------------------------------------------- both, IO


def has_ner(docs: Sequence[Doc]) -> bool:
    return any(d.has_annotation("ENT_IOB") for d in docs)


def has_cats(docs: Sequence[Doc]) -> bool:
    return any(d.cats for d in docs)


def evaluate_docs(gold_docs: Sequence[Doc], pred_docs: Sequence[Doc]) -> Dict[str, Any]:
    """NER and/or textcat figures, depending on what the gold documents hold."""
    gold_docs, pred_docs = list(gold_docs), list(pred_docs)
    metrics: Dict[str, Any] = {}
    if has_ner(gold_docs) or not has_cats(gold_docs):
        metrics["ner"] = evaluate_ner(gold_docs, pred_docs)
        calibration = ner_calibration(gold_docs, pred_docs)
        if calibration is not None:
            metrics["ner"]["calibration"] = calibration
    if has_cats(gold_docs):
        metrics["textcat"] = evaluate_textcat(gold_docs, pred_docs)
        metrics["textcat"]["calibration"] = textcat_calibration(gold_docs, pred_docs)
    return metrics


def load_docs(path: Union[str, Path], vocab: Optional[Vocab] = None) -> List[Doc]:
    """Documents of a DocBin (.spacy) file, with a precise error when it is not one."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: file not found")
    try:
        return list(DocBin().from_disk(path).get_docs(vocab or Vocab()))
    except Exception as err:
        # spaCy's own message advises `python -m spacy convert`, which reads
        # CoNLL-2003 wrongly (see spacy_rnn.converters.conll): point to ours.
        raise ValueError(
            f"{path}: not a spaCy DocBin (.spacy) file ({type(err).__name__}). "
            f"A raw corpus (CoNLL columns, TSV/CSV/JSONL) converts with "
            f"`python -m spacy_rnn convert {path} {path.with_suffix('.spacy')}`"
        ) from err


def save_docs(docs: Iterable[Doc], path: Union[str, Path]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=True).to_disk(path)
    return path


def copy_doc(doc: Doc, vocab: Optional[Vocab] = None) -> Doc:
    """Words, spaces and sentence starts of `doc`, nothing else, in `vocab`
    (default: the doc's own)."""
    sent_starts = None
    if doc.has_annotation("SENT_START"):
        sent_starts = [bool(t.is_sent_start) for t in doc]
    return Doc(
        vocab if vocab is not None else doc.vocab,
        words=[t.text for t in doc],
        spaces=[bool(t.whitespace_) for t in doc],
        sent_starts=sent_starts,
    )


def dev_corpus_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The block of a pipeline's config that read its dev corpus in training
    (`training.dev_corpus`, e.g. `corpora.dev`); {} when the config has none."""
    dev_key = config.get("training", {}).get("dev_corpus", "corpora.dev")
    corpus: Any = config
    for part in dev_key.split("."):
        corpus = corpus.get(part, {}) if isinstance(corpus, dict) else {}
    return corpus if isinstance(corpus, dict) else {}


def reads_documents(config: Dict[str, Any]) -> bool:
    """Whether a pipeline's dev corpus gives it whole documents with the gold tokens
    and sentence starts (`gold_preproc = false` with the `spacy_rnn.gold_sentences.v1`
    augmenter), so that its encoder reads across sentences."""
    corpus = dev_corpus_config(config)
    augmenter = (corpus.get("augmenter") or {}).get("@augmenters")
    return not corpus.get("gold_preproc", True) and augmenter == "spacy_rnn.gold_sentences.v1"


def predict_docs(
    nlp: Any,
    gold_docs: Sequence[Doc],
    batch_size: int = 64,
    gold_preproc: bool = False,
    progress: bool = False,
) -> List[Doc]:
    """Run a pipeline (or the path of one) over un-annotated copies of the reference docs.

    The copies keep the reference's words and sentence starts, so a component that
    respects sentence boundaries (crf_ner) sees them. With `gold_preproc`, each
    reference sentence is run as a doc of its own and the predictions are joined
    back into one doc per reference (as `spacy evaluate --gold-preproc` does, and
    as CoNLL-2003 systems are usually run); text classification ignores it.
    With `progress`, a progress bar (docs or sentences done) goes to stderr.
    """
    if isinstance(nlp, (str, Path)):
        import spacy

        nlp = spacy.load(nlp)

    if not gold_preproc:
        docs = nlp.pipe((copy_doc(d, nlp.vocab) for d in gold_docs), batch_size=batch_size)
        return list(_progress(docs, len(gold_docs), "doc", progress))
    sentences = [
        [copy_doc(s.as_doc(), nlp.vocab) for s in d.sents]
        if d.has_annotation("SENT_START") and len(d)
        else [copy_doc(d, nlp.vocab)]
        for d in gold_docs
    ]
    flat = list(
        _progress(
            nlp.pipe((s for sents in sentences for s in sents), batch_size=batch_size),
            sum(len(sents) for sents in sentences),
            "sentence",
            progress,
        )
    )
    out, i = [], 0
    for gold, sents in zip(gold_docs, sentences):
        parts, i = flat[i:i + len(sents)], i + len(sents)
        doc = Doc.from_docs(parts, ensure_whitespace=False) if len(parts) > 1 else parts[0]
        doc.cats = dict(parts[0].cats)
        if len(parts) > 1:
            _join_span_groups(doc, parts)
        out.append(doc)
    return out


def _join_span_groups(doc: Doc, parts: Sequence[Doc]) -> None:
    """The span groups of the sentence docs `parts`, on the joined `doc`
    (Doc.from_docs drops them): spans shifted to the doc's tokens, list attrs
    concatenated in order (crf_ner's "scores", "raw_scores", and the n-best
    group's per-sentence lists; its "sentences" offsets shifted too)."""
    keys = [key for part in parts for key in part.spans]
    for key in dict.fromkeys(keys):
        spans, attrs = [], {}
        offset = 0
        for part in parts:
            group = part.spans[key] if key in part.spans else None
            if group is not None:
                spans.extend(
                    Span(doc, span.start + offset, span.end + offset, label=span.label_)
                    for span in group
                )
                for name, value in group.attrs.items():
                    if isinstance(value, list):
                        if name == "sentences":
                            value = [[a + offset, b + offset] for a, b in value]
                        attrs.setdefault(name, []).extend(value)
                    else:
                        attrs.setdefault(name, value)
            offset += len(part)
        doc.spans[key] = SpanGroup(doc, name=key, spans=spans, attrs=attrs)


def _progress(items: Iterable[Doc], total: int, unit: str, show: bool) -> Iterable[Doc]:
    """`items`, with a tqdm bar on stderr when `show` (a long evaluation says where it is)."""
    if not show:
        return items
    import sys

    from tqdm import tqdm

    return tqdm(
        items, total=total, unit=f" {unit}s", desc="Predicting", file=sys.stderr, leave=True
    )


def error_doc_indices(gold_docs: Sequence[Doc], pred_docs: Sequence[Doc]) -> List[int]:
    """Indices of documents whose predicted entities (or class) differ from the gold."""
    out = []
    for i, eg in enumerate(make_examples(list(gold_docs), list(pred_docs))):
        gold, pred = eg.reference, eg.predicted
        ents_differ = set(_gold_spans(gold)) != set(_pred_spans(eg, i))
        cats_differ = False
        if gold.cats and pred.cats:
            cats_differ = max(gold.cats, key=gold.cats.get) != max(pred.cats, key=pred.cats.get)
        if ents_differ or cats_differ:
            out.append(i)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_metrics(metrics: Dict[str, Any], path: Union[str, Path]) -> Path:
    """Write metrics as indented JSON (numpy scalars converted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(_jsonable(metrics), indent=2, sort_keys=False) + "\n", encoding="utf8"
    )
    return path


def read_metrics(path: Union[str, Path]) -> Dict[str, Any]:
    path = Path(path)
    try:
        return json.loads(Path(path).read_text(encoding="utf8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON (line {err.lineno}: {err.msg})") from None
