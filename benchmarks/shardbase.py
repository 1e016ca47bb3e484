"""The FAISS base of an index folder built from vector shards vs. by the single-process write path.

    python -m benchmarks.shardbase                       # 100,000 vectors, 128-d, 8 shards
    python -m benchmarks.shardbase --n 20000 --threads 2

One chunk store of ``--n`` synthetic unit vectors (clustered, so IVF has structure to find) and a
shard set holding the same vectors by content hash, every one marked as served (what a Ray run's
write leaves). Then, in the same write transaction, three ways to build the IVF base of ``auto``'s
parameters for that size: ``index.build_index`` (what a plain write does: train on the seeded
sample, add every stored vector in id order, one process), ``shardindex.build_base`` in RAM
(train on the same sample, each shard added to its own copy of the trained index on
``--threads`` threads, merged in shard order) and ``build_base`` with on-disk lists (blocks
written and merged into one ``.ivfdata`` file). Reports seconds and the growth of the process's
peak RSS for each (a later build shows only what it adds above the earlier peaks), the lists'
size, and whether the three return the same top-10 for 200 queries.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from .common import save


def _vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, dim)).astype(np.float32)
    v = centres[rng.integers(0, 64, n)] + 0.7 * rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(n: int, dim: int, shards: int, threads: int, tmp: Path) -> dict:
    from compsearch.index import choose_spec, build_index
    from compsearch.shardindex import build_base
    from compsearch.shards import ShardSet, text_hashes, write_set, write_shard
    from compsearch.store import ChunkRecord, Store

    vectors = _vectors(n, dim)
    texts = [f"chunk {i}" for i in range(n)]
    hashes = text_hashes(texts)
    store = Store(tmp / "chunks.sqlite")
    store.begin_write()
    records = [ChunkRecord(text=t, source="s", content_hash=h) for t, h in zip(texts, hashes)]
    for s in range(0, n, 10_000):
        store.add(records[s : s + 10_000], vectors[s : s + 10_000])
    folder, listed = tmp / "shards", []
    for k, part in enumerate(np.array_split(np.arange(n), shards)):
        write_shard(
            folder / f"s{k}.safetensors", [hashes[i] for i in part], vectors[part], "f" * 64
        )
        listed.append({"file": f"s{k}.safetensors", "count": len(part)})
    write_set(folder, {"fingerprint": "f" * 64, "name": "bench", "dim": dim}, None, listed)
    shard_set = ShardSet(folder)
    shard_set.lookup(hashes)  # every vector served, as after a Ray run's write
    spec = choose_spec(n, dim, "ivf")
    queries = _vectors(200, dim, seed=9)
    out: dict = {"n": n, "dim": dim, "shards": shards, "threads": threads, "spec": spec.to_dict()}
    results = {}
    for name, build in (
        ("single_process", lambda: build_index(spec, dim, n, lambda: store.iter_vectors(dim))),
        ("shards_ram", lambda: build_base(store, spec, dim, shards=shard_set, threads=threads)),
        (
            "shards_ondisk",
            lambda: build_base(
                store, spec, dim, shards=shard_set, threads=threads, ondisk_root=tmp
            ),
        ),  # fmt: skip
    ):
        before, t = _rss_mb(), time.perf_counter()
        index = build()
        seconds = time.perf_counter() - t
        results[name] = index.search(queries, 10)[1]
        out[name] = {"seconds": round(seconds, 2), "peak_rss_growth_mb": round(_rss_mb() - before)}
        if index.lists is not None:
            out[name]["ivfdata_mb"] = round(index.lists.stat().st_size / 1e6, 1)
        del index
    base = results["single_process"]
    for name in ("shards_ram", "shards_ondisk"):
        out[name]["same_top10_as_single"] = float(np.mean(np.all(results[name] == base, axis=1)))
    store.rollback()
    store.close()
    return out


@click.command()
@click.option("--n", default=100_000, show_default=True)
@click.option("--dim", default=128, show_default=True)
@click.option("--shards", default=8, show_default=True)
@click.option("--threads", default=2, show_default=True)
@click.option("--out", "out_name", default="shardbase", show_default=True)
def main(n: int, dim: int, shards: int, threads: int, out_name: str) -> None:
    import platform

    with tempfile.TemporaryDirectory() as tmp:
        data = run(n, dim, shards, threads, Path(tmp))
    data["machine"] = {"platform": platform.platform(), "when": time.strftime("%Y-%m-%dT%H:%MZ")}
    rows = [
        f"| {k} | {data[k]['seconds']} | {data[k]['peak_rss_growth_mb']} | "
        f"{data[k].get('same_top10_as_single', 1.0)} |"
        for k in ("single_process", "shards_ram", "shards_ondisk")
    ]
    md = (
        f"# IVF base from shards vs single process ({n:,} x {dim}-d, {shards} shards, "
        f"{threads} threads, {data['spec']['nlist']} lists)\n\n"
        "| build | seconds | growth of the process peak RSS (MB) | queries with the same top-10 |\n"
        "| --- | ---: | ---: | ---: |\n" + "\n".join(rows) + "\n\n"
        f"`python -m benchmarks.shardbase --n {n} --dim {dim} --shards {shards} "
        f"--threads {threads}`; {data['machine']}\n"
    )
    print(md)
    save(out_name, data, md)


if __name__ == "__main__":
    main()
