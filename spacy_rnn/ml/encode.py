"""spacy_rnn.BiRNNEncoder.v1: stacked (bi)directional LSTM or GRU, each
sequence read exactly over its own tokens.

Each sequence's output never depends on the other sequences of the batch:
the result is that of one `torch.nn.LSTM`/`GRU` call over a `PackedSequence`
of the batch. (spaCy's `spacy.TorchBiLSTMEncoder.v1` runs on the padded
batch, so the backward direction of a short doc starts on padding and its
vectors change with its batch companions.) On CUDA the layer makes that
packed call; on CPU, where torch's packed kernels are 2-3 times slower per
token than its dense ones, it runs each layer and direction over a few
right-padded dense buckets of sequences of similar lengths, the backward
direction reading each sequence reversed from its own last token
(`dense_plan`, `run_dense`): the same outputs.

spacy_rnn.BiRNNEncoder.v2 adds windows: a long sequence is read as
overlapping pieces of at most `window` tokens, batched with all other pieces,
so a long document is not one long sequential chain (see `window_indices`).
"""
from typing import Callable, List, NamedTuple, Optional, Tuple, Union

import numpy
import torch
from spacy.util import registry
from thinc.api import Model, torch2xp, xp2torch
from thinc.types import Floats2d
from torch.nn.utils.rnn import PackedSequence

from ._torch_util import default_device, flush_denormal, make_shim, run_shim
from .threads import run_pair

InT = List[Floats2d]
OutT = List[Floats2d]

CELLS = ("lstm", "gru")

# BiRNNEncoder.v2's defaults, chosen on CoNLL-2003 dev (benchmarks/speed.md)
DEFAULT_WINDOW = 64
DEFAULT_WINDOW_CONTEXT = 8
# a bucket of run_dense holds sequences longer than 1 / BUCKET_PADDING of its longest
BUCKET_PADDING = 2.0
BUCKET_SLOTS = 8192
# below this many tokens a batch runs its two directions in turn: handing one
# to the worker thread costs more than it saves
PARALLEL_MIN_TOKENS = 64


@registry.architectures("spacy_rnn.BiRNNEncoder.v1")
def BiRNNEncoder(
    width: int,
    depth: int = 2,
    cell: str = "lstm",
    bidirectional: bool = True,
    dropout: float = 0.0,
) -> Model[InT, OutT]:
    """Encode context with stacked recurrent layers over packed sequences.

    width (int): The output width. With `bidirectional`, each direction has
        width // 2 hidden units and the output columns are [forward | backward].
        Recommended values are between 64 and 512.
    depth (int): The number of stacked recurrent layers, usually 1 or 2.
    cell (str): "lstm" or "gru".
    bidirectional (bool): Whether to add a right-to-left direction.
    dropout (float): Dropout on the outputs of each layer except the last,
        during training only (torch's `dropout` argument).
    The input width (nI) is inferred at initialize.
    """
    if cell not in CELLS:
        raise ValueError(f"BiRNNEncoder: cell must be one of {CELLS}, got {cell!r}")
    if width < 1 or depth < 1:
        raise ValueError(f"BiRNNEncoder: width and depth must be >= 1, got {width} and {depth}")
    if bidirectional and width % 2:
        raise ValueError(
            f"BiRNNEncoder: width must be even when bidirectional "
            f"(each direction gets width // 2 units), got {width}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"BiRNNEncoder: dropout must be in [0, 1), got {dropout}")
    flush_denormal()
    module = PackedRNN(width, depth, cell, bidirectional, dropout)
    return Model(
        "birnn_encoder",
        forward,
        init=init,
        dims={"nI": None, "nO": width},
        attrs={
            "cell": cell,
            "bidirectional": bidirectional,
            "depth": depth,
            "dropout": dropout,
        },
        shims=[make_shim(module)],
    )


@registry.architectures("spacy_rnn.BiRNNEncoder.v2")
def BiRNNEncoder_v2(
    width: int,
    depth: int = 2,
    cell: str = "lstm",
    bidirectional: bool = True,
    dropout: float = 0.0,
    window: Optional[int] = DEFAULT_WINDOW,
    window_context: int = DEFAULT_WINDOW_CONTEXT,
) -> Model[InT, OutT]:
    """BiRNNEncoder.v1 that reads long sequences in overlapping windows.

    A sequence of more than `window` tokens is cut into pieces of at most
    `window` tokens: consecutive cores of window - 2 * window_context tokens,
    each read with up to `window_context` tokens of context on either side,
    whose outputs are discarded. All pieces of the batch go through one
    packed RNN call, so a document of thousands of tokens costs `window`
    sequential steps, not one step per token, and the output of a core token
    is its central output. A sequence of at most `window` tokens is read
    whole, as v1 does, with the same weights (a v1 model's weights load into
    v2).

    width, depth, cell, bidirectional, dropout: as BiRNNEncoder.v1.
    window (int or None): the most tokens the RNN reads in one chain; 0 or
        None reads every sequence whole (= v1).
    window_context (int): tokens of context read on each side of a window's
        core; must leave a core: window > 2 * window_context.
    """
    window = int(window or 0)
    if window < 0:
        raise ValueError(f"BiRNNEncoder.v2: window must be >= 0 (0 = whole sequence), got {window}")
    if window_context < 0:
        raise ValueError(f"BiRNNEncoder.v2: window_context must be >= 0, got {window_context}")
    if window and window <= 2 * window_context:
        raise ValueError(
            f"BiRNNEncoder.v2: window ({window}) must be larger than 2 * window_context "
            f"({2 * window_context}), so that each window keeps a core of outputs"
        )
    model = BiRNNEncoder(width, depth, cell, bidirectional, dropout)
    model.attrs["window"] = window
    model.attrs["window_context"] = int(window_context)
    return model


def window_indices(
    lengths: numpy.ndarray, window: int, context: int
) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Cut sequences into overlapping windows, without a Python loop.

    lengths: (n_seqs,) sequence lengths. A sequence of at most `window`
    tokens is one piece, itself. A longer one is cut into cores of
    S = window - 2 * context tokens ([0, S), [S, 2S), ...), each piece
    being its core with up to `context` tokens either side (clipped to the
    sequence).
    Returns piece_lengths (n_pieces,); gather (n_piece_tokens,): the flat
    token read at each position of the pieces, piece after piece; keep
    (n_tokens,): for each flat token, its position in the pieces within its
    own core.
    """
    lengths = numpy.asarray(lengths, dtype=numpy.int64)
    n_seqs = lengths.shape[0]
    seq_start = numpy.cumsum(lengths) - lengths
    n_tokens = int(lengths.sum())
    if not window or not n_seqs or int(lengths.max()) <= window:
        identity = numpy.arange(n_tokens, dtype=numpy.int64)
        return lengths, identity, identity
    stride = window - 2 * context
    # a short sequence is one piece whose "core" is all of it
    long = lengths > window
    n_pieces = numpy.where(long, -(-lengths // stride), 1)  # (n_seqs,)
    seq_of_piece = numpy.repeat(numpy.arange(n_seqs), n_pieces)  # (n_pieces_total,)
    piece_start = numpy.cumsum(n_pieces) - n_pieces
    k = numpy.arange(seq_of_piece.shape[0]) - piece_start[seq_of_piece]  # index within seq
    L = lengths[seq_of_piece]
    is_long = long[seq_of_piece]
    core_lo = numpy.where(is_long, k * stride, 0)
    core_hi = numpy.where(is_long, numpy.minimum((k + 1) * stride, L), L)
    lo = numpy.where(is_long, numpy.maximum(core_lo - context, 0), 0)
    hi = numpy.where(is_long, numpy.minimum(core_hi + context, L), L)
    piece_lengths = hi - lo
    # gather: flat position of each piece token
    piece_offset = numpy.cumsum(piece_lengths) - piece_lengths
    total = int(piece_lengths.sum())
    piece_of = numpy.repeat(numpy.arange(piece_lengths.shape[0]), piece_lengths)
    t = numpy.arange(total) - piece_offset[piece_of]  # position within the piece
    gather = seq_start[seq_of_piece][piece_of] + lo[piece_of] + t
    # keep: core tokens in flat order (pieces of a sequence are in order, and
    # their cores tile the sequence)
    core_pos = t + lo[piece_of]
    in_core = (core_pos >= core_lo[piece_of]) & (core_pos < core_hi[piece_of])
    keep = numpy.flatnonzero(in_core)
    assert keep.shape[0] == n_tokens
    return piece_lengths, gather, keep


class PackedRNN(torch.nn.Module):
    """A torch RNN over one packed batch. The RNN itself is built once the
    input width is known (`build`, called from the thinc init or from the
    saved state when deserializing)."""

    def __init__(self, width: int, depth: int, cell: str, bidirectional: bool, dropout: float):
        super().__init__()
        self.hidden = width // 2 if bidirectional else width
        self.depth = depth
        self.cell = cell
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.rnn: Optional[torch.nn.RNNBase] = None

    def build(self, nI: int) -> None:
        rnn_cls = torch.nn.LSTM if self.cell == "lstm" else torch.nn.GRU
        self.rnn = rnn_cls(
            nI,
            self.hidden,
            num_layers=self.depth,
            bidirectional=self.bidirectional,
            dropout=self.dropout if self.depth > 1 else 0.0,
        )
        if self.cell == "lstm":
            # Forget-gate bias 1 (Jozefowicz et al., 2015): remember by default.
            H = self.hidden
            with torch.no_grad():
                for name, param in self.rnn.named_parameters():
                    if name.startswith("bias_ih"):
                        param[H:2 * H].fill_(1.0)
                    elif name.startswith("bias_hh"):
                        param[H:2 * H].fill_(0.0)

    def build_from_state(self, state) -> None:
        if self.rnn is None:
            self.build(int(state["rnn.weight_ih_l0"].shape[1]))

    def forward(self, X: torch.Tensor, gather: Optional[torch.Tensor], keep: Optional[torch.Tensor],
                plan: Union["DensePlan", Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
                ) -> torch.Tensor:
        """X: (n_tokens, nI), the tokens of all sequences, sequence after
        sequence. With windows, gather (n_read,) is the token read at each
        position of the pieces (a token of an overlap is read twice, and its
        gradients add up) and keep (n_tokens,) the piece position of each
        token's output. `plan` is a DensePlan (LSTM on CPU) or the packing
        indices (pack_idx, batch_sizes, unpack_idx) of the pieces (CUDA, where
        cuDNN runs packed batches well, and GRU). Returns (n_tokens, nO)."""
        assert self.rnn is not None, "PackedRNN used before build()"
        if gather is not None:
            X = X.index_select(0, gather)  # (n_read, nI)
        if isinstance(plan, DensePlan):
            Y = run_dense(self.rnn, X, plan, self.rnn.dropout)
        else:
            pack_idx, batch_sizes, unpack_idx = plan
            self.rnn.flatten_parameters()
            data = X.index_select(0, pack_idx)  # (n_read, nI), time-major packed order
            out, _ = self.rnn(PackedSequence(data, batch_sizes))
            Y = out.data.index_select(0, unpack_idx)  # (n_read, nO), piece after piece
        if keep is not None:
            Y = Y.index_select(0, keep)
        return Y


class Bucket(NamedTuple):
    """Sequences of similar lengths, right-padded into one (T, B) batch."""

    forward: torch.Tensor  # (T * B,) token read at each slot, time-major; n_tokens = padding
    backward: torch.Tensor  # (T * B,) the same, each sequence reversed within its length
    valid: torch.Tensor  # (n_valid,) slots holding a token
    steps: int  # T
    size: int  # B


class DensePlan(NamedTuple):
    """How to run a batch of sequences as a few right-padded dense batches
    (see `dense_plan`)."""

    buckets: List[Bucket]
    forward_rows: torch.Tensor  # (n_tokens,) row of each token in the buckets' forward outputs
    backward_rows: torch.Tensor  # (n_tokens,) the same for the backward outputs
    n_tokens: int


def dense_plan(
    lengths: numpy.ndarray, device: "torch.device", max_padding: float = BUCKET_PADDING
) -> DensePlan:
    """Buckets of sequences (tokens given sequence after sequence) for
    `run_dense`: sorted by length, a new bucket begins where a sequence is
    shorter than 1 / max_padding of the bucket's longest, so at most about
    half of a bucket's slots are padding (usually far fewer).

    Each direction reads each sequence from its own first token (the
    backward direction reads the sequence reversed), so right padding never
    reaches a token's output: the result is that of a packed sequence."""
    lengths = numpy.asarray(lengths, dtype=numpy.int64)
    n_tokens = int(lengths.sum())
    seq_start = numpy.cumsum(lengths) - lengths
    order = numpy.argsort(-lengths, kind="stable")
    order = order[lengths[order] > 0]
    sorted_lengths = lengths[order]
    buckets: List[Bucket] = []
    forward_tokens: List[numpy.ndarray] = []
    backward_tokens: List[numpy.ndarray] = []
    i = 0
    while i < order.shape[0]:
        T = int(sorted_lengths[i])
        # first sequence shorter than T / max_padding (sorted_lengths is descending)
        j = int(numpy.searchsorted(-sorted_lengths, -T / max_padding, side="right"))
        # and at most BUCKET_SLOTS slots (steps x sequences), so that a bucket's
        # buffers stay in the CPU caches
        j = min(max(j, i + 1), i + max(1, BUCKET_SLOTS // T))
        lens = sorted_lengths[i:j]
        starts = seq_start[order[i:j]]
        t = numpy.arange(T)[:, None]  # (T, 1)
        valid = t < lens[None, :]  # (T, B)
        fwd = numpy.where(valid, starts[None, :] + t, n_tokens).reshape(-1)
        bwd = numpy.where(valid, starts[None, :] + lens[None, :] - 1 - t, n_tokens).reshape(-1)
        slots = numpy.flatnonzero(valid.reshape(-1))
        forward_tokens.append(fwd[slots])
        backward_tokens.append(bwd[slots])
        buckets.append(
            Bucket(
                torch.from_numpy(fwd).to(device),
                torch.from_numpy(bwd).to(device),
                torch.from_numpy(slots).to(device),
                T,
                j - i,
            )
        )
        i = j

    def rows_of(tokens: List[numpy.ndarray]) -> torch.Tensor:
        rows = numpy.empty(n_tokens, dtype=numpy.int64)
        if tokens:
            rows[numpy.concatenate(tokens)] = numpy.arange(n_tokens)
        return torch.from_numpy(rows).to(device)

    return DensePlan(buckets, rows_of(forward_tokens), rows_of(backward_tokens), n_tokens)


def run_dense(
    rnn: torch.nn.RNNBase, X: torch.Tensor, plan: DensePlan, dropout: float = 0.0
) -> torch.Tensor:
    """The outputs of `rnn` (a torch LSTM or GRU, time-major) over the
    sequences of X (n_tokens, nI), as for a PackedSequence: (n_tokens, nO),
    [forward | backward] when bidirectional. Each layer and direction runs
    as one dense call per bucket (torch's CPU kernels run dense batches
    several times faster than packed ones), with the direction's own
    weights; `dropout` is applied between layers (in training, as torch)."""
    n_dirs = 2 if rnn.bidirectional else 1
    H = rnn.hidden_size
    is_lstm = isinstance(rnn, torch.nn.LSTM)
    vf = torch._VF.lstm if is_lstm else torch._VF.gru
    layer_input = X
    for layer in range(rnn.num_layers):
        if layer and dropout and rnn.training:
            layer_input = torch.nn.functional.dropout(layer_input, dropout, training=True)
        padded = torch.cat([layer_input, layer_input.new_zeros((1, layer_input.shape[1]))])

        def direction_output(direction: int, layer: int = layer,
                             padded: torch.Tensor = padded) -> torch.Tensor:
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            weights = [
                getattr(rnn, f"{name}{suffix}")
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
            pieces = []
            for bucket in plan.buckets:
                index = bucket.backward if direction else bucket.forward
                x = padded.index_select(0, index).view(bucket.steps, bucket.size, -1)
                h0 = x.new_zeros((1, bucket.size, H))
                hx = (h0, h0) if is_lstm else h0
                y = vf(x, hx, weights, True, 1, 0.0, rnn.training, False, False)[0]
                pieces.append(y.reshape(-1, H).index_select(0, bucket.valid))
            rows = plan.backward_rows if direction else plan.forward_rows
            return torch.cat(pieces).index_select(0, rows)

        if n_dirs == 1:
            layer_input = direction_output(0)
            continue
        # the two directions are independent: side by side where the thread
        # policy allows (threads.run_pair), one after the other for tiny batches
        outputs = run_pair(lambda: direction_output(0), lambda: direction_output(1),
                           threaded=plan.n_tokens >= PARALLEL_MIN_TOKENS)
        layer_input = torch.cat(outputs, dim=1)
    return layer_input


def packing_indices(lengths: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Index arrays that turn a flat batch (sequences one after another) into
    the time-major order of a `PackedSequence` and back, without any Python
    loop over sequences or tokens.

    lengths: (n_seqs,) sequence lengths, zeros allowed.
    Returns pack_idx (n_tokens,): flat position of each packed row;
    unpack_idx (n_tokens,): packed row of each flat position;
    batch_sizes (max_len,): number of sequences still running at each step.
    """
    lengths = numpy.asarray(lengths, dtype=numpy.int64)
    n_seqs = lengths.shape[0]
    n_tokens = int(lengths.sum())
    max_len = int(lengths.max())
    # Longest first (as a PackedSequence needs); zero-length sequences last, never read.
    order = numpy.argsort(-lengths, kind="stable")
    rank = numpy.empty_like(order)
    rank[order] = numpy.arange(n_seqs)
    counts = numpy.bincount(lengths, minlength=max_len + 1)
    # batch_sizes[t] = number of sequences with length > t
    batch_sizes = (n_seqs - numpy.cumsum(counts))[:max_len]
    step_start = numpy.zeros(max_len, dtype=numpy.int64)
    numpy.cumsum(batch_sizes[:-1], out=step_start[1:])
    seq_of_token = numpy.repeat(numpy.arange(n_seqs), lengths)
    seq_start = numpy.cumsum(lengths) - lengths
    t_of_token = numpy.arange(n_tokens) - numpy.repeat(seq_start, lengths)
    unpack_idx = step_start[t_of_token] + rank[seq_of_token]
    pack_idx = numpy.empty_like(unpack_idx)
    pack_idx[unpack_idx] = numpy.arange(n_tokens)
    return pack_idx, unpack_idx, batch_sizes.astype(numpy.int64)


def forward(model: Model[InT, OutT], Xs: InT, is_train: bool) -> Tuple[OutT, Callable]:
    ops = model.ops
    nO = model.get_dim("nO")
    lengths = numpy.array([X.shape[0] for X in Xs], dtype=numpy.int64)
    if not lengths.size or not lengths.sum():
        shapes = [X.shape for X in Xs]
        return [ops.alloc2f(n, nO) for n in lengths], lambda dYs: [
            ops.alloc2f(*shape) for shape in shapes
        ]
    shim = model.shims[0]
    device = shim.device
    window = model.attrs.get("window", 0)
    piece_lengths, gather, keep = window_indices(
        lengths, window, model.attrs.get("window_context", 0)
    )
    plan: Union[DensePlan, Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    if device.type == "cpu" and model.attrs["cell"] == "lstm":
        # dense buckets: 1.5-2x faster than packed for torch's CPU LSTM, but
        # 1.5x slower for its GRU (measured in benchmarks/speed.md)
        plan = dense_plan(piece_lengths, device)
    else:
        pack_idx, unpack_idx, batch_sizes = packing_indices(piece_lengths)
        # PackedSequence wants batch_sizes on CPU
        plan = (torch.from_numpy(pack_idx).to(device), torch.from_numpy(batch_sizes),
                torch.from_numpy(unpack_idx).to(device))
    windowed = bool(window) and int(lengths.max()) > window
    X = ops.flatten(Xs)  # (n_tokens, nI)
    Xt = xp2torch(X, requires_grad=is_train, device=device)
    args = (
        Xt,
        torch.from_numpy(gather).to(device) if windowed else None,
        torch.from_numpy(keep).to(device) if windowed else None,
        plan,
    )
    Yt, torch_backprop = run_shim(shim, args, is_train)
    Y = torch2xp(Yt, ops=ops)  # (n_tokens, nO), shares memory with Yt
    Ys = ops.unflatten(Y, lengths)

    def backprop(dYs: OutT) -> InT:
        dYt = xp2torch(ops.flatten(dYs), device=device)
        dXt = torch_backprop(dYt).args[0]
        return ops.unflatten(torch2xp(dXt, ops=ops), lengths)

    return Ys, backprop


def init(model: Model[InT, OutT], X: Optional[InT] = None, Y: Optional[OutT] = None) -> Model:
    if X is not None and len(X):
        model.set_dim("nI", int(X[0].shape[1]))
    if not model.has_dim("nI") or model.get_dim("nI") is None:
        raise ValueError(
            "BiRNNEncoder: cannot infer the input width (nI): initialize the model "
            "with a sample of inputs, e.g. model.initialize(X=[...])"
        )
    module = model.shims[0]._model
    module.build(model.get_dim("nI"))
    module.to(default_device())
    return model
