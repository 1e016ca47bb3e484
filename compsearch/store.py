"""The chunk store: one SQLite file with every chunk's text, citation, metadata and vector.

Chunk ids are int64, assigned from a counter that never goes back, so an id names one chunk for the
life of an index and the FAISS index can refer to it. The float32 vector of every chunk is kept
here: it feeds exact re-scoring after approximate search and rebuilding an index without
re-encoding anything. The lexical (FTS5) index of the same chunks lives in this file too
(``lexical.py``), kept in step by ``add``/``delete`` in the same transaction, and filters are
compiled to SQL by ``filters.py``.
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

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL,
    kind TEXT NOT NULL, n_chunks INTEGER NOT NULL, indexed_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, start_line INTEGER, end_line INTEGER,
    section TEXT, text TEXT NOT NULL, content_hash TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}', vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source);
CREATE TABLE IF NOT EXISTS doc_ids (doc_id TEXT PRIMARY KEY, chunk_id INTEGER NOT NULL UNIQUE);
CREATE TRIGGER IF NOT EXISTS chunks_forget_doc_id AFTER DELETE ON chunks
    BEGIN DELETE FROM doc_ids WHERE chunk_id = old.id; END;
"""


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


REQUIRED_COLUMNS = {
    "chunks": {
        "id",
        "source",
        "start_line",
        "end_line",
        "section",
        "text",
        "content_hash",
        "metadata",
        "vector",
    },
    "files": {"path", "sha256", "size", "mtime", "kind", "n_chunks", "indexed_at"},
    "meta": {"key", "value"},
}


def _check_schema(db: sqlite3.Connection, path: Path) -> None:
    """The store's tables are tables (a view could recurse for ever) with the columns we read."""
    for table, columns in REQUIRED_COLUMNS.items():
        row = db.execute("SELECT type FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        if row is None or row[0] != "table":
            what = "missing" if row is None else f"a {row[0]}, not a table"
            raise CompsearchError(f"chunk store {path} is damaged: {table} is {what}")
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        if not columns <= have:
            raise CompsearchError(
                f"chunk store {path} is damaged: {table} lacks {', '.join(sorted(columns - have))}"
            )


class Store:
    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        try:
            if readonly:
                if not self.path.is_file():
                    raise CompsearchError(f"chunk store {self.path} is missing")
                self.db = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, check_same_thread=False
                )
            else:
                self.db = sqlite3.connect(self.path, check_same_thread=False)
                self.db.executescript(SCHEMA)
            _check_schema(self.db, self.path)
            self.db.execute("SELECT count(*) FROM chunks").fetchone()
            if not readonly:  # an index from before the lexical index gains it on this write
                lexical.ensure(self.db)
        except sqlite3.DatabaseError as exc:
            raise CompsearchError(
                f"chunk store {self.path} is unreadable or corrupt ({exc})"
            ) from None

    def close(self) -> None:
        self.db.close()

    def commit(self) -> None:
        self.db.commit()

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
        return ids

    def delete(self, ids: Iterable[int]) -> None:
        ids = [int(i) for i in ids]
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
        return self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]

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
        self.db.executemany(
            "INSERT INTO doc_ids (doc_id, chunk_id) VALUES (?, ?)",
            [(str(d), int(c)) for d, c in pairs],
        )

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
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
            (path, sha256, size, mtime, kind, n_chunks, when),
        )

    def delete_file(self, path: str) -> list[int]:
        """Forget a file and its chunks; returns the removed chunk ids."""
        ids = self.ids_for_source(path)
        self.db.execute("DELETE FROM chunks WHERE source = ?", (path,))
        lexical.delete(self.db, ids)
        self.db.execute("DELETE FROM files WHERE path = ?", (path,))
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
        return problems + lexical.check(self.db)


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def check_doc_ids(ids, n: int) -> list[str] | None:
    """Caller-chosen ids for ``n`` texts: a list of distinct non-empty strings (or None)."""
    if ids is None:
        return None
    if isinstance(ids, str):
        raise CompsearchError("ids must be a list of strings, one per text")
    ids = list(ids)
    if len(ids) != n:
        raise CompsearchError(f"{len(ids)} ids for {n} texts: give one id per text")
    if any(not isinstance(i, str) or not i for i in ids):
        raise CompsearchError("ids must be non-empty strings")
    if len(set(ids)) != len(ids):
        raise CompsearchError("ids must be unique within one call")
    return ids
