"""RNN text classifier with a linear bag-of-n-grams path: `spacy_rnn.RNNTextCat.v3`.

On a few thousand training sentences a recurrent classifier can lose to a
linear model over word n-grams (spaCy's `TextCatBOW`, NBSVM-style baselines),
which needs little data to find the words that decide a label. v3 runs both
side by side and sums their logits before one softmax (or one logistic per
label, for `textcat_multilabel`):

    logits = Linear(pool(tok2vec(doc)))  +  SparseLinear(hashed n-grams of doc)
    scores = softmax(logits)  |  sigmoid(logits)

The recurrent path is RNNTextCat.v1's (tok2vec >> pooling >> dropout), ending
in a linear layer; the n-gram path is spaCy's TextCatBOW.v3 without its own
output activation (`extract_ngrams` >> `SparseLinear_v2`, on the CPU). Trained
jointly, the linear path fits the lexical cues early and the recurrent one
the rest; summed logits (rather than averaged probabilities, as spaCy's
TextCatEnsemble joins a BOW and a CNN through one more layer) keep the model
a single log-linear classifier whose gradient reaches both paths unchanged.

The loss gradient spaCy's textcat components send (`scores - truth`) is the
cross-entropy gradient with respect to the logits, so the activations pass it
straight through (as `Softmax` does in v1, and `sigmoid_activation`).
"""
from functools import partial
from typing import Any, Callable, List, Optional, Tuple, cast

from spacy.attrs import IDS
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import (
    Linear,
    Model,
    SparseLinear_v2,
    add,
    chain,
    list2ragged,
    resizable,
    with_cpu,
)
from thinc.layers.resizable import resize_linear_weighted, resize_model
from thinc.types import Floats2d

from .dropout import fixed_dropout
from .textcat import DEFAULT_TOK2VEC, NEG_VALUE, sigmoid_activation, tok2vec_and_pool

NGRAM_ATTRS = ("ORTH", "LOWER", "NORM")


@registry.architectures("spacy_rnn.RNNTextCat.v3")
def RNNTextCat_v3(
    tok2vec: Model[List[Doc], List[Floats2d]] = DEFAULT_TOK2VEC,  # type: ignore[assignment]
    pooling: str = "attention",
    exclusive_classes: bool = True,
    nO: Optional[int] = None,
    dropout: float = 0.1,
    ngram_size: int = 2,
    ngram_attr: str = "ORTH",
    length: int = 262144,
    ngram_scale: float = 1.0,
) -> Model[List[Doc], Floats2d]:
    """Classify docs from the sum of a recurrent and a linear n-gram model's logits.

    tok2vec, pooling, exclusive_classes, nO, dropout: as spacy_rnn.RNNTextCat.v1.
    ngram_size (int): the linear path reads all n-grams up to this size.
    ngram_attr (str): the token attribute the n-grams are made of: "ORTH"
        (spaCy's TextCatBOW), "LOWER" or "NORM".
    length (int): rows of the hashed n-gram weight table (per label); as in
        spaCy's TextCatBOW.v3, a power of two is best.
    ngram_scale (float): the n-gram path's logits are its weights' output times
        this. Adam's steps do not depend on the gradient's scale, so the n-gram
        weights then move this many times faster in logit space than with 1.0:
        a learning rate that many times the recurrent path's, for sparse
        features that each get few updates before the recurrent path fits the
        training data.
    """
    return _two_path_textcat(
        "spacy_rnn.RNNTextCat.v3", tok2vec, pooling, exclusive_classes, nO, dropout,
        ngram_size, ngram_attr, length, ngram_scale, own_losses=False,
    )


@registry.architectures("spacy_rnn.RNNTextCat.v4")
def RNNTextCat_v4(
    tok2vec: Model[List[Doc], List[Floats2d]] = DEFAULT_TOK2VEC,  # type: ignore[assignment]
    pooling: str = "attention",
    exclusive_classes: bool = True,
    nO: Optional[int] = None,
    dropout: float = 0.1,
    ngram_size: int = 2,
    ngram_attr: str = "ORTH",
    length: int = 262144,
    ngram_scale: float = 1.0,
) -> Model[List[Doc], Floats2d]:
    """v3's two paths, each trained on its own loss; docs are classified from
    the mean of the two paths' logits.

    In v3 both paths get the gradient of the joint prediction: once the faster
    of the two fits a training text, the text's gradient vanishes for the other
    too ("gradient starvation", Pezeshki et al. 2021). In v4 each path is
    trained as a classifier of its own (softmax or sigmoid of its own logits
    against the gold labels), as the members of an ensemble are, so neither
    stops learning when the other fits the training data; the prediction is
    their log-linear mean, softmax((z_rnn + z_ngram) / 2).

    The gold labels are read back from the gradient spaCy's `textcat` and
    `textcat_multilabel` send, `scores - truth` (zero where a label is
    missing, which then trains neither path). Arguments: as v3.
    """
    return _two_path_textcat(
        "spacy_rnn.RNNTextCat.v4", tok2vec, pooling, exclusive_classes, nO, dropout,
        ngram_size, ngram_attr, length, ngram_scale, own_losses=True,
    )


def _two_path_textcat(
    name: str,
    tok2vec: Model,
    pooling: str,
    exclusive_classes: bool,
    nO: Optional[int],
    dropout: float,
    ngram_size: int,
    ngram_attr: str,
    length: int,
    ngram_scale: float,
    own_losses: bool,
) -> Model[List[Doc], Floats2d]:
    """RNNTextCat.v3 (logits summed, trained jointly) or v4 (each path on its
    own loss, logits averaged)."""
    tok2vec, pool, pooled_width = tok2vec_and_pool(tok2vec, pooling, dropout, name)
    if ngram_size < 1:
        raise ValueError(f"{name}: ngram_size must be >= 1, got {ngram_size}")
    if ngram_attr not in NGRAM_ATTRS:
        raise ValueError(f"{name}: ngram_attr must be one of "
                         f"{', '.join(NGRAM_ATTRS)}, got {ngram_attr!r}")
    if length < 1:
        raise ValueError(f"{name}: length must be >= 1, got {length}")
    if not ngram_scale > 0:
        raise ValueError(f"{name}: ngram_scale must be > 0, got {ngram_scale}")

    # A label added after training started gets (almost) zero probability from
    # the softmax: one path's new bias row is NEG_VALUE (the other's 0).
    neg = NEG_VALUE if exclusive_classes else 0.0
    rnn_linear = Linear(nO=nO, nI=pooled_width)
    rnn_out = resizable(
        rnn_linear, resize_layer=partial(resize_linear_weighted, fill_defaults={"b": neg})
    )
    sparse = SparseLinear_v2(nO=nO, length=length)
    bow_out = resizable(
        sparse, resize_layer=partial(resize_linear_weighted, fill_defaults={"b": 0})
    )
    recurrent = chain(tok2vec, list2ragged(), pool, fixed_dropout(dropout), rnn_out)
    bow_layers = [extract_ngrams(ngram_size, IDS[ngram_attr]), bow_out]
    if ngram_scale != 1.0:
        bow_layers.append(scale_output(ngram_scale))
    bow = with_cpu(chain(*bow_layers), tok2vec.ops)
    if own_losses:
        model = own_loss_paths(recurrent, bow, exclusive_classes)
        temperature_layer = model
    else:
        activation = softmax_logits() if exclusive_classes else sigmoid_activation()
        model = chain(add(recurrent, bow), activation)
        temperature_layer = activation
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("pooling", pool)
    model.set_ref("output_layer", rnn_linear)
    model.set_ref("bow_layer", sparse)
    if exclusive_classes:
        model.set_ref("temperature_layer", temperature_layer)
    if nO is not None:
        model.set_dim("nO", cast(int, nO))
    model.attrs["multi_label"] = not exclusive_classes
    model.attrs["pooling"] = pooling
    model.attrs["resize_output"] = partial(_resize_output, rnn_out=rnn_out, bow_out=bow_out)
    return model


def _resize_output(model: Model, new_nO: int, rnn_out: Model, bow_out: Model) -> Model:
    """Give both paths' output layers `new_nO` labels (old weights kept)."""
    rnn_out = resize_model(rnn_out, new_nO)
    bow_out = resize_model(bow_out, new_nO)
    model.set_ref("output_layer", rnn_out.layers[0])
    model.set_ref("bow_layer", bow_out.layers[0])
    model.set_dim("nO", new_nO, force=True)
    return model


def extract_ngrams(ngram_size: int, attr: int) -> Model[List[Doc], Tuple]:
    """Hashed n-gram keys and counts per doc, as spaCy's `extract_ngrams` (the
    input of SparseLinear), that also takes docs shorter than an n-gram
    (spaCy's fails on an empty doc: thinc's `ops.ngrams` indexes its first key)."""
    return Model("extract_ngrams", _ngrams_forward,
                 attrs={"ngram_size": ngram_size, "attr": attr})


def _ngrams_forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[Tuple, Callable]:
    ops = model.ops
    xp = ops.xp
    batch_keys = []
    batch_vals = []
    for doc in docs:
        unigrams = ops.asarray(doc.to_array([model.attrs["attr"]]))  # (n_tokens,) uint64
        ngrams = [unigrams]
        for n in range(2, min(model.attrs["ngram_size"], len(unigrams)) + 1):
            ngrams.append(ops.ngrams(n, unigrams))
        keys, vals = xp.unique(xp.concatenate(ngrams), return_counts=True)
        batch_keys.append(keys)
        batch_vals.append(vals)
    lengths = ops.asarray([len(keys) for keys in batch_keys], dtype="int32")
    keys = xp.concatenate(batch_keys) if batch_keys else xp.zeros((0,), dtype="uint64")
    vals = ops.asarray(xp.concatenate(batch_vals) if batch_vals else xp.zeros((0,)),
                       dtype="f")

    def backprop(dY: Any) -> List:
        return []

    return (keys, vals, lengths), backprop


def scale_output(factor: float) -> Model[Floats2d, Floats2d]:
    """Y = factor * X (and dX = factor * dY)."""
    return Model("scale_output", _scale_forward, attrs={"factor": factor})


def _scale_forward(model: Model, X: Floats2d, is_train: bool) -> Tuple[Floats2d, Callable]:
    factor = model.attrs["factor"]

    def backprop(dY: Floats2d) -> Floats2d:
        return dY * factor

    return X * factor, backprop


def own_loss_paths(
    recurrent: Model[List[Doc], Floats2d], bow: Model[List[Doc], Floats2d], exclusive: bool
) -> Model[List[Doc], Floats2d]:
    """Scores = softmax (or sigmoid) of the mean of two models' logits; in
    training each model gets the cross-entropy gradient of its own prediction,
    act(z_i) - truth, with truth = scores - dY read from the textcat
    components' gradient dY = scores - truth (elements where dY is 0, a missing
    label, train neither)."""
    attrs: dict = {"exclusive": exclusive}
    if exclusive:
        attrs["softmax_temperature"] = 1.0
    return Model("own_loss_paths", _own_losses_forward, layers=[recurrent, bow],
                 attrs=attrs, dims={"nO": None}, init=_own_losses_init)


def _own_losses_init(model: Model, X: Optional[List[Doc]] = None,
                     Y: Optional[Floats2d] = None) -> None:
    for layer in model.layers:
        layer.initialize(X=X, Y=Y)
        if layer.has_dim("nO") and layer.get_dim("nO") is not None:
            model.set_dim("nO", layer.get_dim("nO"), force=True)


def _activate(ops: Any, Z: Floats2d, exclusive: bool, temperature: float = 1.0) -> Floats2d:
    if exclusive:
        return ops.softmax(Z / temperature if temperature != 1.0 else Z, inplace=False)
    return ops.sigmoid(Z, inplace=False)


def _own_losses_forward(
    model: Model, docs: List[Doc], is_train: bool
) -> Tuple[Floats2d, Callable]:
    recurrent, bow = model.layers
    exclusive = model.attrs["exclusive"]
    Z_rnn, bp_rnn = recurrent(docs, is_train)
    Z_bow, bp_bow = bow(docs, is_train)
    Y = _activate(model.ops, (Z_rnn + Z_bow) * 0.5, exclusive,
                  model.attrs.get("softmax_temperature", 1.0))

    def backprop(dY: Floats2d) -> List:
        truth = Y - dY
        scored = dY != 0
        bp_rnn((_activate(model.ops, Z_rnn, exclusive) - truth) * scored)
        bp_bow((_activate(model.ops, Z_bow, exclusive) - truth) * scored)
        return []

    return Y, backprop


def softmax_logits() -> Model[Floats2d, Floats2d]:
    """Softmax whose backprop passes the incoming gradient straight to the
    logits: spaCy's textcat sends `scores - truth`, the cross-entropy gradient
    with respect to the logits (thinc's softmax_activation would multiply it by
    the softmax Jacobian, i.e. train a squared error)."""
    return Model("softmax_logits", _softmax_forward, attrs={"softmax_temperature": 1.0})


def _softmax_forward(model: Model, X: Floats2d, is_train: bool) -> Tuple[Floats2d, Callable]:
    # softmax(X / T): T is 1.0 unless calibrated (spacy_rnn.ml.textcat.set_temperature)
    temperature = model.attrs["softmax_temperature"]
    Y = model.ops.softmax(X / temperature if temperature != 1.0 else X, inplace=False)

    def backprop(dY: Floats2d) -> Floats2d:
        return dY / temperature if temperature != 1.0 else dY

    return Y, backprop


__all__ = ["RNNTextCat_v3", "RNNTextCat_v4", "own_loss_paths", "extract_ngrams", "softmax_logits",
           "NGRAM_ATTRS"]
