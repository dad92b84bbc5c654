"""The local engine: the pipeline in this process (or `nlp.pipe(n_process=N)`),
written through the same ordered writer as the Ray engine."""
from typing import Iterable, Iterator, List, TypeVar

from spacy.language import Language

from .records import Record, annotate_batch
from .writer import OrderedWriter, make_piece


T = TypeVar("T")


def _batches(records: Iterable[T], size: int) -> Iterator[List[T]]:
    batch: List[T] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_local(
    nlp: Language,
    records: List[Record],
    writer: OrderedWriter,
    *,
    batch_size: int = 64,
    n_process: int = 1,
) -> None:
    """Annotate `records` into `writer`.

    With one process, each batch goes through `annotate_batch`, so a text that
    makes the pipeline raise is reported by id and skipped. With several,
    `nlp.pipe(n_process=N)` runs the batches; a failing text then fails the run
    (spaCy's worker processes stop on the first error).
    """
    if n_process <= 1:
        for batch in _batches(records, batch_size):
            results = annotate_batch(nlp, [r.text for r in batch])
            writer.add(make_piece(batch[0].seq, [r.id for r in batch], results, writer.jsonl))
        return
    pairs = ((r.text, r) for r in records)
    docs = nlp.pipe(pairs, as_tuples=True, batch_size=batch_size, n_process=n_process)
    for batch in _batches(docs, batch_size):
        results = [(doc, "") for doc, _record in batch]
        ids = [record.id for _doc, record in batch]
        writer.add(make_piece(batch[0][1].seq, ids, results, writer.jsonl))
