"""Annotate raw text with an existing spaCy pipeline into a "silver" DocBin.

Any installed or saved pipeline that sets `doc.ents` will do: a packaged one
(`en_core_web_sm` where available), an `entity_ruler` built from patterns, or a
`crf_ner` pipeline trained with this project. The DocBin carries the predicted
entities (and whatever else the pipeline sets: sentences, tags), so it can feed
`spacy train`, `python -m spacy_rnn evaluate` or the baselines like a gold corpus.

Inputs:
- `txt`:   a text file (one text per non-empty line) or a directory of `*.txt`
           files (one text per file);
- `jsonl`: one JSON object per line with a "text" field (or a bare JSON string);
- `tsv`/`csv`: a table with a header line; the texts are the `--text-key`
           column (e.g. "sentence" or "content" in SST-2);
- `nltk`:  an nltk corpus directory, e.g. `~/nltk_data/corpora/reuters`
           (categorised Reuters layout with `cats.txt` is recognised; any other
           directory is read as a plaintext corpus, one text per file).

Without a format, it comes from the input: a table by its extension or first
line (`converters.table`, the reader the converters use), an nltk corpus for a
directory without `*.txt` files, plain text otherwise. Files are read in
`encoding` (UTF-8 by default); bad input raises ValueError naming file and line.
"""
import json
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import spacy
from spacy.language import Language
from spacy.tokens import DocBin

from .converters.table import find_column, read_table, sniff_format
from .converters.util import ConversionError, read_lines

FORMATS = ("txt", "jsonl", "tsv", "csv", "nltk")


def load_ner_pipeline(model: Union[str, Path]) -> Language:
    """Load a pipeline by package name or path and check that it sets doc.ents."""
    try:
        nlp = spacy.load(model)
    except OSError as err:
        raise ValueError(
            f"could not load the pipeline {model!s}: give an installed package name or a "
            f"pipeline directory (e.g. training/ner/model-best). spaCy said: {err}"
        ) from None
    ner_pipes = ner_components(nlp)
    if not ner_pipes:
        raise ValueError(
            f"the pipeline {model!s} has no component that sets doc.ents "
            f"(components: {', '.join(nlp.pipe_names) or 'none'}); use a pipeline with "
            "ner, crf_ner or entity_ruler"
        )
    return nlp


def ner_components(nlp: Language) -> List[str]:
    """Names of the components that declare `assigns=["doc.ents"]`."""
    names = []
    for name in nlp.pipe_names:
        meta = nlp.get_pipe_meta(name)
        if any(a == "doc.ents" or a.startswith("token.ent_") for a in meta.assigns):
            names.append(name)
    return names


def _located(err: ConversionError) -> ValueError:
    """A reader's ConversionError as `path:line: message`, the form this module reports."""
    where = err.path if err.line is None else f"{err.path}:{err.line}"
    # `annotate` has --encoding but no --skip-invalid: drop that advice
    message = err.message.replace(", or --skip-invalid to leave such lines out", "")
    return ValueError(f"{where}: {message}")


def _read_txt(path: Path, encoding: str) -> Iterator[Tuple[str, str]]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise ValueError(f"{path}: no *.txt files in this directory")
        for file_ in files:
            try:
                text = file_.read_text(encoding=encoding).strip()
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{file_}: cannot decode as {encoding} ({err.reason} at byte {err.start}); "
                    "give the encoding with --encoding"
                ) from None
            if text:
                yield str(file_.relative_to(path)), text
        return
    try:
        lines = read_lines(path, encoding=encoding)
    except ConversionError as err:
        raise _located(err) from None
    for line_no, line in lines:
        text = (line or "").strip()
        if text:
            yield f"{path.name}:{line_no}", text


def _read_jsonl(path: Path, text_key: str, encoding: str) -> Iterator[Tuple[str, str]]:
    try:
        table = read_table(path, "jsonl", encoding=encoding)
    except ConversionError as err:
        raise _located(err) from None
    for row in table:
        if row.error is not None:
            raise ValueError(f"{path}:{row.line}: not valid JSON ({row.error})")
        record = row.values
        if isinstance(record, str):
            text = record
        elif isinstance(record, dict) and isinstance(record.get(text_key), str):
            text = record[text_key]
        else:
            shown = json.dumps(record, ensure_ascii=False)[:80]
            raise ValueError(
                f"{path}:{row.line}: expected an object with a string field {text_key!r} "
                f"(or a JSON string), got {shown}"
            )
        if text.strip():
            yield f"{path.name}:{row.line}", text


def _read_table(path: Path, text_key: str, fmt: str, encoding: str) -> Iterator[Tuple[str, str]]:
    try:
        table = read_table(path, fmt, header="first", encoding=encoding)
        if table.header is None:
            raise ConversionError("no header line found", path)
        col = find_column(
            table.header, text_key, (), "text", "--text-key", path, table.header_line
        )
    except ConversionError as err:
        raise _located(err) from None
    for row in table:
        if col >= len(row.values):
            raise ValueError(
                f"{path}:{row.line}: {len(row.values)} columns, expected {len(table.header)}"
            )
        if row.values[col].strip():
            yield f"{path.name}:{row.line}", row.values[col].strip()


def _read_nltk(path: Path) -> Iterator[Tuple[str, str]]:
    if not path.is_dir():
        raise ValueError(f"{path}: an nltk corpus is a directory (e.g. nltk_data/corpora/reuters)")
    import nltk.data
    from nltk.corpus.reader import CategorizedPlaintextCorpusReader, PlaintextCorpusReader

    # nltk only reads below its data roots (nltk.data.path); the user named
    # this directory explicitly, so it becomes one, as if it were in NLTK_DATA.
    root = str(path.resolve())
    if root not in nltk.data.path:
        nltk.data.path.append(root)
    if (path / "cats.txt").is_file() and ((path / "training").is_dir() or (path / "test").is_dir()):
        # The layout and encoding nltk itself uses for `nltk.corpus.reuters`.
        reader = CategorizedPlaintextCorpusReader(
            str(path), r"(training|test).*", cat_file="cats.txt", encoding="ISO-8859-2"
        )
    else:
        reader = PlaintextCorpusReader(
            str(path), r"(?!\.|README|LICENSE|cats\.txt).*", encoding="utf8"
        )
    fileids = [f for f in reader.fileids() if (path / f).is_file()]
    if not fileids:
        raise ValueError(f"{path}: no corpus files found")
    for fileid in fileids:
        text = reader.raw(fileid).strip()
        if text:
            yield fileid, text


def read_texts(
    path: Union[str, Path], fmt: str, text_key: str = "text", encoding: str = "utf-8"
) -> Iterator[Tuple[str, str]]:
    """Yield (source, text) pairs from `path` in format `fmt` (see FORMATS).

    Bad input raises ValueError naming the file and line (`path:line: ...`).
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown input format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise ValueError(f"input not found: {path}")
    if fmt == "txt":
        return _read_txt(path, encoding)
    if fmt == "jsonl":
        if path.is_dir():
            raise ValueError(f"{path}: --format jsonl expects a file")
        return _read_jsonl(path, text_key, encoding)
    if fmt in ("tsv", "csv"):
        if path.is_dir():
            raise ValueError(f"{path}: --format {fmt} expects a file")
        return _read_table(path, text_key, fmt, encoding)
    return _read_nltk(path)


def guess_format(path: Union[str, Path]) -> str:
    """The input format of `path`: a table format (see `converters.table.sniff_format`),
    "nltk" for a directory without *.txt files, else "txt"."""
    path = Path(path)
    if path.is_dir():
        return "txt" if any(path.glob("*.txt")) else "nltk"
    return sniff_format(path) or "txt"


def annotate(
    model: Union[str, Path],
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    *,
    fmt: Optional[str] = None,
    text_key: str = "text",
    limit: Optional[int] = None,
    batch_size: int = 64,
    encoding: str = "utf-8",
) -> Dict[str, Any]:
    """Run the pipeline over every text and save the docs as a DocBin.

    RETURNS (Dict[str, Any]): counts: docs, tokens, entities, per-label entities.
    """
    nlp = load_ner_pipeline(model)
    fmt = fmt or guess_format(input_path)
    sources = read_texts(input_path, fmt, text_key=text_key, encoding=encoding)
    if limit is not None:
        sources = (item for i, item in enumerate(sources) if i < limit)
    doc_bin = DocBin(store_user_data=False)
    labels: Counter = Counter()
    n_docs = n_tokens = 0
    texts = (text for _source, text in sources)
    for doc in nlp.pipe(texts, batch_size=batch_size):
        doc_bin.add(doc)
        n_docs += 1
        n_tokens += len(doc)
        labels.update(ent.label_ for ent in doc.ents)
    if n_docs == 0:
        raise ValueError(f"{input_path}: no text found (format {fmt})")
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    doc_bin.to_disk(output_path)
    return {
        "docs": n_docs,
        "tokens": n_tokens,
        "entities": sum(labels.values()),
        "labels": dict(sorted(labels.items())),
        "format": fmt,
        "components": ner_components(nlp),
    }
