"""Query latency and recall on a 10k-chunk index: encode / search / fetch, per index type.

    python -m benchmarks.latency                       # 10,000 chunks, 1,000 of them encoded
    python -m benchmarks.latency --encoded 10000       # encode every chunk (slow on a CPU)

Chunks are real paragraphs of the Python standard library. Encoding 10k chunks with SmolLM2-135M
takes about an hour on a 2-core CPU, so by default only ``--encoded`` of them are embedded by the
model and the rest get *synthetic* vectors: normalised mixtures of two real embeddings plus noise
(text-like geometry, so IVF clusters are realistic). Search and fetch time depend on the number and
dimension of vectors, not on where they came from; the report says how many were synthetic.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from .common import machine_info, save, stdlib_paragraphs


def _pct(xs, p):
    return float(np.percentile(np.asarray(xs) * 1000, p))


def synthetic_like(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(real), n), rng.integers(0, len(real), n)
    v = real[i] + 0.5 * real[j] + 0.05 * rng.standard_normal((n, real.shape[1])).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@click.command()
@click.option("--chunks", default=10_000, show_default=True)
@click.option("--encoded", default=1_000, show_default=True, help="Chunks embedded by the model.")
@click.option("--queries", default=100, show_default=True)
@click.option("-k", "k", default=10, show_default=True)
@click.option("--types", default="flat,ivf,ivf-sq8,hnsw", show_default=True)
@click.option("--model", default=None)
def main(chunks, encoded, queries, k, types, model):
    from compsearch import Encoder, Retriever
    from index_tools.maintain import rebuild

    texts = stdlib_paragraphs(chunks + queries, seed=1)
    docs, qtexts = texts[:chunks], [t.splitlines()[0][:120] for t in texts[chunks:]]
    enc = Encoder.load(model)
    encoded = min(encoded, chunks)
    t = time.perf_counter()
    real = enc.encode(docs[:encoded], batch_size=16, show_progress=True)
    t_encode = time.perf_counter() - t
    vecs = np.concatenate([real, synthetic_like(real, chunks - encoded)])

    root = Path(tempfile.mkdtemp(prefix="cs-latency-"))
    rows = {}
    try:
        r = Retriever.open(root / "ix", enc)
        t = time.perf_counter()
        r.add(docs, [{"n": i} for i in range(chunks)], vectors=vecs)
        t_build_flat = time.perf_counter() - t
        qv_all, enc_times = [], []
        for q in qtexts:
            t = time.perf_counter()
            qv_all.append(enc.encode([q], kind="query")[0])
            enc_times.append(time.perf_counter() - t)
        qv = np.stack(qv_all)
        truth = None
        for kind in types.split(","):
            t = time.perf_counter()
            rebuild(root / "ix", kind)
            build = time.perf_counter() - t if kind != "flat" else t_build_flat
            r = Retriever.open(root / "ix", enc)
            store, index = r._open_read()
            search_t, fetch_t, found = [], [], []
            for v in qv:
                t = time.perf_counter()
                _, ids = index.search(v[None], k)
                search_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                store.get([int(i) for i in ids[0] if i >= 0])
                fetch_t.append(time.perf_counter() - t)
                found.append(ids[0])
            t = time.perf_counter()
            index.search(qv, k)
            batched_qps = len(qv) / (time.perf_counter() - t)
            if truth is None:
                truth = found  # flat comes first: exact
            recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth)]))
            gdir = next(p for p in (root / "ix").iterdir() if p.name.startswith("g"))
            rows[kind] = {"build_s": build, "recall_at_k_vs_exact": recall,
                          "bytes_per_vector": (gdir / "vectors.faiss").stat().st_size / chunks,
                          "search_ms_p50": _pct(search_t, 50), "search_ms_p95": _pct(search_t, 95),
                          "fetch_ms_p50": _pct(fetch_t, 50), "fetch_ms_p95": _pct(fetch_t, 95),
                          "search_qps_batched": batched_qps,
                          "factory": index.spec.factory(enc.dim)}
            r.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    data = {"machine": machine_info(), "encoder": enc.name, "dtype": str(enc.dtype), "chunks": chunks,
            "encoded_by_model": encoded, "synthetic_vectors": chunks - encoded, "queries": queries,
            "k": k, "document_encode_s": t_encode,
            "query_encode_ms_p50": _pct(enc_times, 50), "query_encode_ms_p95": _pct(enc_times, 95),
            "types": rows}
    m = data["machine"]
    md = [f"# Query latency on a {chunks:,}-chunk index\n",
          f"`python -m benchmarks.latency --chunks {chunks} --encoded {encoded} --queries {queries}` "
          f"on {m['cpu']} ({m['cores']} cores), {m['when']}. {encoded:,} chunks embedded by "
          f"{enc.name}, {chunks - encoded:,} synthetic vectors (see module docstring).\n",
          f"Query encoding (one query, {data['dtype'].replace('torch.', '')}): "
          f"p50 {data['query_encode_ms_p50']:.1f} ms, p95 {data['query_encode_ms_p95']:.1f} ms.\n",
          "| index | recall@10 vs exact | search p50 / p95 (ms) | fetch p50 / p95 (ms) | "
          "batched search (q/s) | bytes/vector | build (s) |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for kind, row in rows.items():
        md.append(f"| {kind} | {row['recall_at_k_vs_exact']:.3f} | {row['search_ms_p50']:.2f} / "
                  f"{row['search_ms_p95']:.2f} | {row['fetch_ms_p50']:.2f} / {row['fetch_ms_p95']:.2f}"
                  f" | {row['search_qps_batched']:,.0f} | {row['bytes_per_vector']:.0f} | {row['build_s']:.2f} |")
    md = "\n".join(md) + "\n"
    print(md)
    print(f"written to {save('latency', data, md)}")


if __name__ == "__main__":
    main()
