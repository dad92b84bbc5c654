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
"""
import json
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import spacy
from spacy.language import Language
from spacy.tokens import DocBin

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


def _read_txt(path: Path) -> Iterator[Tuple[str, str]]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise ValueError(f"{path}: no *.txt files in this directory")
        for file_ in files:
            text = file_.read_text(encoding="utf8").strip()
            if text:
                yield str(file_.relative_to(path)), text
        return
    with path.open("r", encoding="utf8") as file_:
        for line_no, line in enumerate(file_, start=1):
            text = line.strip()
            if text:
                yield f"{path.name}:{line_no}", text


def _read_jsonl(path: Path, text_key: str) -> Iterator[Tuple[str, str]]:
    with path.open("r", encoding="utf8") as file_:
        for line_no, line in enumerate(file_, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None
            if isinstance(record, str):
                text = record
            elif isinstance(record, dict) and isinstance(record.get(text_key), str):
                text = record[text_key]
            else:
                raise ValueError(
                    f"{path}:{line_no}: expected an object with a string field {text_key!r} "
                    f"(or a JSON string), got {line.strip()[:80]!r}"
                )
            if text.strip():
                yield f"{path.name}:{line_no}", text


def _read_table(path: Path, text_key: str, delimiter: str) -> Iterator[Tuple[str, str]]:
    import csv

    with path.open("r", encoding="utf8", newline="") as file_:
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        reader = csv.reader(file_, delimiter=delimiter, quoting=quoting)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file")
        header = [h.strip() for h in header]
        if text_key not in header:
            raise ValueError(
                f"{path}:1: no column {text_key!r} in the header ({', '.join(header)}); "
                "name the text column with --text-key"
            )
        col = header.index(text_key)
        for row in reader:
            line_no = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if col >= len(row):
                raise ValueError(f"{path}:{line_no}: {len(row)} columns, expected {len(header)}")
            if row[col].strip():
                yield f"{path.name}:{line_no}", row[col].strip()


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
        reader = PlaintextCorpusReader(str(path), r"(?!\.|README|LICENSE|cats\.txt).*", encoding="utf8")
    fileids = [f for f in reader.fileids() if (path / f).is_file()]
    if not fileids:
        raise ValueError(f"{path}: no corpus files found")
    for fileid in fileids:
        text = reader.raw(fileid).strip()
        if text:
            yield fileid, text


def read_texts(path: Union[str, Path], fmt: str, text_key: str = "text") -> Iterator[Tuple[str, str]]:
    """Yield (source, text) pairs from `path` in format `fmt` (txt, jsonl or nltk)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown input format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise ValueError(f"input not found: {path}")
    if fmt == "txt":
        return _read_txt(path)
    if fmt == "jsonl":
        if path.is_dir():
            raise ValueError(f"{path}: --format jsonl expects a file")
        return _read_jsonl(path, text_key)
    if fmt in ("tsv", "csv"):
        if path.is_dir():
            raise ValueError(f"{path}: --format {fmt} expects a file")
        return _read_table(path, text_key, "\t" if fmt == "tsv" else ",")
    return _read_nltk(path)


def guess_format(path: Union[str, Path]) -> str:
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return "jsonl"
    if path.suffix.lower() in (".tsv", ".csv"):
        return path.suffix.lower()[1:]
    if path.is_dir() and not any(path.glob("*.txt")):
        return "nltk"
    return "txt"


def annotate(
    model: Union[str, Path],
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    *,
    fmt: Optional[str] = None,
    text_key: str = "text",
    limit: Optional[int] = None,
    batch_size: int = 64,
) -> Dict[str, Any]:
    """Run the pipeline over every text and save the docs as a DocBin.

    RETURNS (Dict[str, Any]): counts: docs, tokens, entities, per-label entities.
    """
    nlp = load_ner_pipeline(model)
    fmt = fmt or guess_format(input_path)
    sources = read_texts(input_path, fmt, text_key=text_key)
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
