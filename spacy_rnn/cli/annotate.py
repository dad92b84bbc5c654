"""`python -m spacy_rnn annotate`: raw text -> silver DocBin with a spaCy NER
pipeline, in this process or on a pool of Ray workers (`--engine ray`)."""
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from . import app


@app.command("annotate")
def annotate_cli(
    model: str = typer.Argument(
        ...,
        metavar="MODEL",
        help="Installed pipeline name or pipeline directory with an NER component",
    ),
    input_path: Path = typer.Argument(
        ...,
        metavar="INPUT",
        help="Text file, directory of *.txt, JSONL file or directory of JSONL files, "
        "TSV/CSV with header, or nltk corpus directory",
    ),
    output: Path = typer.Argument(
        ...,
        metavar="OUTPUT",
        help="DocBin to write (.spacy), or a new directory for DocBin shards and a manifest",
    ),
    fmt: Optional[str] = typer.Option(
        None, "--format", "-f", help="txt, jsonl, tsv, csv or nltk (default: from the input)"
    ),
    text_key: str = typer.Option(
        "text", "--text-key", help="JSONL field or TSV/CSV column holding the text"
    ),
    encoding: str = typer.Option("utf-8", "--encoding", help="Encoding of the input files"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Annotate only the first N texts"),
    batch_size: int = typer.Option(64, "--batch-size", help="Texts per batch (per Ray task)"),
    engine: str = typer.Option(
        "local", "--engine", help="local (this process) or ray (a pool of Ray workers)"
    ),
    workers: Optional[int] = typer.Option(
        None,
        "--workers",
        help="Ray workers (default 2), or local processes (nlp.pipe n_process, default 1)",
    ),
    address: Optional[str] = typer.Option(
        None,
        "--address",
        help="Ray cluster to join (auto, or ray://host:port); default: a local "
        "instance on 127.0.0.1",
    ),
    jsonl: bool = typer.Option(
        False,
        "--jsonl",
        help="Also write one JSON line per doc (id, entities with offsets, labels, "
        "confidence, cats); directory output",
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Fail on a text the pipeline raises on instead of skipping it"
    ),
    shard_size: int = typer.Option(
        10000, "--shard-size", help="Docs per DocBin shard (directory output)"
    ),
    code: Optional[Path] = typer.Option(
        None, "--code", help="Python file with custom components, imported before loading"
    ),
    threads: str = typer.Option(
        "1", "--threads", help="Torch threads per Ray worker, or 'torch' to leave torch's own"
    ),
    ship_model: bool = typer.Option(
        False,
        "--ship-model",
        help="Send the pipeline to Ray workers as bytes instead of loading MODEL on each",
    ),
) -> None:
    """Annotate raw text with any spaCy pipeline that sets doc.ents (ner, crf_ner,
    entity_ruler) and save the docs as a silver DocBin for training or evaluation.
    Texts keep their ids (JSONL id field, else file:line); a text the pipeline
    fails on is reported by id and skipped (--strict: the run fails)."""
    from ..engines import annotate

    try:
        counts = annotate(
            model,
            input_path,
            output,
            engine=engine,
            workers=workers,
            address=address,
            fmt=fmt,
            text_key=text_key,
            limit=limit,
            batch_size=batch_size,
            encoding=encoding,
            jsonl=jsonl,
            strict=strict,
            shard_size=shard_size,
            code=code,
            threads=threads,
            ship_model=ship_model,
        )
    except (ValueError, ImportError) as err:
        msg.fail("Could not annotate", str(err), exits=1)
    msg.good(
        f"Annotated {counts['docs']:,} texts ({counts['tokens']:,} tokens, "
        f"{counts['entities']:,} entities) with {', '.join(counts['components'])} -> {output} "
        f"({counts['engine']}, {counts['texts_per_s']:,.0f} texts/s)"
    )
    if "startup_s" in counts:
        msg.info(
            f"Ray: {counts['startup_s']:.1f}s to start, {counts['first_result_s']:.1f}s more "
            f"to the first batch (workers up, pipeline loaded), {counts['annotate_s']:.1f}s "
            "annotating"
        )
    for item in counts["skipped"]:
        msg.warn(f"Skipped {item['id']}: {item['error']}")
    if counts["labels"]:
        msg.table(counts["labels"], header=("label", "entities"), divider=True)
