"""`spacy-rnn convert` (corpus file -> DocBin) and `spacy-rnn to-conll` (DocBin -> CoNLL).

Errors on bad input are printed as one paragraph naming the file and line,
with exit status 1; no traceback.
"""

from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from ..converters import (
    ConversionError,
    ConversionStats,
    convert_file,
    parse_label_map,
    read_docbin,
    summary_path,
    write_conll,
)
from . import app


def _fail(err: Exception) -> None:
    msg.fail(str(err), exits=1)


def print_summary(stats: ConversionStats) -> None:
    """Print a conversion's summary on the terminal."""
    data = stats.to_dict()
    target = f" -> {stats.output}" if stats.output else ""
    if stats.format == "conll":
        scheme = f"{stats.scheme} ({'detected' if stats.scheme_detected else 'given'})"
        msg.good(
            f"{stats.input}{target}: {stats.documents:,} docs, {stats.sentences:,} sentences, "
            f"{stats.tokens:,} tokens, {data['entities_total']:,} entities; scheme {scheme}; "
            f"{stats.repairs:,} tag repair(s)"
        )
        rows = [(label, f"{n:,}") for label, n in sorted(stats.entities.items())]
        if rows:
            msg.table(rows, header=("Entity type", "Entities"), aligns=("l", "r"))
        for example in stats.repair_examples[:5]:
            msg.text(f"  repaired line {example['line']}: {example['message']}")
        if stats.repairs > 5:
            msg.text(f"  ... {stats.repairs - 5:,} more repair(s), see the JSON summary")
    else:
        msg.good(f"{stats.input}{target}: {stats.documents:,} docs, {stats.tokens:,} tokens")
        rows = [(label, f"{n:,}") for label, n in sorted(stats.labels.items())]
        msg.table(rows, header=("Label", "Docs"), aligns=("l", "r"))
    if stats.skipped:
        msg.warn(f"{len(stats.skipped):,} line(s) skipped")
        for record in stats.skipped[:10]:
            msg.text(f"  line {record['line']}: {record['reason']}")
        if len(stats.skipped) > 10:
            msg.text(f"  ... {len(stats.skipped) - 10:,} more, see the JSON summary")
    for note in stats.notes:
        msg.info(note)


@app.command("convert")
def convert_cli(
    input_path: Path = typer.Argument(
        ..., metavar="INPUT", help="Corpus file: CoNLL columns, or TSV/CSV/JSONL rows"
    ),
    output_path: Path = typer.Argument(
        ..., metavar="OUTPUT", help="DocBin to write (.spacy), or an existing directory"
    ),
    file_format: str = typer.Option(
        "auto", "--format", "-f", help="auto, conll, tsv, csv or jsonl"
    ),
    scheme: str = typer.Option(
        "auto", "--scheme", "-s", help="CoNLL tag scheme: auto, IO, IOB1, IOB2/BIO, IOBES, BILUO"
    ),
    token_col: int = typer.Option(
        0, "--token-col", help="CoNLL token column (0-based, negative from the end)"
    ),
    tag_col: int = typer.Option(-1, "--tag-col", help="CoNLL entity tag column (default: last)"),
    pos_col: Optional[int] = typer.Option(
        None, "--pos-col", help="CoNLL column stored as token.tag_ (1 for CoNLL-2003)"
    ),
    n_sents: Optional[int] = typer.Option(
        None,
        "--n-sents",
        "-n",
        help="Sentences per Doc (default: one Doc per -DOCSTART- document, else 10)",
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Invalid tag sequences are errors instead of being repaired"
    ),
    text_col: Optional[str] = typer.Option(
        None,
        "--text-col",
        help="Text column name or index (default: text/sentence/content/review...)",
    ),
    label_col: Optional[str] = typer.Option(
        None, "--label-col", help="Label column name or index (default: label/labels/sentiment...)"
    ),
    label_map: Optional[str] = typer.Option(
        None, "--label-map", "--labels", help="Rename labels, e.g. 0=NEG,1=POS"
    ),
    label_set: Optional[str] = typer.Option(
        None,
        "--label-set",
        help="All category names, comma-separated, when a file may lack some (e.g. NEG,POS)",
    ),
    multilabel: bool = typer.Option(
        False, "--multilabel", help="Rows may hold several labels (not exclusive)"
    ),
    label_sep: str = typer.Option(
        ",", "--label-sep", help="Separator of several labels in one cell (--multilabel)"
    ),
    encoding: str = typer.Option("utf-8", "--encoding", help="Input encoding"),
    skip_invalid: bool = typer.Option(
        False,
        "--skip-invalid",
        help="Skip invalid lines or rows (each reported) instead of failing",
    ),
    lang: str = typer.Option("en", "--lang", help="Language of the blank vocab/tokenizer"),
) -> None:
    """Convert a corpus file (CoNLL columns, or TSV/CSV/JSONL rows) to a spaCy DocBin.

    A summary is printed and written as JSON beside the output
    (train.spacy -> train.summary.json).
    """
    try:
        docs, stats = convert_file(
            input_path,
            output_path,
            format=file_format.lower(),
            conll_options=dict(
                token_col=token_col,
                tag_col=tag_col,
                pos_col=pos_col,
                scheme=scheme,
                n_sents=n_sents,
                strict=strict,
                lang=lang,
            ),
            textcat_options=dict(
                text_col=text_col,
                label_col=label_col,
                label_map=_label_map(label_map, input_path),
                labels=_label_set(label_set),
                multilabel=multilabel,
                label_sep=label_sep,
                lang=lang,
            ),
            encoding=encoding,
            skip_invalid=skip_invalid,
        )
    except ConversionError as err:
        _fail(err)
        return
    except OSError as err:
        _fail(ConversionError(f"cannot write the output: {err.strerror or err}", output_path))
        return
    print_summary(stats)
    msg.info(f"Summary written to {summary_path(stats.output or output_path)}")


def _label_set(spec: Optional[str]) -> Optional[List[str]]:
    """--label-set "NEG,POS" -> ["NEG", "POS"]; None when not given."""
    return [x.strip() for x in spec.split(",") if x.strip()] if spec else None


def _label_map(spec: Optional[str], path: Path):
    try:
        return parse_label_map(spec)
    except ValueError as err:
        raise ConversionError(f"{err} (--label-map)", path) from None


@app.command("to-conll")
def to_conll_cli(
    input_path: Path = typer.Argument(..., metavar="INPUT", help="DocBin (.spacy) with entities"),
    output_path: Path = typer.Argument(..., metavar="OUTPUT", help="CoNLL file to write"),
    scheme: str = typer.Option(
        "IOB2", "--scheme", "-s", help="Tag scheme to write: IO, IOB1, IOB2/BIO, IOBES, BILUO"
    ),
    pos: Optional[bool] = typer.Option(
        None, "--pos/--no-pos", help="Write token.tag_ as a column (default: when present)"
    ),
    docstart: bool = typer.Option(
        True, "--docstart/--no-docstart", help="A -DOCSTART- line before each Doc"
    ),
    lang: str = typer.Option("en", "--lang", help="Language of the vocab to load the DocBin with"),
) -> None:
    """Write the entities of a DocBin as a CoNLL file, the reverse of `convert`.

    Columns: token, token.tag_ (when present), entity tag in --scheme.
    """
    try:
        from ..schemes import normalize_scheme

        try:
            scheme = normalize_scheme(scheme)
        except ValueError as err:
            raise ConversionError(f"{err} (--scheme)", input_path) from None
        docs = read_docbin(input_path, lang=lang)
        output_path.parent.mkdir(parents=True, exist_ok=True)
        stats = write_conll(docs, output_path, scheme=scheme, pos=pos, docstart=docstart)
    except ConversionError as err:
        _fail(err)
        return
    except OSError as err:
        _fail(ConversionError(f"cannot write the output: {err.strerror or err}", output_path))
        return
    stats.input = str(input_path)
    msg.good(
        f"{input_path} -> {output_path}: {stats.documents:,} docs, {stats.sentences:,} sentences, "
        f"{stats.tokens:,} tokens, {sum(stats.entities.values()):,} entities in {scheme}"
    )
