"""Training lengths in epochs: step counts sized from the training corpus.

spaCy's `[training]` block counts `max_steps`, `patience` and `eval_frequency`
in updates, and a learn-rate schedule's `total_steps` likewise; a number of
updates that suits 67,000 SST-2 phrases is 22 epochs of a 3,000-sentence
corpus. `spacy_rnn.epoch_steps.v1` turns a number of epochs into the number
of updates the config's own batcher makes over the config's own training
corpus, so one config trains as long, evaluates as often and waits as long
(in passes over the data) on any corpus:

    [training.eval_frequency]
    @misc = "spacy_rnn.epoch_steps.v1"
    corpus = ${corpora.train}
    batcher = ${training.batcher}
    epochs = 0.5

    [training.optimizer.learn_rate]
    @schedules = "warmup_linear.v1"
    total_steps = ${training.max_steps}

The batches of one epoch are counted by running the batcher over the lengths
of the reader's examples (a `spacy.Corpus.v1` reader's path, `gold_preproc`,
`max_length` and `limit` are honoured; augmenters are not run), in file order,
so a length-based batcher (`batch_by_words`) gives the count of an unshuffled
epoch: shuffled epochs differ by a few batches. The lengths of a file are read
once per process.
"""
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from spacy.util import registry

_LENGTHS: Dict[Tuple, List[int]] = {}


@registry.misc("spacy_rnn.epoch_steps.v1")
def epoch_steps(
    corpus: Any,
    batcher: Callable[[Iterable[Any]], Iterable[List[Any]]],
    epochs: float,
    min_steps: int = 1,
) -> int:
    """The number of updates in `epochs` passes over the training corpus.

    corpus: the training reader (`${corpora.train}`, a `spacy.Corpus.v1`) or
        the path of a DocBin file or folder (`${paths.train}`).
    batcher: the training batcher (`${training.batcher}`).
    epochs (float): passes over the corpus, e.g. 0.5 to evaluate twice an epoch.
    min_steps (int): a floor: small corpora get at least this many updates
        (an optimizer needs a number of updates, whatever the corpus size).
    RETURNS (int): max(min_steps, round(epochs * batches per epoch)), at least 1.

    A corpus that does not exist when the config is resolved (e.g. a config
    checked before `convert`) cannot be counted: a warning says so and
    `max(1, min_steps)` is returned; training itself reads the corpus and
    fails on it then.
    """
    if epochs <= 0:
        raise ValueError(f"spacy_rnn.epoch_steps.v1: epochs must be positive, got {epochs}")
    if min_steps < 0:
        raise ValueError(f"spacy_rnn.epoch_steps.v1: min_steps must be >= 0, got {min_steps}")
    path, gold_preproc, max_length, limit = _reader_settings(corpus)
    if path is None or not path.exists():
        warnings.warn(
            f"spacy_rnn.epoch_steps.v1: training corpus {str(path)!r} not found, so the "
            f"step count of {epochs} epochs cannot be sized; using {max(1, min_steps)} "
            "(set [paths] train to an existing DocBin)"
        )
        return max(1, min_steps)
    lengths = example_lengths(path, gold_preproc, max_length, limit)
    if not lengths:
        raise ValueError(f"spacy_rnn.epoch_steps.v1: {path} holds no examples")
    per_epoch = batches_per_epoch(lengths, batcher)
    return max(1, min_steps, int(round(epochs * per_epoch)))


def batches_per_epoch(lengths: List[int], batcher: Callable) -> int:
    """How many batches `batcher` makes of examples of these lengths (in order).
    Each example stands in as a `range` of its length: spaCy's batchers read an
    item's length with `len()` only."""
    return sum(1 for _ in batcher([range(n) for n in lengths]))


def _reader_settings(corpus: Any) -> Tuple[Optional[Path], bool, int, int]:
    """(path, gold_preproc, max_length, limit) of a spacy.Corpus or a path."""
    if corpus is None:
        return None, False, 0, 0
    if isinstance(corpus, (str, Path)):
        return Path(corpus), False, 0, 0
    path = getattr(corpus, "path", None)
    if path is None and not hasattr(corpus, "gold_preproc"):
        raise ValueError(
            "spacy_rnn.epoch_steps.v1: corpus must be a spacy.Corpus.v1 reader "
            f"(${{corpora.train}}) or a DocBin path (${{paths.train}}), got {type(corpus).__name__}"
        )
    return (
        Path(path) if path is not None else None,
        bool(getattr(corpus, "gold_preproc", False)),
        int(getattr(corpus, "max_length", 0) or 0),
        int(getattr(corpus, "limit", 0) or 0),
    )


def example_lengths(path: Path, gold_preproc: bool = False, max_length: int = 0,
                    limit: int = 0) -> List[int]:
    """Token counts of the examples spaCy's Corpus reader makes of a DocBin file
    or folder (as `spacy.training.Corpus`: the first `limit` non-empty docs; one
    example per doc, or per sentence with `gold_preproc`, or per sentence
    shorter than `max_length` for docs of `max_length` tokens or more)."""
    from spacy.tokens import DocBin
    from spacy.training.corpus import walk_corpus
    from spacy.vocab import Vocab

    files = walk_corpus(path, ".spacy")
    key = (tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files),
           gold_preproc, max_length, limit)
    if key in _LENGTHS:
        return _LENGTHS[key]
    vocab = Vocab()
    lengths: List[int] = []
    n_docs = 0
    for file in files:
        for doc in DocBin().from_disk(file).get_docs(vocab):
            if not len(doc):
                continue
            n_docs += 1
            has_sents = doc.has_annotation("SENT_START")
            if gold_preproc:
                lengths += [len(s) for s in doc.sents] if has_sents else [len(doc)]
            elif max_length == 0 or len(doc) < max_length:
                lengths.append(len(doc))
            elif has_sents:
                lengths += [len(s) for s in doc.sents if len(s) < max_length]
            if limit >= 1 and n_docs >= limit:
                break
        if limit >= 1 and n_docs >= limit:
            break
    lengths = [n for n in lengths if n]
    _LENGTHS[key] = lengths
    return lengths


def epochs_of(steps: int, lengths: List[int], batcher: Callable) -> float:
    """Epochs that `steps` updates make (for reports: the inverse of epoch_steps)."""
    return steps / max(1, batches_per_epoch(lengths, batcher))


__all__ = ["epoch_steps", "batches_per_epoch", "example_lengths", "epochs_of"]
