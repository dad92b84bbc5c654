"""Human-readable output of the evaluation: console tables, a Markdown report,
PNG plots, a displaCy page of the documents with errors, and the comparison
of several systems.

Public API
----------
summary_rows(metrics) -> List[Tuple[str, str, float, float, float]]
print_summary(metrics)                      wasabi table on stdout
make_report(metrics, title="Evaluation") -> str   Markdown
write_report(metrics, path, title=...) -> Path
plot_metrics(metrics, out_dir) -> List[Path]
    ner_f1_per_type.png (F1 per entity type, one bar per mode) and
    textcat_confusion.png (confusion matrix), for what the metrics hold.
render_errors_html(gold_docs, pred_docs, path, limit=200) -> int
    displaCy page with gold and prediction side by side for each document
    whose entities (or class) differ; returns the number of such documents.
load_system(path) -> System;  compare_metrics(paths, output=None, plot=None) -> Comparison
    One table (Markdown) and one chart, systems side by side, and a verdict:
    the best model ("kind" other than "baseline") against the best baseline,
    with the difference in points.

Metrics are the dicts of `spacy_rnn.evaluation` (`{"meta", "ner", "textcat"}`).
The formatting helpers (pct, number, md_table, pyplot) are shared with the
benchmark's report (`spacy_rnn.benchmark.report`).
"""

import html
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from spacy import displacy
from spacy.tokens import Doc
from wasabi import msg

from .evaluation import error_doc_indices, make_examples, read_metrics
from .extras import require

SEQEVAL_NAMES = {"default": "seqeval default (conlleval)", "strict": "seqeval strict (IOB2)"}
SEMEVAL_NAMES = {m: f"SemEval {m}" for m in ("strict", "exact", "partial", "type")}
ENT_COLORS = {"PER": "#aa9cfc", "ORG": "#7aecec", "LOC": "#feca74", "MISC": "#e4e7d2"}


# --------------------------------------------------------------------------- tables


def _ner_rows(ner: Dict[str, Any]) -> List[Tuple[str, float, float, float]]:
    rows = [(SEQEVAL_NAMES[m], ner["seqeval"][m]) for m in ("default", "strict")]
    rows += [(SEMEVAL_NAMES[m], ner["semeval"][m]) for m in ("strict", "exact", "partial", "type")]
    rows.append(("spaCy ents (per doc)", ner["spacy"]))
    return [(name, r["p"], r["r"], r["f"]) for name, r in rows]


def summary_rows(metrics: Dict[str, Any]) -> List[Tuple[str, str, float, float, float]]:
    """(task, mode, P, R, F) rows of the headline figures."""
    rows = []
    if "ner" in metrics:
        rows += [("ner", name, p, r, f) for name, p, r, f in _ner_rows(metrics["ner"])]
    if "textcat" in metrics:
        tc = metrics["textcat"]
        for label, row in tc["per_class"].items():
            rows.append(("textcat", f"class {label}", row["p"], row["r"], row["f"]))
    return rows


def pct(value: Optional[float], missing: str = "-") -> str:
    """A fraction as a percentage with two decimals ("87.10"); `missing` for None."""
    return missing if value is None else f"{100 * value:.2f}"


def number(value: Optional[float], fmt: str = "{:,.0f}", missing: str = "-") -> str:
    """A number in `fmt` ("5,000" by default); `missing` for None."""
    return missing if value is None else fmt.format(value)


def print_summary(metrics: Dict[str, Any]) -> None:
    """Print the headline figures as console tables."""
    if "ner" in metrics:
        ner = metrics["ner"]
        msg.divider("NER")
        msg.text(
            f"{ner['n_docs']} docs, {ner['n_sentences']} sentences, {ner['n_tokens']} tokens; "
            f"scored per {ner['unit']}"
        )
        msg.table(
            [(n, pct(p), pct(r), pct(f)) for n, p, r, f in _ner_rows(ner)],
            header=("mode", "P", "R", "F"),
            aligns=("l", "r", "r", "r"),
        )
        per_type = ner["seqeval"]["default"]["per_type"]
        if per_type:
            msg.table(
                [
                    (t, pct(r["p"]), pct(r["r"]), pct(r["f"]), r["support"])
                    for t, r in per_type.items()
                ],
                header=("type (seqeval default)", "P", "R", "F", "gold"),
                aligns=("l", "r", "r", "r", "r"),
            )
    if "textcat" in metrics:
        tc = metrics["textcat"]
        msg.divider("Text classification")
        msg.table(
            [
                ("accuracy", pct(tc["accuracy"])),
                ("macro F1", pct(tc["macro_f1"])),
                ("ROC AUC", pct(tc.get("roc_auc"))),
            ],
            header=("metric", "%"),
            aligns=("l", "r"),
        )
        msg.table(
            [
                (label, pct(r["p"]), pct(r["r"]), pct(r["f"]), r["support"])
                for label, r in tc["per_class"].items()
            ],
            header=("class", "P", "R", "F", "gold"),
            aligns=("l", "r", "r", "r", "r"),
        )


def md_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], aligns: Optional[str] = None
) -> str:
    """A Markdown table; `aligns` holds one "l" or "r" per column (default: all "l")."""
    aligns = aligns or "l" * len(header)
    if len(aligns) != len(header):
        raise ValueError(f"{len(aligns)} alignments for {len(header)} columns")
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in aligns) + "|"
    lines = ["| " + " | ".join(header) + " |", rule]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row of {len(row)} cells under {len(header)} columns: {row!r}")
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def make_report(metrics: Dict[str, Any], title: str = "Evaluation") -> str:
    """Markdown report of the metrics (figures in percent)."""
    meta = metrics.get("meta", {})
    out = [f"# {title}", ""]
    if meta:
        out += [", ".join(f"{k}: {v}" for k, v in meta.items() if not isinstance(v, dict)), ""]
    if "ner" in metrics:
        ner = metrics["ner"]
        out += [
            "## NER",
            "",
            f"{ner['n_docs']} documents, {ner['n_sentences']} sentences, {ner['n_tokens']} tokens. "
            f"Sequence metrics are computed per {ner['unit']}. seqeval default mode is "
            "conlleval-compatible; strict mode counts only well-formed IOB2 entities. SemEval'13 "
            "modes come from nervaluate: strict (span and type), exact (span), partial (overlap, "
            "half credit), type (overlap and type).",
            "",
        ]
        out += [
            md_table(
                ("mode", "P", "R", "F"),
                [(n, pct(p), pct(r), pct(f)) for n, p, r, f in _ner_rows(ner)],
            ),
            "",
        ]
        types = ner["labels"]
        if types:
            header = (
                ["type"]
                + [SEQEVAL_NAMES[m] for m in ("default", "strict")]
                + [SEMEVAL_NAMES[m] for m in SEMEVAL_NAMES]
                + ["gold"]
            )
            rows = []
            for t in types:
                row = [t]
                row += [
                    pct(ner["seqeval"][m]["per_type"].get(t, {}).get("f", 0.0))
                    for m in ("default", "strict")
                ]
                row += [
                    pct(ner["semeval"][m]["per_type"].get(t, {}).get("f", 0.0))
                    for m in SEMEVAL_NAMES
                ]
                row.append(ner["seqeval"]["default"]["per_type"].get(t, {}).get("support", 0))
                rows.append(row)
            out += ["F1 per entity type:", "", md_table(header, rows), ""]
        sem = ner["semeval"]["strict"]
        out += [
            "SemEval counts (strict): "
            + ", ".join(
                f"{k} {sem[k]}" for k in ("correct", "incorrect", "partial", "missed", "spurious")
            ),
            "",
        ]
    if "textcat" in metrics:
        tc = metrics["textcat"]
        out += [
            "## Text classification",
            "",
            f"{tc['n_docs']} documents; classes are mutually exclusive (highest score wins).",
            "",
            md_table(
                ("metric", "%"),
                [
                    ("accuracy", pct(tc["accuracy"])),
                    ("macro F1", pct(tc["macro_f1"])),
                    (
                        "ROC AUC"
                        + (f" ({tc['positive_label']})" if "positive_label" in tc else ""),
                        pct(tc.get("roc_auc")),
                    ),
                ],
            ),
            "",
            md_table(
                ("class", "P", "R", "F", "gold"),
                [
                    (k, pct(r["p"]), pct(r["r"]), pct(r["f"]), r["support"])
                    for k, r in tc["per_class"].items()
                ],
            ),
            "",
            "Confusion matrix (rows gold, columns predicted):",
            "",
            md_table(
                [""] + tc["confusion_matrix"]["labels"],
                [
                    [lab] + row
                    for lab, row in zip(
                        tc["confusion_matrix"]["labels"], tc["confusion_matrix"]["matrix"]
                    )
                ],
            ),
            "",
        ]
    return "\n".join(out)


def write_report(
    metrics: Dict[str, Any], path: Union[str, Path], title: str = "Evaluation"
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(make_report(metrics, title) + "\n", encoding="utf8")
    return path


# --------------------------------------------------------------------------- plots


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the file-only Agg backend, or an ImportError naming the
    `plots` extra."""
    matplotlib = require("matplotlib", "plots", "Writing plots")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", "plots", "Writing plots")


def plot_metrics(metrics: Dict[str, Any], out_dir: Union[str, Path]) -> List[Path]:
    """PNG plots: F1 per entity type for each mode; the textcat confusion matrix."""
    plt = pyplot()
    import numpy as np

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if "ner" in metrics and metrics["ner"]["labels"]:
        ner = metrics["ner"]
        types = ner["labels"]
        modes = [(SEQEVAL_NAMES[m], ner["seqeval"][m]["per_type"]) for m in ("default", "strict")]
        modes += [(SEMEVAL_NAMES[m], ner["semeval"][m]["per_type"]) for m in SEMEVAL_NAMES]
        modes.append(("spaCy ents", ner["spacy"]["per_type"]))
        x = np.arange(len(types))
        width = 0.8 / len(modes)
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(types) + 2), 4.5))
        for k, (name, per_type) in enumerate(modes):
            ax.bar(
                x + k * width - 0.4 + width / 2,
                [per_type.get(t, {}).get("f", 0.0) for t in types],
                width,
                label=name,
            )
        ax.set_xticks(x)
        ax.set_xticklabels(types)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("F1")
        ax.set_title("F1 per entity type and evaluation mode")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        path = out_dir / "ner_f1_per_type.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    if "textcat" in metrics:
        cm = metrics["textcat"]["confusion_matrix"]
        matrix = np.asarray(cm["matrix"])
        fig, ax = plt.subplots(figsize=(1.2 * len(cm["labels"]) + 2.5, 1.2 * len(cm["labels"]) + 2))
        im = ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(cm["labels"])))
        ax.set_xticklabels(cm["labels"], rotation=45, ha="right")
        ax.set_yticks(range(len(cm["labels"])))
        ax.set_yticklabels(cm["labels"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(
                j,
                i,
                str(v),
                ha="center",
                va="center",
                color="white" if v > matrix.max() / 2 else "black",
            )
        fig.colorbar(im, ax=ax)
        ax.set_title("Confusion matrix")
        fig.tight_layout()
        path = out_dir / "textcat_confusion.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


# --------------------------------------------------------------------------- displacy


def _render_one(doc: Doc) -> str:
    options = {"colors": ENT_COLORS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # W006: a doc without entities is shown as plain text
        return displacy.render(
            doc, style="ent", page=False, minify=True, jupyter=False, options=options
        )


def render_errors_html(
    gold_docs: Sequence[Doc], pred_docs: Sequence[Doc], path: Union[str, Path], limit: int = 200
) -> int:
    """Write a displaCy page: gold | prediction for each document with an error."""
    gold_docs, pred_docs = list(gold_docs), list(pred_docs)
    make_examples(gold_docs, pred_docs)  # same documents, or a precise error
    errors = error_doc_indices(gold_docs, pred_docs)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Errors</title>",
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;width:100%}"
        "td{vertical-align:top;border-top:1px solid #ccc;padding:6px;width:50%}"
        "th{text-align:left}</style></head><body>",
        f"<h1>Documents with errors: {len(errors)} of {len(gold_docs)}"
        + (f" (first {limit} shown)" if len(errors) > limit else "")
        + "</h1>",
        "<table><tr><th>gold</th><th>prediction</th></tr>",
    ]
    for i in errors[:limit]:
        gold, pred = gold_docs[i], pred_docs[i]
        g_html, p_html = _render_one(gold), _render_one(pred)
        if gold.cats or pred.cats:
            g_html = html.escape(str({k: round(v, 3) for k, v in gold.cats.items()})) + g_html
            p_html = html.escape(str({k: round(v, 3) for k, v in pred.cats.items()})) + p_html
        parts.append(f"<tr><td><b>doc {i}</b>{g_html}</td><td><b>doc {i}</b>{p_html}</td></tr>")
    parts.append("</table></body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf8")
    return len(errors)


# --------------------------------------------------------------------------- compare


@dataclass
class System:
    name: str
    kind: str
    split: str
    metrics: Dict[str, Any]


@dataclass
class Comparison:
    markdown: str
    ner_rows: List[Dict[str, Any]] = field(default_factory=list)
    textcat_rows: List[Dict[str, Any]] = field(default_factory=list)
    verdicts: List[str] = field(default_factory=list)


NER_COLUMNS = [
    ("seqeval F1", lambda n: n["seqeval"]["default"]["f"]),
    ("seqeval strict F1", lambda n: n["seqeval"]["strict"]["f"]),
    ("P", lambda n: n["seqeval"]["default"]["p"]),
    ("R", lambda n: n["seqeval"]["default"]["r"]),
    ("SemEval strict F1", lambda n: n["semeval"]["strict"]["f"]),
    ("SemEval exact F1", lambda n: n["semeval"]["exact"]["f"]),
    ("SemEval partial F1", lambda n: n["semeval"]["partial"]["f"]),
    ("SemEval type F1", lambda n: n["semeval"]["type"]["f"]),
    ("spaCy ents F1", lambda n: n["spacy"]["f"]),
]
TEXTCAT_COLUMNS = [
    ("accuracy", lambda t: t["accuracy"]),
    ("macro F1", lambda t: t["macro_f1"]),
    ("ROC AUC", lambda t: t.get("roc_auc")),
]


def load_system(path: Union[str, Path]) -> System:
    """A metrics JSON (from `evaluate` or `baseline`) with its name, kind and split."""
    path = Path(path)
    metrics = read_metrics(path)
    if not isinstance(metrics, dict) or not ("ner" in metrics or "textcat" in metrics):
        raise ValueError(
            f"{path}: holds neither 'ner' nor 'textcat' metrics; is it an evaluate/baseline output?"
        )
    meta = metrics.get("meta", {})
    return System(
        meta.get("system") or path.stem, meta.get("kind", "model"), meta.get("split", "?"), metrics
    )


def _verdict(task: str, metric: str, rows: List[Dict[str, Any]]) -> str:
    models = [r for r in rows if r["kind"] != "baseline" and r[metric] is not None]
    baselines = [r for r in rows if r["kind"] == "baseline" and r[metric] is not None]
    if not models or not baselines:
        missing = "model (kind other than 'baseline')" if not models else "baseline"
        return f"{task}: no {missing} among the inputs, so no verdict on model vs baseline."
    best_m = max(models, key=lambda r: r[metric])
    best_b = max(baselines, key=lambda r: r[metric])
    diff = 100 * (best_m[metric] - best_b[metric])
    answer = "yes" if diff > 0 else "no"
    return (
        f"{task}: did the recurrent network beat the machine-learning baselines? **{answer}** — "
        f"best model {best_m['system']} {pct(best_m[metric])} vs best baseline {best_b['system']} "
        f"{pct(best_b[metric])} {metric} ({diff:+.2f} points)."
    )


def compare_metrics(
    paths: Sequence[Union[str, Path]],
    output: Optional[Union[str, Path]] = None,
    plot: Optional[Union[str, Path]] = None,
) -> Comparison:
    """Side-by-side table (Markdown) and grouped bar chart of several systems."""
    if not paths:
        raise ValueError("no metrics files given")
    systems = [load_system(p) for p in paths]
    comp = Comparison(markdown="")
    parts = ["# Comparison", ""]
    for task, columns, rows_attr, key in (
        ("ner", NER_COLUMNS, "ner_rows", "seqeval F1"),
        ("textcat", TEXTCAT_COLUMNS, "textcat_rows", "accuracy"),
    ):
        chosen = [s for s in systems if task in s.metrics]
        if not chosen:
            continue
        rows = []
        for s in chosen:
            row = {"system": s.name, "kind": s.kind, "split": s.split}
            row.update({name: fn(s.metrics[task]) for name, fn in columns})
            rows.append(row)
        rows.sort(key=lambda r: -(r[key] or 0.0))
        setattr(comp, rows_attr, rows)
        header = ["system", "kind", "split"] + [name for name, _ in columns]
        parts += [
            f"## {'NER' if task == 'ner' else 'Text classification'} (figures in %)",
            "",
            md_table(
                header,
                [
                    [r["system"], r["kind"], r["split"]] + [pct(r[n]) for n, _ in columns]
                    for r in rows
                ],
            ),
            "",
        ]
        if task == "ner":
            parts += [
                "seqeval F1 = entity-level micro F1, conlleval-compatible, per reference sentence: "
                "the figure CoNLL-2003 papers report.",
                "",
            ]
        verdict = _verdict("NER" if task == "ner" else "Text classification", key, rows)
        comp.verdicts.append(verdict)
        parts += [verdict, ""]
    comp.markdown = "\n".join(parts)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(comp.markdown + "\n", encoding="utf8")
    if plot:
        _plot_comparison(comp, Path(plot))
    return comp


def _plot_comparison(comp: Comparison, path: Path) -> None:
    plt = pyplot()
    import numpy as np

    panels = [
        (title, rows, cols)
        for title, rows, cols in (
            (
                "NER",
                comp.ner_rows,
                ["seqeval F1", "seqeval strict F1", "SemEval exact F1", "SemEval partial F1"],
            ),
            ("Text classification", comp.textcat_rows, ["accuracy", "macro F1", "ROC AUC"]),
        )
        if rows
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    for ax, (title, rows, cols) in zip(axes[0], panels):
        x = np.arange(len(cols))
        width = 0.8 / len(rows)
        for k, r in enumerate(rows):
            values = [r[c] if r[c] is not None else 0.0 for c in cols]
            bars = ax.bar(
                x + k * width - 0.4 + width / 2,
                values,
                width,
                label=f"{r['system']} ({r['kind']}, {r['split']})",
                hatch="//" if r["kind"] == "baseline" else None,
            )
            ax.bar_label(
                bars, labels=[f"{100 * v:.1f}" for v in values], fontsize=6, rotation=90, padding=2
            )
        ax.set_xticks(x)
        ax.set_xticklabels(cols, fontsize=8)
        ax.set_ylim(0, 1.4)  # room above the bars for the legend
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_title(title)
        ax.legend(fontsize=7, loc="upper center", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
