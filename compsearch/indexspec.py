"""Index kinds and ``IndexSpec``: what the manifest records about the vector index.

Kept apart from ``index.py`` (which needs numpy and FAISS) so the command line can list the kinds
and the manifest can be validated without loading either. ``KINDS`` is the one list of index
types; the CLI's ``--type`` choices, maintenance and the benchmarks all derive from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .errors import CompsearchError

KINDS = ("flat", "ivf", "ivf-sq8", "ivf-pq", "hnsw")  # the one list of index types
AUTO = "auto"  # choose a kind by corpus size
REQUESTABLE = (AUTO, *KINDS)  # what a user may ask for


@dataclass
class IndexSpec:
    """An index type and its parameters (serialised into the manifest)."""

    kind: str = "flat"
    nlist: int = 0  # IVF: number of clusters
    pq_m: int = 0  # IVF-PQ: sub-quantisers (must divide dim)
    hnsw_m: int = 32  # HNSW: graph degree
    nprobe: int = 16  # IVF search: clusters visited
    ef_search: int = 64  # HNSW search: candidate list size
    ef_construction: int = 80

    def __post_init__(self):
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise CompsearchError(
                f"unknown index type {self.kind!r}; choose from {', '.join(KINDS)}"
            )
        for f in fields(self):
            if f.name == "kind":
                continue
            value, least = getattr(self, f.name), 0 if f.name in ("nlist", "pq_m") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise CompsearchError(
                    f"index parameter {f.name} must be an integer >= {least}, not {value!r}"
                )

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
            # "np": no polysemous training; compsearch never searches with Hamming
            # thresholds, and that step made IVF-PQ training ~25x slower (366 s vs 14 s
            # for 20k vectors, 576-d, one thread)
            code = f"PQ{m}x8np"
        return f"IVF{self.nlist},{code}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "IndexSpec":
        """A spec from its dict (the manifest's ``index.spec``); anything else is a one-line error."""
        if not isinstance(d, dict):
            raise CompsearchError(f"an index spec must be a mapping, not {type(d).__name__}")
        unknown = sorted(map(str, set(d) - {f.name for f in fields(cls)}))
        if unknown:
            raise CompsearchError(f"unknown index parameter(s): {', '.join(unknown)}")
        return cls(**d)


def _default_pq_m(dim: int) -> int:
    """About 8 dimensions per sub-quantiser (e.g. 576 -> 72, 384 -> 48)."""
    for m in range(max(1, dim // 8), 0, -1):
        if dim % m == 0:
            return m
    return 1
