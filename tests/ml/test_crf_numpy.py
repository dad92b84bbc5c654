"""The numpy CRF inference (`spacy_rnn.ml.crf_numpy`, used at prediction)
against brute force over every tag sequence, against the torch functions it
replaces (random padded batches with chains of 1 and 5,000 steps, BIO and
BILUO constraints, temperatures), and its log-space fallback."""

import numpy
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_rnn.ml import crf_numpy, crf_torch
from spacy_rnn.ml.crf_torch import apply_constraints, scheme_constraints
from spacy_rnn.ml.threads import torch_threads
from spacy_rnn.schemes import decode_tag_ids, is_valid, tag_set, tags_to_spans

from test_crf import all_paths, bio_tags, biluo_tags, make_batch


def entity_rows(tags_np, L, scheme):
    """(b, s, e) rows of the entities on the decoded paths."""
    m = numpy.arange(tags_np.shape[1])[None, :] < L[:, None]
    chain_last = numpy.zeros(int(L.sum()), dtype=bool)
    chain_last[numpy.cumsum(L) - 1] = True
    starts, ends, _ = decode_tag_ids(tags_np[m], chain_last, scheme)
    chain_of = numpy.repeat(numpy.arange(len(L)), L)
    offsets = numpy.concatenate([[0], numpy.cumsum(L)[:-1]])
    first = starts - offsets[chain_of[starts]]
    return numpy.stack([chain_of[starts], first, first + ends - starts - 1], axis=1)


@pytest.fixture(autouse=True)
def package_thread_policy():
    """The torch references below run under the package's thread policy, as
    every torch call of the plugin does: with torch's default intra-op threads
    a 5,000-step reference loop slows by orders of magnitude when another
    process holds a core (the CI machine is shared)."""
    with torch_threads():
        yield


def numpy_batch(lengths, K, seed=0, scale=2.0):
    """make_batch's scores as float64 numpy arrays, zeros at padding."""
    emissions, mask, transitions, start, end = make_batch(lengths, K, seed=seed)
    emissions = emissions * scale * mask[:, :, None]
    arrays = [x.numpy() for x in (emissions, transitions, start, end)]
    return arrays[0], numpy.array(lengths), arrays[1], arrays[2], arrays[3]


def log_scores(fb, side, mask):
    """The (n_real_steps, K) log forward or backward scores, in (b, t) order."""
    b, t = numpy.nonzero(mask)
    return (crf_numpy.log_alpha if side == "alpha" else crf_numpy.log_beta)(fb, b, t)


@pytest.mark.parametrize("lengths", [[1], [3], [5, 1, 3, 2, 4]])
@pytest.mark.parametrize("K", [1, 2, 5])
def test_crf_numpy_viterbi_log_z_marginals_match_brute_force(lengths, K):
    emissions, L, transitions, start, end = numpy_batch(lengths, K, seed=K)
    tags, best = crf_numpy.viterbi(emissions, L, transitions, start, end)
    fb = crf_numpy.forward_backward(emissions, L, transitions, start, end)
    probs = crf_numpy.marginals(fb, L)
    assert not fb.fallback.any()
    for b, n in enumerate(lengths):
        paths = list(all_paths(*(torch.from_numpy(x) for x in (
            emissions[b, :n], transitions, start, end))))
        scores = numpy.array([s for _, s in paths])
        log_z = numpy.logaddexp.reduce(scores)
        assert fb.log_z[b] == pytest.approx(log_z, abs=1e-9)
        assert tuple(tags[b, :n]) == paths[int(scores.argmax())][0]
        assert (tags[b, n:] == tags[b, n - 1]).all()  # padding repeats the last tag
        assert best[b] == pytest.approx(scores.max(), abs=1e-9)
        expected = numpy.zeros((n, K))
        for (path, _), w in zip(paths, numpy.exp(scores - log_z)):
            expected[numpy.arange(n), list(path)] += w
        numpy.testing.assert_allclose(probs[b, :n], expected, atol=1e-9)
        assert numpy.abs(probs[b, n:]).sum() == 0.0


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
@pytest.mark.parametrize("temperature", [1.0, 0.3, 2.5])
def test_crf_numpy_span_log_probs_match_brute_force(scheme, temperature):
    """Every span of every path, predicted or not: the total probability of
    the paths that hold exactly that entity."""
    tags = (bio_tags if scheme == "BIO" else biluo_tags)(["PER", "LOC"])
    K = len(tags)
    emissions, L, transitions, start, end = numpy_batch([4, 2, 3], K, seed=21)
    emissions, transitions, start, end = (
        x / temperature for x in (emissions, transitions, start, end)
    )
    constraints = scheme_constraints(tuple(tags), scheme)
    masked = [x.numpy() for x in apply_constraints(
        *(torch.from_numpy(x) for x in (transitions, start, end)), constraints)]
    continues = constraints.continues.numpy()
    fb = crf_numpy.forward_backward(emissions, L, *masked)
    checked = 0
    for b, n in enumerate(L):
        paths = list(all_paths(*(torch.from_numpy(x) for x in [emissions[b, :n]] + masked)))
        log_z = numpy.logaddexp.reduce([s for _, s in paths])
        totals = {}
        for path, score in paths:
            for span in tags_to_spans([tags[k] for k in path], scheme):
                totals.setdefault(span, []).append(score)
        for (s, e, label), scores in totals.items():
            expected = numpy.exp(numpy.logaddexp.reduce(scores) - log_z)
            if expected < 1e-6:
                continue
            path = numpy.zeros((len(L), emissions.shape[1]), dtype="int64")
            first = numpy.arange(s, e) == s
            last = numpy.arange(s, e) == e - 1
            prefix = [("B" if f else "I") for f in first]
            if scheme == "BILUO":
                prefix = ["U" if f and la else "L" if la else p
                          for p, f, la in zip(prefix, first, last)]
            path[b, s:e] = [tags.index(f"{p}-{label}") for p in prefix]
            got = crf_numpy.span_log_probs(
                fb, emissions, L, masked[0], path, numpy.array([[b, s, e - 1]]), continues
            )
            assert numpy.exp(got[0]) == pytest.approx(expected, rel=1e-7, abs=1e-12)
            checked += 1
    assert checked >= 5


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_crf_numpy_matches_torch_on_padded_batches(scheme, temperature):
    """Chains of 1 to 5,000 steps in one padded batch, in any order: the same
    paths and scores as the torch Viterbi, the same forward and backward
    scores, log Z and entity log probabilities as the torch forward-backward
    (both in float64), and every decoded path valid in the scheme."""
    labels = ("PER", "LOC", "ORG", "MISC")
    tags = tag_set(labels, scheme)
    K = len(tags)
    lengths = [7, 1, 5000, 40, 1, 13]
    emissions, mask, transitions, start, end = make_batch(lengths, K, seed=4)
    emissions = emissions * 3 / temperature
    constraints = scheme_constraints(tuple(tags), scheme)
    masked = apply_constraints(transitions / temperature, start / temperature,
                               end / temperature, constraints)
    L = numpy.array(lengths)
    E = (emissions * mask[:, :, None]).numpy()
    np_masked = [x.numpy() for x in masked]
    tags_np, best_np = crf_numpy.viterbi(E, L, *np_masked)
    tags_t, best_t = crf_torch.viterbi(emissions, mask, *masked)
    numpy.testing.assert_array_equal(tags_np, tags_t)
    numpy.testing.assert_allclose(best_np, best_t.numpy(), rtol=1e-12)
    for b, n in enumerate(lengths):
        assert is_valid([tags[k] for k in tags_np[b, :n]], scheme)
    fb = crf_numpy.forward_backward(E, L, *np_masked)
    alpha, beta, log_z = crf_torch.forward_backward(emissions, mask, *masked)
    assert not fb.fallback.any()
    numpy.testing.assert_allclose(fb.log_z, log_z.numpy(), rtol=1e-10)
    m = mask.numpy()
    for side, ref in (("alpha", alpha), ("beta", beta)):
        got = log_scores(fb, side, m)
        want = ref.numpy()[m]
        # Tags with no weight at float precision may differ (-inf against a
        # clamped value); those that carry any weight must agree.
        live = want - want.max(axis=1, keepdims=True) > -30
        numpy.testing.assert_allclose(got[live], want[live], rtol=1e-9, atol=1e-7)
    rows = entity_rows(tags_np, L, scheme)
    assert len(rows) > 100
    got = crf_numpy.span_log_probs(
        fb, E, L, np_masked[0], tags_np, rows, constraints.continues.numpy()
    )
    want = crf_torch.span_log_probs(
        emissions, mask, *masked, tags_np, rows, constraints.continues
    )
    numpy.testing.assert_allclose(numpy.exp(got), numpy.exp(want), rtol=1e-8, atol=1e-12)


def test_crf_numpy_falls_back_to_log_space_when_the_scaled_form_underflows():
    """Emission scores hundreds of nats apart make a step normaliser
    underflow in the scaled form (a decisive B- followed by a decisive O):
    that chain, alone, is redone in log space, and its log Z, marginals and
    entity probability still match brute force."""
    tags = biluo_tags(["PER"])  # O B I L U
    K = len(tags)
    constraints = scheme_constraints(tuple(tags), "BILUO")
    zeros = numpy.zeros((K, K)), numpy.zeros(K), numpy.zeros(K)
    masked = [x.numpy() for x in apply_constraints(
        *(torch.from_numpy(x) for x in zeros), constraints)]
    emissions = numpy.zeros((2, 3, K))
    emissions[0] = [[0, 900, 0, 0, 0], [900, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    emissions[1, :2] = numpy.random.default_rng(0).normal(size=(2, K))
    L = numpy.array([3, 2])
    fb = crf_numpy.forward_backward(emissions, L, *masked)
    assert fb.fallback.tolist() == [True, False]
    probs = crf_numpy.marginals(fb, L)
    for b, n in enumerate(L):
        paths = list(all_paths(*(torch.from_numpy(x) for x in [emissions[b, :n]] + masked)))
        scores = numpy.array([s for _, s in paths])
        log_z = numpy.logaddexp.reduce(scores)
        assert fb.log_z[b] == pytest.approx(log_z, rel=1e-12)
        expected = numpy.zeros((n, K))
        for (path, _), w in zip(paths, numpy.exp(scores - log_z)):
            expected[numpy.arange(n), list(path)] += w
        numpy.testing.assert_allclose(probs[b, :n], expected, atol=1e-9)
    # The entity B-PER L-PER at tokens 0-1 of chain 0, against brute force
    paths = list(all_paths(*(torch.from_numpy(x) for x in [emissions[0]] + masked)))
    scores = numpy.array([s for _, s in paths])
    holding = [s for p, s in paths if p[:2] == (1, 3) and p[2] in (0, 1, 4)]
    expected = numpy.exp(numpy.logaddexp.reduce(holding) - numpy.logaddexp.reduce(scores))
    path = numpy.array([[1, 3, 0], [0, 0, 0]])
    got = crf_numpy.span_log_probs(
        fb, emissions, L, masked[0], path, numpy.array([[0, 0, 1]]), constraints.continues.numpy()
    )
    assert 0.1 < expected < 0.9
    assert numpy.exp(got[0]) == pytest.approx(expected, rel=1e-9)
    best, best_score = crf_numpy.viterbi(emissions, L, *masked)
    assert best_score[0] == pytest.approx(scores.max(), rel=1e-12)
    # The scaled form alone gives NaN there; the log-space functions do not.
    _, _, log_z = crf_numpy.log_forward_backward(emissions, L, *masked)
    numpy.testing.assert_allclose(log_z, fb.log_z, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    scheme=st.sampled_from(["BIO", "BILUO"]),
    lengths=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    seed=st.integers(0, 2**31 - 1),
    scale=st.sampled_from([1.0, 10.0, 100.0, 1000.0]),
)
def test_crf_numpy_decoding_is_always_valid(scheme, lengths, seed, scale):
    """Whatever the scores, even favouring forbidden moves, the decoded paths
    are valid and the marginals of each real step sum to 1."""
    tags = (bio_tags if scheme == "BIO" else biluo_tags)(["PER", "LOC"])
    K = len(tags)
    emissions, L, transitions, start, end = numpy_batch(lengths, K, seed=seed % 10000, scale=scale)
    constraints = scheme_constraints(tuple(tags), scheme)
    masked = [x.numpy() for x in apply_constraints(
        *(torch.from_numpy(x * scale) for x in (transitions, start, end)), constraints)]
    decoded, _ = crf_numpy.viterbi(emissions, L, *masked)
    fb = crf_numpy.forward_backward(emissions, L, *masked)
    probs = crf_numpy.marginals(fb, L)
    for b, n in enumerate(lengths):
        assert is_valid([tags[k] for k in decoded[b, :n]], scheme)
        numpy.testing.assert_allclose(probs[b, :n].sum(1), 1.0, atol=1e-9)
