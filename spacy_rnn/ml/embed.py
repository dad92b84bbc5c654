"""spacy_rnn.CharWordEmbed.v1: the multi-level word representation of Lample
et al. (2016) and Ma & Hovy (2016), as a spaCy embed layer.

Each token gets
- a word part: a word table with a real vocabulary and an UNK row (ml/words.py,
  optional), hashed embeddings of lexical attributes (NORM, PREFIX, SUFFIX,
  SHAPE by default), as spaCy's MultiHashEmbed, plus, optionally, the static
  vectors of the pipeline's vectors table (looked up by the table's own key
  attribute, e.g. LOWER for GloVe);
- a character part: the word's characters embedded and read by a character
  BiLSTM (final states of both directions) or a character CNN with
  max-pooling;
concatenated and projected to `width` by a Maxout layer with layer norm.

The character part runs once per distinct word of the batch (not per token),
over all those words at once: one padded (n_words, n_chars) id matrix and
one convolution, or one LSTM pass (on CPU in dense buckets of words of
similar lengths, as BiRNNEncoder, on CUDA one packed call). The character
ids of a word are read from its string the first time the word is seen and
cached by its orth id.
"""
from typing import List, Optional, Sequence, Tuple, Union

import numpy
import srsly
import torch
from spacy.attrs import ORTH
from spacy.vectors import Mode, Vectors
from spacy.ml.featureextractor import FeatureExtractor
from spacy.strings import StringStore
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import (
    glorot_uniform_init,
    Dropout,
    HashEmbed,
    Model,
    chain,
    concatenate,
    list2ragged,
    ragged2list,
    torch2xp,
    with_array,
    xp2torch,
)
from thinc.model import deserialize_attr, serialize_attr
from thinc.types import Floats2d, Ragged
from torch.nn.utils.rnn import pack_padded_sequence

from ._torch_util import flush_denormal, make_shim, run_shim
from .encode import DensePlan, dense_plan, run_dense
from .maxout import Maxout
from .words import WordIndex, WordTable, _column, find_sorted, lookup_rows

CHAR_ENCODERS = ("lstm", "cnn")

# Row 0 of the character table is padding (a zero vector, never updated); a
# character maps to row 1 + codepoint % (char_rows - 1), so all of Latin-1 is
# collision-free with the default 1000 rows.
PAD_CHAR = 0


@registry.architectures("spacy_rnn.CharWordEmbed.v1")
def CharWordEmbed(
    width: int,
    attrs: Sequence[Union[str, int]] = ("NORM", "PREFIX", "SUFFIX", "SHAPE"),
    rows: Sequence[int] = (5000, 1000, 2500, 2500),
    include_static_vectors: bool = False,
    char_encoder: Optional[str] = "lstm",
    char_width: int = 50,
    char_embed_size: int = 25,
    max_chars: int = 20,
    char_window: int = 3,
    char_rows: int = 1000,
    dropout: float = 0.0,
    word_rows: int = 0,
    word_attr: str = "NORM",
    word_dropout: float = 1.0,
    tune_vectors: int = 0,
) -> Model[List[Doc], List[Floats2d]]:
    """Embed each token from its lexical attributes, its static vector and its
    characters.

    width (int): The output width, also the width of each hash embedding
        table and of the projected static vectors. Recommended 64-300.
    attrs (list of str): Token attributes to embed, one HashEmbed table each.
    rows (list of int): Rows of each table; same length as attrs.
    include_static_vectors (bool): Add the vocab's vectors table (kept static,
        projected by a learned linear layer). The table must be loaded.
    char_encoder (str or None): "lstm" (character BiLSTM, Lample et al.),
        "cnn" (character CNN + max-pooling, Ma & Hovy) or None / "none".
    char_width (int): Width of a word's character encoding (for "lstm",
        width // 2 units per direction). Recommended 50-100.
    char_embed_size (int): Width of a character embedding. Recommended 25-50.
    max_chars (int): Longer words keep their first ceil(max_chars / 2) and last
        floor(max_chars / 2) characters (prefix and suffix carry the signal).
    char_window (int): The CNN's window (odd), ignored by "lstm".
    char_rows (int): Rows of the character table (codepoints are hashed in).
    dropout (float): Dropout on the output vectors during training. Under
        `spacy train`, the [training] dropout rate replaces it.
    word_rows (int): If > 0, add a word table with a real vocabulary: one
        learned row for each of the first `word_rows` words (by `word_attr`)
        seen in training, one UNK row for all other words (see ml/words.py).
        Unlike a hashed NORM table, a word never seen in training does not
        borrow the rows of other words. 0 = no word table.
    word_attr (str): The attribute that names a word of the word table.
    word_dropout (float): Word dropout alpha: in training, a token is
        replaced by UNK with probability alpha / (alpha + its word's count).
        Also applies to the tuned static vectors (tune_vectors).
    tune_vectors (int): If > 0 (and include_static_vectors), fine-tune the
        static vectors of up to this many words seen in training: each gets a
        learned correction, initially zero, added to its pretrained vector;
        every other word keeps its pretrained vector as it is. 0 = static.
    """
    attrs = list(attrs)
    rows = list(rows)
    if len(rows) != len(attrs):
        raise ValueError(
            f"CharWordEmbed: attrs and rows must have the same length, got "
            f"{len(attrs)} attrs {attrs} and {len(rows)} rows {rows}"
        )
    if char_encoder == "none":
        char_encoder = None
    if char_encoder is not None and char_encoder not in CHAR_ENCODERS:
        raise ValueError(
            f"CharWordEmbed: char_encoder must be 'lstm', 'cnn' or None, got {char_encoder!r}"
        )
    if word_rows < 0:
        raise ValueError(f"CharWordEmbed: word_rows must be >= 0, got {word_rows}")
    if word_dropout < 0:
        raise ValueError(f"CharWordEmbed: word_dropout must be >= 0, got {word_dropout}")
    if tune_vectors < 0:
        raise ValueError(f"CharWordEmbed: tune_vectors must be >= 0, got {tune_vectors}")
    if tune_vectors and not include_static_vectors:
        raise ValueError("CharWordEmbed: tune_vectors needs include_static_vectors = true")
    if not attrs and not word_rows and not include_static_vectors and char_encoder is None:
        raise ValueError("CharWordEmbed: nothing to embed (no attrs, no vectors, no chars)")
    if width < 1:
        raise ValueError(f"CharWordEmbed: width must be >= 1, got {width}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"CharWordEmbed: dropout must be in [0, 1), got {dropout}")

    parts: List[Model[List[Doc], Ragged]] = []
    refs = {}
    concat_size = 0
    if attrs:
        # As spaCy's MultiHashEmbed: one table per attribute, seeds 8, 9, ...
        embeddings = [
            HashEmbed(width, rows[i], column=i, seed=8 + i, dropout=0.0) for i in range(len(attrs))
        ]
        refs["words"] = chain(
            FeatureExtractor(attrs),
            list2ragged(),
            with_array(concatenate(*embeddings)),
        )
        parts.append(refs["words"])
        concat_size += width * len(attrs)
    if word_rows:
        refs["word_table"] = WordTable(width, word_rows, attr=word_attr, alpha=word_dropout)
        parts.append(refs["word_table"])
        concat_size += width
    if include_static_vectors:
        # keyed by the vectors table's own attribute (e.g. LOWER for GloVe)
        refs["vectors"] = KeyedStaticVectors(width, tune_rows=tune_vectors, alpha=word_dropout)
        parts.append(refs["vectors"])
        concat_size += width
    if char_encoder is not None:
        refs["chars"] = CharEncoder(
            char_encoder,
            width=char_width,
            embed_size=char_embed_size,
            max_chars=max_chars,
            window=char_window,
            n_rows=char_rows,
        )
        parts.append(refs["chars"])
        concat_size += char_width
    layers: List[Model] = [
        parts[0] if len(parts) == 1 else concatenate(*parts),
        with_array(Maxout(width, concat_size, nP=3, dropout=0.0, normalize=True)),
    ]
    # Always present, so that spaCy's [training] dropout (which sets every
    # layer's "dropout_rate") reaches the embeddings even when `dropout` is 0.
    layers.append(with_array(Dropout(dropout)))
    layers.append(ragged2list())
    return Model(
        "char_word_embed",
        embed_forward,
        init=embed_init,
        layers=[chain(*layers)],
        dims={"nO": width},
        refs=refs,
        attrs={"char_encoder": char_encoder or "none"},
    )


@registry.architectures("spacy_rnn.CharWordEmbed.v2")
def CharWordEmbed_v2(
    width: int,
    attrs: Sequence[Union[str, int]] = ("PREFIX", "SUFFIX", "SHAPE"),
    rows: Sequence[int] = (1000, 2500, 2500),
    include_static_vectors: bool = False,
    char_encoder: Optional[str] = "lstm",
    char_width: int = 50,
    char_embed_size: int = 25,
    max_chars: int = 20,
    char_window: int = 3,
    char_rows: int = 1000,
    dropout: float = 0.0,
    word_rows: int = 30000,
    word_attr: str = "NORM",
    word_dropout: float = 1.0,
    tune_vectors: int = 0,
) -> Model[List[Doc], List[Floats2d]]:
    """CharWordEmbed.v1 with new defaults: a word table (word_rows = 30,000,
    word dropout alpha 1) in place of the hashed NORM table, which was worth
    +1.8 dev F1 on CoNLL-2003 without pretrained vectors. A new name, so that
    a saved config with a v1 block keeps meaning the model it was trained as
    (spaCy fills the keys a block lacks from the factory's defaults)."""
    return CharWordEmbed(**locals())


def embed_forward(model: Model[List[Doc], List[Floats2d]], docs: List[Doc], is_train: bool):
    if not sum(len(doc) for doc in docs):
        # a batch without tokens (some thinc layers cannot concatenate empty parts)
        nO = model.get_dim("nO")
        return [model.ops.alloc2f(0, nO) for _ in docs], _no_grad
    return model.layers[0](docs, is_train)


def embed_init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> Model:
    model.layers[0].initialize(X=X)
    return model


def KeyedStaticVectors(nO: int, tune_rows: int = 0, alpha: float = 0.0) -> Model[List[Doc], Ragged]:
    """The vocab's static vectors, projected to nO by a learned linear layer
    (as spaCy's StaticVectors). With tune_rows > 0, the words seen in training
    (up to tune_rows) get a learned correction D[row] added to their vector
    (fine-tuning without copying the whole table; row 0, for all other words
    and for word dropout with `alpha`, stays zero). The vectors table's key attribute (e.g. LOWER
    for GloVe) is recorded at initialize and saved with the model: spaCy 3.8
    does not keep `Vectors.attr` through `to_disk`/`to_bytes`, so a reloaded
    pipeline would otherwise look its vectors up by ORTH and miss every
    capitalized word of a LOWER-keyed table."""
    return Model(
        "static_vectors",
        static_vectors_forward,
        init=static_vectors_init,
        params={"W": None, "D": None} if tune_rows else {"W": None},
        dims={"nO": nO, "nM": None, "nV": tune_rows + 1},
        attrs={"key_attr": None, "index": WordIndex(), "alpha": float(alpha)},
    )


def static_vectors_init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> Model:
    if X is not None and len(X):
        vectors = X[0].vocab.vectors
        is_floret = getattr(vectors, "mode", None) == Mode.floret
        if not vectors.shape[0] * vectors.shape[1] and not is_floret:
            raise ValueError(
                "CharWordEmbed: include_static_vectors is true, but the vocab has no "
                "vectors table: set [initialize] vectors (or --paths.vectors) in the config"
            )
        model.set_dim("nM", int(vectors.shape[1]))
        model.attrs["key_attr"] = int(getattr(vectors, "attr", ORTH))
    if not model.has_dim("nM"):
        raise ValueError("CharWordEmbed: static vectors need sample Docs at initialize")
    model.set_param("W", glorot_uniform_init(model.ops, (model.get_dim("nO"), model.get_dim("nM"))))
    if "D" in model.param_names:
        model.set_param("D", model.ops.alloc2f(model.get_dim("nV"), model.get_dim("nM")))
        model.attrs["index"] = WordIndex()
    return model


def static_vectors_forward(model: Model, docs: List[Doc], is_train: bool):
    ops = model.ops
    lengths = [len(doc) for doc in docs]
    if not sum(lengths):
        return Ragged(ops.alloc2f(0, model.get_dim("nO")), ops.asarray1i(lengths)), _no_grad
    vectors = docs[0].vocab.vectors
    key_attr = model.attrs["key_attr"]
    if key_attr is None:
        key_attr = int(getattr(vectors, "attr", ORTH))
    # (n_tokens,) keys of all tokens, by the attribute the table is keyed by
    keys = numpy.concatenate([_column(doc, key_attr) for doc in docs])
    if isinstance(vectors, Vectors) and vectors.mode == Mode.default:
        # one table lookup per distinct key of the batch
        unique_keys, inverse = numpy.unique(keys, return_inverse=True)
        rows = ops.asarray(vectors.find(keys=unique_keys)[inverse.reshape(-1)])  # -1 = none
        V = ops.as_contig(ops.asarray(vectors.data)[rows])  # (n_tokens, nM)
        V[rows < 0] = 0  # unknown words: zero vectors
    else:  # floret or other tables that compute vectors for any key
        V = ops.as_contig(ops.asarray(vectors.get_batch(keys)))
    tuned = "D" in model.param_names
    if tuned:
        # (n_tokens,) rows of the corrections, 0 = none
        capacity = model.get_dim("nV") - 1
        ids = ops.asarray1i(
            lookup_rows(model.attrs["index"], keys, is_train, capacity, model.attrs["alpha"])
        )
        V = V + model.get_param("D")[ids]
    W = model.get_param("W")  # (nO, nM)
    Y = ops.xp.matmul(V, W.T)  # (n_tokens, nO); numpy's BLAS, see ml/maxout.py

    def backprop(dY: Ragged) -> List:
        model.inc_grad("W", ops.xp.matmul(dY.data.T, V))
        if tuned:
            dD = ops.alloc2f(*model.get_param("D").shape)
            ops.scatter_add(dD, ids, ops.xp.matmul(dY.data, W))
            dD[0] = 0  # row 0 is the pretrained vector itself
            model.inc_grad("D", dD)
        return []

    return Ragged(Y, ops.asarray1i(lengths)), backprop


def CharEncoder(
    kind: str,
    *,
    width: int,
    embed_size: int,
    max_chars: int,
    window: int = 3,
    n_rows: int = 1000,
) -> Model[List[Doc], Ragged]:
    """One vector of `width` per token from its characters: "lstm" (final
    states of a character BiLSTM, [forward | backward]) or "cnn" (a 1D
    convolution, max-pooled over the word's characters, tanh)."""
    if kind not in CHAR_ENCODERS:
        raise ValueError(f"CharEncoder: kind must be 'lstm' or 'cnn', got {kind!r}")
    if kind == "lstm" and width % 2:
        raise ValueError(f"CharEncoder: char_width must be even for 'lstm', got {width}")
    if kind == "cnn" and (window < 1 or window % 2 == 0):
        raise ValueError(f"CharEncoder: char_window must be odd and >= 1, got {window}")
    if max_chars < 1 or embed_size < 1 or width < 1:
        raise ValueError(
            f"CharEncoder: max_chars, char_embed_size and char_width must be >= 1, "
            f"got {max_chars}, {embed_size}, {width}"
        )
    if n_rows < 2:
        raise ValueError(f"CharEncoder: char_rows must be >= 2, got {n_rows}")
    flush_denormal()
    module = CharModule(kind, n_rows, embed_size, width, window)
    table = CharTable(n_rows, max_chars)
    return Model(
        f"char_{kind}",
        char_forward,
        dims={"nO": width},
        attrs={"kind": kind, "max_chars": max_chars, "char_table": table},
        shims=[make_shim(module)],
    )


class CharTable:
    """orth id -> character ids (first and last characters of long words),
    cached: a word's string is read once, later batches look all their words
    up at once with a binary search over the sorted cached keys."""

    max_size = 2_000_000  # words; the cache is cleared when it grows past this

    def __init__(self, n_rows: int, max_chars: int):
        self.n_rows = n_rows
        self.max_chars = max_chars
        self._clear()

    def _clear(self) -> None:
        self.keys = numpy.zeros((0,), dtype=numpy.uint64)
        self.ids = numpy.zeros((0, self.max_chars), dtype=numpy.int64)
        self.lengths = numpy.zeros((0,), dtype=numpy.int64)

    # The cache is not state: it is rebuilt from the strings after unpickling,
    # and it is not written by to_bytes (thinc serializes attrs with msgpack).
    def __getstate__(self):
        return {"n_rows": self.n_rows, "max_chars": self.max_chars}

    def __setstate__(self, state):
        self.__init__(state["n_rows"], state["max_chars"])

    def __call__(
        self, orths: numpy.ndarray, strings: StringStore
    ) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """orths: (n,) sorted unique uint64. Returns ids (n, max_chars) int64, 0 =
        padding, and lengths (n,) int64 (>= 1: an empty word gets one padding
        character)."""
        pos = self._find(orths)
        missing = pos < 0
        if missing.any():
            if self.keys.shape[0] + int(missing.sum()) > self.max_size:
                self._clear()
                missing = numpy.ones(orths.shape, dtype=bool)
            new = orths[missing]
            ids, lengths = self.encode([strings[int(key)] for key in new])
            keys = numpy.concatenate([self.keys, new])
            order = numpy.argsort(keys, kind="stable")
            self.keys = keys[order]
            self.ids = numpy.concatenate([self.ids, ids])[order]
            self.lengths = numpy.concatenate([self.lengths, lengths])[order]
            pos = self._find(orths)
        return self.ids[pos], self.lengths[pos]

    def _find(self, orths: numpy.ndarray) -> numpy.ndarray:
        return find_sorted(self.keys, orths)

    def encode(self, words: List[str]) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """Character ids of words, vectorized over all their characters."""
        M = self.max_chars
        n_words = len(words)
        word_len = numpy.fromiter(map(len, words), dtype=numpy.int64, count=n_words)
        # (n_chars_total,) codepoints of all words, concatenated
        codepoints = numpy.frombuffer("".join(words).encode("utf-32-le"), dtype=numpy.uint32)
        starts = numpy.cumsum(word_len) - word_len
        j = numpy.arange(M)[None, :]  # (1, M) output position
        L = word_len[:, None]  # (n, 1)
        head = (M + 1) // 2
        # long words: the first `head` characters, then the last M - head
        offset = numpy.where((L > M) & (j >= head), L - M + j, j)  # (n, M)
        valid = j < numpy.minimum(L, M)  # (n, M)
        src = numpy.where(valid, starts[:, None] + offset, 0)
        if codepoints.shape[0]:
            ids = 1 + codepoints[src].astype(numpy.int64) % (self.n_rows - 1)
        else:
            ids = numpy.zeros((n_words, M), dtype=numpy.int64)
        ids = numpy.where(valid, ids, PAD_CHAR)
        lengths = numpy.maximum(numpy.minimum(word_len, M), 1)
        return ids, lengths


@serialize_attr.register(CharTable)
def _serialize_char_table(_, value: CharTable, name: str, model: Model) -> bytes:
    # the cache is derived data: only its settings are written
    return srsly.msgpack_dumps({"n_rows": value.n_rows, "max_chars": value.max_chars})


@deserialize_attr.register(CharTable)
def _deserialize_char_table(_, value: bytes, name: str, model: Model) -> CharTable:
    cfg = srsly.msgpack_loads(value)
    return CharTable(cfg["n_rows"], cfg["max_chars"])


class CharModule(torch.nn.Module):
    def __init__(self, kind: str, n_rows: int, embed_size: int, width: int, window: int):
        super().__init__()
        self.kind = kind
        self.embed = torch.nn.Embedding(n_rows, embed_size, padding_idx=PAD_CHAR)
        if kind == "lstm":
            self.rnn = torch.nn.LSTM(embed_size, width // 2, batch_first=True, bidirectional=True)
        else:
            # zero padding = the padding character's zero embedding, so a word's
            # encoding does not depend on the longest word of the batch
            self.conv = torch.nn.Conv1d(embed_size, width, window, padding=window // 2)

    def forward(
        self,
        chars: torch.Tensor,
        lengths: torch.Tensor,
        token_to_word: torch.Tensor,
        dense: Optional[Tuple[DensePlan, torch.Tensor, torch.Tensor]] = None,
    ) -> torch.Tensor:
        """chars: (n_words, n_chars) padded ids, or with `dense` (the "lstm"
        kind on CPU) (n_chars_total,), the characters of all words, word after
        word; `dense` then holds their bucket plan and each word's first and
        last character. Returns (n_tokens, width)."""
        if dense is not None:
            plan, first, last = dense
            Y = run_dense(self.rnn, self.embed(chars), plan)  # (n_chars_total, width)
            H = self.rnn.hidden_size
            # final states: forward after the last character, backward after the first
            words = torch.cat([Y[:, :H].index_select(0, last), Y[:, H:].index_select(0, first)], 1)
            return words.index_select(0, token_to_word)
        E = self.embed(chars)  # (n_words, n_chars, embed_size)
        if self.kind == "lstm":
            packed = pack_padded_sequence(E, lengths, batch_first=True, enforce_sorted=False)
            _, (h_n, _) = self.rnn(packed)  # h_n: (2, n_words, width // 2), batch order
            words = torch.cat([h_n[0], h_n[1]], dim=1)  # (n_words, width)
        else:
            C = self.conv(E.transpose(1, 2))  # (n_words, width, n_chars)
            pad = (chars == PAD_CHAR).unsqueeze(1)  # (n_words, 1, n_chars)
            # (an empty word is all padding: it gets the conv over zeros at position 0)
            pad[:, :, 0] = False
            words = torch.tanh(C.masked_fill(pad, float("-inf")).amax(dim=2))  # (n_words, width)
        return words.index_select(0, token_to_word)  # (n_tokens, width)


def char_forward(model: Model[List[Doc], Ragged], docs: List[Doc], is_train: bool):
    ops = model.ops
    nO = model.get_dim("nO")
    doc_lengths = numpy.array([len(doc) for doc in docs], dtype=numpy.int64)
    if not doc_lengths.sum():
        return Ragged(ops.alloc2f(0, nO), ops.asarray1i(doc_lengths)), _no_grad
    shim = model.shims[0]
    device = shim.device
    # (n_tokens,) orth ids of all tokens
    orths = numpy.concatenate([_column(doc, ORTH) for doc in docs])
    # the characters are encoded once per distinct word of the batch
    words, token_to_word = numpy.unique(orths, return_inverse=True)
    ids, lengths = model.attrs["char_table"](words, docs[0].vocab.strings)
    ids = ids[:, : int(lengths.max())]  # (n_words, n_chars)
    dense = None
    if model.attrs["kind"] == "lstm" and device.type == "cpu":
        # the characters of all words, word after word, read in dense buckets
        ids = ids[numpy.arange(ids.shape[1])[None, :] < lengths[:, None]]  # (n_chars_total,)
        last = numpy.cumsum(lengths) - 1
        first = last - lengths + 1
        dense = (dense_plan(lengths, device), torch.from_numpy(first), torch.from_numpy(last))
    args = (
        torch.from_numpy(ids).to(device),
        torch.from_numpy(lengths),  # pack_padded_sequence wants CPU lengths
        torch.from_numpy(token_to_word.reshape(-1).astype(numpy.int64)).to(device),
        dense,
    )
    Yt, torch_backprop = run_shim(shim, args, is_train)
    Y = torch2xp(Yt, ops=ops)  # (n_tokens, nO)

    def backprop(dY: Ragged) -> List[Doc]:
        torch_backprop(xp2torch(ops.as_contig(dY.data), device=device))
        return []

    return Ragged(Y, ops.asarray1i(doc_lengths)), backprop


def _no_grad(d_output: Ragged) -> List:
    return []
