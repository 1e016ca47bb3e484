"""End-to-end query latency, throughput, memory and recall of each index type.

    python -m benchmarks.latency                          # 10k chunks of real text
    python -m benchmarks.latency --chunks 100000          # 100k chunks
    python -m benchmarks.latency --index-only 1000000     # 1M vectors, FAISS only (no store)

Chunks are real paragraphs of the Python standard library, stored through the normal Retriever
path (SQLite store + FAISS). Encoding 10k chunks with SmolLM2-135M takes about an hour on a 2-core
CPU, so only ``--encoded`` chunks are embedded by the model; the rest get *synthetic* vectors:
normalised mixtures of two real embeddings plus noise (text-like geometry, so IVF clusters are
realistic). Search and fetch time depend on the number and dimension of vectors, not on where they
came from; the report states how many were synthetic. Recall is recall@k of each index against
exact search on the same vectors. The reference pipeline users know — all-MiniLM-L6-v2 + FAISS
flat — embeds *every* chunk for real (``--minilm``).
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from compsearch.indexspec import KINDS

from .common import RESULTS, machine_info, save, stdlib_paragraphs

DEFAULT_TYPES = ",".join(KINDS)
# the search-time knob swept for each approximate kind: nprobe for IVF, efSearch for HNSW
SWEEPS = {
    kind: ("nprobe", [1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
    if kind.startswith("ivf")
    else ("ef_search", [16, 32, 64, 128, 256, 512])
    for kind in KINDS
    if kind != "flat"
}
TIE_EPS = (
    1e-3  # cosine: a neighbour this close to the exact k-th score counts as found (index-only)
)


def _ms(xs, p):
    return float(np.percentile(np.asarray(xs) * 1000, p))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_like(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(real), n), rng.integers(0, len(real), n)
    v = real[i] + 0.5 * real[j] + 0.05 * rng.standard_normal((n, real.shape[1])).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _timed_search(index, qv, k):
    times, found = [], []
    for v in qv:
        t = time.perf_counter()
        _, ids = index.search(v[None], k)
        times.append(time.perf_counter() - t)
        found.append(ids[0])
    return times, found


def _recall(found, truth, k):
    return float(np.mean([len(set(a[a >= 0]) & set(b)) / k for a, b in zip(found, truth)]))


def _recall_ties(found, qv, vecs, kth, k, eps=TIE_EPS):
    """Recall that forgives ties: a result counts if its exact score is within ``eps`` of the exact
    k-th score (ann-benchmarks' epsilon recall, for inner products). Where many vectors score
    almost the same, strict recall also counts which of near-equal neighbours came back; this one
    only whether the search found the neighbourhood."""
    hits = []
    for ids, q, t in zip(found, qv, kth):
        ids = ids[ids >= 0]
        hits.append(min(k, int(np.sum(vecs[ids] @ q >= t - eps))) / k)
    return float(np.mean(hits))


def _sweep(index, qv, k, truth, kind, ties=None):
    """Recall–latency points over the type's search parameter (``ties``: found -> tie-tolerant recall)."""
    param, values = SWEEPS[kind]
    points = []
    original = getattr(index.spec, param)
    for value in values:
        if param == "nprobe" and value > index.spec.nlist:
            break
        setattr(index.spec, param, value)
        times, found = _timed_search(index, qv, k)
        points.append(
            {
                param: value,
                "recall": _recall(found, truth, k),
                "search_ms_p50": _ms(times, 50),
                "search_ms_p95": _ms(times, 95),
            }
        )
        if ties is not None:
            points[-1]["recall_ties"] = ties(found)
    setattr(index.spec, param, original)
    return points


def _plot(rows: dict, title: str, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, row in rows.items():
        pts = row.get("sweep")
        if pts:
            ax.plot([p["search_ms_p50"] for p in pts], [p["recall"] for p in pts], "o-", label=kind)
        elif "search_ms_p50" in row:
            ax.plot([row["search_ms_p50"]], [row["recall_at_k_vs_exact"]], "s", label=kind)
    ax.set_xscale("log")
    ax.set_xlabel("search latency p50 (ms, one query)")
    ax.set_ylabel("recall@10 vs exact")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_index_only(n: int, queries: int, k: int, types: list[str], encoded: int, model, stem=None) -> None:
    from compsearch import Encoder
    from compsearch.index import build_index, choose_spec

    enc = Encoder.load(model)
    texts = stdlib_paragraphs(encoded + queries, seed=2)
    real = enc.encode(texts[:encoded], batch_size=16, show_progress=True)
    qv = enc.encode([t.splitlines()[0][:120] for t in texts[encoded:]], kind="query")
    vecs = synthetic_like(real, n, seed=3)
    truth = None
    exact = np.stack([vecs @ q for q in qv])  # exact scores: the k-th best and how crowded it is
    top = -np.sort(-np.partition(exact, -100, axis=1)[:, -100:], axis=1)
    kth = top[:, k - 1]
    crowd = {
        "score_at_1": float(np.median(top[:, 0])),
        f"score_at_{k}": float(np.median(kth)),
        "score_at_100": float(np.median(top[:, 99])),
        "within_eps_of_kth": float(np.median(np.sum(exact >= kth[:, None] - TIE_EPS, axis=1))),
    }
    del exact

    def ties(found):
        return _recall_ties(found, qv, vecs, kth, k)

    rows = {}
    for kind in ["flat"] + [t for t in types if t != "flat"]:
        spec = choose_spec(n, enc.dim, kind)
        print(f"{kind}: building {spec.factory(enc.dim)} over {n:,} vectors ...", flush=True)
        t = time.perf_counter()
        index = build_index(spec, enc.dim, n, lambda: iter([(np.arange(n, dtype=np.int64), vecs)]))
        build = time.perf_counter() - t
        times, found = _timed_search(index, qv, k)
        if truth is None:
            truth = found
        t = time.perf_counter()
        index.search(qv, k)
        batched = len(qv) / (time.perf_counter() - t)
        row = {
            "factory": spec.factory(enc.dim),
            "build_s": build,
            "bytes_per_vector": _index_bytes(index) / n,
            "recall_at_k_vs_exact": _recall(found, truth, k),
            "recall_at_k_ties": ties(found),
            "search_ms_p50": _ms(times, 50),
            "search_ms_p95": _ms(times, 95),
            "search_ms_p99": _ms(times, 99),
            "search_qps_batched": batched,
        }
        if kind in SWEEPS:
            row["sweep"] = _sweep(index, qv, k, truth, kind, ties)
        rows[kind] = row
        print(
            f"{kind}: built in {build:.0f}s, recall@{k} {row['recall_at_k_vs_exact']:.3f} "
            f"({row['recall_at_k_ties']:.3f} with ties), "
            f"search p50 {row['search_ms_p50']:.2f} ms",
            flush=True,
        )
        del index
    data = {
        "machine": machine_info(),
        "vectors": n,
        "dim": enc.dim,
        "real_embeddings": encoded,
        "queries": queries,
        "k": k,
        "peak_rss_mb": _peak_rss_mb(),
        "crowding": crowd,
        "tie_eps": TIE_EPS,
        "types": rows,
    }
    m = data["machine"]
    md = [
        f"# FAISS index only: {n:,} vectors\n",
        f"`python -m benchmarks.latency --index-only {n} --encoded {encoded} --queries {queries}"
        f"{' --stem ' + stem if stem else ''}` on "
        f"{m['cpu']} ({m['cores']} cores, {m.get('faiss_threads', '?')} FAISS threads), {m['when']}. "
        f"Vectors: mixtures of {encoded} real embeddings (synthetic, see module docstring). Peak RSS {data['peak_rss_mb']:,.0f} MB. Latency: one query per "
        f"call; 'batched' is one call with all {queries} queries.\n",
        f"How crowded the neighbourhoods are (median over queries): exact score of the 1st / {k}th / "
        f"100th neighbour {crowd['score_at_1']:.3f} / {crowd[f'score_at_{k}']:.3f} / "
        f"{crowd['score_at_100']:.3f}; {crowd['within_eps_of_kth']:.0f} vectors score within "
        f"{TIE_EPS:g} of the {k}th. 'with ties' counts a result whose exact score is within {TIE_EPS:g} "
        f"of the exact {k}th score as found.\n",
        f"| index | recall@{k} | recall@{k} with ties | search p50 / p95 / p99 (ms) | batched q/s "
        "| bytes/vector | build (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, r in rows.items():
        md.append(
            f"| {r['factory']} | {r['recall_at_k_vs_exact']:.3f} | {r['recall_at_k_ties']:.3f} | "
            f"{r['search_ms_p50']:.2f} / "
            f"{r['search_ms_p95']:.2f} / {r['search_ms_p99']:.2f} | {r['search_qps_batched']:,.0f}"
            f" | {r['bytes_per_vector']:.0f} | {r['build_s']:.1f} |"
        )
    md += _sweep_tables(rows)
    png = _plot(rows, f"{n:,} vectors, dim {enc.dim}", RESULTS / f"{stem or f'index-only-{n}'}.png")
    if png:
        md.append(f"\n![recall vs latency]({png.name})\n")
    md = "\n".join(md) + "\n"
    print(md)
    print(f"written to {save(stem or f'index-only-{n}', data, md)}")


def _index_bytes(index) -> int:
    import faiss

    return len(faiss.serialize_index(index.index))


def _sweep_tables(rows) -> list[str]:
    out = []
    for kind, r in rows.items():
        if r.get("sweep"):
            param = SWEEPS[kind][0]
            ties = "recall_ties" in r["sweep"][0]
            out += [
                f"\n{kind}: recall–latency over {param}\n",
                f"| {param} | recall@10 |{' with ties |' if ties else ''} p50 ms | p95 ms |",
                f"| ---: | ---: |{' ---: |' if ties else ''} ---: | ---: |",
            ]
            out += [
                f"| {p[param]} | {p['recall']:.3f} |{(' %.3f |' % p['recall_ties']) if ties else ''}"
                f" {p['search_ms_p50']:.2f} | "
                f"{p['search_ms_p95']:.2f} |"
                for p in r["sweep"]
            ]
    return out


def minilm_reference(docs, qtexts, k, store_ids_fetch) -> dict:
    """all-MiniLM-L6-v2 + FAISS IndexFlatIP over the same chunks, every chunk embedded for real."""
    import faiss

    from .mteb_suite.models import SentenceTransformerEncoder, minilm_path

    enc = SentenceTransformerEncoder(minilm_path(), name="all-MiniLM-L6-v2")
    t = time.perf_counter()
    vecs = np.asarray(enc.encode(docs, kind="document", batch_size=64), dtype=np.float32)
    encode_s = time.perf_counter() - t
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    enc_t, search_t, fetch_t = [], [], []
    for q in qtexts:
        t0 = time.perf_counter()
        v = np.asarray(enc.encode([q], kind="query"), dtype=np.float32)
        t1 = time.perf_counter()
        _, ids = index.search(v, k)
        t2 = time.perf_counter()
        store_ids_fetch(ids[0])
        t3 = time.perf_counter()
        enc_t.append(t1 - t0), search_t.append(t2 - t1), fetch_t.append(t3 - t2)
    total = [a + b + c for a, b, c in zip(enc_t, search_t, fetch_t)]
    return {
        "document_chunks_per_s": len(docs) / encode_s,
        "dim": int(vecs.shape[1]),
        "query_encode_ms_p50": _ms(enc_t, 50),
        "search_ms_p50": _ms(search_t, 50),
        "fetch_ms_p50": _ms(fetch_t, 50),
        "total_ms_p50": _ms(total, 50),
        "total_ms_p95": _ms(total, 95),
        "bytes_per_vector": vecs.shape[1] * 4,
    }


@click.command()
@click.option("--chunks", default=10_000, show_default=True)
@click.option("--encoded", default=500, show_default=True, help="Chunks embedded by the model.")
@click.option("--queries", default=100, show_default=True)
@click.option("-k", "k", default=10, show_default=True)
@click.option("--types", default=DEFAULT_TYPES, show_default=True)
@click.option("--index-only", type=int, default=None, help="FAISS-only run with this many vectors.")
@click.option(
    "--minilm/--no-minilm",
    default=True,
    show_default=True,
    help="Also measure all-MiniLM-L6-v2 + FAISS flat (needs the bench extra).",
)
@click.option("--model", default=None)
@click.option("--stem", default=None,
              help="Report name under benchmarks/results/ (default latency-<chunks> or index-only-<n>).")
def main(chunks, encoded, queries, k, types, index_only, minilm, model, stem):
    if index_only:
        return run_index_only(index_only, queries, k, types.split(","), encoded, model, stem)
    from compsearch import Encoder, Retriever
    from compsearch.indexdir import index_path, read_manifest, store_path
    from compsearch.maintenance import rebuild

    texts = stdlib_paragraphs(chunks + queries, seed=1)
    docs, qtexts = texts[:chunks], [t.splitlines()[0][:120] for t in texts[chunks:]]
    enc = Encoder.load(model)
    encoded = min(encoded, chunks)
    t = time.perf_counter()
    real = enc.encode(docs[:encoded], batch_size=16, show_progress=True)
    doc_rate = encoded / (time.perf_counter() - t)
    vecs = np.concatenate([real, synthetic_like(real, chunks - encoded)])

    root = Path(tempfile.mkdtemp(prefix="cs-latency-"))
    rows, ref = {}, None
    try:
        r = Retriever.open(root / "ix", enc)
        t = time.perf_counter()
        r.add(docs, [{"n": i} for i in range(chunks)], vectors=vecs)
        store_build = time.perf_counter() - t
        enc_t = []
        qv = []
        for q in qtexts:
            t = time.perf_counter()
            qv.append(enc.encode([q], kind="query")[0])
            enc_t.append(time.perf_counter() - t)
        qv = np.stack(qv)
        truth = None
        for kind in ["flat"] + [t for t in types.split(",") if t != "flat"]:
            t = time.perf_counter()
            rebuild(root / "ix", kind)
            build = time.perf_counter() - t
            r = Retriever.open(root / "ix", enc)
            store, index = r._open_read()
            search_t, found = _timed_search(index, qv, k)
            fetch_t = []
            for ids in found:
                t = time.perf_counter()
                store.get([int(i) for i in ids if i >= 0])
                fetch_t.append(time.perf_counter() - t)
            if truth is None:
                truth = found
            t = time.perf_counter()
            index.search(qv, k)
            batched = len(qv) / (time.perf_counter() - t)
            total = [a + b + c for a, b, c in zip(enc_t, search_t, fetch_t)]
            m = read_manifest(root / "ix")
            faiss_file, store_file = index_path(root / "ix", m), store_path(root / "ix", m)
            rows[kind] = {
                "factory": index.spec.factory(enc.dim),
                "build_s": build,
                "recall_at_k_vs_exact": _recall(found, truth, k),
                "bytes_per_vector": faiss_file.stat().st_size / chunks,
                "store_bytes_per_chunk": store_file.stat().st_size / chunks,
                **{f"search_ms_p{p}": _ms(search_t, p) for p in (50, 95, 99)},
                **{f"fetch_ms_p{p}": _ms(fetch_t, p) for p in (50, 95, 99)},
                **{f"total_ms_p{p}": _ms(total, p) for p in (50, 95, 99)},
                "qps_single": len(total) / sum(total),
                "search_qps_batched": batched,
            }
            if kind in SWEEPS:
                rows[kind]["sweep"] = _sweep(index, qv, k, truth, kind)
            if minilm and ref is None:
                ref = minilm_reference(
                    docs, qtexts, k, lambda ids: store.get([int(i) for i in ids])
                )
            r.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    data = {
        "machine": machine_info(),
        "encoder": enc.name,
        "dtype": str(enc.dtype),
        "chunks": chunks,
        "encoded_by_model": encoded,
        "synthetic_vectors": chunks - encoded,
        "queries": queries,
        "k": k,
        "document_chunks_per_s": doc_rate,
        "store_and_flat_build_s": store_build,
        **{f"query_encode_ms_p{p}": _ms(enc_t, p) for p in (50, 95, 99)},
        "peak_rss_mb": _peak_rss_mb(),
        "types": rows,
        "minilm_flat_reference": ref,
    }
    m = data["machine"]
    md = [
        f"# Query latency on a {chunks:,}-chunk index\n",
        f"`python -m benchmarks.latency --chunks {chunks} --encoded {encoded} --queries {queries}"
        f"{'' if minilm else ' --no-minilm'}{'' if types == DEFAULT_TYPES else ' --types ' + types}"
        f"{' --stem ' + stem if stem else ''}` "
        f"on {m['cpu']} ({m['cores']} cores), {m['when']}. {encoded:,} chunks embedded by "
        f"{enc.name} ({doc_rate:.1f} chunks/s), {chunks - encoded:,} synthetic vectors (see module "
        f"docstring). Peak RSS {data['peak_rss_mb']:,.0f} MB.\n",
        f"Query encoding (one query, {data['dtype'].replace('torch.', '')}): p50 "
        f"{data['query_encode_ms_p50']:.0f} ms, p95 {data['query_encode_ms_p95']:.0f} ms, p99 "
        f"{data['query_encode_ms_p99']:.0f} ms.\n",
        "| index | recall@10 vs exact | search p50 / p95 / p99 (ms) | fetch p50 / p95 (ms) | "
        "end to end p50 / p95 (ms) | q/s single | search q/s batched | bytes/vector | build (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, row in rows.items():
        md.append(
            f"| {kind} | {row['recall_at_k_vs_exact']:.3f} | {row['search_ms_p50']:.2f} / "
            f"{row['search_ms_p95']:.2f} / {row['search_ms_p99']:.2f} | {row['fetch_ms_p50']:.2f} / "
            f"{row['fetch_ms_p95']:.2f} | {row['total_ms_p50']:.0f} / {row['total_ms_p95']:.0f} | "
            f"{row['qps_single']:.1f} | {row['search_qps_batched']:,.0f} | "
            f"{row['bytes_per_vector']:.0f} | {row['build_s']:.2f} |"
        )
    if ref:
        md.append(
            f"\nReference: all-MiniLM-L6-v2 + FAISS flat on the same {chunks:,} chunks (all "
            f"embedded): {ref['document_chunks_per_s']:.0f} chunks/s to index; query encode p50 "
            f"{ref['query_encode_ms_p50']:.1f} ms, search p50 {ref['search_ms_p50']:.2f} ms, "
            f"end to end p50 {ref['total_ms_p50']:.1f} ms / p95 {ref['total_ms_p95']:.1f} ms; "
            f"{ref['bytes_per_vector']} bytes/vector."
        )
    md += _sweep_tables(rows)
    png = _plot(rows, f"{chunks:,} chunks, dim {enc.dim}", RESULTS / f"{stem or f'latency-{chunks}'}.png")
    if png:
        md.append(f"\n![recall vs latency]({png.name})\n")
    md = "\n".join(md) + "\n"
    print(md)
    print(f"written to {save(stem or f'latency-{chunks}', data, md)}")


if __name__ == "__main__":
    main()
