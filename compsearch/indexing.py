"""The write path from folders to an index generation: scan, chunk, encode (or reuse), commit.

``index_paths`` is what ``Retriever.index`` runs. It works in two passes so that a run with
nothing to do costs only its file scan:

1. **Scan** (read-only, no encoder): discover files, hash them, compare with the hashes the
   current generation recorded. Nothing new, changed or gone, and the same chunking: done -- no
   encoder is loaded and no generation is written.
2. **Write** (one transaction): re-chunk the new and changed files, encode the chunks and store
   them, drop files that disappeared, commit. A chunk whose text (``embed_text``) is already in the
   index -- an unchanged paragraph of an edited file, a file that was moved or copied -- reuses the
   stored vector instead of being encoded again: vectors depend only on that text and the index's
   one encoder. Progress is reported in bytes of the files to (re)index, so the ETA is real.

``finish`` decides whether the FAISS base must be rewritten and commits (also used by
``Retriever.add``/``delete``): usually it is not, and a write costs what it changes
(``indexdir``); ``prune`` removes files that no longer exist on disk.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import memstates
from .chunking import (  # noqa: F401  (max_length, check_chunk_budget: used from here too)
    CHUNKER_VERSION,
    ChunkingConfig,
    check_chunk_budget,
    chunk_document,
    max_length,
)
from .errors import CompsearchError
from .index import VectorIndex, base_is_stale, choose_spec, fold
from .indexdir import ENCODER_DIR, encoder_entry, now
from .indexspec import AUTO
from .ingest import Candidate, Skipped, content_hash, discover, display_path, parse, read_bytes
from .shardindex import new_base
from .store import ChunkRecord

ENCODE_BATCH_CHUNKS = 256  # chunks encoded and written per step while indexing

ProgressFn = Callable[[str, int, int], None]
"""(phase, done, total): ("scan", files, files), ("encoder", 0, 0) while it loads,
("bytes", bytes done, bytes to index), ("chunks", chunks encoded, 0)."""


@dataclass
class IndexReport:
    """What one ``Retriever.index`` call did."""

    files_indexed: int = 0  # new or changed files (re-chunked and re-encoded)
    files_unchanged: int = 0
    files_removed: int = 0  # deleted from disk (or now skipped) since the last run
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_reused: int = 0  # added chunks whose vector was already in the index (not encoded)
    chunks_total: int = 0
    files_total: int = 0
    truncated: int = 0  # chunks longer than the encoder's max_length (cut)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    index_type: str = ""
    rebuilt: bool = False
    committed: bool = False  # False: nothing had changed, no generation was written
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


@dataclass
class _Scan:
    todo: list[tuple[Candidate, str]]  # (candidate, key) to (re)index
    unchanged: int
    gone: list[str]  # indexed keys under the roots, not found now
    unreadable: list[str]  # indexed keys now unreadable, empty or binary
    skipped: list[tuple[str, str]]
    todo_bytes: int


def index_paths(
    retriever,
    paths: Sequence[str | os.PathLike],
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
    """See ``Retriever.index``."""
    from .indexdir import transaction

    start = time.perf_counter()
    paths = [Path(p).expanduser() for p in paths]
    require_paths(paths)
    manifest = retriever.manifest
    old_chunking = (manifest or {}).get("chunking")
    chunking = resolve_chunking(old_chunking, chunking, chunk_tokens, overlap)
    old_version = (manifest or {}).get("chunker_version", 1)  # unrecorded: chunked by version 1
    rechunk_all = old_chunking is not None and (
        old_chunking != chunking.to_dict() or old_version != CHUNKER_VERSION
    )
    roots = [_key(p) for p in paths]
    report = IndexReport()
    scan = _scan(
        retriever,
        paths,
        roots,
        rechunk_all,
        progress,
        dict(
            include_hidden=include_hidden,
            respect_gitignore=respect_gitignore,
            max_file_bytes=max_file_bytes,
            include=include,
            exclude=exclude,
        ),
    )
    report.skipped = scan.skipped
    new_roots = set(roots) - set((manifest or {}).get("roots", []))
    nothing_to_do = (
        manifest is not None
        and not scan.todo
        and not scan.gone
        and not scan.unreadable
        and not new_roots
        and index_type in (None, manifest["index"].get("requested"))
        and memstates.unchanged(retriever, memory_states)
    )
    if nothing_to_do and _stale_lexical(retriever):
        # an index from before the lexical index: store it now, without the encoder
        from .indexdir import transaction as _tx

        with _tx(retriever.root) as tx:  # a writable store builds its lexical index on open
            retriever._reload(finish(tx, _Recorded(tx.manifest["encoder"]), report))
        report.files_unchanged = scan.unchanged
        report.seconds = time.perf_counter() - start
        return report
    if nothing_to_do:
        report.files_unchanged = scan.unchanged
        report.chunks_total = manifest.get("counts", {}).get("chunks", 0)
        report.files_total = manifest.get("counts", {}).get("files", 0)
        report.index_type = manifest["index"]["spec"]["kind"]
        report.seconds = time.perf_counter() - start
        return report

    if progress:
        progress("encoder", 0, 0)
    encoder = retriever.encoder
    check_chunk_budget(chunking, encoder)
    with transaction(retriever.root) as tx:
        store = tx.store
        states = memstates.begin(store.db, encoder, memory_states)
        known = store.files()
        removed: list[int] = []
        added: list[int] = []
        reuse: dict[str, bytes] = {}  # content hash -> vector of chunks removed in this run
        pending: list[tuple[ChunkRecord, str]] = []
        pending_files: list[tuple[str, str, os.stat_result, str, int]] = []
        done_bytes = 0

        def drop(key: str) -> None:
            reuse.update(store.vectors_by_source(key))
            removed.extend(store.delete_file(key))

        def flush() -> None:
            if pending:
                vectors = _vectors_for(pending, encoder, store, reuse, report)
                added.extend(new := store.add([r for r, _ in pending], vectors))
                if states:
                    memstates.fill(store, encoder, new, states)
                report.chunks_added += len(pending)
                if progress:
                    progress("chunks", report.chunks_added, 0)
            for path, digest, st, kind, n in pending_files:
                store.put_file(path, digest, st.st_size, st.st_mtime, kind, n, now())
            pending.clear()
            pending_files.clear()

        for key in scan.unreadable:
            if key in known:
                drop(key)
                report.files_removed += 1
        for cand, key in scan.todo:
            data = read_bytes(cand.path)
            if isinstance(data, Skipped):
                report.skipped.append((str(cand.path), data.reason))
                if key in known:
                    drop(key)
                    report.files_removed += 1
                continue
            digest = content_hash(data)
            if key in known:
                drop(key)
            doc = parse(cand, data)
            done_bytes += len(data)
            if isinstance(doc, Skipped):
                report.skipped.append((str(cand.path), doc.reason))
                report.files_removed += key in known
                continue
            chunks = chunk_document(doc, encoder.count_tokens, chunking)
            for ch in chunks:
                pending.append(
                    (
                        ChunkRecord(
                            text=ch.text,
                            source=key,
                            start_line=ch.start_line,
                            end_line=ch.end_line,
                            section=ch.section,
                            content_hash=content_hash(ch.embed_text.encode()),
                            metadata=dict(ch.metadata, kind=doc.kind),
                        ),
                        ch.embed_text,
                    )
                )
            pending_files.append((key, digest, cand.path.stat(), doc.kind, len(chunks)))
            report.files_indexed += 1
            if len(pending) >= ENCODE_BATCH_CHUNKS:
                flush()
            if progress:
                progress("bytes", done_bytes, scan.todo_bytes)
        flush()
        for key in scan.gone:
            if key in store.files():
                drop(key)
                report.files_removed += 1
        report.files_unchanged = scan.unchanged
        report.chunks_removed = len(removed)
        retriever._reload(
            finish(
                tx,
                encoder,
                report,
                chunking=chunking,
                index_type=index_type,
                added=added,
                removed=removed,
                roots=roots,
                memory_states=memory_states,
            )
        )
    report.seconds = time.perf_counter() - start
    return report


def _scan(retriever, paths, roots, rechunk_all, progress, options) -> _Scan:
    """Pass 1: what must be (re)indexed, read-only and without the encoder."""
    known: dict[str, str] = {}
    if retriever.exists:
        store, _ = retriever._open_read()
        known = store.files()
    found = list(discover(paths, **options))
    candidates = [c for c in found if isinstance(c, Candidate)]
    skipped = [(display_path(s.path), s.reason) for s in found if isinstance(s, Skipped)]
    todo, unchanged, unreadable, seen, total = [], 0, [], set(), 0
    for done, cand in enumerate(candidates, 1):
        key = _key(cand.path)
        seen.add(key)
        data = read_bytes(cand.path)
        if isinstance(data, Skipped):
            skipped.append((str(cand.path), data.reason))
            if key in known:
                unreadable.append(key)
        elif known.get(key) == content_hash(data) and not rechunk_all:
            unchanged += 1
        elif isinstance(doc := parse(cand, data), Skipped):  # empty, binary: never indexed
            skipped.append((str(cand.path), doc.reason))
            if key in known:
                unreadable.append(key)
        else:
            todo.append((cand, key))
            total += len(data)
        if progress:
            progress("scan", done, len(candidates))
    gone = [k for k in known if k not in seen and any(_under(k, r) for r in roots)]
    return _Scan(todo, unchanged, gone, unreadable, skipped, total)


def _vectors_for(
    pending, encoder, store, reuse: dict[str, bytes], report: IndexReport
) -> np.ndarray:
    """Vectors for pending chunks: reused by content hash where the index has one, else encoded."""
    dim = encoder.dim
    hashes = [r.content_hash for r, _ in pending]
    have = dict(reuse)
    have.update(store.vectors_by_hash([h for h in set(hashes) if h not in have]))
    out = np.zeros((len(pending), dim), np.float32)
    todo = []
    for i, h in enumerate(hashes):
        blob = have.get(h)
        if blob is not None and len(blob) == 4 * dim:
            out[i] = np.frombuffer(blob, dtype=np.float32)
        else:
            todo.append(i)
    report.chunks_reused += len(pending) - len(todo)
    if todo:
        out[todo] = encoder.encode([pending[i][1] for i in todo], kind="document")
        report.truncated += len(getattr(encoder, "last_truncated", []))
    return out


def finish(
    tx,
    encoder,
    report: IndexReport,
    added: Sequence[int] = (),
    removed: Sequence[int] = (),
    memory_states: str | None = None,
    *,
    chunking: ChunkingConfig | None = None,
    index_type: str | None = None,
    roots: Sequence[str] = (),
    replace_roots: bool = False,
) -> dict:
    """Decide whether the FAISS base must be rewritten, and commit; returns the new manifest.

    The base stays as it is unless the index kind changes (by size or by request: a full
    build), it gets stale (``indexdir.stale``: the chunks added since are folded into a copy and
    the deleted ones removed, no retraining; an HNSW base, which cannot remove, is rebuilt), or
    there is none yet. Otherwise the store alone changes: new chunks are searched exactly from
    their stored vectors, deleted ones are tombstones, so a small write costs what it changes.
    ``tx.manifest`` (read under the writer lock) is the generation this write changes;
    ``added``/``removed`` are kept for callers, the store knows both.
    """
    from .encoder import CONFIG_FILE

    store, old, root = tx.store, tx.manifest, tx.root
    n = store.count()
    old_spec = tx.spec
    requested = index_type or (old["index"].get("requested", AUTO) if old else AUTO)
    spec = choose_spec(n, encoder.dim, requested)
    if old_spec is None or old_spec.kind != spec.kind:
        tx.index = new_base(tx, spec, encoder.dim, encoder)
        report.rebuilt = old is not None
    elif base_is_stale(old.get("base"), store.next_id(), store.tombstone_count()):
        tx.index = _folded(tx, encoder.dim)
        if tx.index is None:  # HNSW, on-disk lists: never changed, built again
            tx.index = new_base(tx, old_spec, encoder.dim, encoder)
            report.rebuilt = True
    if tx.index is not None and tx.index.ntotal != n:
        raise CompsearchError(f"internal error: index holds {tx.index.ntotal} vectors, store {n}")
    report.chunks_total = n
    report.files_total = store.file_count()
    report.index_type = tx.spec.kind
    memstates.finish(store, encoder, memory_states)
    if hasattr(encoder, "save") and not (Path(root) / ENCODER_DIR / CONFIG_FILE).is_file():
        encoder.save(Path(root) / ENCODER_DIR)  # written once, before the first manifest
    manifest = tx.commit(
        requested=requested,
        encoder=encoder_entry(encoder),
        chunking=chunking.to_dict() if chunking else None,
        chunker_version=CHUNKER_VERSION if chunking else None,
        roots=roots,
        replace_roots=replace_roots,
    )
    report.committed = True
    return manifest


def _folded(tx, dim: int):
    """The committed base with the chunks deleted since removed and those added since added."""
    from .indexdir import index_path

    last_id = tx.manifest["base"]["last_id"]
    if tx.manifest["base"].get("lists"):
        return None  # shared, immutable on-disk lists
    dead, _ = tx.store.tombstones_after(0)
    base = VectorIndex.load(index_path(tx.root, tx.manifest), tx.spec, dim)
    return fold(base, dead[dead <= last_id], tx.store.vectors_after(last_id, dim))


def prune(retriever) -> IndexReport:
    """Remove indexed files that no longer exist on disk, and roots that are gone.

    Nothing to remove: nothing is committed. The encoder is not loaded (no vector is made).
    """
    from .indexdir import transaction

    report = IndexReport()
    if not retriever.exists:
        raise CompsearchError(f"no index at {retriever.root}")
    manifest = retriever.manifest
    store, _ = retriever._open_read()
    gone = [k for k in store.files() if not os.path.lexists(k)]
    dead_roots = [r for r in manifest.get("roots", []) if not os.path.lexists(r)]
    if not gone and not dead_roots:
        report.chunks_total = manifest.get("counts", {}).get("chunks", 0)
        report.files_total = manifest.get("counts", {}).get("files", 0)
        return report
    with transaction(retriever.root) as tx:
        removed: list[int] = []
        for key in gone:
            if key in tx.store.files():
                removed.extend(tx.store.delete_file(key))
                report.files_removed += 1
        report.chunks_removed = len(removed)
        live = [r for r in tx.manifest.get("roots", []) if r not in dead_roots]
        retriever._reload(
            finish(
                tx,
                _Recorded(tx.manifest["encoder"]),
                report,
                removed=removed,
                roots=live,
                replace_roots=True,
            )
        )
    return report


def _stale_lexical(retriever) -> bool:
    from . import lexical

    store, _ = retriever._open_read()
    return not lexical.is_current(store.db)


class _Recorded:
    """Enough of an encoder for ``finish`` when no vector is made (prune): the recorded entry."""

    def __init__(self, entry: dict):
        self.entry, self.dim = entry, int(entry["dim"])

    def manifest_entry(self) -> dict:
        return self.entry


def resolve_chunking(
    current: dict | None,
    chunking: ChunkingConfig | None = None,
    chunk_tokens: int | None = None,
    overlap: int | None = None,
) -> ChunkingConfig:
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
