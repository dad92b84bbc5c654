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

One job per module:
    systems   the systems, groups and a run's settings
    configs   each system's training config, patched for the run
    corpora   train/dev/test DocBins (sliced), raw corpus slices (`head`)
    runner    child processes: time limit, own peak memory, training logs
    evaluate  dev/test metrics and the headline figures
    train     one system: train, evaluate, its results entry
    speed     interleaved words/s timing
    machine   the machine a row was trained or timed on
    results   results.json: load, merge, atomic save
    report    results.md, the README table, PNG plots
    run       a whole run
"""
from .corpora import corpus_paths, head_corpus, slice_docbin
from .report import README_END, README_START, markdown_tables, update_readme, write_reports
from .results import RESULTS_VERSION, load_results, save_results
from .run import SPEED_MODES, run_benchmark
from .runner import read_console_table, read_training_log, run_child
from .systems import GROUPS, SYSTEMS, TASKS, Settings, System, resolve_systems

__all__ = [
    "GROUPS",
    "README_END",
    "README_START",
    "RESULTS_VERSION",
    "SPEED_MODES",
    "SYSTEMS",
    "Settings",
    "System",
    "TASKS",
    "corpus_paths",
    "head_corpus",
    "load_results",
    "markdown_tables",
    "read_console_table",
    "read_training_log",
    "resolve_systems",
    "run_benchmark",
    "run_child",
    "save_results",
    "slice_docbin",
    "update_readme",
    "write_reports",
]
