"""Write annotated docs in input order, whatever order they arrive in.

Results arrive as pieces, in any order (Ray workers finish batches out of
order): a piece is a run of consecutive texts (seq start, start+1, ...) with
their ids, errors, and one DocBin of the docs annotated. `OrderedWriter` holds
a piece until every earlier seq has arrived, so the output follows the input
exactly. A seq that arrives twice, or one missing at the end, is an error
rather than a silently wrong corpus.

The driver never rebuilds a Doc: pieces' DocBins are merged (about 30 us per
doc, where `Doc.from_bytes` and `DocBin.add` take about 1.5 ms; measured in
docs/annotate.md), so one driver keeps up with many workers.

Outputs:
- a `.spacy` path: one DocBin with every doc, written at the end;
- any other path (new, empty, or holding only an earlier run's output, which
  is replaced): a directory of DocBin shards (`shard-00000.spacy`, ...), each
  written as soon as its docs are complete, with `--jsonl` the same docs as JSON
  lines (`shard-00000.jsonl`), and `manifest.json` listing the shards, their
  first and last ids and counts, and the skipped texts with their errors. The
  manifest is rewritten after each shard; `"complete": true` marks a finished run.
"""
import json
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

from spacy.tokens import Doc, DocBin

from .records import doc_record

MANIFEST = "manifest.json"
#: The files a directory output holds; an earlier run's are replaced.
OUR_FILES = re.compile(r"^(manifest\.json|shard-\d{5,}\.(spacy|jsonl))(\.tmp)?$")


def is_docbin_path(path: Union[str, Path]) -> bool:
    """True when `path` names a single DocBin file (suffix .spacy)."""
    return Path(path).suffix.lower() == ".spacy"


class Progress:
    """done/total and texts/s on stderr: one updating line on a terminal, a line
    every `interval` seconds otherwise."""

    def __init__(self, total: int, enabled: bool = True, label: str = "annotate") -> None:
        self.total = total
        self.enabled = enabled
        self.label = label
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.interval = 0.5 if self.tty else 10.0
        self.last = self.start

    def update(self, done: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self.last < self.interval):
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        share = 100.0 * done / self.total if self.total else 100.0
        line = (
            f"{self.label}: {done:,}/{self.total:,} texts ({share:.1f}%), "
            f"{done / elapsed:,.0f} texts/s, {elapsed:.0f}s"
        )
        if self.tty:
            end = "\n" if force else ""
            sys.stderr.write("\r" + line + end)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


class Piece(NamedTuple):
    """A run of consecutive texts: seqs start .. start + len(ids) - 1."""

    start: int
    ids: List[str]
    errors: List[str]  # "" for a text that was annotated
    doc_bin: bytes  # DocBin(store_user_data=False) of the annotated texts, in order
    lines: List[str]  # the annotated texts' JSON lines (empty unless asked for)
    tokens: int
    labels: Dict[str, int]  # entities per label


def make_piece(
    start: int, ids: List[str], results: List[Tuple[Optional[Doc], str]], jsonl: bool = False
) -> Piece:
    """A piece from `annotate_batch` results for the texts `ids` (seqs from `start`)."""
    doc_bin = DocBin(store_user_data=False)
    errors: List[str] = []
    lines: List[str] = []
    labels: Counter = Counter()
    tokens = 0
    for rid, (doc, error) in zip(ids, results):
        errors.append(error)
        if doc is None:
            continue
        doc_bin.add(doc)
        tokens += len(doc)
        labels.update(ent.label_ for ent in doc.ents)
        if jsonl:
            lines.append(json.dumps(doc_record(doc, rid), ensure_ascii=False))
    return Piece(start, list(ids), errors, doc_bin.to_bytes(), lines, tokens, dict(labels))


class OrderedWriter:
    """Collect pieces and write them in input order (see module docstring).

    output (Path): a `.spacy` file or a directory for shards.
    total (int): the number of input texts; every seq in range(total) must arrive once.
    jsonl (bool): also write JSON lines (directory output only).
    shard_size (int): docs per shard (directory output); a shard ends at the
        end of the piece that brings it to shard_size docs.
    strict (bool): raise on the first text the pipeline failed on, instead of
        recording it as skipped.
    info (dict): written into the manifest (model, input, engine).
    """

    def __init__(
        self,
        output: Union[str, Path],
        total: int,
        *,
        jsonl: bool = False,
        shard_size: int = 10000,
        strict: bool = False,
        info: Optional[Dict[str, Any]] = None,
        progress: Optional[Progress] = None,
    ) -> None:
        self.output = Path(output)
        self.single = is_docbin_path(self.output)
        if jsonl and self.single:
            raise ValueError(
                f"{self.output}: --jsonl writes shards into a directory; give a directory "
                "as OUTPUT (a path without the .spacy suffix)"
            )
        if shard_size < 1:
            raise ValueError(f"shard size must be at least 1, got {shard_size}")
        if self.single:
            self.output.parent.mkdir(parents=True, exist_ok=True)
        else:
            _clear_previous_output(self.output)
            self.output.mkdir(parents=True, exist_ok=True)
        self.total = total
        self.jsonl = jsonl
        self.shard_size = shard_size
        self.strict = strict
        self.info = dict(info or {})
        self.progress = progress or Progress(total, enabled=False)
        self.pending: Dict[int, Piece] = {}
        self.next_seq = 0
        self.received = 0
        self.doc_bin = DocBin(store_user_data=False)
        self.lines: List[str] = []
        self.shard_first: Optional[str] = None
        self.shard_last: Optional[str] = None
        self.shard_docs = 0
        self.shard_start_seq = 0
        self.shards: List[Dict[str, Any]] = []
        self.skipped: List[Dict[str, Any]] = []
        self.labels: Counter = Counter()
        self.n_docs = self.n_tokens = 0

    def add(self, piece: Piece) -> None:
        """One piece of results; written at once if every earlier text is written."""
        start, n = piece.start, len(piece.ids)
        if n == 0 or len(piece.errors) != n:
            raise RuntimeError(
                f"malformed piece at seq {start}: {n} ids, {len(piece.errors)} errors"
            )
        if start < 0 or start + n > self.total:
            raise RuntimeError(
                f"texts {piece.ids[0]!r}..{piece.ids[-1]!r} have seqs {start}..{start + n - 1}, "
                f"outside 0..{self.total - 1}"
            )
        if start < self.next_seq or start in self.pending:
            raise RuntimeError(f"text {piece.ids[0]!r} (seq {start}) was annotated twice")
        if self.strict:
            for rid, error in zip(piece.ids, piece.errors):
                if error:
                    raise ValueError(f"{rid}: the pipeline failed on this text: {error}")
        self.pending[start] = piece
        self.received += n
        self.progress.update(self.received)
        while self.next_seq in self.pending:
            piece = self.pending.pop(self.next_seq)
            self._write(piece)
            self.next_seq += len(piece.ids)
            if any(self.next_seq > s for s in self.pending):
                raise RuntimeError(f"text {piece.ids[-1]!r} (seq {self.next_seq - 1}) was "
                                   "annotated twice (overlapping pieces)")

    def _write(self, piece: Piece) -> None:
        done = [rid for rid, error in zip(piece.ids, piece.errors) if not error]
        for i, (rid, error) in enumerate(zip(piece.ids, piece.errors)):
            if error:
                self.skipped.append({"id": rid, "seq": piece.start + i, "error": error})
        if done:
            part = DocBin(store_user_data=False).from_bytes(piece.doc_bin)
            if len(part) != len(done):
                raise RuntimeError(
                    f"piece at seq {piece.start}: {len(part)} docs for {len(done)} texts"
                )
            self.doc_bin.merge(part)
            self.n_docs += len(done)
            self.n_tokens += piece.tokens
            self.labels.update(piece.labels)
            if self.jsonl:
                if len(piece.lines) != len(done):
                    raise RuntimeError(f"piece at seq {piece.start}: JSON lines missing")
                self.lines.extend(piece.lines)
            if self.shard_first is None:
                self.shard_first = done[0]
            self.shard_last = done[-1]
            self.shard_docs += len(done)
        if not self.single and self.shard_docs >= self.shard_size:
            self._flush_shard(piece.start + len(piece.ids))

    def _flush_shard(self, end_seq: int) -> None:
        """Write the current shard (docs of seqs shard_start_seq..end_seq-1)."""
        if self.shard_docs:
            index = len(self.shards)
            name = f"shard-{index:05d}"
            _atomic_write(self.output / f"{name}.spacy", self.doc_bin.to_bytes())
            entry: Dict[str, Any] = {
                "file": f"{name}.spacy",
                "docs": self.shard_docs,
                "first_id": self.shard_first,
                "last_id": self.shard_last,
                "seqs": [self.shard_start_seq, end_seq],
            }
            if self.jsonl:
                text = "".join(line + "\n" for line in self.lines)
                _atomic_write(self.output / f"{name}.jsonl", text.encode("utf8"))
                entry["jsonl"] = f"{name}.jsonl"
            self.shards.append(entry)
        self.doc_bin = DocBin(store_user_data=False)
        self.lines = []
        self.shard_first = self.shard_last = None
        self.shard_docs = 0
        self.shard_start_seq = end_seq
        self._write_manifest(complete=False)

    def counts(self) -> Dict[str, Any]:
        return {
            "docs": self.n_docs,
            "tokens": self.n_tokens,
            "entities": sum(self.labels.values()),
            "labels": dict(sorted(self.labels.items())),
            "skipped": list(self.skipped),
        }

    def _write_manifest(self, complete: bool) -> None:
        if self.single:
            return
        manifest = {
            **self.info,
            "complete": complete,
            "texts": self.total,
            **self.counts(),
            "shards": self.shards,
        }
        data = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
        _atomic_write(self.output / MANIFEST, data.encode("utf8"))

    def close(self) -> Dict[str, Any]:
        """Check that every text arrived once, write what is left; return the counts."""
        if self.next_seq != self.total or self.pending:
            first = self.next_seq
            raise RuntimeError(
                f"{self.total - self.received} of {self.total} texts never came back (first "
                f"seq: {first}); the output is incomplete"
            )
        self.progress.update(self.received, force=True)
        if self.single:
            _atomic_write(self.output, self.doc_bin.to_bytes())
        else:
            if self.shard_docs:
                self._flush_shard(self.total)
            self._write_manifest(complete=True)
        return self.counts()


def _clear_previous_output(path: Path) -> None:
    """Make way for shards in `path`: fine if it is new or empty; a directory holding
    only an earlier run's files (manifest and shards) is emptied; anything else is
    an error, so that no other file is ever deleted."""
    if not path.exists():
        return
    if not path.is_dir():
        raise ValueError(f"{path}: exists and is not a directory; give a directory for shards")
    entries = list(path.iterdir())
    others = [e.name for e in entries if not (e.is_file() and OUR_FILES.match(e.name))]
    if others:
        raise ValueError(
            f"{path}: not an empty directory or an earlier output of annotate (it holds "
            f"{', '.join(sorted(others)[:3])}); give a new directory for the shards "
            "(or a .spacy path for one DocBin)"
        )
    for entry in entries:
        entry.unlink()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name and rename, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as file_:
        file_.write(data)
    os.replace(tmp, path)
