"""CoNLL column files <-> spaCy Docs.

`read_conll` reads any number of whitespace- or tab-separated columns (CoNLL-
2003's `token POS chunk NER`, WNUT's `token tag`, ...), one token a line and a
blank line between sentences. Every `-DOCSTART-` line is a document marker,
whatever its other columns (`spacy convert` only knows `-DOCSTART- -X- O O` and
turns CoNLL-2003's `-DOCSTART- -X- -X- O` lines into one-token sentences).
Tags in any scheme of :mod:`spacy_rnn.schemes` are detected or given, invalid
sequences are repaired and counted, and each Doc carries its entities (every
other token explicitly `O`), its sentence starts and optionally the POS column
as `token.tag_`. `write_conll` writes Docs back in any scheme, so a conversion
round-trips.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, TextIO, Tuple, Union

from spacy.tokens import Doc
from spacy.vocab import Vocab

from .. import schemes
from .util import (
    ConversionError,
    ConversionStats,
    PathLike,
    all_skipped_message,
    blank_nlp,
    read_lines,
)

DOCSTART = "-DOCSTART-"
# A byte-order mark inside a file (some public CoNLL files end with a line
# holding only one) is not text: such a line counts as blank.
BOM = "\ufeff"
# Skipped lines listed one by one in the error when every sentence was skipped.
# Sentences per Doc for files without -DOCSTART- markers (as `spacy convert -n 10`).
DEFAULT_N_SENTS = 10


@dataclass
class _Sentence:
    lines: List[int] = field(default_factory=list)
    words: List[str] = field(default_factory=list)
    tags: List[str] = field(default_factory=list)
    pos: List[str] = field(default_factory=list)
    bad: List[dict] = field(default_factory=list)  # skip records of invalid lines


def _column_index(index: int, n_cols: int, option: str, path: PathLike, line: int) -> int:
    resolved = index + n_cols if index < 0 else index
    if not 0 <= resolved < n_cols:
        raise ConversionError(
            f"{option} is {index}, but the file's lines have {n_cols} column(s) "
            f"(columns count from 0; negative values count from the end)",
            path,
            line,
        )
    return resolved


def _parse(
    path: PathLike,
    lines: Sequence[Tuple[int, Optional[str]]],
    token_col: int,
    tag_col: int,
    pos_col: Optional[int],
    scheme: Optional[str],
    skip_invalid: bool,
    stats: ConversionStats,
) -> Tuple[List[List[_Sentence]], bool]:
    """Split lines into documents of sentences, checking columns and tags."""
    documents: List[List[_Sentence]] = [[]]
    has_markers = False
    n_cols: Optional[int] = None
    use_tabs = False
    first_token_line = 0
    cols = (0, 0, None)
    current = _Sentence()
    undecodable = {rec["line"]: rec for rec in stats.skipped}

    def close_sentence() -> None:
        nonlocal current
        if current.bad:
            span = f"{current.lines[0]}-{current.lines[-1]}" if current.lines else "?"
            for record in current.bad:
                record["reason"] += f"; its sentence (lines {span}) was skipped"
        elif current.words:
            documents[-1].append(current)
        current = _Sentence()

    def invalid(line_no: int, message: str) -> None:
        if not skip_invalid:
            raise ConversionError(
                message + " (use --skip-invalid to skip the sentences that hold such lines)",
                path,
                line_no,
            )
        current.bad.append(stats.skip(line_no, message))

    for line_no, line in lines:
        if line is None:  # undecodable, already recorded by read_lines
            current.lines.append(line_no)
            current.bad.append(undecodable[line_no])
            continue
        if BOM in line:
            line = line.replace(BOM, "")
        if not line.strip():
            close_sentence()
            continue
        stripped = line.strip()
        if stripped.startswith(DOCSTART) and stripped.split(None, 1)[0] == DOCSTART:
            close_sentence()
            has_markers = True
            documents.append([])
            continue
        if n_cols is None:
            use_tabs = "\t" in line
            fields = _split(line, use_tabs)
            n_cols = len(fields)
            first_token_line = line_no
            cols = (
                _column_index(token_col, n_cols, "--token-col", path, line_no),
                _column_index(tag_col, n_cols, "--tag-col", path, line_no),
                (
                    None
                    if pos_col is None
                    else _column_index(pos_col, n_cols, "--pos-col", path, line_no)
                ),
            )
            if n_cols < 2:
                raise ConversionError(
                    f"expected at least two columns (token and tag), found one: {stripped[:60]!r}; "
                    "is this a CoNLL file? For text classification give --format tsv, csv or jsonl",
                    path,
                    line_no,
                )
        else:
            fields = _split(line, use_tabs)
        current.lines.append(line_no)
        if len(fields) != n_cols:
            invalid(
                line_no,
                f"this line has {len(fields)} column(s) but the file's lines have {n_cols} "
                f"(as line {first_token_line}): {stripped[:80]!r}",
            )
            continue
        word, tag = fields[cols[0]], fields[cols[1]]
        if not word:
            invalid(line_no, "the token column is empty")
            continue
        try:
            schemes.split_tag(tag) if scheme is None else schemes.check_tag(tag, scheme)
        except ValueError as err:
            invalid(line_no, str(err))
            continue
        current.words.append(word)
        current.tags.append(tag)
        if cols[2] is not None:
            current.pos.append(fields[cols[2]])
    close_sentence()
    return documents, has_markers


def _split(line: str, use_tabs: bool) -> List[str]:
    if use_tabs:
        return [f.strip() for f in line.rstrip().split("\t")]
    return line.split()


def read_conll(
    path: PathLike,
    *,
    token_col: int = 0,
    tag_col: int = -1,
    pos_col: Optional[int] = None,
    scheme: str = "auto",
    n_sents: Optional[int] = None,
    vocab: Optional[Vocab] = None,
    lang: str = "en",
    encoding: str = "utf-8",
    skip_invalid: bool = False,
    strict: bool = False,
) -> Tuple[List[Doc], ConversionStats]:
    """Read a CoNLL column file into Docs with entities and sentence starts.

    path: the file. Columns are split on tabs when the first token line holds a
        tab, else on runs of spaces.
    token_col, tag_col (int): columns of the token and its entity tag
        (0-based; negative counts from the end). Defaults: first and last.
    pos_col (Optional[int]): a column to store as token.tag_ (1 for CoNLL-2003).
    scheme (str): "auto" to detect it from the whole file, or one of
        IO, IOB1, IOB2/BIO, IOBES, BILUO. Invalid sequences are repaired (each
        repaired tag counted in stats.repairs) unless strict=True, which makes
        them an error.
    n_sents (Optional[int]): sentences per Doc. None: one Doc per -DOCSTART-
        document, or DEFAULT_N_SENTS per Doc when the file has no markers.
        A Doc never spans two documents.
    vocab: the Vocab of the Docs (default: a blank `lang` pipeline's).
    skip_invalid (bool): skip each sentence holding a line with a wrong
        column count, an invalid tag or undecodable bytes, reporting the line
        in stats.skipped, instead of raising ConversionError.
    RETURNS (docs, stats): the Docs and a ConversionStats.
    """
    if n_sents is not None and n_sents < 1:
        raise ConversionError(f"--n-sents must be at least 1, got {n_sents}", path)
    given_scheme: Optional[str] = None
    if scheme.lower() != "auto":
        try:
            given_scheme = schemes.normalize_scheme(scheme)
        except ValueError as err:
            raise ConversionError(str(err), path) from None
    stats = ConversionStats(input=str(path), format="conll")
    lines = read_lines(path, encoding=encoding, skip_invalid=skip_invalid, stats=stats)
    documents, has_markers = _parse(
        path, lines, token_col, tag_col, pos_col, given_scheme, skip_invalid, stats
    )
    sentences = [s for doc in documents for s in doc]
    if not sentences:
        if stats.skipped:
            raise ConversionError(all_skipped_message(stats.skipped, "sentence"), path)
        what = "only -DOCSTART- lines and blank lines" if has_markers else "no token lines"
        raise ConversionError(f"no sentences found (the file holds {what})", path)
    if given_scheme is None:
        try:
            found = schemes.detect_scheme([s.tags for s in sentences])
        except ValueError as err:
            raise ConversionError(f"{err} (--scheme)", path) from None
        stats.scheme, stats.scheme_detected = found, True
    else:
        stats.scheme, stats.scheme_detected = given_scheme, False
    if vocab is None:
        vocab = blank_nlp(lang).vocab
    if n_sents is None and not has_markers:
        n_sents = DEFAULT_N_SENTS
        stats.notes.append(
            f"no {DOCSTART} markers: {DEFAULT_N_SENTS} sentences per Doc (change with --n-sents)"
        )
    empty_docs = sum(1 for doc in documents[1:] if not doc)
    if empty_docs:
        stats.notes.append(f"{empty_docs} {DOCSTART} document(s) without sentences made no Doc")
    docs: List[Doc] = []
    for document in documents:
        groups = (
            [document]
            if n_sents is None
            else [document[i:i + n_sents] for i in range(0, len(document), n_sents)]
        )
        for group in groups:
            if group:
                docs.append(_make_doc(vocab, group, stats, strict, path, pos_col is not None))
    stats.documents = len(docs)
    return docs, stats


def _make_doc(
    vocab: Vocab,
    sentences: List[_Sentence],
    stats: ConversionStats,
    strict: bool,
    path: PathLike,
    with_pos: bool,
) -> Doc:
    words: List[str] = []
    sent_starts: List[bool] = []
    ents: List[str] = []
    pos: List[str] = []
    scheme = stats.scheme
    assert scheme is not None
    for sent in sentences:
        tags, repairs = schemes.repair(sent.tags, scheme)
        for r in repairs:
            if strict:
                raise ConversionError(
                    f"invalid {scheme} sequence: {r.message} (drop --strict to repair such tags)",
                    path,
                    sent.lines[r.index],
                )
            stats.add_repair(sent.lines[r.index], r.tag, r.fixed or "", r.message)
        spans = schemes.tags_to_spans(tags, scheme)
        for _, _, label in spans:
            stats.entities[label] += 1
        words.extend(sent.words)
        pos.extend(sent.pos)
        sent_starts.extend([True] + [False] * (len(sent.words) - 1))
        ents.extend(schemes.spans_to_tags(spans, len(sent.words), "IOB2"))
        stats.sentences += 1
        stats.tokens += len(sent.words)
    spaces = [True] * len(words)
    spaces[-1] = False
    return Doc(
        vocab,
        words=words,
        spaces=spaces,
        sent_starts=sent_starts,
        ents=ents,
        tags=pos if with_pos else None,
    )


def doc_to_conll_rows(
    doc: Doc, scheme: str = "IOB2", pos: bool = False
) -> Iterator[List[List[str]]]:
    """Yield each sentence of a Doc as rows [token, (tag_,) entity tag].

    Entities are written in `scheme`; one crossing a sentence boundary is cut
    at the boundary. Tokens without entity annotation are written as O.
    """
    scheme = schemes.normalize_scheme(scheme)
    if doc.has_annotation("SENT_START"):
        sents = [(s.start, s.end) for s in doc.sents]
    else:
        sents = [(0, len(doc))]
    for start, end in sents:
        spans = [
            (max(e.start, start) - start, min(e.end, end) - start, e.label_)
            for e in doc.ents
            if e.start < end and e.end > start
        ]
        tags = schemes.spans_to_tags(spans, end - start, scheme)
        rows = []
        for token, tag in zip(doc[start:end], tags):
            text = token.text.replace(" ", "_") if token.text.strip() else "_"
            rows.append([text, token.tag_ or "-X-", tag] if pos else [text, tag])
        yield rows


def write_conll(
    docs: Iterable[Doc],
    output: Union[PathLike, TextIO],
    *,
    scheme: str = "IOB2",
    pos: Optional[bool] = None,
    docstart: bool = True,
    encoding: str = "utf-8",
) -> ConversionStats:
    """Write Docs as a CoNLL file: `token [POS] tag`, space-separated.

    scheme (str): the entity tag scheme to write (default IOB2).
    pos (Optional[bool]): write token.tag_ as a middle column; None writes it
        when any token has one.
    docstart (bool): write a `-DOCSTART- [-X-] O` line and a blank line before
        each Doc, so read_conll gives back one Doc per Doc.
    RETURNS (ConversionStats): what was written.
    """
    docs = list(docs)
    scheme = schemes.normalize_scheme(scheme)
    if pos is None:
        pos = any(token.tag_ for doc in docs for token in doc)
    stats = ConversionStats(input="", format="conll", scheme=scheme, scheme_detected=False)
    marker = " ".join([DOCSTART] + (["-X-"] if pos else []) + ["O"])
    out: List[str] = []
    for doc in docs:
        if docstart:
            out.append(marker)
            out.append("")
        stats.documents += 1
        for rows in doc_to_conll_rows(doc, scheme, pos):
            if not rows:
                continue
            out.extend(" ".join(row) for row in rows)
            out.append("")
            stats.sentences += 1
            stats.tokens += len(rows)
        for ent in doc.ents:
            stats.entities[ent.label_] += 1
    text = "\n".join(out) + ("\n" if out else "")
    if hasattr(output, "write"):
        output.write(text)  # type: ignore[union-attr]
        stats.output = getattr(output, "name", None)
    else:
        path = Path(output)  # type: ignore[arg-type]
        path.write_text(text, encoding=encoding)
        stats.output = str(path)
    return stats
