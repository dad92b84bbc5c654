"""The figures of a trained system: dev and test metrics from `spacy_rnn.evaluation`,
and the headline figures the tables show."""
from pathlib import Path
from typing import Any, Dict


def headline(task: str, metrics: Dict[str, Any]) -> Dict[str, float]:
    """The figures the tables show, from a `spacy_rnn.evaluation` metrics dict."""
    if task == "ner":
        ner = metrics["ner"]
        return {
            "f1": ner["seqeval"]["default"]["f"],
            "f1_strict": ner["seqeval"]["strict"]["f"],
            "semeval_partial_f1": ner["semeval"]["partial"]["f"],
            "p": ner["seqeval"]["default"]["p"],
            "r": ner["seqeval"]["default"]["r"],
        }
    tc = metrics["textcat"]
    return {"accuracy": tc["accuracy"], "macro_f1": tc["macro_f1"]}


def evaluate_model(
    model_dir: Path, data: Dict[str, Path], out_dir: Path, name: str
) -> Dict[str, Dict[str, Any]]:
    """Dev and test metrics of a trained pipeline (also written as JSON to out_dir)."""
    import spacy

    from ..evaluation import evaluate_docs, load_docs, predict_docs, reads_documents, write_metrics

    nlp = spacy.load(model_dir)
    # NER systems read one gold sentence at a time, as CoNLL-2003 systems are run
    # (`spacy evaluate --gold-preproc`), unless the pipeline was trained and tuned on
    # whole documents: then it reads whole documents, as its dev corpus did.
    gold_preproc = not reads_documents(nlp.config)
    out = {}
    for split in ("dev", "test"):
        gold = load_docs(data[split], vocab=nlp.vocab)
        pred = predict_docs(nlp, gold, gold_preproc=gold_preproc)
        metrics = {"meta": {"system": name, "kind": "model", "split": split,
                            "source": str(model_dir), "gold_preproc": gold_preproc}}
        metrics.update(evaluate_docs(gold, pred))
        write_metrics(metrics, out_dir / f"{name}-{split}.json")
        out[split] = metrics
    return out
