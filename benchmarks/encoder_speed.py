"""Tokens per second of embed + encode stacks, training (forward, backward and
optimizer step) and inference, on CoNLL-2003 sentences, all in one run:

- ours:           spacy_rnn.CharWordEmbed.v1 + spacy_rnn.BiRNNEncoder.v1
- ours_no_chars:  spacy.MultiHashEmbed.v2   + spacy_rnn.BiRNNEncoder.v1
- spacy_bilstm:   spacy.MultiHashEmbed.v2   + spacy.TorchBiLSTMEncoder.v1
- spacy_maxout:   spacy.MultiHashEmbed.v2   + spacy.MaxoutWindowEncoder.v2

at the same width and depth. `ours_no_chars` vs `spacy_bilstm` compares the
encoders alone (same embedding); `ours` adds the character BiLSTM. The models
run round-robin, `--rounds` times, and the best round of each is kept, so a
load spike on a shared machine does not fall on one model only.

    python benchmarks/encoder_speed.py --conll ../shared/data/conll2003
Writes benchmarks/encoder_speed.json and benchmarks/encoder_speed.md.
"""
import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Dict, List

import spacy
import torch
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Adam, chain, fix_random_seed, require_gpu

import spacy_rnn  # noqa: F401

HERE = Path(__file__).resolve().parent


def read_sentences(path: Path) -> List[List[str]]:
    sentences, words = [], []
    with path.open(encoding="utf8") as file_:
        for line in file_:
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if words:
                    sentences.append(words)
                words = []
            else:
                words.append(fields[0])
    if words:
        sentences.append(words)
    return sentences


def build(name: str, width: int, depth: int):
    hash_embed = {"@architectures": "spacy.MultiHashEmbed.v2", "width": width,
                  "attrs": ["NORM", "PREFIX", "SUFFIX", "SHAPE"], "rows": [5000, 1000, 2500, 2500],
                  "include_static_vectors": False}
    ours_embed = {"@architectures": "spacy_rnn.CharWordEmbed.v1", "width": width}
    ours_encode = {"@architectures": "spacy_rnn.BiRNNEncoder.v1", "width": width, "depth": depth,
                   "cell": "lstm", "bidirectional": True, "dropout": 0.0}
    blocks = {
        "ours": (ours_embed, ours_encode),
        "ours_no_chars": (hash_embed, ours_encode),
        "spacy_bilstm": (hash_embed, {"@architectures": "spacy.TorchBiLSTMEncoder.v1",
                                      "width": width, "depth": depth, "dropout": 0.0}),
        "spacy_maxout": (hash_embed, {"@architectures": "spacy.MaxoutWindowEncoder.v2",
                                      "width": width, "depth": depth, "window_size": 1,
                                      "maxout_pieces": 3}),
    }
    embed, encode = blocks[name]
    resolved = registry.resolve({"embed": embed, "encode": encode})
    return chain(resolved["embed"], resolved["encode"])


def batches(docs: List[Doc], size: int) -> List[List[Doc]]:
    return [docs[i:i + size] for i in range(0, len(docs), size)]


def time_inference(model, docs: List[Doc], batch_size: int) -> float:
    n_tokens = sum(len(doc) for doc in docs)
    start = time.perf_counter()
    for batch in batches(docs, batch_size):
        model.predict(batch)
    return n_tokens / (time.perf_counter() - start)


def time_training(model, docs: List[Doc], batch_size: int, optimizer) -> float:
    n_tokens = sum(len(doc) for doc in docs)
    start = time.perf_counter()
    for batch in batches(docs, batch_size):
        Ys, backprop = model.begin_update(batch)
        backprop([Y * 0.001 for Y in Ys])
        model.finish_update(optimizer)
    return n_tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conll", type=Path,
                        default=HERE.parent.parent / "shared" / "data" / "conll2003")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--infer-sents", type=int, default=2000,
                        help="valid.txt sentences for inference")
    parser.add_argument("--train-sents", type=int, default=600,
                        help="train.txt sentences for training")
    parser.add_argument("--infer-batch", type=int, default=256,
                        help="sentences per inference batch")
    parser.add_argument("--train-batch", type=int, default=64, help="sentences per training batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--output", type=Path, default=HERE / "encoder_speed")
    args = parser.parse_args()
    if args.gpu_id >= 0:
        require_gpu(args.gpu_id)
    nlp = spacy.blank("en")
    infer_sents = read_sentences(args.conll / "valid.txt")[: args.infer_sents]
    train_sents = read_sentences(args.conll / "train.txt")[: args.train_sents]
    infer_docs = [Doc(nlp.vocab, words=w) for w in infer_sents]
    train_docs = [Doc(nlp.vocab, words=w) for w in train_sents]
    names = ["ours", "ours_no_chars", "spacy_bilstm", "spacy_maxout"]
    models, optimizers = {}, {}
    for name in names:
        fix_random_seed(0)
        models[name] = build(name, args.width, args.depth)
        models[name].initialize(X=train_docs[:20])
        optimizers[name] = Adam(0.001)
        time_inference(models[name], infer_docs[:300], args.infer_batch)  # warm-up
    results: Dict[str, Dict[str, List[float]]] = {n: {"train": [], "infer": []} for n in names}
    for round_ in range(args.rounds):
        for name in names:
            results[name]["infer"].append(
                time_inference(models[name], infer_docs, args.infer_batch)
            )
            results[name]["train"].append(
                time_training(models[name], train_docs, args.train_batch, optimizers[name])
            )
            print(f"round {round_ + 1} {name:14s} infer {results[name]['infer'][-1]:9.0f} "
                  f"train {results[name]['train'][-1]:9.0f} tokens/s", flush=True)
    best = {n: {k: max(v) for k, v in r.items()} for n, r in results.items()}
    ratios = {
        f"{mode}_{a}_vs_spacy_bilstm": best[a][mode] / best["spacy_bilstm"][mode]
        for a in ("ours", "ours_no_chars") for mode in ("train", "infer")
    }
    summary = {
        "settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                     "infer_tokens": sum(len(d) for d in infer_docs),
                     "train_tokens": sum(len(d) for d in train_docs),
                     "torch_threads": torch.get_num_threads(),
                     "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                     "load_average_at_end": os.getloadavg(),
                     "cpu_count": os.cpu_count(),
                     "machine": platform.processor() or platform.machine(),
                     "device": "gpu" if args.gpu_id >= 0 else "cpu"},
        "best_tokens_per_second": best,
        "all_rounds": results,
        "ratios": ratios,
    }
    args.output.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"Tokens/s (best of {args.rounds} interleaved rounds), "
        f"width {args.width}, depth {args.depth}, "
        f"{summary['settings']['device']}, torch threads {summary['settings']['torch_threads']}, "
        f"load average at end {summary['settings']['load_average_at_end'][0]:.1f} "
        f"on {summary['settings']['cpu_count']} cores.",
        "",
        "| model | embed + encode | training | inference |",
        "|---|---|---:|---:|",
    ]
    what = {
        "ours": "CharWordEmbed + BiRNNEncoder",
        "ours_no_chars": "MultiHashEmbed + BiRNNEncoder",
        "spacy_bilstm": "MultiHashEmbed + TorchBiLSTMEncoder",
        "spacy_maxout": "MultiHashEmbed + MaxoutWindowEncoder",
    }
    for name in names:
        train, infer = best[name]["train"], best[name]["infer"]
        lines.append(f"| {name} | {what[name]} | {train:,.0f} | {infer:,.0f} |")
    lines += ["", "Ratios to spaCy's TorchBiLSTMEncoder: " + ", ".join(
        f"{k.replace('_vs_spacy_bilstm', '')} {v:.2f}x" for k, v in ratios.items())]
    args.output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
