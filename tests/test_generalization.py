"""Training lengths in epochs (spacy_rnn.epoch_steps.v1) and the generalization suite's
selection, config patching, merging and report."""
import itertools
import json
import warnings
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, DocBin
from spacy.training import Corpus
from spacy.util import load_config, registry

from spacy_rnn.benchmark import generalization as gen
from spacy_rnn.benchmark.configs import prepare_config
from spacy_rnn.benchmark.results import load_results, save_results
from spacy_rnn.benchmark.systems import Settings
from spacy_rnn.schedules import batches_per_epoch, epoch_steps, example_lengths

ROOT = Path(__file__).resolve().parent.parent


def _docbin(path: Path, lengths, sents_per_doc: int = 1) -> Path:
    """Docs of these token counts, each cut into `sents_per_doc` gold sentences."""
    vocab = spacy.blank("en").vocab
    docs = []
    for n in lengths:
        words = [f"w{i}" for i in range(n)]
        starts = [i % max(1, n // sents_per_doc) == 0 for i in range(n)]
        docs.append(Doc(vocab, words=words, sent_starts=starts))
    path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs).to_disk(path)
    return path


def _batcher(name: str, size: int):
    block = {"@batchers": name, "size": size}
    if name == "spacy.batch_by_words.v1":
        block.update(discard_oversize=False, tolerance=0.2)
    return registry.resolve({"b": block})["b"]


def test_epoch_steps_counts_batches_of_docs(tmp_path):
    path = _docbin(tmp_path / "train.spacy", [5] * 130)
    by_seq = _batcher("spacy.batch_by_sequence.v1", 64)  # 130 docs: 3 batches an epoch
    assert epoch_steps(str(path), by_seq, epochs=2) == 6
    assert epoch_steps(str(path), by_seq, epochs=0.5) == 2  # round(1.5) = 2
    assert epoch_steps(str(path), by_seq, epochs=0.1) == 1  # never 0
    assert epoch_steps(str(path), by_seq, epochs=2, min_steps=50) == 50
    by_words = _batcher("spacy.batch_by_words.v1", 50)  # 650 words, 10 docs a batch
    assert epoch_steps(str(path), by_words, epochs=1) == 13


def test_epoch_steps_follows_the_reader(tmp_path):
    """A spacy.Corpus reader's gold_preproc (one example per sentence) and limit
    change what an epoch is, as they change what spaCy's training loop reads."""
    path = _docbin(tmp_path / "train.spacy", [40] * 10, sents_per_doc=4)
    by_seq = _batcher("spacy.batch_by_sequence.v1", 8)
    assert epoch_steps(Corpus(path), by_seq, epochs=1) == 2  # 10 docs
    assert epoch_steps(Corpus(path, gold_preproc=True), by_seq, epochs=1) == 5  # 40 sents
    assert epoch_steps(Corpus(path, limit=4), by_seq, epochs=1) == 1
    assert example_lengths(path, gold_preproc=True) == [10] * 40
    assert example_lengths(path, max_length=20) == [10] * 40  # long docs cut at sentences
    # equal to what spaCy's reader yields
    nlp = spacy.blank("en")
    assert len(list(Corpus(path, gold_preproc=True)(nlp))) == 40


def test_epoch_steps_matches_spacys_epoch(tmp_path):
    """The count is that of the batches spaCy's training loop makes of one epoch
    (unshuffled: the same examples in file order)."""
    path = _docbin(tmp_path / "train.spacy", [3, 17, 8, 30, 2, 11, 25, 9] * 9)
    nlp = spacy.blank("en")
    examples = list(Corpus(path)(nlp))
    for name, size in (("spacy.batch_by_words.v1", 40), ("spacy.batch_by_sequence.v1", 5)):
        batcher = _batcher(name, size)
        spacy_batches = sum(1 for _ in batcher(examples))
        assert epoch_steps(str(path), batcher, epochs=1) == spacy_batches
        assert batches_per_epoch(example_lengths(path), batcher) == spacy_batches


def test_epoch_steps_missing_corpus_warns(tmp_path):
    by_seq = _batcher("spacy.batch_by_sequence.v1", 8)
    with pytest.warns(UserWarning, match="not found"):
        assert epoch_steps(str(tmp_path / "absent.spacy"), by_seq, epochs=3, min_steps=7) == 7
    with pytest.raises(ValueError, match="epochs"):
        epoch_steps(str(tmp_path / "absent.spacy"), by_seq, epochs=0)
    with pytest.raises(ValueError, match="corpus must be"):
        epoch_steps(object(), by_seq, epochs=1)
    empty = tmp_path / "empty.spacy"
    DocBin(docs=[]).to_disk(empty)
    with pytest.raises(ValueError, match="no examples"):
        epoch_steps(str(empty), by_seq, epochs=1)


def test_shipped_config_schedule_in_a_training_block(tmp_path):
    """In a config, the learn rate's total_steps interpolates max_steps: both are
    sized from the corpus (warmup_linear reaches 0 at max_steps)."""
    path = _docbin(tmp_path / "train.spacy", [40] * 1000)
    config = load_config(ROOT / "configs" / "ner_bilstm_crf.cfg",
                         overrides={"paths.train": str(path), "paths.dev": str(path)},
                         interpolate=False)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    filled = nlp.config.interpolate()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the corpus exists: no fallback
        T = registry.resolve(filled["training"])
    per_epoch = batches_per_epoch([40] * 1000, T["batcher"])  # 40,000 words, 400 a batch
    assert per_epoch == 100
    epochs = config["training"]["max_steps"]["epochs"]
    assert T["max_steps"] == round(epochs * per_epoch)
    assert T["eval_frequency"] == per_epoch
    lr = filled["training"]["optimizer"]["learn_rate"]
    assert registry.resolve({"n": lr["total_steps"]})["n"] == T["max_steps"]
    rates = list(itertools.islice(registry.resolve({"s": lr})["s"], T["max_steps"] + 1))
    assert rates[-1] == pytest.approx(0.0, abs=1e-9) and rates[len(rates) // 2] > 0


# --------------------------------------------------------------------------- the suite


def test_suite_selection():
    assert [c.name for c in gen.resolve_corpora("textcat")] == ["cr", "trec", "subj", "mpqa",
                                                                "sst2"]
    assert [c.name for c in gen.resolve_corpora("wikiann-de,cr,cr")] == ["wikiann-de", "cr"]
    with pytest.raises(ValueError, match="unknown corpus 'imdb'"):
        gen.resolve_corpora("imdb")
    names = [s.name for s in gen.resolve_suite_systems("shipped")]
    assert "spacy-default" in names and "textcat_bilstm-v3" not in names
    with pytest.raises(ValueError, match="unknown system"):
        gen.resolve_suite_systems("bert")
    assert gen.parse_seeds("0,1,1,2") == [0, 1, 2]
    with pytest.raises(ValueError, match="--seeds"):
        gen.parse_seeds("a")
    glove = gen.SYSTEMS["ner_bilstm_crf_glove"]
    assert glove.fits(gen.CORPORA["conll2003"]) and not glove.fits(gen.CORPORA["wikiann-de"])
    assert not gen.SYSTEMS["textcat_bilstm"].fits(gen.CORPORA["conll2003"])
    assert gen.SYSTEMS["spacy-default"].fits(gen.CORPORA["wikiann-de"])


def test_prepare_config_language_seed_architecture(tmp_path):
    data = {s: tmp_path / f"{s}.spacy" for s in ("train", "dev", "test")}
    settings = Settings(work=tmp_path, output=tmp_path, configs=ROOT / "configs")
    system = gen._bench_system(gen.SYSTEMS["textcat_bilstm-v3-ngram10"], gen.CORPORA["cr"])
    path = prepare_config(system, settings, data, tmp_path / "a" / "log.jsonl", lang="de",
                          seed=7, architecture="spacy_rnn.RNNTextCat.v3",
                          model_args={"ngram_scale": 10.0})
    config = load_config(path, interpolate=False)
    assert config["nlp"]["lang"] == "de" and config["system"]["seed"] == 7
    model = config["components"]["textcat"]["model"]
    assert model["@architectures"] == "spacy_rnn.RNNTextCat.v3"
    assert model["ngram_scale"] == 10.0 and model["pooling"] == "attention"
    assert config["paths"]["train"] == str(data["train"])
    # v1 has no lm_words: swapping a v2 model to v1 drops it
    spacy_system = gen._bench_system(gen.SYSTEMS["spacy-default"], gen.CORPORA["wikiann-de"])
    path = prepare_config(spacy_system, settings, data, tmp_path / "b" / "log.jsonl", lang="de")
    config = load_config(path, interpolate=False)
    assert config["nlp"]["lang"] == "de" and config["nlp"]["pipeline"][-1] == "ner"


def _entry(corpus, system, seed, dev, test, task="textcat"):
    key = "accuracy" if task == "textcat" else "f1"
    return {"corpus": corpus, "system": system, "seed": seed, "task": task, "status": "ok",
            "dev": {key: dev}, "test": {key: test}, "steps": 100, "train_seconds": 60.0,
            "command": f"python -m spacy_rnn benchmark --suite generalization --corpora "
                       f"{corpus} --systems {system} --seeds {seed} --max-minutes 25"}


def test_results_merge_and_report(tmp_path):
    path = tmp_path / "generalization.json"
    runs = [
        _entry("cr", "textcat_bilstm", 0, 0.80, 0.76),
        _entry("cr", "spacy-default", 0, 0.82, 0.78),
        _entry("cr", "textcat_bilstm", 1, 0.78, 0.74),
        _entry("trec", "spacy-default", 0, 0.85, 0.88),
        _entry("trec", "textcat_bilstm", 0, 0.86, 0.90),
        _entry("wikiann-de", "ner_bilstm_crf", 0, 0.80, 0.79, task="ner"),
        _entry("wikiann-de", "spacy-default", 0, 0.70, 0.71, task="ner"),
    ]
    for entry in runs:  # one process each, as parallel runs merge
        key = gen.run_key(entry["corpus"], entry["system"], entry["seed"])
        save_results({"version": 1, "systems": {key: entry}}, path, names=[key])
    results = load_results(path)
    assert len(results["systems"]) == 7
    summary = gen.summarise(results)
    row = summary[("cr", "textcat_bilstm")]
    assert row["seeds"] == [0, 1] and row["dev"] == pytest.approx(0.79)
    assert row["dev_sd"] == pytest.approx(0.01414, abs=1e-4)
    assert "--seeds 0,1 --max-minutes 25" in row["command"]
    md = gen.generalization_markdown(results)
    assert md.index("Selection rule") < md.index("## Text classification")
    assert "| cr | textcat_bilstm | 0,1 | 79.00 ± 1.41 | 75.00 ± 1.41 |" in md
    assert "| cr | textcat_bilstm | -3.00 | (-3.00) |" in md
    assert "| trec | textcat_bilstm | +2.00 | (+1.00) |" in md
    assert "## NER (seqeval F1, %)" in md and "wikiann-de" in md
    # candidates compared on the corpora all of them ran on
    assert "| system | cr | trec | mean over cr, trec | mean, own |" in md
    assert "| textcat_bilstm | 79.00 (2) | 86.00 (1) | 82.50 | 82.50 |" in md
    # spaCy's default NER run is not a text classifier's score
    assert "| spacy-default | 82.00 (1) | 85.00 (1) | 83.50 | 83.50 |" in md
    written = gen.write_generalization_report(results, tmp_path)
    assert written[0].read_text(encoding="utf8") == md
    if len(written) > 1:
        assert written[1].suffix == ".png" and written[1].stat().st_size > 1000
    json.loads(path.read_text(encoding="utf8"))


def test_run_rejects_runs_that_fit_nothing(tmp_path):
    settings = Settings(work=tmp_path, output=tmp_path)
    with pytest.raises(ValueError, match="no run"):
        gen.run_generalization([gen.SYSTEMS["textcat_bilstm"]], [gen.CORPORA["wikiann-de"]],
                               [0], settings, tmp_path)


def test_convert_corpus_names_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="cr/train.tsv not found"):
        gen.convert_corpus(gen.CORPORA["cr"], tmp_path, tmp_path / "out")
