"""Linear-chain CRF (Lafferty et al., 2001) in torch: the forward algorithm,
the path score and the negative log-likelihood (differentiable: the training
side), and Viterbi, k-best Viterbi, forward-backward and span marginals,
vectorised over the batch and the tag set.

Shapes: a batch of B sequences padded to T steps over K tags. `emissions` is
(B, T, K), `mask` is (B, T) bool with each sequence's steps first (a prefix
mask, mask[:, 0] all True). The learned scores are `transitions` (K, K),
`start` (K,) and `end` (K,); transitions[i, j] scores tag j after tag i.

Constraints from the tag scheme (`start_ok`, `trans_ok`, `end_ok`, bool) are
applied by replacing the forbidden scores with `NEG`: their probability is 0
to float precision, whatever the learned values, and their gradient is 0, so
training can never un-mask them. A finite value (not -inf) keeps logsumexp and
its gradient free of NaN even for a position where every tag is forbidden.

Prediction uses the numpy versions of Viterbi and forward-backward
(`spacy_rnn.ml.crf_numpy`, faster per step); those here are their reference
(tested to agree) and serve training and the k-best search.
"""

from functools import lru_cache
from typing import NamedTuple, Optional, Tuple

import numpy
import torch

from ..schemes import MISSING_TAG, allowed_transitions, normalize_scheme, split_tag

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
