"""File-level conversion: infer a corpus' format, convert it to a DocBin with a
JSON summary beside it, and read a DocBin back (for the reverse direction)."""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import srsly
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from .conll import read_conll
from .table import sniff_format
from .textcat import read_textcat
from .util import ConversionError, ConversionStats, PathLike, blank_nlp

FORMATS = ("auto", "conll", "tsv", "csv", "jsonl")


def summary_path(output: PathLike) -> Path:
    """Where the JSON summary of a conversion goes: train.spacy -> train.summary.json."""
    output = Path(output)
    return output.with_name(output.stem + ".summary.json")


def detect_format(path: PathLike, encoding: str = "utf-8", textcat_hint: bool = False) -> str:
    """Infer "conll", "tsv", "csv" or "jsonl" from a file's extension and first line.

    JSONL by extension or a first line holding a JSON object; TSV or CSV when
    the first line is a header naming a known text or label column (or, with
    textcat_hint, whenever the extension says .tsv/.csv); CoNLL otherwise.
    See `converters.table.sniff_format`.
    """
    return sniff_format(path, encoding, trust_extension=textcat_hint) or "conll"


def convert_file(
    input_path: PathLike,
    output_path: Optional[PathLike] = None,
    *,
    format: str = "auto",
    conll_options: Optional[Dict[str, Any]] = None,
    textcat_options: Optional[Dict[str, Any]] = None,
    encoding: str = "utf-8",
    skip_invalid: bool = False,
    write_summary: bool = True,
) -> Tuple[List[Doc], ConversionStats]:
    """Convert a corpus file to Docs and, given output_path, write them as a DocBin.

    format: "auto" (see detect_format), "conll", "tsv", "csv" or "jsonl".
    conll_options / textcat_options: keyword arguments for read_conll /
        read_textcat. With output_path, the summary (stats.to_dict()) is
        written as JSON to summary_path(output_path) unless write_summary is
        False. An existing directory as output_path receives
        <input stem>.spacy.
    """
    input_path = Path(input_path)
    if format not in FORMATS:
        raise ConversionError(
            f"unknown format {format!r}; expected one of {', '.join(FORMATS)}", input_path
        )
    if not input_path.exists():
        raise ConversionError("file not found", input_path)
    if input_path.suffix == ".spacy":
        raise ConversionError(
            "is already a spaCy DocBin; `spacy-rnn to-conll` writes one back as CoNLL",
            input_path,
        )
    if format == "auto":
        hint = bool(
            textcat_options and any(textcat_options.get(k) for k in ("text_col", "label_col"))
        )
        format = detect_format(input_path, encoding, textcat_hint=hint)
    if format == "conll":
        docs, stats = read_conll(
            input_path, encoding=encoding, skip_invalid=skip_invalid, **(conll_options or {})
        )
    else:
        docs, stats = read_textcat(
            input_path,
            format=format,
            encoding=encoding,
            skip_invalid=skip_invalid,
            **(textcat_options or {}),
        )
    if output_path is not None:
        output_path = Path(output_path)
        if output_path.is_dir():
            output_path = output_path / (input_path.stem + ".spacy")
        output_path.parent.mkdir(parents=True, exist_ok=True)
        DocBin(docs=docs, store_user_data=False).to_disk(output_path)
        stats.output = str(output_path)
        if write_summary:
            srsly.write_json(summary_path(output_path), stats.to_dict())
    return docs, stats


def read_docbin(path: PathLike, vocab: Optional[Vocab] = None, lang: str = "en") -> List[Doc]:
    """Load the Docs of a .spacy DocBin file, with a ConversionError on bad input."""
    path = Path(path)
    if not path.exists():
        raise ConversionError("file not found", path)
    if path.is_dir():
        raise ConversionError("is a directory, expected a .spacy file", path)
    if vocab is None:
        vocab = blank_nlp(lang).vocab
    try:
        return list(DocBin().from_disk(path).get_docs(vocab))
    except (ValueError, KeyError, TypeError, OSError, json.JSONDecodeError) as err:
        raise ConversionError(f"not a readable spaCy DocBin (.spacy) file: {err}", path) from None
    except Exception as err:  # msgpack/zlib errors have no common base class
        raise ConversionError(
            f"not a readable spaCy DocBin (.spacy) file ({type(err).__name__}: {err})", path
        ) from None
