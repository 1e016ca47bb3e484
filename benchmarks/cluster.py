"""What the Ray path costs over a single process on a small corpus, and whether it gives the same index.

    python -m benchmarks.cluster                                  # compsearch's own sources
    python -m benchmarks.cluster --corpus docs --workers 2 --model default
    python -m benchmarks.cluster --write-path-files 2000   # the driver's side alone, see below

Builds the same folder twice with the same encoder: ``Retriever.index`` in this process (torch
using ``--workers`` threads, the cores the Ray run gets), and ``compsearch.cluster.index`` on a
local Ray cluster started by the run with ``--workers`` one-thread encoder actors. Reports wall
time of each (the Ray one split into embedding -- cluster start, actor start, chunk, encode, write
shards -- and the normal write path over the shards), and the agreement: chunk count, largest
vector difference, and top-5 overlap over queries made from chunk texts. On a corpus this small
the Ray run is all overhead (starting Ray and loading one encoder per actor); the number is that
fixed cost, which a corpus of hours of encoding amortises.

``--write-path-files N`` measures the part that stays on one machine: the write path over shards
(scan and hash files, chunk again with the real tokenizer, look every vector up by content hash,
store, FAISS, commit) on N files of real standard-library text, with shards of random unit
vectors under the real encoder's fingerprint (nothing is encoded, so only the driver is timed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from .common import machine_info, save, stdlib_paragraphs


def _snapshot(r):
    store, _ = r._open_read()
    chunks = store.get(store.all_ids().tolist())
    keys = {(c.source, c.start_line, c.end_line, c.text): i for i, c in chunks.items()}
    vecs = dict(zip(keys, store.vectors(list(keys.values()), r.encoder.dim)))
    return vecs


def write_path(n_files: int, model: str, tmp: Path) -> dict:
    """Seconds and chunks/s of ``Retriever.index`` over shards (see the module docstring)."""
    from compsearch import Encoder, Retriever
    from compsearch.chunking import ChunkingConfig, chunk_document
    from compsearch.documents import Candidate
    from compsearch.indexdir import encoder_entry
    from compsearch.ingest import discover, parse, read_bytes
    from compsearch.shards import ShardEncoder, shard_name, text_hashes, write_set, write_shard

    corpus = tmp / "corpus"
    corpus.mkdir()
    paras = stdlib_paragraphs(n_files * 8, seed=1)
    for i in range(n_files):
        (corpus / f"f{i:06d}.txt").write_text("\n\n".join(paras[i * 8 : i * 8 + 8]) + "\n")
    encoder = Encoder.load(model)
    chunking = ChunkingConfig()
    t = time.perf_counter()
    files = [c for c in discover([corpus]) if isinstance(c, Candidate)]
    per_file = [
        [
            ch.embed_text
            for ch in chunk_document(parse(c, read_bytes(c.path)), encoder.count_tokens, chunking)
        ]
        for c in files
    ]
    chunk_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    shards, folder = [], tmp / "shards"
    for i in range(0, len(per_file), 64):  # as the Ray workers write them: 64 files a shard
        part = sorted(set(text_hashes([t for f in per_file[i : i + 64] for t in f])))
        v = rng.standard_normal((len(part), encoder.dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        write_shard(folder / shard_name(part), part, v, encoder.fingerprint)
        shards.append({"file": shard_name(part), "count": len(part)})
    write_set(folder, encoder_entry(encoder), chunking.to_dict(), shards)
    served = ShardEncoder(encoder, folder)
    t = time.perf_counter()
    report = Retriever.open(tmp / "ix", served).index([corpus])
    seconds = time.perf_counter() - t
    return {
        "files": n_files,
        "chunks": report.chunks_total,
        "mb": round(sum(f.stat().st_size for f in corpus.iterdir()) / 1e6, 2),
        "chunk_only_s": round(chunk_s, 2),
        "write_path_s": round(seconds, 2),
        "chunks_per_s": round(report.chunks_total / seconds, 1),
        "served": served.served,
        "encoded_here": served.encoded,
        "index_type": report.index_type,
    }


@click.command()
@click.option("--corpus", default="compsearch", show_default=True, help="Folder to index.")
@click.option("--model", default="default", show_default=True)
@click.option("--workers", default=2, show_default=True)
@click.option("--queries", default=20, show_default=True)
@click.option("--write-path-files", default=0, help="Measure only the driver's write path.")
@click.option(
    "--out", "out_name", default=None, help="Results name (cluster-overhead / -writepath)."
)
def main(
    corpus: str, model: str, workers: int, queries: int, write_path_files: int, out_name: str
) -> None:
    import torch

    if write_path_files:
        torch.set_num_threads(1)
        tmp = Path(tempfile.mkdtemp(prefix="cs-cluster-bench-"))
        try:
            data = dict(write_path(write_path_files, model, tmp), machine=machine_info())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        md = (
            "# The driver's write path over vector shards\n\n"
            f"`python -m benchmarks.cluster --write-path-files {write_path_files} --model {model}`"
            f", {data['machine']['cpu']}, {data['machine']['when']}; 1 thread.\n\n"
            "| files | MB | chunks | chunking alone (s) | write path over shards (s) | chunks/s |"
            "\n| ---: | ---: | ---: | ---: | ---: | ---: |\n"
            f"| {data['files']} | {data['mb']} | {data['chunks']} | {data['chunk_only_s']} "
            f"| {data['write_path_s']} | {data['chunks_per_s']} |\n\n"
            f"Vectors from the shards {data['served']}, encoded on the driver "
            f"{data['encoded_here']}; index type {data['index_type']}.\n"
        )
        click.echo(md)
        click.echo(f"wrote {save(out_name or 'cluster-writepath', data, md)}")
        return

    from compsearch import Retriever
    from compsearch import cluster

    torch.set_num_threads(workers)
    corpus_path = Path(corpus).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="cs-cluster-bench-"))
    try:
        load = os.getloadavg()
        t = time.perf_counter()
        single = Retriever.open(tmp / "single", model)
        rep_single = single.index([corpus_path])
        single_s = time.perf_counter() - t

        t = time.perf_counter()
        rep_ray, emb = cluster.index(tmp / "ray", [corpus_path], model=model, workers=workers)
        ray_s = time.perf_counter() - t

        ray_r = Retriever.open(tmp / "ray", single.encoder)
        a, b = _snapshot(single), _snapshot(ray_r)
        same_chunks = sorted(a) == sorted(b)
        diff = max(float(np.abs(a[k] - b[k]).max()) for k in a) if same_chunks else None
        rng = np.random.default_rng(0)
        texts = [k[3][:200] for k in sorted(a)]
        picked = [texts[i] for i in rng.choice(len(texts), min(queries, len(texts)), False)]
        overlap = []
        for q in picked:
            want = {(h.source, h.span) for h in single.search(q, k=5, mode="dense")}
            got = {(h.source, h.span) for h in ray_r.search(q, k=5, mode="dense")}
            overlap.append(len(want & got) / max(1, len(want)))
        data = {
            "corpus": str(corpus),
            "model": model,
            "workers": workers,
            "files": rep_single.files_indexed,
            "chunks": rep_single.chunks_total,
            "single_s": round(single_s, 2),
            "ray_s": round(ray_s, 2),
            "ray_embed_s": round(emb.seconds, 2),
            "ray_index_s": round(rep_ray.seconds, 2),
            "overhead_s": round(ray_s - single_s, 2),
            "served_from_shards": emb.served,
            "encoded_on_driver": emb.encoded_here,
            "same_chunks": same_chunks,
            "max_abs_vector_diff": diff,
            "top5_overlap_mean": round(float(np.mean(overlap)), 3),
            "loadavg_before": [round(x, 2) for x in load],
            "machine": machine_info(),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    m = data["machine"]
    md = (
        "# Ray path overhead vs one process\n\n"
        f"`python -m benchmarks.cluster --corpus {corpus} --model {model} --workers {workers}`, "
        f"{m['cpu']}, {m['when']}; load average before the run {data['loadavg_before']}.\n\n"
        "| files | chunks | one process (s) | Ray total (s) | Ray embed (s) | Ray index (s) "
        "| overhead (s) |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        f"| {data['files']} | {data['chunks']} | {data['single_s']} | {data['ray_s']} "
        f"| {data['ray_embed_s']} | {data['ray_index_s']} | {data['overhead_s']} |\n\n"
        f"Same chunks: {same_chunks}; largest vector difference {diff}; mean top-5 overlap over "
        f"{len(picked)} queries {data['top5_overlap_mean']}; vectors served from the shards "
        f"{emb.served}, encoded on the driver {emb.encoded_here}.\n"
    )
    click.echo(md)
    click.echo(f"wrote {save(out_name or 'cluster-overhead', data, md)}")


if __name__ == "__main__":
    main()
