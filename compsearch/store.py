"""The chunk store: one SQLite file with every chunk's text, citation, metadata and vector.

Chunk ids are int64, assigned from a counter that never goes back, so an id names one chunk for the
life of an index and the FAISS index can refer to it. The float32 vector of every chunk is kept
here: it feeds exact re-scoring after approximate search and rebuilding an index without
re-encoding anything. The lexical (FTS5) index of the same chunks lives in this file too
(``lexical.py``), kept in step by ``add``/``delete`` in the same transaction, and filters are
compiled to SQL by ``filters.py``.

An index's live store is updated in place (``indexdir``: WAL journal, one writer, readers see the
last commit), so what a write changes must be findable without reading everything:

- ``meta`` keeps counters (``chunk_count``) and the committed manifest, so a commit never counts
  the whole table;
- ``tombstones`` lists every chunk deleted since the FAISS base file was built (the base still
  holds their vectors; searches exclude them until the next base);
- ``content_digest`` is the XOR of a 128-bit hash of every chunk, caller id, file and memory-state
  row (``digest_covers``; digests of older stores, without the states, are kept until their next
  write recomputes them, once), updated
  with each row a write adds or removes (O(what changed)); ``check`` recomputes it over the whole
  store, so ``verify`` finds a flipped byte inside a text or a vector that SQLite's structural
  ``integrity_check`` cannot see (a whole-file digest cannot exist for a file changed in place).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from . import filters, lexical
from .errors import CompsearchError
from .storefile import (  # noqa: F401  (SCHEMA and REQUIRED_COLUMNS re-exported)
    CHUNK_COLUMNS,
    COUNT_KEY,
    COVERS,
    COVERS_KEY,
    DIGEST_KEY,
    GENERATION_KEY,
    MANIFEST_KEY,
    REQUIRED_COLUMNS,
    SCHEMA,
    check_schema,
    connect_readonly,
    full_digest,
    row_hash,
    state_rows,
)


@dataclass
class ChunkRecord:
    """A chunk as stored: what a search result shows and cites."""

    text: str
    source: str
    start_line: int | None = None
    end_line: int | None = None
    section: str | None = None
    content_hash: str = ""
    metadata: dict = field(default_factory=dict)
    id: int | None = None


class Store:
    """One connection to a chunk store. Transactions are explicit (``begin_write``/``commit``/
    ``rollback``, ``begin_read``/``end_read``): SQLite's autocommit mode, nothing implicit."""

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._digest: int | None = None  # the XOR digest while a write is open
        self._count: int | None = None
        try:
            if readonly:
                if not self.path.is_file():
                    raise CompsearchError(f"chunk store {self.path} is missing")
                self.db = connect_readonly(self.path)
            else:
                self.db = sqlite3.connect(
                    self.path, check_same_thread=False, isolation_level=None, timeout=60
                )
                self.db.executescript(SCHEMA)
            check_schema(self.db, self.path)
            self.db.execute("SELECT id FROM chunks LIMIT 1").fetchone()  # readable at all
            if not readonly and not lexical.is_current(self.db):
                self.db.execute("BEGIN IMMEDIATE")  # an index from before the lexical index
                lexical.ensure(self.db)
                self.db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise CompsearchError(
                f"chunk store {self.path} is unreadable or corrupt ({exc})"
            ) from None

    def close(self) -> None:
        self.db.close()

    # ---------------------------------------------------------------- transactions
    def begin_write(self, track: bool = True) -> None:
        """Take SQLite's write lock and start the one transaction of a write.

        ``track``: keep the counters and the content digest (a store without them gets them now,
        O(store) once); an index from before the lexical index gains it in this transaction.
        """
        self.db.execute("BEGIN IMMEDIATE")
        lexical.ensure(self.db)
        if track:
            count, digest = self._meta(COUNT_KEY, ""), self._meta(DIGEST_KEY, "")
            self._count = int(count) if count else self._count_rows()
            covers = self._meta(COVERS_KEY, "") == COVERS  # older digests lack memory states
            self._digest = int(digest, 16) if digest and covers else self.full_digest()

    def commit(self) -> None:
        """Store the counters and commit (the commit point of a write)."""
        if self._digest is not None:
            self._set_meta(DIGEST_KEY, f"{self._digest:032x}")
            self._set_meta(COVERS_KEY, COVERS)
            self._set_meta(COUNT_KEY, str(self._count))
        if self.db.in_transaction:
            self.db.execute("COMMIT")
        self._digest = self._count = None

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self._digest = self._count = None

    def begin_read(self) -> None:
        """Pin one snapshot (WAL): every read until ``end_read`` sees the same commit."""
        if not self.db.in_transaction:
            self.db.execute("BEGIN")
            self.db.execute("SELECT 1 FROM meta LIMIT 1").fetchall()

    def end_read(self) -> None:
        if self.db.in_transaction and self._digest is None:
            self.db.execute("COMMIT")

    def _xor(self, kind: str, rows) -> None:
        if self._digest is not None:
            for row in rows:
                self._digest ^= row_hash(kind, row)

    def full_digest(self) -> int:
        return full_digest(self.db)

    def _count_rows(self) -> int:
        return self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def _forget(self, ids: list[int]) -> list[int]:
        """Digest out the chunks ``ids`` (and their caller ids) about to be deleted; tombstone
        them; returns the ids that exist."""
        found = []
        for part in _batches(ids, 500):
            q = ",".join("?" * len(part))
            rows = self.db.execute(f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE id IN ({q})", part)
            rows = rows.fetchall()
            self._xor("chunk", rows)
            self._xor("state", state_rows(self.db, part))  # their trigger deletes these
            self._xor(
                "doc",
                self.db.execute(
                    f"SELECT doc_id, chunk_id FROM doc_ids WHERE chunk_id IN ({q})", part
                ).fetchall(),
            )
            found += [r[0] for r in rows]
        self.db.executemany("INSERT INTO tombstones (id) VALUES (?)", [(i,) for i in found])
        if self._count is not None:
            self._count -= len(found)
        return found

    # ---------------------------------------------------------------- index state
    def generation(self) -> int:
        """The committed generation (0: none yet, or a store from before in-place writes)."""
        return int(self._meta(GENERATION_KEY, "0"))

    def manifest(self) -> dict | None:
        raw = self._meta(MANIFEST_KEY, "")
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise CompsearchError(f"chunk store {self.path} is damaged: its manifest row") from None

    def set_manifest(self, manifest: dict) -> None:
        self._set_meta(MANIFEST_KEY, json.dumps(manifest, sort_keys=True))
        self._set_meta(GENERATION_KEY, str(manifest["generation"]))

    def next_id(self) -> int:
        return int(self._meta("next_id", "0"))

    def vectors_after(
        self, last_id: int, dim: int, batch: int = 8192
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of the chunks with ids above ``last_id`` (added since), in id order."""
        cur = self.db.execute("SELECT id, vector FROM chunks WHERE id > ? ORDER BY id", (last_id,))
        while rows := cur.fetchmany(batch):
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            yield ids, np.stack([np.frombuffer(r[1], dtype=np.float32, count=dim) for r in rows])

    def tombstones_after(self, seq: int) -> tuple[np.ndarray, int]:
        """Chunk ids deleted since tombstone ``seq`` (rowid), and the last seq seen."""
        rows = self.db.execute(
            "SELECT rowid, id FROM tombstones WHERE rowid > ? ORDER BY rowid", (seq,)
        ).fetchall()
        return np.array([r[1] for r in rows], dtype=np.int64), (rows[-1][0] if rows else seq)

    def tombstone_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM tombstones").fetchone()[0]

    def clear_tombstones(self) -> None:
        """A new base file holds no deleted vector: forget the tombstones."""
        self.db.execute("DELETE FROM tombstones")

    # ---------------------------------------------------------------- counters
    def _meta(self, key: str, default: str) -> str:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # ---------------------------------------------------------------- chunks
    def add(self, records: Sequence[ChunkRecord], vectors: np.ndarray) -> list[int]:
        """Insert chunks with their vectors; returns the new ids (never reused)."""
        if len(records) != len(vectors):
            raise ValueError("one vector per record")
        start = int(self._meta("next_id", "0"))
        ids = list(range(start, start + len(records)))
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.db.executemany(
            "INSERT INTO chunks (id, source, start_line, end_line, section, text, content_hash,"
            " metadata, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    i,
                    r.source,
                    r.start_line,
                    r.end_line,
                    r.section,
                    r.text,
                    r.content_hash,
                    json.dumps(r.metadata, sort_keys=True),
                    v.tobytes(),
                )
                for i, r, v in zip(ids, records, vectors)
            ],
        )
        lexical.add(self.db, ids, [r.text for r in records])
        self._set_meta("next_id", str(start + len(records)))
        if self._digest is not None:
            for i, r, v in zip(ids, records, vectors):
                meta = json.dumps(r.metadata, sort_keys=True)
                row = (i, r.source, r.start_line, r.end_line, r.section, r.text)
                self._xor("chunk", [(*row, r.content_hash, meta, v.tobytes())])
            self._count += len(ids)
        return ids

    def delete(self, ids: Iterable[int]) -> None:
        ids = self._forget(sorted({int(i) for i in ids}))
        self.db.executemany("DELETE FROM chunks WHERE id = ?", [(i,) for i in ids])
        lexical.delete(self.db, ids)

    def ids_for_source(self, source: str) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT id FROM chunks WHERE source = ?", (source,))]

    def get(self, ids: Sequence[int]) -> dict[int, ChunkRecord]:
        out: dict[int, ChunkRecord] = {}
        for part in _batches(list(ids), 500):
            q = ",".join("?" * len(part))
            for row in self.db.execute(
                "SELECT id, source, start_line, end_line, section, text, content_hash, metadata"
                f" FROM chunks WHERE id IN ({q})",
                [int(i) for i in part],
            ):
                out[row[0]] = ChunkRecord(
                    id=row[0],
                    source=row[1],
                    start_line=row[2],
                    end_line=row[3],
                    section=row[4],
                    text=row[5],
                    content_hash=row[6],
                    metadata=json.loads(row[7]),
                )
        return out

    def vectors(self, ids: Sequence[int], dim: int) -> np.ndarray:
        """Stored float32 vectors, in the order of ``ids``."""
        found: dict[int, bytes] = {}
        for part in _batches(list(ids), 500):
            q = ",".join("?" * len(part))
            found.update(
                self.db.execute(
                    f"SELECT id, vector FROM chunks WHERE id IN ({q})", [int(i) for i in part]
                )
            )
        missing = [i for i in ids if int(i) not in found]
        if missing:
            raise CompsearchError(
                f"index refers to chunk ids missing from the store: {missing[:5]}"
            )
        return (
            np.stack([np.frombuffer(found[int(i)], dtype=np.float32, count=dim) for i in ids])
            if len(ids)
            else np.zeros((0, dim), np.float32)
        )

    def iter_vectors(self, dim: int, batch: int = 8192) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (ids, vectors) in id order, in batches (for rebuilding an index)."""
        cur = self.db.execute("SELECT id, vector FROM chunks ORDER BY id")
        while rows := cur.fetchmany(batch):
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            yield ids, np.stack([np.frombuffer(r[1], dtype=np.float32, count=dim) for r in rows])

    def count(self) -> int:
        """Chunks in the store (the counter a write keeps, without scanning the table)."""
        if self._count is not None:
            return self._count
        counted = self._meta(COUNT_KEY, "")
        return int(counted) if counted else self._count_rows()

    def all_ids(self) -> np.ndarray:
        return np.array(
            [r[0] for r in self.db.execute("SELECT id FROM chunks ORDER BY id")], dtype=np.int64
        )

    def ids_where(self, where, roots: Sequence[str] = ()) -> np.ndarray:
        """Chunk ids matching a filter (grammar in ``filters.py``), in id order.

        ``roots``: the indexed folders, so ``source`` paths and globs also match relative paths.
        """
        sql, params = filters.compile(where, roots)
        return np.array(
            [
                r[0]
                for r in self._filtered(f"SELECT id FROM chunks WHERE {sql} ORDER BY id", params)
            ],
            dtype=np.int64,
        )

    def lexical_search(
        self, query: str, k: int, where=None, roots: Sequence[str] = ()
    ) -> list[tuple[float, int]]:
        """BM25 over the whole corpus (FTS5): ``(score, id)`` best first, filtered like search."""
        sql, params = filters.compile(where, roots)
        return self._filtered(None, params, lambda: lexical.search(self.db, query, k, sql, params))

    def literal_matches(
        self, query: str, limit: int, where=None, roots: Sequence[str] = ()
    ) -> list[int] | None:
        """Chunks holding every identifier-like token of ``query`` verbatim, if ``limit`` or fewer."""
        sql, params = filters.compile(where, roots)
        return self._filtered(
            None, params, lambda: lexical.literal_matches(self.db, query, limit, sql, params)
        )

    def _filtered(self, sql, params, run=None):
        try:
            return run() if run else self.db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:  # e.g. malformed JSON in stored metadata
            raise CompsearchError(f"filter could not be applied: {exc}") from None

    # ---------------------------------------------------------------- vectors by content
    def vectors_by_hash(self, hashes: Sequence[str]) -> dict[str, bytes]:
        """content hash -> a stored vector (raw float32 bytes) of a chunk with that ``embed_text``."""
        out: dict[str, bytes] = {}
        for part in _batches(list(hashes), 500):
            q = ",".join("?" * len(part))
            out.update(
                self.db.execute(
                    f"SELECT content_hash, vector FROM chunks WHERE content_hash IN ({q})", part
                )
            )
        return out

    def vectors_by_source(self, source: str) -> dict[str, bytes]:
        """content hash -> vector of every chunk of one source (kept for reuse before a delete)."""
        return dict(
            self.db.execute("SELECT content_hash, vector FROM chunks WHERE source = ?", (source,))
        )

    # ---------------------------------------------------------------- caller-chosen ids
    def _has_doc_ids(self) -> bool:
        """Stores written before string ids existed have no ``doc_ids`` table (added on write)."""
        return (
            self.db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'doc_ids'"
            ).fetchone()
            is not None
        )

    def set_doc_ids(self, pairs: Sequence[tuple[str, int]]) -> None:
        """Name chunks with the caller's string ids (one chunk per id)."""
        rows = [(str(d), int(c)) for d, c in pairs]
        self.db.executemany("INSERT INTO doc_ids (doc_id, chunk_id) VALUES (?, ?)", rows)
        self._xor("doc", rows)

    def chunks_for_doc_ids(self, doc_ids: Sequence[str]) -> dict[str, int]:
        """doc id -> chunk id, for the ids that exist."""
        if not doc_ids or not self._has_doc_ids():
            return {}
        out: dict[str, int] = {}
        for part in _batches([str(d) for d in doc_ids], 500):
            q = ",".join("?" * len(part))
            out.update(
                self.db.execute(f"SELECT doc_id, chunk_id FROM doc_ids WHERE doc_id IN ({q})", part)
            )
        return out

    def doc_ids_for_chunks(self, chunk_ids: Sequence[int]) -> dict[int, str]:
        """chunk id -> doc id, for the chunks that have one."""
        if not len(chunk_ids) or not self._has_doc_ids():
            return {}
        out: dict[int, str] = {}
        for part in _batches([int(c) for c in chunk_ids], 500):
            q = ",".join("?" * len(part))
            out.update(
                self.db.execute(
                    f"SELECT chunk_id, doc_id FROM doc_ids WHERE chunk_id IN ({q})", part
                )
            )
        return out

    # ---------------------------------------------------------------- files
    def files(self) -> dict[str, str]:
        """Indexed file path -> sha256 of its content."""
        return dict(self.db.execute("SELECT path, sha256 FROM files"))

    def file_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM files").fetchone()[0]

    def put_file(
        self, path: str, sha256: str, size: int, mtime: float, kind: str, n_chunks: int, when: str
    ) -> None:
        self._forget_file(path)
        row = (path, sha256, size, mtime, kind, n_chunks, when)
        self.db.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", row)
        self._xor("file", [row])

    def _forget_file(self, path: str) -> None:
        self._xor("file", self.db.execute("SELECT * FROM files WHERE path = ?", (path,)))
        self.db.execute("DELETE FROM files WHERE path = ?", (path,))

    def delete_file(self, path: str) -> list[int]:
        """Forget a file and its chunks; returns the removed chunk ids."""
        ids = self._forget(self.ids_for_source(path))
        self.db.execute("DELETE FROM chunks WHERE source = ?", (path,))
        lexical.delete(self.db, ids)
        self._forget_file(path)
        return ids

    def sources(self) -> list[tuple[str, int]]:
        return list(
            self.db.execute("SELECT source, count(*) FROM chunks GROUP BY source ORDER BY source")
        )

    def check(self) -> list[str]:
        """SQLite's own integrity check plus our invariants; returns problems found."""
        problems = [r[0] for r in self.db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        bad = self.db.execute(
            "SELECT count(*) FROM chunks WHERE length(vector) % 4 != 0"
        ).fetchone()[0]
        if bad:
            problems.append(f"{bad} chunks have a malformed vector")
        orphans = self.db.execute(
            "SELECT count(*) FROM files f WHERE n_chunks != (SELECT count(*) FROM chunks c"
            " WHERE c.source = f.path)"
        ).fetchone()[0]
        if orphans:
            problems.append(f"{orphans} files disagree with their chunk counts")
        counted, recorded = self._meta(COUNT_KEY, ""), self._meta(DIGEST_KEY, "")
        if counted and int(counted) != self._count_rows():
            problems.append(f"the store counts {counted} chunks but holds {self._count_rows()}")
        if recorded:
            covers = self._meta(COVERS_KEY, "") == COVERS
            try:
                same = int(recorded, 16) == full_digest(self.db, states=covers)
            except sqlite3.OperationalError:  # a text no longer valid UTF-8
                same = False
            if not same:
                problems.append(
                    f"{self.path.name} differs from the digest recorded at its last commit "
                    "(a changed text, vector, id or file row)"
                )
        return problems + lexical.check(self.db)


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
