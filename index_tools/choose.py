"""Choosing an index type by corpus size, and building one from stored vectors.

Rule of thumb (vectors of a few hundred dimensions, normalised, inner product):

| vectors         | type      | why                                                            |
| --------------- | --------- | -------------------------------------------------------------- |
| < 50,000        | flat      | exact; a full scan of 50k x 576 floats takes a few ms          |
| < 1,000,000     | ivf       | IVF with nlist ~ 4 sqrt(n), full vectors: recall stays high    |
| < 10,000,000    | ivf-sq8   | 4x less memory than flat, small recall loss                    |
| more            | ivf-pq    | ~8 dims per byte; re-score the top with stored vectors         |

HNSW is available by flag (``hnsw``): the fastest queries at recall 1.0 up to 100k vectors in
``benchmarks/``, but it cannot remove vectors (updates rebuild it), uses more memory than IVF and
builds slowest; at 1M (synthetic) vectors it needed efSearch 512 for recall .88, where IVF-SQ8
reached .87 at nprobe 32 in less time. ``benchmarks/`` measures recall and latency of each choice.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator

import numpy as np

from compsearch.index import IndexSpec, VectorIndex

FLAT_MAX = 50_000
IVF_MAX = 1_000_000
SQ8_MAX = 10_000_000
TRAIN_POINTS_PER_LIST = 64    # FAISS warns under 39 per centroid; 64 is a comfortable sample
TRAIN_SAMPLE_MAX = 262_144


def choose_spec(n: int, dim: int, kind: str = "auto") -> IndexSpec:
    """The index spec for ``n`` vectors: by size when ``kind == "auto"``, else the named type."""
    if kind == "auto":
        kind = ("flat" if n < FLAT_MAX else "ivf" if n < IVF_MAX
                else "ivf-sq8" if n < SQ8_MAX else "ivf-pq")
    if not kind.startswith("ivf"):
        return IndexSpec(kind=kind)
    nlist = nlist_for(n)
    return IndexSpec(kind=kind, nlist=nlist, nprobe=max(1, min(nlist, nprobe_for(nlist))))


def nlist_for(n: int) -> int:
    """About 4 sqrt(n) clusters, and never so many that a cluster gets under ~39 training points."""
    return max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39 or 1))


def nprobe_for(nlist: int) -> int:
    """Visit ~6% of the lists (at least 8): recall@10 above ~0.95 on text embeddings."""
    return max(8, nlist // 16)


def sample_size(spec: IndexSpec, n: int) -> int:
    if not spec.needs_training:
        return 0
    want = max(spec.nlist * TRAIN_POINTS_PER_LIST, 256 * 39 if spec.kind == "ivf-pq" else 0)
    return min(n, want, TRAIN_SAMPLE_MAX)


def build_index(spec: IndexSpec, dim: int, n: int,
                batches: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
                seed: int = 0, on_progress: Callable[[int], None] | None = None) -> VectorIndex:
    """Build an index over ``n`` vectors streamed by ``batches()`` (called twice when training).

    Training uses a uniform random sample (fixed seed) so the result is reproducible. With fewer
    vectors than IVF lists there is nothing to train on, and the index is exact (flat) instead.
    """
    if spec.needs_training and n < spec.nlist:
        spec = IndexSpec(kind="flat")
    index = VectorIndex.empty(spec, dim)
    if spec.needs_training:
        index.train(_sample(batches(), n, sample_size(spec, n), dim, seed))
    for ids, vecs in batches():
        index.add(ids, vecs)
        if on_progress:
            on_progress(len(ids))
    return index


def _sample(batches: Iterator[tuple[np.ndarray, np.ndarray]], n: int, size: int, dim: int,
            seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(n, size=size, replace=False)) if size < n else np.arange(n)
    out, seen = [], 0
    for _, vecs in batches:
        lo, hi = np.searchsorted(keep, [seen, seen + len(vecs)])
        out.append(vecs[keep[lo:hi] - seen])
        seen += len(vecs)
    return np.concatenate(out) if out else np.zeros((0, dim), np.float32)
