"""One system of a run: train it in a child process (`spacy train`, `python -m
spacy_rnn baseline` for the feature baselines, `python -m
spacy_rnn.benchmark.flair_peer train` for the Flair peers), evaluate it, and
make its entry of results.json."""
import json
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

from wasabi import msg

from .configs import prepare_config
from .evaluate import evaluate_model, headline
from .machine import machine_info
from .runner import ChildResult, read_training_log, run_child
from .systems import Settings, System, command_for

BASELINE_STEMS = {"lr": "ner-logreg", "crf": "ner-crf", "tfidf": "textcat-tfidf-logreg"}
#: A Flair child stops its own training at the time limit, then predicts dev and
#: test; the harness ends it only if that takes this much longer (seconds).
FLAIR_PREDICT_ALLOWANCE = 20 * 60


def _identity(system: System) -> Dict[str, Any]:
    return {"name": system.name, "label": system.label, "task": system.task,
            "kind": system.kind, "ours": system.ours, "vectors": system.vectors,
            "pooling": system.pooling}


def failed_entry(system: System, settings: Settings, error: str) -> Dict[str, Any]:
    """The results entry of a system whose run failed (the tables show the error)."""
    return {**_identity(system), "status": "failed", "error": error,
            "command": command_for(system, settings)}


def train_system(
    system: System,
    settings: Settings,
    data: Dict[str, Path],
    sys_dir: Optional[Path] = None,
    name: Optional[str] = None,
    **config_options: Any,
) -> Dict[str, Any]:
    """Train + evaluate one system; RETURNS its results entry. A failed training
    raises RuntimeError naming its log.

    sys_dir: its folder of config, logs and model (default: work/NAME).
    name: the name its metrics files carry (default: the system's).
    config_options: passed to `prepare_config` (lang, seed, architecture)."""
    sys_dir = sys_dir if sys_dir is not None else settings.work / system.name
    timeout = settings.max_minutes * 60 if settings.max_minutes else None
    entry: Dict[str, Any] = {
        **_identity(system),
        "command": command_for(system, settings),
        "settings": {k: str(v) if isinstance(v, Path) else v
                     for k, v in asdict(settings).items()},
        "data": {k: str(v) for k, v in data.items()},
        "machine": machine_info(),
        "finished_at": None,
    }
    job = _Job(system, settings, data, sys_dir, timeout, entry)
    if system.kind == "baseline":
        split_metrics = _train_baseline(job)
    elif system.kind == "flair":
        split_metrics = _train_flair(job)
    else:
        split_metrics = _train_pipeline(job, name or system.name, config_options)
    entry["dev"] = headline(system.task, split_metrics["dev"])
    entry["test"] = headline(system.task, split_metrics["test"])
    entry["status"] = "timeout" if entry.get("timed_out") else "ok"
    entry["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return entry


@dataclass
class _Job:
    """What training one system needs: the system, the run's settings, the
    corpus paths, its folder, the time limit (seconds) and its results entry,
    which the training fills in."""

    system: System
    settings: Settings
    data: Dict[str, Path]
    sys_dir: Path
    timeout: Optional[float]
    entry: Dict[str, Any]

    def run(self, cmd: List[Any]) -> ChildResult:
        """Run the training command `cmd` in a child process (its output to
        sys_dir/train.log) and note its time, peak memory and time-out in the
        entry."""
        child = run_child(cmd, self.sys_dir / "train.log", self.system.name, self.timeout)
        self.entry.update(train_seconds=child.seconds, peak_rss_mb=child.peak_rss_mb,
                          timed_out=child.timed_out)
        return child


def _train_baseline(job: _Job) -> Dict[str, Any]:
    system, settings, data, sys_dir = job.system, job.settings, job.data, job.sys_dir
    out_dir = sys_dir / "predictions"
    splits = [data["train"], data["dev"], data["test"]]
    if system.task == "ner":
        cmd = [sys.executable, "-m", "spacy_rnn", "baseline", "ner", *splits,
               "--output", out_dir, "--kinds", system.baseline]
    else:
        cmd = [sys.executable, "-m", "spacy_rnn", "baseline", "textcat", *splits,
               "--output", out_dir]
    stem = BASELINE_STEMS[system.baseline]
    child = job.run(cmd)
    if child.returncode != 0:
        raise RuntimeError(f"{system.name}: baseline failed (exit {child.returncode}); "
                           f"see {sys_dir / 'train.log'}")
    metrics_dir = settings.output / "scores"
    split_metrics = {}
    for split in ("dev", "test"):
        metrics = json.loads((out_dir / f"{stem}-{split}.json").read_text(encoding="utf8"))
        metrics_dir.mkdir(parents=True, exist_ok=True)
        (metrics_dir / f"{system.name}-{split}.json").write_text(
            json.dumps(metrics, indent=2), encoding="utf8"
        )
        split_metrics[split] = metrics
    job.entry["fit_seconds"] = split_metrics["test"]["meta"].get("train_seconds")
    return split_metrics


def _train_pipeline(job: _Job, name: str, config_options: Dict[str, Any]) -> Dict[str, Any]:
    system, settings, data, sys_dir = job.system, job.settings, job.data, job.sys_dir
    log_file = sys_dir / "training-log.jsonl"
    config_path = prepare_config(system, settings, data, log_file, **config_options)
    model_root = sys_dir / "model"
    cmd = [sys.executable, "-m", "spacy", "train", config_path, "--output", model_root,
           "--gpu-id", str(settings.gpu_id)]
    child = job.run(cmd)
    model_dir = model_root / "model-best"
    if child.returncode != 0 and not child.timed_out:
        raise RuntimeError(f"{system.name}: spacy train failed (exit {child.returncode}); "
                           f"see {sys_dir / 'train.log'}")
    if not (model_dir / "config.cfg").exists():
        raise RuntimeError(f"{system.name}: no model-best was saved "
                           "(time limit before the first evaluation?)")
    curve = read_training_log(log_file, sys_dir / "train.log")
    job.entry.update(model_dir=str(model_dir), config=str(config_path), curve=curve,
                     steps=curve[-1][0] if curve else None)
    msg.text(f"{system.name}: evaluating {model_dir}")
    return evaluate_model(model_dir, data, settings.output / "scores", name)


def _train_flair(job: _Job) -> Dict[str, Any]:
    """A Flair peer: trained, and its dev/test predictions written, by a child
    process (flair_peer.train), which stops its own training at the time limit;
    scored here with spacy_rnn.evaluation on the same gold sentences as ours.
    The model folder goes into the entry as `flair_model` (not `model_dir`,
    which names a spaCy pipeline)."""
    from .flair_peer import META_FILE, flair_vectors_path, write_glove_keyedvectors

    system, settings, data, sys_dir = job.system, job.settings, job.data, job.sys_dir
    out_dir = sys_dir / "flair-model"
    cmd: List[Any] = [sys.executable, "-m", "spacy_rnn.benchmark.flair_peer", "train",
                      system.task, data["train"], data["dev"], data["test"], out_dir]
    if system.vectors:
        kv = flair_vectors_path(settings.vectors)
        if not kv.exists():
            msg.text(f"{system.name}: writing the GloVe table Flair reads to {kv}")
            write_glove_keyedvectors(kv)
        cmd += ["--vectors", kv]
    if settings.max_minutes:
        cmd += ["--max-minutes", str(settings.max_minutes)]
    if settings.max_steps:
        cmd += ["--max-steps", str(settings.max_steps)]
    if job.timeout is not None:
        job.timeout += FLAIR_PREDICT_ALLOWANCE
    child = job.run(cmd)
    if child.returncode != 0:
        raise RuntimeError(f"{system.name}: flair training failed (exit {child.returncode}"
                           f"{', time limit' if child.timed_out else ''}); "
                           f"see {sys_dir / 'train.log'}")
    meta = json.loads((out_dir / META_FILE).read_text(encoding="utf8"))
    curve = [tuple(point) for point in meta.get("curve", [])]
    job.entry.update(flair_model=str(out_dir), timed_out=meta["timed_out"], curve=curve,
                     steps=meta.get("steps"), epochs=meta.get("epochs"),
                     fit_seconds=meta.get("fit_seconds"), flair=meta.get("flair"),
                     trainer_settings=meta.get("trainer_settings"))
    return score_flair(system, settings, data, out_dir)


def score_flair(
    system: System, settings: Settings, data: Dict[str, Path], out_dir: Path
) -> Dict[str, Any]:
    """Dev and test metrics of a Flair model folder's predictions against the
    references (also written as JSON to settings.output/scores)."""
    from ..evaluation import evaluate_docs, load_docs, write_metrics

    split_metrics = {}
    for split in ("dev", "test"):
        gold = load_docs(data[split])
        pred = load_docs(out_dir / "predictions" / f"{split}.spacy")
        metrics = {"meta": {"system": system.name, "kind": "flair", "split": split,
                            "source": str(out_dir), "gold_preproc": True}}
        metrics.update(evaluate_docs(gold, pred))
        write_metrics(metrics, settings.output / "scores" / f"{system.name}-{split}.json")
        split_metrics[split] = metrics
    return split_metrics
