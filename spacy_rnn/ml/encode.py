"""spacy_rnn.BiRNNEncoder.v1: stacked (bi)directional LSTM or GRU over packed
sequences.

All sequences of a batch go through one `torch.nn.LSTM`/`GRU` call as one
`PackedSequence`, so each sequence is read exactly over its own tokens: its
output never depends on the other sequences of the batch. (spaCy's
`spacy.TorchBiLSTMEncoder.v1` runs on the padded batch, so the backward
direction of a short doc starts on padding and its vectors change with its
batch companions.)
"""
from typing import Callable, List, Optional, Tuple

import numpy
import torch
from spacy.util import registry
from thinc.api import Model, torch2xp, xp2torch
from thinc.types import Floats2d
from torch.nn.utils.rnn import PackedSequence

from ._torch_util import default_device, flush_denormal, make_shim, run_shim

InT = List[Floats2d]
OutT = List[Floats2d]

CELLS = ("lstm", "gru")


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
                        param[H : 2 * H].fill_(1.0)
                    elif name.startswith("bias_hh"):
                        param[H : 2 * H].fill_(0.0)

    def build_from_state(self, state) -> None:
        if self.rnn is None:
            self.build(int(state["rnn.weight_ih_l0"].shape[1]))

    def forward(
        self,
        X: torch.Tensor,
        pack_idx: torch.Tensor,
        batch_sizes: torch.Tensor,
        unpack_idx: torch.Tensor,
    ) -> torch.Tensor:
        assert self.rnn is not None, "PackedRNN used before build()"
        if X.device.type == "cuda":
            self.rnn.flatten_parameters()
        # X: (n_tokens, nI), the tokens of all sequences, sequence after sequence
        data = X.index_select(0, pack_idx)  # (n_tokens, nI), time-major packed order
        out, _ = self.rnn(PackedSequence(data, batch_sizes))
        # out.data: (n_tokens, nO) packed order -> back to sequence after sequence
        return out.data.index_select(0, unpack_idx)


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
    pack_idx, unpack_idx, batch_sizes = packing_indices(lengths)
    X = ops.flatten(Xs)  # (n_tokens, nI)
    Xt = xp2torch(X, requires_grad=is_train, device=device)
    args = (
        Xt,
        torch.from_numpy(pack_idx).to(device),
        torch.from_numpy(batch_sizes),  # PackedSequence wants batch_sizes on CPU
        torch.from_numpy(unpack_idx).to(device),
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
