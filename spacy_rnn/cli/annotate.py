"""`python -m spacy_rnn annotate`: raw text -> silver DocBin with a spaCy NER pipeline."""
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from . import app


@app.command("annotate")
def annotate_cli(
    model: str = typer.Argument(..., help="Installed pipeline name or pipeline directory with an NER component"),
    input_path: Path = typer.Argument(..., help="Text file, directory of *.txt, JSONL, TSV/CSV with header, or nltk corpus directory"),
    output: Path = typer.Argument(..., help="DocBin to write (.spacy)"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="txt, jsonl, tsv, csv or nltk (default: from the input)"),
    text_key: str = typer.Option("text", "--text-key", help="JSONL field or TSV/CSV column holding the text"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Annotate only the first N texts"),
    batch_size: int = typer.Option(64, "--batch-size", help="nlp.pipe batch size"),
) -> None:
    """Annotate raw text with any spaCy pipeline that sets doc.ents (ner, crf_ner,
    entity_ruler) and save the docs as a silver DocBin for training or evaluation."""
    from ..annotate import annotate

    try:
        counts = annotate(model, input_path, output, fmt=fmt, text_key=text_key, limit=limit, batch_size=batch_size)
    except ValueError as err:
        msg.fail("Could not annotate", str(err), exits=1)
    msg.good(
        f"Annotated {counts['docs']:,} texts ({counts['tokens']:,} tokens, {counts['entities']:,} entities) "
        f"with {', '.join(counts['components'])} -> {output}"
    )
    if counts["labels"]:
        msg.table(counts["labels"], header=("label", "entities"), divider=True)
