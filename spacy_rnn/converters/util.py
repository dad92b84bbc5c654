"""What every converter shares: the error type, the statistics object, and
reading a file's lines with a clear error for missing, empty or undecodable
files."""

import codecs
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from spacy.language import Language

PathLike = Union[str, Path]

# How many repairs are listed one by one in a summary (all are counted).
MAX_REPAIR_EXAMPLES = 20
# Skipped lines listed in the error when --skip-invalid left nothing to convert.
MAX_LISTED_SKIPS = 10


@lru_cache(maxsize=8)
def blank_nlp(lang: str = "en") -> Language:
    """A blank pipeline per language, made once: its vocab and tokenizer are
    shared by the Docs of every conversion (as one nlp object's would be)."""
    import spacy

    try:
        return spacy.blank(lang)
    except ImportError as err:  # spaCy's unknown-language error is an ImportError
        raise ConversionError(f"unknown language {lang!r} (--lang): {err}") from None


class ConversionError(ValueError):
    """Bad converter input, with the file and (when known) the 1-based line.

    str(error) is one paragraph naming both, meant for the terminal as is.
    """

    def __init__(self, message: str, path: Optional[PathLike] = None, line: Optional[int] = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}, line {self.line}"
            where += ": "
        return where + self.message


@dataclass
class ConversionStats:
    """What a conversion read, made and left out; JSON-ready via to_dict().

    skipped holds one {"line", "reason"} record per line (or row) left out, so
    nothing is dropped silently; repairs counts the tags rewritten to make a
    sequence valid (the first MAX_REPAIR_EXAMPLES are listed in
    repair_examples).
    """

    input: str
    format: str
    output: Optional[str] = None
    documents: int = 0
    sentences: int = 0
    tokens: int = 0
    entities: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    scheme: Optional[str] = None
    scheme_detected: Optional[bool] = None
    repairs: int = 0
    repair_examples: List[Dict[str, Any]] = field(default_factory=list)
    skipped: List[Dict[str, Any]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def skip(self, line: Optional[int], reason: str) -> Dict[str, Any]:
        record = {"line": line, "reason": reason}
        self.skipped.append(record)
        return record

    def add_repair(self, line: Optional[int], old: str, new: str, message: str) -> None:
        self.repairs += 1
        if len(self.repair_examples) < MAX_REPAIR_EXAMPLES:
            self.repair_examples.append(
                {"line": line, "tag": old, "fixed": new, "message": message}
            )

    def to_dict(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {
            "input": self.input,
            "output": self.output,
            "format": self.format,
            "documents": self.documents,
        }
        if self.format == "conll":
            data.update(
                sentences=self.sentences,
                tokens=self.tokens,
                entities=dict(sorted(self.entities.items())),
                entities_total=sum(self.entities.values()),
                scheme=self.scheme,
                scheme_detected=self.scheme_detected,
                repairs=self.repairs,
                repair_examples=list(self.repair_examples),
            )
        else:
            data.update(labels=dict(sorted(self.labels.items())), tokens=self.tokens)
        data.update(
            skipped_lines=len(self.skipped), skipped=list(self.skipped), notes=list(self.notes)
        )
        return data


def _suggest_encoding(raw: bytes) -> str:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for candidate in ("utf-8", "cp1252"):
        try:
            raw.decode(candidate)
            return candidate
        except UnicodeDecodeError:
            pass
    return "latin-1"


def read_lines(
    path: PathLike,
    *,
    encoding: str = "utf-8",
    skip_invalid: bool = False,
    stats: Optional[ConversionStats] = None,
) -> List[Tuple[int, Optional[str]]]:
    """Read a text file as [(line number, line)] with line ends (LF or CRLF) removed.

    An undecodable line raises ConversionError naming the line and an encoding
    to try, or with skip_invalid=True is recorded in stats and returned as
    (line number, None). A UTF-8 byte order mark is dropped.
    """
    path = Path(path)
    if not path.exists():
        raise ConversionError("file not found", path)
    if path.is_dir():
        raise ConversionError("is a directory, expected a file", path)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConversionError(f"unknown encoding {encoding!r} (--encoding)", path) from None
    raw = path.read_bytes()
    if not raw.strip():
        raise ConversionError("file is empty", path)
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"
    raw_lines = raw.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()  # the final line end
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        text = None
        bad_line = raw.count(b"\n", 0, err.start) + 1
        if not skip_invalid:
            raise ConversionError(
                f"cannot decode byte {raw[err.start:err.start + 1]!r} as "
                f"{encoding.replace('-sig', '')} "
                f"(byte column {_column(raw, err.start)}); "
                f"the file is probably in another encoding: try --encoding "
                f"{_suggest_encoding(raw_lines[bad_line - 1])}, "
                "or --skip-invalid to leave such lines out",
                path,
                bad_line,
            ) from None
    if text is not None:
        lines = text.split("\n")
        if lines and lines[-1] == "" and raw.endswith(b"\n"):
            lines.pop()
        return [(i + 1, line[:-1] if line.endswith("\r") else line) for i, line in enumerate(lines)]
    result: List[Tuple[int, Optional[str]]] = []
    for i, raw_line in enumerate(raw_lines):
        try:
            line: Optional[str] = raw_line.decode(
                encoding if i == 0 else encoding.replace("-sig", "")
            )
        except UnicodeDecodeError:
            line = None
            if stats is not None:
                stats.skip(i + 1, f"undecodable bytes for encoding {encoding.replace('-sig', '')}")
        if line is not None and line.endswith("\r"):
            line = line[:-1]
        result.append((i + 1, line))
    return result


def _column(raw: bytes, offset: int) -> int:
    """1-based byte column of an offset within its line."""
    return offset - (raw.rfind(b"\n", 0, offset) + 1) + 1


def all_skipped_message(skipped: List[dict], unit: str) -> str:
    """The error when --skip-invalid left nothing: each skipped line and why.

    unit (str): what was skipped, e.g. "sentence" or "row".
    """
    listed = "; ".join(f"line {r['line']}: {r['reason']}" for r in skipped[:MAX_LISTED_SKIPS])
    more = len(skipped) - MAX_LISTED_SKIPS
    if more > 0:
        listed += f"; ... and {more:,} more"
    return (
        f"no {unit}s left: --skip-invalid skipped every {unit} "
        f"({len(skipped):,} invalid line(s)). {listed}"
    )
