"""BiRNNEncoder: padding invariance, direction layout, gradients, edge cases,
serialization, determinism, dropout only in training; BiRNNEncoder.v2's
windows: the same output as v1 when a sequence fits one window, each core the
v1 output of its own piece, batch invariance, gradients through the cuts,
linear time on long documents."""
import time
import pickle
import subprocess
import sys

import numpy
import pytest
import torch
from numpy.testing import assert_allclose
from spacy.util import registry
from thinc.api import Adam, fix_random_seed

from spacy_rnn.ml.encode import (
    BiRNNEncoder,
    BiRNNEncoder_v2,
    packing_indices,
    window_indices,
)

NI = 5


def make_inputs(lengths, nI=NI, seed=0):
    rng = numpy.random.default_rng(seed)
    return [rng.normal(size=(n, nI)).astype("float32") for n in lengths]


def make_encoder(width=6, depth=1, cell="lstm", bidirectional=True, dropout=0.0, nI=NI):
    fix_random_seed(0)
    model = BiRNNEncoder(width, depth, cell, bidirectional, dropout)
    model.initialize(X=make_inputs([2], nI=nI))
    return model


def assert_numerical_gradients(model, Xs, seed, eps=1e-2, tolerance=2e-3):
    """Central differences of a random linear loss (weights drawn with `seed`)
    match the encoder's backprop: against each input value of `Xs`, and
    against the first and last entry of each torch parameter (the gradient
    accumulated in the torch module for finish_update)."""
    rng = numpy.random.default_rng(seed)
    width = model.get_dim("nO")
    G = [rng.normal(size=(x.shape[0], width)).astype("float32") for x in Xs]

    def loss(inputs):
        return float(sum((y.astype("float64") * g).sum() for y, g in zip(model.predict(inputs), G)))

    _, backprop = model.begin_update(Xs)
    dXs = backprop([g.copy() for g in G])
    for i, X in enumerate(Xs):
        for j in range(X.shape[0]):
            for k in range(X.shape[1]):
                plus = [x.copy() for x in Xs]
                plus[i][j, k] += eps
                minus = [x.copy() for x in Xs]
                minus[i][j, k] -= eps
                numeric = (loss(plus) - loss(minus)) / (2 * eps)
                assert abs(numeric - dXs[i][j, k]) < tolerance, (i, j, k, numeric, dXs[i][j, k])
    rnn = model.shims[0]._model.rnn
    for name, param in rnn.named_parameters():
        grad = param.grad.clone()
        for index in [(0,) * param.dim(), tuple(s - 1 for s in param.shape)]:
            with torch.no_grad():
                param[index] += eps
                plus = loss(Xs)
                param[index] -= 2 * eps
                minus = loss(Xs)
                param[index] += eps
            assert abs((plus - minus) / (2 * eps) - float(grad[index])) < tolerance, (name, index)


CONFIGS = [
    (cell, bidirectional, depth)
    for cell in ("lstm", "gru")
    for bidirectional in (True, False)
    for depth in (1, 2)
]


@pytest.mark.parametrize("cell,bidirectional,depth", CONFIGS)
def test_encode_padding_invariance(cell, bidirectional, depth):
    model = make_encoder(8, depth, cell, bidirectional)
    docs = make_inputs([4, 11, 1, 0, 7, 23, 2], seed=1)
    batched = model.predict(docs)
    for doc, in_batch in zip(docs, batched):
        alone = model.predict([doc])[0]
        assert alone.shape == (doc.shape[0], 8)
        assert_allclose(in_batch, alone, atol=1e-5, rtol=0)
    # the same doc batched with a longer and a shorter one, in another order
    reordered = model.predict([docs[5], docs[0], docs[2]])
    assert_allclose(reordered[1], batched[0], atol=1e-5, rtol=0)


def test_encode_spacy_torch_bilstm_is_not_padding_invariant():
    """The defect this encoder exists to fix: the same check on spaCy's
    TorchBiLSTMEncoder fails, so the check above can fail."""
    fix_random_seed(0)
    spacy_lstm = registry.resolve(
        {"m": {"@architectures": "spacy.TorchBiLSTMEncoder.v1", "width": NI * 2, "depth": 1,
               "dropout": 0.0}}
    )["m"]
    docs = make_inputs([3, 20], nI=NI * 2)
    spacy_lstm.initialize(X=docs)
    alone = spacy_lstm.predict([docs[0]])[0]
    batched = spacy_lstm.predict(docs)[0]
    assert numpy.abs(alone - batched).max() > 1e-3


def test_encode_direction_layout():
    """Columns [forward | backward]: the forward half at t reads tokens <= t,
    the backward half reads tokens >= t (one layer: a second layer's forward
    direction reads the first layer's backward states)."""
    model = make_encoder(8, 1, "lstm", True)
    (X,) = make_inputs([6])
    Y = model.predict([X])[0]
    X_last = X.copy()
    X_last[-1] += 1.0
    Y_last = model.predict([X_last])[0]
    assert_allclose(Y_last[:-1, :4], Y[:-1, :4], atol=1e-6)  # forward: unaffected before t=5
    assert numpy.abs(Y_last[:, 4:] - Y[:, 4:]).max() > 1e-3
    X_first = X.copy()
    X_first[0] += 1.0
    Y_first = model.predict([X_first])[0]
    assert_allclose(Y_first[1:, 4:], Y[1:, 4:], atol=1e-6)  # backward: unaffected after t=0
    assert numpy.abs(Y_first[:, :4] - Y[:, :4]).max() > 1e-3


def test_encode_packing_indices_brute_force():
    rng = numpy.random.default_rng(3)
    for _ in range(50):
        lengths = rng.integers(0, 7, size=rng.integers(1, 8))
        if not lengths.sum():
            continue
        pack_idx, unpack_idx, batch_sizes = packing_indices(lengths)
        starts = numpy.cumsum(lengths) - lengths
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        expected = [starts[i] + t for t in range(lengths.max()) for i in order if lengths[i] > t]
        assert pack_idx.tolist() == expected
        assert batch_sizes.tolist() == [int((lengths > t).sum()) for t in range(lengths.max())]
        assert unpack_idx[pack_idx].tolist() == list(range(int(lengths.sum())))


@pytest.mark.parametrize(
    "cell,bidirectional,depth", [("lstm", True, 2), ("gru", True, 1), ("lstm", False, 1)]
)
def test_encode_numerical_gradient(cell, bidirectional, depth):
    model = make_encoder(4, depth, cell, bidirectional, nI=3)
    assert_numerical_gradients(model, make_inputs([3, 1, 4], nI=3, seed=2), seed=5)


def test_encode_edge_cases():
    model = make_encoder(6, 2)
    # empty docs, alone and among others
    assert [y.shape for y in model.predict([numpy.zeros((0, NI), dtype="f")])] == [(0, 6)]
    assert model.predict([]) == []
    Ys, backprop = model.begin_update(make_inputs([0, 3, 0]))
    assert [y.shape for y in Ys] == [(0, 6), (3, 6), (0, 6)]
    dXs = backprop([numpy.ones_like(y) for y in Ys])
    assert [d.shape for d in dXs] == [(0, NI), (3, NI), (0, NI)]
    Ys, backprop = model.begin_update(make_inputs([0, 0]))
    assert [d.shape for d in backprop(Ys)] == [(0, NI), (0, NI)]
    # one-token docs
    ones = make_inputs([1, 1, 1])
    assert [y.shape for y in model.predict(ones)] == [(1, 6)] * 3
    # a 5,000-token doc, alone and next to a short one
    long_doc, short = make_inputs([5000, 3])
    Y_long = model.predict([long_doc])[0]
    assert Y_long.shape == (5000, 6) and numpy.isfinite(Y_long).all()
    assert_allclose(model.predict([short, long_doc])[1], Y_long, atol=1e-5)
    Ys, backprop = model.begin_update([long_doc])
    assert numpy.isfinite(backprop([numpy.ones_like(Ys[0])])[0]).all()


def test_encode_infers_nI_and_sets_attrs():
    model = BiRNNEncoder(10, 2, "gru", False, 0.1)
    assert model.get_dim("nO") == 10 and not model.has_dim("nI")
    model.initialize(X=make_inputs([2], nI=7))
    assert model.get_dim("nI") == 7
    assert model.attrs["bidirectional"] is False and model.attrs["cell"] == "gru"
    assert model.predict(make_inputs([3], nI=7))[0].shape == (3, 10)
    with pytest.raises(ValueError, match="nI"):
        BiRNNEncoder(4).initialize()


@pytest.mark.parametrize("kwargs,message", [
    ({"width": 6, "cell": "rnn"}, "cell"),
    ({"width": 7}, "even"),
    ({"width": 6, "depth": 0}, "depth"),
    ({"width": 6, "dropout": 1.0}, "dropout"),
])
def test_encode_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BiRNNEncoder(**kwargs)


def test_encode_from_registry():
    model = registry.resolve({"m": {"@architectures": "spacy_rnn.BiRNNEncoder.v1", "width": 6,
                                    "depth": 2, "cell": "gru", "bidirectional": True,
                                    "dropout": 0.2}})["m"]
    model.initialize(X=make_inputs([2]))
    assert model.predict(make_inputs([4]))[0].shape == (4, 6)


def test_encode_serialization_round_trip():
    model = make_encoder(6, 2, "lstm", True)
    Xs = make_inputs([5, 2, 0])
    _, backprop = model.begin_update(Xs)
    backprop([numpy.ones((x.shape[0], 6), dtype="f") for x in Xs])
    model.finish_update(Adam(0.01))
    expected = model.predict(Xs)
    # into a fresh, uninitialized model: the torch RNN is built from the saved state
    loaded = BiRNNEncoder(6, 2, "lstm", True).from_bytes(model.to_bytes())
    assert loaded.get_dim("nI") == NI
    for a, b in zip(expected, loaded.predict(Xs)):
        assert_allclose(a, b, atol=0, rtol=0)
    assert loaded.to_bytes() == model.to_bytes()
    unpickled = pickle.loads(pickle.dumps(model))
    for a, b in zip(expected, unpickled.predict(Xs)):
        assert_allclose(a, b, atol=0, rtol=0)


def _train_run():
    model = make_encoder(6, 2, "lstm", True, dropout=0.3)
    optimizer = Adam(0.01)
    Xs = make_inputs([5, 3, 8])
    for _ in range(3):
        Ys, backprop = model.begin_update(Xs)
        backprop([y - 0.5 for y in Ys])
        model.finish_update(optimizer)
    return model.predict(Xs)


def test_encode_seeded_training_is_deterministic():
    first = _train_run()
    second = _train_run()
    for a, b in zip(first, second):
        assert_allclose(a, b, atol=0, rtol=0)


def test_encode_update_changes_torch_weights():
    model = make_encoder(6, 1)
    before = [p.detach().clone() for p in model.shims[0]._model.parameters()]
    Xs = make_inputs([4])
    Ys, backprop = model.begin_update(Xs)
    backprop([numpy.ones_like(y) for y in Ys])
    model.finish_update(Adam(0.01))
    after = list(model.shims[0]._model.parameters())
    assert all(float((a.detach() - b).abs().max()) > 0 for a, b in zip(after, before))
    assert all(float(p.grad.abs().max()) == 0 for p in after)  # grads consumed


def test_encode_dropout_only_in_training():
    model = make_encoder(16, 3, "lstm", True, dropout=0.5)
    Xs = make_inputs([6, 4])
    predicted = model.predict(Xs)
    for a, b in zip(predicted, model.predict(Xs)):
        assert_allclose(a, b, atol=0, rtol=0)
    trained, _ = model.begin_update(Xs)
    assert max(numpy.abs(a - b).max() for a, b in zip(predicted, trained)) > 1e-3
    # and predict is unaffected by a training pass
    for a, b in zip(predicted, model.predict(Xs)):
        assert_allclose(a, b, atol=0, rtol=0)


def test_encode_time_series_example(repo_root):
    """The Keras LSTM forecasting example, on a synthetic series: the encoder
    must beat the naive last-value forecast by a wide margin."""
    result = subprocess.run(
        [sys.executable, str(repo_root / "examples" / "time_series_forecast.py"), "--synthetic",
         "--epochs", "25", "--json"],
        capture_output=True, text=True, timeout=240, cwd=repo_root,
    )
    assert result.returncode == 0, result.stderr
    import json

    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert scores["test_rmse"] < 0.5 * scores["naive_rmse"], scores


def test_encode_uses_the_optimizer_parameter_averages():
    """With `use_averages`, `model.use_params(optimizer.averages)` (what spaCy
    does to evaluate and to save model-best) runs the torch RNN with the
    averaged weights, and the last weights come back afterwards. thinc's own
    PyTorchShim looks the averages up under other keys and ignores them."""
    model = make_encoder(8)
    X = make_inputs([5, 3, 4])
    optimizer = Adam(0.05, use_averages=True)
    for _ in range(10):
        Y, backprop = model.begin_update(X)
        backprop([y - 1.0 for y in Y])
        model.finish_update(optimizer)
    last = model.predict(X)
    shim = model.shims[0]
    reference = make_encoder(8)
    ref_module = reference.shims[0]._model
    for name, param in ref_module.named_parameters():
        param.data.copy_(torch.from_numpy(optimizer.averages[(shim.id, name)]))
    expected = reference.predict(X)
    with model.use_params(optimizer.averages):
        averaged = model.predict(X)
    for y, e, y_last in zip(averaged, expected, last):
        assert_allclose(y, e, rtol=1e-5, atol=1e-6)
        assert not numpy.allclose(y, y_last, atol=1e-4)
    for y, y_last in zip(model.predict(X), last):
        assert_allclose(y, y_last, rtol=0, atol=0)


def make_windowed(window, context, width=6, depth=1, cell="lstm", bidirectional=True, nI=NI):
    """A v2 encoder and a v1 encoder with the same weights."""
    fix_random_seed(0)
    model = BiRNNEncoder_v2(width, depth, cell, bidirectional, 0.0, window, context)
    model.initialize(X=make_inputs([2], nI=nI))
    whole = BiRNNEncoder(width, depth, cell, bidirectional, 0.0)
    whole.initialize(X=make_inputs([2], nI=nI))
    whole.shims[0]._model.load_state_dict(model.shims[0]._model.state_dict())
    return model, whole


def test_window_indices_brute_force():
    lengths = numpy.array([3, 0, 10, 11, 1, 24, 9])
    window, context = 9, 2
    stride = window - 2 * context
    pieces, gather, keep = window_indices(lengths, window, context)
    expected_pieces, expected_gather, expected_keep = [], [], []
    start = 0
    for n in lengths:
        if n <= window:
            cuts = [(0, n, 0, n)]
        else:
            cuts = [
                (max(lo - context, 0), min(lo + stride + context, n), lo, min(lo + stride, n))
                for lo in range(0, n, stride)
            ]
        for lo, hi, core_lo, core_hi in cuts:
            offset = len(expected_gather)
            expected_pieces.append(hi - lo)
            expected_gather.extend(range(start + lo, start + hi))
            expected_keep.extend(offset + t - lo for t in range(core_lo, core_hi))
        start += n
    assert pieces.tolist() == expected_pieces
    assert gather.tolist() == expected_gather
    assert keep.tolist() == expected_keep
    assert max(pieces) <= window
    # without a window (or when everything fits), the identity
    for w in (0, 24):
        pieces, gather, keep = window_indices(lengths, w, 2)
        assert pieces.tolist() == lengths.tolist()
        assert gather.tolist() == keep.tolist() == list(range(lengths.sum()))


@pytest.mark.parametrize("cell,bidirectional,depth", CONFIGS)
def test_window_equals_whole_when_it_fits(cell, bidirectional, depth):
    model, whole = make_windowed(12, 3, 8, depth, cell, bidirectional)
    docs = make_inputs([12, 1, 0, 7, 11], seed=3)
    for a, b in zip(model.predict(docs), whole.predict(docs)):
        assert_allclose(a, b, atol=1e-6, rtol=0)
    # and the same gradients
    Ya, back_a = model.begin_update(docs)
    Yb, back_b = whole.begin_update(docs)
    for a, b in zip(back_a([y + 1 for y in Ya]), back_b([y + 1 for y in Yb])):
        assert_allclose(a, b, atol=1e-6, rtol=0)
    # a longer sequence is cut, so the check above can fail
    long_doc = make_inputs([30], seed=4)
    assert numpy.abs(model.predict(long_doc)[0] - whole.predict(long_doc)[0]).max() > 1e-3


@pytest.mark.parametrize("cell,bidirectional,depth", [("lstm", True, 2), ("gru", False, 1)])
def test_window_cores_are_whole_encodings_of_their_pieces(cell, bidirectional, depth):
    """Each core token's vector is the v1 output of its own piece (the core
    and its context) at that token."""
    window, context = 10, 2
    stride = window - 2 * context
    model, whole = make_windowed(window, context, 8, depth, cell, bidirectional)
    (X,) = make_inputs([37], seed=5)
    Y = model.predict([X])[0]
    for lo in range(0, 37, stride):
        a, b = max(lo - context, 0), min(lo + stride + context, 37)
        core = slice(lo - a, min(lo + stride, 37) - a)
        expected = whole.predict([X[a:b]])[0][core]
        assert_allclose(Y[lo:lo + stride], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell,bidirectional,depth", CONFIGS)
def test_window_batched_equals_alone(cell, bidirectional, depth):
    model, _ = make_windowed(9, 2, 8, depth, cell, bidirectional)
    docs = make_inputs([4, 40, 0, 9, 10, 23, 1], seed=6)
    batched = model.predict(docs)
    for doc, in_batch in zip(docs, batched):
        assert_allclose(model.predict([doc])[0], in_batch, atol=1e-5, rtol=0)
    reordered = model.predict([docs[5], docs[1]])
    assert_allclose(reordered[1], batched[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell,depth", [("lstm", 2), ("gru", 1)])
def test_window_numerical_gradient(cell, depth):
    """Gradients of inputs read by two pieces (the overlaps) add up, and
    discarded context outputs get none."""
    model, _ = make_windowed(6, 1, 4, depth, cell, True, nI=3)
    Xs = make_inputs([13, 2, 7], nI=3, seed=7)
    assert window_indices(numpy.array([13, 2, 7]), 6, 1)[0].tolist() == [5, 6, 6, 2, 2, 5, 4]
    assert_numerical_gradients(model, Xs, seed=8)


def test_window_settings_registry_and_serialization():
    model = registry.resolve({"m": {"@architectures": "spacy_rnn.BiRNNEncoder.v2", "width": 6,
                                    "depth": 1, "window": 8, "window_context": 2}})["m"]
    model.initialize(X=make_inputs([2]))
    Xs = make_inputs([30, 5], seed=9)
    expected = model.predict(Xs)
    loaded = BiRNNEncoder_v2(6, 1, window=8, window_context=2).from_bytes(model.to_bytes())
    for a, b in zip(expected, loaded.predict(Xs)):
        assert_allclose(a, b, atol=0, rtol=0)
    for window in (0, None):
        assert BiRNNEncoder_v2(6, window=window).attrs["window"] == 0
    for kwargs, message in [({"window": -1}, "window"), ({"window_context": -1}, "window_context"),
                            ({"window": 8, "window_context": 4}, "2 \\* window_context")]:
        with pytest.raises(ValueError, match=message):
            BiRNNEncoder_v2(6, **kwargs)


def _seconds_per_token(model, n_tokens, repeats=5):
    (X,) = make_inputs([n_tokens], nI=32, seed=10)
    model.predict([X])  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict([X])
        best = min(best, time.perf_counter() - start)
    return best / n_tokens


def test_window_long_document_in_linear_time():
    """A 20,000-token doc costs at most twice as much per token as a
    2,000-token one (with the default window)."""
    fix_random_seed(0)
    model = BiRNNEncoder_v2(128, 1)
    model.initialize(X=make_inputs([2], nI=32))
    short = _seconds_per_token(model, 2_000)
    long = _seconds_per_token(model, 20_000)
    assert long < 2 * short, (short, long)


@pytest.mark.parametrize("cell,bidirectional,depth", CONFIGS)
def test_encode_dense_buckets_equal_torch_packed(cell, bidirectional, depth):
    """On CPU the layer runs right-padded dense buckets (each direction
    reading each sequence from its own first token); the outputs and input
    gradients are those of torch's own packed RNN over the same sequences."""
    from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

    model = make_encoder(8, depth, cell, bidirectional)
    lengths = [4, 40, 1, 0, 7, 19, 2, 3, 12]
    Xs = make_inputs(lengths, seed=11)
    Ys, backprop = model.begin_update(Xs)
    G = make_inputs(lengths, nI=8, seed=12)
    dXs = backprop([g.copy() for g in G])
    rnn = model.shims[0]._model.rnn
    rnn.train()
    nonempty = [i for i, n in enumerate(lengths) if n]
    inputs = [torch.from_numpy(Xs[i]).requires_grad_() for i in nonempty]
    out, _ = rnn(pack_sequence(inputs, enforce_sorted=False))
    padded, _ = pad_packed_sequence(out, batch_first=True)
    expected = [padded[k, : lengths[i]] for k, i in enumerate(nonempty)]
    loss = sum((y * torch.from_numpy(G[i])).sum() for y, i in zip(expected, nonempty))
    loss.backward()
    for k, i in enumerate(nonempty):
        assert_allclose(Ys[i], expected[k].detach().numpy(), atol=1e-5, rtol=0)
        assert_allclose(dXs[i], inputs[k].grad.numpy(), atol=1e-5, rtol=0)
    # many buckets: lengths spread over two orders of magnitude
    from spacy_rnn.ml.encode import dense_plan

    plan = dense_plan(numpy.array(lengths), torch.device("cpu"))
    assert [b.steps for b in plan.buckets] == [40, 19, 7, 3, 1]
    assert sum(int(b.valid.shape[0]) for b in plan.buckets) == sum(lengths)


@pytest.mark.parametrize("depth", [1, 2])
def test_encode_directions_in_two_threads_give_identical_results(monkeypatch, depth):
    """With the two directions run side by side (threads.run_pair), outputs,
    input gradients and the torch parameters' gradients are bit for bit those
    of running them one after the other."""
    from helpers import count_direction_pairs
    from spacy_rnn.ml import threads

    calls = count_direction_pairs(monkeypatch)
    lengths = [4, 40, 1, 0, 7, 19, 2, 3, 12, 30]
    Xs = make_inputs(lengths, seed=3)
    G = make_inputs(lengths, nI=8, seed=4)
    results = {}
    try:
        for parallel in (False, True):
            threads.set_parallel_directions(parallel)
            assert threads.parallel_directions() is parallel
            model = make_encoder(8, depth)
            Ys, backprop = model.begin_update(Xs)
            dXs = backprop([g.copy() for g in G])
            grads = [p.grad.clone() for p in model.shims[0]._model.parameters()]
            results[parallel] = (Ys, dXs, grads, model.predict(Xs))
    finally:
        threads.set_parallel_directions(None)
    # forward and predict, each layer once, per setting
    assert calls == [False] * (2 * depth) + [True] * (2 * depth)
    (Y0, dX0, g0, P0), (Y1, dX1, g1, P1) = results[False], results[True]
    for a, b in zip(Y0 + dX0 + P0, Y1 + dX1 + P1):
        assert numpy.array_equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))
