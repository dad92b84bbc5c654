"""Every shipped config of the generalization suite trains on every suite corpus it fits:
on a 20-sentence slice of each (cr, trec, subj, mpqa, sst2; conll2003, wikiann-de in
German), its step counts resolve from the slice (spacy_rnn.epoch_steps.v1), `[nlp] lang`
takes the corpus's language, and `spacy train`'s own loop runs a few updates.

Slices are converted in-process and training runs in-process (spaCy's init_nlp and
train), so the whole file takes about a minute. Corpora missing: skipped, failed under
CI=true (helpers.data_path). The GloVe configs use `vectors/glove` (`spacy project run
vectors`) or, without it, 20,000 rows of the installed GloVe package.
"""
import io
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from helpers import ROOT, data_path
from spacy import util
from spacy.schemas import ConfigSchemaTraining
from spacy.training.initialize import init_nlp
from spacy.training.loop import train
from spacy.util import registry

from spacy_rnn.benchmark.generalization import CORPORA, SYSTEMS
from spacy_rnn.converters.corpus import convert_file
from spacy_rnn.schedules import batches_per_epoch, example_lengths

N_SENTENCES = 20
VECTORS = ROOT / "vectors" / "glove"
_PRUNED = Path(tempfile.mkdtemp(prefix="glove20k-")) / "glove"
CONFIGS = [s.config for s in SYSTEMS.values() if s.shipped and s.config]
CASES: List[Tuple[str, str]] = [
    (s.config, c.name)
    for s in SYSTEMS.values() if s.shipped and s.config
    for c in CORPORA.values() if s.fits(c)
]


def _head(src: Path, dest: Path, n: int, table: bool) -> Path:
    """The first n rows (after the header) of a table, or the first n sentences
    of a CoNLL file (-DOCSTART- lines kept), bytes unchanged."""
    lines = src.read_text(encoding="utf8").splitlines(keepends=True)
    if table:
        kept = lines[: n + 1]
    else:
        kept, sentences, in_sentence = [], 0, False
        for line in lines:
            blank = not line.strip()
            if not blank and not line.startswith("-DOCSTART-") and not in_sentence:
                if sentences == n:
                    break
                sentences += 1
                in_sentence = True
            elif blank:
                in_sentence = False
            kept.append(line)
    dest.write_text("".join(kept), encoding="utf8")
    return dest


def _labels(path: Path) -> List[str]:
    rows = path.read_text(encoding="utf8").splitlines()[1:]
    return sorted({row.split("\t", 1)[0] for row in rows if row.strip()})


@pytest.fixture(scope="module")
def slices(tmp_path_factory) -> Dict[str, Dict[str, Path]]:
    """corpus -> train/dev DocBins of 20 sentences each (converted lazily)."""
    root = tmp_path_factory.mktemp("suite-slices")
    cache: Dict[str, Dict[str, Path]] = {}

    def get(name: str) -> Dict[str, Path]:
        if name in cache:
            return cache[name]
        corpus = CORPORA[name]
        out = {}
        for split, file_name in zip(("train", "dev"), corpus.files[:2]):
            src = data_path(corpus.name, file_name)
            head = _head(src, root / f"{name}-{file_name}", N_SENTENCES,
                         table=corpus.task == "textcat")
            if corpus.task == "textcat":
                label_map = {"0": "NEG", "1": "POS"} if name == "sst2" else None
                labels = _labels(data_path(corpus.name, corpus.files[0]))
                if label_map:
                    labels = [label_map[label] for label in labels]
                options = {"textcat_options": {"label_map": label_map, "labels": labels,
                                               "lang": corpus.lang}}
            else:
                options = {"conll_options": {"lang": corpus.lang}}
            dest = root / name / f"{split}.spacy"
            convert_file(head, dest, write_summary=False, **options)
            out[split] = dest
        cache[name] = out
        return out

    return get  # type: ignore[return-value]


def _glove_vectors() -> Path:
    """The project's vectors/glove when built, else a table of the 20,000 most
    frequent GloVe words from the installed vectors package (the `vectors` extra),
    built once per test session: the GloVe configs are tested, never skipped."""
    if VECTORS.exists():
        return VECTORS
    if not _PRUNED.exists():
        from spacy_rnn.vectors import build_vectors

        build_vectors(_PRUNED, prune=20000)
    return _PRUNED


def _config(config_name: str, corpus: str, data: Dict[str, Path], **overrides):
    paths = {"paths.train": str(data["train"]), "paths.dev": str(data["dev"]),
             "nlp.lang": CORPORA[corpus].lang, **overrides}
    raw = util.load_config(ROOT / "configs" / config_name, interpolate=False)
    if "vectors" in raw["paths"]:
        if "glove" in config_name:
            paths["paths.vectors"] = str(_glove_vectors())
    return util.load_config(ROOT / "configs" / config_name, overrides=paths, interpolate=False)


def test_cases_cover_the_suite():
    assert {c for c, _ in CASES} == set(CONFIGS)
    assert {"textcat_bilstm.cfg", "ner_bilstm_crf.cfg"} <= set(CONFIGS)
    assert ("ner_bilstm_crf.cfg", "wikiann-de") in CASES
    assert ("ner_bilstm_crf_glove.cfg", "wikiann-de") not in CASES  # GloVe: English only
    for config in CONFIGS:
        text = (ROOT / "configs" / config).read_text(encoding="utf8")
        assert "spacy_rnn.epoch_steps.v1" in text, config
        if "glove" in config:
            assert "English only" in text.split("\n[", 1)[0], f"{config}: header"


@pytest.mark.parametrize("config_name, corpus", CASES, ids=[f"{c}-{k}" for c, k in CASES])
def test_shipped_config_on_a_20_sentence_slice(slices, config_name, corpus):
    data = slices(corpus)
    config = _config(config_name, corpus, data)
    nlp = util.load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.lang == CORPORA[corpus].lang
    if corpus == "wikiann-de":
        # German tokenizer exceptions (English splits "z." "B." and "3" ".")
        assert [t.text for t in nlp.make_doc("Am 3. Okt. z.B. gut")] == [
            "Am", "3.", "Okt.", "z.B.", "gut"]
    # the schedule, sized from the slice: the config's epochs over the batches
    # its batcher makes of the 20 sentences
    filled = nlp.config.interpolate()
    T = registry.resolve(filled["training"], schema=ConfigSchemaTraining, validate=True)
    reader = filled["corpora"]["train"]
    lengths = example_lengths(data["train"], bool(reader.get("gold_preproc", False)))
    assert 1 <= len(lengths) <= N_SENTENCES
    batcher = registry.resolve({"b": filled["training"]["batcher"]})["b"]
    per_epoch = batches_per_epoch(lengths, batcher)
    for key in ("max_steps", "eval_frequency", "patience"):
        block = filled["training"][key]
        expected = max(1, block.get("min_steps", 1), round(block["epochs"] * per_epoch))
        assert T[key] == expected, (key, T[key], expected, per_epoch)
    assert T["eval_frequency"] <= T["max_steps"]  # dev is scored before training ends
    # a few updates through spaCy's own training loop
    config = _config(config_name, corpus, data, **{"training.max_steps": 3})
    nlp = init_nlp(config)
    train(nlp, None, stdout=io.StringIO(), stderr=io.StringIO())
    doc = nlp("ein kurzer Satz" if corpus == "wikiann-de" else "a short sentence")
    if CORPORA[corpus].task == "textcat":
        assert abs(sum(doc.cats.values()) - 1.0) < 1e-4
        assert len(doc.cats) >= 2
