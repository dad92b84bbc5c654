"""Train and evaluate our pipelines, spaCy's own and the classic baselines on the
same data and machine, and keep the figures in one results file.

Each system is trained in a child process (`spacy train`, or `python -m
spacy_rnn baseline` for the ML baselines), so that its wall time and peak
resident memory (`os.wait4` rusage of that child) are its own. Test and dev
figures come from `spacy_rnn.evaluation`. Inference speed is then measured in
this process for every trained pipeline of the task, ours and spaCy's
alternately (interleaved rounds, `nlp.pipe` with batch 256, median of 3), so a
busy machine slows all systems alike.

A run can cover a few systems only: `benchmarks/results.json` is read, the
systems of this run replace their old entries, and the Markdown table, the
plots and (between markers) the README table are rewritten from the merged
file. Models stay under the work directory (never committed).
"""
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from wasabi import msg

TASKS = ("ner", "sentiment")
POOLINGS = ("last", "mean", "max", "attention")
README_START = "<!-- benchmark-results:start -->"
README_END = "<!-- benchmark-results:end -->"
RESULTS_VERSION = 1


@dataclass(frozen=True)
class System:
    """One benchmarked system.

    name: key in results.json and on the command line.
    label: how the tables name it.
    task: "ner" or "sentiment".
    kind: "spacy" (trained with `spacy train`) or "baseline".
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
                   config="ner_bilstm_crf_glove.cfg" if vectors else "ner_bilstm_crf.cfg", vectors=vectors),
            System(f"bigru-crf{suffix}", f"BiGRU-CRF (spacy-rnn){note}", "ner", "spacy", True,
                   config="ner_bigru_crf.cfg", vectors=vectors),
            System(f"spacy-ner-rnn{suffix}", f"spaCy ner on spacy-rnn BiLSTM tok2vec{note}", "ner", "spacy", True,
                   config="ner_bilstm_transition.cfg", vectors=vectors),
            System(f"spacy-default{suffix}", f"spaCy default CPU ner (-o efficiency){note}", "ner", "spacy",
                   generate=("ner", "efficiency"), vectors=vectors),
        ]
    out += [
        System("baseline-lr", "Token features + LogisticRegression", "ner", "baseline", baseline="lr"),
        System("baseline-crf", "Token features + CRF (crfsuite)", "ner", "baseline", baseline="crf"),
    ]
    return out


def _sentiment_systems() -> List[System]:
    out = [
        System(f"rnn-textcat-{p}", f"RNNTextCat BiLSTM, {p} pooling (spacy-rnn)", "sentiment", "spacy", True,
               config="textcat_bilstm.cfg", pooling=p)
        for p in POOLINGS
    ]
    # the pooling chosen on dev (attention: 83.9 vs max 83.6, mean and last
    # below), with the GloVe table and the config chosen on dev for it (no
    # hashed NORM table, as the GloVe NER config)
    out.append(System("rnn-textcat-attention-glove", "RNNTextCat BiLSTM, attention pooling (spacy-rnn) + GloVe",
                      "sentiment", "spacy", True, config="textcat_bilstm_glove.cfg", pooling="attention", vectors=True))
    out += [
        System("spacy-textcat-efficiency", "spaCy textcat (-o efficiency)", "sentiment", "spacy",
               generate=("textcat", "efficiency")),
        # spaCy's accuracy preset embeds static vectors (en_core_web_lg by
        # default); we give it the same GloVe table our systems get.
        System("spacy-textcat-accuracy", "spaCy textcat (-o accuracy, GloVe)", "sentiment", "spacy",
               generate=("textcat", "accuracy"), vectors=True),
        System("tfidf-lr", "TF-IDF + LogisticRegression", "sentiment", "baseline", baseline="tfidf"),
    ]
    return out


SYSTEMS: Dict[str, System] = {s.name: s for s in _ner_systems() + _sentiment_systems()}
GROUPS: Dict[str, List[str]] = {
    "ner": [s.name for s in SYSTEMS.values() if s.task == "ner"],
    "sentiment": [s.name for s in SYSTEMS.values() if s.task == "sentiment"],
    "rnn-textcat": [f"rnn-textcat-{p}" for p in POOLINGS],
}
GROUPS["all"] = GROUPS["ner"] + GROUPS["sentiment"]


def resolve_systems(spec: str) -> List[System]:
    """Comma-separated system names and groups (all, ner, sentiment, rnn-textcat) -> systems."""
    names: List[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item in GROUPS:
            names.extend(GROUPS[item])
        elif item in SYSTEMS:
            names.append(item)
        else:
            known = ", ".join(list(GROUPS) + list(SYSTEMS))
            raise ValueError(f"unknown system {item!r}; choose from: {known}")
    if not names:
        raise ValueError("no systems given")
    return [SYSTEMS[n] for n in dict.fromkeys(names)]


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
        """The non-default options, as command-line flags."""
        default = Settings()
        flags = []
        for key, value in asdict(self).items():
            if key == "readme" or value == getattr(default, key):
                continue
            flags += [f"--{key.replace('_', '-')}", str(value)]
        return flags


# --------------------------------------------------------------------------- data


def corpus_paths(settings: Settings, task: str) -> Dict[str, Path]:
    """train/dev/test DocBins of a task, sliced into the work dir when limits are set."""
    root = settings.ner_corpus if task == "ner" else settings.sentiment_corpus
    paths = {split: root / f"{split}.spacy" for split in ("train", "dev", "test")}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise ValueError(
            f"corpus not found: {', '.join(missing)}; run `spacy project run convert` first "
            f"(or pass --{'ner' if task == 'ner' else 'sentiment'}-corpus)"
        )
    if settings.limit_train is None and settings.limit_eval is None:
        return paths
    sliced = settings.work / "data" / task
    out = {}
    for split, path in paths.items():
        limit = settings.limit_train if split == "train" else settings.limit_eval
        out[split] = slice_docbin(path, sliced / f"{split}.spacy", limit)
    return out


def slice_docbin(src: Path, dest: Path, limit: Optional[int]) -> Path:
    """The first `limit` docs of a DocBin (all of them when limit is None)."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    docs = list(DocBin().from_disk(src).get_docs(Vocab()))
    if limit is not None:
        docs = docs[:limit]
    dest.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=True).to_disk(dest)
    return dest


_HEADER_NAMES = {"label", "labels", "text", "sentence", "content", "review", "sentiment", "category"}


def head_corpus(src: Path, dest: Path, n: int) -> Tuple[Path, int]:
    """Copy the first `n` documents of a raw corpus file, bytes unchanged.

    CoNLL files (.txt/.conll/.iob...) are cut by `-DOCSTART-` documents (by
    blank-line sentences when there are none); TSV/CSV keep their header line
    and `n` rows; JSONL keeps `n` lines. Used to make small, fast slices of
    the real corpora (the `ci` workflow, quick benchmark checks).
    RETURNS (Path, int): the written file and the number of units kept.
    """
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    src, dest = Path(src), Path(dest)
    if not src.is_file():
        raise ValueError(f"corpus file not found: {src}")
    lines = src.read_bytes().splitlines(keepends=True)
    suffix = src.suffix.lower()
    kept: List[bytes] = []
    count = 0
    if suffix in (".tsv", ".csv", ".jsonl", ".ndjson"):
        body = lines
        if suffix in (".tsv", ".csv") and lines:
            sep = b"\t" if suffix == ".tsv" else b","
            fields = {f.strip().strip(b'"').decode("utf8", "replace").lower() for f in lines[0].split(sep)}
            if fields & _HEADER_NAMES:
                kept.append(lines[0])
                body = lines[1:]
        for line in body:
            if count >= n:
                break
            if line.strip():
                kept.append(line)
                count += 1
    else:
        by_docs = any(line.startswith(b"-DOCSTART-") for line in lines)
        in_unit = False
        for line in lines:
            blank = not line.strip()
            if by_docs:
                if line.startswith(b"-DOCSTART-"):
                    if count >= n:
                        break
                    count += 1
            else:
                if not blank and not in_unit:
                    if count >= n:
                        break
                    count += 1
                in_unit = not blank
            kept.append(line)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(b"".join(kept))
    return dest, count


# --------------------------------------------------------------------------- configs


def _walk(node: Any, fn: Callable[[Dict[str, Any]], None]) -> None:
    if isinstance(node, dict):
        fn(node)
        for value in node.values():
            _walk(value, fn)


def generate_config(pipe: str, optimize: str):
    """spaCy's own recommended CPU config (`spacy init config -p PIPE -o OPTIMIZE`)."""
    from spacy.cli.init_config import init_config

    return init_config(lang="en", pipeline=[pipe], optimize=optimize, gpu=False, pretraining=False, silent=True)


def prepare_config(system: System, settings: Settings, data: Dict[str, Path], log_file: Path) -> Path:
    """Write the exact training config of a system (paths, vectors, limits, logger)."""
    from spacy.util import load_config

    if system.generate is not None:
        config = generate_config(*system.generate)
    else:
        src = settings.configs / system.config
        if not src.exists():
            raise ValueError(f"config not found: {src}")
        config = load_config(src, interpolate=False)
    config["paths"]["train"] = str(data["train"])
    config["paths"]["dev"] = str(data["dev"])
    vectors = str(settings.vectors) if system.vectors else None
    if system.vectors and not Path(settings.vectors).exists():
        raise ValueError(
            f"vectors not found: {settings.vectors}; run `spacy project run vectors` "
            "(or `python -m spacy_rnn vectors vectors/glove`)"
        )
    config["paths"]["vectors"] = vectors
    config["initialize"]["vectors"] = "${paths.vectors}"

    def set_vectors(node: Dict[str, Any]) -> None:
        if "include_static_vectors" in node:
            node["include_static_vectors"] = bool(system.vectors)

    _walk(config["components"], set_vectors)
    if system.pooling is not None:
        found = []

        def set_pooling(node: Dict[str, Any]) -> None:
            if str(node.get("@architectures", "")).startswith("spacy_rnn.RNNTextCat"):
                node["pooling"] = system.pooling
                found.append(node)

        _walk(config["components"], set_pooling)
        if not found:
            raise ValueError(f"{system.config}: no spacy_rnn.RNNTextCat model to set pooling={system.pooling!r} on")
    training = config["training"]
    if settings.max_steps is not None:
        training["max_steps"] = settings.max_steps
        training["max_epochs"] = 0
    if settings.eval_frequency is not None:
        training["eval_frequency"] = settings.eval_frequency
    if log_file.exists():
        log_file.unlink()  # the logger refuses to overwrite a log
    training["logger"] = {
        "@loggers": "spacy.ConsoleLogger.v3",
        "progress_bar": None,
        "console_output": True,
        "output_file": str(log_file),
    }
    path = log_file.parent / "config.cfg"
    path.parent.mkdir(parents=True, exist_ok=True)
    config.to_disk(path)
    return path


# --------------------------------------------------------------------------- child processes


@dataclass
class ChildResult:
    returncode: int
    seconds: float
    peak_rss_mb: float
    timed_out: bool


def run_child(cmd: Sequence[str], log_path: Path, prefix: str, timeout: Optional[float] = None) -> ChildResult:
    """Run a command, stream its output (prefixed) to stdout and to log_path,
    and return its exit status, wall time and own peak RSS (from wait4)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    with log_path.open("w", encoding="utf8") as log:
        log.write("$ " + " ".join(shlex.quote(str(c)) for c in cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(
            [str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
            text=True, errors="replace", start_new_session=True, preexec_fn=_default_sigint,
        )

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                sys.stdout.write(f"  [{prefix}] {line}")
                sys.stdout.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        deadline = None if timeout is None else start + timeout
        hwm_kb = 0
        try:
            while True:
                hwm_kb = max(hwm_kb, _vm_hwm_kb(proc.pid))
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid == proc.pid:
                    break
                now = time.perf_counter()
                if deadline is not None and now > deadline and not timed_out:
                    timed_out = True
                    msg.warn(f"{prefix}: time limit reached ({timeout / 60:.1f} min), stopping training")
                    # SIGINT first: spaCy's training loop then runs its `finally`
                    # blocks (the JSONL logger is flushed); SIGTERM if it lingers.
                    os.killpg(proc.pid, signal.SIGINT)
                elif timed_out and now > deadline + 60:
                    os.killpg(proc.pid, signal.SIGTERM)
                    deadline = now
                time.sleep(0.2)
        except BaseException:
            # the child runs in its own session (so a time limit can end its
            # whole group): Ctrl-C here must end it too
            os.killpg(proc.pid, signal.SIGTERM)
            raise
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        reader.join(timeout=10)
    if hwm_kb:
        peak_mb = hwm_kb / 1024
    else:  # no /proc: rusage (KiB on Linux, bytes on macOS)
        peak_mb = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return ChildResult(proc.returncode, seconds, peak_mb, timed_out)


def _default_sigint() -> None:
    """In the child, before exec: a shell starts background jobs (`cmd &`,
    nohup) with SIGINT ignored, and Python keeps an ignored SIGINT ignored, so
    the time limit's SIGINT would do nothing. Restore the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _vm_hwm_kb(pid: int) -> int:
    """Peak resident set size of a running process (Linux /proc), in KiB.

    The child's own rusage ru_maxrss is no good here: Linux carries the
    parent's high-water mark over fork + exec, so every child would report at
    least this (large) process's RSS. VmHWM belongs to the exec'd image alone.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as file_:
            for line in file_:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def read_training_log(path: Path, console_log: Optional[Path] = None) -> List[Tuple[int, float]]:
    """(step, dev score) pairs from a ConsoleLogger.v3 JSONL log, or from the
    console table in `console_log` when that has more rows (a training ended
    by a signal may not have flushed its JSONL file)."""
    curve: List[Tuple[int, float]] = []
    if path.exists():
        for line in path.read_text(encoding="utf8").splitlines():
            try:
                row = json.loads(line)
                curve.append((int(row["step"]), float(row["score"])))
            except (ValueError, KeyError):
                continue
    if console_log is not None and console_log.exists():
        table = read_console_table(console_log)
        if len(table) > len(curve):
            curve = table
    return curve


def read_console_table(path: Path) -> List[Tuple[int, float]]:
    """(step, score) rows of spaCy's console training table
    ("E  #  LOSS ...  SCORE": epoch, step, losses and scores, the last column
    the weighted score)."""
    rows: List[Tuple[int, float]] = []
    in_table = False
    for line in path.read_text(encoding="utf8", errors="replace").splitlines():
        fields = line.split()
        if fields[:2] == ["E", "#"] and fields[-1] == "SCORE":
            in_table = True
            continue
        if not in_table or not fields or set(line.strip()) <= {"-", " "}:
            continue
        try:
            step, score = int(fields[1]), float(fields[-1])
            [float(f) for f in fields]
        except (ValueError, IndexError):
            continue
        rows.append((step, score))
    return rows


# --------------------------------------------------------------------------- figures


def headline(task: str, metrics: Dict[str, Any]) -> Dict[str, float]:
    """The figures the tables show, from a `spacy_rnn.evaluation` metrics dict."""
    if task == "ner":
        ner = metrics["ner"]
        return {
            "f1": ner["seqeval"]["default"]["f"],
            "f1_strict": ner["seqeval"]["strict"]["f"],
            "semeval_partial_f1": ner["semeval"]["partial"]["f"],
            "p": ner["seqeval"]["default"]["p"],
            "r": ner["seqeval"]["default"]["r"],
        }
    tc = metrics["textcat"]
    return {"accuracy": tc["accuracy"], "macro_f1": tc["macro_f1"]}


def main_score(task: str, figures: Dict[str, float]) -> float:
    return figures["f1"] if task == "ner" else figures["accuracy"]


def evaluate_model(model_dir: Path, data: Dict[str, Path], out_dir: Path, name: str) -> Dict[str, Dict[str, Any]]:
    """Dev and test metrics of a trained pipeline (also written as JSON)."""
    import spacy

    from .evaluation import evaluate_docs, load_docs, predict_docs, reads_documents, write_metrics

    nlp = spacy.load(model_dir)
    # NER systems read one gold sentence at a time, as CoNLL-2003 systems are run
    # (`spacy evaluate --gold-preproc`), unless the pipeline was trained and tuned on
    # whole documents: then it reads whole documents, as its dev corpus did.
    gold_preproc = not reads_documents(nlp.config)
    out = {}
    for split in ("dev", "test"):
        gold = load_docs(data[split], vocab=nlp.vocab)
        pred = predict_docs(nlp, gold, gold_preproc=gold_preproc)
        metrics = {"meta": {"system": name, "kind": "model", "split": split, "source": str(model_dir),
                            "gold_preproc": gold_preproc}}
        metrics.update(evaluate_docs(gold, pred))
        write_metrics(metrics, out_dir / f"{name}-{split}.json")
        out[split] = metrics
    return out


# --------------------------------------------------------------------------- speed


def measure_speed(
    pipelines: Dict[str, Path],
    texts: List[str],
    rounds: int = 3,
    batch_size: int = 256,
    log: Callable[[str], None] = print,
) -> Dict[str, Dict[str, Any]]:
    """Words per second of each pipeline over `texts`, measured in interleaved
    rounds (every pipeline once per round, in turn) in this one process; the
    median over rounds is reported."""
    import spacy

    loaded = {}
    for name, path in pipelines.items():
        nlp = spacy.load(path)
        list(nlp.pipe(texts[:batch_size], batch_size=batch_size))  # warm-up
        loaded[name] = nlp
    runs: Dict[str, List[float]] = {name: [] for name in loaded}
    for round_ in range(rounds):
        for name, nlp in loaded.items():
            start = time.perf_counter()
            n_words = sum(len(doc) for doc in nlp.pipe(texts, batch_size=batch_size))
            wps = n_words / (time.perf_counter() - start)
            runs[name].append(wps)
            log(f"  speed round {round_ + 1}/{rounds}: {name:28s} {wps:10,.0f} words/s")
    import torch

    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {
        name: {
            "wps": statistics.median(values),
            "runs": values,
            "batch_size": batch_size,
            "n_texts": len(texts),
            "measured_with": list(loaded),
            "measured_at": when,
            "torch_threads": torch.get_num_threads(),
        }
        for name, values in runs.items()
    }


def cpu_model() -> Optional[str]:
    """The CPU's model name from /proc/cpuinfo (Linux); None elsewhere, where
    the tables fall back to the "processor" entry."""
    try:
        with open("/proc/cpuinfo", encoding="utf8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_info() -> Dict[str, Any]:
    import spacy
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "spacy": spacy.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


# --------------------------------------------------------------------------- results file


def load_results(path: Path) -> Dict[str, Any]:
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err}); move it away to start afresh") from None
        if data.get("version") == RESULTS_VERSION and isinstance(data.get("systems"), dict):
            return data
        raise ValueError(f"{path}: not a benchmark results file (version {RESULTS_VERSION})")
    return {"version": RESULTS_VERSION, "systems": {}}


def save_results(results: Dict[str, Any], path: Path, names: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """Write `results` to `path`. With `names`, only those systems' entries
    (and the machine info) are merged into what the file holds now, so that
    runs of other systems that finished meanwhile, in another process, are
    kept. RETURNS the data written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if names is not None:
        merged = load_results(path)
        for key, value in results.items():
            if key != "systems":
                merged[key] = value
        for name in names:
            if name in results["systems"]:
                merged["systems"][name] = results["systems"][name]
        results = merged
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf8")
    tmp.replace(path)  # atomic: an interrupted run never leaves half a file
    return results


# --------------------------------------------------------------------------- one system


def command_for(system: System, settings: Settings) -> str:
    return " ".join(["python -m spacy_rnn benchmark --systems", system.name] + settings.options())


def train_system(system: System, settings: Settings, data: Dict[str, Path]) -> Dict[str, Any]:
    """Train + evaluate one system; returns its results entry."""
    sys_dir = settings.work / system.name
    metrics_dir = settings.output / "scores"
    timeout = settings.max_minutes * 60 if settings.max_minutes else None
    entry: Dict[str, Any] = {
        "name": system.name,
        "label": system.label,
        "task": system.task,
        "kind": system.kind,
        "ours": system.ours,
        "vectors": system.vectors,
        "pooling": system.pooling,
        "command": command_for(system, settings),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "data": {k: str(v) for k, v in data.items()},
        "machine": machine_info(),
        "finished_at": None,
    }
    if system.kind == "baseline":
        out_dir = sys_dir / "predictions"
        if system.task == "ner":
            cmd = [sys.executable, "-m", "spacy_rnn", "baseline", "ner", data["train"], data["dev"], data["test"],
                   "--output", out_dir, "--kinds", system.baseline]
            stem = {"lr": "ner-logreg", "crf": "ner-crf"}[system.baseline]
        else:
            cmd = [sys.executable, "-m", "spacy_rnn", "baseline", "textcat", data["train"], data["dev"],
                   data["test"], "--output", out_dir]
            stem = "textcat-tfidf-logreg"
        child = run_child(cmd, sys_dir / "train.log", system.name, timeout)
        entry.update(train_seconds=child.seconds, peak_rss_mb=child.peak_rss_mb, timed_out=child.timed_out)
        if child.returncode != 0:
            raise RuntimeError(f"{system.name}: baseline failed (exit {child.returncode}); see {sys_dir / 'train.log'}")
        split_metrics = {}
        for split in ("dev", "test"):
            metrics = json.loads((out_dir / f"{stem}-{split}.json").read_text(encoding="utf8"))
            metrics_dir.mkdir(parents=True, exist_ok=True)
            (metrics_dir / f"{system.name}-{split}.json").write_text(json.dumps(metrics, indent=2), encoding="utf8")
            split_metrics[split] = metrics
        entry["fit_seconds"] = split_metrics["test"]["meta"].get("train_seconds")
    else:
        log_file = sys_dir / "training-log.jsonl"
        config_path = prepare_config(system, settings, data, log_file)
        model_root = sys_dir / "model"
        cmd = [sys.executable, "-m", "spacy", "train", config_path, "--output", model_root,
               "--gpu-id", str(settings.gpu_id)]
        child = run_child(cmd, sys_dir / "train.log", system.name, timeout)
        entry.update(train_seconds=child.seconds, peak_rss_mb=child.peak_rss_mb, timed_out=child.timed_out)
        model_dir = model_root / "model-best"
        if child.returncode != 0 and not child.timed_out:
            raise RuntimeError(f"{system.name}: spacy train failed (exit {child.returncode}); see {sys_dir / 'train.log'}")
        if not (model_dir / "config.cfg").exists():
            raise RuntimeError(f"{system.name}: no model-best was saved (time limit before the first evaluation?)")
        curve = read_training_log(log_file, sys_dir / "train.log")
        entry.update(model_dir=str(model_dir), config=str(config_path), curve=curve,
                     steps=curve[-1][0] if curve else None)
        msg.text(f"{system.name}: evaluating {model_dir}")
        split_metrics = evaluate_model(model_dir, data, metrics_dir, system.name)
    entry["dev"] = headline(system.task, split_metrics["dev"])
    entry["test"] = headline(system.task, split_metrics["test"])
    entry["status"] = "timeout" if entry.get("timed_out") else "ok"
    entry["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return entry


# --------------------------------------------------------------------------- the run


SPEED_MODES = ("run", "skip", "only")


def run_benchmark(systems: Sequence[System], settings: Settings, speed: str = "run") -> Dict[str, Any]:
    """Train/evaluate `systems`, measure speed, merge into results.json, write reports.

    speed: "run" (train, then time every trained pipeline of the tasks, all in
    one process, interleaved), "skip" (train only: for runs in parallel, whose
    timings would disturb each other) or "only" (time the pipelines already
    trained, train nothing)."""
    if speed not in SPEED_MODES:
        raise ValueError(f"speed must be one of {', '.join(SPEED_MODES)}, got {speed!r}")
    import torch

    torch.set_flush_denormal(True)
    results_path = settings.output / "results.json"
    results = load_results(results_path)  # fail early on a broken file
    results["machine"] = machine_info()
    tasks = [t for t in TASKS if any(s.task == t for s in systems)]
    data = {task: corpus_paths(settings, task) for task in tasks}
    failures = []
    for i, system in enumerate(systems if speed != "only" else [], start=1):
        msg.divider(f"[{i}/{len(systems)}] {system.name}: {system.label}")
        try:
            entry = train_system(system, settings, data[system.task])
        except (RuntimeError, ValueError, OSError) as err:
            msg.fail(str(err))
            failures.append(system.name)
            entry = {"name": system.name, "label": system.label, "task": system.task, "kind": system.kind,
                     "ours": system.ours, "vectors": system.vectors, "pooling": system.pooling,
                     "status": "failed", "error": str(err), "command": command_for(system, settings)}
        old = results["systems"].get(system.name, {})
        if entry.get("status") == "failed" and old.get("status") in ("ok", "timeout"):
            msg.warn(f"{system.name}: keeping the earlier successful result")
        else:
            results["systems"][system.name] = entry
        # resumable: each finished system is kept; merged, so that a run of
        # other systems in another process loses nothing
        results = save_results(results, results_path, names=[system.name])
        if entry.get("test"):
            figures = ", ".join(f"{k} {100 * v:.2f}" for k, v in entry["test"].items())
            msg.good(f"{system.name}: test {figures}; trained in {entry['train_seconds']:.0f}s, "
                     f"peak {entry['peak_rss_mb']:.0f} MB")
    # speeds and reports cover every trained system, also those another run
    # saved meanwhile; the machine is this one
    results = {**load_results(results_path), "machine": results["machine"]}
    for task in tasks if speed != "skip" else []:
        pipelines = {
            name: Path(e["model_dir"])
            for name, e in results["systems"].items()
            if e.get("task") == task and e.get("model_dir") and Path(e["model_dir"]).exists()
        }
        if not pipelines:
            continue
        # alternate ours and spaCy's so that neither always runs first
        ours = [n for n in pipelines if results["systems"][n].get("ours")]
        theirs = [n for n in pipelines if not results["systems"][n].get("ours")]
        order = [n for pair in _zip_longest(ours, theirs) for n in pair if n]
        msg.divider(f"Inference speed, {task}: {len(order)} pipelines, interleaved")
        texts = _speed_texts(data[task]["test"])
        speeds = measure_speed({n: pipelines[n] for n in order}, texts, settings.speed_rounds,
                               settings.batch_size, log=msg.text)
        for name, figures in speeds.items():
            results["systems"][name]["speed"] = {**figures, "machine": results["machine"]}
        results = save_results(results, results_path, names=list(speeds))
    write_reports(results, settings.output, readme=settings.readme)
    msg.good(f"Results in {results_path} and {settings.output / 'results.md'}")
    if failures:
        msg.warn(f"failed: {', '.join(failures)}")
    results["failures"] = failures
    return results


def _zip_longest(a: List[str], b: List[str]) -> Iterable[Tuple[Optional[str], Optional[str]]]:
    for i in range(max(len(a), len(b))):
        yield (a[i] if i < len(a) else None, b[i] if i < len(b) else None)


def _speed_texts(path: Path) -> List[str]:
    from .evaluation import load_docs

    return [doc.text for doc in load_docs(path) if len(doc)]


# --------------------------------------------------------------------------- reports


def _pct(value: Optional[float]) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def _num(value: Optional[float], fmt: str = "{:,.0f}") -> str:
    return "—" if value is None else fmt.format(value)


def best_pooling(systems: Dict[str, Dict[str, Any]]) -> Optional[str]:
    """The RNNTextCat system with the best dev accuracy."""
    rnn = [e for n, e in systems.items() if n.startswith("rnn-textcat-") and e.get("dev")]
    if not rnn:
        return None
    return max(rnn, key=lambda e: e["dev"]["accuracy"])["name"]


def markdown_tables(results: Dict[str, Any]) -> str:
    systems = results["systems"]
    lines: List[str] = []
    ner = [e for e in systems.values() if e.get("task") == "ner"]
    if ner:
        lines += [
            "### NER: CoNLL-2003 English (test)",
            "",
            "| System | F1 | strict F1 | SemEval partial F1 | dev F1 | train time | words/s | peak RSS (MB) | reproduce |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for e in sorted(ner, key=lambda e: -(e.get("test") or {}).get("f1", -1)):
            lines.append(_row(e, ["f1", "f1_strict", "semeval_partial_f1"], "f1"))
        lines += ["", machines_line(ner), ""]
    senti = [e for e in systems.values() if e.get("task") == "sentiment"]
    if senti:
        best = best_pooling(systems)
        lines += [
            "### Sentiment: SST-2 (test)",
            "",
            "| System | accuracy | macro F1 | dev accuracy | train time | words/s | peak RSS (MB) | reproduce |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for e in sorted(senti, key=lambda e: -(e.get("test") or {}).get("accuracy", -1)):
            label = e["label"] + (" **(best pooling on dev)**" if e["name"] == best else "")
            lines.append(_row(e, ["accuracy", "macro_f1"], "accuracy", label=label))
        lines += ["", machines_line(senti), ""]
    return "\n".join(lines)


def _machine_name(machine: Optional[Dict[str, Any]]) -> str:
    if not machine:
        return "not recorded"
    return f"{machine.get('cpu_model') or machine.get('processor', '?')}, {machine.get('cpu_count', '?')} CPUs"


def machines_line(entries: List[Dict[str, Any]]) -> str:
    """Where the rows were trained and timed: a merged file can hold runs of
    several machines, whose train times and words/s do not compare."""
    trained: Dict[str, List[str]] = {}
    timed: Dict[str, List[str]] = {}
    for e in sorted(entries, key=lambda e: e["name"]):
        trained.setdefault(_machine_name(e.get("machine")), []).append(e["name"])
        if e.get("speed"):
            timed.setdefault(_machine_name(e["speed"].get("machine")), []).append(e["name"])

    def describe(groups: Dict[str, List[str]]) -> str:
        if len(groups) == 1:
            return next(iter(groups))
        return "; ".join(f"{machine} ({', '.join(names)})" for machine, names in groups.items())

    line = f"Trained on: {describe(trained)}."
    if timed:
        line += f" Words/s timed on: {describe(timed)}."
    return line


def _row(e: Dict[str, Any], cols: List[str], dev_col: str, label: Optional[str] = None) -> str:
    label = label or e["label"]
    if e.get("status") == "failed":
        return f"| {label} | failed: {e.get('error', '')[:80]} |" + " |" * (len(cols) + 4) + f" `{e['command']}` |"
    if e.get("status") == "timeout":
        label += " (time limit)"
    test, dev = e.get("test") or {}, e.get("dev") or {}
    speed = (e.get("speed") or {}).get("wps")
    train = e.get("train_seconds")
    cells = [label] + [_pct(test.get(c)) for c in cols] + [
        _pct(dev.get(dev_col)),
        "—" if train is None else f"{train / 60:.1f} min",
        _num(speed),
        _num(e.get("peak_rss_mb")),
        f"`{e['command']}`",
    ]
    return "| " + " | ".join(cells) + " |"


def write_reports(results: Dict[str, Any], output: Path, readme: Optional[Path] = None) -> List[Path]:
    """results.md, the PNG plots and (between markers) the README table."""
    output.mkdir(parents=True, exist_ok=True)
    tables = markdown_tables(results)
    machine = results.get("machine", {})
    text = [
        "# Benchmark results",
        "",
        "Written by `python -m spacy_rnn benchmark` (merged over runs; each row gives the command that",
        "reproduces it). Test figures: seqeval default (conlleval) and strict IOB2 modes and SemEval'13",
        "partial match for NER; accuracy and macro F1 for sentiment. Train time is the wall time of the",
        "training process, peak RSS its maximum resident memory. Words/s: `nlp.pipe` over the test texts,",
        "batch 256, median of interleaved rounds in one process (all pipelines of a task measured together).",
        "Baselines have no spaCy pipeline, so no words/s.",
        "",
        "Runs merged from several machines do not compare in train time or words/s; under each table,",
        "where its rows were trained and timed.",
        "",
        f"Machine of the last run: {_machine_name(machine)}, "
        f"{machine.get('platform', '?')}; Python {machine.get('python', '?')}, spaCy {machine.get('spacy', '?')}, "
        f"torch {machine.get('torch', '?')} ({machine.get('torch_threads', '?')} threads).",
        "",
        tables,
    ]
    written = []
    md = output / "results.md"
    md.write_text("\n".join(text), encoding="utf8")
    written.append(md)
    written += plot_results(results, output)
    if readme is not None:
        if update_readme(readme, tables):
            written.append(readme)
    return written


def update_readme(readme: Path, tables: str) -> bool:
    """Replace the text between the README markers; False when there are none."""
    if not readme.exists():
        msg.warn(f"{readme} not found; README table not updated")
        return False
    text = readme.read_text(encoding="utf8")
    if README_START not in text or README_END not in text:
        msg.warn(f"{readme} has no {README_START} / {README_END} markers; README table not updated")
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_START}\n{tables}\n{README_END}{tail}", encoding="utf8")
    return True


def plot_results(results: Dict[str, Any], output: Path) -> List[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    systems = results["systems"]
    for task, metric, title in (("ner", "f1", "CoNLL-2003 test F1 (seqeval)"),
                                ("sentiment", "accuracy", "SST-2 test accuracy")):
        done = [e for e in systems.values() if e.get("task") == task and e.get("test")]
        if not done:
            continue
        done.sort(key=lambda e: e["test"][metric])
        # learning curves
        curves = [e for e in done if e.get("curve")]
        if curves:
            fig, ax = plt.subplots(figsize=(8, 5))
            for e in curves:
                steps, scores = zip(*e["curve"])
                ax.plot(steps, [100 * s for s in scores], marker=".", label=e["name"])
            ax.set_xlabel("training step")
            ax.set_ylabel("dev score (%)")
            ax.set_title(f"{task}: dev score during training")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            path = output / f"{task}_learning_curves.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
        # score bars
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(done) + 1.5))
        colors = ["tab:blue" if e.get("ours") else ("tab:gray" if e["kind"] == "baseline" else "tab:orange")
                  for e in done]
        values = [100 * e["test"][metric] for e in done]
        ax.barh([e["name"] for e in done], values, color=colors)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.1f}", va="center", fontsize=8)
        ax.set_xlabel(title + " (blue: spacy-rnn, orange: spaCy, gray: baseline)")
        ax.set_xlim(0, 100)
        fig.tight_layout()
        path = output / f"{task}_scores.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
        # speed bars
        fast = [e for e in done if (e.get("speed") or {}).get("wps")]
        if fast:
            fast.sort(key=lambda e: e["speed"]["wps"])
            fig, ax = plt.subplots(figsize=(8, 0.45 * len(fast) + 1.5))
            ax.barh([e["name"] for e in fast], [e["speed"]["wps"] for e in fast],
                    color=["tab:blue" if e.get("ours") else "tab:orange" for e in fast])
            ax.set_xlabel("inference words/s (nlp.pipe, batch 256, median of interleaved rounds, CPU)")
            fig.tight_layout()
            path = output / f"{task}_speed.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written
