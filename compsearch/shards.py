"""Vector shards: chunk vectors computed elsewhere (e.g. on a Ray cluster), served by content hash.

Encoding is the expensive part of building an index, and the only part that parallelises across
machines without touching the index format. So a cluster run writes *vector shards* and the
ordinary single-writer path (``indexing.index_paths``) builds the index from them:

- a **shard** is one safetensors file: ``vectors`` (n, dim) float32, L2-normalised, and ``hashes``
  (n, 32) uint8, the SHA-256 of each chunk's ``embed_text`` -- the same content hash the store
  records, so a vector is found by the text it encodes, not by a path or an id that could drift.
  Its metadata names the format and the encoder fingerprint. No pickles.
- a **shard set** is a folder of shards plus ``shards.json`` (written last, atomically): the
  encoder (fingerprint, name, dim), the chunking config, and each shard with its row count.
- ``ShardEncoder`` wraps the index's encoder and follows the encoder protocol
  (``embedders.py``): ``encode(texts, kind="document")`` looks each text's hash up in the shards
  and encodes only what is missing (a file that changed after the shards were made), so the write
  path needs no new hook. It refuses a shard set made by another encoder, with one line.

The lookup keeps, per vector, an 8-byte hash prefix (sorted, for ``searchsorted``), the full
32-byte hash (to confirm a prefix match) and its (shard, row): 44 bytes, about 440 MB for 10M
chunks. Shard vectors are read on demand and a few shards are cached.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .errors import CompsearchError
from .fsutil import atomic_write_bytes, atomic_write_text

SHARD_FORMAT = "compsearch-vector-shard/1"
SET_FORMAT = "compsearch-vector-shards/1"
SET_FILE = "shards.json"
CACHED_SHARDS = 4


def hash_bytes(hex_hashes: Sequence[str]) -> np.ndarray:
    """Hex SHA-256 strings -> (n, 32) uint8."""
    if not hex_hashes:
        return np.zeros((0, 32), np.uint8)
    return np.frombuffer(bytes.fromhex("".join(hex_hashes)), np.uint8).reshape(-1, 32)


def text_hashes(texts: Sequence[str]) -> list[str]:
    """The content hash the store records for a chunk with this ``embed_text``."""
    from .ingest import content_hash

    return [content_hash(t.encode()) for t in texts]


def shard_name(hashes: Sequence[str]) -> str:
    """A name that depends only on what the shard holds, so a re-run finds its finished shards."""
    import hashlib

    return f"shard-{hashlib.sha256(''.join(hashes).encode()).hexdigest()[:24]}.safetensors"


def write_shard(path: Path, hashes: Sequence[str], vectors: np.ndarray, fingerprint: str) -> None:
    """One shard file, written atomically (temp file, fsync, rename)."""
    from safetensors.numpy import save

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(hashes):
        raise CompsearchError(f"a shard needs one vector per hash, got {vectors.shape}")
    meta = {"format": SHARD_FORMAT, "fingerprint": fingerprint, "dim": str(vectors.shape[1])}
    data = save({"vectors": vectors, "hashes": hash_bytes(hashes)}, metadata=meta)
    atomic_write_bytes(Path(path), data)


def read_shard(
    path: Path, fingerprint: str | None = None, *, with_vectors: bool = True
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(hashes (n, 32) uint8, vectors (n, dim) float32, metadata); one line when it is unusable.
    ``with_vectors=False`` reads only the hashes (the vectors come back as an (n, 0) array)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            hashes = f.get_tensor("hashes")
            if with_vectors:
                vectors = f.get_tensor("vectors")
            else:
                vectors = np.zeros((len(hashes), 0), np.float32)
    except Exception as exc:  # noqa: BLE001  (SafetensorError subclasses nothing useful)
        first = (str(exc).splitlines() or ["unreadable"])[0][:120]
        raise CompsearchError(f"vector shard {path} is unreadable ({first})") from None
    if meta.get("format") != SHARD_FORMAT:
        raise CompsearchError(f"{path} is not a compsearch vector shard")
    if fingerprint is not None and meta.get("fingerprint") != fingerprint:
        raise CompsearchError(
            f"vector shard {path} was made by encoder {str(meta.get('fingerprint'))[:12]}, "
            f"not {fingerprint[:12]}: vectors of different encoders cannot be mixed"
        )
    ok = hashes.dtype == np.uint8 and hashes.ndim == 2 and hashes.shape[1] == 32
    if not ok or vectors.ndim != 2 or len(vectors) != len(hashes):
        raise CompsearchError(f"vector shard {path} is damaged (shapes do not match)")
    return hashes, vectors.astype(np.float32, copy=False), meta


def write_set(folder: Path, encoder: dict, chunking: dict | None, shards: list[dict]) -> dict:
    """Write ``shards.json`` (last, atomically): what makes the folder a usable shard set."""
    manifest = {
        "format": SET_FORMAT,
        "encoder": {k: encoder[k] for k in ("fingerprint", "name", "dim")},
        "chunking": chunking,
        "shards": sorted(shards, key=lambda s: s["file"]),
        "vectors": sum(int(s["count"]) for s in shards),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(Path(folder) / SET_FILE, json.dumps(manifest, indent=2) + "\n")
    return manifest


@dataclass
class _Located:
    shard: np.ndarray  # int32 shard number per vector
    row: np.ndarray  # int32 row in that shard
    full: np.ndarray  # (n, 32) uint8 hashes
    prefix: np.ndarray  # uint64, sorted
    used: np.ndarray  # bool: served by ``lookup``


class ShardSet:
    """A folder of vector shards and its ``shards.json`` (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).expanduser()
        path = self.folder / SET_FILE
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise CompsearchError(
                f"no vector shards in {self.folder} ({SET_FILE} missing)"
            ) from None
        except (OSError, ValueError) as exc:
            raise CompsearchError(f"{path} is unreadable: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != SET_FORMAT:
            raise CompsearchError(f"{path} is not a compsearch shard set")
        try:
            self.encoder = dict(manifest["encoder"])
            self.fingerprint, self.dim = str(self.encoder["fingerprint"]), int(self.encoder["dim"])
            self.files = [str(s["file"]) for s in manifest["shards"]]
            self.counts = [int(s["count"]) for s in manifest["shards"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise CompsearchError(f"{path} is damaged ({type(exc).__name__}: {exc})") from None
        if any(Path(f).name != f for f in self.files):
            raise CompsearchError(f"{path} names a shard outside its folder")
        self.manifest = manifest
        self._located: _Located | None = None
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return sum(self.counts)

    def check(self, encoder: Any) -> None:
        """Refuse (one line) when these vectors were not made by ``encoder``."""
        if encoder.fingerprint != self.fingerprint:
            raise CompsearchError(
                f"the vector shards in {self.folder} were made by encoder {self.fingerprint[:12]} "
                f"({self.encoder.get('name', '?')}); the index's encoder is "
                f"{encoder.fingerprint[:12]} ({encoder.name}): make the shards with that encoder"
            )
        if int(encoder.dim) != self.dim:
            raise CompsearchError(
                f"the shards hold {self.dim}-d vectors, the encoder {encoder.dim}"
            )

    def read(self, i: int, with_vectors: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Shard ``i`` as (hashes, vectors), checked against the set's encoder and row count."""
        path = self.folder / self.files[i]
        hashes, vectors, _ = read_shard(path, self.fingerprint, with_vectors=with_vectors)
        if len(hashes) != self.counts[i] or (with_vectors and vectors.shape[1] != self.dim):
            raise CompsearchError(f"vector shard {self.files[i]} does not match {SET_FILE}")
        return hashes, vectors

    def vectors(self, i: int) -> np.ndarray:
        if i in self._cache:
            self._cache.move_to_end(i)
        else:
            self._cache[i] = self.read(i)[1]
            while len(self._cache) > CACHED_SHARDS:
                self._cache.popitem(last=False)
        return self._cache[i]

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) per shard, ids = row numbers across the set in ``files`` order."""
        start = 0
        for i in range(len(self.files)):
            vectors = self.read(i)[1]
            yield np.arange(start, start + len(vectors), dtype=np.int64), vectors
            start += len(vectors)

    # ---------------------------------------------------------------- lookup by content hash
    def _locate(self) -> _Located:
        if self._located is None:
            full, shard, row = [], [], []
            for i in range(len(self.files)):
                hashes = self.read(i, with_vectors=False)[0]
                full.append(hashes)
                shard.append(np.full(len(hashes), i, np.int32))
                row.append(np.arange(len(hashes), dtype=np.int32))
            full_a = np.concatenate(full) if full else np.zeros((0, 32), np.uint8)
            prefix = full_a[:, :8].copy().view(">u8").ravel().astype(np.uint64)
            order = np.argsort(prefix, kind="stable")
            self._located = _Located(
                shard=np.concatenate(shard)[order] if shard else np.zeros(0, np.int32),
                row=np.concatenate(row)[order] if row else np.zeros(0, np.int32),
                full=full_a[order],
                prefix=prefix[order],
                used=np.zeros(len(order), bool),
            )
        return self._located

    def find(self, hex_hashes: Sequence[str]) -> np.ndarray:
        """Each content hash's position in the lookup (-1: in no shard). A text in several
        shards is found in the first of them (``files`` order), the vector ``lookup`` serves."""
        loc = self._locate()
        want = hash_bytes(list(hex_hashes))
        out = np.full(len(want), -1, np.int64)
        if not len(want) or not len(loc.prefix):
            return out
        prefix = want[:, :8].copy().view(">u8").ravel().astype(np.uint64)
        lo = np.searchsorted(loc.prefix, prefix, "left")
        hi = np.searchsorted(loc.prefix, prefix, "right")
        some = np.flatnonzero(hi > lo)
        first = some[(loc.full[lo[some]] == want[some]).all(axis=1)]
        out[first] = lo[first]
        for i in np.setdiff1d(some, first):  # a 64-bit prefix shared by two texts: rare
            for j in range(lo[i] + 1, hi[i]):
                if np.array_equal(loc.full[j], want[i]):
                    out[i] = j
                    break
        return out

    def lookup(self, hex_hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors for the given content hashes: (found mask, (n, dim) vectors, zeros if absent).
        What it serves is remembered (``served``), for a base built from the shards."""
        where = self.find(hex_hashes)
        found = where >= 0
        out = np.zeros((len(where), self.dim), np.float32)
        if not found.any():
            return found, out
        loc = self._locate()
        pos = where[found]
        loc.used[pos] = True
        shard, row, idx = loc.shard[pos], loc.row[pos], np.flatnonzero(found)
        for s in np.unique(shard):
            mine = shard == s
            out[idx[mine]] = self.vectors(int(s))[row[mine]]
        return found, out

    def served(self, hex_hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(shard, row) of each hash whose vector ``lookup`` served (-1, -1 for the others)."""
        where = self.find(hex_hashes)
        loc = self._locate()
        ok = where >= 0
        ok[ok] = loc.used[where[ok]]
        shard, row = np.full(len(where), -1, np.int64), np.full(len(where), -1, np.int64)
        shard[ok], row[ok] = loc.shard[where[ok]], loc.row[where[ok]]
        return shard, row


class ShardEncoder:
    """The index's encoder, serving document vectors from a shard set by content hash.

    Everything but ``encode(..., kind="document")`` is the wrapped encoder's (fingerprint, name,
    tokenizer, ``save``), so the index records the real encoder. ``served`` / ``encoded`` count
    vectors found in the shards and vectors that had to be encoded here.

    When the write needs a new IVF-family base, it is built from the shards (``shardindex``:
    the served vectors added shard by shard in parallel, keyed by store id); ``ondisk_lists``
    asks for FAISS's on-disk inverted lists in the index folder (kept by later writes).
    """

    def __init__(self, encoder: Any, shards: ShardSet | str | os.PathLike, *,
                 ondisk_lists: bool = False):  # fmt: skip
        self.inner = encoder
        self.shards = shards if isinstance(shards, ShardSet) else ShardSet(shards)
        self.shards.check(encoder)
        self.ondisk_lists = ondisk_lists
        self.served = 0
        self.encoded = 0
        self.last_truncated: list[int] = []

    def encode(self, texts, *, kind: str = "document", **kwargs: Any) -> np.ndarray:
        if kind != "document" or isinstance(texts, str):
            return self.inner.encode(texts, kind=kind, **kwargs)
        texts = list(texts)
        found, out = self.shards.lookup(text_hashes(texts))
        missing = np.flatnonzero(~found)
        self.last_truncated = []
        if len(missing):
            out[missing] = self.inner.encode([texts[i] for i in missing], kind=kind, **kwargs)
            self.last_truncated = list(getattr(self.inner, "last_truncated", []))
        self.served += int(found.sum())
        self.encoded += len(missing)
        return out

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def name(self) -> str:
        return self.inner.name

    def __getattr__(self, attr: str) -> Any:  # source, config, count_tokens, save, dtype, ...
        if attr in ("inner", "shards", "ondisk_lists"):
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def __repr__(self) -> str:
        return f"ShardEncoder({self.inner!r}, {self.shards.folder})"
