"""The registered NER scorer `spacy_rnn.seqeval_scorer.v1`.

Use it from a training config so that spaCy's training table shows seqeval F1
and `model-best` is chosen by it:

    [components.ner.scorer]
    @scorers = "spacy_rnn.seqeval_scorer.v1"

    [training.score_weights]
    seqeval_f = 1.0
    ents_f = 0.0

The scoring function `seqeval_score(examples, **kwargs) -> dict` returns
spaCy's own `ents_p`, `ents_r`, `ents_f`, `ents_per_type` (per document, as
`spacy.ner_scorer.v1`) plus, per sentence of the reference (conlleval's
unit; a doc without sentence boundaries is one sequence):
`seqeval_p`, `seqeval_r`, `seqeval_f` (default, conlleval-compatible mode),
`seqeval_strict_p`, `seqeval_strict_r`, `seqeval_strict_f` (strict IOB2 mode)
and `seqeval_per_type` ({TYPE: {p, r, f}}, default mode). With
`semeval = true` it adds `semeval_{strict,exact,partial,type}_f` (nervaluate).

seqeval and nervaluate (and scikit-learn, which seqeval imports) load only when the
scorer scores, so a pipeline that merely names this scorer stays a light runtime.
"""

from typing import Any, Callable, Dict, Iterable

from spacy.scorer import get_ner_prf
from spacy.training import Example
from spacy.util import registry


def seqeval_score(
    examples: Iterable[Example], *, semeval: bool = False, **kwargs: Any
) -> Dict[str, Any]:
    """spaCy ents_* scores plus seqeval (default and strict) scores, per reference sentence."""
    # Imported here, not at the top: evaluation imports seqeval, nervaluate and scikit-learn.
    from .evaluation import example_sequences, semeval_scores, seqeval_scores

    examples = list(examples)
    scores: Dict[str, Any] = dict(get_ner_prf(examples))
    gold_seqs, pred_seqs = example_sequences(examples)
    seq = seqeval_scores(gold_seqs, pred_seqs)
    for mode, prefix in (("default", "seqeval"), ("strict", "seqeval_strict")):
        for key in ("p", "r", "f"):
            scores[f"{prefix}_{key}"] = seq[mode][key]
    scores["seqeval_per_type"] = {
        label: {k: row[k] for k in ("p", "r", "f")}
        for label, row in seq["default"]["per_type"].items()
    }
    if semeval:
        for mode, row in semeval_scores(gold_seqs, pred_seqs).items():
            scores[f"semeval_{mode}_f"] = row["f"]
    return scores


@registry.scorers("spacy_rnn.seqeval_scorer.v1")
def make_seqeval_scorer(semeval: bool = False) -> Callable[..., Dict[str, Any]]:
    """Return the seqeval NER scorer (see the module docstring for its keys)."""

    def score(examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
        return seqeval_score(examples, semeval=semeval, **kwargs)

    return score
