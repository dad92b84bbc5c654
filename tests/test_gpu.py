"""The GPU path (thinc's CupyOps + torch on CUDA): training, prediction and
serialization between CPU and GPU. Skipped where there is no CUDA device;
run them with `python -m pytest tests/test_gpu.py` on a CUDA machine."""
import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import fix_random_seed, get_current_ops

from helpers import (
    crf_ner_nlp,
    crf_tagger_config,
    ent_tuples,
    rnn_textcat_config,
    textcat_nlp,
    tok2vec_config,
)

torch = pytest.importorskip("torch")
try:
    from thinc.compat import has_cupy_gpu
except ImportError:  # pragma: no cover
    has_cupy_gpu = False

# float32 on the GPU sums in another order than on the CPU (and cuDNN picks its
# algorithm by batch shape): results agree to ~1e-4, not bit for bit. A padding
# leak or a wrong device shows up as differences of order 1e-1.
GPU_ATOL = 1e-3

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and has_cupy_gpu), reason="needs a CUDA GPU with cupy"
)

NER_MODEL = crf_tagger_config(
    "v1", tok2vec_config(32, depth=2, cell="lstm", char_width=16, char_encoder="lstm")
)

# CRFTagger.v3: the same with the language-model objective (one BiLSTM layer).
LM_MODEL = crf_tagger_config(
    "v3",
    tok2vec_config(32, depth=1, cell="lstm", char_width=16, char_encoder="lstm"),
    lm_words=40,
    lm_weight=0.1,
)


SENTS = [
    ("Peter Blackburn met Anna in Berlin .", [(0, 2, "PER"), (3, 4, "PER"), (5, 6, "LOC")]),
    ("The European Commission said on Thursday it disagreed .", [(1, 3, "ORG")]),
    ("Germany 's representative to the EU said so .", [(0, 1, "LOC"), (5, 6, "ORG")]),
    ("Paris and London are far from Tokyo", [(0, 1, "LOC"), (2, 3, "LOC"), (6, 7, "LOC")]),
    ("Anna Schmidt works for Siemens in Munich .", [(0, 2, "PER"), (4, 5, "ORG"), (6, 7, "LOC")]),
    ("Nothing happened here .", []),
]


@pytest.fixture
def gpu():
    spacy.require_gpu(0)
    yield
    spacy.require_cpu()


def examples(nlp):
    out = []
    for text, ents in SENTS:
        words = text.split()
        tags = ["O"] * len(words)
        for s, e, label in ents:
            tags[s:e] = [f"B-{label}"] + [f"I-{label}"] * (e - s - 1)
        out.append(Example(Doc(nlp.vocab, words=words), Doc(nlp.vocab, words=words, ents=tags)))
    return out


def train(nlp, n_steps=40):
    """The losses of each step (crf_ner, and crf_ner_lm with the objective)."""
    egs = examples(nlp)
    optimizer = nlp.initialize(lambda: egs)
    optimizer.learn_rate = 0.02
    steps = []
    for _ in range(n_steps):
        losses = {}
        nlp.update(egs, sgd=optimizer, losses=losses)
        steps.append(losses)
    return steps


def predict(nlp):
    docs = list(nlp.pipe([Doc(nlp.vocab, words=text.split()) for text, _ in SENTS], batch_size=4))
    return ent_tuples(docs)


def torch_devices(nlp):
    return {p.device.type for shim in nlp.get_pipe("crf_ner").model.walk() for s in shim.shims
            for p in s._model.parameters()}


@pytest.mark.parametrize("model_config", [NER_MODEL, LM_MODEL], ids=["v1", "v3-lm-objective"])
def test_crf_ner_trains_on_gpu_and_moves_to_cpu(gpu, model_config):
    """With CRFTagger.v3 the objective's softmax runs in torch on the GPU and
    its targets come from numpy; both losses fall."""
    fix_random_seed(0)
    nlp = crf_ner_nlp(model_config)
    steps = train(nlp)
    assert type(get_current_ops()).__name__ == "CupyOps"
    assert torch_devices(nlp) == {"cuda"}
    assert steps[-1]["crf_ner"] < steps[0]["crf_ner"] / 10
    model = nlp.get_pipe("crf_ner").model
    if model_config is LM_MODEL:
        assert type(model.get_ref("lm_objective").get_param("W")).__module__.startswith("cupy")
        assert all(numpy.isfinite(s["crf_ner_lm"]) for s in steps)
        assert steps[-1]["crf_ner_lm"] < steps[0]["crf_ner_lm"] * 0.9
    assert nlp.evaluate(examples(nlp))["ents_f"] >= 0.9
    gpu_ents = predict(nlp)
    data = nlp.to_bytes()
    spacy.require_cpu()
    cpu_nlp = crf_ner_nlp(model_config).from_bytes(data)
    assert torch_devices(cpu_nlp) == {"cpu"}
    assert predict(cpu_nlp) == gpu_ents


def test_crf_ner_trained_on_cpu_predicts_the_same_on_gpu(gpu, tmp_path):
    spacy.require_cpu()
    fix_random_seed(0)
    nlp = crf_ner_nlp(NER_MODEL)
    train(nlp, n_steps=30)
    cpu_ents = predict(nlp)
    assert sum(map(len, cpu_ents)) >= 5  # trained: the comparison is not between empty lists
    words = SENTS[0][0].split()
    cpu_scores = nlp.get_pipe("crf_ner").model.predict([Doc(nlp.vocab, words=words)])
    nlp.to_disk(tmp_path / "model")
    spacy.require_gpu(0)
    gpu_nlp = spacy.load(tmp_path / "model")
    assert torch_devices(gpu_nlp) == {"cuda"}
    assert predict(gpu_nlp) == cpu_ents
    gpu_model = gpu_nlp.get_pipe("crf_ner").model
    gpu_scores = gpu_model.predict([Doc(gpu_nlp.vocab, words=words)])
    for a, b in zip(cpu_scores, gpu_scores):
        numpy.testing.assert_allclose(numpy.asarray(a), gpu_model.ops.to_numpy(b), atol=GPU_ATOL)


def test_encoder_alone_equals_batched_on_gpu(gpu):
    """cuDNN's packed sequences: padding must not leak into shorter docs."""
    fix_random_seed(0)
    from spacy_rnn.ml.encode import BiRNNEncoder

    for cell in ("lstm", "gru"):
        model = BiRNNEncoder(width=16, depth=2, cell=cell, bidirectional=True)
        ops = model.ops
        Xs = [ops.asarray2f(numpy.random.uniform(-1, 1, (n, 16)).astype("f"))
              for n in (7, 1, 3, 12)]
        model.initialize(X=Xs)
        batched = model.predict(Xs)
        for X, Y in zip(Xs, batched):
            alone = ops.to_numpy(model.predict([X])[0])
            numpy.testing.assert_allclose(alone, ops.to_numpy(Y), atol=GPU_ATOL / 10)


@pytest.mark.parametrize("version,extra", [
    ("v1", {}),
    ("v2", {"lm_words": 30, "lm_weight": 0.01}),  # + language-model objective
])
def test_rnn_textcat_trains_on_gpu(gpu, version, extra):
    fix_random_seed(0)
    tok2vec = tok2vec_config(32, attrs=["NORM"], rows=[500], char_encoder=None)
    nlp = textcat_nlp(rnn_textcat_config(version, tok2vec, pooling="attention", nO=None, **extra))
    texts = [("a great and moving film", 1), ("dull , tired and bad", 0), ("great fun", 1),
             ("bad", 0)]
    egs = [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(y), "NEG": 1.0 - y}})
           for t, y in texts]
    optimizer = nlp.initialize(lambda: egs)
    model = nlp.get_pipe("textcat").model
    lm_losses = []
    for _ in range(40):
        nlp.update(egs, sgd=optimizer)
        if model.has_ref("lm_objective"):
            lm_losses.append(model.get_ref("lm_objective").attrs["loss"])
    if extra:
        assert numpy.isfinite(lm_losses[-1]) and lm_losses[-1] < lm_losses[0]
    docs = list(nlp.pipe([t for t, _ in texts]))
    assert [int(doc.cats["POS"] > 0.5) for doc in docs] == [y for _, y in texts]


def _lm_loss_and_grads(nlp):
    from thinc.api import set_dropout_rate

    model = nlp.get_pipe("crf_ner").model
    set_dropout_rate(model, 0.0)
    lm = model.get_ref("lm_objective")
    docs = [eg.predicted for eg in examples(nlp)]
    Ys, backprop = lm.begin_update(docs)
    backprop([lm.ops.alloc2f(*Y.shape) for Y in Ys])
    return lm.attrs["loss"], lm.ops.to_numpy(lm.get_grad("W")), lm.ops.to_numpy(lm.get_grad("b"))


def test_lm_objective_loss_and_gradients_on_gpu_match_cpu(gpu):
    """The same weights give the same objective and output-layer gradients on
    either device (a wrong row, column or target shows up as a large gap)."""
    spacy.require_cpu()
    fix_random_seed(0)
    nlp = crf_ner_nlp(LM_MODEL)
    train(nlp, n_steps=5)
    data = nlp.to_bytes()
    cpu_loss, cpu_dW, cpu_db = _lm_loss_and_grads(nlp)
    assert cpu_loss > 0 and numpy.abs(cpu_dW).max() > 0
    spacy.require_gpu(0)
    gpu_nlp = crf_ner_nlp(LM_MODEL).from_bytes(data)
    assert torch_devices(gpu_nlp) == {"cuda"}
    gpu_loss, gpu_dW, gpu_db = _lm_loss_and_grads(gpu_nlp)
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-4)
    numpy.testing.assert_allclose(gpu_dW, cpu_dW, atol=GPU_ATOL)
    numpy.testing.assert_allclose(gpu_db, cpu_db, atol=GPU_ATOL)
