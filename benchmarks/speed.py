"""Speed of our NER pipelines against spaCy's default NER on the hard cases.

In one process, each round times every pipeline once per input, strictly
alternating ours and spaCy's (ours, spaCy, ours, spaCy, ... ; the order of
each pair flips from one round to the next), and reports min / median / max
words/s over the rounds:

- docs:      the CoNLL-2003 test documents (231 docs, 46,435 tokens);
- sentences: the 3,453 test sentences, each a doc;
- long doc:  one 5,000-token document (the test documents concatenated);

first on the machine as it is ("idle"), then while a second CPU-bound process
(started and stopped by this script) runs ("busy"). Everything runs with
the settings a user gets: `nlp.pipe(docs)` with the pipeline's own batch
size, torch's and spaCy's default threads (the script sets none). The docs
are plain Docs of the corpus words (no sentence boundaries, as from raw
text), made fresh for every timing outside the timed part.

    python benchmarks/speed.py run --ours BiLSTM-CRF=training/ner/model-best \\
        --spacy training/spacy_ner/model-best --test ../shared/data/conll2003/test.txt

Without --spacy, spaCy's `spacy init config -p ner -o efficiency` pipeline is
initialized on the training data (untrained weights; its speed does not
depend on them much, but say so). `train-spacy` trains that pipeline briefly,
`crf-ab` times CRF decoding in torch against numpy in one process, and
`windows` scores a crf_ner pipeline's BiRNN encoder read in windows of
several sizes (BiRNNEncoder.v2) on a dev set.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import spacy
from spacy.language import Language
from spacy.tokens import Doc
from spacy_rnn.benchmark.machine import cpu_model as machine_cpu_model

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SPACY_RNN_DATA", ROOT.parent / "shared" / "data"))
LONG_DOC_TOKENS = 5000
BUSY_CODE = "while True:\n    pass\n"

Words = List[Tuple[List[str], List[bool]]]


# ---- inputs -------------------------------------------------------------


def read_inputs(test_path: Path) -> Dict[str, Words]:
    """The three inputs as (words, spaces) per doc."""
    from spacy_rnn.converters.conll import read_conll

    docs, _ = read_conll(test_path)
    documents = [([t.text for t in doc], [bool(t.whitespace_) for t in doc]) for doc in docs]
    sentences = [
        ([t.text for t in sent], [bool(t.whitespace_) for t in sent])
        for doc in docs
        for sent in doc.sents
    ]
    words: List[str] = []
    spaces: List[bool] = []
    for doc_words, doc_spaces in documents:
        words.extend(doc_words)
        spaces.extend(doc_spaces)
        if len(words) >= LONG_DOC_TOKENS:
            break
    if len(words) < LONG_DOC_TOKENS:
        raise ValueError(f"{test_path}: fewer than {LONG_DOC_TOKENS} tokens for the long doc")
    long_doc = [(words[:LONG_DOC_TOKENS], spaces[:LONG_DOC_TOKENS])]
    return {"docs": documents, "sentences": sentences, "long doc": long_doc}


def make_docs(nlp: Language, inputs: Words) -> List[Doc]:
    return [Doc(nlp.vocab, words=words, spaces=spaces) for words, spaces in inputs]


def time_pipe(nlp: Language, inputs: Words) -> float:
    """Words/s of `nlp.pipe` over fresh docs, with the pipeline's defaults."""
    docs = make_docs(nlp, inputs)
    n_words = sum(len(doc) for doc in docs)
    start = time.perf_counter()
    for _ in nlp.pipe(docs):
        pass
    return n_words / (time.perf_counter() - start)


# ---- pipelines ----------------------------------------------------------


def load_spacy_default(path: Optional[Path], train_path: Path) -> Tuple[Language, str]:
    """spaCy's default NER: trained (path) or initialized on the training data."""
    if path is not None:
        return spacy.load(path), f"trained, {path}"
    from spacy.cli.init_config import init_config
    from spacy.training import Corpus

    config = init_config(lang="en", pipeline=["ner"], optimize="efficiency")
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    corpus = Corpus(str(train_path))
    examples = list(corpus(nlp))[:200]
    nlp.initialize(lambda: examples)
    return nlp, f"initialized, not trained, on the first 200 docs of {train_path}"


def describe_encoder(nlp: Language) -> str:
    for _, pipe in nlp.pipeline:
        model = getattr(pipe, "model", None)
        if model is None:
            continue
        for node in model.walk():
            if node.name == "birnn_encoder":
                window = node.attrs.get("window", 0)
                return (
                    f"{node.attrs['cell']}, window {window or 'none'}"
                    + (f" (context {node.attrs.get('window_context', 0)})" if window else "")
                )
    return "-"


# ---- environment --------------------------------------------------------


def cpu_model() -> str:
    """The benchmark package's CPU model name, else what platform reports."""
    return machine_cpu_model() or platform.processor() or platform.machine()


def cpu_quota() -> Optional[str]:
    try:
        return Path("/sys/fs/cgroup/cpu.max").read_text().strip()
    except OSError:
        return None


def environment() -> Dict[str, Any]:
    import thinc
    import torch

    info: Dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cgroup_cpu_max": cpu_quota(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "spacy": spacy.__version__,
        "thinc": thinc.__version__,
        "env": {
            key: os.environ.get(key)
            for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "SPACY_RNN_TORCH_THREADS")
        },
    }
    try:
        from spacy_rnn.ml import threads

        info["spacy_rnn_threads"] = repr(threads.policy_threads())  # type: ignore[attr-defined]
    except Exception:  # the thread policy is optional here: record what is there
        info["spacy_rnn_threads"] = None
    return info


def load_average() -> Optional[Tuple[float, float, float]]:
    try:
        return os.getloadavg()
    except OSError:
        return None


# ---- the run ------------------------------------------------------------


def start_busy_process() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BUSY_CODE])


def measure(
    ours: Sequence[Tuple[str, Language]],
    spacy_nlp: Language,
    inputs: Dict[str, Words],
    rounds: int,
) -> Dict[str, Dict[str, List[float]]]:
    """words/s per input and system over the rounds, ours and spaCy's
    strictly alternating."""
    results: Dict[str, Dict[str, List[float]]] = {}
    for name, data in inputs.items():
        per_system: Dict[str, List[float]] = {label: [] for label, _ in ours}
        per_system["spaCy"] = []
        for label, nlp in list(ours) + [("spaCy", spacy_nlp)]:
            time_pipe(nlp, data[: max(1, len(data) // 10)])  # warm up
        for r in range(rounds):
            for label, nlp in ours:
                pair = [(label, nlp), ("spaCy", spacy_nlp)]
                if r % 2:
                    pair.reverse()
                for who, pipeline in pair:
                    per_system[who].append(time_pipe(pipeline, data))
            summary = ", ".join(f"{k} {v[-1]:,.0f}" for k, v in per_system.items())
            print(f"  {name} round {r + 1}: {summary} words/s", flush=True)
        results[name] = per_system
    return results


def run(args: argparse.Namespace) -> None:
    started = datetime.datetime.now(datetime.timezone.utc)
    ours: List[Tuple[str, Language]] = []
    ours_info: Dict[str, Dict[str, str]] = {}
    for spec in args.ours:
        label, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"--ours {spec!r}: expected NAME=PATH")
        nlp = spacy.load(path)
        ours.append((label, nlp))
        ours_info[label] = {"path": path, "encoder": describe_encoder(nlp),
                            "batch_size": str(nlp.batch_size)}
    spacy_nlp, spacy_desc = load_spacy_default(args.spacy, args.train)
    inputs = read_inputs(args.test)
    info = environment()
    report: Dict[str, Any] = {
        "label": args.label,
        "started": started.isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name] + sys.argv),
        "environment": info,
        "ours": ours_info,
        "spacy": {"pipeline": "spacy init config -p ner -o efficiency", "weights": spacy_desc,
                  "batch_size": spacy_nlp.batch_size},
        "inputs": {name: {"docs": len(data), "words": sum(len(w) for w, _ in data)}
                   for name, data in inputs.items()},
        "rounds": args.rounds,
        "conditions": {},
    }
    for condition in ("idle", "busy"):
        print(f"{condition}:", flush=True)
        busy = start_busy_process() if condition == "busy" else None
        try:
            if busy is not None:
                time.sleep(1.0)
            load_before = load_average()
            results = measure(ours, spacy_nlp, inputs, args.rounds)
            load_after = load_average()
        finally:
            if busy is not None:
                busy.terminate()
                busy.wait()
        report["conditions"][condition] = {
            "load_average_before": load_before,
            "load_average_after": load_after,
            "words_per_second": results,
        }
    if args.json:
        runs = []
        if args.json.exists():
            previous = json.loads(args.json.read_text())
            runs = [r for r in previous.get("runs", []) if r.get("label") != args.label]
        runs.append(report)
        args.json.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
        print(f"wrote {args.json}")
        write_markdown(args.markdown, json.loads(args.json.read_text())["runs"])
        print(f"wrote {args.markdown}")
    print(render_run(report))


BEGIN, END = "<!-- speed.py runs: begin -->", "<!-- speed.py runs: end -->"


def write_markdown(path: Path, runs: List[Dict[str, Any]]) -> None:
    """Put the runs' tables between the markers of `path`, keeping the text
    around them (written by hand)."""
    text = path.read_text() if path.exists() else "# Speed on the hard cases\n\n"
    body = "\n".join(render_run(run) for run in runs)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
    else:
        head, tail = text.rstrip("\n") + "\n\n", "\n"
    path.write_text(f"{head}{BEGIN}\n{body}{END}{tail}")


def stats(values: Sequence[float]) -> Tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def render_run(report: Dict[str, Any]) -> str:
    """A Markdown section for one run: words/s min / median / max and the
    ratio of medians to spaCy's."""
    env = report["environment"]
    lines = [
        f"### {report['label']} ({report['started']})",
        "",
        f"- Command: `{report['command']}`",
        f"- CPU: {env['cpu_model']}, {env['cpu_count']} logical CPUs "
        f"(affinity {env['affinity']}, cgroup cpu.max {env['cgroup_cpu_max']})",
        f"- torch {env['torch']} with its default {env['torch_threads']} intra-op threads "
        f"({env['torch_interop_threads']} inter-op); spaCy {env['spacy']}, thinc {env['thinc']}; "
        f"environment {env['env']}; spacy_rnn thread policy: {env['spacy_rnn_threads']}",
        f"- spaCy's NER: {report['spacy']['pipeline']}, {report['spacy']['weights']}, "
        f"batch size {report['spacy']['batch_size']}",
    ]
    for label, info in report["ours"].items():
        lines.append(f"- {label}: {info['path']} (encoder: {info['encoder']}, "
                     f"batch size {info['batch_size']})")
    lines.append(f"- {report['rounds']} rounds; inputs: " + "; ".join(
        f"{name} {v['docs']:,} docs / {v['words']:,} words"
        for name, v in report["inputs"].items()))
    lines.append("")
    systems = list(report["ours"]) + ["spaCy"]
    header = "| condition | input | " + " | ".join(
        f"{s} words/s (min / median / max)" for s in systems
    ) + " | " + " | ".join(f"{s} / spaCy" for s in systems[:-1]) + " |"
    lines.append(header)
    lines.append("|---|---|" + "---:|" * (2 * len(systems) - 1))
    idle = report["conditions"].get("idle", {}).get("words_per_second", {})
    for condition, data in report["conditions"].items():
        load = data.get("load_average_before")
        for name, per_system in data["words_per_second"].items():
            cells = []
            for s in systems:
                lo, med, hi = stats(per_system[s])
                cell = f"{lo:,.0f} / **{med:,.0f}** / {hi:,.0f}"
                if condition != "idle" and name in idle:
                    cell += f" ({med / statistics.median(idle[name][s]):.0%} of idle)"
                cells.append(cell)
            spacy_median = statistics.median(per_system["spaCy"])
            ratios = [f"{statistics.median(per_system[s]) / spacy_median:.2f}x"
                      for s in systems[:-1]]
            cond = condition if load is None else f"{condition} (load {load[0]:.1f})"
            lines.append(f"| {cond} | {name} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines) + "\n"


# ---- spaCy's NER, trained briefly -------------------------------------------


def train_spacy(args: argparse.Namespace) -> None:
    """`spacy init config -p ner -o efficiency`, then `spacy train` for
    --max-steps steps (a short run: enough for realistic weights)."""
    args.output.mkdir(parents=True, exist_ok=True)
    config = args.output / "config.cfg"
    python = sys.executable
    subprocess.run([python, "-m", "spacy", "init", "config", "-p", "ner", "-o", "efficiency",
                    "-F", str(config)], check=True)
    subprocess.run([python, "-m", "spacy", "train", str(config), "--output", str(args.output),
                    "--paths.train", str(args.train), "--paths.dev", str(args.dev),
                    "--training.max_steps", str(args.max_steps),
                    "--training.eval_frequency", str(max(1, args.max_steps // 2))], check=True)


# ---- windows on dev -------------------------------------------------------------


def windows(args: argparse.Namespace) -> None:
    """Entity F1 on a dev set with the pipeline's BiRNN encoder reading whole
    docs and in windows. The docs have the gold words and, with --sentences,
    the gold sentence starts (the CRF then decodes sentence by sentence;
    without, each doc is one chain, as for a pipeline trained without the
    gold_sentences augmenter)."""
    from spacy.scorer import Scorer
    from spacy.tokens import DocBin
    from spacy.training import Example

    nlp = spacy.load(args.model)
    encoders = [node for _, pipe in nlp.pipeline if hasattr(pipe, "model")
                for node in pipe.model.walk() if node.name == "birnn_encoder"]
    if not encoders:
        raise SystemExit(f"{args.model}: no BiRNN encoder in the pipeline")
    references = list(DocBin().from_disk(args.dev).get_docs(nlp.vocab))
    settings = [(0, 0)] + [tuple(int(x) for x in s.split(":")) for s in args.windows]
    rows = []
    for window, context in settings:
        for node in encoders:
            node.attrs["window"] = window
            node.attrs["window_context"] = context
        docs = [Doc(nlp.vocab, words=[t.text for t in ref], spaces=[bool(t.whitespace_)
                for t in ref], sent_starts=[bool(t.is_sent_start) for t in ref]
                if args.sentences else None)
                for ref in references]
        start = time.perf_counter()
        predicted = list(nlp.pipe(docs))
        seconds = time.perf_counter() - start
        scores = Scorer.score_spans(
            [Example(p, r) for p, r in zip(predicted, references)], "ents"
        )
        rows.append({"window": window, "context": context, "ents_f": scores["ents_f"],
                     "ents_p": scores["ents_p"], "ents_r": scores["ents_r"],
                     "seconds": seconds})
        print(f"window {window or 'whole doc'} context {context}: "
              f"F1 {100 * scores['ents_f']:.2f} ({seconds:.1f} s)", flush=True)
    lengths = sorted(len(d) for d in references)
    result = {"model": str(args.model), "dev": str(args.dev), "docs": len(references),
              "sentence_starts": args.sentences,
              "max_doc_tokens": lengths[-1], "median_doc_tokens": lengths[len(lengths) // 2],
              "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print("| window | context | dev F1 | P | R | seconds |\n|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['window'] or 'whole doc'} | {row['context']} | "
              f"{100 * row['ents_f']:.2f} | {100 * row['ents_p']:.2f} | "
              f"{100 * row['ents_r']:.2f} | {row['seconds']:.1f} |")


# ---- CRF decoding: torch against numpy --------------------------------------


def torch_decode(crf: Any, emissions: Any, layout: Any) -> Tuple[Any, Any]:
    """`decode_entities` as it ran before the numpy path, for the A/B: the
    torch Viterbi and forward-backward on the float32 chain grid."""
    import torch
    from spacy_rnn.ml.crf import crf_params
    from spacy_rnn.ml.crf_torch import span_log_probs, viterbi
    from spacy_rnn.ml.threads import torch_threads
    from spacy_rnn.schemes import decode_tag_ids

    with torch_threads():
        padded = torch.from_numpy(layout.pad(emissions))
        mask = torch.from_numpy(layout.mask)
        transitions, start, end, constraints = crf_params(crf)
        tags, _ = viterbi(padded, mask, transitions, start, end)
        starts, ends, labels = decode_tag_ids(
            layout.unpad(tags), layout.chain_last, crf.attrs["scheme"]
        )
        rows = layout.span_rows(starts, ends)
        logp = span_log_probs(padded, mask, transitions, start, end, tags, rows,
                              constraints.continues)
    return (starts, ends, labels), logp


def crf_ab(args: argparse.Namespace) -> None:
    """CPU time of CRF decoding (Viterbi, entities, confidences) in one
    process: the torch path against `decode_entities` (numpy), alternating,
    on the emissions of a crf_ner pipeline for the test sentences (batches of
    --batch-size) and the 5,000-token document."""
    import numpy
    from spacy_rnn.ml.chains import ChainLayout, concat_rows
    from spacy_rnn.ml.crf import decode_entities

    nlp = spacy.load(args.model)
    ner = next(pipe for _, pipe in nlp.pipeline if hasattr(pipe, "model")
               and pipe.model.has_ref("crf"))
    crf = ner.model.get_ref("crf")
    inputs = read_inputs(args.test)
    for name in ("sentences", "long doc"):
        docs = make_docs(nlp, inputs[name])
        batches = []
        for lo in range(0, len(docs), args.batch_size):
            part = docs[lo:lo + args.batch_size]
            layout = ChainLayout.from_docs(part)
            batches.append((concat_rows(ner.model.ops, ner.model.predict(part)), layout))
        diff = 0.0
        for emissions, layout in batches:
            (starts, ends, labels), logp = torch_decode(crf, emissions, layout)
            found = decode_entities(crf, emissions, layout)
            assert starts.tolist() == found.starts.tolist(), "different entities"
            assert labels.tolist() == found.labels.tolist(), "different labels"
            if len(logp):
                diff = max(diff, float(numpy.abs(numpy.exp(logp) - found.scores).max()))
        times: Dict[str, List[float]] = {"torch": [], "numpy": []}
        for round_ in range(args.rounds):
            pair = [("torch", torch_decode), ("numpy", decode_entities)]
            for label, decode in pair[::-1] if round_ % 2 else pair:
                start = time.process_time()
                for emissions, layout in batches:
                    decode(crf, emissions, layout)
                times[label].append(time.process_time() - start)
        n_tokens = sum(layout.n_tokens for _, layout in batches)
        medians = {k: statistics.median(v) for k, v in times.items()}
        print(f"{name} ({n_tokens:,} tokens, {len(batches)} batches): same entities; "
              f"max |confidence difference| {diff:.2g}")
        for label, values in times.items():
            print(f"  {label}: min {1000 * min(values):.1f} ms, "
                  f"median {1000 * medians[label]:.1f} ms")
        print(f"  speed-up of medians: {medians['torch'] / medians['numpy']:.2f}x", flush=True)


def directions_ab(args: argparse.Namespace) -> None:
    """Wall time of `nlp.pipe` with the two directions of our bidirectional
    layers in turn and side by side (spacy_rnn.ml.threads.run_pair), in one
    process, alternating; each input also while a second CPU-bound process
    runs. Checks that both settings give the same entities."""
    from spacy_rnn.ml import threads

    nlp = spacy.load(args.model)
    inputs = read_inputs(args.test)
    for condition in ("idle", "busy"):
        busy = start_busy_process() if condition == "busy" else None
        try:
            for name, data in inputs.items():
                ents = {}
                for parallel in (False, True):
                    threads.set_parallel_directions(parallel)
                    docs = list(nlp.pipe(make_docs(nlp, data)))
                    ents[parallel] = [[(e.start, e.end, e.label_) for e in d.ents] for d in docs]
                assert ents[False] == ents[True], f"{name}: different entities"
                wps: Dict[bool, List[float]] = {False: [], True: []}
                for round_ in range(args.rounds):
                    order = (True, False) if round_ % 2 else (False, True)
                    for parallel in order:
                        threads.set_parallel_directions(parallel)
                        wps[parallel].append(time_pipe(nlp, data))
                one, two = (statistics.median(wps[k]) for k in (False, True))
                print(f"{condition} (load {load_average()}), {name}: in turn "
                      f"{min(wps[False]):,.0f} / {one:,.0f} / {max(wps[False]):,.0f}, "
                      f"side by side {min(wps[True]):,.0f} / {two:,.0f} / "
                      f"{max(wps[True]):,.0f} words/s (min / median / max); "
                      f"{two / one:.2f}x, same entities", flush=True)
        finally:
            threads.set_parallel_directions(None)
            if busy is not None:
                busy.kill()
                busy.wait()


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="time ours against spaCy's default NER")
    p.add_argument("--ours", action="append", required=True, metavar="NAME=PATH",
                   help="one of our pipelines (repeatable)")
    p.add_argument("--spacy", type=Path, default=None, metavar="PATH",
                   help="spaCy's trained default NER (default: initialized, untrained)")
    p.add_argument("--test", type=Path, default=DATA / "conll2003" / "test.txt",
                   help="CoNLL-2003 test file (default: %(default)s)")
    p.add_argument("--train", type=Path, default=None,
                   help="training DocBin to initialize spaCy's NER when --spacy is not given")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--label", default="run", help="name of this run (e.g. before, after)")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "speed.json",
                   help="results file; a run of the same label is replaced (default: %(default)s)")
    p.add_argument("--markdown", type=Path, default=ROOT / "benchmarks" / "speed.md",
                   help="Markdown file whose runs section is rewritten (default: %(default)s)")
    p.set_defaults(func=run)
    p = sub.add_parser("train-spacy", help="train spaCy's default NER briefly")
    p.add_argument("--train", type=Path, required=True, help="training DocBin")
    p.add_argument("--dev", type=Path, required=True, help="dev DocBin")
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--max-steps", type=int, default=800)
    p.set_defaults(func=train_spacy)
    p = sub.add_parser("windows", help="dev F1 with the encoder read in windows")
    p.add_argument("--model", type=Path, required=True, help="a crf_ner pipeline")
    p.add_argument("--dev", type=Path, required=True, help="dev DocBin with sentence starts")
    p.add_argument("--windows", nargs="+", default=["64:16", "128:32", "256:64"],
                   metavar="WINDOW:CONTEXT")
    p.add_argument("--sentences", action="store_true",
                   help="give the docs their gold sentence starts (CRF chains per sentence)")
    p.add_argument("--json", type=Path, default=None)
    p.set_defaults(func=windows)
    p = sub.add_parser("crf-ab", help="CPU time of CRF decoding, torch against numpy")
    p.add_argument("--model", type=Path, required=True, help="a crf_ner pipeline")
    p.add_argument("--test", type=Path, default=DATA / "conll2003" / "test.txt")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=7)
    p.set_defaults(func=crf_ab)
    p = sub.add_parser("directions-ab",
                       help="wall time with the BiLSTM directions in turn and side by side")
    p.add_argument("--model", type=Path, required=True, help="a crf_ner pipeline")
    p.add_argument("--test", type=Path, default=DATA / "conll2003" / "test.txt")
    p.add_argument("--rounds", type=int, default=5)
    p.set_defaults(func=directions_ab)
    args = parser.parse_args(argv)
    if args.command == "run" and args.spacy is None and args.train is None:
        parser.error("run: give --spacy PATH (a trained pipeline) or --train DocBin")
    if args.command == "run" and args.rounds < 1:
        parser.error("run: --rounds must be >= 1")
    args.func(args)


if __name__ == "__main__":
    main()
