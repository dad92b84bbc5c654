"""Dropout at a fixed rate of its own.

spaCy's pipes call `set_dropout_rate(model, [training] dropout)` on every
update, which sets the "dropout_rate" attr of every node that has one. A
node that should keep its own rate (the pooled vector of RNNTextCat, the
encoder output of CRFTagger.v2) stores it under another name.
"""
from typing import Callable, Tuple

from thinc.api import Model
from thinc.types import Floats2d


def fixed_dropout(rate: float) -> Model[Floats2d, Floats2d]:
    """Inverted dropout at `rate` in training, the identity otherwise."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {rate}")
    return Model("fixed_dropout", _fixed_dropout_forward, attrs={"fixed_dropout_rate": rate})


def _fixed_dropout_forward(model: Model, X: Floats2d, is_train: bool) -> Tuple[Floats2d, Callable]:
    rate = model.attrs["fixed_dropout_rate"]
    if not is_train or rate == 0:
        return X, lambda dY: dY
    mask = model.ops.get_dropout_mask(X.shape, rate)  # 0 or 1/(1-rate)
    return X * mask, lambda dY: dY * mask
