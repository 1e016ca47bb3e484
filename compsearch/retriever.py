"""The public API for RAG pipelines: index folders or texts, search them, get citable results.

>>> r = Retriever.open("my-index")            # created on first write
>>> report = r.index(["./docs"])              # incremental: only changed files are re-encoded
>>> hits = r.search("how do I rotate logs?", k=5, where={"source": "*/logging/*"})
"""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import memstates
from .chunking import ChunkingConfig
from .errors import CompsearchError
from .indexdir import pin, read_manifest, transaction
from .indexing import (
    ENCODE_BATCH_CHUNKS,
    IndexReport,
    ProgressFn,
    check_chunk_budget,  # noqa: F401
    finish,
    index_paths,
    prune,
    require_paths,
    resolve_chunking,
)
from .ingest import content_hash
from .results import SearchResult, to_result
from .docids import check_doc_ids, delete_targets
from .store import ChunkRecord

__all__ = [
    "DEFAULT_K",
    "ENCODE_BATCH_CHUNKS",
    "IndexReport",
    "ProgressFn",
    "Retriever",
    "SearchResult",
    "check_chunk_budget",
    "require_paths",
    "resolve_chunking",
]  # some re-exported from indexing

DEFAULT_K = 5  # results per query, for the API, the CLI and the server alike


class Retriever:
    """A searchable index directory plus the encoder that built it."""

    def __init__(self, root: Path, encoder=None):
        from .embedders import as_encoder

        self.root = Path(root)
        self._encoder = as_encoder(encoder)
        self._lock = threading.RLock()  # one Retriever may be shared by threads (servers, batch())
        self._write_lock = threading.RLock()  # writes from threads of one process go one at a time
        self._light = None  # the numpy query encoder, False when unavailable
        self._manifest = read_manifest(self.root)
        self._store = None
        self._index = None
        self._live = False  # the open store is a live (format 2) one, refreshed per snapshot
        self._depth = 0  # nesting of _snapshot() in the thread holding self._lock
        if self._manifest and self._encoder is not None:
            self._check_encoder(self._encoder)

    @classmethod
    def open(
        cls, path: str | os.PathLike, encoder=None, *, must_exist: bool = False
    ) -> "Retriever":
        """Open an index directory (created on the first write unless ``must_exist``).

        ``encoder``: an ``Encoder``; a name or folder (compsearch encoder, base model, or a
        sentence-transformers folder); any embedding object (see ``compsearch.embedders``); or None
        for the encoder recorded in the index (compsearch's default for a new index).
        """
        root = Path(path).expanduser()
        r = cls(root, encoder)
        if must_exist and r._manifest is None:
            raise CompsearchError(
                f"no index at {root} (build one with: compsearch index PATH --index {root})"
            )
        return r

    # ---------------------------------------------------------------- state
    @property
    def exists(self) -> bool:
        return self._manifest is not None

    @property
    def manifest(self) -> dict | None:
        return self._manifest

    @property
    def encoder(self):
        if self._encoder is None:
            from .embedders import index_encoder

            enc = index_encoder(self.root, self._manifest)
            if self._manifest:
                self._check_encoder(enc)
            self._encoder = enc
        return self._encoder

    @property
    def query_encoder(self):
        """What encodes queries: the loaded encoder, or -- when none is loaded yet and the index's
        encoder has a verified merged-weights cache -- its torch-free numpy forward
        (``compsearch.npquery``), so a query process need not import torch."""
        if self._encoder is not None:
            return self._encoder
        if self._light is None:
            from .npquery import light_query_encoder

            self._light = light_query_encoder(self.root, self._manifest) or False
        return self._light or self.encoder

    def _check_encoder(self, encoder) -> None:
        want = self._manifest["encoder"]["fingerprint"]
        if encoder.fingerprint != want:
            raise CompsearchError(
                f"index {self.root} was built by encoder {want[:12]} "
                f"({self._manifest['encoder'].get('name', '?')}); the encoder given is "
                f"{encoder.fingerprint[:12]} ({encoder.name}). Vectors of different encoders "
                f"cannot be mixed: use that encoder, or rebuild into a new index directory"
            )

    def _open_read(self):
        """(store, vector index) of the newest committed generation. Inside ``_snapshot`` the
        pinned one; outside, the store's statements each see the newest commit."""
        with self._snapshot() as opened:
            return opened

    @contextmanager
    def _snapshot(self):
        """Hold ``self._lock`` and pin one committed generation for everything read inside (a
        search sees the old or the new generation of a concurrent write, never a mix)."""
        with self._lock:
            outer, self._depth = self._depth == 0, self._depth + 1
            try:
                if outer and self._store is None and not self._manifest:
                    raise CompsearchError(
                        f"no index at {self.root} (build one with: compsearch index PATH)"
                    )
                if outer:
                    with self._damaged():
                        self._manifest, self._store, self._index, self._live = pin(
                            self.root, self._manifest, self._store, self._index
                        )
                yield self._store, self._index
            finally:
                self._depth -= 1
                if outer and self._store is not None and self._live:
                    self._store.end_read()

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
            self._store = self._index = None
            self._live = False

    def _reload(self, manifest: dict) -> None:
        """After this process committed ``manifest``: a live store open here is brought up to it
        by the next read (incrementally); anything else is reopened."""
        with self._lock:
            if not (self._live and manifest.get("format_version", 1) >= 2):
                self.close()
            self._manifest = manifest

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---------------------------------------------------------------- writing
    def index(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        chunking: ChunkingConfig | None = None,
        chunk_tokens: int | None = None,
        overlap: int | None = None,
        index_type: str | None = None,
        include_hidden: bool = False,
        respect_gitignore: bool = True,
        max_file_bytes: int = 10_000_000,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        progress: ProgressFn | None = None,
        memory_states: str | None = None,
    ) -> IndexReport:
        """Index files and folders incrementally and commit atomically.

        Files whose content hash is unchanged are skipped, changed files are re-chunked and
        re-encoded, and files that disappeared from the given folders are removed. A different
        chunking config, or an index chunked by another ``CHUNKER_VERSION``, re-chunks everything.
        A run with nothing to do loads no encoder and writes no generation; a chunk whose text is
        already in the index reuses its vector (moved, copied or partly edited files).

        Chunking: a whole ``chunking`` config, or only ``chunk_tokens`` and/or ``overlap`` changed
        from the index's current config (see ``resolve_chunking``); neither keeps the index's. The
        chunk budget may not exceed the encoder's ``max_length``. ``include``/``exclude``:
        gitignore-style globs relative to each given folder. ``memory_states``: memstates.py.
        """
        with self._write_lock:
            return index_paths(
                self,
                list(paths),
                chunking=chunking,
                chunk_tokens=chunk_tokens,
                overlap=overlap,
                index_type=index_type,
                include_hidden=include_hidden,
                respect_gitignore=respect_gitignore,
                max_file_bytes=max_file_bytes,
                include=include,
                exclude=exclude,
                progress=progress,
                memory_states=memory_states,
            )

    def prune(self) -> IndexReport:
        """Remove files that no longer exist on disk (and roots that are gone); no encoder needed."""
        with self._write_lock:
            return prune(self)

    def add(
        self,
        texts: Sequence[str],
        metadata: Sequence[dict] | dict | None = None,
        *,
        ids: Sequence[str] | None = None,
        source: str = "<api>",
        vectors: np.ndarray | None = None,
        memory_states: str | None = None,
    ) -> list:
        """Add raw texts (each one chunk) with optional metadata and commit; returns their ids.

        ``ids``: your own string ids, one per text. A text whose id is already in the index
        replaces it (an upsert); the call returns ``ids``. Without ``ids`` the call returns the
        new chunks' integer ids. ``metadata`` is stored as given and is filterable with
        ``search(where=...)``; its ``source`` (default ``source``) is also the hit's ``source``.
        ``vectors``: embeddings you already computed *with this index's encoder* (skips encoding).
        """
        if isinstance(texts, str):
            raise TypeError("add() takes a list of strings")
        texts = list(texts)
        if isinstance(metadata, dict) or metadata is None:
            metadata = [dict(metadata or {}) for _ in texts]
        if len(metadata) != len(texts):
            raise CompsearchError("add(): one metadata dict per text")
        doc_ids = check_doc_ids(ids, len(texts))
        encoder = memstates.encoder_for_add(self, memory_states)
        records = []
        for text, meta in zip(texts, metadata):
            if not isinstance(text, str) or not text.strip():
                raise CompsearchError("add(): texts must be non-empty strings")
            if not isinstance(meta, dict):
                raise CompsearchError("add(): metadata must be dicts")
            records.append(
                ChunkRecord(
                    text=text,
                    source=str(meta.get("source", source)),
                    content_hash=content_hash(text.encode()),
                    metadata=dict(meta),
                )
            )
        report = IndexReport()
        if not texts:
            return []
        if vectors is None:
            vectors = encoder.encode(texts, kind="document")
            report.truncated = len(getattr(encoder, "last_truncated", []))
        elif np.shape(vectors) != (len(texts), encoder.dim):
            raise CompsearchError(
                f"add(): vectors must have shape ({len(texts)}, {encoder.dim}), "
                f"not {np.shape(vectors)}"
            )
        with self._write_lock, transaction(self.root) as tx:
            replaced = list(tx.store.chunks_for_doc_ids(doc_ids).values()) if doc_ids else []
            tx.store.delete(replaced)
            new = tx.store.add(records, vectors)
            if doc_ids:
                tx.store.set_doc_ids(list(zip(doc_ids, new)))
            report.chunks_added, report.chunks_removed = len(new), len(replaced)
            self._reload(finish(tx, encoder, report, new, replaced, memory_states))
        return list(doc_ids) if doc_ids else new

    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadata: Sequence[dict] | dict | None = None,
        *,
        vectors: np.ndarray | None = None,
    ) -> list[str]:
        """Insert or replace texts under your own string ids (``add(..., ids=ids)``)."""
        return self.add(texts, metadata, ids=ids, vectors=vectors)

    def delete(self, ids: Sequence[int | str] | None = None, *, where: dict | None = None) -> int:
        """Remove chunks by id (your string ids or chunk ids) or by filter; returns how many.

        Removing nothing commits nothing: no new generation is written.
        """
        ids = list(ids or [])
        if not ids and not where:
            return 0
        with self._write_lock:
            roots = (self._manifest or {}).get("roots", [])
            if not self.exists:
                return 0
            with self._snapshot() as (store, _):
                if not delete_targets(store, ids, where, roots):
                    return 0
            encoder = self.encoder
            with transaction(self.root) as tx:
                existing = delete_targets(tx.store, ids, where, roots)
                if not existing:
                    return 0  # a concurrent writer removed them first: roll back, commit nothing
                tx.store.delete(existing)
                self._reload(finish(tx, encoder, IndexReport(), removed=existing))
            return len(existing)

    def get(
        self,
        ids: Sequence[int | str] | None = None,
        *,
        where: dict | None = None,
        limit: int | None = None,
    ) -> list[SearchResult]:
        """Stored chunks by id (in the order given; missing ids are left out) or by filter.

        Results carry ``score`` 0.0. With neither ``ids`` nor ``where``: every chunk (mind ``limit``).
        """
        if not self.exists:
            return []
        with self._snapshot() as (store, _), self._damaged():
            if ids is not None:
                ids = list(ids)
                names = store.chunks_for_doc_ids([i for i in ids if isinstance(i, str)])
                order = [names.get(i) if isinstance(i, str) else int(i) for i in ids]
                order = [i for i in order if i is not None]
                if where:
                    allowed = set(store.ids_where(where, self._manifest.get("roots", [])).tolist())
                    order = [i for i in order if i in allowed]
            else:
                order = (
                    store.ids_where(where, self._manifest.get("roots", []))
                    if where
                    else store.all_ids()
                ).tolist()
            order = order[:limit] if limit is not None else order
            records = store.get(order)
            doc_map = store.doc_ids_for_chunks(list(records))
            return [
                to_result(records[i], 0.0, doc_id=doc_map.get(i)) for i in order if i in records
            ]

    def count(self, where: dict | None = None) -> int:
        """How many chunks the index holds (matching ``where`` when given)."""
        if not self.exists:
            return 0
        with self._snapshot() as (store, _), self._damaged():
            return (
                len(store.ids_where(where, self._manifest.get("roots", [])))
                if where
                else store.count()
            )

    # ---------------------------------------------------------------- reading
    def search(
        self,
        query: str,
        k: int = DEFAULT_K,
        *,
        where=None,
        mode: str | None = None,
        fusion: str | None = None,
        dense_weight: float | None = None,
        rerank="auto",
        fetch: int | None = None,
    ) -> list[SearchResult]:
        """The ``k`` best chunks for ``query``.

        ``mode``: ``"hybrid"`` (default: dense and BM25 over the whole corpus, fused), ``"dense"``
        or ``"lexical"``; ``fusion``: ``"score"`` (default: min-max normalised scores, weighted)
        or ``"rrf"`` for hybrid, ``dense_weight`` the dense side's share in it (0-1, default 0.3;
        see ``compsearch.modes`` and benchmarks/results/search-modes.md for why).
        ``where`` filters (``compsearch.filters``): ``{"source": "docs/*.md"}``,
        ``{"year": {"$gte": 2020}}``, ``"kind=markdown"``, ... in every mode.
        ``rerank``: ``"auto"`` (exact re-scoring of an approximate index), ``"exact"``, ``"maxsim"``,
        ``"likelihood"``, ``None`` or a ``Reranker``; ``fetch``: candidates taken before reranking.
        """
        return self.search_batch(
            [query],
            k,
            where=where,
            mode=mode,
            fusion=fusion,
            dense_weight=dense_weight,
            rerank=rerank,
            fetch=fetch,
        )[0]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = DEFAULT_K,
        *,
        where=None,
        mode: str | None = None,
        fusion: str | None = None,
        dense_weight: float | None = None,
        rerank="auto",
        fetch: int | None = None,
    ) -> list[list[SearchResult]]:
        from .modes import query_vectors, resolve

        if isinstance(queries, str):
            raise TypeError("search_batch() takes a list of queries")
        if k < 1:
            raise CompsearchError("k must be at least 1")
        if any(not isinstance(q, str) or not q.strip() for q in queries):
            raise CompsearchError("queries must be non-empty strings")
        mode, fusion, rerank = resolve(mode, fusion, rerank)
        self._open_read()
        qvecs, rerank = query_vectors(self, queries, mode, rerank)
        return self.search_vectors(
            qvecs,
            k,
            where=where,
            mode=mode,
            fusion=fusion,
            dense_weight=dense_weight,
            rerank=rerank,
            fetch=fetch,
            queries=list(queries),
        )

    def search_vectors(
        self,
        qvecs: np.ndarray | None,
        k: int = DEFAULT_K,
        *,
        where=None,
        mode: str = "dense",
        fusion: str | None = None,
        dense_weight: float | None = None,
        rerank="auto",
        fetch: int | None = None,
        queries: Sequence[str] | None = None,
    ) -> list[list[SearchResult]]:
        """Search with query vectors you encoded yourself (same encoder).

        Lexical and hybrid modes also need the ``queries`` texts; lexical needs no vectors.
        """
        with self._snapshot():
            return self._search_vectors(
                qvecs, k, where, mode, fusion, dense_weight, rerank, fetch, queries
            )

    def _search_vectors(self, *args):
        with self._damaged():
            return self._search_vectors_unchecked(*args)

    @contextmanager
    def _damaged(self):
        """SQLite reporting a malformed file mid-query becomes one line, not a traceback."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise CompsearchError(
                f"index {self.root} is damaged ({exc}); compsearch verify "
                f"{self.root} tells more, rebuild it from its documents"
            ) from None

    def _search_vectors_unchecked(self, *args):
        from .modes import run

        return run(self, *args)

    def info(self) -> dict:
        """What the index holds and which encoder made it (does not load the encoder)."""
        if not self._manifest:
            raise CompsearchError(f"no index at {self.root}")
        with self._snapshot() as (store, _):
            info = dict(self._manifest)
            info["path"] = str(self.root.resolve())
            info.update(sources=len(store.sources()), memory_states=memstates.stats(store.db))
        return info
