"""spacy_rnn.evaluation: hand-computed cases in every mode, differential tests
against seqeval / nervaluate / a brute-force span counter, and gold == pred on
the whole CoNLL-2003 test set."""

import math

import pytest
from hypothesis import given, settings, strategies as st
from nervaluate import Evaluator
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2
from spacy.tokens import Doc
from spacy.vocab import Vocab

from spacy_rnn.converters import read_conll
from spacy_rnn.evaluation import (
    evaluate_docs,
    evaluate_ner,
    evaluate_tags,
    evaluate_textcat,
    sentence_sequences,
)

VOCAB = Vocab()
MODES = (
    "seqeval_default",
    "seqeval_strict",
    "semeval_strict",
    "semeval_exact",
    "semeval_partial",
    "semeval_type",
    "spacy",
)


def make_doc(sentences, vocab=VOCAB, sent_starts=True):
    """A Doc from [(words, iob_tags), ...], one sentence each."""
    words = [w for ws, _ in sentences for w in ws]
    tags = [t for _, ts in sentences for t in ts]
    starts = [i == 0 for ws, _ in sentences for i in range(len(ws))] if sent_starts else None
    return Doc(vocab, words=words, sent_starts=starts, ents=tags)


def flat(metrics):
    """F1 of every mode, plus P and R, as one dict."""
    ner = metrics["ner"] if "ner" in metrics else metrics
    out = {}
    for m in ("default", "strict"):
        out[f"seqeval_{m}"] = tuple(ner["seqeval"][m][k] for k in "prf")
    for m in ("strict", "exact", "partial", "type"):
        out[f"semeval_{m}"] = tuple(ner["semeval"][m][k] for k in "prf")
    out["spacy"] = tuple(ner["spacy"][k] for k in "prf")
    return out


def assert_prf(got, expected):
    for mode, (p, r, f) in expected.items():
        assert got[mode] == pytest.approx((p, r, f), abs=1e-9), mode


def prf(p, r):
    return (p, r, 0.0 if p + r == 0 else 2 * p * r / (p + r))


# Each hand case: (gold tags, predicted tags) of one sentence over the same words.
W3 = ["w1", "w2", "w3"]
CASES = {
    "exact_hit": (["B-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"]),
    "boundary_error": (["B-LOC", "I-LOC", "O"], ["B-LOC", "O", "O"]),
    "type_error": (["B-ORG", "I-ORG", "O"], ["B-PER", "I-PER", "O"]),
    "miss": (["B-MISC", "O", "O"], ["O", "O", "O"]),
    "spurious": (["O", "O", "O"], ["B-PER", "O", "O"]),
    "no_entities": (["O", "O", "O"], ["O", "O", "O"]),
    "empty_prediction": (["B-LOC", "O", "B-ORG"], ["O", "O", "O"]),
}
ONE = (1.0, 1.0, 1.0)
ZERO = (0.0, 0.0, 0.0)
HALF = (0.5, 0.5, 0.5)
# Expected (P, R, F) per mode, worked out by hand from the definitions:
# seqeval/spaCy count exact span+type matches; SemEval strict = span+type,
# exact = span only, partial = span overlap (half credit unless exact span),
# type = overlap + same type. Undefined figures (nothing predicted or
# nothing to find) are 0, as conlleval prints them.
EXPECTED = {
    "exact_hit": {m: ONE for m in MODES},
    "boundary_error": dict({m: ZERO for m in MODES}, semeval_partial=HALF, semeval_type=ONE),
    "type_error": dict({m: ZERO for m in MODES}, semeval_exact=ONE, semeval_partial=ONE),
    "miss": {m: ZERO for m in MODES},
    "spurious": {m: ZERO for m in MODES},
    "no_entities": {m: ZERO for m in MODES},
    "empty_prediction": {m: ZERO for m in MODES},
}
SEMEVAL_COUNTS = {  # (correct, incorrect, partial, missed, spurious) in strict mode
    "exact_hit": (1, 0, 0, 0, 0),
    "boundary_error": (0, 1, 0, 0, 0),
    "type_error": (0, 1, 0, 0, 0),
    "miss": (0, 0, 0, 1, 0),
    "spurious": (0, 0, 0, 0, 1),
    "no_entities": (0, 0, 0, 0, 0),
    "empty_prediction": (0, 0, 0, 2, 0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_evaluation_hand_case(case):
    gold_tags, pred_tags = CASES[case]
    gold = make_doc([(W3, gold_tags)])
    pred = make_doc([(W3, pred_tags)])
    metrics = evaluate_ner([gold], [pred])
    assert_prf(flat(metrics), EXPECTED[case])
    sem = metrics["semeval"]["strict"]
    assert (
        tuple(sem[k] for k in ("correct", "incorrect", "partial", "missed", "spurious"))
        == SEMEVAL_COUNTS[case]
    )
    # the same figures straight from the libraries
    assert metrics["seqeval"]["default"]["f"] == pytest.approx(
        f1_score([gold_tags], [pred_tags], zero_division=0)
    )
    assert metrics["seqeval"]["strict"]["f"] == pytest.approx(
        f1_score([gold_tags], [pred_tags], mode="strict", scheme=IOB2, zero_division=0)
    )
    labels = sorted({t[2:] for t in gold_tags + pred_tags if t != "O"}) or ["PER"]
    nv = Evaluator([gold_tags], [pred_tags], tags=labels, loader="list").evaluate()["overall"]
    for ours, theirs in (
        ("strict", "strict"),
        ("exact", "exact"),
        ("partial", "partial"),
        ("type", "ent_type"),
    ):
        assert metrics["semeval"][ours]["f"] == pytest.approx(nv[theirs].f1)


def test_evaluation_hand_corpus_all_cases_together():
    """All hand cases as one corpus (one doc each): gold 6 entities, predicted 4."""
    golds = [make_doc([(W3, g)]) for g, _ in CASES.values()]
    preds = [make_doc([(W3, p)]) for _, p in CASES.values()]
    metrics = evaluate_ner(golds, preds)
    # correct: exact_hit; seqeval tp=1 of 4 predicted, 6 gold
    assert_prf(
        flat(metrics),
        {
            "seqeval_default": prf(1 / 4, 1 / 6),
            "seqeval_strict": prf(1 / 4, 1 / 6),
            "spacy": prf(1 / 4, 1 / 6),
            "semeval_strict": prf(1 / 4, 1 / 6),
            "semeval_exact": prf(2 / 4, 2 / 6),  # exact_hit + type_error
            "semeval_partial": prf(2.5 / 4, 2.5 / 6),  # + half of boundary_error
            "semeval_type": prf(2 / 4, 2 / 6),  # exact_hit + boundary_error
        },
    )
    assert prf(2.5 / 4, 2.5 / 6)[2] == pytest.approx(0.5)
    sem = metrics["semeval"]
    assert (
        sem["exact"]["correct"],
        sem["exact"]["incorrect"],
        sem["exact"]["missed"],
        sem["exact"]["spurious"],
    ) == (2, 1, 3, 1)
    assert (sem["strict"]["possible"], sem["strict"]["actual"]) == (6, 4)
    # per type: PER gold 1 (exact_hit); predicted 3 (exact_hit, type_error, spurious)
    for mode in ("default", "strict"):
        per = metrics["seqeval"][mode]["per_type"]
        assert (per["PER"]["p"], per["PER"]["r"], per["PER"]["f"]) == pytest.approx(
            (1 / 3, 1.0, 0.5)
        )
        assert per["PER"]["support"] == 1 and per["LOC"]["support"] == 2
        assert per["LOC"]["f"] == 0.0 and per["ORG"]["f"] == 0.0 and per["MISC"]["f"] == 0.0
    assert metrics["semeval"]["strict"]["per_type"]["PER"]["f"] == pytest.approx(0.5)
    # per type, nervaluate sees only that type: the LOC boundary error still overlaps (half credit)
    loc = metrics["semeval"]["partial"]["per_type"]["LOC"]
    assert (loc["p"], loc["r"]) == pytest.approx((0.5 / 1, 0.5 / 2))
    assert metrics["spacy"]["per_type"]["PER"]["f"] == pytest.approx(0.5)
    assert metrics["n_docs"] == 7 and metrics["n_sentences"] == 7 and metrics["n_tokens"] == 21


def test_evaluation_default_and_strict_modes_differ_on_raw_tags():
    """seqeval's example: I-ORG I-ORG for gold B-ORG I-ORG: right for conlleval, not strict."""
    out = evaluate_tags([["B-ORG", "I-ORG", "O"]], [["I-ORG", "I-ORG", "O"]])
    assert out["seqeval"]["default"]["f"] == 1.0
    assert out["seqeval"]["strict"]["f"] == 0.0
    assert out["semeval"]["strict"]["f"] == 1.0  # nervaluate chunks like conlleval


def test_evaluation_is_per_reference_sentence():
    """An entity predicted across a gold sentence boundary is cut there, as conlleval does."""
    s1 = (["in", "New", "York"], ["O", "B-LOC", "I-LOC"])
    s2 = (["Times", "said"], ["B-ORG", "O"])
    gold = make_doc([s1, s2])
    pred = Doc(
        VOCAB,
        words=["in", "New", "York", "Times", "said"],
        ents=["O", "B-ORG", "I-ORG", "I-ORG", "O"],
    )
    metrics = evaluate_ner([gold], [pred])
    # per sentence: [B-ORG I-ORG] (wrong type) | [I-ORG], which conlleval reads as ORG "Times"
    assert metrics["seqeval"]["default"]["f"] == pytest.approx(0.5)
    assert metrics["seqeval"]["strict"]["f"] == 0.0  # strict IOB2 does not open an entity on I-
    assert metrics["spacy"]["f"] == 0.0  # spaCy is per document: one wrong 3-token ORG
    assert metrics["n_sentences"] == 2
    # without gold sentence boundaries the doc is one sequence
    gold_one = make_doc([s1, s2], sent_starts=False)
    assert evaluate_ner([gold_one], [pred])["seqeval"]["default"]["f"] == 0.0


def test_evaluation_rejects_mismatched_inputs():
    gold = make_doc([(W3, ["O"] * 3)])
    with pytest.raises(ValueError, match="1 gold documents but 2 predicted"):
        evaluate_ner([gold], [gold, gold])
    other = Doc(VOCAB, words=["x", "y", "z"])
    with pytest.raises(ValueError, match="document 0: predicted text differs"):
        evaluate_ner([gold], [other])
    with pytest.raises(ValueError, match="not IOB"):
        evaluate_tags([["B-PER"]], [["U-PER"]])
    with pytest.raises(ValueError, match="sequence 0: 1 gold tags but 2"):
        evaluate_tags([["O"]], [["O", "O"]])


def test_evaluation_aligns_different_tokenization():
    """Predictions over another tokenization are projected onto the reference tokens."""
    gold = Doc(
        VOCAB,
        words=["New", "York", "-", "based"],
        spaces=[True, False, False, False],
        ents=["B-LOC", "I-LOC", "O", "O"],
    )
    pred = Doc(VOCAB, words=["New", "York-based"], spaces=[True, False], ents=["B-LOC", "O"])
    metrics = evaluate_ner([gold], [pred])
    assert metrics["seqeval"]["default"]["f"] == 0.0  # LOC "New" is a boundary error
    assert metrics["semeval"]["partial"]["partial"] == 1


# --------------------------------------------------------------------------- property tests

LABELS = ("PER", "LOC", "ORG")
RAW_TAG = st.sampled_from(["O", "O", "O"] + [f"{p}-{label}" for label in LABELS for p in "BI"])


def to_valid_iob2(tags):
    """Turn an I-X that cannot continue an entity into B-X (a valid IOB2 sequence)."""
    out = []
    for i, tag in enumerate(tags):
        if tag.startswith("I-") and (i == 0 or out[-1] == "O" or out[-1][2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
    return out


def spans_of(tags):
    spans, start = [], None
    for i, tag in enumerate(list(tags) + ["O"]):
        if start is not None and not (tag.startswith("I-") and tag[2:] == tags[start][2:]):
            spans.append((tags[start][2:], start, i))
            start = None
        if tag.startswith("B-"):
            start = i
    return spans


@st.composite
def sentence_pairs(draw):
    n = draw(st.integers(1, 8))
    gold = to_valid_iob2(draw(st.lists(RAW_TAG, min_size=n, max_size=n)))
    noise = draw(st.lists(RAW_TAG, min_size=n, max_size=n))
    keep = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    pred = to_valid_iob2([g if k else r for g, r, k in zip(gold, noise, keep)])
    return gold, pred


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(sentence_pairs(), min_size=1, max_size=3), min_size=1, max_size=4))
def test_evaluation_matches_seqeval_nervaluate_and_brute_force(docs):
    gold_docs, pred_docs, gold_seqs, pred_seqs = [], [], [], []
    for d, sents in enumerate(docs):
        words = [[f"w{d}_{s}_{i}" for i in range(len(g))] for s, (g, _) in enumerate(sents)]
        gold_docs.append(make_doc([(w, g) for w, (g, _) in zip(words, sents)]))
        pred_docs.append(make_doc([(w, p) for w, (_, p) in zip(words, sents)], sent_starts=False))
        gold_seqs += [g for g, _ in sents]
        pred_seqs += [p for _, p in sents]
    assert sentence_sequences(gold_docs, pred_docs) == (gold_seqs, pred_seqs)
    metrics = evaluate_ner(gold_docs, pred_docs)
    ours = flat(metrics)
    # seqeval, both modes
    for mode, kw in (
        ("seqeval_default", {}),
        ("seqeval_strict", {"mode": "strict", "scheme": IOB2}),
    ):
        expected = tuple(
            fn(gold_seqs, pred_seqs, zero_division=0, **kw)
            for fn in (precision_score, recall_score, f1_score)
        )
        assert ours[mode] == pytest.approx(expected), mode
    # nervaluate, all four modes, overall and per type
    nv = Evaluator(gold_seqs, pred_seqs, tags=list(LABELS), loader="list").evaluate()
    for ours_name, theirs in (
        ("strict", "strict"),
        ("exact", "exact"),
        ("partial", "partial"),
        ("type", "ent_type"),
    ):
        r = nv["overall"][theirs]
        assert ours[f"semeval_{ours_name}"] == pytest.approx((r.precision, r.recall, r.f1))
        for label, row in metrics["semeval"][ours_name]["per_type"].items():
            assert row["f"] == pytest.approx(nv["entities"][label][theirs].f1)
    # brute force: on valid IOB2 within sentences every exact-match mode is the same count
    gold_spans = {(k, s) for k, seq in enumerate(gold_seqs) for s in spans_of(seq)}
    pred_spans = {(k, s) for k, seq in enumerate(pred_seqs) for s in spans_of(seq)}
    tp = len(gold_spans & pred_spans)
    p = tp / len(pred_spans) if pred_spans else 0.0
    r = tp / len(gold_spans) if gold_spans else 0.0
    for mode in ("seqeval_default", "seqeval_strict", "semeval_strict", "spacy"):
        assert ours[mode] == pytest.approx(prf(p, r)), mode


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.integers(1, 6).flatmap(
            lambda n: st.tuples(
                st.lists(RAW_TAG, min_size=n, max_size=n), st.lists(RAW_TAG, min_size=n, max_size=n)
            )
        ),
        min_size=1,
        max_size=5,
    )
)
def test_evaluation_tags_match_seqeval_on_any_bio(pairs):
    """Raw (possibly ill-formed) BIO: both seqeval modes, as seqeval computes them."""
    gold = [to_valid_iob2(g) for g, _ in pairs]
    pred = [p for _, p in pairs]
    out = evaluate_tags(gold, pred)
    assert out["seqeval"]["default"]["f"] == pytest.approx(f1_score(gold, pred, zero_division=0))
    assert out["seqeval"]["strict"]["f"] == pytest.approx(
        f1_score(gold, pred, mode="strict", scheme=IOB2, zero_division=0)
    )
    assert 0.0 <= out["semeval"]["partial"]["f"] <= 1.0 and not math.isnan(
        out["semeval"]["type"]["f"]
    )


# --------------------------------------------------------------------------- real data


def test_evaluation_gold_equals_pred_on_conll_test(conll_dir):
    gold, _ = read_conll(conll_dir / "test.txt", vocab=VOCAB)
    pred = [
        Doc(
            VOCAB,
            words=[t.text for t in d],
            ents=[t.ent_iob_ + ("-" + t.ent_type_ if t.ent_type_ else "") for t in d],
        )
        for d in gold
    ]
    metrics = evaluate_ner(gold, pred)
    assert (
        metrics["n_docs"] == 231 and metrics["n_sentences"] == 3453 and metrics["n_tokens"] == 46435
    )
    assert metrics["labels"] == ["LOC", "MISC", "ORG", "PER"]
    for mode, figures in flat(metrics).items():
        assert figures == (1.0, 1.0, 1.0), mode
    for mode in ("default", "strict"):
        assert metrics["seqeval"][mode]["support"] == 5648
        assert all(row["f"] == 1.0 for row in metrics["seqeval"][mode]["per_type"].values())
    for mode in ("strict", "exact", "partial", "type"):
        assert all(row["f"] == 1.0 for row in metrics["semeval"][mode]["per_type"].values())
        assert metrics["semeval"][mode]["correct"] == 5648


# --------------------------------------------------------------------------- textcat


def cat_doc(text, cats):
    d = Doc(VOCAB, words=text.split())
    d.cats = cats
    return d


def test_evaluation_textcat_hand_case():
    gold = [
        cat_doc("a", {"POS": 1.0, "NEG": 0.0}),
        cat_doc("b", {"POS": 1.0, "NEG": 0.0}),
        cat_doc("c", {"POS": 0.0, "NEG": 1.0}),
        cat_doc("d", {"POS": 0.0, "NEG": 1.0}),
    ]
    pred = [
        cat_doc("a", {"POS": 0.9, "NEG": 0.1}),
        cat_doc("b", {"POS": 0.4, "NEG": 0.6}),
        cat_doc("c", {"POS": 0.3, "NEG": 0.7}),
        cat_doc("d", {"POS": 0.2, "NEG": 0.8}),
    ]
    out = evaluate_textcat(gold, pred)
    assert out["accuracy"] == 0.75
    # NEG: tp 2, fp 1 (b), fn 0 -> P 2/3, R 1, F 0.8; POS: tp 1, fp 0, fn 1 -> P 1, R 1/2, F 2/3
    assert (
        out["per_class"]["NEG"]["p"],
        out["per_class"]["NEG"]["r"],
        out["per_class"]["NEG"]["f"],
    ) == pytest.approx((2 / 3, 1.0, 0.8))
    assert out["per_class"]["POS"]["f"] == pytest.approx(2 / 3)
    assert out["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert out["confusion_matrix"] == {"labels": ["NEG", "POS"], "matrix": [[2, 0], [1, 1]]}
    # AUC on POS scores: positives {0.9, 0.4}, negatives {0.3, 0.2}: every pair ranked right
    assert out["positive_label"] == "POS" and out["roc_auc"] == 1.0
    assert evaluate_docs(gold, pred).keys() == {"textcat"}


def test_evaluation_textcat_three_classes_and_errors():
    labels = ("A", "B", "C")

    def d(label, scores=None):
        return cat_doc("x", scores or {k: float(k == label) for k in labels})

    gold = [d("A"), d("B"), d("C"), d("C")]
    pred = [d("A"), d("C"), d("C"), d("B")]
    out = evaluate_textcat(gold, pred)
    assert out["accuracy"] == 0.5 and "roc_auc" not in out
    assert out["confusion_matrix"]["matrix"] == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    with pytest.raises(ValueError, match="predicted document 0 has no score"):
        evaluate_textcat([d("A")], [cat_doc("x", {"A": 1.0})])
    with pytest.raises(ValueError, match="no text categories"):
        evaluate_textcat([cat_doc("x", {})], [cat_doc("x", {})])


def test_evaluation_predict_docs_keeps_sentences_and_gold_preproc_runs_each_alone():
    """Without gold_preproc the pipeline sees the reference's sentence starts;
    with it, each sentence is its own doc and the predictions join back into one
    doc per reference, with the reference's words and text."""
    import spacy

    from spacy_rnn.evaluation import predict_docs

    nlp = spacy.blank("en")
    seen = []

    @spacy.Language.component("record_lengths_for_test")
    def record(doc):
        seen.append((len(doc), [t.is_sent_start for t in doc]))
        doc.ents = [doc.char_span(0, len(doc[0].text), label="X")]
        return doc

    nlp.add_pipe("record_lengths_for_test")
    words = ["Anna", "went", ".", "Bob", "left", "."]
    gold = Doc(nlp.vocab, words=words, sent_starts=[True, False, False, True, False, False])
    (pred,) = predict_docs(nlp, [gold])
    assert seen == [(6, [True, False, False, True, False, False])]
    assert [e.text for e in pred.ents] == ["Anna"]
    seen.clear()
    (pred,) = predict_docs(nlp, [gold], gold_preproc=True)
    assert [n for n, _ in seen] == [3, 3]
    assert [t.text for t in pred] == words and pred.text == gold.text
    assert [(e.start, e.text) for e in pred.ents] == [(0, "Anna"), (3, "Bob")]


def _cli(args):
    from typer.testing import CliRunner

    from spacy_rnn.cli import _load_commands, app

    _load_commands()
    return CliRunner().invoke(app, [str(a) for a in args])


def test_evaluation_cli_raw_conll_advises_our_convert(tmp_path):
    """A raw CoNLL file given as GOLD: the advice is spacy_rnn's converter, not
    spaCy's (which reads CoNLL-2003's -DOCSTART- lines as sentences)."""
    raw = tmp_path / "test.txt"
    raw.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\n", encoding="utf-8")
    result = _cli(["evaluate", raw, "--predictions", raw])
    out = " ".join(result.output.split())
    assert result.exit_code == 1, out
    assert f"python -m spacy_rnn convert {raw} {tmp_path / 'test.spacy'}" in out
    assert "python -m spacy convert" not in out


def test_evaluation_cli_shows_progress_on_stderr(tmp_path):
    """`evaluate --model` says what it does and how far prediction is, on stderr;
    stdout keeps the result tables."""
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "PER", "pattern": "Anna"}])
    nlp.to_disk(tmp_path / "model")
    gold = [
        make_doc([(["Anna", "met", "Bob"], ["B-PER", "O", "B-PER"])], vocab=nlp.vocab)
        for _ in range(7)
    ]
    DocBin(docs=gold).to_disk(tmp_path / "gold.spacy")
    result = _cli(["evaluate", tmp_path / "gold.spacy", "--model", tmp_path / "model"])
    assert result.exit_code == 0, result.output
    assert "Running" in result.stderr and "7 documents" in result.stderr
    assert "Predicting" in result.stderr and "7/7" in result.stderr
    assert "Scoring 7 documents" in result.stderr
    assert "Predicting" not in result.stdout and "Scoring" not in result.stdout
    assert "seqeval" in result.stdout.lower()


# --------------------------------------------------------------------------- calibration


def scored_doc(words, ents, scores, raw=None, key="crf_ner"):
    """A predicted doc whose span group `key` holds `ents` [(start, end, label)]
    with confidences (and raw_scores when given)."""
    from spacy.tokens import Span, SpanGroup

    doc = Doc(VOCAB, words=words)
    spans = [Span(doc, s, e, label=label) for s, e, label in ents]
    attrs = {"scores": list(scores)}
    if raw is not None:
        attrs["raw_scores"] = list(raw)
    doc.spans[key] = SpanGroup(doc, name=key, spans=spans, attrs=attrs)
    doc.ents = spans
    return doc


def test_evaluation_ner_calibration_hand_case():
    """Correct = exact span and type: a right entity, a wrong type, a span one
    token too long; ECE, Brier and the thresholds by hand."""
    from spacy_rnn.evaluation import ner_calibration

    words = ["Anna", "met", "Bob", "Smith", "in", "Paris"]
    gold = [make_doc([(words, ["B-PER", "O", "B-PER", "I-PER", "O", "B-LOC"])])]
    pred = [scored_doc(words, [(0, 1, "PER"), (2, 3, "PER"), (5, 6, "ORG")], [0.9, 0.6, 0.3],
                       raw=[0.99, 0.8, 0.5])]
    out = ner_calibration(gold, pred)
    rep = out["scores"]
    assert out["spans_key"] == "crf_ner" and rep["n"] == 3
    assert rep["accuracy"] == pytest.approx(1 / 3)
    # 15 equal-mass bins over 3 entities: one per bin, |acc - conf| summed / 3
    assert rep["ece"] == pytest.approx((0.1 + 0.6 + 0.3) / 3)
    assert rep["brier"] == pytest.approx((0.01 + 0.36 + 0.09) / 3)
    assert [(r["threshold"], r["count"], r["precision"]) for r in rep["precision_at"]] == [
        (0.5, 2, 0.5), (0.7, 1, 1.0), (0.9, 1, 1.0), (0.95, 0, None)
    ]
    assert out["raw_scores"]["brier"] == pytest.approx((0.01 ** 2 + 0.8 ** 2 + 0.5 ** 2) / 3)
    assert "missed" not in out
    out = ner_calibration(gold, pred, missed_probs=[0.2, 0.05])
    assert out["missed"]["n"] == 2 and out["missed"]["mean_probability"] == pytest.approx(0.125)
    assert out["missed"]["share_at_least"]["0.1"] == 0.5
    # No scored span group: no calibration part (e.g. spaCy's own ner).
    assert ner_calibration(gold, [make_doc([(words, ["O"] * 6)])]) is None
    assert "calibration" in evaluate_docs(gold, pred)["ner"]
    from spacy_rnn.evaluation import missed_entities

    assert missed_entities(gold, pred) == [[(2, 4, "PER"), (5, 6, "LOC")]]


def test_evaluation_textcat_calibration():
    from spacy_rnn.evaluation import textcat_calibration, textcat_confidences

    gold = [cat_doc("a", {"POS": 1.0, "NEG": 0.0}), cat_doc("b", {"POS": 0.0, "NEG": 1.0})]
    pred = [cat_doc("a", {"POS": 0.8, "NEG": 0.2}), cat_doc("b", {"POS": 0.7, "NEG": 0.3})]
    assert textcat_confidences(gold, pred) == ([0.8, 0.7], [True, False])
    # One cat label: "not POS" is the predicted class below 0.5, with 1 - p.
    gold1 = [cat_doc("a", {"POS": 1.0}), cat_doc("b", {"POS": 0.0})]
    pred1 = [cat_doc("a", {"POS": 0.4}), cat_doc("b", {"POS": 0.1})]
    conf, correct = textcat_confidences(gold1, pred1)
    assert conf == pytest.approx([0.6, 0.9]) and correct == [False, True]
    out = textcat_calibration(gold, pred)["scores"]
    assert out["brier"] == pytest.approx((0.2 ** 2 + 0.7 ** 2) / 2)
    assert evaluate_docs(gold, pred)["textcat"]["calibration"]["scores"]["n"] == 2


def test_evaluation_gold_preproc_keeps_the_span_groups():
    """Joining the sentence docs back keeps each sentence's span group, its
    spans shifted and its list attrs concatenated."""
    import spacy
    from spacy.tokens import Span, SpanGroup

    from spacy_rnn.evaluation import predict_docs

    nlp = spacy.blank("en")

    @spacy.Language.component("score_first_token_for_test")
    def score(doc):
        doc.spans["k"] = SpanGroup(
            doc, name="k", spans=[Span(doc, 0, 1, label="X")],
            attrs={"scores": [len(doc) / 10], "sentences": [[0, len(doc)]], "model": "m"},
        )
        return doc

    nlp.add_pipe("score_first_token_for_test")
    words = ["Anna", "went", ".", "Bob", "left", "now", "."]
    gold = Doc(nlp.vocab, words=words, sent_starts=[1, 0, 0, 1, 0, 0, 0])
    (pred,) = predict_docs(nlp, [gold], gold_preproc=True)
    group = pred.spans["k"]
    assert [(s.start, s.end, s.label_) for s in group] == [(0, 1, "X"), (3, 4, "X")]
    assert group.attrs == {"scores": [0.3, 0.4], "sentences": [[0, 3], [3, 7]], "model": "m"}
