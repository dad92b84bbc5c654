"""`python -m spacy_rnn evaluate GOLD.spacy (--model PATH | --predictions PRED.spacy)`.

Scores a spaCy pipeline (run over the gold words) or stored predictions against
a gold DocBin with `spacy_rnn.evaluation`, prints the tables and writes the
JSON metrics, a Markdown report, PNG plots and a displaCy page of the errors.
What it is doing (loading, predicting with a progress bar, scoring) is shown on
stderr, so that stdout holds the tables alone.
"""

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import typer
from wasabi import msg

from . import app
from ..evaluation import (
    dev_corpus_config,
    evaluate_docs,
    load_docs,
    missed_entities,
    missed_entity_probabilities,
    ner_calibration,
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
        ner = metrics.get("ner", {})
        if model is not None and "calibration" in ner:
            _status("Scoring the missed gold entities with the model")
            missed = missed_entities(gold_docs, pred_docs)
            probs = missed_entity_probabilities(nlp, gold_docs, missed, gold_preproc)
            ner["calibration"] = ner_calibration(gold_docs, pred_docs, missed_probs=probs)
    except (ValueError, OSError) as err:
        msg.fail(f"Cannot evaluate {predictions or model} against {gold}: {err}", exits=1)
    print_summary(metrics)
    print_calibration(metrics)
    if output:
        msg.good(f"Metrics written to {write_metrics(metrics, output)}")
    pngs = {}
    if plots:
        for path in plot_metrics(metrics, plots):
            msg.good(f"Plot written to {path}")
        for path in plot_calibration(metrics, plots):
            pngs[path.stem] = path
            msg.good(f"Plot written to {path}")
    if report:
        title = "Evaluation of " + metrics["meta"]["system"]
        path = write_report(metrics, report, title=title)
        with open(path, "a", encoding="utf8") as file:
            file.write(calibration_markdown(metrics, pngs, Path(path).parent))
        msg.good(f"Report written to {path}")
    if errors_html:
        n = render_errors_html(gold_docs, pred_docs, errors_html)
        msg.good(f"{n} documents with errors shown in {errors_html}")


# ---- calibration ------------------------------------------------------------

_TASKS = (("ner", "entities"), ("textcat", "classes"))


def _calibrations(metrics: Dict[str, Any]) -> List[Tuple[str, str, Dict[str, Any]]]:
    """(task, what is scored, calibration part) for each task with one."""
    return [
        (task, what, metrics[task]["calibration"])
        for task, what in _TASKS
        if "calibration" in metrics.get(task, {})
    ]


def _calibration_rows(part: Dict[str, Any]) -> List[List[str]]:
    rows = []
    for name in ("scores", "raw_scores"):
        if name in part:
            r = part[name]
            label = "confidence" if name == "scores" else "at temperature 1"
            rows.append(
                [label, f"{r['n']:,}", f"{r['accuracy']:.3f}", f"{r['mean_confidence']:.3f}",
                 f"{r['ece']:.4f}", f"{r['ece_width']:.4f}", f"{r['brier']:.4f}"]
            )
    return rows


_HEADER = ["scores", "n", "accuracy", "mean conf.", "ECE (mass)", "ECE (width)", "Brier"]


def _threshold_rows(report: Dict[str, Any]) -> List[List[str]]:
    return [
        [f">= {row['threshold']}", f"{row['count']:,}", f"{row['share']:.1%}",
         "-" if row["precision"] is None else f"{row['precision']:.3f}"]
        for row in report["precision_at"]
    ]


def print_calibration(metrics: Dict[str, Any]) -> None:
    """Calibration tables on stdout (after the score tables)."""
    for task, what, part in _calibrations(metrics):
        msg.divider(f"Calibration of the {task} confidences ({what})")
        msg.table(_calibration_rows(part), header=_HEADER, divider=True)
        msg.table(
            _threshold_rows(part["scores"]),
            header=["confidence", "n", "share", "precision"],
            divider=True,
        )
        if "missed" in part:
            m = part["missed"]
            msg.text(
                f"{m['n']:,} gold entities missed; the model gave them a mean probability of "
                f"{m['mean_probability']:.3f} (median {m['median_probability']:.3f}); "
                f"{m['share_at_least']['0.5']:.1%} had >= 0.5"
            )


def plot_calibration(metrics: Dict[str, Any], out_dir: Path) -> List[Path]:
    """A reliability diagram per task with confidences (before/after the
    temperature when both are there)."""
    from ..calibration import plot_reliability

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for task, what, part in _calibrations(metrics):
        reports = {"confidence": part["scores"]}
        if "raw_scores" in part:
            reports = {"temperature 1": part["raw_scores"], "calibrated": part["scores"]}
        path = out_dir / f"{task}_reliability.png"
        plot_reliability(reports, str(path), title=f"Reliability of the {task} {what}")
        paths.append(path)
    return paths


def _md_table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def calibration_markdown(metrics: Dict[str, Any], pngs: Dict[str, Path], base: Path) -> str:
    """The report's calibration section (empty when no task has confidences)."""
    parts = []
    for task, what, part in _calibrations(metrics):
        text = [f"\n## Calibration of the {task} confidences ({what})\n", part["unit"] + ".\n"]
        text.append(_md_table(_HEADER, _calibration_rows(part)))
        text.append("\n" + _md_table(
            ["confidence", "n", "share", "precision"], _threshold_rows(part["scores"])
        ))
        if "missed" in part:
            m = part["missed"]
            text.append(
                f"\nMissed gold entities: {m['n']:,}; probability the model gave them: mean "
                f"{m['mean_probability']:.3f}, median {m['median_probability']:.3f}; "
                + ", ".join(f"{share:.1%} >= {t}" for t, share in m["share_at_least"].items())
                + ".\n"
            )
        png = pngs.get(f"{task}_reliability")
        if png is not None:
            try:
                rel = os.path.relpath(png, base)
            except ValueError:
                rel = str(png)
            text.append(f"\n![reliability of the {task} confidences]({rel})\n")
        parts.append("".join(text))
    return "".join(parts)
