"""Exact block-parallel Viterbi and forward-backward for one long chain
(numpy, float64), used by `spacy_rnn.ml.crf_numpy` for the chains longer
than `THRESHOLD` steps whose blocks save time (`in_blocks`: a document
without sentence boundaries among sentences).

The sequential recursions take one small numpy step per token, so a chain of
5,000 steps costs 5,000 steps of Python and dispatch overhead. Here the chain
is cut into n blocks of about equal length (the longer ones first), and all
blocks run at once, vectorized over the blocks and over the K tags a block
may start (or, backwards, end) in: about length / n steps of (n * K, K)
arrays. The runs give each block's transfer (best score, or summed
probability, from each start tag to each tag at each step); the n boundary
vectors are then combined in order (n small K x K steps), and every step's
scores are read from its block's runs, weighted by the boundary vector.

Viterbi returns the sequential path (the same maxima, summed in another
order: a different path only at a near tie). Forward-backward returns the
scaled rows and log scales of `crf_numpy.forward_backward` for the chain, or
None where a run's normaliser underflows or log Z read at some step differs
from the others (the caller then runs the sequential code on the chain).
"""

from typing import Optional, Tuple

import numpy

# Chains longer than this may run in blocks (see `in_blocks`).
THRESHOLD = 256
# The time of one chain's blocked Viterbi plus forward-backward, in steps of
# the packed sequential loops: about FIXED + PER_STEP * length (measured with
# 17 tags on one thread: 4.5 ms at 257 steps, 52 ms at 5,000, against about
# 22 us per packed step).
FIXED = 180.0
PER_STEP = 0.43
# A normaliser below this is treated as underflow (as in crf_numpy).
TINY = 1e-250


def in_blocks(lengths: numpy.ndarray) -> numpy.ndarray:
    """Which chains of a batch (B,) to run in blocks, one by one, rather than
    in the packed loops with the others. The packed loops take as many steps
    as the longest chain whatever the number of chains, so taking the
    longest chains out saves the steps down to the next longest, while each
    costs about FIXED + PER_STEP * length steps: one 5,000-token chain among
    sentences goes to blocks; 57 documents of 257-797 tokens among 231 stay
    packed (each would cost more alone than the steps it saves)."""
    lengths = numpy.asarray(lengths, dtype="int64")
    chosen = numpy.zeros(len(lengths), dtype=bool)
    if not len(lengths):
        return chosen
    order = numpy.argsort(-lengths, kind="stable")
    desc = lengths[order]
    # cost[k]: the k longest in blocks, the rest packed
    rest = numpy.append(desc, 0)
    alone = numpy.concatenate([[0.0], numpy.cumsum(FIXED + PER_STEP * desc)])
    cost = rest + alone
    # Only chains above THRESHOLD: k_max of them
    k_max = int(numpy.argmin(numpy.append(desc > THRESHOLD, False)))
    k = int(numpy.argmin(cost[:k_max + 1]))
    chosen[order[:k]] = True
    return chosen


def n_blocks(length: int) -> int:
    """How many blocks a chain of `length` steps is cut into: the blocked
    loop costs about length / n steps, plus n boundary steps, so n grows as
    the square root of the length (5,000 steps: 25 blocks of 200)."""
    return int(max(2, min(length // 2, round((length / 8) ** 0.5))))


def bounds(length: int, n: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """The first step (n,) and the length (n,) of each of n blocks: blocks
    differ by at most one step, the longer ones first."""
    q, r = divmod(length, n)
    sizes = numpy.full(n, q, dtype="int64")
    sizes[:r] += 1
    firsts = numpy.zeros(n, dtype="int64")
    numpy.cumsum(sizes[:-1], out=firsts[1:])
    return firsts, sizes


def _by_block(values: numpy.ndarray, firsts: numpy.ndarray, size: int) -> numpy.ndarray:
    """(n, size, ...) the rows of `values` at steps firsts[j] + i (clipped at
    the chain's end: the padding of a shorter block is never read)."""
    steps = numpy.minimum(firsts[:, None] + numpy.arange(size), len(values) - 1)
    return values[steps]


def viterbi_chain(
    emitted: numpy.ndarray,
    transitions: numpy.ndarray,
    start: numpy.ndarray,
    end: numpy.ndarray,
) -> Tuple[numpy.ndarray, float]:
    """The best tag path (L,) of one chain's emissions (L, K), and its score.

    Each block runs from each of the K start tags only until the runs
    coalesce: once every run's scores are those of run 0 plus a constant
    (to rounding), every later max picks the same previous tag in all runs,
    so the block goes on with run 0 alone (max-plus products of a few steps
    are rank one in practice: the best paths from all start tags merge
    within a few tokens). K start tags cost K^3 per step, one run K^2."""
    L, K = emitted.shape
    n = n_blocks(L)
    firsts, sizes = bounds(L, n)
    size = int(sizes[0])
    # Blocks running at block step i: those longer than i
    running = numpy.searchsorted(-sizes, -numpy.arange(size), side="left")
    # shape: (size, n, K), time-major so that a step's rows are contiguous
    by_step = numpy.ascontiguousarray(_by_block(emitted, firsts, size).transpose(1, 0, 2))
    trans_t = numpy.ascontiguousarray(transitions.T)
    add, top = numpy.add, numpy.maximum.reduce
    # shape: (size, n, K_start, K): the best score of the block's paths from
    # each start tag to each tag at step i (emissions after the first step),
    # up to the step `joined` where the runs coalesce.
    score = numpy.empty((size, n, K, K))
    score[0] = numpy.where(numpy.eye(K, dtype=bool), 0.0, -numpy.inf)
    cand = numpy.empty((n, K, K, K))
    joined = size - 1
    for i in range(1, size):
        m = running[i]
        # (m, K_start, 1, K_prev) + (K_cur, K_prev) -> max over K_prev
        add(score[i - 1, :m, :, None, :], trans_t, out=cand[:m])
        add(top(cand[:m], axis=3), by_step[i, :m, None, :], out=score[i, :m])
        here = score[i, :m]
        # shape: (m, K_start, K): each run's scores less run 0's
        shift = here - here[:, :1]
        spread = shift.max(axis=2) - shift.min(axis=2)
        if (spread <= 1e-9 * max(1.0, numpy.abs(here).max())).all() and m == n:
            joined = i
            break
    # shape: (size, n, K): run 0 from `joined` on, one K x K step each
    single = numpy.empty((size, n, K))
    single[joined] = score[joined, :, 0]
    cand1 = numpy.empty((n, K, K))
    for i in range(joined + 1, size):
        m = running[i]
        add(single[i - 1, :m, None, :], trans_t, out=cand1[:m])
        add(top(cand1[:m], axis=2), by_step[i, :m], out=single[i, :m])
    blocks = numpy.arange(n)
    # shape: (n, K_start, K_last): each block's transfer
    if joined < size - 1:
        # run s = run 0 + (its constant at the step the runs joined)
        offset = score[joined, :, :, 0] - score[joined, :, :1, 0]
        transfer = single[sizes - 1, blocks][:, None, :] + offset[:, :, None]
    else:
        transfer = score[sizes - 1, blocks]
    # The blocks in order: the best score into each tag at each block's
    # first step (`into`), and which start tag reaches each last tag best.
    from_start = numpy.empty((n, K), dtype="int64")
    link = numpy.empty((n, K), dtype="int64")
    into = start + emitted[0]
    for j in range(n):
        # shape: (K_start, 1) + (K_start, K_last) -> best over the start tag
        cand_j = into[:, None] + transfer[j]
        from_start[j] = cand_j.argmax(axis=0)
        best = cand_j[from_start[j], numpy.arange(K)]
        if j + 1 < n:
            moves = best[None, :] + trans_t
            link[j + 1] = moves.argmax(axis=1)
            into = moves[numpy.arange(K), link[j + 1]] + emitted[firsts[j + 1]]
    final = best + end
    last = int(final.argmax())
    # Back through the blocks: each block's last and first tag.
    last_tag = numpy.empty(n, dtype="int64")
    first_tag = numpy.empty(n, dtype="int64")
    for j in range(n - 1, -1, -1):
        last_tag[j] = last
        first_tag[j] = from_start[j, last]
        if j:
            last = link[j, first_tag[j]]
    # Then inside all blocks at once, from each block's last tag back
    # (recomputing the argmax for the path's tag, as crf_numpy.viterbi).
    path = numpy.empty((size, n), dtype="int64")
    current = last_tag.copy()
    for i in range(size - 1, 0, -1):
        m = running[i]
        path[i, :m] = current[:m]
        # shape: (m, K_prev)
        if i - 1 >= joined:
            back = single[i - 1, :m] + trans_t[current[:m]]
        else:
            back = score[i - 1, blocks[:m], first_tag[:m]] + trans_t[current[:m]]
        current[:m] = back.argmax(axis=1)
    path[0] = current
    tags = path.T[numpy.arange(size)[None, :] < sizes[:, None]]
    return tags, float(final.max())


def _runs(
    gains: numpy.ndarray, probs: numpy.ndarray, running: numpy.ndarray, backward: bool = False
) -> Optional[Tuple[numpy.ndarray, numpy.ndarray]]:
    """Scaled runs of n blocks from each of K tags. gains (n, size, K): the
    steps' gains in run order. Forward, row s of step i is (row s of step
    i - 1) @ probs * gains[:, i]; backward, (row s of step i - 1 *
    gains[:, i]) @ probs (probs transposed by the caller); each row is
    normalised to sum 1.

    The rows contract to one another (the projective distance of positive
    vectors shrinks at each step): once every entry of every row is that of
    row 0 to a relative 1e-13, the block goes on with row 0 alone, and the
    others are copies of it with their own log scales.

    RETURNS (runs (n, size, K, K), logs (n, size, K): the summed log
    normalisers), or None if a normaliser underflows."""
    n, size, K = gains.shape
    # shape: (size, n, K, K), time-major: a step's rows are contiguous
    runs = numpy.empty((size, n, K, K))
    runs[0] = numpy.eye(K)
    norms = numpy.ones((size, n, K))
    by_step = numpy.ascontiguousarray(gains.transpose(1, 0, 2))
    matmul, multiply, divide = numpy.matmul, numpy.multiply, numpy.divide
    total = numpy.add.reduce
    joined = size - 1
    for i in range(1, size):
        m = running[i]
        rows = runs[i - 1, :m].reshape(m * K, K)
        if backward:
            nxt = matmul(multiply(rows.reshape(m, K, K), by_step[i, :m, None, :]).reshape(m * K, K),
                         probs).reshape(m, K, K)
        else:
            nxt = multiply(matmul(rows, probs).reshape(m, K, K), by_step[i, :m, None, :])
        norm = total(nxt, axis=2)
        norms[i, :m] = norm
        divide(nxt, norm[:, :, None], out=runs[i, :m])
        if m == n:
            here = runs[i]
            if (numpy.abs(here - here[:, :1]) <= 1e-13 * here[:, :1]).all():
                joined = i
                break
    if joined < size - 1:
        # Row 0 alone from here; its normalisers stand for every row's.
        single = runs[joined, :, 0].copy()
        for i in range(joined + 1, size):
            m = running[i]
            if backward:
                nxt = matmul(single[:m] * by_step[i, :m], probs)
            else:
                nxt = matmul(single[:m], probs) * by_step[i, :m]
            norm = total(nxt, axis=1)
            norms[i, :m] = norm[:, None]
            single[:m] = nxt / norm[:, None]
            runs[i, :m] = single[:m, None, :]
    if not (norms >= TINY).all() or not numpy.isfinite(norms).all():
        return None
    logs = numpy.cumsum(numpy.log(norms), axis=0)
    return runs.transpose(1, 0, 2, 3), logs.transpose(1, 0, 2)


def _read(
    vec: numpy.ndarray, vec_log: numpy.ndarray, runs: numpy.ndarray, logs: numpy.ndarray
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """The scores at every step of every block, from the boundary vectors
    vec (n, K) (scaled, log scales vec_log (n,)) and the runs (n, size, K, K)
    with their log scales (n, size, K). RETURNS rows (n, size, K) summing to
    1 and their log scales (n, size) (without the shared per-step terms)."""
    with numpy.errstate(divide="ignore"):
        # shape: (n, size, K_from)
        weight = numpy.log(vec)[:, None, :] + logs
    top = weight.max(axis=2)
    # shape: (n, size, 1, K_from) @ (n, size, K_from, K) -> (n, size, K)
    rows = numpy.matmul(numpy.exp(weight - top[:, :, None])[:, :, None, :], runs)[:, :, 0]
    norm = rows.sum(axis=2)
    with numpy.errstate(divide="ignore", invalid="ignore"):
        rows /= norm[:, :, None]
        return rows, vec_log[:, None] + top + numpy.log(norm)


def forward_backward_chain(
    emitted: numpy.ndarray,
    transitions: numpy.ndarray,
    start: numpy.ndarray,
    end: numpy.ndarray,
) -> Optional[Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray, float]]:
    """Scaled forward and backward scores of one chain's emissions (L, K):
    (alpha (L, K), alpha_log (L,), beta (L, K), beta_log (L,), log_z), as the
    rows of `crf_numpy.forward_backward`; None where the scaled form loses
    precision (a normaliser underflows, or log Z differs between steps)."""
    L, K = emitted.shape
    n = n_blocks(L)
    firsts, sizes = bounds(L, n)
    size = int(sizes[0])
    lasts = firsts + sizes - 1
    running = numpy.searchsorted(-sizes, -numpy.arange(size), side="left")
    e_max = emitted.max(axis=1)
    gains = numpy.exp(emitted - e_max[:, None])
    t_max, s_max, end_max = transitions.max(), start.max(), end.max()
    probs = numpy.exp(transitions - t_max)
    probs_t = numpy.ascontiguousarray(probs.T)
    # The log scale shared by every run at a step: t_max and the emission
    # maximum per step moved through; shared[t] sums them up to t.
    shared = numpy.cumsum(t_max + e_max)
    with numpy.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        fwd = _runs(_by_block(gains, firsts, size), probs, running)
        # Backward runs go from each block's last step back: step r of block j
        # is step lasts[j] - r, and moving to it multiplies by the gains of
        # step lasts[j] - r + 1 (row r - 1 of the reversed gains).
        back_steps = numpy.maximum(lasts[:, None] - numpy.arange(size), 0)
        back_gains = numpy.empty((n, size, K))
        back_gains[:, 1:] = gains[numpy.minimum(back_steps[:, :-1], L - 1)]
        back_gains[:, 0] = 1.0
        bwd = _runs(back_gains, probs_t, running, backward=True)
        if fwd is None or bwd is None:
            return None
        f_runs, f_logs = fwd
        b_runs, b_logs = bwd
        # Forward boundaries: each block's first-step scores, in order.
        vec = numpy.empty((n, K))
        vec_log = numpy.empty(n)
        first = numpy.exp(start - s_max) * gains[0]
        norm = first.sum()
        vec[0], vec_log[0] = first / norm, numpy.log(norm) + s_max + e_max[0]
        for j in range(n - 1):
            top, at_last = _through(vec[j], f_logs[j, sizes[j] - 1], f_runs[j, sizes[j] - 1])
            log_scale = vec_log[j] + top + shared[lasts[j]] - shared[firsts[j]]
            nxt = (at_last @ probs) * gains[firsts[j + 1]]
            norm = nxt.sum()
            vec[j + 1] = nxt / norm
            vec_log[j + 1] = log_scale + numpy.log(norm) + t_max + e_max[firsts[j + 1]]
        # Backward boundaries: each block's last-step scores, from the end.
        b_vec = numpy.empty((n, K))
        b_vec_log = numpy.empty(n)
        exp_end = numpy.exp(end - end_max)
        norm = exp_end.sum()
        b_vec[n - 1], b_vec_log[n - 1] = exp_end / norm, numpy.log(norm) + end_max
        for j in range(n - 1, 0, -1):
            r = sizes[j] - 1
            top, at_first = _through(b_vec[j], b_logs[j, r], b_runs[j, r])
            log_scale = b_vec_log[j] + top + shared[lasts[j]] - shared[firsts[j]]
            nxt = (gains[firsts[j]] * at_first) @ probs_t
            norm = nxt.sum()
            b_vec[j - 1] = nxt / norm
            b_vec_log[j - 1] = log_scale + numpy.log(norm) + t_max + e_max[firsts[j]]
        # Every step from its block's runs.
        a_rows, a_logs = _read(vec, vec_log, f_runs, f_logs)
        b_rows, b_logs_r = _read(b_vec, b_vec_log, b_runs, b_logs)
        real = numpy.arange(size)[None, :] < sizes[:, None]
        alpha = a_rows[real]
        alpha_log = a_logs[real] + shared - numpy.repeat(shared[firsts], sizes)
        # The backward rows are stored from each block's end: reverse them.
        steps = (lasts[:, None] - numpy.arange(size))[real]
        beta = numpy.empty((L, K))
        beta_log = numpy.empty(L)
        beta[steps] = b_rows[real]
        beta_log[steps] = b_logs_r[real] + numpy.repeat(shared[lasts], sizes) - shared[steps]
        z_steps = numpy.log((alpha * beta).sum(axis=1)) + alpha_log + beta_log
        log_z = z_steps[0]
        ok = numpy.isfinite(z_steps).all() and numpy.isfinite(alpha_log).all()
        ok = ok and numpy.isfinite(beta_log).all()
        if not ok or (numpy.abs(z_steps - log_z) > 1e-7 * max(1.0, abs(log_z))).any():
            return None
    return alpha, alpha_log, beta, beta_log, float(log_z)


def _through(
    vec: numpy.ndarray, logs: numpy.ndarray, run: numpy.ndarray
) -> Tuple[float, numpy.ndarray]:
    """vec (K,) through one block's run (K_from, K) with log scales (K_from,):
    RETURNS (the log scale taken out, the (K,) scores)."""
    with numpy.errstate(divide="ignore"):
        weight = numpy.log(vec) + logs
    top = weight.max()
    return top, numpy.exp(weight - top) @ run
