"""The `crf_ner` component: named entities from a linear-chain CRF over
recurrent token vectors, with per-entity confidence from the CRF marginals.

The CRF runs over "chains": each sentence of a doc that has sentence
boundaries (from a parser, senter, sentencizer or the corpus), else the whole
doc. The encoder still reads the whole doc, so a sentence sees its document's
context, while no entity can cross a sentence boundary.

This module is the spaCy side: Docs and Examples in, annotations and losses
out. The CRF itself (layout of the chains, Viterbi, marginals, the loss) lives
in `spacy_rnn.ml.chains` and `spacy_rnn.ml.crf` (decoding in numpy,
`crf_numpy`; the loss in torch, `crf_torch`), the tag arithmetic in
`spacy_rnn.schemes`; they speak numpy arrays.
"""

from itertools import islice
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy
from spacy.attrs import ENT_IOB, ENT_TYPE, IDX
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.pipeline.ner import ner_score
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, set_dropout_rate
from thinc.types import Floats2d

from ..calibration import binary_nll, fit_temperature
from ..ml.chains import ChainLayout, concat_rows
from ..ml.crf import (
    NBestPaths,
    chain_loss,
    chain_span_log_probs,
    check_temperature,
    decode_chains,
    decode_entities,
    decode_with_nbest,
    span_probabilities,
)
from ..schemes import encode_tag_ids, normalize_scheme, tag_set

# The schemes the CRF can be trained in; BILUO is the default everywhere.
CRF_SCHEMES = ("BILUO", "IOB2")
DEFAULT_SCHEME = "BILUO"

default_model_config = """
[model]
@architectures = "spacy_rnn.CRFTagger.v1"
nO = null

[model.tok2vec]
@architectures = "spacy.Tok2Vec.v2"

[model.tok2vec.embed]
@architectures = "spacy_rnn.CharWordEmbed.v2"
width = 128
attrs = ["PREFIX", "SUFFIX", "SHAPE"]
rows = [1000, 2500, 2500]
include_static_vectors = false
char_encoder = "lstm"
char_width = 50
char_embed_size = 25
max_chars = 20
char_window = 3
char_rows = 1000
dropout = 0.3
word_rows = 30000
word_attr = "NORM"
word_dropout = 1.0
tune_vectors = 0

[model.tok2vec.encode]
@architectures = "spacy_rnn.BiRNNEncoder.v1"
width = 256
depth = 1
cell = "lstm"
bidirectional = true
dropout = 0.2
"""
DEFAULT_CRF_NER_MODEL = Config().from_str(default_model_config)["model"]


@Language.factory(
    "crf_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "doc.spans"],
    default_config={
        "model": DEFAULT_CRF_NER_MODEL,
        "scheme": DEFAULT_SCHEME,
        "spans_key": "crf_ner",
        "write_ents": True,
        "n_best": 1,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_crf_ner(
    nlp: Language,
    name: str,
    model: Model[List[Doc], List[Floats2d]],
    scheme: str,
    spans_key: str,
    write_ents: bool,
    n_best: int,
    scorer: Optional[Callable],
) -> "CRFEntityRecognizer":
    """Create a CRF named entity recognizer.

    model (Model[List[Doc], List[Floats2d]]): emission scores per token, with
        a "crf" node holding the CRF scores (spacy_rnn.CRFTagger.v1; v3 adds a
        language-model objective, whose loss `update` reports as "<name>_lm").
    scheme (str): the tag scheme of the CRF, "BILUO" (the default, as in the
        CRF layer and the shipped configs) or "BIO" (IOB2); decoding is
        constrained to valid sequences in it.
    spans_key (str): the key of the span group with the entities and their
        confidences (`doc.spans[spans_key].attrs["scores"]`).
    write_ents (bool): whether to set `doc.ents`; if false, only the span
        group is written.
    n_best (int): with k > 1, the k best tag paths of each sentence are also
        written, as the span group `doc.spans[spans_key + "_nbest"]` (see
        `CRFEntityRecognizer.set_annotations`); `doc.ents` stays the best path.
    scorer (Optional[Callable]): the scoring method (spacy.ner_scorer.v1).
    """
    return CRFEntityRecognizer(
        nlp.vocab,
        model,
        name,
        scheme=scheme,
        spans_key=spans_key,
        write_ents=write_ents,
        n_best=n_best,
        scorer=scorer,
    )


class CRFPrediction(NamedTuple):
    """What `predict` finds for a batch of docs: one row per entity, in doc
    order. `starts`/`ends` are token offsets in the batch's concatenated
    tokens (end exclusive); `scores` the entities' confidences."""

    doc_offsets: numpy.ndarray  # (n_docs + 1,) start of each doc in the batch's tokens
    starts: numpy.ndarray  # (n_ents,)
    ends: numpy.ndarray  # (n_ents,)
    labels: numpy.ndarray  # (n_ents,) index into the component's labels
    scores: numpy.ndarray  # (n_ents,) float, in [0, 1], at the component's temperature
    raw_scores: numpy.ndarray  # (n_ents,) float, at temperature 1
    layout: Optional[ChainLayout] = None
    nbest: Optional[NBestPaths] = None


class CRFEntityRecognizer(TrainablePipe):
    """Named entity recognition with a linear-chain CRF over token vectors.

    The labels (entity types) live in `self.cfg["labels"]`; the CRF's tag set
    is derived from them and the scheme (`spacy_rnn.schemes.tag_set`): "O",
    then for each label its prefixes in the scheme's order (B, I, L, U for
    BILUO; B, I for BIO).

    Each predicted entity gets a confidence: the marginal probability, under
    the CRF, of the entity's tag path (e.g. B-PER I-PER L-PER), that is the
    probability that exactly this entity is in the model's output
    distribution (see `spacy_rnn.ml.crf.span_log_probs`). It is stored in
    `doc.spans[spans_key].attrs["scores"]`, one value per span.

    Calibration: `cfg["temperature"]` (absent, i.e. 1.0, until `calibrate`
    fits one on dev data; saved with the cfg) divides every CRF potential (emissions,
    transitions, start and end scores) before the marginals are taken. That
    divides every path's score by the same T, so the decoded entities (and
    F1) never change; only the confidences do. With T != 1 the scores at
    T = 1 stay readable in `doc.spans[spans_key].attrs["raw_scores"]`.
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "crf_ner",
        *,
        scheme: str = DEFAULT_SCHEME,
        spans_key: str = "crf_ner",
        write_ents: bool = True,
        n_best: int = 1,
        scorer: Optional[Callable] = ner_score,
    ) -> None:
        canonical = normalize_scheme(scheme)
        if canonical not in CRF_SCHEMES:
            raise ValueError(f"crf_ner: scheme must be 'BIO' (IOB2) or 'BILUO', got {scheme!r}")
        if not isinstance(n_best, int) or isinstance(n_best, bool) or n_best < 1:
            raise ValueError(
                f"crf_ner: n_best must be an integer >= 1 (components.{name}.n_best), got "
                f"{n_best!r}"
            )
        # Not in cfg: a setting of this pipeline's run, which a saved cfg must not override.
        self.n_best = n_best
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict = {
            "labels": [],
            "scheme": canonical,
            "spans_key": spans_key,
            "write_ents": bool(write_ents),
        }

    @property
    def labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        return list(self.cfg["labels"])

    @property
    def tags(self) -> List[str]:
        """The CRF's tag set, in the order of its scores."""
        return tag_set(self.labels, self.cfg["scheme"])

    def add_label(self, label: str) -> int:
        if not isinstance(label, str) or not label:
            raise ValueError(f"crf_ner: a label must be a non-empty string, got {label!r}")
        if label in self.cfg["labels"]:
            return 0
        crf = self.model.get_ref("crf")
        if crf.has_param("transitions") and crf.get_param("transitions") is not None:
            raise ValueError(
                f"crf_ner: cannot add label {label!r} to component '{self.name}' after it was "
                f"initialized (labels: {', '.join(self.labels)}); add all labels before initialize"
            )
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    # ---- initialize -----------------------------------------------------

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Sequence[str]] = None,
    ) -> None:
        """Collect the labels (or take `labels`), size the model and initialize it.

        get_examples (Callable[[], Iterable[Example]]): the training examples.
        labels (Optional[Sequence[str]]): the entity types, in order; by default
            every type in the examples' reference entities, sorted.
        """
        validate_get_examples(get_examples, "CRFEntityRecognizer.initialize")
        if labels is not None:
            for label in labels:
                self.add_label(label)
        else:
            found = set()
            for example in get_examples():
                found.update(ent.label_ for ent in example.reference.ents)
            for label in sorted(found):
                self.add_label(label)
        if not self.labels:
            raise ValueError(
                f"crf_ner: no entity labels for component '{self.name}': the examples have no "
                f"entities and no labels were given ([initialize.components.{self.name}] labels)"
            )
        self._configure_model()
        docs = [example.predicted for example in islice(get_examples(), 10)]
        self.model.initialize(X=docs)

    def _configure_model(self) -> None:
        """Give the CRF its tags and scheme, and the output layers their width."""
        n_tags = len(self.tags)
        crf = self.model.get_ref("crf")
        crf.attrs["tags"] = self.tags
        crf.attrs["scheme"] = self.cfg["scheme"]
        output_layer = self.model.get_ref("output_layer")
        for node in self.model.walk():
            if (
                node is crf
                or node is output_layer
                or output_layer in node.layers
                or node is self.model
            ):
                if node.has_dim("nO") is None:
                    node.set_dim("nO", n_tags)
                elif node.has_dim("nO") and node.get_dim("nO") != n_tags:
                    raise ValueError(
                        f"crf_ner: the model's output width nO = {node.get_dim('nO')} does not "
                        f"match the {n_tags} tags of {len(self.labels)} labels in the "
                        f"{self.cfg['scheme']} scheme"
                    )

    # ---- predict --------------------------------------------------------

    @property
    def temperature(self) -> float:
        """The temperature the confidences are computed at (`cfg["temperature"]`,
        1.0 when absent: a pipeline never calibrated keeps its saved cfg)."""
        return check_temperature(self.cfg.get("temperature", 1.0))

    def predict(self, docs: Iterable[Doc]) -> CRFPrediction:
        """Decode each chain (sentence or doc) with constrained Viterbi and
        score each entity by its marginal probability; with `n_best > 1` also
        the k best paths of each chain."""
        docs = list(docs)
        layout = ChainLayout.from_docs(docs)
        if layout.n_tokens == 0:
            return _empty_prediction(layout.doc_offsets)
        emissions = concat_rows(self.model.ops, self.model.predict(docs))
        crf = self.model.get_ref("crf")
        nbest = None
        if self.n_best > 1:
            found, nbest = decode_with_nbest(crf, emissions, layout, self.n_best, self.temperature)
        else:
            found = decode_entities(crf, emissions, layout, self.temperature)
        return CRFPrediction(layout.doc_offsets, *found, layout=layout, nbest=nbest)

    def set_annotations(self, docs: Iterable[Doc], prediction: CRFPrediction) -> None:
        """Write `doc.spans[spans_key]` (the entities; attrs "scores", and
        "raw_scores" at temperature 1 when the temperature is not 1), and
        `doc.ents` unless write_ents is false.

        With n_best = k > 1, also `doc.spans[spans_key + "_nbest"]`: the
        entities of the k best tag paths of each sentence (a sentence's
        entities appear once per path that holds them), ordered by sentence,
        then path, then position, with attrs "ranks" (per span: its path's
        rank in its sentence, 1 = the best path, the one in `doc.ents`) and
        "path_probs" (per span: that path's probability); and per sentence of
        the doc "sentences" ([start, end) token offsets) and "probs" (the
        probabilities of its k best paths, best first, 0.0 where the sentence
        has fewer valid paths; they sum to at most 1). A path without entities
        shows only in "probs".
        """
        key = self.cfg["spans_key"]
        write_ents = self.cfg["write_ents"]
        offsets = prediction.doc_offsets
        raw = prediction.raw_scores is not prediction.scores
        # The batch's entities as Python lists, once: doc-relative offsets,
        # label ids in the StringStore, scores (per-entity numpy scalars cost
        # more than the Spans themselves).
        first = numpy.searchsorted(prediction.starts, offsets).tolist()
        doc_of = numpy.searchsorted(offsets, prediction.starts, side="right") - 1
        base = offsets[doc_of]
        starts = (prediction.starts - base).tolist()
        ends = (prediction.ends - base).tolist()
        label_ids = numpy.array(
            [self.vocab.strings.add(label) for label in self.labels], dtype="uint64"
        )
        labels = label_ids[prediction.labels].tolist()
        scores = prediction.scores.tolist()
        raw_scores = prediction.raw_scores.tolist() if raw else None
        for i, doc in enumerate(docs):
            lo, hi = first[i], first[i + 1]
            spans = [
                Span(doc, s, e, label=lab)
                for s, e, lab in zip(starts[lo:hi], ends[lo:hi], labels[lo:hi])
            ]
            attrs = {"scores": scores[lo:hi]}
            if raw:
                attrs["raw_scores"] = raw_scores[lo:hi]
            doc.spans[key] = SpanGroup(doc, name=key, spans=spans, attrs=attrs)
            if prediction.nbest is not None:
                self._set_nbest(doc, i, prediction)
            elif self.n_best > 1:  # a batch without tokens
                name = f"{key}_nbest"
                attrs = {"ranks": [], "path_probs": [], "sentences": [], "probs": []}
                doc.spans[name] = SpanGroup(doc, name=name, spans=[], attrs=attrs)
            if write_ents:
                if doc.ents:
                    # Entities set before this component (e.g. an entity_ruler) are kept.
                    taken = numpy.zeros(len(doc), dtype=bool)
                    for ent in doc.ents:
                        taken[ent.start:ent.end] = True
                    spans = list(doc.ents) + [
                        span for span in spans if not taken[span.start:span.end].any()
                    ]
                    spans.sort(key=lambda span: span.start)
                doc.set_ents(spans, default="outside")

    def _set_nbest(self, doc: Doc, i: int, prediction: CRFPrediction) -> None:
        """The span group of the n best paths of doc i of the batch."""
        nbest, layout = prediction.nbest, prediction.layout
        labels = self.labels
        base = int(prediction.doc_offsets[i])
        # The doc's chains and its rows of the n-best entities
        chain_lo, chain_hi = numpy.searchsorted(
            layout.chain_offsets, prediction.doc_offsets[i:i + 2]
        )
        lo, hi = numpy.searchsorted(nbest.chains, [chain_lo, chain_hi])
        spans = [
            Span(doc, int(s) - base, int(e) - base, label=labels[lab])
            for s, e, lab in zip(nbest.starts[lo:hi], nbest.ends[lo:hi], nbest.labels[lo:hi])
        ]
        chains = nbest.chains[lo:hi]
        attrs = {
            "ranks": (nbest.ranks[lo:hi] + 1).tolist(),
            "path_probs": nbest.path_probs[chains, nbest.ranks[lo:hi]].tolist(),
            "sentences": [
                [int(a) - base, int(b) - base]
                for a, b in zip(
                    layout.chain_offsets[chain_lo:chain_hi],
                    layout.chain_offsets[chain_lo + 1:chain_hi + 1],
                )
            ],
            "probs": nbest.path_probs[chain_lo:chain_hi].tolist(),
        }
        name = f"{self.cfg['spans_key']}_nbest"
        doc.spans[name] = SpanGroup(doc, name=name, spans=spans, attrs=attrs)

    # ---- confidence -----------------------------------------------------

    def span_probabilities(
        self, doc: Doc, spans: Iterable, temperature: Optional[float] = None
    ) -> numpy.ndarray:
        """The probability the model gives to exactly each span being one of
        its entities, whether it predicted it or not (for the gold entities it
        missed, say): the CRF marginal of the span's tag path in its sentence.

        doc (Doc): a doc as this component sees it (run the components before
            it first when they feed it, e.g. a shared tok2vec).
        spans (Iterable): `Span`s of `doc` or (start, end, label) token offsets.
            A span that crosses a sentence boundary, or whose label the
            component does not know, gets 0.0.
        temperature (Optional[float]): the component's own by default; 1.0
            for the uncalibrated marginals.
        RETURNS (ndarray): (n_spans,) float64 in [0, 1].
        """
        return self.batch_span_probabilities([doc], [spans], temperature)[0]

    def batch_span_probabilities(
        self,
        docs: Sequence[Doc],
        spans: Sequence[Iterable],
        temperature: Optional[float] = None,
    ) -> List[numpy.ndarray]:
        """`span_probabilities` for a batch of docs, one array per doc."""
        docs = list(docs)
        spans = [list(group) for group in spans]
        if len(spans) != len(docs):
            raise ValueError(f"crf_ner: {len(docs)} docs but {len(spans)} lists of spans")
        T = self.temperature if temperature is None else check_temperature(temperature)
        label_index = {label: i for i, label in enumerate(self.labels)}
        layout = ChainLayout.from_docs(docs)
        starts, ends, labels, owner = [], [], [], []
        for i, (doc, group) in enumerate(zip(docs, spans)):
            for span in group:
                if isinstance(span, Span):
                    s, e, label = span.start, span.end, span.label_
                else:
                    s, e, label = span
                if not 0 <= s < e <= len(doc):
                    raise ValueError(
                        f"crf_ner: span ({s}, {e}) is not within doc {i} of {len(doc)} tokens"
                    )
                starts.append(layout.doc_offsets[i] + s)
                ends.append(layout.doc_offsets[i] + e)
                labels.append(label_index.get(label, -1))
                owner.append(i)
        probs = numpy.zeros(len(starts), dtype="float64")
        known = numpy.asarray(labels, dtype="int64") >= 0
        if known.any():
            emissions = concat_rows(self.model.ops, self.model.predict(docs))
            probs[known] = span_probabilities(
                self.model.get_ref("crf"),
                emissions,
                layout,
                numpy.asarray(starts)[known],
                numpy.asarray(ends)[known],
                numpy.asarray(labels)[known],
                T,
            )
        owner = numpy.asarray(owner, dtype="int64")
        return [probs[owner == i] for i in range(len(docs))]

    def calibrate(self, examples: Iterable[Example], batch_size: int = 128) -> Dict[str, float]:
        """Fit `cfg["temperature"]` on held-out examples and set it.

        The temperature minimises the binary negative log-likelihood of the
        predicted entities' correctness (exact span and type among the
        reference's entities) under their confidences: that is the proper
        scoring rule of exactly the number users threshold on, so a
        confidence of 0.9 is pushed towards being right 9 times in 10. (The
        CRF's own sequence likelihood of the gold paths would calibrate whole
        paths, not the entities that are shown.) The decoded entities do not
        depend on the temperature, so the examples are run once.

        examples: `Example`s whose predicted docs are as this component sees
            them (the components before it have run) and whose references
            hold the gold entities; tokens may differ, entities are matched by
            character offsets.
        RETURNS (Dict[str, float]): temperature, nll_before (T = 1),
            nll_after, n_entities, accuracy (share of the entities correct).
        """
        examples = list(examples)
        validate_examples(examples, "CRFEntityRecognizer.calibrate")
        crf = self.model.get_ref("crf")
        batches, correct = [], []
        for lo in range(0, len(examples), batch_size):
            part = examples[lo:lo + batch_size]
            docs = [example.predicted for example in part]
            layout = ChainLayout.from_docs(docs)
            if layout.n_tokens == 0:
                continue
            emissions = concat_rows(self.model.ops, self.model.predict(docs))
            batch, (starts, ends, labels) = decode_chains(crf, emissions, layout)
            batches.append(batch)
            doc_of = numpy.searchsorted(layout.doc_offsets, starts, side="right") - 1
            for s, e, lab, d in zip(starts, ends, labels, doc_of):
                doc = docs[d]
                base = int(layout.doc_offsets[d])
                span = doc[int(s) - base:int(e) - base]
                gold = {
                    (ent.start_char, ent.end_char, ent.label_) for ent in part[d].reference.ents
                }
                correct.append((span.start_char, span.end_char, self.labels[lab]) in gold)

        def nll_at(temperature: float) -> float:
            logp = numpy.concatenate(
                [chain_span_log_probs(crf, b, temperature) for b in batches] or [[]]
            )
            return binary_nll(numpy.exp(logp), correct)

        if not correct:
            raise ValueError(
                f"crf_ner: component '{self.name}' predicts no entities on the "
                f"{len(examples)} calibration examples: nothing to calibrate"
            )
        before = nll_at(1.0)
        temperature = fit_temperature(nll_at)
        self.cfg["temperature"] = float(temperature)
        return {
            "temperature": float(temperature),
            "nll_before": before,
            "nll_after": nll_at(temperature),
            "n_entities": len(correct),
            "accuracy": float(numpy.mean(correct)),
        }

    # ---- training -------------------------------------------------------

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd=None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "CRFEntityRecognizer.update")
        if not any(len(example.predicted) for example in examples):
            return losses
        set_dropout_rate(self.model, drop)
        scores, backprop = self.model.begin_update([example.predicted for example in examples])
        d_scores, loss = self.get_loss(examples, scores)
        backprop(d_scores)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        if self.model.has_ref("lm_objective"):
            # CRFTagger.v3's language-model objective, reported beside the CRF loss
            lm_loss = self.model.get_ref("lm_objective").attrs["loss"]
            losses[f"{self.name}_lm"] = losses.get(f"{self.name}_lm", 0.0) + lm_loss
        return losses

    def get_loss(
        self, examples: Iterable[Example], scores: List[Floats2d]
    ) -> Tuple[List[Floats2d], float]:
        """The CRF negative log-likelihood, summed over the chains, and its
        gradient for the emission scores. The gradients of the CRF's own
        scores are accumulated into the "crf" node (see `CRFLoss`).

        Tokens without annotation in the reference (ent_iob == 0) are
        marginalised over: the likelihood sums over every tag path consistent
        with the known tags, so they add nothing to the loss.
        """
        examples = list(examples)
        validate_examples(examples, "CRFEntityRecognizer.get_loss")
        layout = ChainLayout.from_docs([example.predicted for example in examples])
        gold = self._gold_tag_ids(examples, layout)
        emissions = concat_rows(self.model.ops, scores)
        d_flat, loss = chain_loss(self.model.get_ref("crf"), emissions, gold, layout)
        return layout.split(self.model.ops.asarray2f(d_flat)), loss

    def _gold_iob(self, example: Example) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """Per predicted token: the reference's IOB code (3 B, 1 I, 2 O,
        0 missing) and label index (-1 outside an entity)."""
        x, y = example.predicted, example.reference
        label_ids = {self.vocab.strings.add(label): i for i, label in enumerate(self.labels)}
        if len(x) == len(y) and x.text == y.text and (x.to_array(IDX) == y.to_array(IDX)).all():
            array = y.to_array([ENT_IOB, ENT_TYPE])
            iob = array[:, 0].astype("int64")
            types, inverse = numpy.unique(array[:, 1], return_inverse=True)
            label = numpy.array([label_ids.get(int(t), -1) for t in types], dtype="int64")[
                inverse.ravel()
            ]
        else:
            # Different tokenization: spaCy's alignment, BILUO or None per token.
            codes = {"B": 3, "U": 3, "I": 1, "L": 1, "O": 2}
            names = {label: i for i, label in enumerate(self.labels)}
            aligned = example.get_aligned_ner()
            iob = numpy.array(
                [codes.get(tag[0], 0) if tag else 0 for tag in aligned], dtype="int64"
            )
            label = numpy.array(
                [names.get(tag[2:], -1) if tag and tag != "O" else -1 for tag in aligned], "int64"
            )
        # Entities of types outside the labels are trained as "O".
        unknown = ((iob == 1) | (iob == 3)) & (label < 0)
        iob[unknown] = 2
        return iob, label

    def _gold_tag_ids(self, examples: Sequence[Example], layout: ChainLayout) -> numpy.ndarray:
        """The reference's tag ids for the batch's predicted tokens, with
        every entity cut at the chain boundaries."""
        labels, begins, known = [], [], []
        for example in examples:
            iob, label = self._gold_iob(example)
            inside = (iob == 1) | (iob == 3)
            labels.append(numpy.where(inside, label, -1))
            begins.append(iob == 3)
            known.append(iob != 0)
        if not labels:
            return numpy.zeros((0,), dtype="int64")
        return encode_tag_ids(
            numpy.concatenate(labels),
            numpy.concatenate(begins),
            numpy.concatenate(known),
            layout.chain_first,
            self.cfg["scheme"],
        )


def _empty_prediction(doc_offsets: numpy.ndarray) -> CRFPrediction:
    none = numpy.zeros((0,), dtype="int64")
    empty = numpy.zeros((0,), dtype="float64")
    return CRFPrediction(doc_offsets, none, none, none, empty, empty)
