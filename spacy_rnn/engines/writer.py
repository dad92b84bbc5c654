"""Write annotated docs in input order, whatever order they arrive in.

Results arrive as (seq, id, doc or error) in any order (Ray workers finish
batches out of order); `OrderedWriter` holds them until every earlier seq has
arrived, so the output follows the input exactly. A seq that arrives twice, or
one missing at the end, is an error rather than a silently wrong corpus.

Outputs:
- a `.spacy` path: one DocBin with every doc, written at the end;
- any other path: a directory of DocBin shards (`shard-00000.spacy`, ...), each
  written as soon as its docs are complete, with `--jsonl` the same docs as JSON
  lines (`shard-00000.jsonl`), and `manifest.json` listing the shards, their
  first and last ids and counts, and the skipped texts with their errors. The
  manifest is rewritten after each shard; `"complete": true` marks a finished run.
"""
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from .records import doc_record

MANIFEST = "manifest.json"


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


class OrderedWriter:
    """Collect results by seq and write them in input order (see module docstring).

    output (Path): a `.spacy` file or a directory for shards.
    total (int): the number of input texts; every seq in range(total) must arrive once.
    vocab (Vocab): to read docs that arrive as bytes.
    jsonl (bool): also write JSON lines (directory output only).
    shard_size (int): docs per shard (directory output).
    strict (bool): raise on the first text the pipeline failed on, instead of
        recording it as skipped.
    info (dict): written into the manifest (model, input, engine).
    """

    def __init__(
        self,
        output: Union[str, Path],
        total: int,
        vocab: Vocab,
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
            if self.output.exists() and (not self.output.is_dir() or any(self.output.iterdir())):
                raise ValueError(
                    f"{self.output}: exists and is not an empty directory; give a new "
                    "directory for the shards (or a .spacy path for one DocBin)"
                )
            self.output.mkdir(parents=True, exist_ok=True)
        self.total = total
        self.vocab = vocab
        self.jsonl = jsonl
        self.shard_size = shard_size
        self.strict = strict
        self.info = dict(info or {})
        self.progress = progress or Progress(total, enabled=False)
        self.pending: Dict[int, tuple] = {}
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

    def add(
        self,
        seq: int,
        rid: str,
        doc: Union[Doc, bytes, None],
        error: str = "",
        line: Optional[str] = None,
    ) -> None:
        """One result: the doc (or its `Doc.to_bytes`), or None and the error; `line`
        is its JSON line when a worker made it already."""
        if not 0 <= seq < self.total:
            raise RuntimeError(
                f"result for text {rid!r} has seq {seq}, outside 0..{self.total - 1}"
            )
        if seq < self.next_seq or seq in self.pending:
            raise RuntimeError(f"text {rid!r} (seq {seq}) was annotated twice")
        if error and self.strict:
            raise ValueError(f"{rid}: the pipeline failed on this text: {error}")
        self.pending[seq] = (rid, doc, error, line)
        self.received += 1
        self.progress.update(self.received)
        while self.next_seq in self.pending:
            self._write(self.next_seq, *self.pending.pop(self.next_seq))
            self.next_seq += 1

    def _write(
        self, seq: int, rid: str, doc: Union[Doc, bytes, None], error: str, line: Optional[str]
    ) -> None:
        if doc is None:
            self.skipped.append({"id": rid, "seq": seq, "error": error})
        else:
            if isinstance(doc, bytes):
                doc = Doc(self.vocab).from_bytes(doc)
            self.doc_bin.add(doc)
            self.n_docs += 1
            self.n_tokens += len(doc)
            self.labels.update(ent.label_ for ent in doc.ents)
            if self.jsonl:
                if line is None:
                    line = json.dumps(doc_record(doc, rid), ensure_ascii=False)
                self.lines.append(line)
            if self.shard_first is None:
                self.shard_first = rid
            self.shard_last = rid
            self.shard_docs += 1
        if not self.single and self.shard_docs >= self.shard_size:
            self._flush_shard(seq + 1)

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
            missing = [s for s in range(self.next_seq, self.total) if s not in self.pending]
            raise RuntimeError(
                f"{len(missing)} of {self.total} texts never came back (first seq: "
                f"{missing[0] if missing else '?'}); the output is incomplete"
            )
        self.progress.update(self.received, force=True)
        if self.single:
            _atomic_write(self.output, self.doc_bin.to_bytes())
        else:
            if self.shard_docs:
                self._flush_shard(self.total)
            self._write_manifest(complete=True)
        return self.counts()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name and rename, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as file_:
        file_.write(data)
    os.replace(tmp, path)
