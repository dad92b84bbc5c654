"""The reports of a run, written from the merged results file: results.md (one
Markdown table per task, with where its rows were trained and timed), the README
table between its markers, and PNG plots (scores, words/s, learning curves)."""
from pathlib import Path
from typing import Any, Dict, List, Optional

from wasabi import msg

from ..reports import md_table, number, pct, pyplot
from .machine import machine_name

README_START = "<!-- benchmark-results:start -->"
README_END = "<!-- benchmark-results:end -->"
MISSING = "—"
NER_COLUMNS = ["F1", "strict F1", "SemEval partial F1", "dev F1"]
SENTIMENT_COLUMNS = ["accuracy", "macro F1", "dev accuracy"]
COMMON_COLUMNS = ["train time", "words/s", "peak RSS (MB)", "reproduce"]


def best_pooling(systems: Dict[str, Dict[str, Any]]) -> Optional[str]:
    """The RNNTextCat system with the best dev accuracy."""
    rnn = [e for n, e in systems.items() if n.startswith("rnn-textcat-") and e.get("dev")]
    if not rnn:
        return None
    return max(rnn, key=lambda e: e["dev"]["accuracy"])["name"]


def markdown_tables(results: Dict[str, Any]) -> str:
    """One Markdown table per task (best test figure first), each followed by the
    machines its rows were trained and timed on."""
    systems = results["systems"]
    lines: List[str] = []
    ner = [e for e in systems.values() if e.get("task") == "ner"]
    if ner:
        rows = [_row(e, ["f1", "f1_strict", "semeval_partial_f1"], "f1")
                for e in sorted(ner, key=lambda e: -(e.get("test") or {}).get("f1", -1))]
        lines += ["### NER: CoNLL-2003 English (test)", "",
                  _table(NER_COLUMNS, rows), "", machines_line(ner), ""]
    senti = [e for e in systems.values() if e.get("task") == "sentiment"]
    if senti:
        best = best_pooling(systems)
        rows = []
        for e in sorted(senti, key=lambda e: -(e.get("test") or {}).get("accuracy", -1)):
            label = e["label"] + (" **(best pooling on dev)**" if e["name"] == best else "")
            rows.append(_row(e, ["accuracy", "macro_f1"], "accuracy", label=label))
        lines += ["### Sentiment: SST-2 (test)", "",
                  _table(SENTIMENT_COLUMNS, rows), "", machines_line(senti), ""]
    return "\n".join(lines)


def _table(figure_columns: List[str], rows: List[List[str]]) -> str:
    header = ["System"] + figure_columns + COMMON_COLUMNS
    aligns = "l" + "r" * (len(header) - 2) + "l"
    return md_table(header, rows, aligns)


def machines_line(entries: List[Dict[str, Any]]) -> str:
    """Where the rows were trained and timed: a merged file can hold runs of
    several machines, whose train times and words/s do not compare."""
    trained: Dict[str, List[str]] = {}
    timed: Dict[str, List[str]] = {}
    for e in sorted(entries, key=lambda e: e["name"]):
        trained.setdefault(machine_name(e.get("machine")), []).append(e["name"])
        if e.get("speed"):
            timed.setdefault(machine_name(e["speed"].get("machine")), []).append(e["name"])

    def describe(groups: Dict[str, List[str]]) -> str:
        if len(groups) == 1:
            return next(iter(groups))
        return "; ".join(f"{machine} ({', '.join(names)})" for machine, names in groups.items())

    line = f"Trained on: {describe(trained)}."
    if timed:
        line += f" Words/s timed on: {describe(timed)}."
    return line


def _row(
    e: Dict[str, Any], cols: List[str], dev_col: str, label: Optional[str] = None
) -> List[str]:
    """The cells of one system's row: test figures, dev figure, train time,
    words/s, peak memory, the command that reproduces it."""
    label = label or e["label"]
    command = f"`{e['command']}`"
    if e.get("status") == "failed":
        # the error under the first figure, the other cells empty
        return [label, f"failed: {e.get('error', '')[:80]}"] + [""] * (len(cols) + 3) + [command]
    if e.get("status") == "timeout":
        label += " (time limit)"
    test, dev = e.get("test") or {}, e.get("dev") or {}
    train = e.get("train_seconds")
    return [label] + [pct(test.get(c), MISSING) for c in cols] + [
        pct(dev.get(dev_col), MISSING),
        MISSING if train is None else f"{train / 60:.1f} min",
        number((e.get("speed") or {}).get("wps"), missing=MISSING),
        number(e.get("peak_rss_mb"), missing=MISSING),
        command,
    ]


def write_reports(
    results: Dict[str, Any], output: Path, readme: Optional[Path] = None
) -> List[Path]:
    """results.md, the PNG plots and (between markers) the README table;
    RETURNS the files written."""
    output.mkdir(parents=True, exist_ok=True)
    tables = markdown_tables(results)
    machine = results.get("machine", {})
    text = [
        "# Benchmark results",
        "",
        "Written by `python -m spacy_rnn benchmark` (merged over runs; each row gives the "
        "command that",
        "reproduces it). Test figures: seqeval default (conlleval) and strict IOB2 modes and "
        "SemEval'13",
        "partial match for NER; accuracy and macro F1 for sentiment. Train time is the wall "
        "time of the",
        "training process, peak RSS its maximum resident memory. Words/s: `nlp.pipe` over the "
        "test texts,",
        "batch 256, median of interleaved rounds in one process (all pipelines of a task "
        "measured together).",
        "Baselines have no spaCy pipeline, so no words/s. Rows marked (peer) are another "
        "library's",
        "systems (Flair 0.15.1, `pip install -e \".[peers]\"`), trained by the same harness, "
        "scored by the same",
        "evaluation on the same gold sentences and timed in the same rounds (Flair's `predict` "
        "over the same",
        "texts, batch 256); docs/benchmark.md gives their settings.",
        "",
        "Runs merged from several machines do not compare in train time or words/s; under each "
        "table,",
        "where its rows were trained and timed.",
        "",
        f"Machine of the last run: {machine_name(machine)}, "
        f"{machine.get('platform', '?')}; Python {machine.get('python', '?')}, "
        f"spaCy {machine.get('spacy', '?')}, "
        f"torch {machine.get('torch', '?')} ({machine.get('torch_threads', '?')} threads).",
        "",
        tables,
    ]
    written = []
    md = output / "results.md"
    md.write_text("\n".join(text), encoding="utf8")
    written.append(md)
    written += plot_results(results, output)
    if readme is not None and update_readme(readme, tables):
        written.append(readme)
    return written


def update_readme(readme: Path, tables: str) -> bool:
    """Replace the text between the README markers; False when there are none."""
    if not readme.exists():
        msg.warn(f"{readme} not found; README table not updated")
        return False
    text = readme.read_text(encoding="utf8")
    if README_START not in text or README_END not in text:
        msg.warn(f"{readme} has no {README_START} / {README_END} markers; "
                 "README table not updated")
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_START}\n{tables}\n{README_END}{tail}", encoding="utf8")
    return True


def plot_results(results: Dict[str, Any], output: Path) -> List[Path]:
    """Per task: test scores, words/s and dev learning curves as PNGs (systems
    without figures are left out); RETURNS the files written."""
    written: List[Path] = []
    systems = results["systems"]
    for task, metric, title in (("ner", "f1", "CoNLL-2003 test F1 (seqeval)"),
                                ("sentiment", "accuracy", "SST-2 test accuracy")):
        done = [e for e in systems.values() if e.get("task") == task and e.get("test")]
        if not done:
            continue
        plt = pyplot()
        done.sort(key=lambda e: e["test"][metric])
        curves = [e for e in done if e.get("curve")]
        if curves:
            written.append(_plot_curves(plt, task, curves, output))
        written.append(_plot_scores(plt, task, metric, title, done, output))
        fast = [e for e in done if (e.get("speed") or {}).get("wps")]
        if fast:
            written.append(_plot_speed(plt, task, fast, output))
    return written


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _color(e: Dict[str, Any]) -> str:
    """Bar colour of a system: ours, spaCy's, a peer library's, a baseline."""
    if e.get("ours"):
        return "tab:blue"
    return {"baseline": "tab:gray", "flair": "tab:green"}.get(e.get("kind", ""), "tab:orange")


def _plot_curves(plt: Any, task: str, curves: List[Dict[str, Any]], output: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 5))
    for e in curves:
        steps, scores = zip(*e["curve"])
        ax.plot(steps, [100 * s for s in scores], marker=".", label=e["name"])
    ax.set_xlabel("training step")
    ax.set_ylabel("dev score (%)")
    ax.set_title(f"{task}: dev score during training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, output / f"{task}_learning_curves.png")


def _plot_scores(
    plt: Any, task: str, metric: str, title: str, done: List[Dict[str, Any]], output: Path
) -> Path:
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(done) + 1.5))
    colors = [_color(e) for e in done]
    values = [100 * e["test"][metric] for e in done]
    ax.barh([e["name"] for e in done], values, color=colors)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.1f}", va="center", fontsize=8)
    ax.set_xlabel(title + " (blue: spacy-rnn, orange: spaCy, green: peer, gray: baseline)")
    ax.set_xlim(0, 100)
    return _save(plt, fig, output / f"{task}_scores.png")


def _plot_speed(plt: Any, task: str, fast: List[Dict[str, Any]], output: Path) -> Path:
    fast = sorted(fast, key=lambda e: e["speed"]["wps"])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(fast) + 1.5))
    ax.barh([e["name"] for e in fast], [e["speed"]["wps"] for e in fast],
            color=[_color(e) for e in fast])
    ax.set_xlabel("inference words/s (nlp.pipe, batch 256, median of interleaved rounds, CPU)")
    return _save(plt, fig, output / f"{task}_speed.png")
