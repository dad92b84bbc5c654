"""spaCy's own `ner` and `tagger` trained by spaCy's training loop (the one
`spacy train` runs: init_nlp + spacy.training.loop.train) on our tok2vec
(CharWordEmbed >> BiRNNEncoder), from the shipped configs, on a slice of
CoNLL-2003. Each must end with a lower loss per step and a higher dev score
than it started with."""
from pathlib import Path
from typing import Dict, List

import pytest
import spacy
from spacy.tokens import Doc, DocBin
from spacy.training.initialize import init_nlp
from spacy.training.loop import train as train_nlp
from spacy.util import registry

import spacy_rnn  # noqa: F401
from helpers import read_conll_columns


def write_docbin(path: Path, sentences, vocab) -> Path:
    docs = [Doc(vocab, words=w, tags=p, ents=n) for w, p, n in sentences]
    DocBin(docs=docs, store_user_data=False).to_disk(path)
    return path


_LOGS: Dict[str, List[dict]] = {}


@registry.loggers("spacy_rnn_test.capture_logger.v1")
def capture_logger(key: str):
    def setup(nlp, stdout=None, stderr=None):
        _LOGS[key] = []

        def log_step(info):
            if info is not None:
                _LOGS[key].append({"step": info["step"], "score": info["score"],
                                   "losses": dict(info["losses"])})

        return log_step, lambda: None

    return setup


def _train(config_name: str, pipe: str, repo_root: Path, train_path: Path, dev_path: Path,
           output: Path, steps: int, eval_frequency: int) -> List[dict]:
    config = spacy.util.load_config(repo_root / "configs" / config_name)
    config = config.merge({
        "paths": {"train": str(train_path), "dev": str(dev_path)},
        "training": {
            "max_steps": steps,
            "eval_frequency": eval_frequency,
            "patience": 0,
            "logger": {"@loggers": "spacy_rnn_test.capture_logger.v1", "key": pipe},
        },
        # small and quick: the point is that the losses reach the torch layers
        "components": {"tok2vec": {"model": {
            "embed": {"width": 64, "char_width": 24, "char_embed_size": 16},
            "encode": {"width": 64},
        }}},
    })
    # a fixed batch size, so the loss of one step means the same thing throughout
    config["training"]["batcher"]["size"] = 400
    nlp = init_nlp(config)
    output.mkdir(parents=True)
    train_nlp(nlp, output)
    print(pipe, [(e["step"], round(e["score"], 3), round(float(e["losses"][pipe]), 2))
                 for e in _LOGS[pipe]])
    return _LOGS[pipe]


@pytest.fixture(scope="module")
def conll_docbins(conll_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("conll")
    vocab = spacy.blank("en").vocab
    train_sents = read_conll_columns(conll_dir / "train.txt", 600)
    dev_sents = read_conll_columns(conll_dir / "valid.txt", 200)
    train = write_docbin(folder / "train.spacy", train_sents, vocab)
    dev = write_docbin(folder / "dev.spacy", dev_sents, vocab)
    return train, dev


def _check_learned(log: List[dict], pipe: str, eval_frequency: int, min_score: float):
    """The loss per step halved and the dev score rose by 0.2 from step 0 and
    reached `min_score`, a level that a constant prediction does not reach."""
    first, last = log[0], log[-1]
    assert first["step"] == 0 and last["step"] > 0
    first_loss = first["losses"][pipe]  # one step
    last_loss = last["losses"][pipe] / eval_frequency  # mean over the last steps
    assert last_loss < 0.5 * first_loss, (first_loss, last_loss)
    assert last["score"] > first["score"] + 0.2, (first["score"], last["score"])
    assert last["score"] >= min_score, (min_score, last["score"])


@pytest.mark.slow
def test_tok2vec_training_tagger_learns(conll_docbins, repo_root, tmp_path):
    train, dev = conll_docbins
    log = _train("tagger_bilstm.cfg", "tagger", repo_root, train, dev, tmp_path / "out", 90, 30)
    # tag accuracy on the 200 dev sentences: the most frequent tag (NNP) 0.23,
    # each word's most frequent training tag 0.78; measured 0.85 (0.24 at step 0)
    _check_learned(log, "tagger", 30, min_score=0.7)
    nlp = spacy.load(tmp_path / "out" / "model-last")
    doc = nlp("The European Commission said on Thursday it disagreed with German advice .")
    assert doc[0].tag_ == "DT"
    assert sum(t.tag_ in {"NNP", "NNPS"} for t in doc[1:3]) == 2


@pytest.mark.slow
def test_tok2vec_training_ner_learns(conll_docbins, repo_root, tmp_path):
    train, dev = conll_docbins
    log = _train("ner_bilstm_transition.cfg", "ner", repo_root, train, dev, tmp_path / "out",
                 120, 40)
    # ents_f: no entities 0.0; measured 0.46
    _check_learned(log, "ner", 40, min_score=0.3)
