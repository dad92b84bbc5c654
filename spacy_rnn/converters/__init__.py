"""Corpus converters: CoNLL column files and text classification rows to spaCy
Docs (and DocBin files), and Docs back to CoNLL.

    from spacy_rnn.converters import read_conll, read_textcat, write_conll
    docs, stats = read_conll("train.txt", pos_col=1)
    docs, stats = read_textcat("train.tsv", label_map={"0": "NEG", "1": "POS"})

Bad input raises ConversionError, whose message names the file and the line.
"""

from .conll import DEFAULT_N_SENTS, doc_to_conll_rows, read_conll, write_conll
from .corpus import convert_file, detect_format, read_docbin, summary_path
from .textcat import LABEL_COLUMNS, TEXT_COLUMNS, parse_label_map, read_textcat
from .util import ConversionError, ConversionStats

__all__ = [
    "ConversionError",
    "ConversionStats",
    "DEFAULT_N_SENTS",
    "LABEL_COLUMNS",
    "TEXT_COLUMNS",
    "convert_file",
    "detect_format",
    "doc_to_conll_rows",
    "parse_label_map",
    "read_conll",
    "read_docbin",
    "read_textcat",
    "summary_path",
    "write_conll",
]
