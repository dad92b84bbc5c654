"""`python -m spacy_rnn evaluate GOLD.spacy (--model PATH | --predictions PRED.spacy)`.

Scores a spaCy pipeline (run over the gold words) or stored predictions against
a gold DocBin with `spacy_rnn.evaluation`, prints the tables and writes the
JSON metrics, a Markdown report, PNG plots and a displaCy page of the errors.
What it is doing (loading, predicting with a progress bar, scoring) is shown on
stderr, so that stdout holds the tables alone.
"""

from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from . import app
from ..evaluation import (
    dev_corpus_config,
    evaluate_docs,
    load_docs,
    predict_docs,
    write_metrics,
)
from ..reports import plot_metrics, print_summary, render_errors_html, write_report


def _status(text: str) -> None:
    """A progress line on stderr (stdout keeps the result tables)."""
    typer.echo(f"ℹ {text}", err=True)


@app.command("evaluate")
def evaluate_cli(
    gold: Path = typer.Argument(
        ..., metavar="GOLD", help="Gold DocBin (.spacy) with entities and/or text categories"
    ),
    model: Optional[Path] = typer.Option(
        None, "--model", "-m", help="spaCy pipeline to run over the gold words"
    ),
    predictions: Optional[Path] = typer.Option(
        None, "--predictions", "-p", help="Predicted DocBin, same docs in the same order"
    ),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the metrics as JSON"),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a Markdown report"),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Folder for PNG plots"),
    errors_html: Optional[Path] = typer.Option(
        None, "--displacy", help="Write a displaCy HTML page of the documents with errors"
    ),
    name: Optional[str] = typer.Option(
        None, "--name", help="System name used by `compare` (default: model or file name)"
    ),
    kind: str = typer.Option("model", "--kind", help="'model' or 'baseline', used by `compare`"),
    split: str = typer.Option(
        "test", "--split", help="Name of the evaluated split, used by `compare`"
    ),
    gold_preproc: Optional[bool] = typer.Option(
        None,
        "--gold-preproc/--no-gold-preproc",
        help="With --model: run each gold sentence as its own doc, or whole documents "
        "(default: as the pipeline's dev corpus was read in training, its gold_preproc)",
    ),
) -> None:
    """Score predictions: seqeval (default, strict), SemEval'13 modes, spaCy ents, textcat."""
    if (model is None) == (predictions is None):
        msg.fail("Give exactly one of --model PATH or --predictions PRED.spacy.", exits=1)
    try:
        _status(f"Loading {gold}")
        gold_docs = load_docs(gold)
        if model is not None:
            if not model.exists():
                raise ValueError(f"{model}: model path not found")
            import spacy

            _status(f"Loading the pipeline {model}")
            nlp = spacy.load(model)
            if gold_preproc is None:  # as the dev corpus was read in training
                gold_preproc = bool(dev_corpus_config(nlp.config).get("gold_preproc", False))
            unit = "sentence" if gold_preproc else "document"
            _status(f"Running {model} over {len(gold_docs):,} documents, one {unit} at a time")
            pred_docs = predict_docs(nlp, gold_docs, gold_preproc=gold_preproc, progress=True)
        else:
            pred_docs = load_docs(predictions, vocab=gold_docs[0].vocab if gold_docs else None)
        if not gold_docs:
            raise ValueError(f"{gold}: holds no documents")
        system = name or (model.name if model is not None else predictions.stem)
        metrics = {
            "meta": {
                "system": system,
                "kind": kind,
                "split": split,
                "gold": str(gold),
                "source": str(model or predictions),
                "gold_preproc": gold_preproc if model is not None else None,
            }
        }
        _status(f"Scoring {len(pred_docs):,} documents")
        metrics.update(evaluate_docs(gold_docs, pred_docs))
    except (ValueError, OSError) as err:
        msg.fail(f"Cannot evaluate {predictions or model} against {gold}: {err}", exits=1)
    print_summary(metrics)
    if output:
        msg.good(f"Metrics written to {write_metrics(metrics, output)}")
    if report:
        title = "Evaluation of " + metrics["meta"]["system"]
        msg.good(f"Report written to {write_report(metrics, report, title=title)}")
    if plots:
        for path in plot_metrics(metrics, plots):
            msg.good(f"Plot written to {path}")
    if errors_html:
        n = render_errors_html(gold_docs, pred_docs, errors_html)
        msg.good(f"{n} documents with errors shown in {errors_html}")
