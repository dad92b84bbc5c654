"""The Flair peer systems of the benchmark (spacy_rnn/benchmark/flair_peer.py):
corpus conversion, one training step of each system builder on a 20-sentence
slice, its predictions scored by our evaluation, the speed runner beside a spaCy
pipeline, and one system through the harness. Skipped when the `peers` extra
(flair) is not installed; nothing is downloaded (no network needed)."""
import json

import pytest
import spacy
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from helpers import NER_SENTENCES, TEXTCAT_DATA
from spacy_rnn.benchmark import flair_peer
from spacy_rnn.benchmark.speed import measure_speed
from spacy_rnn.benchmark.systems import GROUPS, PEERS, Settings, resolve_systems
from spacy_rnn.benchmark.train import train_system
from spacy_rnn.evaluation import evaluate_docs, load_docs

pytest.importorskip("flair")
gensim_models = pytest.importorskip("gensim.models")

N_DOCS = 20


def ner_docs(vocab):
    """20 one-sentence reference docs (NER_SENTENCES over and over)."""
    sentences = (NER_SENTENCES * N_DOCS)[:N_DOCS]
    return [Doc(vocab, words=words, ents=tags, sent_starts=[True] + [False] * (len(words) - 1))
            for words, tags in sentences]


def textcat_docs(vocab):
    """20 reference docs with POS/NEG cats (TEXTCAT_DATA over and over)."""
    nlp = spacy.blank("en", vocab=vocab)
    docs = []
    for text, label in (TEXTCAT_DATA * N_DOCS)[:N_DOCS]:
        doc = nlp.make_doc(text)
        doc.cats = {"POS": float(label == "POS"), "NEG": float(label == "NEG")}
        docs.append(doc)
    return docs


def write_splits(docs, folder):
    """The same docs as train, dev and test DocBins; RETURNS their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "dev", "test"):
        paths[split] = folder / f"{split}.spacy"
        DocBin(docs=docs, store_user_data=True).to_disk(paths[split])
    return paths


@pytest.fixture
def tiny_vectors(tmp_path):
    """A gensim KeyedVectors file with a few words, in place of GloVe."""
    words = sorted({w.lower() for words, _ in NER_SENTENCES for w in words}
                   | {w for text, _ in TEXTCAT_DATA for w in text.split()})
    kv = gensim_models.KeyedVectors(vector_size=4)
    kv.add_vectors(words, [[float(i % 3), 1.0, -1.0, i / 10] for i in range(len(words))])
    path = tmp_path / "tiny.kv"
    kv.save(str(path))
    return path


def test_flair_peer_writes_flairs_corpus_files(tmp_path):
    docs = ner_docs(Vocab())[:2]
    assert flair_peer.write_column_file(docs, tmp_path / "ner.txt") == 2
    lines = (tmp_path / "ner.txt").read_text(encoding="utf8").split("\n")
    assert lines[:7] == ["Peter B-PER", "Blackburn I-PER", "went O", "to O", "Brussels B-LOC",
                         ". O", ""]
    assert lines[7:12] == ["EU B-ORG", "rejects O", "German B-MISC", "call O", ""]
    docs = textcat_docs(Vocab())[:2]
    assert flair_peer.write_fasttext_file(docs, tmp_path / "sst.txt") == 2
    assert (tmp_path / "sst.txt").read_text(encoding="utf8").splitlines() == [
        "__label__POS a great and moving film", "__label__NEG a dull and tired film"]


def test_flair_peer_systems_are_not_in_the_default_groups():
    assert GROUPS["peers"] == list(PEERS)
    assert set(PEERS) == {"flair-ner", "flair-ner-glove", "flair-sst2", "flair-sst2-glove"}
    for group in ("all", "ner", "sentiment"):
        assert not set(GROUPS[group]) & set(PEERS)
    assert [s.name for s in resolve_systems("peers,bilstm-crf")][-1] == "bilstm-crf"
    assert all(s.kind == "flair" and not s.ours for s in PEERS.values())


@pytest.mark.parametrize("vectors", [False, True])
def test_flair_peer_ner_trains_one_step_and_predicts(tmp_path, tiny_vectors, vectors):
    paths = write_splits(ner_docs(Vocab()), tmp_path / "data")
    out = tmp_path / "model"
    meta = flair_peer.train("ner", paths["train"], paths["dev"], paths["test"], out,
                            vectors=tiny_vectors if vectors else None, max_steps=1)
    assert meta["steps"] == 1 and not meta["timed_out"]
    assert meta["trainer_settings"]["learning_rate"] == 0.1
    assert json.loads((out / flair_peer.META_FILE).read_text())["task"] == "ner"
    gold, pred = load_docs(paths["test"]), load_docs(out / "predictions" / "test.spacy")
    assert [[t.text for t in d] for d in pred] == [[t.text for t in d] for d in gold]
    assert all(e.label_ in {"PER", "LOC", "ORG", "MISC"} for d in pred for e in d.ents)
    metrics = evaluate_docs(gold, pred)
    assert 0.0 <= metrics["ner"]["seqeval"]["default"]["f"] <= 1.0
    task, model = flair_peer.load_flair_model(out)
    assert task == "ner" and type(model).__name__ == "SequenceTagger"
    assert not model.training


@pytest.mark.parametrize("vectors", [False, True])
def test_flair_peer_textcat_trains_one_step_and_predicts(tmp_path, tiny_vectors, vectors):
    paths = write_splits(textcat_docs(Vocab()), tmp_path / "data")
    out = tmp_path / "model"
    meta = flair_peer.train("sentiment", paths["train"], paths["dev"], paths["test"], out,
                            vectors=tiny_vectors if vectors else None, max_steps=1)
    assert meta["steps"] == 1
    gold, pred = load_docs(paths["test"]), load_docs(out / "predictions" / "test.spacy")
    assert len(pred) == len(gold) == N_DOCS
    for doc in pred:
        assert set(doc.cats) == {"POS", "NEG"}
        assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-4)
    metrics = evaluate_docs(gold, pred)
    assert 0.0 <= metrics["textcat"]["accuracy"] <= 1.0


def test_flair_peer_predicts_without_dropout(tmp_path):
    """A trainer stopped early leaves the model in training mode; predictions
    must not depend on it (no dropout): the same twice, as after loading."""
    paths = write_splits(textcat_docs(Vocab()), tmp_path / "data")
    flair_peer.train("sentiment", paths["train"], paths["dev"], paths["test"],
                     tmp_path / "model", max_steps=1)
    _, model = flair_peer.load_flair_model(tmp_path / "model")
    gold = load_docs(paths["test"])
    model.train()
    first = [d.cats for d in flair_peer.predict_docs("sentiment", model, gold)]
    model.train()
    again = [d.cats for d in flair_peer.predict_docs("sentiment", model, gold)]
    assert first == again
    saved = [d.cats for d in load_docs(tmp_path / "model" / "predictions" / "test.spacy")]
    assert [c["POS"] for c in first] == pytest.approx([c["POS"] for c in saved], abs=1e-5)


def test_flair_peer_is_timed_beside_a_spacy_pipeline(tmp_path):
    paths = write_splits(ner_docs(Vocab()), tmp_path / "data")
    flair_peer.train("ner", paths["train"], paths["dev"], paths["test"], tmp_path / "flair",
                     max_steps=1)
    nlp = spacy.blank("en")
    nlp.to_disk(tmp_path / "spacy")
    texts = ["Peter Blackburn went to Brussels .", "EU rejects German call"] * 3
    run = flair_peer.make_speed_runner(tmp_path / "flair", batch_size=4)
    assert run(texts) == 6 * 3 + 4 * 3
    lines = []
    speeds = measure_speed({"spacy": tmp_path / "spacy", "flair": tmp_path / "flair"}, texts,
                           rounds=1, batch_size=4, log=lines.append)
    assert speeds["flair"]["wps"] > 0 and speeds["flair"]["measured_with"] == ["spacy", "flair"]


@pytest.mark.slow
def test_flair_peer_through_the_harness(tmp_path):
    """A Flair system trained by the harness in its own process and scored with
    our evaluation: its results entry, with the model as `flair_model`."""
    paths = write_splits(ner_docs(Vocab()), tmp_path / "data")
    settings = Settings(output=tmp_path / "out", work=tmp_path / "work", max_steps=1)
    entry = train_system(PEERS["flair-ner"], settings, paths)
    assert entry["status"] == "ok" and entry["steps"] == 1 and entry["kind"] == "flair"
    assert "model_dir" not in entry and flair_peer.is_flair_model(entry["flair_model"])
    assert 0.0 <= entry["test"]["f1"] <= 1.0 and entry["peak_rss_mb"] > 0
    # (the work folder is where the run keeps its models, not part of the reproduce command)
    assert entry["command"] == "python -m spacy_rnn benchmark --systems flair-ner " + \
        f"--output {tmp_path / 'out'} --max-steps 1"
    assert (settings.output / "scores" / "flair-ner-test.json").exists()


@pytest.mark.parametrize("task", ["ner", "sentiment"])
def test_flair_dev_evaluation_keeps_no_stale_embeddings(tmp_path, task):
    """Flair's trainer scores dev after each epoch under no_grad; with its default
    embeddings_storage_mode "cpu" the embeddings computed there stay on the dev
    sentences, and later epochs score dev with those of the first evaluation (the
    DocumentRNNEmbeddings vectors, the CharacterEmbeddings), so the dev curve and
    the choice of the best epoch are not those of the saved model. The settings
    store none: after an epoch and its dev evaluation, no dev sentence holds one."""
    docs = ner_docs(Vocab()) if task == "ner" else textcat_docs(Vocab())
    corpus = flair_peer.build_corpus(task, docs, docs, tmp_path / "corpus")
    model = flair_peer.build_model(task, corpus)
    meta = flair_peer.train_model(task, model, corpus, tmp_path / "flair", max_epochs=1)
    assert meta["trainer_settings"]["embeddings_storage_mode"] == "none"
    assert meta["epochs"] == 1
    dev = list(corpus.dev)
    stored = [s for s in dev if s._embeddings or any(t._embeddings for t in s)]
    assert not stored, f"{len(stored)} of {len(dev)} dev sentences keep embeddings"
