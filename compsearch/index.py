"""The vector index: FAISS inner-product search over L2-normalised vectors with stable int64 ids.

``IndexSpec`` names an index type and its parameters and maps to a FAISS factory string; it is
stored in the manifest. Which type to use for a corpus size, and training on a sample, live in
``index_tools`` (``choose_spec``, ``build_index``). GPU FAISS is used for search when the installed
``faiss`` sees a GPU; indexes are always saved in their CPU form.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import CompsearchError
from .fsutil import usual_modes

KINDS = ("flat", "ivf", "ivf-sq8", "ivf-pq", "hnsw")


def import_faiss():
    try:
        import faiss
    except ImportError:
        raise CompsearchError("faiss is not installed: pip install 'compsearch[cpu]' "
                              "(or 'compsearch[gpu]' on a CUDA machine)") from None
    return faiss


@dataclass
class IndexSpec:
    """An index type and its parameters (serialised into the manifest)."""

    kind: str = "flat"
    nlist: int = 0          # IVF: number of clusters
    pq_m: int = 0           # IVF-PQ: sub-quantisers (must divide dim)
    hnsw_m: int = 32        # HNSW: graph degree
    nprobe: int = 16        # IVF search: clusters visited
    ef_search: int = 64     # HNSW search: candidate list size
    ef_construction: int = 80

    def __post_init__(self):
        if self.kind not in KINDS:
            raise CompsearchError(f"unknown index type {self.kind!r}; choose from {', '.join(KINDS)}")

    @property
    def exact(self) -> bool:
        return self.kind == "flat"

    @property
    def needs_training(self) -> bool:
        return self.kind.startswith("ivf")

    def factory(self, dim: int) -> str:
        if self.kind == "flat":
            return "IDMap2,Flat"
        if self.kind == "hnsw":
            return f"IDMap2,HNSW{self.hnsw_m},Flat"
        if self.nlist < 1:
            raise CompsearchError("an IVF index needs nlist >= 1")
        code = {"ivf": "Flat", "ivf-sq8": "SQ8"}.get(self.kind)
        if code is None:
            m = self.pq_m or _default_pq_m(dim)
            if dim % m:
                raise CompsearchError(f"pq_m={m} does not divide the dimension {dim}")
            code = f"PQ{m}x8"
        return f"IVF{self.nlist},{code}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "IndexSpec":
        return cls(**d)


def _default_pq_m(dim: int) -> int:
    """About 8 dimensions per sub-quantiser (e.g. 576 -> 72, 384 -> 48)."""
    for m in range(max(1, dim // 8), 0, -1):
        if dim % m == 0:
            return m
    return 1


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
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                np.ascontiguousarray(ids, dtype=np.int64))
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

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; ids are -1 where fewer than k vectors qualify."""
        faiss = import_faiss()
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, max(self.ntotal, 1)))
        kwargs = {}
        if allowed is not None or self.spec.kind != "flat":
            sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64)) \
                if allowed is not None else None
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
