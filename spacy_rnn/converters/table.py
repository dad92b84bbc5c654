"""The one reader of text tables: TSV, CSV and JSONL files of texts and labels.

Used by the text classification converter, `annotate` and the benchmark's
corpus slicing, so that all three agree on what a table is:

- the format comes from the extension (.tsv, .csv, .jsonl/.ndjson/.json) or,
  where the extension says nothing, from the first line (a JSON object; a
  tab- or comma-separated line naming a known text or label column);
- TSV fields are taken literally (no quoting: texts such as SST-2's keep their
  quote characters); CSV follows the csv module's (RFC 4180) quoting, so a
  quoted field may hold the separator, quotes and line breaks;
- the header is the first non-blank row: always (`header="first"`), or only
  when it names a known column (`header="auto"`), or never (`header="none"`);
- LF and CRLF line ends, a UTF-8 byte order mark and blank lines are allowed;
  undecodable bytes, malformed CSV and missing files raise ConversionError
  naming the file and the line.

Rows carry the lines they came from (a quoted CSV field can span several), so
a caller can copy a slice of the file byte for byte.
"""

import csv
import json
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

from .util import ConversionError, ConversionStats, PathLike, read_lines

TEXT_COLUMNS = ("text", "sentence", "content", "review", "document", "tweet")
LABEL_COLUMNS = ("label", "labels", "sentiment", "class", "category")
KNOWN_COLUMNS = frozenset(TEXT_COLUMNS + LABEL_COLUMNS)
TABLE_FORMATS = ("tsv", "csv", "jsonl")
HEADER_MODES = ("first", "auto", "none")
EXTENSIONS = {
    ".tsv": "tsv",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_SEPARATORS = (("tsv", "\t"), ("csv", ","))


@dataclass(frozen=True)
class TableRow:
    """One row of a table.

    line, end_line (int): the 1-based lines the row spans (equal unless a
        quoted CSV field holds line breaks).
    values (Any): the cells (List[str]) of a TSV/CSV row; the parsed JSON value
        of a JSONL line; None when `error` is set.
    error (Optional[str]): why the row could not be parsed (JSONL: invalid
        JSON); the caller decides whether that stops it.
    """

    line: int
    end_line: int
    values: Any
    error: Optional[str] = None


@dataclass
class Table:
    """A table being read: its format, header (TSV/CSV) and rows (an iterator,
    consumed once)."""

    path: Path
    format: str
    header: Optional[List[str]] = None
    header_line: Optional[int] = None
    header_end_line: Optional[int] = None
    rows: Iterator[TableRow] = field(default_factory=lambda: iter(()))

    def __iter__(self) -> Iterator[TableRow]:
        return self.rows


def format_from_extension(path: PathLike) -> Optional[str]:
    """The table format an extension implies (".tsv" -> "tsv"), or None."""
    return EXTENSIONS.get(Path(path).suffix.lower())


def looks_like_header(cells: Sequence[str]) -> bool:
    """Whether a row names a known text or label column (case-insensitive)."""
    return any(_clean(cell) in KNOWN_COLUMNS for cell in cells)


def first_line(path: PathLike, encoding: str = "utf-8") -> str:
    """The first non-blank line of a file (BOM and line end removed; undecodable
    bytes replaced), or "" for a missing or blank file. For sniffing only."""
    try:
        with Path(path).open("rb") as file_:
            head = file_.read(65536)
    except OSError:
        return ""
    for raw in head.split(b"\n"):
        line = raw.decode(encoding, errors="replace").lstrip("\ufeff").rstrip("\r")
        if line.strip():
            return line
    return ""


def sniff_format(
    path: PathLike, encoding: str = "utf-8", *, trust_extension: bool = True
) -> Optional[str]:
    """"tsv", "csv" or "jsonl" when the file is a text table, else None (e.g. CoNLL columns).

    JSONL: the extension says so, or the first line is a JSON object ({...}).
    TSV/CSV: the first line is separated by tabs/commas and names a known text
    or label column; or, with trust_extension, the extension is .tsv/.csv
    (a table without a header).
    """
    by_extension = format_from_extension(path)
    line = first_line(path, encoding).strip()
    if by_extension == "jsonl" or (line.startswith("{") and line.endswith("}")):
        return "jsonl"
    for fmt, sep in _SEPARATORS:
        if sep in line and looks_like_header(_split(fmt, line)):
            return fmt
    if trust_extension and by_extension in ("tsv", "csv"):
        return by_extension
    return None


def find_column(
    header: Sequence[str],
    wanted: Optional[Union[str, int]],
    defaults: Sequence[str],
    what: str,
    option: str,
    path: PathLike,
    line: Optional[int],
) -> int:
    """Index of a column in a header: `wanted` by name (exact, then
    case-insensitive) or 0-based index, or else the first of `defaults` found.

    what (str): what the column holds ("text", "label"), for messages.
    option (str): the command-line option that names the column, for messages.
    """
    lowered = [_clean(h) for h in header]
    if wanted is None:
        for name in defaults:
            if name in lowered:
                return lowered.index(name)
        raise ConversionError(
            f"no {what} column found in the header {list(header)!r} "
            f"(looked for {', '.join(defaults)}); name it with {option}",
            path,
            line,
        )
    if isinstance(wanted, int) or (wanted.isdigit() and wanted not in header):
        index = int(wanted)
        if not 0 <= index < len(header):
            raise ConversionError(
                f"{option} {wanted} is out of range: the header has {len(header)} column(s)",
                path,
                line,
            )
        return index
    if wanted in header:
        return list(header).index(wanted)
    if wanted.strip().lower() in lowered:
        return lowered.index(wanted.strip().lower())
    raise ConversionError(
        f"no column {wanted!r} in the header ({', '.join(header)}); "
        f"name the {what} column with {option}",
        path,
        line,
    )


def read_table(
    path: PathLike,
    format: Optional[str] = None,
    *,
    header: str = "first",
    encoding: str = "utf-8",
    skip_invalid: bool = False,
    stats: Optional[ConversionStats] = None,
) -> Table:
    """Open a TSV, CSV or JSONL file as a Table.

    format (Optional[str]): "tsv", "csv" or "jsonl"; None: from the extension.
    header (str): "first" (the first non-blank row is the header), "auto" (it
        is when it names a known text or label column) or "none". JSONL has
        no header row.
    encoding (str): the file's encoding; undecodable bytes raise a
        ConversionError naming the line and an encoding to try, unless
        skip_invalid, which leaves such lines out (recorded in stats).
    stats (Optional[ConversionStats]): where left-out lines are recorded
        (undecodable, blank after the first row).
    RETURNS (Table): header read, rows read lazily in file order.
    """
    path = Path(path)
    if format is None:
        format = format_from_extension(path)
        if format is None:
            raise ConversionError(
                f"cannot tell the format from the extension {path.suffix!r}: "
                "give --format tsv, csv or jsonl",
                path,
            )
    if format not in TABLE_FORMATS:
        raise ConversionError(
            f"unknown table format {format!r}; expected one of {', '.join(TABLE_FORMATS)}", path
        )
    if header not in HEADER_MODES:
        raise ValueError(f"header must be one of {', '.join(HEADER_MODES)}, got {header!r}")
    lines = read_lines(path, encoding=encoding, skip_invalid=skip_invalid, stats=stats)
    rows = _rows(path, format, lines, stats)
    table = Table(path, format, rows=rows)
    if format == "jsonl" or header == "none":
        return table
    first = next(rows, None)
    if first is None:
        return table
    if header == "first" or looks_like_header(first.values):
        table.header = list(first.values)
        table.header_line, table.header_end_line = first.line, first.end_line
    else:
        table.rows = chain([first], rows)
    return table


def _clean(cell: str) -> str:
    return cell.strip().strip('"').strip().lower()


def _split(format: str, line: str) -> List[str]:
    if format == "tsv":
        return line.split("\t")
    return next(csv.reader([line]), [])


def _rows(
    path: Path,
    format: str,
    lines: List[Tuple[int, Optional[str]]],
    stats: Optional[ConversionStats],
) -> Iterator[TableRow]:
    """Every non-blank row; blank lines after the first row go to stats."""
    seen = False
    records = _csv_records(path, lines) if format == "csv" else _line_records(format, lines)
    for row in records:
        if isinstance(row, int):  # the number of a blank line
            if seen and stats is not None:
                stats.skip(row, "blank line")
            continue
        seen = True
        yield row


def _line_records(
    format: str, lines: List[Tuple[int, Optional[str]]]
) -> Iterator[Union[TableRow, int]]:
    for line_no, line in lines:
        if line is None:
            continue  # undecodable, left out by read_lines (and recorded there)
        if not line.strip() and not (format == "tsv" and "\t" in line):
            yield line_no  # blank (a TSV line of tabs is a row of empty cells)
        elif format == "tsv":
            yield TableRow(line_no, line_no, line.split("\t"))
        else:
            try:
                yield TableRow(line_no, line_no, json.loads(line))
            except json.JSONDecodeError as err:
                yield TableRow(
                    line_no, line_no, None, f"invalid JSON: {err.msg} (column {err.colno})"
                )


def _csv_records(
    path: Path, lines: List[Tuple[int, Optional[str]]]
) -> Iterator[Union[TableRow, int]]:
    span: List[int] = []  # the lines fed into the record being parsed

    def feed() -> Iterator[str]:
        for line_no, line in lines:
            if line is None:
                continue
            span.append(line_no)
            yield line + "\n"

    # strict: a stray quote is an error naming its row, not a field that
    # silently swallows the rest of the file
    reader = csv.reader(feed(), strict=True)
    while True:
        span.clear()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            line = span[0] if span else None
            raise ConversionError(
                f"malformed CSV in the row starting on this line: {err}", path, line
            ) from None
        first, last = span[0], span[-1]
        if len(cells) <= 1 and not "".join(cells).strip() and first == last:
            yield first
        else:
            yield TableRow(first, last, cells)
