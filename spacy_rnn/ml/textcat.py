"""RNN text classifier: tok2vec >> pooling over time >> Softmax | Logistic.

`spacy_rnn.RNNTextCat.v1` plugs into spaCy's own `textcat` and
`textcat_multilabel` components. The pooling choices are the ones a Keras user
knows from LSTM sentiment tutorials, done on ragged batches so that padding
never enters a doc's vector:

- "last": `LSTM(return_sequences=False)`. For a bidirectional encoder, the
  forward state at the doc's true last token joined with the backward state at
  its first token (each direction's final state); for a unidirectional one,
  the state at the true last token.
- "mean" / "max": `LSTM(return_sequences=True)` followed by
  GlobalAveragePooling1D / GlobalMaxPooling1D over time, masked.
- "attention": a learned query scores each timestep (after a tanh projection,
  Yang et al. 2016, "Hierarchical Attention Networks"); softmax over the doc's
  own tokens; the weighted sum of the states.
- Several joined by "+", e.g. "attention+max" or ULMFiT's "last+max+mean"
  (Howard & Ruder 2018, "concat pooling"): each pooled vector in that order,
  concatenated, so the output layer reads a vector as many times as wide.

A doc without tokens pools to a zero vector, so its class scores come from the
output bias alone: a valid probability vector, never NaN.

`spacy_rnn.RNNTextCat.v2` is v1 trained with a language-model objective on the
encoder (spacy_rnn.ml.lm_objective).
"""
from functools import partial
import warnings
from typing import Callable, Dict, List, Optional, Tuple, cast

from spacy.ml.models.textcat import resize_and_set_ref
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import (
    Linear,
    Model,
    Softmax,
    chain,
    concatenate,
    glorot_uniform_init,
    list2ragged,
    resizable,
    zero_init,
)
from thinc.layers.resizable import resize_linear_weighted
from thinc.types import Floats1d, Floats2d, Ints1d, Ragged

from .dropout import fixed_dropout
from .lm_objective import with_lm_objective

POOLINGS = ("last", "mean", "max", "attention")
# Bias of an output row added by `resize_output` after training started, as in
# spaCy's own textcat: a new label starts with (almost) zero probability.
NEG_VALUE = -5000.0

InT = Ragged
OutT = Floats2d

# The default token-to-vector model: char + word embeddings into a packed
# BiLSTM, joined by spaCy's generic Tok2Vec so that `get_ref("encode")` finds
# the encoder. A dict default is filled into the config like any block, so the
# full tok2vec shows (and can be overridden) in `nlp.config`.
DEFAULT_TOK2VEC: Dict = {
    "@architectures": "spacy.Tok2Vec.v2",
    "embed": {"@architectures": "spacy_rnn.CharWordEmbed.v1", "width": 64},
    "encode": {
        "@architectures": "spacy_rnn.BiRNNEncoder.v1",
        "width": 128,
        "depth": 1,
        "cell": "lstm",
        "bidirectional": True,
    },
}


@registry.architectures("spacy_rnn.RNNTextCat.v1")
def RNNTextCat(
    tok2vec: Model[List[Doc], List[Floats2d]] = DEFAULT_TOK2VEC,  # type: ignore[assignment]
    pooling: str = "attention",
    exclusive_classes: bool = True,
    nO: Optional[int] = None,
    dropout: float = 0.1,
) -> Model[List[Doc], Floats2d]:
    """Classify docs from pooled recurrent states.

    tok2vec (Model[List[Doc], List[Floats2d]]): the token encoder, usually
        `spacy.Tok2Vec.v2` with `spacy_rnn.CharWordEmbed.v1` and
        `spacy_rnn.BiRNNEncoder.v1`. "last" pooling reads
        `tok2vec.get_ref("encode").attrs["bidirectional"]`; an encoder without
        that attribute counts as unidirectional.
    pooling (str): "last", "mean", "max" or "attention", or several of them
        joined by "+" and concatenated, e.g. "attention+max" (see the module doc).
    exclusive_classes (bool): softmax over the labels (`textcat`) when true,
        independent logistic outputs (`textcat_multilabel`) when false.
    nO (Optional[int]): number of labels; set by the component.
    dropout (float): dropout on the pooled vector, before the output layer,
        at this fixed rate: spaCy's training loop sets every thinc Dropout to
        `[training] dropout` (embeddings included), but not this one.
    """
    return _rnn_textcat(tok2vec, pooling, exclusive_classes, nO, dropout)


@registry.architectures("spacy_rnn.RNNTextCat.v2")
def RNNTextCat_v2(
    tok2vec: Model[List[Doc], List[Floats2d]] = DEFAULT_TOK2VEC,  # type: ignore[assignment]
    pooling: str = "attention",
    exclusive_classes: bool = True,
    nO: Optional[int] = None,
    dropout: float = 0.1,
    lm_words: int = 3000,
    lm_weight: float = 0.1,
) -> Model[List[Doc], Floats2d]:
    """RNNTextCat.v1 trained with a language-model objective on its encoder
    (spacy_rnn.ml.lm_objective, as CRFTagger.v3): the forward half of the
    BiLSTM output predicts the next word, the backward half the previous one,
    a training signal from every token where the label gives one per text.

    lm_words (int): the predicted vocabulary: the first lm_words words (NORM)
        seen in training, all others one UNK class.
    lm_weight (float): the objective's weight (summed over tokens) against
        the classification loss.

    The tok2vec must end in a one-layer bidirectional BiRNNEncoder.v1.
    Prediction is that of v1 with the same weights.
    """
    return _rnn_textcat(tok2vec, pooling, exclusive_classes, nO, dropout, lm=(lm_words, lm_weight))


def _rnn_textcat(
    tok2vec: Model[List[Doc], List[Floats2d]],
    pooling: str,
    exclusive_classes: bool,
    nO: Optional[int],
    dropout: float,
    lm: Optional[Tuple[int, float]] = None,
) -> Model[List[Doc], Floats2d]:
    """tok2vec (+ LM objective, v2) >> pooling >> dropout >> output layer."""
    tok2vec, pool, pooled_width = tok2vec_and_pool(
        tok2vec, pooling, dropout, "spacy_rnn.RNNTextCat"
    )

    fill_defaults = {"b": NEG_VALUE, "W": 0}
    if exclusive_classes:
        output_layer: Model = Softmax(nO=nO, nI=pooled_width)
    else:
        fill_defaults["b"] = 0
        output_layer = Linear(nO=nO, nI=pooled_width)
    resizable_layer = resizable(
        output_layer,
        resize_layer=partial(resize_linear_weighted, fill_defaults=fill_defaults),
    )
    encoder = tok2vec if lm is None else with_lm_objective(tok2vec, *lm)
    layers = [encoder, list2ragged(), pool, fixed_dropout(dropout), resizable_layer]
    if not exclusive_classes:
        layers.append(sigmoid_activation())
    model = chain(*layers)
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("pooling", pool)
    model.set_ref("output_layer", output_layer)
    if lm is not None:
        model.set_ref("lm_objective", encoder)
    if nO is not None:
        model.set_dim("nO", cast(int, nO))
    model.attrs["multi_label"] = not exclusive_classes
    model.attrs["pooling"] = pooling
    model.attrs["resize_output"] = partial(
        resize_and_set_ref, resizable_layer=resizable_layer
    )
    return model


def tok2vec_and_pool(
    tok2vec: Model[List[Doc], List[Floats2d]], pooling: str, dropout: float, arch: str
) -> Tuple[Model[List[Doc], List[Floats2d]], Model[InT, OutT], Optional[int]]:
    """The recurrent path's common part for every RNNTextCat version: the
    tok2vec (resolved when given as the config default dict), the pooling
    layer(s) named by `pooling` and the pooled width (None until known).
    Checks `pooling` and `dropout`; `arch` names the architecture in errors."""
    if isinstance(tok2vec, dict):  # called from Python with the config default
        tok2vec = registry.resolve({"tok2vec": tok2vec})["tok2vec"]
    poolings = pooling.split("+")
    unknown = [name for name in poolings if name not in POOLINGS]
    if unknown or len(set(poolings)) != len(poolings):
        raise ValueError(
            f"Unknown or repeated pooling in {pooling!r} for {arch}: "
            f"expected one of {', '.join(POOLINGS)}, or several different ones "
            f"joined by '+' (e.g. 'attention+max')."
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{arch}: dropout must be in [0, 1), got {dropout}")
    width = tok2vec.maybe_get_dim("nO")
    pools = [_make_pool(name, tok2vec, width) for name in poolings]
    pool = pools[0] if len(pools) == 1 else concatenate(*pools)
    pooled_width = width * len(pools) if width is not None else None
    return tok2vec, pool, pooled_width


def _make_pool(name: str, tok2vec: Model, width: Optional[int]) -> Model[InT, OutT]:
    """One pooling layer by name; "last" reads the tok2vec's direction."""
    if name == "last":
        return pool_last(bidirectional=_is_bidirectional(tok2vec), nO=width)
    if name == "mean":
        return pool_mean(nO=width)
    if name == "max":
        return pool_max(nO=width)
    return pool_attention(nO=width, nH=width)


def _is_bidirectional(tok2vec: Model) -> bool:
    """Whether the tok2vec's encoder runs both ways, from the "encode" ref's
    `bidirectional` attr (set by spacy_rnn.BiRNNEncoder.v1)."""
    for node in tok2vec.walk():
        if node.has_ref("encode"):
            encode = node.get_ref("encode")
            if "bidirectional" in encode.attrs:
                return bool(encode.attrs["bidirectional"])
    if "bidirectional" in tok2vec.attrs:
        return bool(tok2vec.attrs["bidirectional"])
    warnings.warn(
        "spacy_rnn.RNNTextCat.v1: pooling='last' cannot tell whether the tok2vec "
        f"({tok2vec.name!r}) is bidirectional (no 'encode' ref with a 'bidirectional' "
        "attr, e.g. a Tok2VecListener); it takes the whole state at each doc's last "
        "token, which is right for a left-to-right encoder only. With a shared "
        "BiRNNEncoder, use pooling 'max', 'mean' or 'attention', or an inline tok2vec."
    )
    return False


# --- pooling layers: Model[Ragged, Floats2d], one row per doc ------------------


def pool_last(bidirectional: bool, nO: Optional[int] = None) -> Model[InT, OutT]:
    """Final RNN state per doc: the state at the true last token or, when
    bidirectional, forward half at the last token | backward half at the first.
    """
    return Model(
        "pool_last",
        _last_forward,
        init=_init_same_width,
        dims={"nO": nO, "nI": nO},
        attrs={"bidirectional": bidirectional},
    )


def pool_mean(nO: Optional[int] = None) -> Model[InT, OutT]:
    """Mean of each doc's states over its own tokens (zero for an empty doc)."""
    return Model("pool_mean", _mean_forward, init=_init_same_width, dims={"nO": nO, "nI": nO})


def pool_max(nO: Optional[int] = None) -> Model[InT, OutT]:
    """Per-dimension max of each doc's states over its own tokens (zero for an
    empty doc)."""
    return Model("pool_max", _max_forward, init=_init_same_width, dims={"nO": nO, "nI": nO})


def pool_attention(nO: Optional[int] = None, nH: Optional[int] = None) -> Model[InT, OutT]:
    """Attention pooling: a_t = softmax_t(q . tanh(W x_t + b)) over each doc's
    tokens, output sum_t a_t x_t. `nH=0` scores the states directly (q . x_t).
    """
    return Model(
        "pool_attention",
        _attention_forward,
        init=_init_attention,
        dims={"nO": nO, "nI": nO, "nH": nH},
        params={"W": None, "b": None, "q": None},
    )


def _init_same_width(model: Model, X: Optional[InT] = None, Y: Optional[OutT] = None) -> None:
    if X is not None:
        model.set_dim("nI", X.dataXd.shape[1], force=True)
    if model.maybe_get_dim("nI") is not None:
        model.set_dim("nO", model.get_dim("nI"), force=True)
    elif model.maybe_get_dim("nO") is not None:
        model.set_dim("nI", model.get_dim("nO"))


def _init_attention(model: Model, X: Optional[InT] = None, Y: Optional[OutT] = None) -> None:
    _init_same_width(model, X, Y)
    nI = model.get_dim("nI")
    if model.maybe_get_dim("nH") is None:
        model.set_dim("nH", nI, force=True)
    nH = model.get_dim("nH")
    if nH:
        model.set_param("W", glorot_uniform_init(model.ops, (nH, nI)))
        model.set_param("b", zero_init(model.ops, (nH,)))
    else:
        model.set_param("W", model.ops.alloc2f(0, nI))
        model.set_param("b", model.ops.alloc1f(0))
    # A zero query starts as mean pooling; its gradient is non-zero from the
    # first update, so the weights move away from uniform as soon as it helps.
    model.set_param("q", zero_init(model.ops, (nH or nI,)))


def _bounds(model: Model, lengths: Ints1d) -> Tuple[Ints1d, Ints1d, Ints1d]:
    """Row of each non-empty doc's first and last token, and their doc index."""
    xp = model.ops.xp
    lengths = xp.asarray(lengths, dtype="int64")
    ends = xp.cumsum(lengths)  # (n_docs,) exclusive end row
    nonempty = xp.nonzero(lengths > 0)[0]  # (n_nonempty,)
    last = ends[nonempty] - 1
    first = last - lengths[nonempty] + 1
    return first, last, nonempty


def _no_tokens(model: Model, Xr: InT) -> Tuple[OutT, Callable]:
    """A batch whose docs are all empty: zero vectors (thinc's segment
    reductions index row 0, which does not exist here)."""
    X = Xr.dataXd
    Y = model.ops.alloc((len(Xr.lengths), X.shape[1]), dtype=X.dtype)

    def backprop(dY: OutT) -> InT:
        return Ragged(model.ops.alloc(X.shape, dtype=X.dtype), Xr.lengths)

    return Y, backprop


def _last_forward(model: Model, Xr: InT, is_train: bool) -> Tuple[OutT, Callable]:
    if not Xr.dataXd.shape[0]:
        return _no_tokens(model, Xr)
    X = cast(Floats2d, Xr.dataXd)  # (n_tokens, width)
    lengths = Xr.lengths
    width = X.shape[1]
    bidirectional = model.attrs["bidirectional"]
    if bidirectional and width % 2:
        raise ValueError(
            f"'last' pooling of a bidirectional encoder needs an even width "
            f"([forward | backward] halves), got {width}"
        )
    half = width // 2 if bidirectional else width
    first, last, nonempty = _bounds(model, lengths)
    Y = model.ops.alloc((len(lengths), width), dtype=X.dtype)  # (n_docs, width); 0 if empty
    Y[nonempty, :half] = X[last, :half]  # forward direction ends at the last token
    if bidirectional:
        Y[nonempty, half:] = X[first, half:]  # backward direction ends at the first

    def backprop(dY: OutT) -> InT:
        dX = model.ops.alloc(X.shape, dtype=dY.dtype)  # (n_tokens, width)
        dX[last, :half] = dY[nonempty, :half]
        if bidirectional:
            dX[first, half:] = dY[nonempty, half:]
        return Ragged(dX, lengths)

    return Y, backprop


def _mean_forward(model: Model, Xr: InT, is_train: bool) -> Tuple[OutT, Callable]:
    if not Xr.dataXd.shape[0]:
        return _no_tokens(model, Xr)
    X = cast(Floats2d, Xr.dataXd)
    lengths = Xr.lengths
    Y = model.ops.reduce_mean(X, lengths)  # (n_docs, width); 0 for empty docs

    def backprop(dY: OutT) -> InT:
        return Ragged(model.ops.backprop_reduce_mean(dY, lengths), lengths)

    return Y, backprop


def _max_forward(model: Model, Xr: InT, is_train: bool) -> Tuple[OutT, Callable]:
    if not Xr.dataXd.shape[0]:
        return _no_tokens(model, Xr)
    X = cast(Floats2d, Xr.dataXd)
    lengths = Xr.lengths
    xp = model.ops.xp
    nonempty = xp.nonzero(xp.asarray(lengths) > 0)[0]
    lengths_ne = model.ops.asarray1i(lengths[nonempty])
    Y = model.ops.alloc((len(lengths), X.shape[1]), dtype=X.dtype)  # (n_docs, width)
    if len(nonempty):
        # thinc's reduce_max refuses empty segments; they own no rows in X, so
        # reducing over the non-empty lengths alone covers every row.
        Y_ne, which = model.ops.reduce_max(X, lengths_ne)  # (n_nonempty, width)
        Y[nonempty] = Y_ne

    def backprop(dY: OutT) -> InT:
        if not len(nonempty):
            return Ragged(model.ops.alloc(X.shape, dtype=dY.dtype), lengths)
        dX = model.ops.backprop_reduce_max(
            model.ops.as_contig(dY[nonempty]), which, lengths_ne
        )
        return Ragged(dX, lengths)

    return Y, backprop


def _attention_forward(model: Model, Xr: InT, is_train: bool) -> Tuple[OutT, Callable]:
    if not Xr.dataXd.shape[0]:
        return _no_tokens(model, Xr)
    ops = model.ops
    X = cast(Floats2d, Xr.dataXd)  # (n_tokens, nI)
    lengths = Xr.lengths
    W = cast(Floats2d, model.get_param("W"))  # (nH, nI)
    b = cast(Floats1d, model.get_param("b"))  # (nH,)
    q = cast(Floats1d, model.get_param("q"))  # (nH,) or (nI,) when nH == 0
    projected = W.shape[0] > 0
    K = ops.xp.tanh(X @ W.T + b) if projected else X  # (n_tokens, nH)
    scores = K @ q  # (n_tokens,)
    A = _segment_softmax(ops, scores, lengths)  # (n_tokens,)
    Y = ops.reduce_sum(X * A[:, None], lengths)  # (n_docs, nI); 0 for empty docs

    def backprop(dY: OutT) -> InT:
        dXA = ops.backprop_reduce_sum(dY, lengths)  # (n_tokens, nI)
        dX = dXA * A[:, None]
        dA = (dXA * X).sum(axis=1)  # (n_tokens,)
        # softmax Jacobian within each doc: ds_t = a_t (dA_t - sum_u a_u dA_u)
        dots = ops.reduce_sum((A * dA)[:, None], lengths)[:, 0]  # (n_docs,)
        dS = A * (dA - ops.xp.repeat(dots, lengths))  # (n_tokens,)
        model.inc_grad("q", K.T @ dS)
        dK = dS[:, None] * q[None, :]  # (n_tokens, nH)
        if projected:
            dZ = dK * (1.0 - K**2)  # through tanh
            model.inc_grad("W", dZ.T @ X)
            model.inc_grad("b", dZ.sum(axis=0))
            dX += dZ @ W
        else:
            dX += dK
        return Ragged(dX, lengths)

    return Y, backprop


def _segment_softmax(ops, scores, lengths):
    """Softmax of `scores` (n_tokens,) within each doc, max-shifted for
    stability; empty docs own no rows."""
    xp = ops.xp
    lengths_ne = lengths[xp.nonzero(xp.asarray(lengths) > 0)[0]]
    if not len(lengths_ne):
        return scores.copy()
    col = ops.as_contig(scores[:, None])
    seg_max, _ = ops.reduce_max(col, ops.asarray1i(lengths_ne))  # (n_nonempty, 1)
    shifted = scores - xp.repeat(seg_max[:, 0], lengths_ne)
    exp = xp.exp(shifted)  # (n_tokens,)
    totals = ops.reduce_sum(exp[:, None], ops.asarray1i(lengths_ne))[:, 0]
    return exp / xp.repeat(totals, lengths_ne)


# --- output side -----------------------------------------------------------------


def has_temperature(model: Model) -> bool:
    """Whether `model` is an RNNTextCat with exclusive classes, whose softmax
    takes a temperature (`set_temperature`)."""
    node = _temperature_node(model)
    return (
        "pooling" in model.attrs
        and not model.attrs.get("multi_label", True)
        and node is not None
        and "softmax_temperature" in node.attrs
    )


def _temperature_node(model: Model) -> Optional[Model]:
    """The layer holding the softmax temperature: the "temperature_layer" ref
    (RNNTextCat.v3's softmax over the summed logits), else the output layer
    (v1/v2's thinc Softmax)."""
    for ref in ("temperature_layer", "output_layer"):
        if model.has_ref(ref):
            return model.get_ref(ref)
    return None


def get_temperature(model: Model) -> float:
    """The temperature T of an RNNTextCat's softmax: softmax(z / T) of the logits z."""
    if not has_temperature(model):
        raise ValueError(
            "only spacy_rnn.RNNTextCat with exclusive_classes = true has a softmax temperature"
        )
    return float(_temperature_node(model).attrs["softmax_temperature"])  # type: ignore


def set_temperature(model: Model, temperature: float) -> None:
    """Set the temperature of an RNNTextCat's softmax (exclusive classes), the
    calibration fitted on dev data (`spacy_rnn.calibration`). It is the thinc
    Softmax layer's `softmax_temperature` attribute, saved with the model;
    the predicted class never changes, only the probabilities. thinc applies
    it in training too: set it after training (the `spacy_rnn.calibrate.v1`
    callback calibrates a copy of the pipeline, so training never sees it)."""
    get_temperature(model)
    value = float(temperature)
    if not 0.0 < value < float("inf"):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    _temperature_node(model).attrs["softmax_temperature"] = value  # type: ignore


def sigmoid_activation() -> Model[Floats2d, Floats2d]:
    """Logistic output whose backprop passes the incoming gradient straight to
    the logits. spaCy's textcat components send `scores - truth`, which is the
    binary cross-entropy gradient w.r.t. the logits: the same convention as
    thinc's Softmax for the exclusive case (thinc's Logistic would multiply by
    p(1-p), i.e. train a squared error that stalls on confident mistakes).
    """
    return Model("sigmoid_activation", _sigmoid_forward)


def _sigmoid_forward(model: Model, X: Floats2d, is_train: bool) -> Tuple[Floats2d, Callable]:
    Y = model.ops.sigmoid(X, inplace=False)

    def backprop(dY: Floats2d) -> Floats2d:
        return dY

    return Y, backprop


__all__ = [
    "RNNTextCat",
    "POOLINGS",
    "pool_last",
    "pool_mean",
    "pool_max",
    "pool_attention",
    "sigmoid_activation",
    "fixed_dropout",
    "has_temperature",
    "get_temperature",
    "set_temperature",
]
