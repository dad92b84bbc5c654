"""The CRF math against brute force over every tag sequence, a numerical
gradient check, and constrained decoding under random scores."""

import itertools

import numpy
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from thinc.api import Adam

import spacy_rnn.ml.crf as crf_module
import spacy_rnn.ml.crf_torch as crf_torch
from spacy_rnn.ml.chains import ChainLayout
from spacy_rnn.ml.crf import (
    CRF,
    MISSING,
    NEG,
    PAD,
    CRFLoss,
    apply_constraints,
    chain_loss,
    DecodedEntities,
    NBestPaths,
    decode_entities,
    decode_nbest,
    decode_with_nbest,
    kbest_viterbi,
    log_partition,
    marginals,
    nll,
    path_score,
    scheme_constraints,
    span_log_probs,
    span_probabilities,
    viterbi,
)
from spacy_rnn.ml.threads import set_torch_threads
from spacy_rnn.schemes import is_valid, tag_set, tags_to_spans


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
        moves = transitions[p[:-1], p[1:]].sum()
        score = start[p[0]] + end[p[-1]] + emission[steps, p].sum() + moves
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
            emissions[b:b + 1], truth.clamp(min=0), mask[b:b + 1], transitions, start, end
        )
        assert float(got) == pytest.approx(path[1], abs=1e-9)
        loss = nll(emissions[b:b + 1], truth, transitions, start, end)
        assert float(loss) == pytest.approx(expected_z - path[1], abs=1e-9)


def test_crf_batched_equals_unbatched():
    lengths = [5, 1, 3]
    emissions, mask, transitions, start, end = make_batch(lengths, 4, seed=3)
    log_z = log_partition(emissions, mask, transitions, start, end)
    tags, _ = viterbi(emissions, mask, transitions, start, end)
    for b, L in enumerate(lengths):
        alone = emissions[b:b + 1, :L]
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


# ---- chains and the numpy entry points -----------------------------------------


def test_chain_layout_from_docs_pad_unpad_split():
    import spacy
    from spacy.tokens import Doc

    vocab = spacy.blank("en").vocab
    docs = [
        Doc(vocab, words=list("abcde"), sent_starts=[1, 0, 1, 0, 0]),
        Doc(vocab, words=[]),
        Doc(vocab, words=list("xy")),  # no sentence starts: one chain
        Doc(vocab, words=list("pqr"), sent_starts=[1, 1, 1]),
    ]
    layout = ChainLayout.from_docs(docs)
    assert layout.chain_lengths.tolist() == [2, 3, 2, 1, 1, 1]
    assert layout.doc_offsets.tolist() == [0, 5, 5, 7, 10]
    assert layout.mask.shape == (6, 3) and int(layout.mask.sum()) == layout.n_tokens == 10
    assert layout.chain_first.nonzero()[0].tolist() == [0, 2, 5, 7, 8, 9]
    assert layout.chain_last.nonzero()[0].tolist() == [1, 4, 6, 7, 8, 9]
    flat = numpy.arange(20, dtype="float32").reshape((10, 2)) + 1
    padded = layout.pad(flat)
    assert padded.shape == (6, 3, 2)
    assert (padded[~layout.mask] == 0).all()
    assert padded[1, :, 0].tolist() == [5.0, 7.0, 9.0]  # tokens 2-4
    numpy.testing.assert_array_equal(layout.unpad(padded), flat)
    assert [part.shape[0] for part in layout.split(flat)] == [5, 0, 2, 3]
    rows = layout.span_rows(numpy.array([3, 5, 9]), numpy.array([5, 7, 10]))
    assert rows.tolist() == [[1, 1, 2], [2, 0, 1], [5, 0, 0]]
    with pytest.raises(ValueError, match="do not tile"):
        ChainLayout([4], numpy.array([2, 1]))
    with pytest.raises(ValueError, match="rows for a batch of 10 tokens"):
        layout.pad(flat[:9])
    empty = ChainLayout.from_docs([Doc(vocab, words=[])])
    assert empty.mask.shape == (0, 0) and empty.pad(numpy.zeros((0, 4))).shape == (0, 0, 4)


def crf_layer(scheme, labels=("PER", "LOC"), seed=0):
    """A CRF layer with its tag set and random learned scores."""
    tags = tag_set(labels, scheme)
    crf = CRF(nO=len(tags))
    crf.attrs["tags"] = tags
    crf.attrs["scheme"] = scheme
    crf.initialize()
    rng = numpy.random.default_rng(seed)
    K = len(tags)
    for name, shape in (("transitions", (K, K)), ("start", (K,)), ("end", (K,))):
        crf.set_param(name, rng.normal(size=shape).astype("float32"))
    return crf, tags


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_crf_decode_entities_matches_brute_force(scheme):
    """Per chain, the entities of the best path, each scored by the total
    probability of the paths that hold exactly that entity (brute force over
    every tag sequence of every chain)."""
    crf, tags = crf_layer(scheme, seed=3)
    K = len(tags)
    layout = ChainLayout([4, 2], numpy.array([3, 1, 2]))
    rng = numpy.random.default_rng(4)
    emissions = (rng.normal(size=(layout.n_tokens, K)) * 3).astype("float32")
    found = decode_entities(crf, emissions, layout)
    constraints = scheme_constraints(tuple(tags), scheme)
    params = [
        torch.from_numpy(crf.get_param(name).astype("float64"))
        for name in ("transitions", "start", "end")
    ]
    masked = apply_constraints(*params, constraints)
    expected = []
    for first, last in zip(layout.chain_offsets[:-1], layout.chain_offsets[1:]):
        chain = torch.from_numpy(emissions[first:last].astype("float64"))
        paths = list(all_paths(chain, *masked))
        log_z = numpy.logaddexp.reduce([score for _, score in paths])
        best = max(paths, key=lambda item: item[1])[0]
        for s, e, label in tags_to_spans([tags[k] for k in best], scheme):
            holding = [
                score for path, score in paths
                if (s, e, label) in tags_to_spans([tags[k] for k in path], scheme)
            ]
            prob = numpy.exp(numpy.logaddexp.reduce(holding) - log_z)
            expected.append((first + s, first + e, ["PER", "LOC"].index(label), prob))
    assert len(expected) >= 2
    got = list(zip(found.starts.tolist(), found.ends.tolist(), found.labels.tolist()))
    assert got == [row[:3] for row in expected]
    numpy.testing.assert_allclose(found.scores, [row[3] for row in expected], rtol=1e-4)


def test_crf_decode_entities_needs_a_tag_set():
    crf = CRF(nO=3)
    crf.initialize()
    with pytest.raises(ValueError, match="no tags"):
        decode_entities(crf, numpy.zeros((2, 3), "float32"), ChainLayout([2], numpy.array([2])))
    crf.attrs["tags"] = ["O", "I-PER", "B-PER"]
    crf.attrs["scheme"] = "BIO"
    with pytest.raises(ValueError, match="not a IOB2 tag set"):
        decode_entities(crf, numpy.zeros((2, 3), "float32"), ChainLayout([2], numpy.array([2])))
    crf, _ = crf_layer("BILUO")
    none = decode_entities(crf, numpy.zeros((0, 9), "float32"), ChainLayout([0], numpy.zeros(0)))
    assert none.starts.shape == none.scores.shape == (0,)


def test_crf_chain_loss_is_the_sum_over_chains():
    """The batched loss and gradient equal those of each chain on its own."""
    crf, tags = crf_layer("BILUO", seed=5)
    K = len(tags)
    layout = ChainLayout([5, 3], numpy.array([2, 3, 3]))
    rng = numpy.random.default_rng(6)
    emissions = rng.normal(size=(layout.n_tokens, K)).astype("float32")
    gold = numpy.array([4, 0, 1, 3, 0, MISSING, 8, 0], dtype="int64")  # U-PER O | B-PER L-PER O
    d_emissions, loss = chain_loss(crf, emissions, gold, layout)
    assert d_emissions.shape == emissions.shape
    total = 0.0
    for first, last in zip(layout.chain_offsets[:-1], layout.chain_offsets[1:]):
        alone = CRF(nO=K)
        alone.attrs.update(crf.attrs)
        alone.initialize()
        for name in ("transitions", "start", "end"):
            alone.set_param(name, crf.get_param(name).copy())
        d_alone, loss_alone = CRFLoss(alone)(emissions[None, first:last], gold[None, first:last])
        numpy.testing.assert_allclose(d_emissions[first:last], d_alone[0], rtol=1e-5, atol=1e-6)
        total += loss_alone
    assert loss == pytest.approx(total, rel=1e-5)


def test_crf_torch_work_runs_under_the_thread_policy(monkeypatch):
    """The torch work (the k-best search, the loss) runs with the policy's
    threads (1 here) and gives the caller's setting back; 1-best decoding
    runs in numpy and calls no torch CRF function."""
    seen = []
    real_kbest, real_nll = crf_module.kbest_viterbi, crf_module.nll

    def kbest_spy(*args):
        seen.append(("kbest_viterbi", torch.get_num_threads()))
        return real_kbest(*args)

    def nll_spy(*args):
        seen.append(("nll", torch.get_num_threads()))
        return real_nll(*args)

    def torch_viterbi_spy(*args):
        seen.append(("torch viterbi", torch.get_num_threads()))
        return crf_torch.viterbi(*args)

    monkeypatch.setattr(crf_module, "kbest_viterbi", kbest_spy)
    monkeypatch.setattr(crf_module, "nll", nll_spy)
    monkeypatch.setattr(crf_module, "viterbi", torch_viterbi_spy)
    crf, tags = crf_layer("BILUO")
    layout = ChainLayout([3], numpy.array([3]))
    emissions = numpy.ones((3, len(tags)), dtype="float32")
    before = torch.get_num_threads()
    set_torch_threads(1)
    try:
        torch.set_num_threads(2)
        decode_entities(crf, emissions, layout)
        decode_with_nbest(crf, emissions, layout, 2)
        chain_loss(crf, emissions, numpy.array([0, 0, 0]), layout)
        assert torch.get_num_threads() == 2
    finally:
        set_torch_threads(None)
        torch.set_num_threads(before)
    assert seen == [("kbest_viterbi", 1), ("nll", 1)]


# ---- n-best, temperature, span probabilities -------------------------------------


def test_crf_kbest_viterbi_matches_brute_force():
    """All 81 paths of a 4-token, 3-tag chain in order, in a padded batch;
    rank 0 is Viterbi; ranks past the number of paths are -inf."""
    lengths = [4, 2, 3]
    K = 3
    emissions, mask, transitions, start, end = make_batch(lengths, K, seed=5)
    best, _ = viterbi(emissions, mask, transitions, start, end)
    for k in (1, 5, 81):
        tags, scores = kbest_viterbi(emissions, mask, transitions, start, end, k)
        assert tags.shape == (3, k, 4) and scores.shape == (3, k)
        for b, L in enumerate(lengths):
            paths = sorted(
                all_paths(emissions[b, :L], transitions, start, end), key=lambda p: -p[1]
            )
            n = min(k, len(paths))
            numpy.testing.assert_allclose(scores[b, :n], [s for _, s in paths[:n]], rtol=1e-9)
            assert [tuple(tags[b, r, :L]) for r in range(n)] == [p for p, _ in paths[:n]]
            assert numpy.isneginf(scores[b, n:]).all()
            assert tags[b, 0, :L].tolist() == best[b, :L].tolist()
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        kbest_viterbi(emissions, mask, transitions, start, end, 0)


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_crf_decode_nbest_matches_brute_force(scheme, temperature):
    """Per chain, the k best valid paths with their probabilities (every
    potential divided by the temperature) and the entities of each; a
    1-token chain of a one-label tag set has fewer valid paths than k."""
    crf, tags = crf_layer(scheme, labels=("PER",), seed=7)
    K = len(tags)
    layout = ChainLayout([4, 1, 3], numpy.array([4, 1, 2, 1]))
    rng = numpy.random.default_rng(8)
    emissions = (rng.normal(size=(layout.n_tokens, K)) * 2).astype("float32")
    k = 5
    found = decode_nbest(crf, emissions, layout, k, temperature)
    one_best = decode_entities(crf, emissions, layout, temperature)
    constraints = scheme_constraints(tuple(tags), scheme)
    params = [
        torch.from_numpy(crf.get_param(name).astype("float64")) / temperature
        for name in ("transitions", "start", "end")
    ]
    masked = apply_constraints(*params, constraints)
    columns = (found.chains, found.ranks, found.starts, found.ends, found.labels)
    rows = list(zip(*(col.tolist() for col in columns)))
    expected_rows = []
    for c, (first, last) in enumerate(zip(layout.chain_offsets[:-1], layout.chain_offsets[1:])):
        chain = torch.from_numpy(emissions[first:last].astype("float64")) / temperature
        paths = list(all_paths(chain, *masked))
        log_z = numpy.logaddexp.reduce([score for _, score in paths])
        valid = [(p, s) for p, s in paths if is_valid([tags[i] for i in p], scheme)]
        valid.sort(key=lambda item: -item[1])
        probs = [numpy.exp(s - log_z) for _, s in valid[:k]]
        probs += [0.0] * (k - len(probs))
        numpy.testing.assert_allclose(found.path_probs[c], probs, rtol=1e-4, atol=1e-9)
        assert found.path_probs[c].sum() <= 1.0 + 1e-9
        for rank, (path, _) in enumerate(valid[:k]):
            for s, e, label in tags_to_spans([tags[i] for i in path], scheme):
                expected_rows.append((c, rank, first + s, first + e, 0))
    assert found.path_probs[1, 2:].tolist() == [0.0, 0.0, 0.0]  # "O" and "U-PER"/"B-PER" only
    assert rows == expected_rows
    # Path 1 is the Viterbi path: its entities are decode_entities'.
    first_rank = [(s, e, lab) for _, r, s, e, lab in rows if r == 0]
    columns = (one_best.starts, one_best.ends, one_best.labels)
    assert first_rank == list(zip(*(col.tolist() for col in columns)))
    # The one-pass decoder the component uses gives both.
    entities, again = decode_with_nbest(crf, emissions, layout, k, temperature)
    for name in DecodedEntities._fields:
        numpy.testing.assert_allclose(getattr(entities, name), getattr(one_best, name), rtol=1e-5)
    for name in NBestPaths._fields:
        numpy.testing.assert_allclose(getattr(again, name), getattr(found, name), rtol=1e-6)


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_crf_temperature_keeps_the_entities_and_rescales_the_marginals(scheme):
    crf, tags = crf_layer(scheme, seed=3)
    K = len(tags)
    layout = ChainLayout([4, 2], numpy.array([3, 1, 2]))
    rng = numpy.random.default_rng(4)
    emissions = (rng.normal(size=(layout.n_tokens, K)) * 3).astype("float32")
    base = decode_entities(crf, emissions, layout)
    assert base.raw_scores is base.scores
    for temperature in (0.5, 3.0):
        hot = decode_entities(crf, emissions, layout, temperature)
        assert hot.starts.tolist() == base.starts.tolist()
        assert hot.labels.tolist() == base.labels.tolist()
        numpy.testing.assert_allclose(hot.raw_scores, base.scores, rtol=1e-6)
        # The same as decoding emissions and CRF scores divided by the temperature.
        scaled, _ = crf_layer(scheme, seed=3)
        for name in ("transitions", "start", "end"):
            scaled.set_param(name, crf.get_param(name) / temperature)
        expected = decode_entities(scaled, emissions / temperature, layout)
        numpy.testing.assert_allclose(hot.scores, expected.scores, rtol=1e-5)
        # Hotter is less confident, colder more.
        if temperature > 1:
            assert (hot.scores <= base.scores + 1e-9).all()
        else:
            assert (hot.scores >= base.scores - 1e-9).all()
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            decode_entities(crf, emissions, layout, bad)


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_crf_span_probabilities_match_brute_force(scheme):
    """Any span (overlapping ones too), predicted or not: the total probability
    of the paths holding exactly that entity; a span across chains gets 0."""
    crf, tags = crf_layer(scheme, seed=11)
    K = len(tags)
    layout = ChainLayout([3, 4], numpy.array([3, 2, 2]))
    rng = numpy.random.default_rng(12)
    emissions = (rng.normal(size=(layout.n_tokens, K)) * 2).astype("float32")
    constraints = scheme_constraints(tuple(tags), scheme)
    params = [
        torch.from_numpy(crf.get_param(name).astype("float64"))
        for name in ("transitions", "start", "end")
    ]
    masked = apply_constraints(*params, constraints)
    spans, expected = [], []
    for first, last in zip(layout.chain_offsets[:-1], layout.chain_offsets[1:]):
        chain = torch.from_numpy(emissions[first:last].astype("float64"))
        paths = list(all_paths(chain, *masked))
        log_z = numpy.logaddexp.reduce([score for _, score in paths])
        n = int(last - first)
        for s in range(n):
            for e in range(s + 1, n + 1):
                for label_index, label in enumerate(("PER", "LOC")):
                    holding = [
                        score for path, score in paths
                        if (s, e, label) in tags_to_spans([tags[i] for i in path], scheme)
                    ]
                    prob = numpy.exp(numpy.logaddexp.reduce(holding) - log_z) if holding else 0.0
                    spans.append((first + s, first + e, label_index))
                    expected.append(prob)
    spans.append((2, 4, 0))  # crosses from chain 0 into chain 1
    expected.append(0.0)
    starts, ends, labels = (numpy.array(col) for col in zip(*spans))
    got = span_probabilities(crf, emissions, layout, starts, ends, labels)
    numpy.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
    assert got.max() > 0.3
    with pytest.raises(ValueError, match="label indices"):
        span_probabilities(crf, emissions, layout, starts[:1], ends[:1], numpy.array([2]))
    with pytest.raises(ValueError, match="0 <= start < end"):
        span_probabilities(crf, emissions, layout, numpy.array([3]), ends[:1], labels[:1])
