"""Calibration of confidences: do the probabilities a model gives mean what
they say?

Plain functions over (confidence, correct) pairs, so that NER entities (a
predicted span's CRF marginal against whether it is an exact gold entity) and
text classification (the predicted class's probability against the gold
class) share one implementation:

- expected calibration error (ECE, Naeini et al. 2015; Guo et al. 2017) over
  equal-mass bins (each bin holds the same number of predictions: the default,
  as equal-width bins leave the low-confidence bins nearly empty for a good
  model) and over equal-width bins for comparison;
- the Brier score (mean squared error of the confidence against 0/1);
- reliability-diagram rows (mean confidence, accuracy and count per bin);
- precision at confidence thresholds and the share of predictions above each;
- a temperature fitted by minimising the negative log-likelihood (Guo et al.
  2017's temperature scaling), for any model whose confidences are a
  function of one temperature;
- `calibrate_pipeline`: fit the temperature of every component of a spaCy
  pipeline that has one (`crf_ner`) on gold dev documents, what
  `python -m spacy_rnn calibrate` and the `spacy_rnn.calibrate.v1` callback
  (`[training.before_to_disk]`) run.
"""
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.util import registry
from thinc.api import Model

N_BINS = 15
THRESHOLDS = (0.5, 0.7, 0.9, 0.95)
EPS = 1e-12


def _arrays(confidences: Sequence[float], correct: Sequence[bool]) -> Tuple[numpy.ndarray, ...]:
    conf = numpy.asarray(confidences, dtype="float64").ravel()
    hit = numpy.asarray(correct, dtype="float64").ravel()
    if conf.shape != hit.shape:
        raise ValueError(
            f"calibration: {len(conf)} confidences but {len(hit)} correctness values"
        )
    if len(conf) and (numpy.isnan(conf).any() or conf.min() < 0.0 or conf.max() > 1.0):
        raise ValueError("calibration: confidences must lie in [0, 1]")
    return conf, hit


def bin_edges(confidences: Sequence[float], n_bins: int = N_BINS, mode: str = "mass") -> List[
    numpy.ndarray
]:
    """Index arrays of the predictions in each bin, in order of confidence.

    mode "mass": equal-mass bins (sorted by confidence, split into `n_bins`
    parts of sizes differing by at most one); "width": equal-width bins over
    [0, 1] (the last bin closed on the right), empty bins included.
    """
    conf = numpy.asarray(confidences, dtype="float64").ravel()
    if n_bins < 1:
        raise ValueError(f"calibration: n_bins must be at least 1, got {n_bins}")
    if mode == "mass":
        order = numpy.argsort(conf, kind="stable")
        return [part for part in numpy.array_split(order, n_bins)]
    if mode == "width":
        which = numpy.minimum((conf * n_bins).astype("int64"), n_bins - 1)
        return [numpy.flatnonzero(which == b) for b in range(n_bins)]
    raise ValueError(f"calibration: bin mode must be 'mass' or 'width', got {mode!r}")


def reliability(
    confidences: Sequence[float], correct: Sequence[bool], n_bins: int = N_BINS, mode: str = "mass"
) -> List[Dict[str, float]]:
    """One row per non-empty bin: mean confidence, accuracy, count."""
    conf, hit = _arrays(confidences, correct)
    rows = []
    for index in bin_edges(conf, n_bins, mode):
        if len(index):
            rows.append(
                {
                    "confidence": float(conf[index].mean()),
                    "accuracy": float(hit[index].mean()),
                    "count": int(len(index)),
                }
            )
    return rows


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], n_bins: int = N_BINS, mode: str = "mass"
) -> float:
    """sum over bins of |bin| / n * |accuracy - mean confidence|; 0.0 for no predictions."""
    conf, _ = _arrays(confidences, correct)
    if len(conf) == 0:
        return 0.0
    rows = reliability(confidences, correct, n_bins, mode)
    return float(sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / len(conf))


def brier_score(confidences: Sequence[float], correct: Sequence[bool]) -> float:
    """Mean of (confidence - correct)^2; 0.0 for no predictions."""
    conf, hit = _arrays(confidences, correct)
    return float(((conf - hit) ** 2).mean()) if len(conf) else 0.0


def binary_nll(confidences: Sequence[float], correct: Sequence[bool]) -> float:
    """Mean negative log-likelihood of the correctness under the confidences."""
    conf, hit = _arrays(confidences, correct)
    if len(conf) == 0:
        return 0.0
    conf = numpy.clip(conf, EPS, 1.0 - EPS)
    return float(-(hit * numpy.log(conf) + (1.0 - hit) * numpy.log(1.0 - conf)).mean())


def precision_at(
    confidences: Sequence[float], correct: Sequence[bool], thresholds: Sequence[float] = THRESHOLDS
) -> List[Dict[str, float]]:
    """For each threshold: the share of predictions with confidence >= it and
    their precision (None where no prediction reaches it)."""
    conf, hit = _arrays(confidences, correct)
    rows = []
    for threshold in thresholds:
        above = conf >= threshold
        n = int(above.sum())
        rows.append(
            {
                "threshold": float(threshold),
                "share": float(n / len(conf)) if len(conf) else 0.0,
                "count": n,
                "precision": float(hit[above].mean()) if n else None,
            }
        )
    return rows


def calibration_report(
    confidences: Sequence[float], correct: Sequence[bool], n_bins: int = N_BINS
) -> Dict[str, object]:
    """Every figure above for one set of predictions (JSON-ready)."""
    conf, hit = _arrays(confidences, correct)
    return {
        "n": int(len(conf)),
        "accuracy": float(hit.mean()) if len(conf) else 0.0,
        "mean_confidence": float(conf.mean()) if len(conf) else 0.0,
        "ece": expected_calibration_error(conf, hit, n_bins, "mass"),
        "ece_width": expected_calibration_error(conf, hit, n_bins, "width"),
        "brier": brier_score(conf, hit),
        "nll": binary_nll(conf, hit),
        "n_bins": n_bins,
        "reliability": reliability(conf, hit, n_bins, "mass"),
        "reliability_width": reliability(conf, hit, n_bins, "width"),
        "precision_at": precision_at(conf, hit),
    }


def fit_temperature(
    nll_at: Callable[[float], float], lower: float = 0.05, upper: float = 20.0, tol: float = 1e-3
) -> float:
    """The temperature T in [lower, upper] that minimises `nll_at(T)`.

    Golden-section search over log T: the NLL of temperature-scaled
    probabilities is unimodal in T in practice (Guo et al. 2017), and one
    evaluation of `nll_at` can be costly (a forward-backward over a dev set),
    so a derivative-free search with few evaluations fits best. T = 1 is
    returned when it is as good as the found optimum (never worse than
    leaving the model as it is).
    """
    if not 0 < lower < 1 < upper:
        raise ValueError(f"calibration: need 0 < lower < 1 < upper, got {lower}, {upper}")
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = math.log(lower), math.log(upper)
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll_at(math.exp(c)), nll_at(math.exp(d))
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll_at(math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll_at(math.exp(d))
    best_t, best = (math.exp(c), fc) if fc <= fd else (math.exp(d), fd)
    return 1.0 if nll_at(1.0) <= best else float(best_t)


def scale_probabilities(probs: numpy.ndarray, temperature: float) -> numpy.ndarray:
    """softmax(log p / T) row-wise: a classifier's probabilities at another
    temperature (its logits are log p up to a per-row constant)."""
    if temperature <= 0:
        raise ValueError(f"calibration: temperature must be > 0, got {temperature}")
    logits = numpy.log(numpy.clip(numpy.asarray(probs, dtype="float64"), EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = numpy.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def plot_reliability(
    reports: Dict[str, Dict[str, object]], path: str, title: str = "Reliability"
) -> str:
    """A reliability diagram (accuracy against mean confidence per equal-mass
    bin, the diagonal for perfect calibration) with one line per report, e.g.
    {"before": ..., "after": ...}; written as a PNG."""
    from .extras import require

    matplotlib = require("matplotlib", "plots", "reliability diagrams")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    for name, report in reports.items():
        rows = report["reliability"]
        ax.plot(
            [r["confidence"] for r in rows],
            [r["accuracy"] for r in rows],
            marker="o",
            label=f"{name} (ECE {report['ece']:.3f})",
        )
    ax.set_xlabel("confidence (mean per bin)")
    ax.set_ylabel("accuracy (per bin)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---- pipelines ---------------------------------------------------------------


def calibratable(nlp: Any) -> List[str]:
    """Names of the pipeline's components that can fit a temperature: crf_ner,
    and text classifiers over spacy_rnn.RNNTextCat with exclusive classes."""
    from .ml.textcat import has_temperature

    return [
        name
        for name, proc in nlp.pipeline
        if callable(getattr(proc, "calibrate", None))
        or (isinstance(getattr(proc, "model", None), Model) and has_temperature(proc.model))
    ]


def calibrate_textcat(
    proc: Any, examples: Sequence[Any], batch_size: int = 128
) -> Dict[str, float]:
    """Fit and set the softmax temperature of a text classifier over
    RNNTextCat (exclusive classes) on examples whose predicted docs are as it
    sees them and whose references hold the gold cats.

    The temperature minimises the negative log-likelihood of the gold class
    (Guo et al. 2017); with two classes that is the binary NLL of the
    predicted class's correctness, as for entities. The probabilities at
    temperature 1 are computed once: softmax(log p / T) = softmax(z / T).
    """
    from .ml.textcat import get_temperature, set_temperature

    labels = list(proc.labels)
    old = get_temperature(proc.model)
    set_temperature(proc.model, 1.0)
    try:
        docs = [eg.predicted for eg in examples]
        parts = [
            proc.model.ops.to_numpy(proc.predict(docs[i:i + batch_size]))
            for i in range(0, len(docs), batch_size)
        ]
    finally:
        set_temperature(proc.model, old)
    gold = []
    for i, eg in enumerate(examples):
        cats = eg.reference.cats
        if not cats or any(label not in cats for label in labels):
            raise ValueError(
                f"calibration: gold document {i} has cats {sorted(cats)}, expected {labels}"
            )
        gold.append(labels.index(max(labels, key=lambda name: cats[name])))
    if not gold:
        raise ValueError("calibration: no documents to calibrate the text classifier on")
    probs = numpy.concatenate(parts).astype("float64")
    gold = numpy.asarray(gold)
    rows = numpy.arange(len(gold))

    def nll_at(temperature: float) -> float:
        scaled = scale_probabilities(probs, temperature)
        return float(-numpy.log(numpy.clip(scaled[rows, gold], EPS, 1.0)).mean())

    temperature = fit_temperature(nll_at)
    set_temperature(proc.model, temperature)
    return {
        "temperature": float(temperature),
        "nll_before": nll_at(1.0),
        "nll_after": nll_at(temperature),
        "n": int(len(gold)),
        "accuracy": float((probs.argmax(1) == gold).mean()),
    }


def calibration_examples(
    nlp: Any, gold_docs: Sequence[Any], component: str, gold_preproc: bool = False
) -> List[Any]:
    """Examples for `component.calibrate`: un-annotated copies of the gold
    docs (their words and sentence starts; each gold sentence on its own with
    `gold_preproc`), run through the components before `component`, paired
    with the gold docs."""
    from spacy.training import Example

    from .evaluation import copy_doc

    golds = []
    for doc in gold_docs:
        if gold_preproc and len(doc) and doc.has_annotation("SENT_START"):
            golds.extend(sent.as_doc() for sent in doc.sents)
        else:
            golds.append(doc)
    docs = [copy_doc(doc, nlp.vocab) for doc in golds]
    for name, proc in nlp.pipeline:
        if name == component:
            break
        docs = list(proc.pipe(docs)) if hasattr(proc, "pipe") else [proc(doc) for doc in docs]
    else:
        raise ValueError(f"calibration: the pipeline has no component {component!r}")
    return [Example(doc, gold) for doc, gold in zip(docs, golds)]


def calibrate_pipeline(
    nlp: Any,
    gold_docs: Sequence[Any],
    gold_preproc: Optional[bool] = None,
    components: Optional[Sequence[str]] = None,
) -> Dict[str, Dict[str, float]]:
    """Fit the temperature of each calibratable component on gold docs.

    gold_preproc (Optional[bool]): run each gold sentence as a doc of its own;
        by default as the pipeline's dev corpus was read in training (its
        `gold_preproc`), as `evaluate` does.
    components (Optional[Sequence[str]]): the components to calibrate
        (default: every calibratable one).
    RETURNS: per component, what its `calibrate` reports (temperature, NLL
        before and after, ...).
    """
    from .evaluation import dev_corpus_config

    available = calibratable(nlp)
    names = list(components) if components is not None else available
    for name in names:
        if name not in available:
            raise ValueError(
                f"calibration: component {name!r} cannot be calibrated (calibratable: "
                f"{', '.join(available) or 'none'})"
            )
    if not names:
        raise ValueError(
            "calibration: the pipeline has no component with a temperature (crf_ner, or "
            "textcat over spacy_rnn.RNNTextCat with exclusive classes)"
        )
    if gold_preproc is None:
        gold_preproc = bool(dev_corpus_config(nlp.config).get("gold_preproc", False))
    results = {}
    for name in names:
        proc = nlp.get_pipe(name)
        if callable(getattr(proc, "calibrate", None)):
            examples = calibration_examples(nlp, gold_docs, name, gold_preproc)
            results[name] = proc.calibrate(examples)
        else:  # a text classifier: whole documents
            results[name] = calibrate_textcat(proc, calibration_examples(nlp, gold_docs, name))
    return results


@registry.callbacks("spacy_rnn.calibrate.v1")
def create_calibrate_callback(
    dev_path: Union[str, Path],
    gold_preproc: Optional[bool] = None,
    components: Optional[List[str]] = None,
) -> Callable[[Any], Any]:
    """A `[training.before_to_disk]` callback that fits the temperature of the
    pipeline's calibratable components on the gold DocBin at `dev_path` before
    each save, so that model-best and model-last ship calibrated.

        [training.before_to_disk]
        @callbacks = "spacy_rnn.calibrate.v1"
        dev_path = ${paths.dev}

    It runs the dev set once per saved checkpoint (every eval_frequency
    steps) on a copy of the pipeline, which is what gets saved: training
    goes on with the pipeline as it was. The fit only changes the
    confidences, never the predictions.
    """
    path = Path(dev_path)
    if not path.exists():
        raise ValueError(f"spacy_rnn.calibrate.v1: dev_path {path} not found")

    def calibrate_before_to_disk(nlp: Any) -> Any:
        import pickle

        from .evaluation import load_docs

        # A copy is calibrated and saved: training goes on with the pipeline as it was.
        calibrated = pickle.loads(pickle.dumps(nlp))
        docs = load_docs(path, calibrated.vocab)
        results = calibrate_pipeline(calibrated, docs, gold_preproc, components)
        for name, result in results.items():
            print(
                f"spacy_rnn.calibrate.v1: {name} temperature {result['temperature']:.3f} "
                f"(dev NLL {result['nll_before']:.4f} -> {result['nll_after']:.4f})"
            )
        return calibrated

    return calibrate_before_to_disk
