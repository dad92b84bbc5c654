"""Prediction-time inference of a linear-chain CRF in numpy (float64):
Viterbi, forward-backward and the log marginal probability of spans.

At prediction nothing needs a gradient, and the work is a loop over the
steps of the longest chain of arrays of (running chains, K) numbers: torch
spends several microseconds of dispatch per operation on arrays that small,
numpy about one, so a 5,000-token chain (a document without sentence
boundaries) takes a fraction of the torch loop's time. The torch versions in
`spacy_rnn.ml.crf_torch` stay for training (the loss needs autograd) and the
k-best search; the functions here give the same results to float tolerance
(tested against them and against brute force).

Shapes and conventions are those of `crf_torch`: emissions (B, T, K) padded
after each chain's `lengths[b]` steps; transitions[i, j] scores tag j after
tag i; constraints already applied (forbidden scores NEG, finite). Chains are
processed longest first, so that at step t only the chains still running
(the first n_t of the sorted batch) do any work.

Forward-backward runs in the scaled probability form (Rabiner, 1989): the
exponentials of the transition, start and end scores are taken once, each
step is one (n, K) x (K, K) product and is normalised to sum 1, and the logs
of the normalisers are summed after the loop. A chain whose normaliser
underflows, or whose log Z read at some step (sum over the tags of forward
times backward) differs from the others, is recomputed in log space
(`log_forward_backward`): both happen only when scores at a step differ by
hundreds of nats (e.g. at a very low temperature), where the scaled form
drops tags e^-745 below the best.
"""

from typing import NamedTuple, Optional, Tuple

import numpy

from . import crf_blocks

# A step normaliser below this is treated as underflow (float64 subnormals
# start at 2.2e-308; well above, the normalised values keep full precision).
TINY = 1e-250


class ForwardBackward(NamedTuple):
    """Forward and backward scores, scaled, in the packed layout (see
    `Packed`): row r = row_of[b, t] holds step t of chain b; the log forward
    score of tag k there (path prefixes ending in k at t, emission at t
    included) is log(alpha[r, k]) + alpha_log[r]; the backward one (suffixes
    after k at t, `end` included) is log(beta[r, k]) + beta_log[r]. log_z
    (B,): the log partition. `fallback` (B,) bool: the chains computed in log
    space, whose exact log scores are the rows of `exact_alpha` and
    `exact_beta` (empty when no chain fell back). Read scores through
    `log_alpha` and `log_beta`."""

    alpha: numpy.ndarray  # (N, K) float64, each row sums to 1
    alpha_log: numpy.ndarray  # (N,) float64
    beta: numpy.ndarray  # (N, K) float64
    beta_log: numpy.ndarray  # (N,) float64
    log_z: numpy.ndarray  # (B,) float64
    fallback: numpy.ndarray  # (B,) bool
    exact_alpha: numpy.ndarray  # (N, K) float64 log scores, or (0, K)
    exact_beta: numpy.ndarray  # (N, K) float64 log scores, or (0, K)
    row_of: numpy.ndarray  # (B, T) int64, -1 at padding


class Packed(NamedTuple):
    """The real steps of a padded batch packed time-major, chains longest
    first (as torch's PackedSequence): step t's running chains are the rows
    offsets[t] .. offsets[t] + running[t], the i-th of them the i-th longest
    chain (`order[i]`); the running chains at t are the first rows of step
    t - 1. Whole-batch arithmetic then costs the tokens, not the padded
    grid (which for a batch of sentences is several times larger)."""

    order: numpy.ndarray  # (B,) the chains longest first
    lengths: numpy.ndarray  # (B,) sorted, longest first
    running: numpy.ndarray  # (T,) chains running at each step
    offsets: numpy.ndarray  # (T + 1,) first row of each step, then N
    chain: numpy.ndarray  # (N,) sorted chain index i of each row
    step: numpy.ndarray  # (N,) step t of each row
    row_of: numpy.ndarray  # (B, T) row of (original chain b, step t), -1 at padding


def by_length(lengths: numpy.ndarray, T: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """The chains longest first (`order`, stable) and, for each step t < T,
    how many of them are still running (`running[t]`, lengths > t)."""
    lengths = numpy.asarray(lengths, dtype="int64")
    order = numpy.argsort(-lengths, kind="stable")
    # shape: (T,)
    running = len(lengths) - numpy.searchsorted(
        numpy.sort(lengths), numpy.arange(T), side="right"
    )
    return order, running


def pack(lengths: numpy.ndarray, T: int) -> Packed:
    """The packed layout of chains of `lengths` on a grid of T steps."""
    lengths = numpy.asarray(lengths, dtype="int64")
    order, running = by_length(lengths, T)
    sorted_lengths = lengths[order]
    offsets = numpy.zeros(T + 1, dtype="int64")
    numpy.cumsum(running, out=offsets[1:])
    # shape: (T, B) time-major, so that nonzero() lists the rows in packed order
    step, chain = numpy.nonzero(numpy.arange(T)[:, None] < sorted_lengths[None, :])
    row_of = numpy.full((len(lengths), T), -1, dtype="int64")
    row_of[order[chain], step] = numpy.arange(len(step))
    return Packed(order, sorted_lengths, running, offsets, chain, step, row_of)


def _float64(*arrays: numpy.ndarray) -> Tuple[numpy.ndarray, ...]:
    """The CRF scores as float64 arrays: decoding runs in double precision."""
    return tuple(numpy.asarray(x, dtype="float64") for x in arrays)


def _check(emissions: numpy.ndarray, lengths: numpy.ndarray) -> Tuple[int, int, int]:
    if emissions.ndim != 3:
        raise ValueError(
            f"emissions must be (batch, steps, tags), got shape {tuple(emissions.shape)}"
        )
    B, T, K = emissions.shape
    if lengths.shape != (B,):
        raise ValueError(f"lengths must be ({B},), got {tuple(lengths.shape)}")
    if B and ((lengths < 1).any() or (lengths > T).any()):
        raise ValueError(f"every chain needs between 1 and {T} steps")
    return B, T, K


def viterbi(
    emissions: numpy.ndarray,
    lengths: numpy.ndarray,
    transitions: numpy.ndarray,
    start: numpy.ndarray,
    end: numpy.ndarray,
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """The best tag path per chain (max-plus, float64); the long chains that
    `crf_blocks.in_blocks` picks run one by one in blocks
    (`crf_blocks.viterbi_chain`), the others together, packed.

    RETURNS (tags, scores): tags (B, T) int64 (padding steps hold the last
        tag), scores (B,) float64, the best paths' log scores. Ties go to the
        lower tag id, as in `crf_torch.viterbi`.
    """
    emissions = numpy.asarray(emissions, dtype="float64")
    lengths = numpy.asarray(lengths, dtype="int64")
    B, T, K = _check(emissions, lengths)
    long = crf_blocks.in_blocks(lengths)
    if not long.any():
        return _viterbi_packed(emissions, lengths, transitions, start, end)
    transitions, start, end = _float64(transitions, start, end)
    tags = numpy.zeros((B, T), dtype="int64")
    scores = numpy.zeros(B)
    short = numpy.flatnonzero(~long)
    if len(short):
        steps = lengths[short].max()
        part, scores[short] = _viterbi_packed(
            emissions[short, :steps], lengths[short], transitions, start, end
        )
        tags[short, :steps] = part
        tags[short, steps:] = part[:, -1:]
    for b in numpy.flatnonzero(long):
        L = lengths[b]
        tags[b, :L], scores[b] = crf_blocks.viterbi_chain(emissions[b, :L], transitions, start, end)
        tags[b, L:] = tags[b, L - 1]
    return tags, scores


def _viterbi_packed(
    emissions: numpy.ndarray,
    lengths: numpy.ndarray,
    transitions: numpy.ndarray,
    start: numpy.ndarray,
    end: numpy.ndarray,
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """`viterbi` on chains of any length, packed, one step at a time."""
    emissions = numpy.asarray(emissions, dtype="float64")
    lengths = numpy.asarray(lengths, dtype="int64")
    B, T, K = _check(emissions, lengths)
    if B == 0 or T == 0:
        return numpy.zeros((B, T), dtype="int64"), numpy.zeros((B,), dtype="float64")
    packed = pack(lengths, T)
    order, running, off = packed.order, packed.running, packed.offsets
    # shape: (N, K)
    emitted = emissions[order[packed.chain], packed.step]
    transitions = numpy.asarray(transitions, dtype="float64")
    # (current, previous) order: the max runs over the contiguous last axis
    trans_t = numpy.ascontiguousarray(transitions.T)
    # shape: (N, K): the best score of the prefixes ending in each tag.
    # The back-pointers are not stored: backtracking recomputes the argmax
    # for the one tag of the path at each step, (n, K) work instead of
    # (n, K, K), with the same sums (so the same ties) as the forward pass.
    score = numpy.empty_like(emitted)
    score[:B] = start + emitted[:B]
    # numpy's ufunc methods directly: the ndarray methods' Python wrappers
    # cost as much as the arithmetic on a few rows.
    add, top = numpy.add, numpy.maximum.reduce
    cand = numpy.empty((B, K, K))
    for t in range(1, T):
        n, prev, here = running[t], off[t - 1], off[t]
        # shape: (n, 1, K_prev) + (K_cur, K_prev) -> max over K_prev -> (n, K_cur)
        add(score[prev:prev + n, None, :], trans_t, out=cand[:n])
        add(top(cand[:n], axis=2), emitted[here:here + n], out=score[here:here + n])
    rows = numpy.arange(B)
    final = score[off[packed.lengths - 1] + rows] + end
    current = final.argmax(axis=1)
    best_score = final[rows, current]
    tags = numpy.zeros((B, T), dtype="int64")
    # Chains past their end keep their last tag: padding repeats it.
    for t in range(T - 1, 0, -1):
        n, prev = running[t], off[t - 1]
        tags[:, t] = current
        # shape: (n, K_prev): the scores of moving into each running chain's tag at t
        into = score[prev:prev + n] + trans_t[current[:n]]
        current[:n] = into.argmax(axis=1)
    tags[:, 0] = current
    inverse = _inverse(order)
    return tags[inverse], best_score[inverse]


def _inverse(order: numpy.ndarray) -> numpy.ndarray:
    inverse = numpy.empty_like(order)
    inverse[order] = numpy.arange(len(order))
    return inverse


def forward_backward(
    emissions: numpy.ndarray,
    lengths: numpy.ndarray,
    transitions: numpy.ndarray,
    start: numpy.ndarray,
    end: numpy.ndarray,
) -> ForwardBackward:
    """Forward and backward scores of every chain, in the scaled form, with
    the chains where it loses precision redone in log space. The long chains
    that `crf_blocks.in_blocks` picks run one by one in blocks
    (`crf_blocks.forward_backward_chain`), or, where that loses precision,
    through the packed code; the others together, packed."""
    emissions = numpy.asarray(emissions, dtype="float64")
    lengths = numpy.asarray(lengths, dtype="int64")
    B, T, K = _check(emissions, lengths)
    long = crf_blocks.in_blocks(lengths)
    if not long.any():
        return _forward_backward_packed(emissions, lengths, transitions, start, end)
    transitions, start, end = _float64(transitions, start, end)
    # (chains, their scores) for each part of the batch
    parts = []
    sequential = list(numpy.flatnonzero(~long))
    for b in numpy.flatnonzero(long):
        L = lengths[b]
        got = crf_blocks.forward_backward_chain(emissions[b, :L], transitions, start, end)
        if got is None:
            sequential.append(b)
            continue
        alpha, alpha_log, beta, beta_log, log_z = got
        one = numpy.zeros((0, K))
        parts.append((
            numpy.array([b]),
            ForwardBackward(
                alpha, alpha_log, beta, beta_log, numpy.array([log_z]), numpy.zeros(1, bool),
                one, one, numpy.arange(L)[None, :],
            ),
        ))
    if sequential:
        chains = numpy.sort(numpy.array(sequential, dtype="int64"))
        steps = lengths[chains].max()
        parts.append((chains, _forward_backward_packed(
            emissions[chains, :steps], lengths[chains], transitions, start, end
        )))
    return _merge(parts, pack(lengths, T).row_of, K)


def _merge(parts, row_of: numpy.ndarray, K: int) -> ForwardBackward:
    """One ForwardBackward in the packed layout `row_of` of the whole batch
    from those of its parts: (chains (n,) of the batch, their scores)."""
    B = len(row_of)
    N = int((row_of >= 0).sum())
    alpha, beta = numpy.empty((N, K)), numpy.empty((N, K))
    alpha_log, beta_log = numpy.empty(N), numpy.empty(N)
    log_z, fallback = numpy.zeros(B), numpy.zeros(B, dtype=bool)
    exact = any(len(fb.exact_alpha) for _, fb in parts)
    exact_alpha = numpy.full((N, K), numpy.nan) if exact else numpy.zeros((0, K))
    exact_beta = numpy.full((N, K), numpy.nan) if exact else numpy.zeros((0, K))
    for chains, fb in parts:
        i, t = numpy.nonzero(fb.row_of >= 0)
        src, dst = fb.row_of[i, t], row_of[chains[i], t]
        alpha[dst], alpha_log[dst] = fb.alpha[src], fb.alpha_log[src]
        beta[dst], beta_log[dst] = fb.beta[src], fb.beta_log[src]
        log_z[chains], fallback[chains] = fb.log_z, fb.fallback
        if len(fb.exact_alpha):
            exact_alpha[dst], exact_beta[dst] = fb.exact_alpha[src], fb.exact_beta[src]
    return ForwardBackward(
        alpha, alpha_log, beta, beta_log, log_z, fallback, exact_alpha, exact_beta, row_of
    )


def _forward_backward_packed(
    emissions: numpy.ndarray,
    lengths: numpy.ndarray,
    transitions: numpy.ndarray,
    start: numpy.ndarray,
    end: numpy.ndarray,
) -> ForwardBackward:
    """`forward_backward` on chains of any length, packed, one step at a time."""
    emissions = numpy.asarray(emissions, dtype="float64")
    lengths = numpy.asarray(lengths, dtype="int64")
    transitions, start, end = _float64(transitions, start, end)
    B, T, K = _check(emissions, lengths)
    packed = pack(lengths, T)
    order, running, off = packed.order, packed.running, packed.offsets
    chain, step = packed.chain, packed.step
    N = len(step)
    if B == 0 or T == 0:
        none = numpy.zeros((0, K))
        return ForwardBackward(
            none, none[:, 0], none, none[:, 0], numpy.zeros(B), numpy.zeros(B, bool), none,
            none, packed.row_of,
        )
    # shape: (N, K)
    emitted = emissions[order[chain], step]
    # Exponentials once, each scaled by its maximum (so none overflows).
    # shape: (N,)
    e_max = emitted.max(axis=1)
    # shape: (N, K)
    gains = numpy.exp(emitted - e_max[:, None])
    t_max, s_max, end_max = transitions.max(), start.max(), end.max()
    probs = numpy.exp(transitions - t_max)
    probs_t = numpy.ascontiguousarray(probs.T)
    exp_end = numpy.exp(end - end_max)
    rows = numpy.arange(B)
    # The last row of each chain, in sorted order
    last = off[packed.lengths - 1] + rows
    matmul, multiply, divide = numpy.matmul, numpy.multiply, numpy.divide
    total = numpy.add.reduce
    with numpy.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        alpha = numpy.empty((N, K))
        norms = numpy.empty(N)
        first = numpy.exp(start - s_max) * gains[:B]
        norms[:B] = total(first, axis=1)
        alpha[:B] = first / norms[:B, None]
        for t in range(1, T):
            n, prev, here = running[t], off[t - 1], off[t]
            # shape: (n, K) @ (K, K) -> (n, K): sum over the previous tag
            nxt = multiply(matmul(alpha[prev:prev + n], probs), gains[here:here + n])
            norm = total(nxt, axis=1)
            norms[here:here + n] = norm
            divide(nxt, norm[:, None], out=alpha[here:here + n])
        beta = numpy.empty((N, K))
        b_norms = numpy.empty(N)
        end_sum = exp_end.sum()
        beta[last] = exp_end / end_sum
        b_norms[last] = end_sum
        for t in range(T - 2, -1, -1):
            n, here, nxt_row = running[t + 1], off[t], off[t + 1]
            # shape: (n, K) @ (K, K) -> (n, K): sum over the next tag
            nxt = matmul(multiply(gains[nxt_row:nxt_row + n], beta[nxt_row:nxt_row + n]), probs_t)
            norm = total(nxt, axis=1)
            b_norms[here:here + n] = norm
            divide(nxt, norm[:, None], out=beta[here:here + n])
        # Log scales: alpha's sums the normalisers and the maxima taken out up
        # to t; beta's from t to the chain's end. Summed along each chain on
        # the (B, T) grid of scalars, in sorted order.
        steps = numpy.log(norms) + e_max + numpy.where(step == 0, s_max, t_max)
        grid = numpy.zeros((B, T))
        grid[chain, step] = steps
        alpha_log = numpy.cumsum(grid, axis=1)[chain, step]
        # Beta's step at t: its normaliser, and the maximum taken out of the
        # next step's emissions (or of `end` at the chain's last step).
        b_steps = numpy.log(b_norms)
        b_steps[last] += end_max
        inner = numpy.ones(N, dtype=bool)
        inner[last] = False
        nxt_rows = off[step[inner] + 1] + chain[inner]
        b_steps[inner] += e_max[nxt_rows] + t_max
        grid[:] = 0.0
        grid[chain, step] = b_steps
        beta_log = numpy.cumsum(grid[:, ::-1], axis=1)[:, ::-1][chain, step]
        # shape: (N,): log Z read at every step, sum_k alpha[t, k] beta[t, k]
        z_steps = numpy.log(total(alpha * beta, axis=1)) + alpha_log + beta_log
        log_z = z_steps[:B].copy()
        # A normaliser that underflowed (or a NaN after it) marks its chain;
        # so does a step where forward and backward disagree on log Z: the
        # scaled form drops a tag whose score is e^-745 below the best at its
        # step, which matters only if the rest of the chain reverses that (a
        # range of hundreds of nats), and then the tag is missing from that
        # step's sum.
        tolerance = 1e-7 * numpy.maximum(1.0, numpy.abs(log_z))
        off_z = numpy.abs(z_steps - log_z[chain]) > tolerance[chain]
        bad = ~((norms >= TINY) & (b_norms >= TINY) & numpy.isfinite(z_steps)) | off_z
    fallback = numpy.zeros(B, dtype=bool)
    fallback[chain[bad]] = True
    redo = numpy.flatnonzero(fallback)
    exact_alpha = exact_beta = numpy.zeros((0, K))
    if len(redo):
        log_a, log_b, redo_z = log_forward_backward(
            emissions[order[redo]], packed.lengths[redo], transitions, start, end
        )
        exact_alpha = numpy.full((N, K), numpy.nan)
        exact_beta = numpy.full((N, K), numpy.nan)
        hit = fallback[chain]
        # The fallback chains' rows, and where they sit in the redone batch
        slot = numpy.cumsum(fallback) - 1
        exact_alpha[hit] = log_a[slot[chain[hit]], step[hit]]
        exact_beta[hit] = log_b[slot[chain[hit]], step[hit]]
        log_z[redo] = redo_z
    inverse = _inverse(order)
    return ForwardBackward(
        alpha,
        alpha_log,
        beta,
        beta_log,
        log_z[inverse],
        fallback[inverse],
        exact_alpha,
        exact_beta,
        packed.row_of,
    )


def _log_scores(
    fb: ForwardBackward, side: str, b: numpy.ndarray, t: numpy.ndarray
) -> numpy.ndarray:
    """(N, K) log forward ("alpha") or backward ("beta") scores at steps
    (b[i], t[i]) (real steps; a padding step reads a meaningless row), exact
    for the fallback chains too."""
    scaled, scale = (fb.alpha, fb.alpha_log) if side == "alpha" else (fb.beta, fb.beta_log)
    rows = fb.row_of[b, t]
    with numpy.errstate(divide="ignore"):
        out = numpy.log(scaled[rows]) + scale[rows][:, None]
    if len(fb.exact_alpha):
        hit = fb.fallback[b]
        exact = fb.exact_alpha if side == "alpha" else fb.exact_beta
        out[hit] = exact[rows[hit]]
    return out


def log_alpha(fb: ForwardBackward, b: numpy.ndarray, t: numpy.ndarray) -> numpy.ndarray:
    """The log forward scores (N, K) at steps (b[i], t[i])."""
    return _log_scores(fb, "alpha", b, t)


def log_beta(fb: ForwardBackward, b: numpy.ndarray, t: numpy.ndarray) -> numpy.ndarray:
    """The log backward scores (N, K) at steps (b[i], t[i])."""
    return _log_scores(fb, "beta", b, t)


def logsumexp(scores: numpy.ndarray, axis: int) -> numpy.ndarray:
    """log(sum(exp(scores))) along `axis`, stable; -inf where all are -inf."""
    top = scores.max(axis=axis, keepdims=True)
    safe = numpy.where(numpy.isfinite(top), top, 0.0)
    with numpy.errstate(divide="ignore"):
        out = numpy.log(numpy.exp(scores - safe).sum(axis=axis, keepdims=True)) + safe
    return numpy.squeeze(out, axis=axis)


def log_forward_backward(
    emissions: numpy.ndarray,
    lengths: numpy.ndarray,
    transitions: numpy.ndarray,
    start: numpy.ndarray,
    end: numpy.ndarray,
) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Forward and backward log scores (B, T, K) and log Z (B,), computed in
    log space: slower than the scaled form (a (n, K, K) logsumexp per step),
    exact whatever the range of the scores. The chains must be sorted
    longest first."""
    B, T, K = emissions.shape
    _, running = by_length(lengths, T)
    if (numpy.diff(lengths) > 0).any():
        raise ValueError("log_forward_backward: chains must be sorted longest first")
    rows = numpy.arange(B)
    alpha = numpy.zeros((B, T, K))
    alpha[:, 0] = start + emissions[:, 0]
    for t in range(1, T):
        n = running[t]
        # shape: (n, K_prev, 1) + (K_prev, K_cur) -> log sum over K_prev -> (n, K_cur)
        alpha[:n, t] = logsumexp(alpha[:n, t - 1, :, None] + transitions, axis=1)
        alpha[:n, t] += emissions[:n, t]
    beta = numpy.zeros((B, T, K))
    beta[rows, lengths - 1] = end
    for t in range(T - 2, -1, -1):
        n = running[t + 1]
        # shape: (K_cur, K_next) + (n, 1, K_next) -> log sum over K_next -> (n, K_cur)
        nxt = (emissions[:n, t + 1] + beta[:n, t + 1])[:, None, :]
        beta[:n, t] = logsumexp(transitions + nxt, axis=2)
    log_z = logsumexp(alpha[:, 0] + beta[:, 0], axis=1)
    return alpha, beta, log_z


def marginals(fb: ForwardBackward, lengths: numpy.ndarray) -> numpy.ndarray:
    """P(tag at t = k | x): (B, T, K), zero at padding."""
    B, T = fb.row_of.shape
    K = fb.alpha.shape[1]
    out = numpy.zeros((B, T, K))
    b, t = numpy.nonzero(fb.row_of >= 0)
    logp = log_alpha(fb, b, t) + log_beta(fb, b, t) - fb.log_z[b][:, None]
    out[b, t] = numpy.exp(numpy.minimum(logp, 0.0))
    return out


def span_log_probs(
    fb: ForwardBackward,
    emissions: numpy.ndarray,
    lengths: numpy.ndarray,
    transitions: numpy.ndarray,
    tags: numpy.ndarray,
    spans: numpy.ndarray,
    continues: Optional[numpy.ndarray] = None,
) -> numpy.ndarray:
    """Log marginal probability of each span's tag path (see
    `crf_torch.span_log_probs` for the formula), from the scores `fb` of
    `forward_backward` on the same emissions and transitions.

    tags (ndarray): (B, T) the paths the spans are read from. spans
        (ndarray): (N, 3) int rows (b, s, e), e inclusive. continues
        (ndarray): (K, K) bool, tag j continues the entity of tag i.
    RETURNS (ndarray): (N,) float64 log probabilities (<= 0).
    """
    if len(spans) == 0:
        return numpy.zeros((0,), dtype="float64")
    emissions = numpy.asarray(emissions, dtype="float64")
    transitions = numpy.asarray(transitions, dtype="float64")
    tags = numpy.asarray(tags, dtype="int64")
    lengths = numpy.asarray(lengths, dtype="int64")
    B, T, K = emissions.shape
    spans = numpy.asarray(spans, dtype="int64")
    b, s, e = spans[:, 0], spans[:, 1], spans[:, 2]
    # shape: (B, T): score of moving into the path's tag at t, for t >= 1
    step = numpy.take_along_axis(emissions, tags[:, :, None], axis=2)[:, :, 0]
    step[:, 1:] += transitions[tags[:, :-1], tags[:, 1:]]
    step[:, 0] = 0.0
    cum = numpy.cumsum(step, axis=1)
    y_s = tags[b, s]
    y_e = tags[b, e]
    n = numpy.arange(len(spans))
    inner = log_alpha(fb, b, s)[n, y_s] + cum[b, e] - cum[b, s]
    is_last = e + 1 >= lengths[b]
    e1 = numpy.minimum(e + 1, T - 1)
    # shape: (N, K): scores of the tags that may follow each span's last tag
    following = transitions[y_e] + emissions[b, e1] + log_beta(fb, b, e1)
    if continues is not None:
        following = numpy.where(numpy.asarray(continues)[y_e], -numpy.inf, following)
    # A span at its chain's end: the suffix after it is `end` alone.
    closing = logsumexp(numpy.where(is_last[:, None], 0.0, following), axis=1)
    tail = numpy.where(is_last, log_beta(fb, b, e)[n, y_e], closing)
    logp = inner + tail - fb.log_z[b]
    return numpy.minimum(logp, 0.0)
