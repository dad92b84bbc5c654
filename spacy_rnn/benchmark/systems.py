"""The benchmarked systems, the groups the command line accepts, and the settings
of a run (with the command line that reproduces each row)."""
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..ml.textcat import POOLINGS

TASKS = ("ner", "sentiment")


@dataclass(frozen=True)
class System:
    """One benchmarked system.

    name: key in results.json and on the command line.
    label: how the tables name it.
    task: "ner" or "sentiment".
    kind: "spacy" (trained with `spacy train`), "baseline" or "flair" (a peer
        library's system, flair_peer.py).
    ours: a spacy-rnn pipeline (as opposed to spaCy's own or a baseline).
    config: a file under configs/, or None for a generated spaCy config.
    generate: (pipe, optimize) for `spacy init config -p PIPE -o OPTIMIZE`.
    vectors: train with the GloVe vectors table.
    pooling: RNNTextCat pooling override.
    baseline: "lr" / "crf" (NER) or "tfidf" (sentiment).
    """

    name: str
    label: str
    task: str
    kind: str
    ours: bool = False
    config: Optional[str] = None
    generate: Optional[Tuple[str, str]] = None
    vectors: bool = False
    pooling: Optional[str] = None
    baseline: Optional[str] = None


def _ner_systems() -> List[System]:
    out = []
    for vectors in (False, True):
        suffix, note = ("-glove", " + GloVe") if vectors else ("", "")
        out += [
            System(f"bilstm-crf{suffix}", f"BiLSTM-CRF (spacy-rnn){note}", "ner", "spacy", True,
                   config="ner_bilstm_crf_glove.cfg" if vectors else "ner_bilstm_crf.cfg",
                   vectors=vectors),
            System(f"bigru-crf{suffix}", f"BiGRU-CRF (spacy-rnn){note}", "ner", "spacy", True,
                   config="ner_bigru_crf.cfg", vectors=vectors),
            System(f"spacy-ner-rnn{suffix}", f"spaCy ner on spacy-rnn BiLSTM tok2vec{note}",
                   "ner", "spacy", True, config="ner_bilstm_transition.cfg", vectors=vectors),
            System(f"spacy-default{suffix}", f"spaCy default CPU ner (-o efficiency){note}",
                   "ner", "spacy", generate=("ner", "efficiency"), vectors=vectors),
        ]
    out += [
        System("baseline-lr", "Token features + LogisticRegression", "ner", "baseline",
               baseline="lr"),
        System("baseline-crf", "Token features + CRF (crfsuite)", "ner", "baseline",
               baseline="crf"),
    ]
    return out


def _sentiment_systems() -> List[System]:
    out = [
        System(f"rnn-textcat-{p}", f"RNNTextCat BiLSTM, {p} pooling (spacy-rnn)", "sentiment",
               "spacy", True, config="textcat_bilstm.cfg", pooling=p)
        for p in POOLINGS
    ]
    # the pooling chosen on dev (attention: 83.9 vs max 83.6, mean and last
    # below), with the GloVe table and the config chosen on dev for it (no
    # hashed NORM table, as the GloVe NER config)
    out.append(System("rnn-textcat-attention-glove",
                      "RNNTextCat BiLSTM, attention pooling (spacy-rnn) + GloVe", "sentiment",
                      "spacy", True, config="textcat_bilstm_glove.cfg", pooling="attention",
                      vectors=True))
    out += [
        System("spacy-textcat-efficiency", "spaCy textcat (-o efficiency)", "sentiment", "spacy",
               generate=("textcat", "efficiency")),
        # spaCy's accuracy preset embeds static vectors (en_core_web_lg by
        # default); we give it the same GloVe table our systems get.
        System("spacy-textcat-accuracy", "spaCy textcat (-o accuracy, GloVe)", "sentiment",
               "spacy", generate=("textcat", "accuracy"), vectors=True),
        System("tfidf-lr", "TF-IDF + LogisticRegression", "sentiment", "baseline",
               baseline="tfidf"),
    ]
    return out


def _peer_systems() -> List[System]:
    """Flair 0.15.1 (the `peers` extra): the same model families as ours, with
    Flair's recommended settings (flair_peer.FLAIR_SETTINGS)."""
    out = []
    for vectors in (False, True):
        suffix, note = ("-glove", " + GloVe") if vectors else ("", "")
        out += [
            System(f"flair-ner{suffix}", f"Flair SequenceTagger BiLSTM-CRF{note} (peer)", "ner",
                   "flair", vectors=vectors),
            System(f"flair-sst2{suffix}", f"Flair TextClassifier BiLSTM{note} (peer)",
                   "sentiment", "flair", vectors=vectors),
        ]
    return out


SYSTEMS: Dict[str, System] = {s.name: s for s in _ner_systems() + _sentiment_systems()}
# Peer systems need an extra (flair): run by name or with the `peers` group only,
# never as part of `all`, `ner` or `sentiment`.
PEERS: Dict[str, System] = {s.name: s for s in _peer_systems()}
GROUPS: Dict[str, List[str]] = {
    "ner": [s.name for s in SYSTEMS.values() if s.task == "ner"],
    "sentiment": [s.name for s in SYSTEMS.values() if s.task == "sentiment"],
    "rnn-textcat": [f"rnn-textcat-{p}" for p in POOLINGS],
}
GROUPS["all"] = GROUPS["ner"] + GROUPS["sentiment"]
GROUPS["peers"] = list(PEERS)


def resolve_systems(spec: str) -> List[System]:
    """Comma-separated system names and groups (all, ner, sentiment, rnn-textcat,
    peers) -> systems."""
    names: List[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item in GROUPS:
            names.extend(GROUPS[item])
        elif item in SYSTEMS or item in PEERS:
            names.append(item)
        else:
            known = ", ".join(list(GROUPS) + list(SYSTEMS) + list(PEERS))
            raise ValueError(f"unknown system {item!r}; choose from: {known}")
    if not names:
        raise ValueError("no systems given")
    return [SYSTEMS[n] if n in SYSTEMS else PEERS[n] for n in dict.fromkeys(names)]


@dataclass
class Settings:
    """Paths and limits of one benchmark run (all shown in each row's command)."""

    output: Path = Path("benchmarks")
    work: Path = Path("training/benchmark")
    configs: Path = Path("configs")
    ner_corpus: Path = Path("corpus/conll2003")
    sentiment_corpus: Path = Path("corpus/sst2")
    vectors: Path = Path("vectors/glove")
    max_minutes: Optional[float] = None
    max_steps: Optional[int] = None
    eval_frequency: Optional[int] = None
    limit_train: Optional[int] = None
    limit_eval: Optional[int] = None
    speed_rounds: int = 3
    batch_size: int = 256
    gpu_id: int = -1
    readme: Optional[Path] = None

    def options(self) -> List[str]:
        """The non-default options, as command-line flags; not `readme` and `work`
        (where the report and the scratch files go change no figure)."""
        default = Settings()
        flags = []
        for key, value in asdict(self).items():
            if key in ("readme", "work") or value == getattr(default, key):
                continue
            flags += [f"--{key.replace('_', '-')}", str(value)]
        return flags


def command_for(system: System, settings: Settings) -> str:
    """The command line that trains and scores `system` again with these settings."""
    return " ".join(["python -m spacy_rnn benchmark --systems", system.name] + settings.options())
