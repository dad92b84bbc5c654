"""Linear-chain CRF (Lafferty et al., 2001), the thinc side and the entry
points on a batch of chains.

The `CRF` layer owns the learned scores (its forward passes the emission
scores through unchanged); `CRFLoss` is the negative log-likelihood with the
thinc `Loss` interface, computed in torch (`spacy_rnn.ml.crf_torch`, which
holds the CRF math with autograd). The entry points on a batch of chains
(`spacy_rnn.ml.chains`) take and give numpy arrays: `decode_entities`
(Viterbi, then each entity's marginal probability), `decode_with_nbest`,
`span_probabilities` and `chain_loss`. Decoding and the marginals run in
numpy (`spacy_rnn.ml.crf_numpy`: no gradient is needed, and numpy's per-step
cost on arrays of a few running chains by K tags is a fraction of torch's);
the k-best search and the loss run in torch under `torch_threads()`.

Imports run one way: this module -> crf_numpy, crf_torch (neither imports
the other). The torch functions are re-exported here under their old names.
"""

from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy
import torch
from thinc.api import Model
from thinc.loss import Loss
from thinc.types import Floats2d, Floats3d, Ints2d

from ..schemes import decode_tag_ids, encode_tag_ids, labels_of_tag_set
from . import crf_numpy
from .chains import ChainLayout
from .crf_torch import (
    MISSING,
    NEG,
    PAD,
    Constraints,
    apply_constraints,
    forward_backward,
    kbest_viterbi,
    log_partition,
    marginals,
    nll,
    no_constraints,
    path_score,
    scheme_constraints,
    span_log_probs,
    viterbi,
)
from .threads import torch_threads

__all__ = [
    "CRF",
    "CRFLoss",
    "ChainBatch",
    "Constraints",
    "DecodedEntities",
    "MISSING",
    "NBestPaths",
    "NEG",
    "PAD",
    "apply_constraints",
    "chain_loss",
    "chain_span_log_probs",
    "check_temperature",
    "crf_labels",
    "crf_params",
    "decode_chains",
    "decode_entities",
    "decode_nbest",
    "decode_with_nbest",
    "forward_backward",
    "kbest_viterbi",
    "layer_constraints",
    "log_partition",
    "marginals",
    "nll",
    "no_constraints",
    "path_score",
    "scheme_constraints",
    "span_log_probs",
    "span_probabilities",
    "span_tag_ids",
    "viterbi",
]


def crf_params(
    crf: Model, temperature: float = 1.0
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Constraints]:
    """The CRF layer's learned scores divided by `temperature` (constraints
    applied after, so forbidden moves stay at NEG) and its constraints."""
    check_temperature(temperature)
    transitions, start, end = (
        torch.from_numpy(crf.ops.to_numpy(crf.get_param(name)))
        for name in ("transitions", "start", "end")
    )
    if temperature != 1.0:
        transitions, start, end = transitions / temperature, start / temperature, end / temperature
    constraints = layer_constraints(crf)
    return (*apply_constraints(transitions, start, end, constraints), constraints)


def check_temperature(temperature: float) -> float:
    """A temperature must be a finite number > 0 (ValueError otherwise)."""
    if not isinstance(temperature, (int, float)) or not 0.0 < float(temperature) < float("inf"):
        raise ValueError(f"CRF temperature must be a finite number > 0, got {temperature!r}")
    return float(temperature)


def layer_constraints(crf: Model) -> Constraints:
    tags = crf.attrs.get("tags")
    K = crf.get_dim("nO")
    if not tags:
        return no_constraints(K)
    if len(tags) != K:
        raise ValueError(f"CRF layer: {len(tags)} tags in attrs['tags'] but nO = {K}")
    return scheme_constraints(tuple(tags), crf.attrs["scheme"])


def CRF(nO: Optional[int] = None) -> Model[List[Floats2d], List[Floats2d]]:
    """The layer that owns the CRF's learned scores: transitions (nO, nO),
    start (nO,) and end (nO,), zero-initialised.

    Its forward passes the emission scores through unchanged; decoding
    (`viterbi`) and the loss (`CRFLoss`) read the scores, and `CRFLoss`
    accumulates their gradients with `inc_grad`, so the optimizer updates them
    with the rest of the model in `finish_update`. `attrs["tags"]` (the tag
    names) and `attrs["scheme"]` give the constraints; they are set by the
    pipe at initialize and serialized with the model.
    """
    return Model(
        "crf",
        _crf_forward,
        init=_crf_init,
        dims={"nO": nO},
        params={"transitions": None, "start": None, "end": None},
        attrs={"tags": [], "scheme": "BILUO"},
    )


def _crf_forward(model: Model, X: List[Floats2d], is_train: bool):
    def backprop(dY: List[Floats2d]) -> List[Floats2d]:
        return dY

    return X, backprop


def _crf_init(model: Model, X: Optional[List[Floats2d]] = None, Y=None) -> None:
    if not model.has_dim("nO"):
        if X is not None and len(X):
            model.set_dim("nO", X[0].shape[1])
        elif model.attrs.get("tags"):
            model.set_dim("nO", len(model.attrs["tags"]))
    K = model.get_dim("nO")
    model.set_param("transitions", model.ops.alloc2f(K, K))
    model.set_param("start", model.ops.alloc1f(K))
    model.set_param("end", model.ops.alloc1f(K))


class CRFLoss(Loss):
    """Negative log-likelihood of a linear-chain CRF, summed over sequences.

    guesses (Floats3d): emission scores (B, T, K) as a numpy array.
    truths (Ints2d): (B, T) tag ids, MISSING (-1) for a token without
        annotation (marginalised over), PAD (-2) after each sequence's steps.

    `get_grad` returns d loss / d emissions and also accumulates the gradients
    of the CRF layer's transition, start and end scores into that layer
    (`inc_grad`): the gradient of the structured loss is not separable, so the
    one backward pass computes both.
    """

    def __init__(self, crf: Model):
        self.crf = crf

    def __call__(self, guesses: Floats3d, truths: Ints2d) -> Tuple[Floats3d, float]:
        return self._compute(guesses, truths, with_grad=True)

    def get_grad(self, guesses: Floats3d, truths: Ints2d) -> Floats3d:
        return self._compute(guesses, truths, with_grad=True)[0]

    def get_loss(self, guesses: Floats3d, truths: Ints2d) -> float:
        return self._compute(guesses, truths, with_grad=False)[1]

    def _compute(
        self, guesses: Floats3d, truths: Ints2d, with_grad: bool
    ) -> Tuple[Optional[Floats3d], float]:
        if guesses.ndim != 3 or truths.shape != guesses.shape[:2]:
            raise ValueError(
                f"CRFLoss: guesses must be (batch, steps, tags) and truths (batch, steps), got "
                f"{tuple(guesses.shape)} and {tuple(truths.shape)}"
            )
        K = self.crf.get_dim("nO")
        if guesses.shape[2] != K:
            raise ValueError(
                f"CRFLoss: guesses have {guesses.shape[2]} tag scores, the CRF has {K} tags"
            )
        truths_t = torch.from_numpy(numpy.asarray(truths, dtype="int64"))
        if bool((truths_t >= K).any()) or bool((truths_t < PAD).any()):
            raise ValueError(f"CRFLoss: tag ids must be in [0, {K}), MISSING (-1) or PAD (-2)")
        with torch_threads():
            emissions = torch.from_numpy(numpy.ascontiguousarray(guesses)).requires_grad_(
                with_grad
            )
            raw = [
                torch.from_numpy(self.crf.ops.to_numpy(self.crf.get_param(name)).copy())
                .requires_grad_(with_grad)
                for name in ("transitions", "start", "end")
            ]
            constraints = layer_constraints(self.crf)
            transitions, start, end = apply_constraints(*raw, constraints)
            with torch.set_grad_enabled(with_grad):
                per_seq = nll(emissions, truths_t, transitions, start, end)
                loss = per_seq.sum()
            if not with_grad:
                return None, float(loss)
            loss.backward()
        for name, param in zip(("transitions", "start", "end"), raw):
            self.crf.inc_grad(name, self.crf.ops.asarray(param.grad.numpy().copy()))
        return emissions.grad.numpy(), float(loss.detach())


# ---- on a batch of chains: numpy in, numpy out ----------------------------


class DecodedEntities(NamedTuple):
    """The entities of a batch, one row each, in token order. `starts` and
    `ends` (exclusive) are offsets in the batch's concatenated tokens,
    `labels` index the labels of the CRF's tag set, `scores` are the
    entities' marginal probabilities at the decoding temperature and
    `raw_scores` at temperature 1 (the same array when it is 1), in [0, 1]."""

    starts: numpy.ndarray  # (n_ents,) int64
    ends: numpy.ndarray  # (n_ents,) int64
    labels: numpy.ndarray  # (n_ents,) int64
    scores: numpy.ndarray  # (n_ents,) float64
    raw_scores: numpy.ndarray  # (n_ents,) float64


def crf_labels(crf: Model) -> Tuple[str, ...]:
    """The labels of the CRF layer's tag set (`attrs["tags"]`, which must be
    `spacy_rnn.schemes.tag_set(labels, attrs["scheme"])`)."""
    tags = crf.attrs.get("tags")
    if not tags:
        raise ValueError("CRF layer: no tags (attrs['tags']); the pipe sets them at initialize")
    return labels_of_tag_set(tuple(tags), crf.attrs["scheme"])


class ChainBatch(NamedTuple):
    """A batch's emission scores on the padded chain grid, its chains'
    lengths, its Viterbi paths and the (chain, first, last) rows of their
    entities: what a temperature fit re-scores at every temperature it tries."""

    padded: numpy.ndarray  # (n_chains, T, K) float32
    lengths: numpy.ndarray  # (n_chains,) int64
    tags: numpy.ndarray  # (n_chains, T) int64, the Viterbi paths
    rows: numpy.ndarray  # (n_ents, 3) int64


class NumpyPotentials(NamedTuple):
    """Every CRF potential as float64 numpy arrays, divided by a temperature:
    the emissions on the chain grid and the learned transition, start and end
    scores (forbidden moves at NEG, after the division), with the constraints
    (`continues` as a numpy array)."""

    emissions: numpy.ndarray  # (n_chains, T, K)
    transitions: numpy.ndarray  # (K, K)
    start: numpy.ndarray  # (K,)
    end: numpy.ndarray  # (K,)
    continues: numpy.ndarray  # (K, K) bool


def numpy_potentials(
    crf: Model, padded: numpy.ndarray, temperature: float = 1.0
) -> NumpyPotentials:
    """The CRF layer's potentials for the numpy inference (`crf_numpy`)."""
    check_temperature(temperature)
    constraints = layer_constraints(crf)
    learned = [
        crf.ops.to_numpy(crf.get_param(name)).astype("float64")
        for name in ("transitions", "start", "end")
    ]
    emissions = numpy.asarray(padded, dtype="float64")
    if temperature != 1.0:
        learned = [scores / temperature for scores in learned]
        emissions = emissions / temperature
    transitions, start, end = (
        numpy.where(ok.numpy(), scores, NEG)
        for ok, scores in zip(
            (constraints.trans_ok, constraints.start_ok, constraints.end_ok), learned
        )
    )
    return NumpyPotentials(emissions, transitions, start, end, constraints.continues.numpy())


def _log_probs(
    pots: NumpyPotentials, lengths: numpy.ndarray, tags: numpy.ndarray, rows: numpy.ndarray
) -> Tuple[numpy.ndarray, crf_numpy.ForwardBackward]:
    """`crf_numpy.span_log_probs` of the rows, and the forward-backward scores."""
    fb = crf_numpy.forward_backward(
        pots.emissions, lengths, pots.transitions, pots.start, pots.end
    )
    logp = crf_numpy.span_log_probs(
        fb, pots.emissions, lengths, pots.transitions, tags, rows, pots.continues
    )
    return logp, fb


def decode_chains(
    crf: Model, emissions: numpy.ndarray, layout: ChainLayout
) -> Tuple[ChainBatch, Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]]:
    """Constrained Viterbi over each chain: the batch on its grid and the
    entities (starts, ends, labels) of the best paths. Dividing every
    potential by a temperature T > 0 divides every path's score by T, so the
    best path, and these entities, are the same at any temperature."""
    crf_labels(crf)
    padded = layout.pad(emissions)
    pots = numpy_potentials(crf, padded)
    lengths = layout.chain_lengths
    tags, _ = crf_numpy.viterbi(pots.emissions, lengths, pots.transitions, pots.start, pots.end)
    found = decode_tag_ids(layout.unpad(tags), layout.chain_last, crf.attrs["scheme"])
    rows = layout.span_rows(found[0], found[1])
    return ChainBatch(padded, lengths, tags, rows), found


def chain_span_log_probs(crf: Model, batch: ChainBatch, temperature: float = 1.0) -> numpy.ndarray:
    """Log marginal probability of each of the batch's entities (`span_log_probs`)
    with every CRF potential divided by `temperature`."""
    if len(batch.rows) == 0:
        return numpy.zeros((0,), dtype="float64")
    pots = numpy_potentials(crf, batch.padded, temperature)
    return _log_probs(pots, batch.lengths, batch.tags, batch.rows)[0]


def decode_entities(
    crf: Model, emissions: numpy.ndarray, layout: ChainLayout, temperature: float = 1.0
) -> DecodedEntities:
    """Decode each chain with constrained Viterbi and score each entity by its
    marginal probability (`span_log_probs`), with every potential divided by
    `temperature` (which leaves the decoded entities unchanged).

    crf (Model): the CRF layer, with its tags and scheme set.
    emissions (ndarray): (n_tokens, K) float32 scores, the batch's tokens in
        the layout's order.
    """
    crf_labels(crf)
    check_temperature(temperature)
    none = numpy.zeros((0,), dtype="int64")
    if layout.n_tokens == 0:
        empty = numpy.zeros((0,), dtype="float64")
        return DecodedEntities(none, none, none, empty, empty)
    batch, (starts, ends, labels) = decode_chains(crf, emissions, layout)
    scores = numpy.exp(chain_span_log_probs(crf, batch, temperature))
    raw = scores if temperature == 1.0 else numpy.exp(chain_span_log_probs(crf, batch))
    return DecodedEntities(starts, ends, labels, scores, raw)


def span_tag_ids(length: int, label: int, scheme: str) -> numpy.ndarray:
    """The tag ids (in `tag_set` order) of one entity of `length` tokens."""
    n = int(length)
    first = numpy.zeros(n, dtype=bool)
    first[0] = True
    return encode_tag_ids(
        numpy.full(n, label, dtype="int64"), first, numpy.ones(n, dtype=bool), first, scheme
    )


def span_probabilities(
    crf: Model,
    emissions: numpy.ndarray,
    layout: ChainLayout,
    starts: numpy.ndarray,
    ends: numpy.ndarray,
    labels: numpy.ndarray,
    temperature: float = 1.0,
) -> numpy.ndarray:
    """The probability the CRF gives to exactly each entity (tokens
    [start, end) of label index `label`, in the batch's concatenated tokens)
    being in its output, whatever the decoded path: the marginal of the
    entity's tag path (see `span_log_probs`). An entity that crosses a chain
    boundary cannot be output and gets 0. What the model gave the gold
    entities it missed, for instance.

    RETURNS (ndarray): (n_spans,) float64 in [0, 1].
    """
    labels_of = crf_labels(crf)
    check_temperature(temperature)
    starts = numpy.asarray(starts, dtype="int64")
    ends = numpy.asarray(ends, dtype="int64")
    labels = numpy.asarray(labels, dtype="int64")
    n = len(starts)
    if not len(ends) == len(labels) == n:
        raise ValueError(
            f"span_probabilities: {n} starts, {len(ends)} ends and {len(labels)} labels"
        )
    out = numpy.zeros((n,), dtype="float64")
    if n == 0:
        return out
    if (starts < 0).any() or (ends <= starts).any() or (ends > layout.n_tokens).any():
        raise ValueError(
            f"span_probabilities: spans must satisfy 0 <= start < end <= {layout.n_tokens}"
        )
    if (labels < 0).any() or (labels >= len(labels_of)).any():
        raise ValueError(f"span_probabilities: label indices must be in [0, {len(labels_of)})")
    scheme = crf.attrs["scheme"]
    inside = layout.chain_of[starts] == layout.chain_of[ends - 1]
    index = numpy.flatnonzero(inside)
    if len(index) == 0:
        return out
    rows = layout.span_rows(starts[index], ends[index])
    lengths = layout.chain_lengths
    pots = numpy_potentials(crf, layout.pad(emissions), temperature)
    fb = crf_numpy.forward_backward(pots.emissions, lengths, pots.transitions, pots.start, pots.end)
    # Spans may overlap: score them in layers of spans that do not.
    layer_of = _layers(rows)
    for layer in range(int(layer_of.max()) + 1 if len(layer_of) else 0):
        chosen = numpy.flatnonzero(layer_of == layer)
        tags = numpy.zeros(layout.mask.shape, dtype="int64")
        for i in chosen:
            chain, first, last = rows[i]
            tags[chain, first:last + 1] = span_tag_ids(last - first + 1, labels[index[i]], scheme)
        logp = crf_numpy.span_log_probs(
            fb, pots.emissions, lengths, pots.transitions, tags, rows[chosen], pots.continues
        )
        out[index[chosen]] = numpy.exp(logp)
    return out


def _layers(rows: numpy.ndarray) -> numpy.ndarray:
    """A layer index per (chain, first, last) row such that the rows of a
    layer do not overlap: the first layer whose last span ends before it."""
    layer_of = numpy.zeros(len(rows), dtype="int64")
    last_end: Dict[Tuple[int, int], int] = {}
    for i in numpy.lexsort((rows[:, 1], rows[:, 0])):
        chain, first, last = (int(v) for v in rows[i])
        layer = 0
        while last_end.get((chain, layer), -1) >= first:
            layer += 1
        layer_of[i] = layer
        last_end[(chain, layer)] = last
    return layer_of


class NBestPaths(NamedTuple):
    """The k best tag paths of every chain of a batch and their entities.

    `path_probs` (n_chains, k): each path's probability, best first, 0 where a
    chain has fewer than k valid paths. One row per entity of any of the
    paths, by chain, then rank, then position: `starts`, `ends` (exclusive,
    offsets in the batch's concatenated tokens), `labels`, `ranks` (0 is the
    best path) and `chains`.
    """

    path_probs: numpy.ndarray  # (n_chains, k) float64
    starts: numpy.ndarray  # (n_rows,) int64
    ends: numpy.ndarray  # (n_rows,) int64
    labels: numpy.ndarray  # (n_rows,) int64
    ranks: numpy.ndarray  # (n_rows,) int64
    chains: numpy.ndarray  # (n_rows,) int64


def decode_nbest(
    crf: Model, emissions: numpy.ndarray, layout: ChainLayout, k: int, temperature: float = 1.0
) -> NBestPaths:
    """The k best valid tag paths of each chain (`kbest_viterbi`), each with
    its probability under the CRF (every potential divided by `temperature`,
    which changes the probabilities, not the order), and their entities."""
    return decode_with_nbest(crf, emissions, layout, k, temperature)[1]


def decode_with_nbest(
    crf: Model, emissions: numpy.ndarray, layout: ChainLayout, k: int, temperature: float = 1.0
) -> Tuple[DecodedEntities, NBestPaths]:
    """`decode_entities` and `decode_nbest` in one pass: the best path is
    rank 0 of the k best, and the forward-backward that scores the entities
    also gives log Z for the paths' probabilities."""
    crf_labels(crf)
    check_temperature(temperature)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"n-best decoding: k must be an integer >= 1, got {k!r}")
    n_chains = len(layout.chain_lengths)
    none = numpy.zeros((0,), dtype="int64")
    if layout.n_tokens == 0:
        empty = numpy.zeros((0,), dtype="float64")
        return (
            DecodedEntities(none, none, none, empty, empty),
            NBestPaths(numpy.zeros((n_chains, k)), none, none, none, none, none),
        )
    scheme = crf.attrs["scheme"]
    raw_padded = layout.pad(emissions)
    lengths = layout.chain_lengths
    pots = numpy_potentials(crf, raw_padded, temperature)
    constraints = layer_constraints(crf)
    with torch_threads():
        # float64, as the forward-backward whose log Z the path scores meet
        tags, scores = kbest_viterbi(
            torch.from_numpy(pots.emissions),
            torch.from_numpy(layout.mask),
            torch.from_numpy(pots.transitions),
            torch.from_numpy(pots.start),
            torch.from_numpy(pots.end),
            k,
        )
    best = numpy.ascontiguousarray(tags[:, 0])
    starts, ends, labels = decode_tag_ids(layout.unpad(best), layout.chain_last, scheme)
    rows = layout.span_rows(starts, ends)
    logp, fb = _log_probs(pots, lengths, best, rows)
    ent_scores = numpy.exp(logp)
    raw = ent_scores
    if temperature != 1.0:
        raw = numpy.exp(chain_span_log_probs(crf, ChainBatch(raw_padded, lengths, best, rows)))
    log_z = fb.log_z
    entities = DecodedEntities(starts, ends, labels, ent_scores, raw)
    valid = numpy.isfinite(scores) & _valid_paths(tags, layout.mask, constraints)
    probs = numpy.where(valid, numpy.exp(numpy.minimum(scores - log_z[:, None], 0.0)), 0.0)
    # Float rounding can lift the total of near-certain paths a hair over 1.
    total = probs.sum(1, keepdims=True)
    probs = numpy.where(total > 1.0, probs / numpy.maximum(total, 1.0), probs)
    parts = []
    for rank in range(k):
        # Chains without a path of this rank read as all "O" and are dropped after.
        path = numpy.where(valid[:, rank:rank + 1], tags[:, rank], 0)
        r_starts, r_ends, r_labels = decode_tag_ids(layout.unpad(path), layout.chain_last, scheme)
        chains = layout.chain_of[r_starts]
        keep = valid[chains, rank]
        ranks = numpy.full(int(keep.sum()), rank)
        parts.append((chains[keep], ranks, r_starts[keep], r_ends[keep], r_labels[keep]))
    chains, ranks, n_starts, n_ends, n_labels = (numpy.concatenate(col) for col in zip(*parts))
    order = numpy.lexsort((n_starts, ranks, chains))
    nbest = NBestPaths(
        probs, n_starts[order], n_ends[order], n_labels[order], ranks[order], chains[order]
    )
    return entities, nbest


def _valid_paths(
    tags: numpy.ndarray, mask: numpy.ndarray, constraints: Constraints
) -> numpy.ndarray:
    """(B, k) bool: the paths of `tags` (B, k, T) that use no forbidden
    start, transition or end."""
    start_ok = constraints.start_ok.numpy()
    trans_ok = constraints.trans_ok.numpy()
    end_ok = constraints.end_ok.numpy()
    lengths = mask.sum(1)
    ok = start_ok[tags[:, :, 0]]
    if tags.shape[2] > 1:
        moves = trans_ok[tags[:, :, :-1], tags[:, :, 1:]] | ~mask[:, None, 1:]
        ok &= moves.all(axis=2)
    last = numpy.take_along_axis(tags, (lengths - 1)[:, None, None], axis=2)[:, :, 0]
    return ok & end_ok[last]


def chain_loss(
    crf: Model, emissions: numpy.ndarray, gold: numpy.ndarray, layout: ChainLayout
) -> Tuple[numpy.ndarray, float]:
    """The CRF negative log-likelihood summed over the chains, and its
    gradient for the emissions; the gradients of the CRF's own scores are
    accumulated into the layer (see `CRFLoss`).

    emissions (ndarray): (n_tokens, K) float32. gold (ndarray): (n_tokens,)
        tag ids, MISSING for a token whose tag is unknown; each chain's path
        must be valid (`spacy_rnn.schemes.encode_tag_ids` makes such ids).
    RETURNS (d_emissions, loss): d_emissions (n_tokens, K).
    """
    truths = numpy.full(layout.mask.shape, PAD, dtype="int64")
    truths[layout.mask] = gold
    d_padded, loss = CRFLoss(crf)(layout.pad(emissions), truths)
    return layout.unpad(d_padded), loss
