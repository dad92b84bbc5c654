"""A word embedding table with a real vocabulary, an UNK row and word dropout,
as in Lample et al. (2016) and Kiperwasser & Goldberg (2016).

spaCy's HashEmbed gives every word, seen in training or not, the sum of a few
hashed rows. A word never seen in training then gets rows that were trained
for other words: noise, which the model cannot tell from a real signal. Here
a word gets its own row only once it has been seen in a training batch;
every other word maps to one learned UNK row. So that the UNK row is learned
and the model learns to fall back on the characters and affixes for it, a
training token is replaced by UNK with probability alpha / (alpha + count),
count being how often its word has been seen in training so far (rare words
are dropped often, frequent ones almost never).

The vocabulary grows while training runs (no pass over the corpus at
initialize, so it works in any spaCy component, including spaCy's own
pipes on a spacy-rnn tok2vec) and is saved with the model; once the table is
full, further new words are UNK.
"""
from typing import List, Optional, Tuple, Union

import numpy
import srsly
from spacy.attrs import intify_attr
from spacy.tokens import Doc
from thinc.api import Model, uniform_init
from thinc.model import deserialize_attr, serialize_attr
from thinc.types import Floats2d, Ragged

UNK = 0  # row of every word outside the vocabulary


def find_sorted(sorted_keys: numpy.ndarray, keys: numpy.ndarray) -> numpy.ndarray:
    """(n,) positions of keys in the sorted array sorted_keys, -1 where absent
    (one binary search for all of them)."""
    if not sorted_keys.shape[0]:
        return numpy.full(keys.shape, -1, dtype=numpy.int64)
    pos = numpy.minimum(numpy.searchsorted(sorted_keys, keys), sorted_keys.shape[0] - 1)
    return numpy.where(sorted_keys[pos] == keys, pos, -1)


class WordIndex:
    """Sorted word keys -> table rows (1..), with training counts."""

    def __init__(self, keys=None, rows=None, counts=None):
        self.keys = numpy.zeros((0,), dtype=numpy.uint64) if keys is None else keys
        self.rows = numpy.zeros((0,), dtype=numpy.int64) if rows is None else rows
        self.counts = numpy.zeros((0,), dtype=numpy.int64) if counts is None else counts

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def find(self, keys: numpy.ndarray) -> numpy.ndarray:
        """(n,) positions of keys in self.keys, -1 where absent."""
        return find_sorted(self.keys, keys)

    def lookup(self, keys: numpy.ndarray) -> numpy.ndarray:
        """(n,) table rows of keys, UNK for words outside the vocabulary."""
        if not len(self):
            return numpy.full(keys.shape, UNK, dtype=numpy.int64)
        pos = self.find(keys)
        return numpy.where(pos >= 0, self.rows[numpy.maximum(pos, 0)], UNK)

    def observe(self, keys: numpy.ndarray, capacity: int) -> numpy.ndarray:
        """Count a training batch's keys, giving new words rows while the table
        has room. Returns (n,) the counts of keys after this batch."""
        uniq, inverse, n = numpy.unique(keys, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        pos = self.find(uniq)
        new = uniq[pos < 0]
        room = capacity - len(self)
        if new.shape[0] and room > 0:
            new = new[:room]
            rows = numpy.arange(len(self) + 1, len(self) + 1 + new.shape[0], dtype=numpy.int64)
            keys_all = numpy.concatenate([self.keys, new])
            order = numpy.argsort(keys_all, kind="stable")
            self.keys = keys_all[order]
            self.rows = numpy.concatenate([self.rows, rows])[order]
            zeros = numpy.zeros(new.shape, numpy.int64)
            self.counts = numpy.concatenate([self.counts, zeros])[order]
            pos = self.find(uniq)
        known = pos >= 0
        self.counts[pos[known]] += n[known]
        counts = numpy.where(known, self.counts[numpy.maximum(pos, 0)], 0)
        return counts[inverse]

    def to_dict(self) -> dict:
        return {"keys": self.keys, "rows": self.rows, "counts": self.counts}

    @classmethod
    def from_dict(cls, data: dict) -> "WordIndex":
        # Copies: msgpack gives read-only arrays, and a loaded pipeline that
        # goes on training must keep counting (observe) in place.
        return cls(
            numpy.array(data["keys"], dtype=numpy.uint64),
            numpy.array(data["rows"], dtype=numpy.int64),
            numpy.array(data["counts"], dtype=numpy.int64),
        )


@serialize_attr.register(WordIndex)
def _serialize_word_index(_, value: WordIndex, name: str, model: Model) -> bytes:
    return srsly.msgpack_dumps(value.to_dict())


@deserialize_attr.register(WordIndex)
def _deserialize_word_index(_, value: bytes, name: str, model: Model) -> WordIndex:
    return WordIndex.from_dict(srsly.msgpack_loads(value))


def WordTable(
    nO: int, rows: int, attr: Union[str, int] = "NORM", alpha: float = 1.0
) -> Model[List[Doc], Ragged]:
    """One learned vector of nO per token from its word (the `attr` string,
    NORM by default: lower-cased), for up to `rows` words seen in training and
    one UNK vector for all others. `alpha` sets the word dropout (0 = none)."""
    if rows < 1:
        raise ValueError(f"WordTable: word_rows must be >= 1, got {rows}")
    if alpha < 0:
        raise ValueError(f"WordTable: word_dropout must be >= 0, got {alpha}")
    return Model(
        "word_table",
        word_table_forward,
        init=word_table_init,
        params={"E": None},
        dims={"nO": nO, "nV": rows + 1},
        attrs={"attr": intify_attr(attr), "alpha": float(alpha), "index": WordIndex()},
    )


def word_table_init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> Model:
    # as HashEmbed's tables
    shape = (model.get_dim("nV"), model.get_dim("nO"))
    model.set_param("E", uniform_init(model.ops, shape, lo=-0.1, hi=0.1))
    model.attrs["index"] = WordIndex()
    return model


def word_table_rows(
    model: Model, docs: List[Doc], is_train: bool
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """(n_tokens,) table rows of the batch's tokens (after word dropout when
    training) and (n_docs,) doc lengths."""
    attr = model.attrs["attr"]
    lengths = numpy.array([len(doc) for doc in docs], dtype=numpy.int64)
    if not lengths.sum():
        return numpy.zeros((0,), dtype=numpy.int64), lengths
    keys = numpy.concatenate([_column(doc, attr) for doc in docs])
    capacity = model.get_dim("nV") - 1
    rows = lookup_rows(model.attrs["index"], keys, is_train, capacity, model.attrs["alpha"])
    return rows, lengths


def lookup_rows(
    index: WordIndex, keys: numpy.ndarray, is_train: bool, capacity: int, alpha: float
) -> numpy.ndarray:
    """(n,) rows of keys; when training, the index first counts the keys (and
    gives new words rows while it has room) and each token is then dropped to
    UNK with probability alpha / (alpha + count)."""
    if not is_train:
        return index.lookup(keys)
    counts = index.observe(keys, capacity)
    rows = index.lookup(keys)
    if alpha > 0:
        drop = numpy.random.random_sample(keys.shape) < alpha / (alpha + counts)
        rows = numpy.where(drop, UNK, rows)
    return rows


def word_table_forward(model: Model[List[Doc], Ragged], docs: List[Doc], is_train: bool):
    ops = model.ops
    rows, lengths = word_table_rows(model, docs, is_train)
    E = model.get_param("E")
    ids = ops.asarray1i(rows)
    Y: Floats2d = E[ids]

    def backprop(dY: Ragged) -> List:
        dE = ops.alloc2f(*E.shape)
        ops.scatter_add(dE, ids, ops.as_contig(dY.data))
        model.inc_grad("E", dE)
        return []

    return Ragged(Y, ops.asarray1i(lengths)), backprop


def _column(doc, attr) -> numpy.ndarray:
    if hasattr(doc, "to_array"):
        return doc.to_array(attr).astype(numpy.uint64)
    return doc.doc.to_array(attr)[doc.start:doc.end].astype(numpy.uint64)
