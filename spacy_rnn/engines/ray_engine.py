"""The Ray engine: annotate on a pool of Ray actors (Ray Data `map_batches` with
a stateful callable class), on this machine or on a cluster.

- Each worker (actor) loads the pipeline once, from a path every worker can
  read or from bytes the driver ships through the object store, and runs torch
  with one intra-op thread unless told otherwise.
- The driver reads the input, numbers the texts (seq) and hands Ray blocks of
  `batch_size` texts; a worker returns each batch as one piece (ids, errors,
  one DocBin of the docs, JSON lines if asked, counts), and the driver's
  `OrderedWriter` puts the pieces back in input order and merges their DocBins
  without rebuilding any Doc.
- A worker process that dies is restarted and its batch retried: Ray Data
  creates its actors with `max_restarts=-1` and `max_task_retries=-1` (passing
  them ourselves is deprecated; tests/test_annotate_ray.py kills a worker to
  check). A text that makes the pipeline raise is isolated by `annotate_batch`
  and reported by id.
- A local instance (no address) keeps all traffic on loopback: the node
  address is 127.0.0.1 (Ray otherwise swaps 127.0.0.1 for the machine's
  outward address), no dashboard, usage statistics off. These are environment
  settings Ray reads when it is imported, so they are set before the import.
"""
import importlib.util
import json
import logging
import os
import sys
import tempfile
import time
from types import ModuleType
from typing import Any, Dict, List, Optional, Tuple

from spacy.language import Language

from .records import Record, annotate_batch
from .writer import OrderedWriter, Piece, make_piece

#: Environment set in every worker: the torch thread policy (spacy_rnn.ml.threads).
THREAD_VARS = ("SPACY_RNN_TORCH_THREADS", "SPACY_RNN_PARALLEL_DIRECTIONS", "OMP_NUM_THREADS",
               "MKL_NUM_THREADS")

logger = logging.getLogger(__name__)


def import_ray(local: bool) -> ModuleType:
    """Import ray with usage statistics off and, for a `local` instance, the node
    address kept on loopback; say which extra to install when it is missing."""
    from ..extras import require

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if local:
        # On Linux Ray replaces a node address of 127.0.0.1 by the address of the
        # interface with the default route, unless "clusters" are off, as they are
        # by default on macOS and Windows: then every server binds to loopback.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray = require("ray", "ray", "the Ray engine (annotate --engine ray)")
    require("ray.data", "ray", "the Ray engine (annotate --engine ray)")
    if local and not ray.is_initialized():
        from ray._private import ray_constants

        # ray read the variable at its first import; if that came before ours, say it again.
        ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


def init_ray(workers: int, address: Optional[str] = None) -> Tuple[ModuleType, bool, float]:
    """Start a local Ray instance with `workers` CPUs, or join the cluster at
    `address` ("auto", "ray://host:port"); reuse one this process already started.

    RETURNS: (the ray module, whether this call started it, seconds it took).
    """
    ray = import_ray(local=address is None)
    if ray.is_initialized():
        return ray, False, 0.0
    start = time.perf_counter()
    if address is None:
        ray.init(
            num_cpus=workers,
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    else:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    return ray, True, time.perf_counter() - start


def _pipeline_bytes(nlp: Language) -> Tuple[str, bytes]:
    """What a worker needs to rebuild `nlp` without the pipeline's directory."""
    return nlp.config.to_str(), nlp.to_bytes()


class Annotator:
    """The stateful callable of `map_batches`: one per worker, holding the pipeline.

    model (str): a pipeline name or directory every worker can read; or
    shipped (ObjectRef): (config string, `nlp.to_bytes()`) in the object store.
    code (str): Python source to run before loading (custom components), as
        spaCy's `--code` does.
    threads (str): torch intra-op threads in this worker ("torch": leave them).
    jsonl (bool): also return each doc as a JSON line.
    """

    def __init__(
        self,
        model: str,
        shipped: Any = None,
        code: Optional[Tuple[str, str]] = None,
        threads: str = "1",
        jsonl: bool = False,
    ) -> None:
        import spacy

        if threads != "torch":
            import torch

            torch.set_num_threads(int(threads))
        if code is not None:
            _import_source(*code)
        if shipped is not None:
            import ray
            from thinc.api import Config

            config_str, data = ray.get(shipped) if _is_ref(shipped) else shipped
            config = Config().from_str(config_str, interpolate=False)
            lang_cls = spacy.util.get_lang_class(config["nlp"]["lang"])
            self.nlp = lang_cls.from_config(config).from_bytes(data)
        else:
            self.nlp = spacy.load(model)
        self.jsonl = jsonl

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, List[Any]]:
        """One batch -> one row per run of consecutive seqs (normally one run)."""
        seqs = [int(s) for s in batch["seq"]]
        ids = [str(i) for i in batch["id"]]
        results = annotate_batch(self.nlp, [str(t) for t in batch["text"]])
        rows: Dict[str, List[Any]] = {"start": [], "meta": [], "doc_bin": [], "lines": []}
        lo = 0
        for hi in range(1, len(seqs) + 1):
            if hi < len(seqs) and seqs[hi] == seqs[hi - 1] + 1:
                continue
            piece = make_piece(seqs[lo], ids[lo:hi], results[lo:hi], self.jsonl)
            rows["start"].append(piece.start)
            meta = {"ids": piece.ids, "errors": piece.errors, "tokens": piece.tokens,
                    "labels": piece.labels}
            rows["meta"].append(json.dumps(meta, ensure_ascii=False))
            rows["doc_bin"].append(piece.doc_bin)
            rows["lines"].append("\n".join(piece.lines))
            lo = hi
        return rows


def _is_ref(value: Any) -> bool:
    import ray

    return isinstance(value, ray.ObjectRef)


def _import_source(name: str, source: str) -> None:
    """Import Python source (a --code file's text) as a module named after its file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, os.path.basename(name))
        with open(path, "w", encoding="utf8") as file_:
            file_.write(source)
        module_name = os.path.splitext(os.path.basename(name))[0]
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)


def run_ray(
    nlp: Language,
    model: str,
    records: List[Record],
    writer: OrderedWriter,
    *,
    workers: int = 2,
    address: Optional[str] = None,
    batch_size: int = 64,
    threads: str = "1",
    code: Optional[Tuple[str, str]] = None,
    ship_model: bool = False,
) -> Dict[str, float]:
    """Annotate `records` on Ray into `writer`; `nlp` is the driver's copy of the
    pipeline (checked already; shipped to the workers when `ship_model`).

    RETURNS (Dict[str, float]): seconds to start (or join) Ray, from then to the
        first result (workers started, pipeline loaded, first batch done), and
        to annotate everything.
    """
    ray, started, startup = init_ray(workers, address)
    import pyarrow
    import ray.data

    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.preserve_order = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        # One block per batch: a task's unit of work, and of retry.
        blocks = []
        for i in range(0, len(records), batch_size):
            chunk = records[i:i + batch_size]
            blocks.append(
                pyarrow.table(
                    {
                        "seq": [r.seq for r in chunk],
                        "id": [r.id for r in chunk],
                        "text": [r.text for r in chunk],
                    }
                )
            )
        dataset = ray.data.from_arrow(blocks)
        # each actor reserves one CPU: no second thread for the backward directions
        env = {"SPACY_RNN_TORCH_THREADS": threads, "SPACY_RNN_PARALLEL_DIRECTIONS": "0"}
        if threads != "torch":
            env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
        shipped = ray.put(_pipeline_bytes(nlp)) if ship_model else None
        annotated = dataset.map_batches(
            Annotator,
            fn_constructor_kwargs={
                "model": model,
                "shipped": shipped,
                "code": code,
                "threads": threads,
                "jsonl": writer.jsonl,
            },
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
            runtime_env={"env_vars": env},
        )
        begin = time.perf_counter()
        first = None
        for batch in annotated.iter_batches(batch_size=None, batch_format="numpy"):
            if first is None:
                first = time.perf_counter() - begin
            for start, meta, doc_bin, lines in zip(
                batch["start"], batch["meta"], batch["doc_bin"], batch["lines"]
            ):
                info = json.loads(str(meta))
                writer.add(
                    Piece(
                        int(start), info["ids"], info["errors"], bytes(doc_bin),
                        str(lines).split("\n") if str(lines) else [], info["tokens"],
                        info["labels"],
                    )
                )
        return {
            "startup_s": startup,
            "first_result_s": first or 0.0,
            "annotate_s": time.perf_counter() - begin,
        }
    finally:
        if started:
            ray.shutdown()
