"""Annotation engines: where `annotate` runs the pipeline.

- "local" (default): this process. Without the options below it is exactly
  `spacy_rnn.annotate.annotate`; with several workers it is
  `nlp.pipe(n_process=N)`; with a directory output, --jsonl, --strict, --code
  or JSONL ids it goes through the same ordered writer as "ray".
- "ray": a pool of Ray actors on this machine (a local instance on loopback) or
  on a cluster (`address`), each loading the pipeline once (`ray_engine`).

Both keep every text's id (the JSONL `id` field, else file:line), write the
docs in input order, and report texts the pipeline failed on by id (skipped,
or the run fails with `strict`).
"""
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from ..annotate import annotate as annotate_local
from ..annotate import load_ner_pipeline, ner_components
from .records import input_format, read_records
from .writer import OrderedWriter, Progress, is_docbin_path

ENGINES = ("local", "ray")


def annotate(
    model: Union[str, Path],
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    *,
    engine: str = "local",
    workers: Optional[int] = None,
    address: Optional[str] = None,
    fmt: Optional[str] = None,
    text_key: str = "text",
    limit: Optional[int] = None,
    batch_size: int = 64,
    encoding: str = "utf-8",
    jsonl: bool = False,
    strict: bool = False,
    shard_size: int = 10000,
    code: Optional[Union[str, Path]] = None,
    threads: Union[int, str] = 1,
    ship_model: bool = False,
    progress: bool = True,
) -> Dict[str, Any]:
    """Annotate every text of `input_path` with the pipeline `model` into
    `output_path` (a .spacy DocBin, or a directory of shards and a manifest).

    engine (str): "local" or "ray".
    workers (Optional[int]): Ray actors, or local processes (`nlp.pipe(n_process)`);
        default 2 for "ray", 1 for "local".
    address (Optional[str]): a Ray cluster to join ("auto", "ray://host:port");
        None starts a local instance on loopback.
    jsonl (bool): also write one JSON line per doc (directory output).
    strict (bool): fail on the first text the pipeline raises on, instead of
        skipping it (it is reported by id either way).
    shard_size (int): docs per DocBin shard of a directory output.
    code (Optional[Path]): Python file with custom components, imported before
        the pipeline is loaded (here and in every worker).
    threads (Union[int, str]): torch intra-op threads per Ray worker, or "torch".
    ship_model (bool): send the pipeline to Ray workers as bytes instead of
        loading it from `model` on each (for a cluster without shared storage).
    RETURNS (Dict[str, Any]): counts (docs, tokens, entities, labels, skipped, ...),
        the format, the components, the engine, workers and timings.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    if address is not None and engine != "ray":
        raise ValueError("--address is for --engine ray")
    threads = str(threads)
    fmt = input_format(input_path, fmt)
    plain = (
        engine == "local"
        and (workers or 1) == 1
        and is_docbin_path(output_path)
        and not (jsonl or strict or code)
        and not (fmt == "jsonl" and Path(input_path).is_dir())
    )
    start = time.perf_counter()
    if plain:
        counts = annotate_local(
            model, input_path, output_path, fmt=fmt, text_key=text_key, limit=limit,
            batch_size=batch_size, encoding=encoding,
        )
        counts.update(engine="local", workers=1, skipped=[])
        return _timed(counts, start)
    code_source = _read_code(code)
    nlp = load_ner_pipeline(model)
    records = list(read_records(input_path, fmt, text_key=text_key, limit=limit, encoding=encoding))
    if not records:
        raise ValueError(f"{input_path}: no text found (format {fmt})")
    n_workers = workers or (2 if engine == "ray" else 1)
    info = {"model": str(model), "input": str(input_path), "format": fmt, "engine": engine}
    writer = OrderedWriter(
        output_path,
        len(records),
        jsonl=jsonl,
        shard_size=shard_size,
        strict=strict,
        info=info,
        progress=Progress(len(records), enabled=progress),
    )
    timings: Dict[str, float] = {}
    if engine == "ray":
        from .ray_engine import run_ray

        timings = run_ray(
            nlp, str(model), records, writer, workers=n_workers, address=address,
            batch_size=batch_size, threads=threads, code=code_source, ship_model=ship_model,
        )
    else:
        from .local import run_local

        run_local(nlp, records, writer, batch_size=batch_size, n_process=n_workers)
    counts = writer.close()
    counts.update(
        format=fmt, components=ner_components(nlp), engine=engine, workers=n_workers, **timings
    )
    return _timed(counts, start)


def _read_code(code: Optional[Union[str, Path]]) -> Optional[Tuple[str, str]]:
    """Import a --code file here and return (file name, source) for the workers."""
    if code is None:
        return None
    path = Path(code)
    if not path.is_file():
        raise ValueError(f"--code: no such file: {path}")
    from spacy.util import import_file

    import_file(path.stem, path)
    return path.name, path.read_text(encoding="utf8")


def _timed(counts: Dict[str, Any], start: float) -> Dict[str, Any]:
    seconds = time.perf_counter() - start
    counts["seconds"] = seconds
    counts["texts_per_s"] = (counts["docs"] + len(counts["skipped"])) / max(seconds, 1e-9)
    return counts
