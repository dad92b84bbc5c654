"""Linear-chain CRF (Lafferty et al., 2001): forward algorithm, Viterbi,
forward-backward marginals and entity confidences, in torch, vectorised over
the batch and the tag set.

Shapes: a batch of B sequences padded to T steps over K tags. `emissions` is
(B, T, K), `mask` is (B, T) bool with each sequence's steps first (a prefix
mask, mask[:, 0] all True). The learned scores are `transitions` (K, K),
`start` (K,) and `end` (K,); transitions[i, j] scores tag j after tag i.

Constraints from the tag scheme (`start_ok`, `trans_ok`, `end_ok`, bool) are
applied by replacing the forbidden scores with `NEG`: their probability is 0
to float precision, whatever the learned values, and their gradient is 0, so
training can never un-mask them. A finite value (not -inf) keeps logsumexp and
its gradient free of NaN even for a position where every tag is forbidden.

The module also holds the thinc side: the `CRF` layer that owns the learned
scores (its forward passes the emission scores through unchanged),
`CRFLoss`, the negative log-likelihood with the thinc `Loss` interface, and
the entry points on a batch of chains (`spacy_rnn.ml.chains`) that take and
give numpy arrays: `decode_entities` (Viterbi, then each entity's marginal
probability) and `chain_loss`. All torch work runs under `torch_threads()`.
"""

from functools import lru_cache
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy
import torch
from thinc.api import Model
from thinc.loss import Loss
from thinc.types import Floats2d, Floats3d, Ints2d

from ..schemes import (
    MISSING_TAG,
    allowed_transitions,
    decode_tag_ids,
    encode_tag_ids,
    labels_of_tag_set,
    normalize_scheme,
    split_tag,
)
from .chains import ChainLayout
from .threads import torch_threads

NEG = -10000.0
# Tag id marking a padding step in a truth matrix, and a token whose tag is
# unknown (missing annotation): it is marginalised over in the loss.
PAD = -2
MISSING = MISSING_TAG


class Constraints(NamedTuple):
    """Which tags may start or end a sequence and which may follow which; and
    `continues[i, j]`: tag j continues the entity opened by tag i (I-X after
    B-X or I-X in BIO; nothing in BILUO, where L-/U- close an entity)."""

    start_ok: torch.Tensor  # (K,) bool
    trans_ok: torch.Tensor  # (K, K) bool
    end_ok: torch.Tensor  # (K,) bool
    continues: torch.Tensor  # (K, K) bool


@lru_cache(maxsize=64)
def scheme_constraints(tags: Tuple[str, ...], scheme: str) -> Constraints:
    """The constraints for a tag set in a scheme (BIO/IOB2, BILUO, IOBES)."""
    scheme = normalize_scheme(scheme)
    start, trans, end = allowed_transitions(list(tags), scheme)
    K = len(tags)
    continues = numpy.zeros((K, K), dtype=bool)
    if scheme == "IOB2":
        parsed = [split_tag(tag) for tag in tags]
        for i, (prefix_a, label_a) in enumerate(parsed):
            for j, (prefix_b, label_b) in enumerate(parsed):
                continues[i, j] = prefix_a in "BI" and prefix_b == "I" and label_a == label_b != ""
    return Constraints(
        torch.from_numpy(start),
        torch.from_numpy(trans),
        torch.from_numpy(end),
        torch.from_numpy(continues),
    )


def no_constraints(K: int) -> Constraints:
    ones = torch.ones((K,), dtype=torch.bool)
    return Constraints(
        ones, torch.ones((K, K), dtype=torch.bool), ones, torch.zeros((K, K), dtype=torch.bool)
    )


def apply_constraints(
    transitions: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
    constraints: Optional[Constraints],
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace the forbidden scores by NEG (differentiable in the others)."""
    if constraints is None:
        return transitions, start, end
    neg = transitions.new_tensor(NEG)
    return (
        torch.where(constraints.trans_ok, transitions, neg),
        torch.where(constraints.start_ok, start, neg),
        torch.where(constraints.end_ok, end, neg),
    )


def _log_matmul_exp(scores: torch.Tensor, exp_matrix: torch.Tensor) -> torch.Tensor:
    """log(exp(scores) @ exp_matrix), stable: (B, K) x (K, K) -> (B, K).

    The same sum as logsumexp(scores[:, :, None] + log(exp_matrix), dim=1),
    but one (B, K) x (K, K) product instead of a (B, K, K) tensor per step,
    which is several times faster on CPU. A sum that underflows (a tag reachable
    only from tags e^-87 times less likely than the best) is clamped to
    e^-69 of the best instead of 0, which keeps the log and its gradient
    finite; such paths carry no weight at float precision anyway.
    """
    # shape: (B, 1)
    top = scores.max(dim=1, keepdim=True).values
    # shape: (B, K) @ (K, K) -> (B, K)
    summed = torch.exp(scores - top) @ exp_matrix
    return torch.log(torch.clamp(summed, min=1e-30)) + top


def _check(emissions: torch.Tensor, mask: torch.Tensor) -> None:
    if emissions.dim() != 3:
        raise ValueError(
            f"emissions must be (batch, steps, tags), got shape {tuple(emissions.shape)}"
        )
    if mask.shape != emissions.shape[:2]:
        raise ValueError(
            f"mask must be (batch, steps) = {tuple(emissions.shape[:2])}, got {tuple(mask.shape)}"
        )
    if mask.shape[1] and not bool(mask[:, 0].all()):
        raise ValueError("every sequence needs at least one step: mask[:, 0] must be all True")


def log_partition(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
    allowed: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """log Z per sequence by the forward algorithm, in log space.

    allowed (Optional[Tensor]): (B, T, K) bool; restricts the sum to the paths
        whose tag at (b, t) is allowed. With the gold tag alone allowed at the
        known steps and every tag at the missing ones, this is the log of the
        total score of the paths consistent with a partial annotation.
    RETURNS (Tensor): (B,)
    """
    _check(emissions, mask)
    if allowed is not None:
        emissions = torch.where(allowed, emissions, emissions.new_tensor(NEG))
    # Forbidden transitions (NEG) have exp() == 0.
    exp_trans = torch.exp(transitions)
    # shape: (B, K)
    alpha = start + emissions[:, 0]
    for t in range(1, emissions.shape[1]):
        # shape: (B, K) -> log sum over the previous tag -> (B, K)
        nxt = _log_matmul_exp(alpha, exp_trans) + emissions[:, t]
        # Padding steps keep the last alpha of their sequence.
        alpha = torch.where(mask[:, t:t + 1], nxt, alpha)
    # shape: (B,)
    return torch.logsumexp(alpha + end, dim=1)


def path_score(
    emissions: torch.Tensor,
    tags: torch.Tensor,
    mask: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
) -> torch.Tensor:
    """Unnormalised log score of one tag path per sequence: (B,).

    tags (Tensor): (B, T) long, any value at padding steps.
    """
    _check(emissions, mask)
    B, T, _ = emissions.shape
    tags = torch.where(mask, tags, torch.zeros_like(tags))
    maskf = mask.to(emissions.dtype)
    # shape: (B, T)
    emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2) * maskf
    score = start[tags[:, 0]] + emitted.sum(1)
    if T > 1:
        # shape: (B, T - 1)
        moved = transitions[tags[:, :-1], tags[:, 1:]] * maskf[:, 1:]
        score = score + moved.sum(1)
    lengths = mask.sum(1)
    last = tags.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)
    return score + end[last]


def viterbi(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
) -> Tuple[numpy.ndarray, torch.Tensor]:
    """The best tag path per sequence.

    RETURNS (tags, scores): tags (B, T) int64 numpy array (padding steps hold
        the last tag), scores (B,) the best paths' log scores.
    """
    _check(emissions, mask)
    B, T, K = emissions.shape
    with torch.no_grad():
        # shape: (B, K)
        score = start + emissions[:, 0]
        identity = torch.arange(K).expand(B, K)
        # (current, previous) order, so that the max runs over the contiguous last axis
        trans_t = transitions.t().contiguous()
        history = []
        for t in range(1, T):
            # shape: (B, 1, K) + (K, K) -> best previous tag for every current tag: (B, K)
            best, prev = (score.unsqueeze(1) + trans_t).max(dim=2)
            step_mask = mask[:, t:t + 1]
            score = torch.where(step_mask, best + emissions[:, t], score)
            # At padding steps the back-pointer is the identity, so backtracking
            # passes through them unchanged to the sequence's own last step.
            history.append(torch.where(step_mask, prev, identity))
        score = score + end
        best_score, last = score.max(dim=1)
        back = torch.stack(history).numpy() if history else numpy.zeros((0, B, K), dtype="int64")
    tags = numpy.empty((B, T), dtype="int64")
    rows = numpy.arange(B)
    current = last.numpy()
    for t in range(T - 1, 0, -1):
        tags[:, t] = current
        current = back[t - 1][rows, current]
    if T:
        tags[:, 0] = current
    return tags, best_score


def kbest_viterbi(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
    k: int,
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """The k best tag paths per sequence, by list Viterbi (exact): for every
    tag at every step, the k best scores of the prefixes ending there and
    where each came from (previous tag and its rank); the k best complete
    paths are then the k best of the K * k last entries.

    RETURNS (tags, scores): tags (B, k, T) int64 (padding steps hold the last
        tag), scores (B, k) log scores (the emissions' dtype), best first. A sequence with
        fewer than k paths has -inf scores at the missing ranks (their tags are
        meaningless); forbidden paths (score about NEG) are not filtered here.
        Rank 0 is the Viterbi path (up to ties).
    """
    _check(emissions, mask)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"kbest_viterbi: k must be an integer >= 1, got {k!r}")
    B, T, K = emissions.shape
    tags = numpy.zeros((B, k, T), dtype="int64")
    if T == 0:
        return tags, numpy.full((B, k), -numpy.inf)
    # Longest sequences first: at step t only the first n_t rows are still
    # running, so each step works on those alone (sentences of a batch differ
    # a lot in length, and the per-step selection is the cost).
    lengths = mask.sum(1).numpy()
    order = numpy.argsort(-lengths, kind="stable")
    running = (lengths[order][None, :] > numpy.arange(T)[:, None]).sum(1)
    with torch.no_grad():
        emissions = emissions[torch.from_numpy(order)]
        # shape: (B, K, k): k best prefix scores per tag; ranks 1.. start empty (-inf)
        score = torch.full((B, K, k), float("-inf"), dtype=emissions.dtype)
        score[:, :, 0] = start + emissions[:, 0]
        # shape: (K_cur, K_prev * k): trans_rep[j, i * k + m] = transitions[i, j]
        trans_rep = transitions.t().repeat_interleave(k, dim=1).contiguous()
        # Back-pointers (previous tag * k + previous rank) of the running rows
        history = []
        for t in range(1, T):
            n = int(running[t])
            # shape: (n, 1, K_prev * k) + (K_cur, K_prev * k) -> (n, K_cur, K_prev * k)
            cand = score[:n].reshape(n, 1, K * k) + trans_rep
            best, prev = cand.topk(k, dim=2)
            score[:n] = best + emissions[:n, t].unsqueeze(2)
            history.append(prev.numpy())
        final = (score + end.view(1, K, 1)).reshape(B, K * k)
        top, flat = final.topk(k, dim=1)
    current = flat.numpy()
    for t in range(T - 1, 0, -1):
        tags[:, :, t] = current // k
        n = int(running[t])
        back = history[t - 1]
        # Rows past their end keep their tag: padding repeats the last one.
        current[:n] = back[numpy.arange(n)[:, None], current[:n] // k, current[:n] % k]
    tags[:, :, 0] = current // k
    inverse = numpy.empty_like(order)
    inverse[order] = numpy.arange(B)
    top = top.double().numpy()
    return tags[inverse], top[inverse]


def forward_backward(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward and backward log scores.

    RETURNS (alpha, beta, log_z): alpha (B, T, K), the log total score of the
        path prefixes ending in tag k at t (emission at t included); beta
        (B, T, K), of the suffixes after tag k at t (emission at t excluded,
        `end` included); log_z (B,). The marginal of tag k at t is
        exp(alpha + beta - log_z); values at padding steps are meaningless.
    """
    _check(emissions, mask)
    B, T, K = emissions.shape
    with torch.no_grad():
        exp_trans = torch.exp(transitions)
        exp_trans_t = exp_trans.t().contiguous()
        alphas = [start + emissions[:, 0]]
        for t in range(1, T):
            # shape: (B, K) -> log sum over the previous tag -> (B, K)
            nxt = _log_matmul_exp(alphas[-1], exp_trans) + emissions[:, t]
            alphas.append(torch.where(mask[:, t:t + 1], nxt, alphas[-1]))
        end_b = end.expand(B, K)
        betas = [end_b]
        for t in range(T - 2, -1, -1):
            # shape: (B, K) -> log sum over the next tag -> (B, K)
            nxt = _log_matmul_exp(emissions[:, t + 1] + betas[-1], exp_trans_t)
            # A step followed by padding is the last one: its suffix is `end`.
            betas.append(torch.where(mask[:, t + 1:t + 2], nxt, end_b))
        alpha = torch.stack(alphas, dim=1)
        beta = torch.stack(betas[::-1], dim=1)
        log_z = torch.logsumexp(alpha[:, 0] + beta[:, 0], dim=1)
    return alpha, beta, log_z


def marginals(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
) -> torch.Tensor:
    """P(tag at t = k | x) by forward-backward: (B, T, K), zero at padding."""
    alpha, beta, log_z = forward_backward(emissions, mask, transitions, start, end)
    probs = torch.exp(alpha + beta - log_z[:, None, None])
    return probs * mask.unsqueeze(2).to(probs.dtype)


def span_log_probs(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
    tags: numpy.ndarray,
    spans: numpy.ndarray,
    continues: Optional[torch.Tensor] = None,
) -> numpy.ndarray:
    """Log marginal probability of each span's tag path.

    For a span (b, s, e) (inclusive) of sequence b, this is
    log P(y_s..y_e = tags[b, s..e], and y_{e+1} does not continue the entity | x)
    = alpha[s, y_s] + sum_{t=s+1..e} (trans[y_{t-1}, y_t] + emit[t, y_t])
      + log sum_{k not continuing y_e} exp(trans[y_e, k] + emit[e+1, k] + beta[e+1, k])
      - log Z.
    With BIO tags the condition on y_{e+1} makes this the probability that
    exactly this entity is in the output (not a longer one); BILUO tags close
    their entities themselves (`continues` is all False).

    tags (ndarray): (B, T) the decoded paths. spans (ndarray): (N, 3) int rows
        (b, s, e). continues (Tensor): (K, K) bool, see `Constraints`.
    RETURNS (ndarray): (N,) float64 log probabilities (<= 0).
    """
    if len(spans) == 0:
        return numpy.zeros((0,), dtype="float64")
    with torch.no_grad():
        fb = forward_backward(emissions, mask, transitions, start, end)
    return _span_log_probs(fb, emissions, mask, transitions, tags, spans, continues)


def _span_log_probs(
    fb: Tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    emissions: torch.Tensor,
    mask: torch.Tensor,
    transitions: torch.Tensor,
    tags: numpy.ndarray,
    spans: numpy.ndarray,
    continues: Optional[torch.Tensor],
) -> numpy.ndarray:
    """`span_log_probs` from the forward-backward scores `fb` (alpha, beta, log_z)."""
    if len(spans) == 0:
        return numpy.zeros((0,), dtype="float64")
    alpha, beta, log_z = fb
    B, T, K = emissions.shape
    with torch.no_grad():
        emissions = emissions.double()
        transitions = transitions.double()
        alpha = alpha.double()
        beta = beta.double()
        tags_t = torch.from_numpy(numpy.ascontiguousarray(tags))
        # shape: (B, T): score of moving into the path's tag at t, for t >= 1
        step = emissions.gather(2, tags_t.unsqueeze(2)).squeeze(2)
        step[:, 1:] += transitions[tags_t[:, :-1], tags_t[:, 1:]]
        step[:, 0] = 0.0
        cum = step.cumsum(dim=1)
        b = torch.from_numpy(spans[:, 0].astype("int64"))
        s = torch.from_numpy(spans[:, 1].astype("int64"))
        e = torch.from_numpy(spans[:, 2].astype("int64"))
        y_s = tags_t[b, s]
        y_e = tags_t[b, e]
        inner = alpha[b, s, y_s] + cum[b, e] - cum[b, s]
        lengths = mask.sum(1)
        is_last = e + 1 >= lengths[b]
        # shape: (N, K): scores of the tags that may follow each span's last tag
        e1 = torch.clamp(e + 1, max=T - 1)
        following = transitions[y_e] + emissions[b, e1] + beta[b, e1]
        if continues is not None:
            following = following.masked_fill(continues[y_e], float("-inf"))
        closing = torch.logsumexp(following, dim=1)
        tail = torch.where(is_last, beta[b, e, y_e], closing)
        logp = inner + tail - log_z.double()[b]
    return torch.clamp(logp, max=0.0).numpy()


def nll(
    emissions: torch.Tensor,
    truths: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
) -> torch.Tensor:
    """Negative log-likelihood per sequence: (B,), differentiable.

    truths (Tensor): (B, T) long, a tag id, MISSING (-1) for an unknown tag or
        PAD (-2) for padding (after each sequence's steps). An unknown tag is
        marginalised over: the likelihood is the total probability of the
        paths consistent with the known tags, so a missing token adds no
        error of its own, whatever the model predicts there.
    """
    mask = truths != PAD
    log_z = log_partition(emissions, mask, transitions, start, end)
    if bool((truths == MISSING).any()):
        B, T, K = emissions.shape
        known = truths >= 0
        # shape: (B, T, K): the gold tag alone where known, any tag where missing
        allowed = torch.zeros((B, T, K), dtype=torch.bool)
        allowed.scatter_(2, torch.clamp(truths, min=0).unsqueeze(2), True)
        allowed |= ~known.unsqueeze(2)
        gold = log_partition(emissions, mask, transitions, start, end, allowed=allowed)
    else:
        gold = path_score(emissions, torch.clamp(truths, min=0), mask, transitions, start, end)
    return log_z - gold


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
    """A batch's emission scores on the padded chain grid (torch tensors),
    its Viterbi paths and the (chain, first, last) rows of their entities:
    what a temperature fit re-scores at every temperature it tries."""

    padded: torch.Tensor  # (n_chains, T, K) float32
    mask: torch.Tensor  # (n_chains, T) bool
    tags: numpy.ndarray  # (n_chains, T) int64, the Viterbi paths
    rows: numpy.ndarray  # (n_ents, 3) int64


def _scaled(
    crf: Model, padded: torch.Tensor, temperature: float
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Constraints]:
    """Every CRF potential divided by the temperature: the emissions and the
    learned transition, start and end scores (forbidden moves stay NEG)."""
    transitions, start, end, constraints = crf_params(crf, temperature)
    if temperature != 1.0:
        padded = padded / temperature
    return padded, transitions, start, end, constraints


def decode_chains(
    crf: Model, emissions: numpy.ndarray, layout: ChainLayout
) -> Tuple[ChainBatch, Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]]:
    """Constrained Viterbi over each chain: the batch on its grid and the
    entities (starts, ends, labels) of the best paths. Dividing every
    potential by a temperature T > 0 divides every path's score by T, so the
    best path, and these entities, are the same at any temperature."""
    crf_labels(crf)
    padded = torch.from_numpy(layout.pad(emissions))
    mask = torch.from_numpy(layout.mask)
    transitions, start, end, _ = crf_params(crf)
    tags, _ = viterbi(padded, mask, transitions, start, end)
    found = decode_tag_ids(layout.unpad(tags), layout.chain_last, crf.attrs["scheme"])
    rows = layout.span_rows(found[0], found[1])
    return ChainBatch(padded, mask, tags, rows), found


def chain_span_log_probs(crf: Model, batch: ChainBatch, temperature: float = 1.0) -> numpy.ndarray:
    """Log marginal probability of each of the batch's entities (`span_log_probs`)
    with every CRF potential divided by `temperature`."""
    if len(batch.rows) == 0:
        return numpy.zeros((0,), dtype="float64")
    padded, transitions, start, end, constraints = _scaled(crf, batch.padded, temperature)
    return span_log_probs(
        padded, batch.mask, transitions, start, end, batch.tags, batch.rows, constraints.continues
    )


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
    with torch_threads():
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
    with torch_threads():
        padded = torch.from_numpy(layout.pad(emissions))
        mask = torch.from_numpy(layout.mask)
        padded, transitions, start, end, constraints = _scaled(crf, padded, temperature)
        with torch.no_grad():
            fb = forward_backward(padded, mask, transitions, start, end)
        # Spans may overlap: score them in layers of spans that do not.
        layer_of = _layers(rows)
        for layer in range(int(layer_of.max()) + 1 if len(layer_of) else 0):
            chosen = numpy.flatnonzero(layer_of == layer)
            tags = numpy.zeros(layout.mask.shape, dtype="int64")
            for i in chosen:
                chain, first, last = rows[i]
                tags[chain, first:last + 1] = span_tag_ids(
                    last - first + 1, labels[index[i]], scheme
                )
            logp = _span_log_probs(
                fb, padded, mask, transitions, tags, rows[chosen], constraints.continues
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
    with torch_threads():
        raw_padded = torch.from_numpy(layout.pad(emissions))
        mask = torch.from_numpy(layout.mask)
        padded, transitions, start, end, constraints = _scaled(crf, raw_padded, temperature)
        tags, scores = kbest_viterbi(padded, mask, transitions, start, end, k)
        best = numpy.ascontiguousarray(tags[:, 0])
        starts, ends, labels = decode_tag_ids(layout.unpad(best), layout.chain_last, scheme)
        rows = layout.span_rows(starts, ends)
        with torch.no_grad():
            fb = forward_backward(padded, mask, transitions, start, end)
        logp = _span_log_probs(fb, padded, mask, transitions, best, rows, constraints.continues)
        ent_scores = numpy.exp(logp)
        raw = ent_scores
        if temperature != 1.0:
            raw = numpy.exp(chain_span_log_probs(crf, ChainBatch(raw_padded, mask, best, rows)))
        log_z = fb[2].double().numpy()
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
