"""The maintenance operations on an index directory: inspect, verify, rebuild, compact.

All changes go through the same atomic transaction as indexing: a crash leaves the old index.
Nothing here re-encodes: rebuilds read the float32 vectors kept in the store. ``compact`` is
where an index's FAISS base takes in everything written since it was built (writes leave it
alone until it gets stale, see ``indexdir``) and the store gives back the space of deleted rows.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from ..errors import CompsearchError
from ..index import choose_spec
from ..indexdir import (
    ENCODER_DIR,
    check_files,
    index_path,
    open_generation,
    read_manifest,
    store_path,
    transaction,
    writer_lock,
)
from ..indexspec import AUTO, IndexSpec
from ..shardindex import new_base


def _manifest(root: Path) -> dict:
    manifest = read_manifest(Path(root))
    if manifest is None:
        raise CompsearchError(f"no index at {root}")
    return manifest


def inspect(root: Path) -> dict:
    """Sizes, types and counts of an index directory (reads no vectors)."""
    root = Path(root)
    manifest = _manifest(root)
    faiss_file, store_file = index_path(root, manifest), store_path(root, manifest)
    faiss_bytes = faiss_file.stat().st_size if faiss_file else 0
    lists = (manifest.get("base") or {}).get("lists")
    faiss_bytes += (root / lists).stat().st_size if lists else 0  # on-disk lists
    store, index = open_generation(root, manifest)
    try:
        sources = store.sources()
        dim = manifest["encoder"]["dim"]
        return {
            "path": str(root.resolve()),
            "generation": manifest["generation"],
            "index_type": index.spec.kind,
            "factory": index.spec.factory(dim),
            "spec": index.spec.to_dict(),
            "vectors": index.ntotal,
            "chunks": store.count(),
            "files": store.file_count(),
            "sources": len(sources),
            "largest_sources": sorted(sources, key=lambda s: -s[1])[:5],
            "format_version": manifest.get("format_version", 1),
            "delta": getattr(index, "delta_size", 0),
            "bytes": {
                "faiss": faiss_bytes,
                "store": store_file.stat().st_size,
                "encoder": sum(
                    p.stat().st_size for p in (root / ENCODER_DIR).rglob("*") if p.is_file()
                )
                if (root / ENCODER_DIR).exists()
                else 0,
            },
            "bytes_per_vector": round(faiss_bytes / max(index.ntotal, 1), 1),
            "encoder": manifest["encoder"],
        }
    finally:
        store.close()


def verify(root: Path, sample: int = 200, seed: int = 0) -> list[str]:
    """Check an index end to end; returns the problems found (empty when healthy).

    Checks every byte of the FAISS file against its digest, SQLite integrity and the store's
    content digest (``Store.check``), that the vector index and the store hold as many vectors,
    and that a sample of stored vectors finds itself as its own nearest neighbour (self-recall;
    approximate indexes may miss a few, reported with the rate).
    """
    root = Path(root)
    manifest = _manifest(root)
    try:
        store, index = open_generation(root, manifest, check=False)
    except CompsearchError:
        damaged = check_files(root, manifest, full=True)
        if damaged:  # e.g. truncated on-disk lists, which are never mapped
            return damaged
        raise
    problems: list[str] = []
    if manifest.get("format_version", 1) >= 2:  # the store's snapshot is what was opened
        committed = store.manifest() or {}
        if committed.get("generation", 0) > manifest["generation"]:
            manifest = committed  # a writer committed since the manifest was read
        elif committed != manifest:
            problems.append("manifest.json differs from the manifest committed in the store")
    problems += check_files(root, manifest, full=True)
    try:
        try:
            problems += store.check()
        except sqlite3.DatabaseError as exc:  # too damaged for SQLite's own check to finish
            return problems + [f"chunk store: {exc}"]
        dim = manifest["encoder"]["dim"]
        n = store.count()
        if index.ntotal != n:
            problems.append(f"vector index holds {index.ntotal} vectors but the store {n} chunks")
        if manifest.get("counts", {}).get("chunks", n) != n:
            problems.append(f"manifest says {manifest['counts']['chunks']} chunks, store has {n}")
        ids = store.all_ids()
        if len(ids):
            rng = np.random.default_rng(seed)
            pick = rng.choice(ids, size=min(sample, len(ids)), replace=False)
            vecs = store.vectors(pick.tolist(), dim)
            norms = np.linalg.norm(vecs, axis=1)
            if np.any(np.abs(norms - 1) > 1e-3):
                problems.append(
                    f"{int(np.sum(np.abs(norms - 1) > 1e-3))} stored vectors are not unit length"
                )
            _, found = index.search(vecs, 10)
            hit = np.mean([p in row for p, row in zip(pick, found)])
            exact_needed = 1.0 if index.spec.exact else 0.9
            if hit < exact_needed:
                problems.append(
                    f"self-recall@10 is {hit:.3f} on {len(pick)} sampled vectors "
                    f"(expected >= {exact_needed})"
                )
    finally:
        store.close()
    return problems


def rebuild(root: Path, kind: str | None = None, **params) -> dict:
    """Rebuild the vector index from the stored vectors (retrain; optionally a new type).

    ``kind``: an index type or ``"auto"``; ``params``: IndexSpec fields such as nlist, nprobe,
    pq_m, hnsw_m, ef_search. Nothing is re-encoded. Also compacts: removed vectors leave no holes.
    """
    root = Path(root)
    manifest = _manifest(root)
    dim = manifest["encoder"]["dim"]
    with writer_lock(root):  # VACUUM runs outside the transaction, under the same lock
        manifest = _rebuild(root, kind, manifest, dim, params)
        try:
            db = sqlite3.connect(store_path(root, manifest), isolation_level=None)
            db.execute("VACUUM")
            db.close()
        except sqlite3.Error as exc:  # the rebuild is committed; only space was not given back
            import logging

            logging.getLogger(__name__).warning("%s: VACUUM failed (%s)", root, exc)
        return manifest


def _rebuild(root: Path, kind, manifest: dict, dim: int, params: dict) -> dict:
    with transaction(root, locked=True) as tx:
        n = tx.store.count()
        requested = kind or manifest["index"].get("requested", AUTO)
        spec = choose_spec(n, dim, requested)
        for key, value in params.items():
            if value is not None:
                if not hasattr(spec, key):
                    raise CompsearchError(f"unknown index parameter {key!r}")
                setattr(spec, key, value)
        spec = IndexSpec.from_dict(spec.to_dict())  # validate
        tx.index = new_base(tx, spec, dim)  # on-disk lists stay on disk
        return tx.commit(requested=requested)


def compact(root: Path) -> dict:
    """Reclaim space (SQLite VACUUM, vector index rebuilt without holes), same index type."""
    manifest = _manifest(root)
    return rebuild(
        root,
        manifest["index"]["spec"]["kind"],
        **{k: v for k, v in manifest["index"]["spec"].items() if k != "kind"},
    )
