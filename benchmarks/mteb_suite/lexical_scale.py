"""How the FTS5 lexical index scales: build a store of ~N chunks from the suite's task corpora
(repeated, each copy tagged) and time ``Store.lexical_search`` for real queries, unfiltered and
filtered.

    python -m benchmarks.mteb_suite.lexical_scale --chunks 100000

Needs the retrieval tasks built (``python -m benchmarks.mteb_suite build``); no encoder (vectors
are zeros: only the lexical path is timed). Prints one line per filter.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from . import builders as B
from . import sources as S
from .search_modes import RETRIEVAL_TASKS


def main(argv: list[str] | None = None) -> int:
    from compsearch.store import ChunkRecord, Store

    p = argparse.ArgumentParser(prog="python -m benchmarks.mteb_suite.lexical_scale")
    p.add_argument("--chunks", type=int, default=100_000)
    p.add_argument("--queries-per-task", type=int, default=40)
    a = p.parse_args(argv)
    texts, queries = [], []
    for name in RETRIEVAL_TASKS:
        _, files, _ = B.read_task(S.cache_dir() / "tasks" / name)
        texts += [c["text"] for c in files["corpus"]]
        queries += [q["text"] for q in files["queries"][: a.queries_per_task]]
    with tempfile.TemporaryDirectory() as work:
        s = Store(Path(work) / "s.sqlite")
        t = time.perf_counter()
        copies = a.chunks // len(texts) + 1
        for r in range(copies):
            s.add(
                [
                    ChunkRecord(text=f"{x} r{r}", source=f"/d/{r}", metadata={"copy": r})
                    for x in texts
                ],
                np.zeros((len(texts), 4), np.float32),
            )
        s.commit()
        print(
            f"{s.count()} chunks, {copies} copies of {len(texts)} texts; insert "
            f"{time.perf_counter() - t:.1f} s; file {(Path(work) / 's.sqlite').stat().st_size / 1e6:.0f} MB"
        )
        for where in [None, {"source": "/d/1"}, {"copy": {"$gte": copies // 2}}]:
            lat = []
            for q in queries:
                t = time.perf_counter()
                s.lexical_search(q, 100, where)
                lat.append(time.perf_counter() - t)
            print(
                f"top-100, where={where}: {len(lat)} queries, p50 "
                f"{1000 * np.percentile(lat, 50):.1f} ms, p95 {1000 * np.percentile(lat, 95):.1f} ms"
            )
        s.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
