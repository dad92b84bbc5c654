"""The chains a CRF runs over, and their padded layout.

A chain is a sentence of a doc that has sentence boundaries (from a parser,
senter, sentencizer or the corpus), else the whole doc. The tokens of a batch
are numbered across the batch, doc after doc, so that a chain is a run of
consecutive tokens; the CRF runs on a (n_chains, T) grid with each chain's
tokens first and padding after, T the longest chain. numpy only: the CRF
(`spacy_rnn.ml.crf`) decodes the padded arrays in numpy and turns them into
tensors for the loss.
"""

from typing import List, Sequence

import numpy
from spacy.attrs import SENT_START
from spacy.tokens import Doc
from thinc.api import Ops
from thinc.types import Floats2d


def offsets(lengths: Sequence[int]) -> numpy.ndarray:
    """Start of each run and the total: (len(lengths) + 1,) int64."""
    out = numpy.zeros(len(lengths) + 1, dtype="int64")
    numpy.cumsum(lengths, out=out[1:])
    return out


def concat_rows(ops: Ops, arrays: Sequence[Floats2d]) -> numpy.ndarray:
    """One contiguous (n_tokens, K) float32 numpy array from the per-doc
    arrays of any device (the CRF runs in torch on CPU)."""
    return numpy.ascontiguousarray(
        numpy.concatenate([ops.to_numpy(a) for a in arrays]), dtype="float32"
    )


def chain_lengths(docs: Sequence[Doc]) -> numpy.ndarray:
    """The length of each chain of the docs, in order: one per sentence of a
    doc with sentence starts, else one per doc. Empty docs have none."""
    chains = []
    for doc in docs:
        n = len(doc)
        if n == 0:
            continue
        if doc.has_annotation("SENT_START"):
            starts = numpy.flatnonzero(doc.to_array(SENT_START) == 1)
            starts = numpy.union1d(starts, [0])
            chains.append(numpy.diff(numpy.append(starts, n)))
        else:
            chains.append(numpy.array([n]))
    if not chains:
        return numpy.zeros((0,), "int64")
    return numpy.concatenate(chains).astype("int64")


class ChainLayout:
    """The chains of a batch of docs and the padded (n_chains, T) grid.

    doc_offsets (n_docs + 1,): first token of each doc, then n_tokens.
    chain_offsets (n_chains + 1,): first token of each chain, then n_tokens.
    mask (n_chains, T) bool: real steps (each chain's first).
    index (n_chains, T): the token at each step; padding reads row n_tokens.
    chain_of (n_tokens,): the chain of each token.
    chain_first, chain_last (n_tokens,) bool: a chain's first / last token.
    """

    def __init__(self, doc_lengths: Sequence[int], chain_lengths: numpy.ndarray) -> None:
        chain_lengths = numpy.asarray(chain_lengths, dtype="int64")
        self.doc_offsets = offsets(doc_lengths)
        self.chain_lengths = chain_lengths
        self.chain_offsets = offsets(chain_lengths)
        n_tokens = int(self.doc_offsets[-1])
        if int(self.chain_offsets[-1]) != n_tokens or (chain_lengths < 1).any():
            raise ValueError(
                f"ChainLayout: chains of lengths {chain_lengths.tolist()} do not tile the "
                f"{n_tokens} tokens of docs of lengths {list(doc_lengths)}"
            )
        n_chains = len(chain_lengths)
        T = int(chain_lengths.max()) if n_chains else 0
        steps = numpy.arange(T)
        # shape: (n_chains, T)
        self.mask = steps[None, :] < chain_lengths[:, None]
        index = self.chain_offsets[:-1, None] + steps[None, :]
        self.index = numpy.where(self.mask, index, n_tokens)
        # shape: (n_tokens,)
        self.chain_of = numpy.repeat(numpy.arange(n_chains), chain_lengths)
        self.chain_first = numpy.zeros(n_tokens, dtype=bool)
        self.chain_first[self.chain_offsets[:-1]] = True
        self.chain_last = numpy.zeros(n_tokens, dtype=bool)
        self.chain_last[self.chain_offsets[1:] - 1] = True

    @classmethod
    def from_docs(cls, docs: Sequence[Doc]) -> "ChainLayout":
        return cls([len(doc) for doc in docs], chain_lengths(docs))

    @property
    def n_tokens(self) -> int:
        return int(self.doc_offsets[-1])

    def pad(self, flat: numpy.ndarray) -> numpy.ndarray:
        """(n_tokens, K) -> (n_chains, T, K), zeros at padding."""
        if flat.shape[0] != self.n_tokens:
            raise ValueError(
                f"ChainLayout.pad: {flat.shape[0]} rows for a batch of {self.n_tokens} tokens"
            )
        padded = numpy.concatenate([flat, numpy.zeros((1,) + flat.shape[1:], dtype=flat.dtype)])
        return padded[self.index]

    def unpad(self, padded: numpy.ndarray) -> numpy.ndarray:
        """(n_chains, T, ...) -> (n_tokens, ...): the real steps, in token order."""
        return padded[self.mask]

    def split(self, flat: numpy.ndarray) -> List[numpy.ndarray]:
        """(n_tokens, ...) -> one array per doc."""
        return [flat[a:b] for a, b in zip(self.doc_offsets[:-1], self.doc_offsets[1:])]

    def span_rows(self, starts: numpy.ndarray, ends: numpy.ndarray) -> numpy.ndarray:
        """(N, 3) rows (chain, first step, last step) of token spans
        [start, end) that each lie within one chain."""
        chain = self.chain_of[starts]
        first = starts - self.chain_offsets[chain]
        return numpy.stack([chain, first, first + (ends - starts) - 1], axis=1)
