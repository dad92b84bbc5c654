"""`python -m spacy_rnn baseline ner|textcat TRAIN DEV TEST --output DIR`.

Trains the classic machine-learning baselines (`spacy_rnn.baselines`) on gold
DocBins, writes dev and test predictions as DocBin plus their metrics JSON, so
that `evaluate` and `compare` treat them like any spaCy pipeline.
"""

from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from . import app
from ..baselines import NER_KINDS, run_ner_baseline, run_textcat_baseline
from ..evaluation import load_docs


def load_corpus(path: Path, what: str = "input"):
    """Docs of a DocBin (.spacy) or of a raw corpus file (CoNLL, TSV/CSV/JSONL, converted)."""
    if path.suffix == ".spacy":
        docs = load_docs(path)
    else:
        from ..converters import convert_file

        docs, _ = convert_file(path)
    if not docs:
        raise ValueError(f"{path}: the {what} file holds no documents")
    return docs


@app.command("baseline")
def baseline_cli(
    task: str = typer.Argument(
        ...,
        metavar="TASK",
        help="'ner' (token features: LogisticRegression, CRF) or 'textcat' "
        "(TF-IDF + LogReg)",
    ),
    train: Path = typer.Argument(
        ...,
        metavar="TRAIN",
        help="Training DocBin (.spacy) or raw corpus (CoNLL .txt, .tsv/.csv/.jsonl)",
    ),
    dev: Path = typer.Argument(..., metavar="DEV", help="Development DocBin or raw corpus"),
    test: Path = typer.Argument(..., metavar="TEST", help="Test DocBin or raw corpus"),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Folder for <system>-<split>.spacy and .json"
    ),
    kinds: str = typer.Option(
        ",".join(NER_KINDS), "--kinds", help="NER only: comma-separated subset of 'lr,crf'"
    ),
    max_iter: Optional[int] = typer.Option(
        None, "--max-iter", help="NER: LogisticRegression / CRF iterations (default 100)"
    ),
    c: Optional[float] = typer.Option(
        None,
        "--c",
        help="Inverse L2 strength C of LogisticRegression (NER: 1.0; textcat: chosen on dev)",
    ),
) -> None:
    """Train a classic ML baseline and write its dev/test predictions and metrics."""
    if task not in ("ner", "textcat"):
        msg.fail(f"Unknown task {task!r}: use 'ner' or 'textcat'.", exits=1)
    chosen: List[str] = [k.strip() for k in kinds.split(",") if k.strip()]
    bad = [k for k in chosen if k not in NER_KINDS]
    if task == "ner" and (bad or not chosen):
        msg.fail(f"--kinds {kinds!r}: each kind must be one of {', '.join(NER_KINDS)}.", exits=1)
    try:
        train_docs, dev_docs, test_docs = (
            load_corpus(train, "train"),
            load_corpus(dev, "dev"),
            load_corpus(test, "test"),
        )
        msg.info(f"Training the {task} baseline(s) on {len(train_docs)} documents")
        if task == "ner":
            results = run_ner_baseline(
                train_docs, dev_docs, test_docs, output, kinds=chosen, max_iter=max_iter, c=c
            )
        else:
            results = run_textcat_baseline(train_docs, dev_docs, test_docs, output, c=c)
    except (ValueError, ImportError) as err:
        msg.fail(f"Cannot run the {task} baseline: {err}", exits=1)
    rows = []
    for key, metrics in results.items():
        meta = metrics["meta"]
        if "ner" in metrics:
            ner = metrics["ner"]
            rows.append(
                (
                    key,
                    f"{100 * ner['seqeval']['default']['f']:.2f}",
                    f"{100 * ner['seqeval']['strict']['f']:.2f}",
                    f"{meta['train_seconds']:.0f}s",
                )
            )
        else:
            tc = metrics["textcat"]
            rows.append(
                (
                    key,
                    f"{100 * tc['accuracy']:.2f}",
                    f"{100 * tc['macro_f1']:.2f}",
                    f"{meta['train_seconds']:.0f}s",
                )
            )
    header = (
        ("system-split", "seqeval F1", "strict F1", "train")
        if task == "ner"
        else ("system-split", "accuracy", "macro F1", "train")
    )
    msg.table(rows, header=header, aligns=("l", "r", "r", "r"))
    msg.good(f"Predictions and metrics written to {output}")
