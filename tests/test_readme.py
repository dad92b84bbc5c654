"""The README runs as written: every fenced Python block, and every shell command
on a small slice of the corpora (training shortened by overrides), except the
few listed in SKIPPED with the reason. Also checks README statements against
the package: every registered name and every command is in its tables, and
`crf_ner_lm` is what `nlp.update` reports.

Each command runs in a scratch folder holding a link to configs/, with
`../shared/data` replaced by a folder of slices of the corpora, so `corpus/`
and `training/` are written there, not into the checkout.
"""
import os
import re
import shlex
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from helpers import ROOT, crf_ner_nlp, crf_tagger_config, ner_examples

README = ROOT / "README.md"
DATA_IN_README = "../shared/data"
# Commands of the README that are not run here, each with the reason.
SKIPPED: Dict[str, str] = {
    "pip install torch==2.13.0": "installs packages (the test runs in the installed venv)",
    'pip install -e ".[all,dev]"': "installs packages (the test runs in the installed venv)",
    "bash scripts/install.sh && .venv/bin/python -m spacy project run all": (
        "long-running: the whole lab, hours on a CPU (its steps run on slices in "
        "tests/test_project.py through `spacy project run ci`)"
    ),
    "bash scripts/install.sh && .venv/bin/python -m pytest tests": (
        "the whole test suite, this file included"
    ),
}
# Appended to each `spacy train` of the README: a few steps, one evaluation.
TRAIN_OVERRIDES = ["--training.max_steps", "4", "--training.eval_frequency", "2"]
# Documents (CoNLL) or rows (TSV) of each corpus file kept in the slices.
SLICE = {"train": 6, "valid": 2, "test": 2, "dev": 40}
COMMAND_TIMEOUT = 300


def fenced_blocks(language: str) -> List[Tuple[int, str]]:
    """(line number, text) of each ```language block of the README."""
    blocks, current, start = [], None, 0
    for number, line in enumerate(README.read_text(encoding="utf8").splitlines(), 1):
        if current is None and line.strip() == f"```{language}":
            current, start = [], number + 1
        elif current is not None and line.strip() == "```":
            blocks.append((start, "\n".join(current) + "\n"))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def shell_commands() -> List[Tuple[int, str]]:
    """(line number, command) of every command of the README's bash blocks,
    continuation lines joined and comments dropped."""
    commands = []
    for start, text in fenced_blocks("bash"):
        pending, first = "", start
        for offset, line in enumerate(text.splitlines()):
            if not pending:
                first = start + offset
            line = re.sub(r"\s+#\s.*$", "", line).rstrip()
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            command = " ".join((pending + line).split())
            pending = ""
            if command:
                commands.append((first, command))
    return commands


def _env() -> Dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("SPACY_RNN_TORCH_THREADS", None)
    return env


def _run(argv: List[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    assert proc.returncode == 0, f"{what} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _conll_slice(src: Path, dest: Path, n_docs: int) -> None:
    """The first n_docs -DOCSTART- documents of a CoNLL file."""
    kept, docs = [], 0
    for line in src.read_text(encoding="utf8").splitlines(keepends=True):
        if line.startswith("-DOCSTART-"):
            docs += 1
            if docs > n_docs:
                break
        kept.append(line)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("".join(kept), encoding="utf8")


def _tsv_slice(src: Path, dest: Path, n_rows: int) -> None:
    """The header and the first n_rows rows of a TSV file, line ends kept."""
    with src.open(encoding="utf8", newline="") as file_:
        lines = [line for _, line in zip(range(n_rows + 1), file_)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("".join(lines), encoding="utf8", newline="")


@pytest.fixture(scope="module")
def sliced_data(conll_dir, sst2_dir, tmp_path_factory) -> Path:
    """conll2003/ and sst2/ as in ../shared/data, a few documents or rows each."""
    root = tmp_path_factory.mktemp("data")
    for split in ("train", "valid", "test"):
        _conll_slice(
            conll_dir / f"{split}.txt", root / "conll2003" / f"{split}.txt", SLICE[split]
        )
    for split, n_rows in (("train", 300), ("dev", SLICE["dev"]), ("test", SLICE["dev"])):
        _tsv_slice(sst2_dir / f"{split}.tsv", root / "sst2" / f"{split}.tsv", n_rows)
    return root


def test_readme_python_snippets_run(tmp_path):
    """Every ```python block, each in a fresh interpreter, as a user would paste it."""
    blocks = fenced_blocks("python")
    assert len(blocks) >= 2, "the README's NER and sentiment snippets"
    for line, code in blocks:
        script = tmp_path / f"readme_line_{line}.py"
        script.write_text(code, encoding="utf8")
        what = f"README.md python block at line {line}"
        proc = _run([sys.executable, str(script)], tmp_path, what)
        assert proc.stdout.strip(), f"README.md line {line}: the snippet printed nothing"


def test_readme_ner_snippet_learns_and_scores():
    """The NER snippet's model finds the entities it was shown (30 updates on two
    sentences) and gives each one a confidence: the output the README promises."""
    (line, code), *_ = [b for b in fenced_blocks("python") if "crf_ner" in b[1]]
    namespace: Dict[str, object] = {}
    exec(compile(code, f"README.md:{line}", "exec"), namespace)
    doc = namespace["doc"]
    assert [(e.text, e.label_) for e in doc.ents] == [("Angela Merkel", "PER"), ("Berlin", "LOC")]
    scores = list(doc.spans["crf_ner"].attrs["scores"])
    assert len(scores) == 2 and all(0.5 < s <= 1.0 for s in scores)


def test_readme_sentiment_snippet_learns():
    """The sentiment snippet's classifier separates the two texts it was shown
    (20 updates) and gives exclusive probabilities."""
    (line, code), *_ = [b for b in fenced_blocks("python") if "RNNTextCat" in b[1]]
    namespace: Dict[str, object] = {}
    exec(compile(code, f"README.md:{line}", "exec"), namespace)
    nlp = namespace["nlp"]
    positive, negative = nlp("a funny film").cats, nlp("dull and far too long").cats
    assert positive["POS"] > 0.7 and negative["NEG"] > 0.7
    assert positive["POS"] + positive["NEG"] == pytest.approx(1.0, abs=1e-5)


def test_readme_skipped_commands_are_in_the_readme():
    """SKIPPED may not hold commands the README no longer has (nor lose track of them)."""
    commands = {command for _, command in shell_commands()}
    assert set(SKIPPED) <= commands, set(SKIPPED) - commands


def test_readme_shell_commands_run_on_slices(sliced_data, tmp_path):
    """Every README shell command not in SKIPPED, in order, on the slices: the
    conversions write what `spacy train` and `evaluate` then read."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    ran = []
    for line, command in shell_commands():
        if command in SKIPPED:
            continue
        argv = shlex.split(command.replace(DATA_IN_README, str(sliced_data)))
        assert argv[0] == "python", f"README.md line {line}: unexpected command {command!r}"
        argv[0] = sys.executable
        if argv[1:4] == ["-m", "spacy", "train"]:
            argv += TRAIN_OVERRIDES
        _run(argv, work, f"README.md line {line}: {command}")
        ran.append(command)
    assert any(" spacy train " in c for c in ran) and any(" evaluate " in c for c in ran)
    assert (work / "training" / "ner" / "model-best").is_dir()
    assert (work / "training" / "sentiment" / "model-best").is_dir()


def test_readme_lists_every_registered_name():
    """The table of registered names holds every entry point of the package."""
    text = README.read_text(encoding="utf8")
    names = {
        ep.name
        for group in ("spacy_architectures", "spacy_factories", "spacy_scorers",
                      "spacy_augmenters", "spacy_callbacks", "spacy_misc", "spacy_loggers")
        for ep in entry_points(group=group)
        if ep.value.startswith("spacy_rnn")
    }
    assert {"crf_ner", "spacy_rnn.CRFTagger.v3", "spacy_rnn.gold_sentences.v1"} <= names
    missing = sorted(name for name in names if f"| `{name}` |" not in text)
    assert not missing, f"README's table of registered names lacks {missing}"


def test_readme_lists_every_command():
    """The command table names every `python -m spacy_rnn` command."""
    from spacy_rnn.cli import _load_commands, app

    _load_commands()
    text = README.read_text(encoding="utf8")
    names = [info.name for info in app.registered_commands]
    assert "convert" in names and "evaluate" in names
    missing = [name for name in names if not re.search(rf"^\| `{re.escape(name)}[ `]", text, re.M)]
    assert not missing, f"README's command table lacks {missing}"


def test_readme_crf_ner_lm_is_a_loss_of_update():
    """What the README says of CRFTagger.v3's language-model loss holds: `nlp.update`
    returns it as `crf_ner_lm` beside `crf_ner` (spaCy's console table shows
    one loss column per component, so the docs say it is not there)."""
    nlp = crf_ner_nlp(crf_tagger_config("v3", lm_words=50, lm_weight=0.1))
    examples = ner_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    losses = nlp.update(examples, sgd=optimizer)
    assert set(losses) == {"crf_ner", "crf_ner_lm"} and losses["crf_ner_lm"] > 0
    readme = " ".join(README.read_text(encoding="utf8").split())
    assert "`crf_ner_lm` in `nlp.update`'s losses" in readme
    docs = " ".join((ROOT / "docs" / "models-and-configs.md").read_text(encoding="utf8").split())
    assert "`crf_ner_lm` is not shown there" in docs


def test_readme_docs_describe_the_transition_config_as_configured():
    """The docs call ner_bilstm_transition.cfg's tok2vec one BiLSTM layer of 256:
    so says the config."""
    from spacy.util import load_config

    config = load_config(ROOT / "configs" / "ner_bilstm_transition.cfg")
    encode = config["components"]["tok2vec"]["model"]["encode"]
    assert (encode["depth"], encode["width"], encode["cell"]) == (1, 256, "lstm")
    assert config["paths"]["train"] and config["paths"]["dev"]  # spacy train runs without --paths
    docs = (ROOT / "docs" / "models-and-configs.md").read_text(encoding="utf8")
    row = next(line for line in docs.splitlines() if "`configs/ner_bilstm_transition.cfg`" in line)
    assert "one BiLSTM layer of 256" in row


@pytest.mark.parametrize(
    "config,component,expected,phrase",
    [
        ("ner_bilstm_crf.cfg", "crf_ner",
         {"@architectures": "spacy_rnn.CRFTagger.v3", "depth": 1, "cell": "lstm"},
         "language-model objective (`CRFTagger.v3`)"),
        ("ner_bigru_crf.cfg", "crf_ner",
         {"@architectures": "spacy_rnn.CRFTagger.v1", "depth": 1, "cell": "gru"},
         "with GRU cells, `CRFTagger.v1`"),
        ("ner_bilstm_crf_glove.cfg", "crf_ner",
         {"@architectures": "spacy_rnn.CRFTagger.v1", "depth": 2, "cell": "lstm"},
         "BiLSTM-CRF (two layers) on GloVe"),
    ],
)
def test_readme_docs_config_table_matches_the_configs(config, component, expected, phrase):
    """The docs' table of configs says what each NER config holds."""
    from spacy.util import load_config

    model = load_config(ROOT / "configs" / config)["components"][component]["model"]
    encode = model["tok2vec"]["encode"]
    found = {"@architectures": model["@architectures"], "depth": encode["depth"],
             "cell": encode["cell"]}
    assert found == expected
    docs = (ROOT / "docs" / "models-and-configs.md").read_text(encoding="utf8")
    row = next(line for line in docs.splitlines() if f"`configs/{config}`" in line)
    assert phrase in row
