"""`python -m spacy_rnn benchmark`: train, evaluate and time systems side by side;
`python -m spacy_rnn head`: small slices of raw corpus files."""
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from . import app

CORPUS_SUFFIXES = (".txt", ".tsv", ".csv", ".jsonl", ".conll", ".iob")


@app.command("benchmark")
def benchmark_cli(
    systems: str = typer.Option(
        "all", "--systems", "-s",
        help="Comma-separated systems or groups (all, ner, sentiment, rnn-textcat; with "
        "--suite generalization: all, shipped, textcat-candidates); see --list",
    ),
    suite: str = typer.Option(
        "main", "--suite",
        help="main: CoNLL-2003 and SST-2, timed; generalization: the shipped configs "
        "beside spaCy's default on the corpora of --corpora (benchmarks/generalization.md)",
    ),
    corpora: str = typer.Option(
        "all", "--corpora",
        help="--suite generalization: comma-separated corpora (cr, trec, subj, mpqa, "
        "conll2003, wikiann-de, sst2) or all, textcat, ner",
    ),
    seeds: str = typer.Option(
        "0", "--seeds", help="--suite generalization: comma-separated training seeds"
    ),
    data_dir: Path = typer.Option(
        Path("../shared/data"), "--data-dir",
        help="--suite generalization: folder of the raw corpora (one folder each)",
    ),
    output: Path = typer.Option(
        Path("benchmarks"), "--output", "-o",
        help="Folder for results.json/.md, metrics and PNGs",
    ),
    work: Optional[Path] = typer.Option(
        None, "--work",
        help="Folder for configs, logs and trained models, not committed (default: "
        "training/benchmark, or training/generalization for that suite)",
    ),
    configs: Path = typer.Option(
        Path("configs"), "--configs", help="Folder holding the spacy-rnn configs"
    ),
    ner_corpus: Path = typer.Option(
        Path("corpus/conll2003"), "--ner-corpus",
        help="Folder with train/dev/test.spacy for NER",
    ),
    sentiment_corpus: Path = typer.Option(
        Path("corpus/sst2"), "--sentiment-corpus",
        help="Folder with train/dev/test.spacy for sentiment",
    ),
    vectors: Path = typer.Option(
        Path("vectors/glove"), "--vectors",
        help="GloVe vectors pipeline from `python -m spacy_rnn vectors`",
    ),
    max_minutes: Optional[float] = typer.Option(
        None, "--max-minutes",
        help="Stop each training after this many minutes (model-best is kept)",
    ),
    max_steps: Optional[int] = typer.Option(
        None, "--max-steps", help="Override training.max_steps"
    ),
    eval_frequency: Optional[int] = typer.Option(
        None, "--eval-frequency", help="Override training.eval_frequency"
    ),
    limit_train: Optional[int] = typer.Option(
        None, "--limit-train", help="Train on the first N docs only"
    ),
    limit_eval: Optional[int] = typer.Option(
        None, "--limit-eval", help="Evaluate on the first N dev/test docs only"
    ),
    speed_rounds: int = typer.Option(
        3, "--speed-rounds", help="Interleaved speed rounds (median reported)"
    ),
    batch_size: int = typer.Option(
        256, "--batch-size", help="nlp.pipe batch size for the speed test"
    ),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU for training (-1: CPU)"),
    readme: Optional[Path] = typer.Option(
        None, "--readme", help="README whose results table (between markers) is rewritten"
    ),
    list_systems: bool = typer.Option(False, "--list", help="List the systems and exit"),
    speed: str = typer.Option(
        "run", "--speed",
        help="run: train, then time all trained pipelines of the tasks; skip: train only "
        "(runs in parallel); only: time the trained pipelines, train nothing",
    ),
    report_only: bool = typer.Option(
        False, "--report-only", help="Only rewrite results.md, PNGs and README from results.json"
    ),
) -> None:
    """Train and evaluate systems on the same data and machine and merge their
    figures into OUTPUT/results.json (+ results.md, PNGs). Runs can be split:
    each run adds or replaces its own systems."""
    from ..benchmark.report import write_reports
    from ..benchmark.results import load_results
    from ..benchmark.run import run_benchmark
    from ..benchmark.systems import GROUPS, SYSTEMS, Settings, resolve_systems

    if suite not in ("main", "generalization"):
        msg.fail(f"--suite must be main or generalization, got {suite!r}", exits=1)
    if work is None:
        work = Path("training/benchmark" if suite == "main" else "training/generalization")
    if suite == "generalization":
        _generalization(systems, corpora, seeds, data_dir, list_systems, report_only, Settings(
            output=output, work=work, configs=configs, vectors=vectors,
            max_minutes=max_minutes, max_steps=max_steps, eval_frequency=eval_frequency,
            limit_train=limit_train, limit_eval=limit_eval, gpu_id=gpu_id))
        return
    if list_systems:
        rows = [(s.name, s.task, s.label) for s in SYSTEMS.values()]
        msg.table(rows, header=("system", "task", "description"), divider=True)
        msg.text("groups: " + ", ".join(f"{k} ({len(v)})" for k, v in GROUPS.items()))
        return
    settings = Settings(
        output=output, work=work, configs=configs, ner_corpus=ner_corpus,
        sentiment_corpus=sentiment_corpus, vectors=vectors, max_minutes=max_minutes,
        max_steps=max_steps, eval_frequency=eval_frequency, limit_train=limit_train,
        limit_eval=limit_eval, speed_rounds=speed_rounds, batch_size=batch_size,
        gpu_id=gpu_id, readme=readme,
    )
    try:
        if report_only:
            for path in write_reports(load_results(output / "results.json"), output,
                                      readme=readme):
                msg.good(f"Wrote {path}")
            return
        chosen = resolve_systems(systems)
        results = run_benchmark(chosen, settings, speed=speed)
    except (ValueError, ImportError) as err:
        msg.fail("Cannot run the benchmark", str(err), exits=1)
    if results["failures"]:
        raise typer.Exit(1)


def _generalization(systems: str, corpora: str, seeds: str, data_dir: Path, list_systems: bool,
                    report_only: bool, settings) -> None:
    """`benchmark --suite generalization`: train/score the suite's runs, or list, or report."""
    from ..benchmark import generalization as gen
    from ..benchmark.results import load_results

    if list_systems:
        rows = [(s.name, s.task or "both", s.label) for s in gen.SYSTEMS.values()]
        msg.table(rows, header=("system", "task", "description"), divider=True)
        msg.text("groups: " + ", ".join(f"{k} ({len(v)})" for k, v in gen.GROUPS.items()))
        rows = [(c.name, c.task, c.lang) for c in gen.CORPORA.values()]
        msg.table(rows, header=("corpus", "task", "lang"), divider=True)
        return
    try:
        if report_only:
            results = load_results(settings.output / f"{gen.RESULTS_NAME}.json")
            for path in gen.write_generalization_report(results, settings.output):
                msg.good(f"Wrote {path}")
            return
        results = gen.run_generalization(
            gen.resolve_suite_systems(systems), gen.resolve_corpora(corpora),
            gen.parse_seeds(seeds), settings, data_dir)
    except (ValueError, ImportError) as err:
        msg.fail("Cannot run the generalization suite", str(err), exits=1)
    if results["failures"]:
        msg.warn(f"failed: {', '.join(results['failures'])}")
        raise typer.Exit(1)


@app.command("head")
def head_cli(
    input_path: Path = typer.Argument(
        ..., metavar="INPUT",
        help="Raw corpus file (CoNLL columns, TSV/CSV, JSONL) or a folder of them",
    ),
    output: Path = typer.Argument(
        ..., metavar="OUTPUT", help="File (or folder, for a folder input) to write"
    ),
    n: int = typer.Option(
        ..., "--n", "-n",
        help="Documents to keep (-DOCSTART- documents, else sentences; rows)",
    ),
    n_eval: Optional[int] = typer.Option(
        None, "--n-eval",
        help="Folder input: documents to keep of every file not named train* (default: --n)",
    ),
) -> None:
    """Copy the first N documents of a raw corpus file, or of each file in a
    folder (for small, fast workflow runs)."""
    from ..benchmark.corpora import head_corpus

    try:
        if input_path.is_dir():
            files = sorted(p for p in input_path.iterdir()
                           if p.is_file() and not p.name.startswith("."))
            files = [p for p in files if p.suffix.lower() in CORPUS_SUFFIXES]
            if not files:
                raise ValueError(f"{input_path}: no corpus files ({', '.join(CORPUS_SUFFIXES)})")
            for src in files:
                limit = n if src.name.startswith("train") or n_eval is None else n_eval
                path, count = head_corpus(src, output / src.name, limit)
                msg.good(f"Kept {count} documents of {src} in {path}")
        else:
            path, count = head_corpus(input_path, output, n)
            msg.good(f"Kept {count} documents of {input_path} in {path}")
    except ValueError as err:
        msg.fail("Cannot slice the corpus", str(err), exits=1)
