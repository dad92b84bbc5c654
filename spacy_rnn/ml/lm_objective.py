"""A language-model objective beside the tagging loss (Rei, 2017: "Semi-supervised
multitask learning for sequence labeling").

While training, the forward half of a bidirectional encoder's output at token
t predicts the word at t + 1 and the backward half predicts the word at t - 1,
each through a softmax over the first words seen in training (frequent words
come early; all other words share one UNK class). Neither half has read the
word it predicts, so the objective teaches the encoder about context from the
training text itself, without labels and without pretrained vectors. The objective's gradient is
added to the encoder's in backprop; at prediction time the layer passes the
encoder's output through untouched, so decoding costs nothing more.
"""
from typing import Callable, List, Optional, Tuple, Union

import numpy
import torch
from spacy.attrs import intify_attr
from spacy.tokens import Doc
from thinc.api import Model, torch2xp, xp2torch, zero_init
from thinc.types import Floats2d

from .threads import torch_threads
from .words import WordIndex, _column, lookup_rows

InT = List[Doc]
OutT = List[Floats2d]


def with_lm_objective(
    tok2vec: Model[InT, OutT], n_words: int, weight: float, attr: Union[str, int] = "NORM"
) -> Model[InT, OutT]:
    """Wrap tok2vec so that training also minimises `weight` times the summed
    next/previous word cross-entropy of its output.

    tok2vec: must end in a one-layer bidirectional spacy_rnn.BiRNNEncoder.v1
        (as spacy.Tok2Vec.v2 with one does), whose output columns are
        [forward | backward]: over two layers each half has read both ways.
    n_words (int): the size of the predicted vocabulary: the first n_words
        words (by `attr`) seen in training, as the word table grows its own
        (ml/words.py); others are one UNK class.
    weight (float): the objective's weight against the tagging loss, which
        crf_ner sums over sequences (Rei, 2017, uses 0.1).
    """
    if n_words < 1:
        raise ValueError(f"lm_objective: lm_words must be >= 1, got {n_words}")
    if weight <= 0:
        raise ValueError(f"lm_objective: lm_weight must be > 0, got {weight}")
    return Model(
        "lm_objective",
        _forward,
        init=_init,
        layers=[tok2vec],
        params={"W": None, "b": None},
        dims={"nO": None, "nV": n_words + 1},
        attrs={
            "weight": float(weight),
            "attr": intify_attr(attr),
            "index": WordIndex(),
            "loss": 0.0,
        },
    )


def _bidirectional_encoder(tok2vec: Model) -> Model:
    encode = tok2vec.get_ref("encode") if tok2vec.has_ref("encode") else None
    if (
        encode is None
        or encode.name != "birnn_encoder"
        or not encode.attrs.get("bidirectional")
        or encode.attrs.get("depth") != 1
    ):
        # With two layers, the second layer's forward direction at t reads the
        # first layer's backward state at t, which has read the word at t + 1:
        # the objective would see its own targets.
        raise ValueError(
            "The language-model objective (spacy_rnn.CRFTagger.v3, RNNTextCat.v2) "
            "needs a tok2vec that ends in a one-layer bidirectional "
            "spacy_rnn.BiRNNEncoder.v1 (spacy.Tok2Vec.v2 with encode = "
            "BiRNNEncoder.v1, bidirectional = true, depth = 1), got "
            f"{tok2vec.name!r}; use CRFTagger.v1 / RNNTextCat.v1 for other encoders "
            "or a listener"
        )
    return encode


def _init(model: Model[InT, OutT], X: Optional[InT] = None, Y=None) -> Model[InT, OutT]:
    tok2vec = model.layers[0]
    _bidirectional_encoder(tok2vec)
    tok2vec.initialize(X=X)
    nO = tok2vec.get_dim("nO")
    model.set_dim("nO", nO)
    nH = nO // 2
    nV = model.get_dim("nV")
    # One output layer per direction; zero-initialised, as the emission layer.
    model.set_param("W", zero_init(model.ops, (2, nV, nH)))
    model.set_param("b", model.ops.alloc2f(2, nV))
    model.attrs["index"] = WordIndex()
    return model


def lm_targets(lengths: numpy.ndarray, rows: numpy.ndarray) -> Tuple[numpy.ndarray, ...]:
    """Source positions and target word rows of the two directions, in the
    flat token order: forward (t -> t + 1) and backward (t -> t - 1), never
    across two docs."""
    n = int(lengths.sum())
    starts = numpy.cumsum(lengths) - lengths
    first = numpy.zeros(n, dtype=bool)
    last = numpy.zeros(n, dtype=bool)
    nonempty = lengths > 0
    first[starts[nonempty]] = True
    last[(starts + lengths - 1)[nonempty]] = True
    src_f = numpy.flatnonzero(~last)
    src_b = numpy.flatnonzero(~first)
    return src_f, rows[src_f + 1], src_b, rows[src_b - 1]


def _softmax_xent(H: Floats2d, W: Floats2d, b, targets: numpy.ndarray, weight: float):
    """weight x the summed cross-entropy of softmax(H W^T + b) against
    targets, and its gradients for H, W and b (in torch: its fused
    log-softmax is about twice as fast as numpy's on a CPU), with the thread
    policy's number of torch threads."""
    with torch_threads():
        Ht = xp2torch(H, requires_grad=True)
        Wt = xp2torch(W, requires_grad=True)
        bt = xp2torch(b, requires_grad=True)
        tgt = torch.as_tensor(numpy.asarray(targets, dtype=numpy.int64), device=Ht.device)
        logits = torch.addmm(bt, Ht, Wt.t())
        loss = torch.nn.functional.cross_entropy(logits, tgt, reduction="sum")
        (loss * weight).backward()
    return weight * float(loss.detach()), torch2xp(Ht.grad), torch2xp(Wt.grad), torch2xp(bt.grad)


def _forward(model: Model[InT, OutT], docs: InT, is_train: bool) -> Tuple[OutT, Callable]:
    tok2vec = model.layers[0]
    Ys, backprop_tok2vec = tok2vec(docs, is_train)
    if not is_train:
        return Ys, backprop_tok2vec
    lengths = numpy.array([len(doc) for doc in docs], dtype=numpy.int64)
    if lengths.sum() < 2:
        return Ys, backprop_tok2vec
    ops = model.ops
    weight = model.attrs["weight"]
    nV = model.get_dim("nV")
    keys = numpy.concatenate([_column(doc, model.attrs["attr"]) for doc in docs])
    rows = lookup_rows(model.attrs["index"], keys, True, nV - 1, alpha=0.0)
    src_f, tgt_f, src_b, tgt_b = lm_targets(lengths, rows)
    Y = ops.flatten(Ys)
    nH = Y.shape[1] // 2
    W = model.get_param("W")
    b = model.get_param("b")
    dY = ops.alloc2f(*Y.shape)
    dW = ops.alloc3f(*W.shape)
    db = ops.alloc2f(*b.shape)
    loss = 0.0
    for d, (src, tgt, cols) in enumerate(
        ((src_f, tgt_f, slice(0, nH)), (src_b, tgt_b, slice(nH, 2 * nH)))
    ):
        if not src.shape[0]:
            continue
        src_i = ops.asarray1i(src)
        H = ops.as_contig(Y[src_i, cols])
        part, dH, dW[d], db[d] = _softmax_xent(H, W[d], b[d], tgt, weight)
        loss += part
        dY[src_i, cols] = dH
    model.attrs["loss"] = loss

    def backprop(dYs: OutT) -> InT:
        model.inc_grad("W", dW)
        model.inc_grad("b", db)
        return backprop_tok2vec(ops.unflatten(ops.flatten(dYs) + dY, lengths))

    return Ys, backprop
