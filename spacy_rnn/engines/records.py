"""What the engines share: texts with stable ids, one batch through the pipeline
with failing texts isolated, and a doc as a JSON line.

Every text gets an id that names it in reports and in the JSON output: the
JSONL `id` field when present, else `file:line` (or the file's relative path
for a directory of `*.txt` files, one text per file), and a sequence number
`seq` (its position in the input) that the writers order by.
"""
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc

from ..annotate import guess_format, read_texts

JSONL_SUFFIXES = (".jsonl", ".ndjson")


class Record(NamedTuple):
    """One input text: its position in the input, its id and the text."""

    seq: int
    id: str
    text: str


def jsonl_files(path: Path) -> List[Path]:
    """The JSONL files of a directory (recursively, sorted by relative path)."""
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in JSONL_SUFFIXES)


def input_format(path: Union[str, Path], fmt: Optional[str]) -> str:
    """The format to read `path` in: `fmt` if given; "jsonl" for a JSONL file or a
    directory holding JSONL files; else what `annotate.guess_format` says."""
    path = Path(path)
    if fmt:
        return fmt
    if path.is_dir() and jsonl_files(path):
        return "jsonl"
    return guess_format(path)


def _read_jsonl_file(
    path: Path, name: str, text_key: str, encoding: str
) -> Iterator[Tuple[str, str]]:
    """(id, text) of each JSON line: the `id` field if present, else name:line."""
    with path.open("r", encoding=encoding) as file_:
        for line_no, line in enumerate(file_, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}:{line_no}: cannot decode as {encoding} ({err.reason}); "
                    "give the encoding with --encoding"
                ) from None
            rid: Any = None
            if isinstance(record, str):
                text = record
            elif isinstance(record, dict) and isinstance(record.get(text_key), str):
                text = record[text_key]
                rid = record.get("id")
            else:
                raise ValueError(
                    f"{path}:{line_no}: expected an object with a string field {text_key!r} "
                    f"(or a JSON string), got {line.strip()[:80]!r}"
                )
            if rid is not None and not isinstance(rid, (str, int)):
                raise ValueError(f"{path}:{line_no}: the id field must be a string or an integer")
            if text.strip():
                yield (f"{name}:{line_no}" if rid is None else str(rid)), text


def read_records(
    path: Union[str, Path],
    fmt: Optional[str] = None,
    *,
    text_key: str = "text",
    limit: Optional[int] = None,
    encoding: str = "utf-8",
) -> Iterator[Record]:
    """Yield the input's texts in order, each with its seq and id.

    JSONL (a file, or a directory of JSONL files read in the order of their
    relative paths as one dataset) is read here, so that the `id` field is kept;
    every other format through `spacy_rnn.annotate.read_texts`.
    """
    path = Path(path)
    fmt = input_format(path, fmt)
    if fmt == "jsonl":
        if not path.exists():
            raise ValueError(f"input not found: {path}")
        if path.is_dir():
            files = jsonl_files(path)
            if not files:
                raise ValueError(f"{path}: no *.jsonl or *.ndjson files in this directory")
            pairs: Iterator[Tuple[str, str]] = (
                pair
                for file_ in files
                for pair in _read_jsonl_file(
                    file_, str(file_.relative_to(path)), text_key, encoding
                )
            )
        else:
            pairs = _read_jsonl_file(path, path.name, text_key, encoding)
    else:
        pairs = read_texts(path, fmt, text_key=text_key, encoding=encoding)
    for seq, (rid, text) in enumerate(pairs):
        if limit is not None and seq >= limit:
            return
        yield Record(seq, rid, text)


def annotate_batch(nlp: Language, texts: Sequence[str]) -> List[Tuple[Optional[Doc], str]]:
    """Run `nlp` over `texts`: (doc, "") for each text, or (None, error) for a
    text that makes the pipeline raise.

    The batch goes through `nlp.pipe` at once; if anything raises, every text of
    the batch is run again alone, so that only the failing ones are lost.
    """
    try:
        return [(doc, "") for doc in nlp.pipe(texts, batch_size=max(1, len(texts)))]
    except Exception:  # noqa: BLE001 - isolated text by text below
        pass
    results: List[Tuple[Optional[Doc], str]] = []
    for text in texts:
        try:
            results.append((nlp(text), ""))
        except Exception as err:  # noqa: BLE001 - reported with the text's id
            results.append((None, f"{type(err).__name__}: {err}"))
    return results


def entity_scores(doc: Doc) -> Dict[Tuple[int, int, str], float]:
    """(start_char, end_char, label) -> confidence, from the span groups that carry
    one score per span in `attrs["scores"]` (crf_ner writes them)."""
    scores: Dict[Tuple[int, int, str], float] = {}
    for group in doc.spans.values():
        values = group.attrs.get("scores")
        if values is None or len(values) != len(group):
            continue
        for span, score in zip(group, values):
            scores.setdefault((span.start_char, span.end_char, span.label_), float(score))
    return scores


def doc_record(doc: Doc, rid: str) -> Dict[str, Any]:
    """A doc as one JSON object: its id, entities (character offsets, label,
    text, confidence or null) and cats."""
    scores = entity_scores(doc)
    entities = [
        {
            "start": ent.start_char,
            "end": ent.end_char,
            "label": ent.label_,
            "text": ent.text,
            "confidence": scores.get((ent.start_char, ent.end_char, ent.label_)),
        }
        for ent in doc.ents
    ]
    return {"id": rid, "entities": entities, "cats": dict(doc.cats)}
