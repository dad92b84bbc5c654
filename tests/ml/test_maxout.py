"""ml/maxout.py: the same outputs and gradients as thinc's Maxout, the same
parameters and layers (so models saved with thinc's Maxout load)."""
import numpy
from numpy.testing import assert_allclose
from thinc.api import Maxout as ThincMaxout
from thinc.api import fix_random_seed

from spacy_rnn.ml.maxout import Maxout


def test_maxout_matches_thinc():
    fix_random_seed(0)
    X = numpy.random.uniform(-1, 1, (7, 5)).astype("f")
    ours = Maxout(4, 5, nP=3, dropout=0.0, normalize=True)
    theirs = ThincMaxout(4, 5, nP=3, dropout=0.0, normalize=True)
    ours.initialize(X=X)
    theirs.initialize(X=X)
    assert [n.name for n in ours.walk()] == [n.name for n in theirs.walk()]
    theirs.from_bytes(ours.to_bytes())  # same structure and parameter shapes
    Y1, bp1 = ours.begin_update(X)
    Y2, bp2 = theirs.begin_update(X)
    assert_allclose(Y1, Y2, atol=1e-5)
    dY = numpy.random.uniform(-1, 1, Y1.shape).astype("f")
    assert_allclose(bp1(dY), bp2(dY), atol=1e-5)
    for a, b in zip(ours.walk(), theirs.walk()):
        for name in a.param_names:
            if a.has_grad(name):
                assert_allclose(a.get_grad(name), b.get_grad(name), atol=1e-5)
    assert any(n.has_grad("W") for n in ours.walk() if n.name == "maxout")
