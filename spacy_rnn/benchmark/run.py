"""A benchmark run: train and evaluate the chosen systems one after another, time
every trained pipeline of their tasks, merge everything into results.json and
rewrite the reports."""
from pathlib import Path
from typing import Any, Dict, List, Sequence

from wasabi import msg

from .corpora import corpus_paths
from .machine import machine_info
from .report import write_reports
from .results import load_results, save_results
from .speed import interleaved_order, measure_speed, speed_texts
from .systems import TASKS, Settings, System
from .train import failed_entry, train_system

SPEED_MODES = ("run", "skip", "only")


def run_benchmark(
    systems: Sequence[System], settings: Settings, speed: str = "run"
) -> Dict[str, Any]:
    """Train/evaluate `systems`, measure speed, merge into results.json, write reports.

    speed: "run" (train, then time every trained pipeline of the tasks, all in
    one process, interleaved), "skip" (train only: for runs in parallel, whose
    timings would disturb each other) or "only" (time the pipelines already
    trained, train nothing).
    RETURNS the merged results, with "failures" listing the systems that failed."""
    if speed not in SPEED_MODES:
        raise ValueError(f"speed must be one of {', '.join(SPEED_MODES)}, got {speed!r}")
    import torch

    torch.set_flush_denormal(True)
    results_path = settings.output / "results.json"
    results = load_results(results_path)  # fail early on a broken file
    results["machine"] = machine_info()
    tasks = [t for t in TASKS if any(s.task == t for s in systems)]
    data = {task: corpus_paths(settings, task) for task in tasks}
    failures: List[str] = []
    for i, system in enumerate(systems if speed != "only" else [], start=1):
        msg.divider(f"[{i}/{len(systems)}] {system.name}: {system.label}")
        try:
            entry = train_system(system, settings, data[system.task])
        except (RuntimeError, ValueError, OSError) as err:
            msg.fail(str(err))
            failures.append(system.name)
            entry = failed_entry(system, settings, str(err))
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
        results = _time_task(results, task, data[task]["test"], settings, results_path)
    write_reports(results, settings.output, readme=settings.readme)
    msg.good(f"Results in {results_path} and {settings.output / 'results.md'}")
    if failures:
        msg.warn(f"failed: {', '.join(failures)}")
    results["failures"] = failures
    return results


def _time_task(
    results: Dict[str, Any], task: str, test: Path, settings: Settings, results_path: Path
) -> Dict[str, Any]:
    """Time every trained pipeline of `task` whose model is still on disk (spaCy
    pipelines and Flair peer models), and save their speeds; RETURNS the merged
    results."""
    entries = results["systems"]
    pipelines = {
        name: Path(e.get("model_dir") or e["flair_model"])
        for name, e in entries.items()
        if e.get("task") == task and (e.get("model_dir") or e.get("flair_model"))
        and Path(e.get("model_dir") or e["flair_model"]).exists()
    }
    if not pipelines:
        return results
    order = interleaved_order({name: bool(entries[name].get("ours")) for name in pipelines})
    msg.divider(f"Inference speed, {task}: {len(order)} pipelines, interleaved")
    speeds = measure_speed({n: pipelines[n] for n in order}, speed_texts(test),
                           settings.speed_rounds, settings.batch_size, log=msg.text)
    for name, figures in speeds.items():
        entries[name]["speed"] = {**figures, "machine": results["machine"]}
    return save_results(results, results_path, names=list(speeds))
