"""thinc's Maxout layer with its matrix products done by the array library
(numpy's BLAS on CPU, cupy on GPU) instead of `ops.gemm`.

thinc's NumpyOps.gemm runs on blis, single-threaded: on the machines this
project was measured on, the (n_tokens x 562) @ (562 x 384) product of
CharWordEmbed's projection took about 3x as long under blis as under numpy's
OpenBLAS (1.29 s vs 0.41 s for the CoNLL-2003 test set), a third of the whole
pipeline's inference time. The parameters, their shapes and their
initialization are thinc's, so models saved with thinc's Maxout load here.
"""
from typing import Callable, Optional, Tuple

from thinc.api import Dropout, LayerNorm, Model, chain, glorot_uniform_init, zero_init
from thinc.types import Floats2d
from thinc.util import get_width


def Maxout(
    nO: int,
    nI: Optional[int] = None,
    nP: int = 3,
    *,
    dropout: Optional[float] = None,
    normalize: bool = False,
) -> Model[Floats2d, Floats2d]:
    """Affine map to nO x nP pieces, maximum over the pieces, then layer norm
    when `normalize` and dropout when `dropout` is not None: the same layers,
    nested the same way, as thinc's Maxout."""
    model: Model[Floats2d, Floats2d] = Model(
        "maxout",
        maxout_forward,
        init=maxout_init,
        dims={"nO": nO, "nI": nI, "nP": nP},
        params={"W": None, "b": None},
    )
    if normalize:
        model = chain(model, LayerNorm(nI=nO))
    if dropout is not None:
        model = chain(model, Dropout(dropout))
    return model


def maxout_forward(
    model: Model[Floats2d, Floats2d], X: Floats2d, is_train: bool
) -> Tuple[Floats2d, Callable]:
    ops = model.ops
    nO, nP, nI = model.get_dim("nO"), model.get_dim("nP"), model.get_dim("nI")
    W = ops.reshape2f(model.get_param("W"), nO * nP, nI)
    Y = ops.xp.matmul(X, W.T)  # (n, nO * nP)
    Y += ops.reshape1f(model.get_param("b"), nO * nP)
    best, which = ops.maxout(ops.reshape3f(Y, Y.shape[0], nO, nP))

    def backprop(d_best: Floats2d) -> Floats2d:
        dZ = ops.backprop_maxout(d_best, which, nP)
        model.inc_grad("b", dZ.sum(axis=0))
        dY = ops.reshape2f(dZ, dZ.shape[0], nO * nP)
        model.inc_grad("W", ops.reshape3f(ops.xp.matmul(dY.T, X), nO, nP, nI))
        return ops.xp.matmul(dY, W)

    return best, backprop


def maxout_init(model: Model[Floats2d, Floats2d], X: Optional[Floats2d] = None, Y=None) -> None:
    if X is not None:
        model.set_dim("nI", get_width(X))
    shape = (model.get_dim("nO"), model.get_dim("nP"), model.get_dim("nI"))
    model.set_param("W", glorot_uniform_init(model.ops, shape))
    model.set_param("b", zero_init(model.ops, (model.get_dim("nO"), model.get_dim("nP"))))
