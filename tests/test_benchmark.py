"""The benchmark package, module by module: systems and settings, config patching,
corpus slicing (through the shared table reader), child processes and logs, the
interleaved speed timing, machine names, the results file and the reports."""

import dataclasses
import json
import sys

import pytest
import spacy
from spacy.tokens import Doc, DocBin
from spacy.util import load_config
from typer.testing import CliRunner

from spacy_rnn.benchmark.configs import prepare_config
from spacy_rnn.benchmark.corpora import corpus_paths, head_corpus
from spacy_rnn.benchmark.machine import machine_info, machine_name
from spacy_rnn.benchmark.report import (
    README_END,
    README_START,
    markdown_tables,
    update_readme,
    write_reports,
)
from spacy_rnn.benchmark.results import load_results, save_results
from spacy_rnn.benchmark.run import run_benchmark
from spacy_rnn.benchmark.runner import read_console_table, read_training_log, run_child
from spacy_rnn.benchmark.speed import interleaved_order, measure_speed
from spacy_rnn.benchmark.systems import GROUPS, SYSTEMS, Settings, command_for
from spacy_rnn.cli import _load_commands, app
from spacy_rnn.ml.textcat import POOLINGS
from spacy_rnn.reports import md_table, pct

_load_commands()


def said(result):
    """The command's output with wasabi's line wrapping undone."""
    return " ".join(result.output.split())


# --------------------------------------------------------------------------- systems, configs


def test_benchmark_systems_follow_the_model_and_configs():
    assert GROUPS["rnn-textcat"] == [f"rnn-textcat-{p}" for p in POOLINGS]
    for system in SYSTEMS.values():
        if system.config is not None:
            assert (load_config(f"configs/{system.config}", interpolate=False))
        assert (system.config is None) != (system.generate is None) or system.kind == "baseline"
    settings = Settings(max_steps=20, limit_train=5, readme=None)
    assert command_for(SYSTEMS["bilstm-crf"], settings) == (
        "python -m spacy_rnn benchmark --systems bilstm-crf --max-steps 20 --limit-train 5"
    )
    # the README is where the tables go, not how a row is made
    settings.readme = "README.md"
    assert "--readme" not in command_for(SYSTEMS["bilstm-crf"], settings)


def test_benchmark_prepare_config_patches_the_run(tmp_path):
    settings = Settings(max_steps=7, eval_frequency=3, vectors=tmp_path / "no-vectors")
    data = {split: tmp_path / f"{split}.spacy" for split in ("train", "dev", "test")}
    log = tmp_path / "sys" / "training-log.jsonl"
    path = prepare_config(SYSTEMS["rnn-textcat-max"], settings, data, log)
    config = load_config(path, interpolate=False)
    assert config["paths"]["train"] == str(data["train"])
    assert config["paths"]["vectors"] is None
    model = config["components"]["textcat"]["model"]
    assert model["@architectures"].startswith("spacy_rnn.RNNTextCat")
    assert model["pooling"] == "max"  # the config's own is attention
    training = config["training"]
    assert (training["max_steps"], training["max_epochs"], training["eval_frequency"]) == (7, 0, 3)
    assert training["logger"]["output_file"] == str(log)
    with pytest.raises(ValueError, match="vectors not found: .*no-vectors"):
        prepare_config(SYSTEMS["bilstm-crf-glove"], settings, data, log)
    pooled_ner = dataclasses.replace(SYSTEMS["bilstm-crf"], pooling="max")
    with pytest.raises(ValueError, match="no spacy_rnn.RNNTextCat model to set pooling='max'"):
        prepare_config(pooled_ner, settings, data, log)
    missing = dataclasses.replace(SYSTEMS["bilstm-crf"], config="nope.cfg")
    with pytest.raises(ValueError, match="config not found: configs/nope.cfg"):
        prepare_config(missing, settings, data, log)


# --------------------------------------------------------------------------- corpora


def test_benchmark_head_corpus_tables_through_the_table_reader(tmp_path):
    csv_src = tmp_path / "train.csv"
    csv_src.write_bytes(b'text,label\r\n"one, ""two""\r\nthree",1\r\n\r\nfour,0\r\nfive,1\r\n')
    path, n = head_corpus(csv_src, tmp_path / "out" / "train.csv", 2)
    # the quoted field spanning two lines stays whole; blank lines between rows go
    assert n == 2 and path.read_bytes() == b'text,label\r\n"one, ""two""\r\nthree",1\r\nfour,0\r\n'
    jsonl = tmp_path / "dev.jsonl"
    jsonl.write_text('{"text": "a"}\n\n{"text": "b"}\n{"text": "c"}\n', encoding="utf8")
    path, n = head_corpus(jsonl, tmp_path / "out" / "dev.jsonl", 2)
    assert n == 2 and path.read_text() == '{"text": "a"}\n{"text": "b"}\n'
    # no header: none kept, n rows
    headerless = tmp_path / "test.tsv"
    headerless.write_text("1\tgood\n0\tbad\n1\tfine\n", encoding="utf8")
    path, n = head_corpus(headerless, tmp_path / "out" / "test.tsv", 2)
    assert n == 2 and path.read_text() == "1\tgood\n0\tbad\n"
    # a table named .txt is told from its first line; the BOM is kept, bytes unchanged
    sniffed = tmp_path / "rows.txt"
    sniffed.write_bytes("\ufefflabel\tsentence\n1\tcrème\n0\tx\n".encode("utf-8"))
    path, n = head_corpus(sniffed, tmp_path / "out" / "rows.txt", 1)
    assert n == 1 and path.read_bytes() == "\ufefflabel\tsentence\n1\tcrème\n".encode("utf-8")
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"label\ttext\n1\tok\n0\tcr\xe8me\n")
    with pytest.raises(ValueError, match=r"bad.tsv, line 3: cannot decode"):
        head_corpus(bad, tmp_path / "out" / "bad.tsv", 5)
    with pytest.raises(ValueError, match="--n must be at least 1"):
        head_corpus(headerless, tmp_path / "x.tsv", 0)


def test_benchmark_head_cli_folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "train.tsv").write_text("label\ttext\n" + "1\tx\n" * 5, encoding="utf8")
    (src / "dev.tsv").write_text("label\ttext\n" + "0\ty\n" * 5, encoding="utf8")
    (src / "notes.md").write_text("not a corpus", encoding="utf8")
    result = CliRunner().invoke(app, ["head", str(src), str(tmp_path / "out"), "-n", "3",
                                      "--n-eval", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "train.tsv").read_text().count("\n") == 4
    assert (tmp_path / "out" / "dev.tsv").read_text() == "label\ttext\n0\ty\n"
    assert not (tmp_path / "out" / "notes.md").exists()
    result = CliRunner().invoke(app, ["head", str(tmp_path / "none.tsv"), "x", "-n", "1"])
    assert result.exit_code == 1 and "corpus file not found" in said(result)


def test_benchmark_corpus_paths_slices_with_limits(tmp_path):
    nlp = spacy.blank("en")
    root = tmp_path / "corpus"
    root.mkdir()
    for split in ("train", "dev", "test"):
        docs = [Doc(nlp.vocab, words=[split, str(i)]) for i in range(5)]
        DocBin(docs=docs).to_disk(root / f"{split}.spacy")
    settings = Settings(ner_corpus=root, work=tmp_path / "work")
    assert corpus_paths(settings, "ner")["dev"] == root / "dev.spacy"
    settings.limit_train, settings.limit_eval = 2, 3
    sliced = corpus_paths(settings, "ner")
    counts = {s: len(DocBin().from_disk(p)) for s, p in sliced.items()}
    assert counts == {"train": 2, "dev": 3, "test": 3}
    assert sliced["train"].parent == tmp_path / "work" / "data" / "ner"
    settings.sentiment_corpus = tmp_path / "missing"
    with pytest.raises(ValueError, match=r"corpus not found: .*--sentiment-corpus"):
        corpus_paths(settings, "sentiment")


# --------------------------------------------------------------------------- runner


def test_benchmark_run_child_exit_status_log_and_own_memory(tmp_path):
    # the peak is sampled from /proc while the child runs: it holds it a second
    code = ("b = bytearray(120 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); "
            "import time; time.sleep(1); print('done', flush=True); raise SystemExit(3)")
    result = run_child([sys.executable, "-c", code], tmp_path / "c.log", "c")
    assert result.returncode == 3 and not result.timed_out
    assert 120 <= result.peak_rss_mb < 400  # its own, not this process's
    log = (tmp_path / "c.log").read_text()
    assert log.startswith(f"$ {sys.executable} -c ") and "done" in log


def test_benchmark_console_table_and_missing_logs(tmp_path):
    console = tmp_path / "train.log"
    console.write_text(
        "E    #       LOSS TEXTCAT  CATS_SCORE  SCORE \n"
        "---  ------  ------------  ----------  ------\n"
        "  0       0          0.70       50.00    0.50\n"
        "warning: something\n"
        "  1     200         12.25       80.50    0.81\n",
        encoding="utf8",
    )
    assert read_console_table(console) == [(0, 0.5), (200, 0.81)]
    assert read_training_log(tmp_path / "missing.jsonl") == []
    assert read_training_log(tmp_path / "missing.jsonl", console) == [(0, 0.5), (200, 0.81)]


# --------------------------------------------------------------------------- speed, machine


def test_benchmark_interleaved_order():
    assert interleaved_order({"a": True, "b": True, "c": True, "x": False, "y": False}) == [
        "a", "x", "b", "y", "c"
    ]
    assert interleaved_order({"x": False}) == ["x"]


def test_benchmark_measure_speed_interleaved_rounds(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    for name in ("ours", "theirs"):
        nlp.to_disk(tmp_path / name)
    texts = ["A short text .", "Another one here , longer ."] * 5
    lines = []
    speeds = measure_speed({"ours": tmp_path / "ours", "theirs": tmp_path / "theirs"}, texts,
                           rounds=2, batch_size=4, log=lines.append)
    assert list(speeds) == ["ours", "theirs"]
    for figures in speeds.values():
        assert len(figures["runs"]) == 2 and figures["wps"] > 0
        assert sorted(figures["runs"])[0] <= figures["wps"] <= sorted(figures["runs"])[1]
        assert figures["measured_with"] == ["ours", "theirs"] and figures["n_texts"] == 10
    # every round times each pipeline once, in turn
    assert [line.split(":")[1].split()[0] for line in lines] == ["ours", "theirs"] * 2
    with pytest.raises(ValueError, match="--speed-rounds must be at least 1"):
        measure_speed({}, texts, rounds=0)


def test_benchmark_machine_names():
    assert machine_name(None) == "not recorded"
    assert machine_name({"cpu_model": None, "processor": "x86_64", "cpu_count": 2}) == (
        "x86_64, 2 CPUs"
    )
    info = machine_info()
    assert info["cpu_count"] and info["spacy"] == spacy.__version__
    assert machine_name(info).endswith(f", {info['cpu_count']} CPUs")


# --------------------------------------------------------------------------- results


def test_benchmark_results_merge_runs_of_other_processes(tmp_path):
    """A run saves only its own systems over what the file holds now, so two
    runs of different systems in parallel keep each other's results."""
    path = tmp_path / "results.json"
    run_a = load_results(path)  # both runs start from the empty file
    run_b = load_results(path)
    run_a["systems"]["a"] = {"status": "ok", "test": {"f1": 0.5}}
    save_results(run_a, path, names=["a"])
    run_b["systems"]["b"] = {"status": "ok", "test": {"f1": 0.6}}
    run_b["machine"] = {"cpus": 2}
    merged = save_results(run_b, path, names=["b"])
    on_disk = json.loads(path.read_text())
    assert on_disk == merged
    assert set(on_disk["systems"]) == {"a", "b"} and on_disk["machine"] == {"cpus": 2}
    # without names, the file is replaced (as the report-only path expects)
    save_results(run_b, path)
    assert set(json.loads(path.read_text())["systems"]) == {"b"}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    with pytest.raises(ValueError, match="speed must be one of"):
        run_benchmark([], settings=None, speed="sometimes")


@pytest.mark.parametrize("content", ['{"version": 2, "systems": {}}', "[1, 2]"])
def test_benchmark_rejects_other_json(tmp_path, content):
    path = tmp_path / "results.json"
    path.write_text(content, encoding="utf8")
    with pytest.raises(ValueError, match="not a benchmark results file"):
        load_results(path)


# --------------------------------------------------------------------------- reports


def _entry(name, task, score, **extra):
    figures = {"f1": score, "f1_strict": score, "semeval_partial_f1": score} \
        if task == "ner" else {"accuracy": score, "macro_f1": score}
    entry = {"name": name, "label": name.upper(), "task": task, "kind": "spacy", "ours": True,
             "status": "ok", "test": figures, "dev": figures, "train_seconds": 90.0,
             "peak_rss_mb": 1234.0, "command": f"python -m spacy_rnn benchmark --systems {name}"}
    entry.update(extra)
    return entry


def test_benchmark_tables_rows_match_their_header():
    results = {"systems": {
        "ok": _entry("ok", "ner", 0.9, speed={"wps": 12345.6}),
        "slow": _entry("slow", "ner", 0.8, status="timeout", train_seconds=None),
        "bad": {"name": "bad", "label": "BAD", "task": "ner", "status": "failed",
                "error": "spacy train failed (exit 1)", "command": "python -m x"},
        "s": _entry("s", "sentiment", 0.85),
    }}
    tables = markdown_tables(results)
    ner = tables.split("### Sentiment")[0]
    rows = [line for line in ner.splitlines() if line.startswith("|")]
    # header, rule and rows all have the same number of cells (a failed row too)
    assert len({line.count("|") for line in rows}) == 1
    assert rows[1] == "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    assert rows[2] == ("| OK | 90.00 | 90.00 | 90.00 | 90.00 | 1.5 min | 12,346 | 1,234 | "
                       "`python -m spacy_rnn benchmark --systems ok` |")
    assert rows[3].startswith("| SLOW (time limit) | 80.00 |") and "| — | — | 1,234 |" in rows[3]
    assert rows[4].startswith("| BAD | failed: spacy train failed (exit 1) |  |")
    assert "| S **(best pooling on dev)** |" not in tables  # not an rnn-textcat system
    assert pct(None) == "-" and pct(0.12345) == "12.35"
    with pytest.raises(ValueError, match="a row of 1 cells under 2 columns"):
        md_table(["a", "b"], [["x"]])


def test_benchmark_write_reports_and_readme(tmp_path):
    results = {"machine": {"cpu_model": "CPU A", "cpu_count": 2, "platform": "Linux"},
               "systems": {"ok": _entry("ok", "ner", 0.9, curve=[[0, 0.1], [100, 0.9]],
                                        speed={"wps": 5000})}}
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{README_START}\nold\n{README_END}\n\nrest\n", encoding="utf8")
    written = write_reports(results, tmp_path / "out", readme=readme)
    assert [p.name for p in written] == ["results.md", "ner_learning_curves.png",
                                         "ner_scores.png", "ner_speed.png", "README.md"]
    md = (tmp_path / "out" / "results.md").read_text()
    assert "Machine of the last run: CPU A, 2 CPUs, Linux;" in md and "| OK | 90.00 |" in md
    text = readme.read_text()
    assert "old" not in text and "| OK | 90.00 |" in text and text.endswith("rest\n")
    readme.write_text("no markers\n", encoding="utf8")
    assert not update_readme(readme, "table") and readme.read_text() == "no markers\n"


def test_benchmark_report_only_cli_and_missing_plots_extra(tmp_path, monkeypatch):
    out = tmp_path / "bench"
    save_results({"version": 1, "systems": {"ok": _entry("ok", "sentiment", 0.8)}},
                 out / "results.json")
    runner = CliRunner()
    result = runner.invoke(app, ["benchmark", "--report-only", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "| OK | 80.00 |" in (out / "results.md").read_text()
    assert (out / "sentiment_scores.png").exists()
    result = runner.invoke(app, ["benchmark", "--systems", "nope", "--output", str(out)])
    assert result.exit_code == 1 and "unknown system 'nope'" in said(result)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    result = runner.invoke(app, ["benchmark", "--report-only", "--output", str(out)])
    assert result.exit_code == 1 and 'pip install "spacy-rnn[plots]"' in said(result)
