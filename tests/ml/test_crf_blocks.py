"""Block-parallel decoding of long chains (`spacy_rnn.ml.crf_blocks`, used by
`crf_numpy.viterbi` and `crf_numpy.forward_backward` above
`crf_blocks.THRESHOLD` steps) against the sequential packed code, which is
itself tested against brute force and torch in test_crf_numpy.py."""

import numpy
import pytest
import torch

from spacy_rnn.ml import crf_blocks, crf_numpy
from spacy_rnn.ml.crf_torch import apply_constraints, scheme_constraints
from spacy_rnn.schemes import is_valid, tag_set

from test_crf import make_batch
from test_crf_numpy import entity_rows

THRESHOLD = crf_blocks.THRESHOLD


@pytest.fixture(autouse=True)
def every_long_chain_in_blocks(monkeypatch):
    """Every chain above the threshold runs in blocks (by default only those
    whose blocks save time do), so that the tests compare the block code."""
    monkeypatch.setattr(crf_blocks, "FIXED", -1e9)


def constrained_batch(lengths, scheme, temperature=1.0, seed=0, scale=3.0):
    """Random emissions (B, T, K), zero at padding, and the scheme's
    constrained potentials, all float64 numpy, divided by the temperature."""
    tags = tag_set(("PER", "LOC", "ORG", "MISC"), scheme)
    emissions, mask, transitions, start, end = make_batch(lengths, len(tags), seed=seed)
    constraints = scheme_constraints(tuple(tags), scheme)
    masked = apply_constraints(
        transitions / temperature, start / temperature, end / temperature, constraints
    )
    E = (emissions * scale / temperature * mask[:, :, None]).numpy()
    return tags, E, numpy.array(lengths), [x.numpy() for x in masked], constraints


def assert_same_as_sequential(tags, E, L, masked, constraints, scheme):
    """Paths, path scores, log Z, forward/backward scores and entity log
    probabilities of the public functions equal the packed sequential code's."""
    got_tags, got_best = crf_numpy.viterbi(E, L, *masked)
    want_tags, want_best = crf_numpy._viterbi_packed(E, L, *masked)
    numpy.testing.assert_array_equal(got_tags, want_tags)
    numpy.testing.assert_allclose(got_best, want_best, rtol=1e-12)
    for b, n in enumerate(L):
        assert is_valid([tags[k] for k in got_tags[b, :n]], scheme)
    got = crf_numpy.forward_backward(E, L, *masked)
    want = crf_numpy._forward_backward_packed(E, L, *masked)
    numpy.testing.assert_array_equal(got.fallback, want.fallback)
    numpy.testing.assert_allclose(got.log_z, want.log_z, rtol=0, atol=1e-8)
    b, t = numpy.nonzero(numpy.arange(E.shape[1])[None, :] < L[:, None])
    for read in (crf_numpy.log_alpha, crf_numpy.log_beta):
        g, w = read(got, b, t), read(want, b, t)
        # Tags with no weight at float precision may differ (-inf against a
        # tiny value); those that carry any weight must agree.
        live = w - w.max(axis=1, keepdims=True) > -30
        numpy.testing.assert_allclose(g[live], w[live], rtol=0, atol=1e-8)
    rows = entity_rows(got_tags, L, scheme)
    assert len(rows) > 0
    continues = constraints.continues.numpy()
    got_logp = crf_numpy.span_log_probs(got, E, L, masked[0], got_tags, rows, continues)
    want_logp = crf_numpy.span_log_probs(want, E, L, masked[0], got_tags, rows, continues)
    numpy.testing.assert_allclose(got_logp, want_logp, rtol=0, atol=1e-8)


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
@pytest.mark.parametrize("temperature", [1.0, 0.4])
@pytest.mark.parametrize(
    "length", [THRESHOLD, THRESHOLD + 1, THRESHOLD + 3, 1001, 2999]
)
def test_crf_blocks_long_chain_matches_sequential(scheme, temperature, length):
    """One chain just below, at and above the threshold, and of lengths that
    no block count divides evenly: the same results as the sequential code,
    and above the threshold the blocks really run (no fallback)."""
    tags, E, L, masked, constraints = constrained_batch(
        [length], scheme, temperature, seed=length
    )
    if length > THRESHOLD:
        assert crf_blocks.forward_backward_chain(E[0], *masked) is not None
    assert_same_as_sequential(tags, E, L, masked, constraints, scheme)


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_crf_blocks_batch_mixing_short_and_long_chains(scheme):
    """Short and long chains in one padded batch, in any order, long ones
    of different lengths: every chain as with the sequential code."""
    lengths = [3, 300, 1, 777, THRESHOLD, THRESHOLD + 1, 40]
    tags, E, L, masked, constraints = constrained_batch(lengths, scheme, 0.7, seed=11)
    assert_same_as_sequential(tags, E, L, masked, constraints, scheme)


def test_crf_blocks_picks_the_chains_whose_blocks_save_time(monkeypatch):
    """With the default costs: a 5,000-step chain among sentences runs in
    blocks; many documents of a few hundred steps stay packed (the packed
    loops take as many steps as the longest chain, whatever their number)."""
    monkeypatch.setattr(crf_blocks, "FIXED", 180.0)
    picked = crf_blocks.in_blocks(numpy.array([12, 5000, 30, 1]))
    assert picked.tolist() == [False, True, False, False]
    docs = numpy.random.default_rng(0).integers(100, 800, size=231)
    assert not crf_blocks.in_blocks(docs).any()
    assert not crf_blocks.in_blocks(numpy.array([THRESHOLD, 40])).any()
    two = crf_blocks.in_blocks(numpy.array([5000, 4000, 300, 20]))
    assert two.tolist() == [True, True, False, False]
    assert crf_blocks.in_blocks(numpy.zeros(0, dtype=int)).tolist() == []


def test_crf_blocks_bounds_cover_the_chain():
    for length in (THRESHOLD + 1, 1000, 1001, 5000, 5003):
        n = crf_blocks.n_blocks(length)
        firsts, sizes = crf_blocks.bounds(length, n)
        assert 2 <= n <= length // 2
        assert sizes.sum() == length and sizes.max() - sizes.min() <= 1
        assert (numpy.diff(sizes) <= 0).all()
        numpy.testing.assert_array_equal(firsts[1:], numpy.cumsum(sizes)[:-1])


def test_crf_blocks_runs_that_never_coalesce():
    """Transitions that strongly favour staying in the same tag keep the
    runs from different start tags apart for a whole block: the blocks then
    run from every start tag to the end, with the same results."""
    K = 5
    rng = numpy.random.default_rng(3)
    L = numpy.array([THRESHOLD + 50])
    E = rng.normal(size=(1, L[0], K)) * 0.5
    transitions = 40.0 * numpy.eye(K) + rng.normal(size=(K, K))
    start, end = rng.normal(size=K), rng.normal(size=K)
    got_tags, got_best = crf_numpy.viterbi(E, L, transitions, start, end)
    want_tags, want_best = crf_numpy._viterbi_packed(E, L, transitions, start, end)
    numpy.testing.assert_array_equal(got_tags, want_tags)
    numpy.testing.assert_allclose(got_best, want_best, rtol=1e-12)
    assert crf_blocks.forward_backward_chain(E[0], transitions, start, end) is not None
    got = crf_numpy.forward_backward(E, L, transitions, start, end)
    want = crf_numpy._forward_backward_packed(E, L, transitions, start, end)
    numpy.testing.assert_allclose(got.log_z, want.log_z, rtol=0, atol=1e-8)
    probs = crf_numpy.marginals(got, L)
    numpy.testing.assert_allclose(probs, crf_numpy.marginals(want, L), atol=1e-10)


def test_crf_blocks_fall_back_to_the_sequential_code_on_underflow():
    """Emission scores hundreds of nats apart inside a long chain underflow
    a block run: that chain goes through the sequential code (and there to
    log space), the other long chain stays in blocks; the results equal the
    sequential code's."""
    tags = tag_set(("PER",), "BILUO")  # O B I L U
    K = len(tags)
    constraints = scheme_constraints(tuple(tags), "BILUO")
    zeros = numpy.zeros((K, K)), numpy.zeros(K), numpy.zeros(K)
    masked = [x.numpy() for x in apply_constraints(
        *(torch.from_numpy(x) for x in zeros), constraints)]
    L = numpy.array([THRESHOLD + 40, THRESHOLD + 20])
    E = numpy.random.default_rng(0).normal(size=(2, L.max(), K))
    E[0, 100:102] = [[0, 900, 0, 0, 0], [900, 0, 0, 0, 0]]
    E[1, L[1]:] = 0.0
    assert crf_blocks.forward_backward_chain(E[0, :L[0]], *masked) is None
    assert crf_blocks.forward_backward_chain(E[1, :L[1]], *masked) is not None
    got = crf_numpy.forward_backward(E, L, *masked)
    want = crf_numpy._forward_backward_packed(E, L, *masked)
    assert got.fallback.tolist() == want.fallback.tolist() == [True, False]
    numpy.testing.assert_allclose(got.log_z, want.log_z, rtol=0, atol=1e-8)
    numpy.testing.assert_allclose(
        crf_numpy.marginals(got, L), crf_numpy.marginals(want, L), atol=1e-10
    )
    got_tags, _ = crf_numpy.viterbi(E, L, *masked)
    want_tags, _ = crf_numpy._viterbi_packed(E, L, *masked)
    numpy.testing.assert_array_equal(got_tags, want_tags)
