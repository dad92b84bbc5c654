"""Inference speed: words per second of every trained pipeline of a task, measured
in this one process in interleaved rounds (ours and spaCy's alternately, `nlp.pipe`
over the test texts), so that a busy machine slows all systems alike. A Flair peer
model (a folder flair_peer.train wrote) is timed in the same rounds, its
`predict` over the same raw texts (flair_peer.make_speed_runner)."""
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List


def interleaved_order(ours: Dict[str, bool]) -> List[str]:
    """System names (name -> is it ours), ours and the others alternately, so that
    neither side always runs first: [o1, t1, o2, t2, o3, ...]."""
    mine = [name for name, is_ours in ours.items() if is_ours]
    theirs = [name for name, is_ours in ours.items() if not is_ours]
    order: List[str] = []
    for i in range(max(len(mine), len(theirs))):
        order += [names[i] for names in (mine, theirs) if i < len(names)]
    return order


def speed_texts(path: Path) -> List[str]:
    """The texts of the non-empty documents of a DocBin (the test split)."""
    from ..evaluation import load_docs

    return [doc.text for doc in load_docs(path) if len(doc)]


def measure_speed(
    pipelines: Dict[str, Path],
    texts: List[str],
    rounds: int = 3,
    batch_size: int = 256,
    log: Callable[[str], None] = print,
) -> Dict[str, Dict[str, Any]]:
    """Words per second of each pipeline over `texts`, measured in interleaved
    rounds (every pipeline once per round, in the order given) in this one
    process; the median over rounds is reported, with every round's figure."""
    import torch

    if rounds < 1:
        raise ValueError(f"--speed-rounds must be at least 1, got {rounds}")
    loaded = {}
    for name, path in pipelines.items():
        run = _load_runner(Path(path), batch_size)
        run(texts[:batch_size])  # warm-up
        loaded[name] = run
    runs: Dict[str, List[float]] = {name: [] for name in loaded}
    for round_ in range(rounds):
        for name, run in loaded.items():
            start = time.perf_counter()
            n_words = run(texts)
            wps = n_words / (time.perf_counter() - start)
            runs[name].append(wps)
            log(f"  speed round {round_ + 1}/{rounds}: {name:28s} {wps:10,.0f} words/s")
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


def _load_runner(path: Path, batch_size: int) -> Callable[[List[str]], int]:
    """A function that processes texts with the pipeline at `path` (a spaCy
    pipeline, or a Flair peer model) and RETURNS the number of words it saw."""
    from .flair_peer import is_flair_model, make_speed_runner

    if is_flair_model(path):
        return make_speed_runner(path, batch_size)
    import spacy

    nlp = spacy.load(path)

    def run(texts: List[str]) -> int:
        return sum(len(doc) for doc in nlp.pipe(texts, batch_size=batch_size))

    return run
