"""The data of a run: the train/dev/test DocBins of a task (sliced into the work
directory when limits are set), and small byte-for-byte slices of raw corpus
files (`python -m spacy_rnn head`) for the `ci` workflow and quick checks."""
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..converters.table import read_table, sniff_format
from .systems import Settings


def corpus_paths(settings: Settings, task: str) -> Dict[str, Path]:
    """train/dev/test DocBins of a task, sliced into the work dir when limits are set."""
    root = settings.ner_corpus if task == "ner" else settings.sentiment_corpus
    paths = {split: root / f"{split}.spacy" for split in ("train", "dev", "test")}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise ValueError(
            f"corpus not found: {', '.join(missing)}; run `spacy project run convert` first "
            f"(or pass --{'ner' if task == 'ner' else 'sentiment'}-corpus)"
        )
    if settings.limit_train is None and settings.limit_eval is None:
        return paths
    sliced = settings.work / "data" / task
    out = {}
    for split, path in paths.items():
        limit = settings.limit_train if split == "train" else settings.limit_eval
        out[split] = slice_docbin(path, sliced / f"{split}.spacy", limit)
    return out


def slice_docbin(src: Path, dest: Path, limit: Optional[int]) -> Path:
    """The first `limit` docs of a DocBin (all of them when limit is None)."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    docs = list(DocBin().from_disk(src).get_docs(Vocab()))
    if limit is not None:
        docs = docs[:limit]
    dest.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=True).to_disk(dest)
    return dest


def head_corpus(src: Path, dest: Path, n: int, encoding: str = "utf-8") -> Tuple[Path, int]:
    """Copy the first `n` documents of a raw corpus file, bytes unchanged.

    Text tables (TSV, CSV, JSONL: as `converters.table` tells them, by extension
    or first line) keep their header line, if they have one, and `n` rows (a
    quoted CSV field spanning lines stays whole); CoNLL files are cut by
    `-DOCSTART-` documents (by blank-line sentences when there are none).
    RETURNS (Path, int): the written file and the number of units kept.
    """
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    src, dest = Path(src), Path(dest)
    if not src.is_file():
        raise ValueError(f"corpus file not found: {src}")
    fmt = sniff_format(src, encoding)
    if fmt is None:
        kept, count = _head_conll(src.read_bytes().splitlines(keepends=True), n)
    else:
        kept, count = _head_table(src, fmt, n, encoding)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(b"".join(kept))
    return dest, count


def _head_table(src: Path, fmt: str, n: int, encoding: str) -> Tuple[List[bytes], int]:
    # the reader numbers lines split on "\n" alone: split the bytes the same way
    lines = src.read_bytes().split(b"\n")
    lines = [line + b"\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    table = read_table(src, fmt, header="auto", encoding=encoding)
    kept: List[bytes] = []
    if table.header_end_line is not None:
        kept += lines[: table.header_end_line]  # with any blank lines and BOM before it
    count = 0
    for row in table:
        if count >= n:
            break
        kept += lines[row.line - 1: row.end_line]
        count += 1
    return kept, count


def _head_conll(lines: List[bytes], n: int) -> Tuple[List[bytes], int]:
    kept: List[bytes] = []
    count = 0
    by_docs = any(line.startswith(b"-DOCSTART-") for line in lines)
    in_unit = False
    for line in lines:
        blank = not line.strip()
        if by_docs:
            if line.startswith(b"-DOCSTART-"):
                if count >= n:
                    break
                count += 1
        else:
            if not blank and not in_unit:
                if count >= n:
                    break
                count += 1
            in_unit = not blank
        kept.append(line)
    return kept, count
