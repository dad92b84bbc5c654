"""The CRF math against brute force over every tag sequence, a numerical
gradient check, and constrained decoding under random scores."""

import itertools

import numpy
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from thinc.api import Adam

from spacy_rnn.ml.crf import (
    CRF,
    MISSING,
    NEG,
    PAD,
    CRFLoss,
    apply_constraints,
    log_partition,
    marginals,
    nll,
    path_score,
    scheme_constraints,
    span_log_probs,
    viterbi,
)
from spacy_rnn.schemes import is_valid, tags_to_spans


def make_batch(lengths, K, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    T = max(lengths)
    emissions = torch.randn((len(lengths), T, K), generator=gen, dtype=dtype) * 2
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    transitions = torch.randn((K, K), generator=gen, dtype=dtype)
    start = torch.randn((K,), generator=gen, dtype=dtype)
    end = torch.randn((K,), generator=gen, dtype=dtype)
    return emissions, mask, transitions, start, end


def all_paths(emission, transitions, start, end):
    """(path, score) for every tag sequence of one unpadded sequence (L, K)."""
    emission, transitions = emission.numpy(), transitions.numpy()
    start, end = start.numpy(), end.numpy()
    L, K = emission.shape
    steps = numpy.arange(L)
    for path in itertools.product(range(K), repeat=L):
        p = numpy.array(path)
        score = start[p[0]] + end[p[-1]] + emission[steps, p].sum() + transitions[p[:-1], p[1:]].sum()
        yield path, float(score)


LENGTHS = [[1], [3], [5, 1, 3, 2, 4]]


@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize("K", [1, 2, 5])
def test_crf_log_partition_viterbi_marginals_match_brute_force(lengths, K):
    emissions, mask, transitions, start, end = make_batch(lengths, K, seed=K)
    log_z = log_partition(emissions, mask, transitions, start, end)
    tags, best = viterbi(emissions, mask, transitions, start, end)
    probs = marginals(emissions, mask, transitions, start, end)
    for b, L in enumerate(lengths):
        paths = list(all_paths(emissions[b, :L], transitions, start, end))
        scores = numpy.array([s for _, s in paths])
        expected_z = numpy.logaddexp.reduce(scores)
        assert float(log_z[b]) == pytest.approx(expected_z, abs=1e-9)
        argmax = paths[int(scores.argmax())][0]
        assert tuple(tags[b, :L]) == argmax
        assert float(best[b]) == pytest.approx(scores.max(), abs=1e-9)
        expected = numpy.zeros((L, K))
        weights = numpy.exp(scores - expected_z)
        for (path, _), w in zip(paths, weights):
            expected[numpy.arange(L), list(path)] += w
        numpy.testing.assert_allclose(probs[b, :L].numpy(), expected, atol=1e-9)
        numpy.testing.assert_allclose(probs[b, :L].sum(1).numpy(), 1.0, atol=1e-9)
        assert float(probs[b, L:].abs().sum()) == 0.0
        # The score of every path and the NLL of one
        path = paths[7 % len(paths)]
        truth = torch.full((1, max(lengths)), PAD, dtype=torch.long)
        truth[0, :L] = torch.tensor(path[0])
        got = path_score(
            emissions[b : b + 1], truth.clamp(min=0), mask[b : b + 1], transitions, start, end
        )
        assert float(got) == pytest.approx(path[1], abs=1e-9)
        loss = nll(emissions[b : b + 1], truth, transitions, start, end)
        assert float(loss) == pytest.approx(expected_z - path[1], abs=1e-9)


def test_crf_batched_equals_unbatched():
    lengths = [5, 1, 3]
    emissions, mask, transitions, start, end = make_batch(lengths, 4, seed=3)
    log_z = log_partition(emissions, mask, transitions, start, end)
    tags, _ = viterbi(emissions, mask, transitions, start, end)
    for b, L in enumerate(lengths):
        alone = emissions[b : b + 1, :L]
        ones = torch.ones((1, L), dtype=torch.bool)
        assert float(log_partition(alone, ones, transitions, start, end)) == pytest.approx(
            float(log_z[b])
        )
        assert list(viterbi(alone, ones, transitions, start, end)[0][0]) == list(tags[b, :L])


def test_crf_missing_tags_are_marginalised():
    """The NLL with missing tags is -log of the total probability of the paths
    consistent with the known tags (brute force), and it does not depend on
    the emission scores of the missing tokens beyond that sum."""
    L, K = 4, 3
    emissions, mask, transitions, start, end = make_batch([L], K, seed=11)
    truth = torch.tensor([[2, MISSING, 0, MISSING]])
    paths = list(all_paths(emissions[0], transitions, start, end))
    scores = numpy.array([s for _, s in paths])
    consistent = numpy.array([s for p, s in paths if p[0] == 2 and p[2] == 0])
    expected = numpy.logaddexp.reduce(scores) - numpy.logaddexp.reduce(consistent)
    assert float(nll(emissions, truth, transitions, start, end)) == pytest.approx(
        expected, abs=1e-9
    )


def test_crf_nll_gradient_check():
    lengths = [4, 1, 3]
    emissions, mask, transitions, start, end = make_batch(lengths, 3, seed=5)
    truths = torch.full(mask.shape, PAD, dtype=torch.long)
    gen = torch.Generator().manual_seed(1)
    for b, L in enumerate(lengths):
        truths[b, :L] = torch.randint(0, 3, (L,), generator=gen)
    truths[0, 1] = MISSING  # marginalised tokens are differentiated too

    def fn(e, tr, s, en):
        return nll(e, truths, tr, s, en).sum()

    inputs = [x.clone().requires_grad_(True) for x in (emissions, transitions, start, end)]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


def test_crf_loss_thinc_interface_and_learning():
    """CRFLoss returns d emissions, accumulates the CRF scores' gradients in
    the layer, and a few Adam steps on the CRF scores alone lower the loss."""
    K = 3
    crf = CRF(nO=K)
    crf.initialize()
    gen = numpy.random.default_rng(0)
    guesses = gen.normal(size=(2, 4, K)).astype("float32")
    truths = numpy.array([[0, 1, 2, PAD], [2, 2, 1, 0]])
    loss_fn = CRFLoss(crf)
    d_guesses, loss = loss_fn(guesses, truths)
    assert d_guesses.shape == guesses.shape
    assert loss == pytest.approx(loss_fn.get_loss(guesses, truths))
    # Padding gets no gradient; each step's gradient is marginals - one-hot, summing to 0.
    assert numpy.abs(d_guesses[0, 3]).sum() == 0
    numpy.testing.assert_allclose(d_guesses[:, :3].sum(-1), 0.0, atol=1e-5)
    assert numpy.abs(crf.get_grad("transitions")).sum() > 0
    optimizer = Adam(0.1)
    crf.finish_update(optimizer)
    for _ in range(20):
        loss_fn(guesses, truths)
        crf.finish_update(optimizer)
    assert loss_fn.get_loss(guesses, truths) < loss - 1.0
    with pytest.raises(ValueError, match="tag ids"):
        loss_fn(guesses, numpy.array([[0, 1, 5, PAD], [0, 0, 0, 0]]))


def bio_tags(labels):
    return ["O"] + [f"{p}-{label}" for label in labels for p in "BI"]


def biluo_tags(labels):
    return ["O"] + [f"{p}-{label}" for label in labels for p in "BILU"]


@settings(max_examples=60, deadline=None)
@given(
    scheme=st.sampled_from(["BIO", "BILUO"]),
    lengths=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    seed=st.integers(0, 2**31 - 1),
    scale=st.sampled_from([1.0, 10.0, 100.0]),
)
def test_crf_constrained_decoding_is_always_valid(scheme, lengths, seed, scale):
    tags = (bio_tags if scheme == "BIO" else biluo_tags)(["PER", "LOC"])
    K = len(tags)
    emissions, mask, transitions, start, end = make_batch(
        lengths, K, seed=seed % 10000, dtype=torch.float32
    )
    emissions = emissions * scale
    # The learned scores may even favour forbidden moves: the mask must win.
    transitions = transitions * scale
    constraints = scheme_constraints(tuple(tags), scheme)
    masked = apply_constraints(transitions, start * scale, end * scale, constraints)
    decoded, _ = viterbi(emissions, mask, *masked)
    for b, L in enumerate(lengths):
        seq = [tags[k] for k in decoded[b, :L]]
        assert is_valid(seq, scheme), seq


def test_crf_span_confidence_matches_brute_force():
    """The confidence of an entity is the total probability of the paths that
    hold exactly that entity (brute force over all BIO sequences)."""
    tags = bio_tags(["PER", "LOC"])
    K = len(tags)
    L = 4
    emissions, mask, transitions, start, end = make_batch([L], K, seed=21)
    constraints = scheme_constraints(tuple(tags), "BIO")
    masked = apply_constraints(transitions, start, end, constraints)
    decoded, _ = viterbi(emissions, mask, *masked)
    totals = {}
    all_scores = []
    for path, score in all_paths(emissions[0], *masked):
        all_scores.append(score)
        for span in tags_to_spans([tags[k] for k in path], "BIO"):
            totals.setdefault(span, []).append(score)
    log_z = numpy.logaddexp.reduce(all_scores)
    # Check every span of every valid path, not only the decoded ones.
    for (s, e, label), scores in totals.items():
        expected = numpy.exp(numpy.logaddexp.reduce(scores) - log_z)
        if expected < 1e-6:
            continue
        path = torch.tensor([[tags.index(("B-" if t == s else "I-") + label) for t in range(s, e)]])
        full = numpy.array(decoded)
        full[0, s:e] = path.numpy()
        got = span_log_probs(
            emissions, mask, *masked, full, numpy.array([[0, s, e - 1]]), constraints.continues
        )
        assert numpy.exp(got[0]) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_crf_forbidden_scores_never_change():
    """Forbidden transitions have zero gradient, so training never un-masks them."""
    tags = biluo_tags(["PER"])
    K = len(tags)
    constraints = scheme_constraints(tuple(tags), "BILUO")
    transitions = torch.zeros((K, K), requires_grad=True)
    start = torch.zeros((K,), requires_grad=True)
    end = torch.zeros((K,), requires_grad=True)
    emissions = torch.randn((2, 5, K))
    truths = torch.tensor([[1, 2, 3, 0, 4], [4, 0, 1, 3, PAD]])
    loss = nll(emissions, truths, *apply_constraints(transitions, start, end, constraints)).sum()
    assert float(loss.detach()) < -NEG / 10  # the gold paths are valid: no penalty
    loss.backward()
    assert float(transitions.grad[~constraints.trans_ok].abs().sum()) == 0.0
    assert float(start.grad[~constraints.start_ok].abs().sum()) == 0.0
    assert float(end.grad[~constraints.end_ok].abs().sum()) == 0.0
