"""The public API for RAG pipelines: index folders or texts, search them, get citable results.

>>> r = Retriever.open("my-index")            # created on first write
>>> report = r.index(["./docs"])              # incremental: only changed files are re-encoded
>>> hits = r.search("how do I rotate logs?", k=5, where={"source": "*/logging/*"})
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .chunking import CHUNKER_VERSION, ChunkingConfig, chunk_document
from .errors import CompsearchError
from .index import build_index, choose_spec
from .indexdir import ENCODER_DIR, encoder_entry, now, open_generation, read_manifest, transaction
from .indexspec import AUTO, IndexSpec
from .ingest import Candidate, Skipped, content_hash, discover, parse, read_bytes
from .store import ChunkRecord

ENCODE_BATCH_CHUNKS = 256          # chunks encoded and written per step while indexing


@dataclass
class SearchResult:
    """One hit: the chunk text, its score, and where it came from (path and line span)."""

    id: int
    score: float
    text: str
    source: str
    start_line: int | None = None
    end_line: int | None = None
    section: str | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def span(self) -> tuple[int, int] | None:
        return None if self.start_line is None else (self.start_line, self.end_line)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class IndexReport:
    """What one ``Retriever.index`` call did."""

    files_indexed: int = 0          # new or changed files (re-chunked and re-encoded)
    files_unchanged: int = 0
    files_removed: int = 0          # deleted from disk (or now skipped) since the last run
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_total: int = 0
    files_total: int = 0
    truncated: int = 0              # chunks longer than the encoder's max_length (cut)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)
    index_type: str = ""
    rebuilt: bool = False
    seconds: float = 0.0

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(_reason_class(r) for _, r in self.skipped).most_common())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        d["skipped_by_reason"] = self.skipped_by_reason()
        return d


def _reason_class(reason: str) -> str:
    return reason.split(" (")[0].split(":")[0]


ProgressFn = Callable[[str, int, int], None]   # ("files", done, total) or ("chunks", encoded, 0)


class Retriever:
    """A searchable index directory plus the encoder that built it."""

    def __init__(self, root: Path, encoder=None):
        self.root = Path(root)
        self._encoder = encoder
        self._manifest = read_manifest(self.root)
        self._store = None
        self._index = None
        if self._manifest and encoder is not None:
            self._check_encoder(encoder)

    @classmethod
    def open(cls, path: str | os.PathLike, encoder=None, *, must_exist: bool = False) -> "Retriever":
        """Open an index directory (created on the first write unless ``must_exist``).

        ``encoder``: an ``Encoder``, a name/path for ``Encoder.load``, or None for the encoder
        recorded in the index (or compsearch's default for a new index).
        """
        root = Path(path).expanduser()
        if isinstance(encoder, (str, os.PathLike)):
            from .encoder import Encoder

            encoder = Encoder.load(encoder)
        r = cls(root, encoder)
        if must_exist and r._manifest is None:
            raise CompsearchError(f"no index at {root} (build one with: compsearch index PATH "
                                  f"--index {root})")
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
            from .encoder import CONFIG_FILE, Encoder

            saved = self.root / ENCODER_DIR
            source = (str(saved) if (saved / CONFIG_FILE).is_file() else
                      self._manifest["encoder"]["source"] if self._manifest else "default")
            try:
                enc = Encoder.load(source)
            except CompsearchError as exc:
                raise CompsearchError(f"cannot load the encoder this index was built with "
                                      f"({source}): {exc}") from None
            if self._manifest:
                self._check_encoder(enc)
            self._encoder = enc
        return self._encoder

    def _check_encoder(self, encoder) -> None:
        want = self._manifest["encoder"]["fingerprint"]
        if encoder.fingerprint != want:
            raise CompsearchError(
                f"index {self.root} was built by encoder {want[:12]} "
                f"({self._manifest['encoder'].get('name', '?')}); the encoder given is "
                f"{encoder.fingerprint[:12]} ({encoder.name}). Vectors of different encoders "
                f"cannot be mixed: use that encoder, or rebuild into a new index directory")

    def _open_read(self):
        if self._store is None:
            if not self._manifest:
                raise CompsearchError(f"no index at {self.root} (build one with: compsearch index PATH)")
            self._store, self._index = open_generation(self.root, self._manifest)
        return self._store, self._index

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        self._store = self._index = None

    def _reload(self, manifest: dict) -> None:
        self.close()
        self._manifest = manifest

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---------------------------------------------------------------- writing
    def index(self, paths: Iterable[str | os.PathLike], *, chunking: ChunkingConfig | None = None,
              chunk_tokens: int | None = None, overlap: int | None = None,
              index_type: str | None = None, include_hidden: bool = False,
              respect_gitignore: bool = True, max_file_bytes: int = 10_000_000,
              progress: ProgressFn | None = None) -> IndexReport:
        """Index files and folders incrementally and commit atomically.

        Files whose content hash is unchanged are skipped, changed files are re-chunked and
        re-encoded, and files that disappeared from the given folders are removed. A different
        chunking config, or an index chunked by another ``CHUNKER_VERSION``, re-chunks everything.

        Chunking: a whole ``chunking`` config, or only ``chunk_tokens`` and/or ``overlap`` changed
        from the index's current config (see ``resolve_chunking``); neither keeps the index's. The
        chunk budget may not exceed the encoder's ``max_length``.
        """
        start = time.perf_counter()
        paths = [Path(p).expanduser() for p in paths]
        require_paths(paths)
        report = IndexReport()
        old_chunking = (self._manifest or {}).get("chunking")
        chunking = resolve_chunking(old_chunking, chunking, chunk_tokens, overlap)
        encoder = self.encoder
        check_chunk_budget(chunking, encoder)
        # indexes written before the version was recorded were chunked by version 1
        old_version = (self._manifest or {}).get("chunker_version", 1)
        rechunk_all = old_chunking is not None and (old_chunking != chunking.to_dict()
                                                    or old_version != CHUNKER_VERSION)
        roots = [_key(p) for p in paths]

        with transaction(self.root) as tx:
            store = tx.store
            known = store.files()
            added_ids: list[int] = []
            removed_ids: list[int] = []
            seen: set[str] = set()
            pending: list[tuple[ChunkRecord, str]] = []
            pending_files: list[tuple[str, str, os.stat_result, str, int]] = []

            def flush():
                """Encode the pending chunks, store them, then record their files as indexed."""
                if pending:
                    vectors = encoder.encode([t for _, t in pending], kind="document")
                    report.truncated += len(encoder.last_truncated)
                    added_ids.extend(store.add([r for r, _ in pending], vectors))
                    report.chunks_added += len(pending)
                    if progress:
                        progress("chunks", report.chunks_added, 0)
                for path, digest, st, kind, n in pending_files:
                    store.put_file(path, digest, st.st_size, st.st_mtime, kind, n, now())
                pending.clear()
                pending_files.clear()

            found = list(discover(paths, include_hidden=include_hidden,
                                  respect_gitignore=respect_gitignore, max_file_bytes=max_file_bytes))
            candidates = [c for c in found if isinstance(c, Candidate)]
            report.skipped.extend((str(s.path), s.reason) for s in found if isinstance(s, Skipped))
            for done, cand in enumerate(candidates, 1):
                key = _key(cand.path)
                seen.add(key)
                data = read_bytes(cand.path)
                if isinstance(data, Skipped):
                    report.skipped.append((str(cand.path), data.reason))
                    if key in known:
                        removed_ids += store.delete_file(key)
                        report.files_removed += 1
                    continue
                digest = content_hash(data)
                if known.get(key) == digest and not rechunk_all:
                    report.files_unchanged += 1
                else:
                    if key in known:
                        removed_ids += store.delete_file(key)
                    doc = parse(cand, data)
                    if isinstance(doc, Skipped):
                        report.skipped.append((str(cand.path), doc.reason))
                        report.files_removed += key in known
                        continue
                    chunks = chunk_document(doc, encoder.count_tokens, chunking)
                    for ch in chunks:
                        pending.append((ChunkRecord(
                            text=ch.text, source=key, start_line=ch.start_line, end_line=ch.end_line,
                            section=ch.section, content_hash=content_hash(ch.embed_text.encode()),
                            metadata=dict(ch.metadata, kind=doc.kind)), ch.embed_text))
                    pending_files.append((key, digest, cand.path.stat(), doc.kind, len(chunks)))
                    report.files_indexed += 1
                    if len(pending) >= ENCODE_BATCH_CHUNKS:
                        flush()
                if progress:
                    progress("files", done, len(candidates))
            flush()
            # Files under the indexed folders that are gone (or now skipped) leave the index.
            current = store.files()
            for key in known:
                if key in current and key not in seen and any(_under(key, r) for r in roots):
                    removed_ids += store.delete_file(key)
                    report.files_removed += 1
            report.chunks_removed = len(removed_ids)
            self._finish(tx, encoder, chunking, index_type, added_ids, removed_ids, report, roots)
        report.seconds = time.perf_counter() - start
        return report

    def add(self, texts: Sequence[str], metadata: Sequence[dict] | dict | None = None, *,
            source: str = "<api>", vectors: np.ndarray | None = None) -> list[int]:
        """Add raw texts (each one chunk) with optional metadata; returns their ids.

        ``metadata`` may hold ``source``; other keys are filterable with ``search(where=...)``.
        ``vectors``: embeddings you already computed *with this index's encoder* (skips encoding).
        """
        if isinstance(texts, str):
            raise TypeError("add() takes a list of strings")
        if isinstance(metadata, dict) or metadata is None:
            metadata = [dict(metadata or {}) for _ in texts]
        if len(metadata) != len(texts):
            raise CompsearchError("add(): one metadata dict per text")
        encoder = self.encoder
        records = []
        for text, meta in zip(texts, metadata):
            if not isinstance(text, str) or not text.strip():
                raise CompsearchError("add(): texts must be non-empty strings")
            meta = dict(meta)
            records.append(ChunkRecord(text=text, source=str(meta.pop("source", source)),
                                       content_hash=content_hash(text.encode()), metadata=meta))
        report = IndexReport()
        if vectors is None:
            vectors = encoder.encode(list(texts), kind="document")
            report.truncated = len(encoder.last_truncated)
        elif np.shape(vectors) != (len(texts), encoder.dim):
            raise CompsearchError(f"add(): vectors must have shape ({len(texts)}, {encoder.dim}), "
                                  f"not {np.shape(vectors)}")
        with transaction(self.root) as tx:
            ids = tx.store.add(records, vectors)
            report.chunks_added = len(ids)
            self._finish(tx, encoder, None, None, ids, [], report, [])
        return ids

    def delete(self, ids: Sequence[int] | None = None, *, where: dict | None = None) -> int:
        """Remove chunks by id or filter; returns how many were removed."""
        encoder = self.encoder
        with transaction(self.root) as tx:
            targets = list(ids or [])
            if where:
                roots = (self._manifest or {}).get("roots", [])
                targets += tx.store.ids_where(where, roots).tolist()
            existing = [i for i in tx.store.get(targets)]
            tx.store.delete(existing)
            self._finish(tx, encoder, None, None, [], existing, IndexReport(), [])
        return len(existing)

    def _finish(self, tx, encoder, chunking, index_type, added, removed, report, roots) -> None:
        """Bring the vector index up to date with the store and commit the generation."""
        from .encoder import CONFIG_FILE

        store = tx.store
        n = store.count()
        old = self._manifest
        old_spec = IndexSpec.from_dict(old["index"]["spec"]) if old else None
        requested = index_type or (old["index"].get("requested", AUTO) if old else AUTO)
        spec = choose_spec(n, encoder.dim, requested)
        same_kind = old_spec is not None and old_spec.kind == spec.kind and tx.index is not None
        if same_kind and (tx.index.supports_remove or not removed):
            if removed:
                tx.index.remove(np.array(removed, dtype=np.int64))
            if added:
                tx.index.add(np.array(added, dtype=np.int64), store.vectors(added, encoder.dim))
        else:
            tx.index = build_index(spec, encoder.dim, n, lambda: store.iter_vectors(encoder.dim))
            report.rebuilt = old is not None
        if tx.index.ntotal != n:
            raise CompsearchError(f"internal error: index holds {tx.index.ntotal} vectors, store {n}")
        report.chunks_total = n
        report.files_total = store.file_count()
        report.index_type = tx.index.spec.kind
        if not (self.root / ENCODER_DIR / CONFIG_FILE).is_file():
            encoder.save(self.root / ENCODER_DIR)   # written once, before the first manifest
        self._reload(tx.commit(
            requested=requested, encoder=encoder_entry(encoder),
            chunking=chunking.to_dict() if chunking else None,
            chunker_version=CHUNKER_VERSION if chunking else None, roots=roots))

    # ---------------------------------------------------------------- reading
    def search(self, query: str, k: int = 10, *, where=None, mode: str | None = None,
               fusion: str | None = None, dense_weight: float | None = None, rerank="auto",
               fetch: int | None = None) -> list[SearchResult]:
        """The ``k`` best chunks for ``query``.

        ``mode``: ``"hybrid"`` (default: dense and BM25 over the whole corpus, fused), ``"dense"``
        or ``"lexical"``; ``fusion``: ``"score"`` (default: min-max normalised scores, weighted)
        or ``"rrf"`` for hybrid, ``dense_weight`` the dense side's share in it (0-1, default 0.3;
        see ``compsearch.modes`` and benchmarks/results/search-modes.md for why).
        ``where`` filters (``compsearch.filters``): ``{"source": "docs/*.md"}``,
        ``{"year": {"$gte": 2020}}``, ``"kind=markdown"``, ... in every mode.
        ``rerank``: ``"auto"`` (exact re-scoring when the index is approximate), ``"exact"``,
        ``None``, or a ``Reranker`` object (``"hybrid"`` is the old name of ``mode="hybrid"``).
        ``fetch``: candidates taken before reranking.
        """
        return self.search_batch([query], k, where=where, mode=mode, fusion=fusion,
                                 dense_weight=dense_weight, rerank=rerank, fetch=fetch)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10, *, where=None,
                     mode: str | None = None, fusion: str | None = None,
                     dense_weight: float | None = None, rerank="auto",
                     fetch: int | None = None) -> list[list[SearchResult]]:
        from .modes import resolve

        if isinstance(queries, str):
            raise TypeError("search_batch() takes a list of queries")
        if k < 1:
            raise CompsearchError("k must be at least 1")
        if any(not isinstance(q, str) or not q.strip() for q in queries):
            raise CompsearchError("queries must be non-empty strings")
        mode, fusion, rerank = resolve(mode, fusion, rerank)
        self._open_read()
        needs_vectors = mode != "lexical" or hasattr(rerank, "rerank")
        qvecs = self.encoder.encode(list(queries), kind="query") if needs_vectors else None
        return self.search_vectors(qvecs, k, where=where, mode=mode, fusion=fusion,
                                   dense_weight=dense_weight, rerank=rerank, fetch=fetch,
                                   queries=list(queries))

    def search_vectors(self, qvecs: np.ndarray | None, k: int = 10, *, where=None,
                       mode: str = "dense", fusion: str | None = None,
                       dense_weight: float | None = None, rerank="auto",
                       fetch: int | None = None,
                       queries: Sequence[str] | None = None) -> list[list[SearchResult]]:
        """Search with query vectors you encoded yourself (same encoder).

        Lexical and hybrid modes also need the ``queries`` texts; lexical needs no vectors.
        """
        from . import modes
        from .filters import parse
        from .rerank import get_reranker

        mode, fusion, rerank = modes.resolve(mode, fusion, rerank)
        if mode != "dense" and queries is None:
            raise CompsearchError(f"search mode {mode!r} needs the query texts")
        if mode != "lexical" and qvecs is None:
            raise CompsearchError(f"search mode {mode!r} needs query vectors")
        n_queries = len(queries) if queries is not None else len(qvecs)
        store, index = self._open_read()
        where, roots = parse(where), self._manifest.get("roots", [])
        reranker = get_reranker(rerank, exact_index=index.spec.exact)
        fetch = max(k, fetch or (k * 4 if reranker is not None else k))
        allowed = store.ids_where(where, roots) if where and mode != "lexical" else None
        extras: list[dict] = [{} for _ in range(n_queries)]
        if mode == "dense":
            hits = modes.dense(store, index, qvecs, fetch, allowed)
        elif mode == "lexical":
            hits = modes.lexical(store, queries, fetch, where, roots)
            reranker = reranker if hasattr(rerank, "rerank") else None  # BM25 order is final
        else:
            depth = max(modes.HYBRID_DEPTH, fetch)
            dense = modes.dense(store, index, qvecs, depth, allowed, exact=not index.spec.exact)
            lex = modes.lexical(store, queries, depth, where, roots)
            hits, extras = [], []
            for q, d, lx in zip(queries, dense, lex):
                literal = store.literal_matches(q, modes.PROMOTE_MAX, where, roots)
                fused = modes.fuse(d, lx, fusion, literal, dense_weight)[:fetch]
                hits.append([(s, i) for s, i, _ in fused])
                extras.append({i: e for _, i, e in fused})
            reranker = reranker if hasattr(rerank, "rerank") else None  # fused order is final
        out = []
        for qi in range(n_queries):
            records = store.get([i for _, i in hits[qi]])
            results = [_result(records[i], s, extras[qi].get(i)) for s, i in hits[qi]
                       if i in records]
            if reranker is not None:
                q = queries[qi] if queries else ""
                results = reranker.rerank(q, None if qvecs is None else qvecs[qi], results, self)
            out.append(results[:k])
        return out

    def info(self) -> dict:
        """What the index holds and which encoder made it (does not load the encoder)."""
        if not self._manifest:
            raise CompsearchError(f"no index at {self.root}")
        store, _ = self._open_read()
        info = dict(self._manifest)
        info["path"] = str(self.root.resolve())
        info["sources"] = len(store.sources())
        return info


def resolve_chunking(current: dict | None, chunking: ChunkingConfig | None = None,
                     chunk_tokens: int | None = None, overlap: int | None = None) -> ChunkingConfig:
    """The chunking config an ``index`` run uses (the one place this policy is decided).

    ``chunking`` wins whole; else ``chunk_tokens``/``overlap`` change the index's ``current``
    config (or the default): a new budget keeps the overlap, scaled to an eighth of the budget
    when it no longer fits; neither given keeps ``current``.
    """
    if chunking is not None and (chunk_tokens is not None or overlap is not None):
        raise CompsearchError("give either a chunking config or chunk_tokens/overlap, not both")
    if chunking is not None:
        return chunking
    base = ChunkingConfig.from_dict(current) if current else ChunkingConfig()
    if chunk_tokens is None and overlap is None:
        return base
    max_tokens = chunk_tokens if chunk_tokens is not None else base.max_tokens
    if overlap is None:
        overlap = base.overlap_tokens if base.overlap_tokens < max_tokens else max_tokens // 8
    try:
        return ChunkingConfig(max_tokens=max_tokens, overlap_tokens=overlap)
    except ValueError as exc:
        raise CompsearchError(str(exc)) from None


def check_chunk_budget(chunking: ChunkingConfig, encoder) -> None:
    """A chunk budget above the encoder's ``max_length`` would have every long chunk cut when
    encoded (its tail unsearchable): refuse it."""
    limit = encoder.config.max_length
    if chunking.max_tokens > limit:
        raise CompsearchError(f"a chunk budget of {chunking.max_tokens} tokens is above the encoder's "
                              f"max_length of {limit}: use --chunk-tokens {limit} or less")


def require_paths(paths: Sequence[Path]) -> None:
    """At least one of the paths must exist (missing ones among others are reported as skipped)."""
    if not paths:
        raise CompsearchError("no paths given to index")
    if not any(Path(p).exists() or Path(p).is_symlink() for p in paths):
        raise CompsearchError("nothing to index: " + ", ".join(f"{p} not found" for p in paths))


def _key(path: Path) -> str:
    """How a file is named in the index: absolute and normalised, symlinks kept as given."""
    return os.path.abspath(path)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _result(rec: ChunkRecord, score: float, extra: dict | None = None) -> SearchResult:
    return SearchResult(id=rec.id, score=score, text=rec.text, source=rec.source,
                        start_line=rec.start_line, end_line=rec.end_line, section=rec.section,
                        metadata=dict(rec.metadata, **extra) if extra else rec.metadata)
