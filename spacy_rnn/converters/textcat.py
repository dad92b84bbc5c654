"""Text classification rows (TSV, CSV or JSONL with a header) -> spaCy Docs.

Each row becomes one Doc whose text is the row's text, unchanged (spaCy's
tokenizer keeps every character), with `doc.cats` holding every label of the
corpus: one-hot for exclusive classes (the default), 0/1 per label with
`multilabel=True`. Without a label map the raw label values are the category
names (SST-2 gives cats "0" and "1"); `label_map={"0": "NEG", "1": "POS"}`
renames them, and a label outside the map is then an error. The rows are read
by `converters.table`, the reader `annotate` and the benchmark share.
"""

from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc

from .table import (
    LABEL_COLUMNS,
    TABLE_FORMATS,
    TEXT_COLUMNS,
    Table,
    find_column,
    format_from_extension,
    read_table,
)
from .util import ConversionError, ConversionStats, PathLike, all_skipped_message, blank_nlp

FORMATS = TABLE_FORMATS


def parse_label_map(spec: Optional[str]) -> Optional[Dict[str, str]]:
    """Parse "0=NEG,1=POS" into {"0": "NEG", "1": "POS"} (None stays None)."""
    if spec is None or not spec.strip():
        return None
    mapping: Dict[str, str] = {}
    for item in spec.split(","):
        raw, sep, name = item.partition("=")
        if not sep or not raw.strip() or not name.strip():
            raise ValueError(
                f"Invalid label map item {item!r} in {spec!r}: expected RAW=NAME, e.g. 0=NEG,1=POS"
            )
        if raw.strip() in mapping:
            raise ValueError(f"Label {raw.strip()!r} is mapped twice in {spec!r}")
        mapping[raw.strip()] = name.strip()
    return mapping


def read_textcat(
    path: PathLike,
    *,
    format: Optional[str] = None,
    text_col: Optional[Union[str, int]] = None,
    label_col: Optional[Union[str, int]] = None,
    label_map: Optional[Dict[str, str]] = None,
    labels: Optional[Sequence[str]] = None,
    multilabel: bool = False,
    label_sep: str = ",",
    nlp: Optional[Language] = None,
    lang: str = "en",
    encoding: str = "utf-8",
    skip_invalid: bool = False,
) -> Tuple[List[Doc], ConversionStats]:
    """Read labelled texts into Docs with doc.cats.

    format (Optional[str]): "tsv", "csv" or "jsonl"; None infers it from the
        extension (.tsv, .csv, .jsonl/.ndjson/.json).
    text_col, label_col: header names (or 0-based indices) of the text and
        label columns (JSONL: keys). Defaults: the first header name out of
        TEXT_COLUMNS and LABEL_COLUMNS (case-insensitive).
    label_map (Optional[Dict[str, str]]): raw label -> category name; a raw
        label outside it is an error. See parse_label_map.
    labels (Optional[Sequence[str]]): the full category set, in order, when a
        file may lack some (e.g. a small dev file); default: the label map's
        names, else the sorted labels found.
    multilabel (bool): a row may hold several labels (split on label_sep, or a
        JSON list); doc.cats gives 1.0 to each. Otherwise the classes are
        exclusive and doc.cats is one-hot.
    nlp: the pipeline whose tokenizer makes the Docs (default: blank `lang`).
    skip_invalid (bool): leave out (and report) rows without text, with an
        unknown label, a wrong column count or undecodable bytes instead of
        raising ConversionError.
    RETURNS (docs, stats).
    """
    if format is None:
        format = format_from_extension(path)
        if format is None:
            raise ConversionError(
                f"cannot tell the format from the extension {Path(path).suffix!r}: "
                "give --format tsv, csv or jsonl",
                path,
            )
    if format not in FORMATS:
        raise ConversionError(
            f"unknown text classification format {format!r}; expected one of {FORMATS}", path
        )
    stats = ConversionStats(input=str(path), format=format)
    table = read_table(
        path, format, header="first", encoding=encoding, skip_invalid=skip_invalid, stats=stats
    )

    def invalid(line_no: Optional[int], message: str) -> None:
        if not skip_invalid:
            raise ConversionError(
                message + " (use --skip-invalid to skip such rows)", path, line_no
            )
        stats.skip(line_no, message)

    records: List[Tuple[int, str, List[str]]] = []  # (line, text, raw labels)
    if format == "jsonl":
        rows = _jsonl_records(table, text_col, label_col, invalid)
    else:
        rows = _table_records(table, text_col, label_col, invalid)
    for line_no, text, raw_label in rows:
        if not isinstance(text, str) or not text.strip():
            invalid(line_no, "the row has no text")
            continue
        if multilabel:
            if isinstance(raw_label, list):
                raw_labels = [str(x).strip() for x in raw_label]
            else:
                raw_labels = [x.strip() for x in _label_str(raw_label).split(label_sep)]
            raw_labels = [x for x in raw_labels if x]
        else:
            raw = _label_str(raw_label).strip() if not isinstance(raw_label, list) else ""
            if not raw:
                invalid(line_no, f"the row has no label (got {raw_label!r})")
                continue
            raw_labels = [raw]
        unknown = [x for x in raw_labels if label_map is not None and x not in label_map]
        if unknown:
            invalid(
                line_no,
                f"unknown label {unknown[0]!r}: the label map knows "
                f"{', '.join(map(repr, label_map or {}))}",
            )
            continue
        names = [label_map[x] if label_map is not None else x for x in raw_labels]
        if labels is not None and any(n not in labels for n in names):
            bad = next(n for n in names if n not in labels)
            invalid(
                line_no, f"unknown label {bad!r}: the label set is {', '.join(map(repr, labels))}"
            )
            continue
        records.append((line_no, text, names))
    if not records:
        if stats.skipped:
            raise ConversionError(all_skipped_message(stats.skipped, "row"), path)
        raise ConversionError("no rows with text and label found", path)
    if labels is not None:
        label_set = list(labels)
    elif label_map is not None:
        label_set = list(dict.fromkeys(label_map.values()))
    else:
        label_set = sorted({n for _, _, names in records for n in names})
    if nlp is None:
        nlp = blank_nlp(lang)
    docs = []
    for (line_no, text, names), doc in zip(records, nlp.tokenizer.pipe(r[1] for r in records)):
        present = set(names)
        doc.cats = {label: 1.0 if label in present else 0.0 for label in label_set}
        for name in names:
            stats.labels[name] += 1
        stats.tokens += len(doc)
        docs.append(doc)
    for label in label_set:
        stats.labels.setdefault(label, 0)
    stats.documents = len(docs)
    if multilabel:
        stats.notes.append("multi-label: doc.cats holds 1.0 for each label of a row")
    else:
        stats.notes.append(f"exclusive classes: one-hot doc.cats over {label_set}")
    return docs, stats


def _label_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    return str(value)


InvalidRow = Callable[[Optional[int], str], None]
Record = Tuple[int, Any, Any]  # (line, text, raw label)


def _table_records(
    table: Table,
    text_col: Optional[Union[str, int]],
    label_col: Optional[Union[str, int]],
    invalid: InvalidRow,
) -> Iterator[Record]:
    """(line, text, label) of each TSV/CSV row; the header names the columns."""
    header, path = table.header, table.path
    if header is None:
        raise ConversionError("no header line found", path)
    t = find_column(header, text_col, TEXT_COLUMNS, "text", "--text-col", path, table.header_line)
    lab = find_column(
        header, label_col, LABEL_COLUMNS, "label", "--label-col", path, table.header_line
    )
    for row in table:
        if len(row.values) != len(header):
            invalid(
                row.line,
                f"this row has {len(row.values)} column(s) but the header "
                f"(line {table.header_line}) has {len(header)}",
            )
            continue
        yield row.line, row.values[t], row.values[lab]


def _jsonl_records(
    table: Table,
    text_col: Optional[Union[str, int]],
    label_col: Optional[Union[str, int]],
    invalid: InvalidRow,
) -> Iterator[Record]:
    """(line, text, label) of each JSON object; the first object's keys name the fields."""
    keys: Optional[Tuple[str, str]] = None
    for row in table:
        if row.error is not None:
            invalid(row.line, row.error)
            continue
        obj = row.values
        if not isinstance(obj, dict):
            invalid(row.line, f"expected a JSON object per line, got {type(obj).__name__}")
            continue
        if keys is None:
            header = list(obj)
            t = find_column(header, text_col, TEXT_COLUMNS, "text", "--text-col", table.path,
                            row.line)
            lab = find_column(header, label_col, LABEL_COLUMNS, "label", "--label-col",
                              table.path, row.line)
            keys = (header[t], header[lab])
        yield row.line, obj.get(keys[0]), obj.get(keys[1])
