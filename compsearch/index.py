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
STALE_MIN = 4096  # chunks changed since the FAISS base that never make it stale
STALE_FRACTION = 0.1  # ... beyond this share of the base
STALE_MAX = 100_000  # ... and never more than this many (the exact delta is held in memory)


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
        self.lists: Path | None = None  # on-disk inverted lists (``basefile``): never changed
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
        """HNSW cannot remove; on-disk lists are an immutable file shared with readers."""
        return self.spec.kind != "hnsw" and self.lists is None

    def remove(self, ids) -> int:
        if len(ids) == 0:
            return 0
        if not self.supports_remove:
            raise CompsearchError("HNSW indexes cannot remove vectors; rebuild instead")
        self._gpu = None
        return int(self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, excluded=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; ids are -1 where fewer than k vectors qualify.

        ``allowed``: only these ids; ``excluded``: a FAISS ``IDSelector`` of ids to skip (the
        tombstones of a ``LayeredIndex``), used when ``allowed`` is None.
        """
        faiss = import_faiss()
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, max(self.ntotal, 1)))
        kwargs = {}
        if allowed is not None or excluded is not None or self.spec.kind != "flat":
            sel = (
                faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
                if allowed is not None
                else excluded
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
    def load(cls, path: Path, spec: IndexSpec, dim: int, flags: int = 0) -> "VectorIndex":
        """``flags``: FAISS IO flags (``basefile`` reads on-disk lists with them)."""
        faiss = import_faiss()
        if not Path(path).is_file():
            raise CompsearchError(f"vector index {path} is missing")
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            raise CompsearchError(f"vector index {path} is corrupt ({first[:120]})") from None
        if index.d != dim:
            raise CompsearchError(f"vector index {path} has dimension {index.d}, expected {dim}")
        return cls(index, spec, dim)


class LayeredIndex:
    """What a search of a live index reads: the FAISS base file, minus the chunks deleted since
    it was built (tombstones, skipped by an ``IDSelectorNot``), plus the chunks added since (ids
    above the base's last id), whose float32 vectors are searched exactly in memory.

    A write changes only the store: the base is rewritten when it gets stale (``indexdir``), so a
    small write costs what it changes. Readers refresh the layers from the store's committed
    rows (``add_delta``/``add_tombstones``) without reading the base again. ``spec`` is the
    base's; the delta is exact, so re-scoring decisions follow the base.
    """

    def __init__(self, base: VectorIndex | None, spec: IndexSpec, dim: int, last_id: int):
        self.base, self.spec, self.dim, self.last_id = base, spec, dim, last_id
        self.base_file: str | None = None
        self.manifest: dict = {"generation": 0}  # the committed manifest the layers are at
        self.seen_id = last_id  # the highest chunk id loaded into the delta
        self.tomb_seq = 0  # the last tombstone row applied
        self._ids = np.zeros(0, np.int64)
        self._vecs = np.zeros((0, dim), np.float32)
        self._alive = np.zeros(0, bool)
        self._n = 0
        self._dead_base: list[np.ndarray] = []
        self._dead_base_n = 0
        self._excluded = None  # the FAISS selector of dead base ids, made on demand

    @property
    def ntotal(self) -> int:
        base = self.base.ntotal if self.base is not None else 0
        return base - self._dead_base_n + int(self._alive[: self._n].sum())

    @property
    def delta_size(self) -> int:
        return self._n

    def add_delta(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Chunks added since the base (ids above every id loaded so far)."""
        if not len(ids):
            return
        need = self._n + len(ids)
        if need > len(self._ids):  # grow by doubling: appending stays O(added)
            cap = max(need, 2 * len(self._ids), 64)
            self._ids = np.resize(self._ids, cap)
            self._alive = np.resize(self._alive, cap)
            vecs = np.zeros((cap, self.dim), np.float32)
            vecs[: self._n] = self._vecs[: self._n]
            self._vecs = vecs
        self._ids[self._n : need] = ids
        self._vecs[self._n : need] = vectors
        self._alive[self._n : need] = True
        self._n = need
        self.seen_id = max(self.seen_id, int(ids[-1]))

    def add_tombstones(self, ids: np.ndarray) -> None:
        """Chunks deleted since the base: from the base (an exclusion) or from the delta."""
        if not len(ids):
            return
        old = ids[ids <= self.last_id]
        if len(old):
            self._dead_base.append(old)
            self._dead_base_n += len(old)
            self._excluded = None
        if self._n:
            self._alive[: self._n] &= ~np.isin(self._ids[: self._n], ids)

    def dead_base_ids(self) -> np.ndarray:
        return np.concatenate(self._dead_base) if self._dead_base else np.zeros(0, np.int64)

    def delta(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the live chunks added since the base."""
        alive = self._alive[: self._n]
        return self._ids[: self._n][alive], self._vecs[: self._n][alive]

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) over base and delta; ids are -1 where fewer than k qualify."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        nq, k = len(queries), max(1, k)
        parts_s, parts_i = [], []
        if self.base is not None and self.base.ntotal:
            excluded = None
            if allowed is None and self._dead_base_n:
                excluded = self._exclusion()
            s, i = self.base.search(queries, k, allowed, excluded)
            parts_s.append(s)
            parts_i.append(i)
        if self._n:
            live = self._alive[: self._n].copy()
            if allowed is not None:
                live &= np.isin(self._ids[: self._n], allowed)
            if live.any():
                ids = self._ids[: self._n][live]
                scores = queries @ self._vecs[: self._n][live].T
                top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
                parts_s.append(np.take_along_axis(scores, top, 1))
                parts_i.append(ids[top])
        if not parts_s:
            return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
        scores = np.concatenate(parts_s, axis=1)
        ids = np.concatenate(parts_i, axis=1)
        scores = np.where(ids < 0, -np.inf, scores)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)

    def _exclusion(self):
        if self._excluded is None:
            faiss = import_faiss()
            dead = np.ascontiguousarray(self.dead_base_ids(), dtype=np.int64)
            batch = faiss.IDSelectorBatch(dead)
            self._excluded = faiss.IDSelectorNot(batch)
            self._excluded_refs = (batch, dead)  # the selector points into these
        return self._excluded


def base_is_stale(base: dict | None, next_id: int, tombstones: int) -> bool:
    """Whether the chunks added (ids from ``base["last_id"]`` to ``next_id``) and deleted
    (``tombstones``) since a base call for a new one: more than ``STALE_MIN`` and than
    ``STALE_FRACTION`` of the base (at most ``STALE_MAX``). No base: yes."""
    if not base or not base.get("file"):
        return True
    changed = (next_id - 1 - base["last_id"]) + tombstones
    return changed > max(STALE_MIN, min(STALE_FRACTION * base["ntotal"], STALE_MAX))


def fold(base: VectorIndex, dead: np.ndarray, added: Iterable[tuple[np.ndarray, np.ndarray]]):
    """A base with the ``dead`` ids removed and the ``added`` (ids, vectors) batches added, no
    retraining (HNSW cannot remove: None)."""
    if not base.supports_remove:
        return None
    base.remove(dead)
    for ids, vecs in added:
        base.add(ids, vecs)
    return base


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
    keep = sample_positions(n, size, seed)
    out, seen = [], 0
    for _, vecs in batches:
        lo, hi = np.searchsorted(keep, [seen, seen + len(vecs)])
        out.append(vecs[keep[lo:hi] - seen])
        seen += len(vecs)
    return np.concatenate(out) if out else np.zeros((0, dim), np.float32)


def sample_positions(n: int, size: int, seed: int) -> np.ndarray:
    """The sorted positions (in id order) of the seeded training sample of ``n`` vectors: the
    one sampler of every build, so a build from shards trains on the write path's sample."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False)) if size < n else np.arange(n)
