"""The `crf_ner` component: named entities from a linear-chain CRF over
recurrent token vectors, with per-entity confidence from the CRF marginals.

The CRF runs over "chains": each sentence of a doc that has sentence
boundaries (from a parser, senter, sentencizer or the corpus), else the whole
doc. The encoder still reads the whole doc, so a sentence sees its document's
context, while no entity can cross a sentence boundary.

This module is the spaCy side: Docs and Examples in, annotations and losses
out. The CRF itself (layout of the chains, Viterbi, marginals, the loss) lives
in `spacy_rnn.ml.chains` and `spacy_rnn.ml.crf`, the tag arithmetic in
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

from ..ml.chains import ChainLayout, concat_rows
from ..ml.crf import chain_loss, decode_entities
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
    scorer (Optional[Callable]): the scoring method (spacy.ner_scorer.v1).
    """
    return CRFEntityRecognizer(
        nlp.vocab,
        model,
        name,
        scheme=scheme,
        spans_key=spans_key,
        write_ents=write_ents,
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
    scores: numpy.ndarray  # (n_ents,) float, in [0, 1]


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
        scorer: Optional[Callable] = ner_score,
    ) -> None:
        canonical = normalize_scheme(scheme)
        if canonical not in CRF_SCHEMES:
            raise ValueError(f"crf_ner: scheme must be 'BIO' (IOB2) or 'BILUO', got {scheme!r}")
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

    def predict(self, docs: Iterable[Doc]) -> CRFPrediction:
        """Decode each chain (sentence or doc) with constrained Viterbi and
        score each entity by its marginal probability."""
        docs = list(docs)
        layout = ChainLayout.from_docs(docs)
        if layout.n_tokens == 0:
            return _empty_prediction(layout.doc_offsets)
        emissions = concat_rows(self.model.ops, self.model.predict(docs))
        found = decode_entities(self.model.get_ref("crf"), emissions, layout)
        return CRFPrediction(layout.doc_offsets, *found)

    def set_annotations(self, docs: Iterable[Doc], prediction: CRFPrediction) -> None:
        labels = self.labels
        key = self.cfg["spans_key"]
        write_ents = self.cfg["write_ents"]
        offsets = prediction.doc_offsets
        # First entity of each doc
        first = numpy.searchsorted(prediction.starts, offsets)
        for i, doc in enumerate(docs):
            lo, hi = first[i], first[i + 1]
            base = offsets[i]
            spans = [
                Span(doc, int(s) - base, int(e) - base, label=labels[lab])
                for s, e, lab in zip(
                    prediction.starts[lo:hi], prediction.ends[lo:hi], prediction.labels[lo:hi]
                )
            ]
            scores = prediction.scores[lo:hi].tolist()
            doc.spans[key] = SpanGroup(doc, name=key, spans=spans, attrs={"scores": scores})
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
    return CRFPrediction(doc_offsets, none, none, none, numpy.zeros((0,), dtype="float64"))
