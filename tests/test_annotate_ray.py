"""`annotate --engine ray` against `--engine local`: the same docs in the same
order; a worker process killed mid-run; a text that makes a component raise;
traffic on loopback only. Plus the parts that need no Ray: ids, the ordered
writer, the message when ray is missing.

The Ray tests share one local instance (2 CPUs, started by the engine's own
`init_ray`) and skip only when ray is not installed, never under CI=true.
"""
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from helpers import crf_ner_nlp, in_ci, ner_examples, randomize_params, read_conll_columns
from spacy_rnn.engines import annotate
from spacy_rnn.engines.records import Record, doc_record, read_records
from spacy_rnn.engines.writer import MANIFEST, OrderedWriter, make_piece

N_TEXTS = 2000

# Custom components for the tests, imported here and in every worker (--code).
PROBE_CODE = '''
import os
from spacy.language import Language


@Language.factory("test_probe", default_config={"pid_dir": "", "marker": ""})
def make_probe(nlp, name, pid_dir, marker):
    return Probe(pid_dir, marker)


class Probe:
    """Writes its process id into pid_dir at its first doc; raises on `marker`."""

    def __init__(self, pid_dir, marker):
        self.pid_dir, self.marker, self.seen = pid_dir, marker, False

    def __call__(self, doc):
        if self.pid_dir and not self.seen:
            self.seen = True
            open(os.path.join(self.pid_dir, str(os.getpid())), "w").close()
        if self.marker and self.marker in doc.text:
            raise ValueError(f"probe: marker in {doc.text[:20]!r}")
        return doc
'''


def _need_ray():
    if in_ci():
        import ray  # noqa: F401 - under CI the Ray tests must run, not skip

        return
    pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance (2 CPUs) for the module's Ray tests."""
    _need_ray()
    from spacy_rnn.engines.ray_engine import init_ray

    ray, started, seconds = init_ray(2)
    assert started and seconds > 0
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, conll_dir):
    """A crf_ner + textcat pipeline with random weights (so both predict plenty),
    saved plain and with probes; CoNLL-2003 test sentences as texts; the local
    engine's output as the reference."""
    tmp = tmp_path_factory.mktemp("ray_annotate")
    code = tmp / "probe.py"
    code.write_text(PROBE_CODE, encoding="utf8")
    spacy.util.import_file("probe", code)
    nlp = crf_ner_nlp()
    nlp.add_pipe(
        "textcat",
        config={
            "model": {
                "@architectures": "spacy.TextCatBOW.v3",
                "exclusive_classes": True,
                "ngram_size": 1,
                "no_output_layer": False,
            }
        },
    )
    for label in ("POS", "NEG"):
        nlp.get_pipe("textcat").add_label(label)
    nlp.initialize(lambda: ner_examples(nlp))
    randomize_params(nlp.get_pipe("crf_ner").model, seed=1)
    randomize_params(nlp.get_pipe("textcat").model, seed=2)
    nlp.to_disk(tmp / "model")
    pid_dir = tmp / "pids"
    pid_dir.mkdir()
    nlp.add_pipe("test_probe", config={"pid_dir": str(pid_dir)})
    nlp.to_disk(tmp / "model_pids")
    nlp.remove_pipe("test_probe")
    nlp.add_pipe("test_probe", config={"marker": "BOOM"})
    nlp.to_disk(tmp / "model_boom")
    sentences = read_conll_columns(conll_dir / "test.txt", N_TEXTS)
    texts = [" ".join(words) for words, _, _ in sentences]
    assert len(texts) == N_TEXTS
    src = tmp / "texts.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf8")
    reference = tmp / "local.spacy"
    counts = annotate(tmp / "model", src, reference, progress=False)
    assert counts["engine"] == "local" and counts["docs"] == N_TEXTS
    # random weights: plenty of entities and cats to compare
    assert counts["entities"] > 1000 and len(counts["labels"]) >= 2
    return {
        "tmp": tmp, "code": code, "pid_dir": pid_dir, "texts": texts, "src": src,
        "reference": _docs(reference),
    }


def _docs(path):
    return list(DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))


def _assert_same_docs(docs, expected):
    assert len(docs) == len(expected)
    for doc, ref in zip(docs, expected):
        assert doc.text == ref.text
        assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == [
            (e.start_char, e.end_char, e.label_) for e in ref.ents
        ]
        assert doc.cats.keys() == ref.cats.keys()
        assert doc.cats == pytest.approx(ref.cats, abs=1e-5)
        assert doc.spans["crf_ner"].attrs["scores"] == pytest.approx(
            ref.spans["crf_ner"].attrs["scores"], abs=1e-5
        )


def _assert_same_record(record, expected):
    """Two JSON lines alike: ids, entities exactly; confidences and cats up to float noise."""
    assert record["id"] == expected["id"]
    assert [{k: v for k, v in e.items() if k != "confidence"} for e in record["entities"]] == [
        {k: v for k, v in e.items() if k != "confidence"} for e in expected["entities"]
    ]
    assert [e["confidence"] for e in record["entities"]] == pytest.approx(
        [e["confidence"] for e in expected["entities"]], abs=1e-5
    )
    assert record["cats"] == pytest.approx(expected["cats"], abs=1e-5)


# --------------------------------------------------------------------------- Ray


def _bad_jsonl_input(texts, folder):
    """`texts` as JSONL with ids doc-0.., split over two files, with two texts
    that make the probe raise (ids bad-1, bad-2) among them."""
    rows = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(texts)]
    rows.insert(37, {"id": "bad-1", "text": "BOOM goes this one"})
    rows.insert(300, {"id": "bad-2", "text": "and BOOM again"})
    folder.mkdir()
    half = len(rows) // 2
    for name, part in (("a.jsonl", rows[:half]), ("b.jsonl", rows[half:])):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in part), "utf8")
    return folder


def test_ray_equals_local_and_skips_failing_texts(ray_instance, setup, tmp_path):
    """Through the command line, on a directory of JSONL files: the docs equal
    the local engine's doc for doc (text, entities, cats, confidences, order);
    the texts that make a component raise are reported by id and skipped; the
    shards, manifest and JSON lines follow the ids."""
    from spacy_rnn.cli import _load_commands, app

    _load_commands()
    n = len(setup["texts"])
    src = _bad_jsonl_input(setup["texts"], tmp_path / "in")
    out = tmp_path / "ray"
    result = CliRunner().invoke(
        app,
        ["annotate", str(setup["tmp"] / "model_boom"), str(src), str(out), "--engine", "ray",
         "--workers", "2", "--batch-size", "50", "--jsonl", "--shard-size", "700", "--code",
         str(setup["code"])],
    )
    assert result.exit_code == 0, result.output
    assert "Skipped bad-1: ValueError: probe: marker" in result.output
    assert "Skipped bad-2: ValueError" in result.output
    manifest = json.loads((out / MANIFEST).read_text("utf8"))
    assert manifest["complete"] and manifest["texts"] == n + 2 and manifest["docs"] == n
    assert [s["id"] for s in manifest["skipped"]] == ["bad-1", "bad-2"]
    # a shard ends with the batch that brings it to 700 docs
    sizes = [s["docs"] for s in manifest["shards"]]
    assert sum(sizes) == n and len(sizes) == 3 and all(700 <= k < 750 for k in sizes[:-1])
    assert manifest["shards"][0]["first_id"] == "doc-0"
    assert manifest["shards"][-1]["last_id"] == f"doc-{n - 1}"
    docs = [d for s in manifest["shards"] for d in _docs(out / s["file"])]
    _assert_same_docs(docs, setup["reference"])
    lines = [
        json.loads(line)
        for shard in manifest["shards"]
        for line in (out / shard["jsonl"]).read_text("utf8").splitlines()
    ]
    assert len(lines) == n
    for i, (line, ref) in enumerate(zip(lines, setup["reference"])):
        _assert_same_record(line, doc_record(ref, f"doc-{i}"))
    assert sum(len(line["entities"]) for line in lines) > 1000


def test_ray_survives_a_killed_worker(ray_instance, setup, tmp_path):
    """Kill a worker process at its first batch: the batch is retried on a
    replacement and the output is complete and equal to the local engine's
    (the pipeline shipped to the workers as bytes)."""
    pid_dir = setup["pid_dir"]
    killed = []

    def kill_first_worker():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for name in os.listdir(pid_dir):
                pid = int(name)
                if pid != os.getpid():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_first_worker, daemon=True)
    watcher.start()
    out = tmp_path / "killed.spacy"
    counts = annotate(
        setup["tmp"] / "model_pids", setup["src"], out, engine="ray", workers=2,
        batch_size=50, code=setup["code"], ship_model=True, progress=False,
    )
    watcher.join(timeout=5)
    assert killed, "no worker started annotating"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    # the killed worker, the other one and the killed one's replacement
    assert len(os.listdir(pid_dir)) >= 3
    assert counts["docs"] == len(setup["texts"]) and not counts["skipped"]
    _assert_same_docs(_docs(out), setup["reference"])


def test_ray_traffic_stays_on_loopback(ray_instance, setup):
    """Every TCP/UDP socket of this process and the Ray processes it started is
    bound to, and connected to, loopback only."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux /proc")
    pids = _descendants(os.getpid())
    assert len(pids) > 3, "the Ray processes are not children of this process"
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    seen = 0
    for kind in ("tcp", "tcp6", "udp", "udp6"):
        for local, remote in _sockets(f"/proc/net/{kind}", inodes):
            seen += 1
            assert _loopback(local), f"{kind} socket bound to {local}"
            assert remote in ("0.0.0.0", "::") or _loopback(remote), f"{kind} peer {remote}"
    assert seen > 3


def _descendants(root):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _sockets(table, inodes):
    """(local ip, remote ip) of the sockets in a /proc/net table with these inodes."""
    with open(table) as file_:
        next(file_)
        for line in file_:
            fields = line.split()
            if fields[9] in inodes:
                yield _ip(fields[1].split(":")[0]), _ip(fields[2].split(":")[0])


def _ip(hex_ip):
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def _loopback(ip):
    return ip.startswith("127.") or ip in ("::1", "::ffff:127.0.0.1") or ip.startswith(
        "::ffff:127."
    )


# --------------------------------------------------------------------------- no Ray needed


def test_failing_text_local_engine_and_strict(setup, tmp_path):
    """The local engine reports the same failing texts by id; --strict stops at
    the first (the writer decides, for both engines)."""
    src = _bad_jsonl_input(setup["texts"][:320], tmp_path / "in")
    model = setup["tmp"] / "model_boom"
    counts = annotate(
        model, src, tmp_path / "out.spacy", batch_size=50, code=setup["code"], progress=False
    )
    assert counts["docs"] == 320
    assert [(s["id"], s["seq"]) for s in counts["skipped"]] == [("bad-1", 37), ("bad-2", 300)]
    _assert_same_docs(_docs(tmp_path / "out.spacy"), setup["reference"][:320])
    with pytest.raises(ValueError, match="bad-1: the pipeline failed on this text"):
        annotate(
            model, src, tmp_path / "strict.spacy", strict=True, batch_size=50,
            code=setup["code"], progress=False,
        )


def test_ray_missing_says_which_extra(tmp_path, monkeypatch):
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "LOC", "pattern": "Paris"}])
    nlp.to_disk(tmp_path / "model")
    src = tmp_path / "t.txt"
    src.write_text("In Paris .\n", "utf8")
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r'pip install "spacy-rnn\[ray\]"'):
        annotate(tmp_path / "model", src, tmp_path / "out.spacy", engine="ray", progress=False)


def test_ids_from_jsonl_directory_and_text_lines(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "b.jsonl").write_text('{"id": 7, "text": "x y"}\n\n{"text": "z"}\n', "utf8")
    (src / "sub" / "a.jsonl").write_text('"just a string"\n{"text": "w", "id": "w1"}\n', "utf8")
    assert list(read_records(src)) == [
        Record(0, "7", "x y"),
        Record(1, "b.jsonl:3", "z"),
        Record(2, "sub/a.jsonl:1", "just a string"),
        Record(3, "w1", "w"),
    ]
    lines = tmp_path / "t.txt"
    lines.write_text("one\n\ntwo\n", "utf8")
    assert [(r.seq, r.id) for r in read_records(lines)] == [(0, "t.txt:1"), (1, "t.txt:3")]
    (src / "bad.jsonl").write_text('{"id": [1], "text": "q"}\n', "utf8")
    with pytest.raises(ValueError, match="bad.jsonl:1: the id field"):
        list(read_records(src))


def test_writer_orders_and_checks(tmp_path):
    nlp = spacy.blank("en")
    docs = [nlp(f"text number {i}") for i in range(5)]

    def piece(start, n, failed=()):
        ids = [f"id{i}" for i in range(start, start + n)]
        results = [
            (None, "ValueError: bad") if i in failed else (docs[i], "")
            for i in range(start, start + n)
        ]
        return make_piece(start, ids, results, jsonl=True)

    writer = OrderedWriter(tmp_path / "out", 5, jsonl=True, shard_size=2)
    writer.add(piece(3, 2))
    writer.add(piece(0, 1))
    writer.add(piece(1, 1))
    # seqs 0 and 1 are complete: the first shard is on disk before the run ends
    assert (tmp_path / "out" / "shard-00000.spacy").exists()
    with pytest.raises(RuntimeError, match="annotated twice"):
        writer.add(piece(1, 1))
    with pytest.raises(RuntimeError, match="1 of 5 texts never came back"):
        writer.close()
    writer.add(piece(2, 1, failed=(2,)))
    counts = writer.close()
    assert counts["docs"] == 4 and counts["skipped"] == [
        {"id": "id2", "seq": 2, "error": "ValueError: bad"}
    ]
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text("utf8"))
    assert manifest["complete"]
    assert [(s["first_id"], s["last_id"], s["docs"]) for s in manifest["shards"]] == [
        ("id0", "id1", 2), ("id3", "id4", 2)
    ]
    texts = [d.text for s in manifest["shards"] for d in _docs(tmp_path / "out" / s["file"])]
    assert texts == [docs[i].text for i in (0, 1, 3, 4)]
    lines = (tmp_path / "out" / "shard-00001.jsonl").read_text("utf8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["id3", "id4"]
    overlapping = OrderedWriter(tmp_path / "o.spacy", 5)
    overlapping.add(piece(2, 2))
    with pytest.raises(RuntimeError, match="annotated twice"):
        overlapping.add(piece(0, 3))
    strict = OrderedWriter(tmp_path / "s.spacy", 5, strict=True)
    with pytest.raises(ValueError, match="id1: the pipeline failed on this text: ValueError"):
        strict.add(piece(0, 2, failed=(1,)))
    # an earlier output is replaced; a directory with anything else in it is not touched
    OrderedWriter(tmp_path / "out", 1)
    assert list((tmp_path / "out").iterdir()) == []
    (tmp_path / "out" / "notes.txt").write_text("mine", "utf8")
    with pytest.raises(ValueError, match=r"not an empty directory .*notes\.txt"):
        OrderedWriter(tmp_path / "out", 1)
    assert (tmp_path / "out" / "notes.txt").exists()
    with pytest.raises(ValueError, match="--jsonl writes shards into a directory"):
        OrderedWriter(tmp_path / "x.spacy", 1, jsonl=True)


def test_bad_options_are_named(tmp_path):
    src = tmp_path / "t.txt"
    src.write_text("one\n", "utf8")
    for kwargs, message in (
        ({"engine": "spark"}, "unknown engine 'spark'; choose one of local, ray"),
        ({"address": "auto"}, "--address is for --engine ray"),
        ({"workers": 0}, "--workers must be at least 1"),
        ({"code": tmp_path / "missing.py"}, "--code: no such file"),
    ):
        with pytest.raises(ValueError, match=message):
            annotate("en_core_web_sm", src, tmp_path / "o.spacy", **kwargs)
