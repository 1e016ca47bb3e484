"""The vector index: FAISS inner-product search over L2-normalised vectors with stable int64 ids.

``IndexSpec`` (in ``indexspec``, with ``KINDS``, the one list of index types) names an index type
and its parameters and maps to a FAISS factory string; it is stored in the manifest. Which type
suits a corpus size, and training one on a sample, is decided here too (``choose_spec``,
``build_index``), beside the index it sizes, so the write path needs nothing outside the library.
GPU FAISS is used for search when the installed
``faiss`` sees a GPU; indexes are always saved in their CPU form.

Rule of thumb for ``auto`` (vectors of a few hundred dimensions, normalised, inner product):

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
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .errors import CompsearchError
from .fsutil import usual_modes
from .indexspec import AUTO, KINDS, REQUESTABLE, IndexSpec  # noqa: F401  (re-exported)

FLAT_MAX = 50_000
IVF_MAX = 1_000_000
SQ8_MAX = 10_000_000
TRAIN_POINTS_PER_LIST = 64  # FAISS warns under 39 per centroid; 64 is a comfortable sample
TRAIN_SAMPLE_MAX = 262_144


def import_faiss():
    try:
        import faiss
    except ImportError:
        raise CompsearchError(
            "faiss is not installed: pip install 'compsearch[cpu]' "
            "(or 'compsearch[gpu]' on a CUDA machine)"
        ) from None
    return faiss


class VectorIndex:
    """A FAISS index plus the spec that made it."""

    def __init__(self, index, spec: IndexSpec, dim: int):
        self.index = index
        self.spec = spec
        self.dim = dim
        self._gpu = None

    @classmethod
    def empty(cls, spec: IndexSpec, dim: int) -> "VectorIndex":
        faiss = import_faiss()
        index = faiss.index_factory(dim, spec.factory(dim), faiss.METRIC_INNER_PRODUCT)
        if spec.kind == "hnsw":
            faiss.downcast_index(index.index).hnsw.efConstruction = spec.ef_construction
        return cls(index, spec, dim)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def train(self, sample: np.ndarray) -> None:
        if not self.is_trained:
            self.index.train(np.ascontiguousarray(sample, dtype=np.float32))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        if not self.is_trained:
            raise CompsearchError("the index must be trained before vectors are added")
        self.index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32),
            np.ascontiguousarray(ids, dtype=np.int64),
        )
        self._gpu = None

    @property
    def supports_remove(self) -> bool:
        return self.spec.kind != "hnsw"

    def remove(self, ids) -> int:
        if len(ids) == 0:
            return 0
        if not self.supports_remove:
            raise CompsearchError("HNSW indexes cannot remove vectors; rebuild instead")
        self._gpu = None
        return int(self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; ids are -1 where fewer than k vectors qualify."""
        faiss = import_faiss()
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, max(self.ntotal, 1)))
        kwargs = {}
        if allowed is not None or self.spec.kind != "flat":
            sel = (
                faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
                if allowed is not None
                else None
            )
            if self.spec.kind.startswith("ivf"):
                params = faiss.SearchParametersIVF(nprobe=self.spec.nprobe)
            elif self.spec.kind == "hnsw":
                params = faiss.SearchParametersHNSW(efSearch=max(self.spec.ef_search, k))
            else:
                params = faiss.SearchParameters()
            if sel is not None:
                params.sel = sel
            kwargs["params"] = params
        index = self._search_index(bool(kwargs))
        return index.search(queries, k, **kwargs)

    def _search_index(self, with_params: bool):
        """The GPU copy when FAISS sees a GPU (and the call needs no CPU-only parameters)."""
        faiss = import_faiss()
        if with_params or not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0:
            return self.index
        if self._gpu is None:
            self._gpu = faiss.index_cpu_to_all_gpus(self.index)
        return self._gpu

    # ---------------------------------------------------------------- persistence
    def save(self, path: Path) -> None:
        """Write atomically: a temp file in the same folder, fsync, rename."""
        faiss = import_faiss()
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            faiss.write_index(self.index, tmp)
            usual_modes(Path(tmp))
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path, spec: IndexSpec, dim: int) -> "VectorIndex":
        faiss = import_faiss()
        if not Path(path).is_file():
            raise CompsearchError(f"vector index {path} is missing")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            raise CompsearchError(f"vector index {path} is corrupt ({first[:120]})") from None
        if index.d != dim:
            raise CompsearchError(f"vector index {path} has dimension {index.d}, expected {dim}")
        return cls(index, spec, dim)


# ---------------------------------------------------------------- choosing and building
def choose_spec(n: int, dim: int, kind: str = AUTO) -> IndexSpec:
    """The index spec for ``n`` vectors: by size when ``kind == "auto"``, else the named type."""
    if kind == AUTO:
        kind = (
            "flat"
            if n < FLAT_MAX
            else "ivf"
            if n < IVF_MAX
            else "ivf-sq8"
            if n < SQ8_MAX
            else "ivf-pq"
        )
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
    """How many vectors train ``spec`` (0 when it needs no training)."""
    if not spec.needs_training:
        return 0
    want = max(spec.nlist * TRAIN_POINTS_PER_LIST, 256 * 39 if spec.kind == "ivf-pq" else 0)
    return min(n, want, TRAIN_SAMPLE_MAX)


def build_index(
    spec: IndexSpec,
    dim: int,
    n: int,
    batches: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
    seed: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> VectorIndex:
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


def _sample(
    batches: Iterator[tuple[np.ndarray, np.ndarray]], n: int, size: int, dim: int, seed: int
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(n, size=size, replace=False)) if size < n else np.arange(n)
    out, seen = [], 0
    for _, vecs in batches:
        lo, hi = np.searchsorted(keep, [seen, seen + len(vecs)])
        out.append(vecs[keep[lo:hi] - seen])
        seen += len(vecs)
    return np.concatenate(out) if out else np.zeros((0, dim), np.float32)
