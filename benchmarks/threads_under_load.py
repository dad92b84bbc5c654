"""Time our NER pipeline with torch's default threads against the thread
policy (spacy_rnn/ml/threads.py), on an idle machine and beside busy
processes, interleaved in one process, and write the table into
docs/threads.md.

Settings (each in every round, in rotating order):
  torch-default  SPACY_RNN_TORCH_THREADS=torch with torch's own default
                 (one thread per core): what every release before the policy did.
  policy         what a user gets now: torch's default outside our layers,
                 the policy's number (1) inside them.
  all-1          torch.set_num_threads(1) for the whole process: the
                 one-thread reference.
  all-2          torch.set_num_threads(2) for the whole process with the policy
                 set to 2 (only with --with-two: the same as torch-default on a
                 2-core machine).
Loads: idle (nothing started by us; other users of the machine may still run,
so /proc/loadavg is recorded beside each figure) and busy-N (N processes of
`while True: pass` started before and killed after the round's timings).
Workloads: one long document (--long-tokens), --short-docs documents of
--short-tokens tokens through nlp.pipe, and training steps (nlp.update on
batches of whole documents of about --batch-words words, the shipped config's
batcher) with the config's optimizer. The model is initialized from the config
on CoNLL-2003 dev; its weights are untrained (speed does not depend on them).

    python benchmarks/threads_under_load.py --config configs/ner_bilstm_crf.cfg --rounds 3

With --spacy-train DIR (holding train.spacy and dev.spacy, e.g. the project's
ci-data + ci-convert steps), it instead times whole `python -m spacy train
CONFIG` runs (default configs/ci_ner.cfg) in subprocesses, with
SPACY_RNN_TORCH_THREADS=torch (before) and unset (the policy), idle and beside
busy processes, interleaved, into its own section of docs/threads.md.
Run with OMP_NUM_THREADS unset: it changes torch's default.
"""
import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import spacy
import torch
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_model_from_config, registry
from thinc.api import Config, fix_random_seed

from spacy_rnn.converters.conll import read_conll
from spacy_rnn.ml import threads
from spacy_rnn.benchmark.machine import cpu_model as machine_cpu_model

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- threads_under_load:{}:start -->"
END = "<!-- threads_under_load:{}:end -->"
DEFAULT_TORCH_THREADS = torch.get_num_threads()
ENV_NAME = threads.ENV_VAR


def data_dir() -> Path:
    return Path(os.environ.get("SPACY_RNN_DATA", ROOT.parent / "shared" / "data"))


def cpu_model() -> str:
    """The benchmark package's CPU model name, else what platform reports."""
    return machine_cpu_model() or platform.processor() or "unknown"


def relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


def apply_setting(name: str) -> None:
    if name == "torch-default":
        threads.set_torch_threads("torch")
        torch.set_num_threads(DEFAULT_TORCH_THREADS)
    elif name == "policy":
        threads.set_torch_threads(None)
        torch.set_num_threads(DEFAULT_TORCH_THREADS)
    elif name == "all-1":
        threads.set_torch_threads("torch")
        torch.set_num_threads(1)
    elif name == "all-2":
        threads.set_torch_threads(2)
        torch.set_num_threads(2)
    else:
        raise ValueError(f"unknown setting {name!r}")


def start_busy(n: int) -> List[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    time.sleep(0.5)
    return procs


def stop_busy(procs: List[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait()


def build(config_path: Path, docs: List[Doc]):
    config = Config().from_disk(config_path)
    fix_random_seed(0)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in doc]), doc) for doc in docs[:50]]
    nlp.initialize(lambda: examples)
    interpolated = nlp.config.interpolate()
    optimizer = registry.resolve({"o": interpolated["training"]["optimizer"]})["o"]
    return nlp, optimizer


def word_batches(examples: List[Example], size: int) -> List[List[Example]]:
    batches, batch, n = [], [], 0
    for ex in examples:
        if batch and n + len(ex.reference) > size:
            batches.append(batch)
            batch, n = [], 0
        batch.append(ex)
        n += len(ex.reference)
    if batch:
        batches.append(batch)
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "ner_bilstm_crf.cfg")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loads", default="0,1", help="busy processes per load state")
    parser.add_argument("--long-tokens", type=int, default=5000)
    parser.add_argument("--short-docs", type=int, default=50)
    parser.add_argument("--short-tokens", type=int, default=100)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--batch-words", type=int, default=400)
    parser.add_argument("--with-two", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--md", type=Path, default=ROOT / "docs" / "threads.md")
    parser.add_argument("--spacy-train", type=Path, default=None, metavar="DIR")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="--spacy-train: stop a run after this many seconds")
    args = parser.parse_args()
    if os.environ.get("OMP_NUM_THREADS"):
        print("note: OMP_NUM_THREADS is set; torch's default is then not what users get",
              file=sys.stderr)
    if args.spacy_train:
        if args.config == parser.get_default("config"):
            args.config = ROOT / "configs" / "ci_ner.cfg"
        spacy_train(args)
        return

    docs, _ = read_conll(data_dir() / "conll2003" / "valid.txt")
    nlp, optimizer = build(args.config, docs)
    words = [t.text for doc in docs for t in doc]
    long_doc_words = words[: args.long_tokens]
    short_words = [words[i * args.short_tokens: (i + 1) * args.short_tokens]
                   for i in range(args.short_docs)]
    train_examples = [Example(Doc(nlp.vocab, words=[t.text for t in doc]), doc)
                      for doc in docs[50:]]
    batches = word_batches(train_examples, args.batch_words)
    batch_index = [0]

    def run_long() -> float:
        doc = Doc(nlp.vocab, words=long_doc_words)
        start = time.perf_counter()
        nlp(doc)
        return time.perf_counter() - start

    def run_short() -> float:
        short = [Doc(nlp.vocab, words=w) for w in short_words]
        start = time.perf_counter()
        list(nlp.pipe(short))
        return time.perf_counter() - start

    def run_train() -> float:
        chosen = []
        for _ in range(args.train_steps):
            chosen.append(batches[batch_index[0] % len(batches)])
            batch_index[0] += 1
        start = time.perf_counter()
        for batch in chosen:
            nlp.update(batch, sgd=optimizer, drop=0.3)
        return (time.perf_counter() - start) / args.train_steps

    workloads = {"long": run_long, "short": run_short, "train": run_train}
    settings = ["torch-default", "policy", "all-1"] + (["all-2"] if args.with_two else [])
    loads = [int(n) for n in args.loads.split(",")]
    for setting in settings:  # warm up each setting once
        apply_setting(setting)
        for run in workloads.values():
            run()
    results: List[Dict] = []
    for round_i in range(args.rounds):
        for n_busy in loads:
            procs = start_busy(n_busy)
            try:
                order = settings[round_i % len(settings):] + settings[:round_i % len(settings)]
                for setting in order:
                    apply_setting(setting)
                    for name, run in workloads.items():
                        load = loadavg()
                        seconds = run()
                        results.append({"round": round_i, "busy": n_busy, "setting": setting,
                                        "workload": name, "seconds": seconds, "loadavg": load})
                        print(f"round {round_i} busy {n_busy} {setting:13s} {name:5s} "
                              f"{seconds:8.3f} s  (loadavg {load:.2f})", flush=True)
            finally:
                stop_busy(procs)
    threads.set_torch_threads(None)
    torch.set_num_threads(DEFAULT_TORCH_THREADS)
    overhead = scope_overhead()
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "available_cpus": threads.available_cpus(),
        "cgroup_quota": threads.cgroup_cpu_quota(),
        "torch": torch.__version__,
        "torch_default_threads": DEFAULT_TORCH_THREADS,
        "spacy": spacy.__version__,
        "config": relative(args.config),
        "args": {k: str(v) for k, v in vars(args).items()},
        "scope_overhead_ns": overhead,
    }
    if args.json:
        args.json.write_text(json.dumps({"info": info, "results": results}, indent=1))
    table = render(info, results, settings, loads, args)
    print(table)
    write_section(args.md, "pipeline", table)


def spacy_train(args: argparse.Namespace) -> None:
    """Wall time of whole `spacy train` runs, torch's default threads against
    the policy, idle and beside busy processes."""
    import tempfile

    loads = [int(n) for n in args.loads.split(",")]
    settings = {"torch-default": "torch", "policy": None}
    env_base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", ENV_NAME)}
    config_name = relative(args.config)

    def fmt(seconds: float) -> str:
        return f"> {args.timeout:.0f}" if math.isinf(seconds) else f"{seconds:.1f}"

    def ratio(num: float, den: float) -> str:
        """num / den where either may have run into the timeout."""
        if math.isinf(num) and math.isinf(den):
            return "? (both stopped at the timeout)"
        if math.isinf(den):
            return f"< {num / args.timeout:.2f}"
        if math.isinf(num):
            return f"> {args.timeout / den:.2f}"
        return f"{num / den:.2f}"

    results: List[Dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_i in range(args.rounds):
            for n_busy in loads:
                names = list(settings)
                if round_i % 2:
                    names.reverse()
                procs = start_busy(n_busy)
                try:
                    for name in names:
                        env = dict(env_base)
                        if settings[name] is not None:
                            env[ENV_NAME] = settings[name]
                        command = [sys.executable, "-m", "spacy", "train", str(args.config),
                                   "--paths.train", str(args.spacy_train / "train.spacy"),
                                   "--paths.dev", str(args.spacy_train / "dev.spacy"),
                                   "--output", str(Path(tmp) / name)]
                        load = loadavg()
                        start = time.perf_counter()
                        try:
                            subprocess.run(command, env=env, check=True, cwd=ROOT,
                                           stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL, timeout=args.timeout)
                            seconds = time.perf_counter() - start
                        except subprocess.TimeoutExpired:
                            seconds = math.inf  # stopped at the timeout
                        results.append({"busy": n_busy, "setting": name, "seconds": seconds,
                                        "loadavg": load})
                        print(f"round {round_i} busy {n_busy} {name:13s} {fmt(seconds)} s "
                              f"(loadavg {load:.2f})", flush=True)
                finally:
                    stop_busy(procs)
    lines = [
        f"`spacy train {config_name}` on {cpu_model()} ({os.cpu_count()} cores), wall "
        f"seconds including start-up, {args.rounds} rounds interleaved; median (min to max).",
        "",
        "| load | torch-default | policy | policy / torch-default | load avg |",
        "|---|---:|---:|---:|---:|",
    ]
    medians = {}
    for n_busy in loads:
        cells = []
        for name in settings:
            values = [r["seconds"] for r in results
                      if r["busy"] == n_busy and r["setting"] == name]
            medians[n_busy, name] = statistics.median(values)
            spread = (f"all {fmt(min(values))}" if math.isinf(min(values))
                      else f"{fmt(min(values))} to {fmt(max(values))}")
            cells.append(f"{fmt(statistics.median(values))} ({spread})")
        load = statistics.median(r["loadavg"] for r in results if r["busy"] == n_busy)
        label = "idle" if n_busy == 0 else f"{n_busy} busy"
        lines.append(f"| {label} | " + " | ".join(cells) + " | "
                     + ratio(medians[n_busy, "policy"], medians[n_busy, "torch-default"])
                     + f" | {load:.1f} |")
    if 0 in loads:
        lines.append("")
        for n_busy in (n for n in loads if n):
            lines.append(
                f"Beside {n_busy} busy process(es) against idle: torch-default "
                f"{ratio(medians[n_busy, 'torch-default'], medians[0, 'torch-default'])}, "
                f"policy {ratio(medians[n_busy, 'policy'], medians[0, 'policy'])} "
                "(time beside them / idle time).")
    lines.append("")
    lines.append(f"Runs stopped at {args.timeout:.0f} s show as `> {args.timeout:.0f}`. "
                 f"Command: `python benchmarks/threads_under_load.py --spacy-train DIR --config "
                 f"{config_name} --rounds {args.rounds} --loads {args.loads} --timeout "
                 f"{args.timeout:.0f}` (DIR: the project's ci-data and ci-convert outputs, "
                 "corpus/ci/conll2003).")
    table = "\n".join(lines)
    print(table)
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=1))
    write_section(args.md, "spacy_train", table)


def scope_overhead() -> Dict[str, float]:
    """CPU nanoseconds per `with torch_threads():` around nothing, when torch
    is already at the policy's number and when the scope has to switch and put
    back (CPU time: on a shared machine wall time counts other processes'
    time slices)."""
    import timeit

    def scope() -> None:
        with threads.torch_threads():
            pass

    out = {}
    for label, outside in (("equal", threads.policy_threads()), ("switch", 2)):
        torch.set_num_threads(outside or DEFAULT_TORCH_THREADS)
        out[label] = min(timeit.repeat(scope, number=20000, repeat=7,
                                       timer=time.process_time)) / 20000 * 1e9
    torch.set_num_threads(DEFAULT_TORCH_THREADS)
    return out


def render(info: Dict, results: List[Dict], settings, loads, args) -> str:
    def stats(setting, n_busy, workload):
        values = [r["seconds"] for r in results
                  if r["setting"] == setting and r["busy"] == n_busy and r["workload"] == workload]
        return min(values), statistics.median(values), max(values)

    names = {"long": f"one {args.long_tokens:,}-token doc (s)",
             "short": f"{args.short_docs} docs of {args.short_tokens} tokens (s)",
             "train": f"training step, ~{args.batch_words} words (s)"}
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores visible, {info['available_cpus']} "
        f"available to the process (cgroup quota: {info['cgroup_quota']}); torch "
        f"{info['torch']} (default {info['torch_default_threads']} intra-op threads), "
        f"spaCy {info['spacy']}. Config `{info['config']}`, untrained weights. "
        f"{args.rounds} rounds, settings interleaved in rotating order; median (min-max) "
        "seconds. Idle means no process started by the benchmark: others may share "
        "the machine (load average in the last column).",
        "",
        "| workload | load | " + " | ".join(settings) + " | policy / torch-default | "
        "load avg |",
        "|---|---|" + "---:|" * len(settings) + "---:|---:|",
    ]
    for workload in names:
        for n_busy in loads:
            cells = []
            medians = {}
            for setting in settings:
                lo, med, hi = stats(setting, n_busy, workload)
                medians[setting] = med
                cells.append(f"{med:.3f} ({lo:.3f}-{hi:.3f})")
            load = statistics.median(r["loadavg"] for r in results
                                     if r["busy"] == n_busy and r["workload"] == workload)
            ratio = medians["policy"] / medians["torch-default"]
            label = "idle" if n_busy == 0 else f"{n_busy} busy"
            lines.append(f"| {names[workload]} | {label} | " + " | ".join(cells)
                         + f" | {ratio:.2f} | {load:.1f} |")
    lines.append("")
    idle = {s: {w: stats(s, 0, w)[1] for w in names} for s in settings} if 0 in loads else None
    if idle:
        for n_busy in loads:
            if n_busy == 0:
                continue
            parts = []
            for setting in settings:
                worst = max(stats(setting, n_busy, w)[1] / idle[setting][w] for w in names)
                train = stats(setting, n_busy, "train")[1] / idle[setting]["train"]
                parts.append(f"{setting} {train:.2f}x (worst workload {worst:.2f}x)")
            lines.append(f"Beside {n_busy} busy process(es) against idle, training step: "
                         + "; ".join(parts) + ".")
    overhead = info["scope_overhead_ns"]
    lines.append("")
    lines.append(f"`with torch_threads():` around nothing: {overhead['equal']:.0f} ns of CPU "
                 "time when torch "
                 f"is already at the policy's number, {overhead['switch']:.0f} ns when it "
                 "sets and puts back the caller's number.")
    lines.append("")
    lines.append("Command: `python benchmarks/threads_under_load.py "
                 + f"--config {info['config']} "
                 + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                            if k in ("rounds", "loads", "train_steps"))
                 + "` (OMP_NUM_THREADS unset).")
    return "\n".join(lines)


def write_section(path: Path, name: str, table: str) -> None:
    """Replace the section `name` of the markdown file (or append it)."""
    text = path.read_text() if path.exists() else ""
    start, end = START.format(name), END.format(name)
    block = f"{start}\n{table}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
