"""The chunk store's file: its schema, how it is opened, and the row hash of its content digest.

Kept apart from ``store`` (what the rows mean and how a write changes them) so that each stays
small: this is the part that only knows SQLite. ``_check_schema`` refuses a store whose tables
were replaced (a view could recurse for ever) or lack columns; ``connect_readonly`` opens a store
in a folder this process cannot write; ``row_hash`` is the 128-bit hash XOR-ed into the store's
content digest, the damage check of a file changed in place.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Sequence

from .errors import CompsearchError

WAL_SUFFIXES = ("-wal", "-shm", "-journal")  # the files SQLite keeps beside a store

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
CREATE TABLE IF NOT EXISTS tombstones (id INTEGER NOT NULL);
"""
CHUNK_COLUMNS = "id, source, start_line, end_line, section, text, content_hash, metadata, vector"
DIGEST_KEY = "content_digest"
COVERS_KEY = "digest_covers"  # "memory_states": the digest covers them too (older: it did not)
COVERS = "memory_states"
STATE_COLUMNS = "chunk_id, dtype, k, dim, states, scales, norms"
COUNT_KEY = "chunk_count"
MANIFEST_KEY = "manifest"
GENERATION_KEY = "generation"


def row_hash(kind: str, row: Sequence) -> int:
    """128-bit hash of one stored row (its kind and every column), for the store's XOR digest."""
    h = hashlib.blake2b(digest_size=16)
    h.update(kind.encode())
    for value in row:
        data = value if isinstance(value, bytes) else json.dumps(value).encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return int.from_bytes(h.digest(), "little")


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


def check_schema(db: sqlite3.Connection, path: Path) -> None:
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


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection; in a folder this process cannot write (where SQLite cannot make
    the WAL's shared-memory file) the file is opened as immutable: nobody can change it there."""
    opts = dict(uri=True, check_same_thread=False, isolation_level=None, timeout=30)
    db = None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", **opts)
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return db
    except sqlite3.OperationalError as exc:
        if "unable to open" not in str(exc) and "readonly" not in str(exc):
            raise
        if db is not None:
            db.close()
        return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", **opts)


def full_digest(db: sqlite3.Connection, states: bool = True) -> int:
    """The XOR digest recomputed over every chunk, caller id, file and (``states``: as stores
    digest since they were covered) memory-state row."""
    out = 0
    queries = [
        ("chunk", f"SELECT {CHUNK_COLUMNS} FROM chunks"),
        ("doc", "SELECT doc_id, chunk_id FROM doc_ids"),
        ("file", "SELECT * FROM files"),
    ]
    if states and has_states(db):
        queries.append(("state", f"SELECT {STATE_COLUMNS} FROM memory_states"))
    for kind, sql in queries:
        for row in db.execute(sql):
            out ^= row_hash(kind, row)
    return out


def has_states(db: sqlite3.Connection) -> bool:
    """Whether the store has a ``memory_states`` table (``memstates``)."""
    return (
        db.execute("SELECT 1 FROM sqlite_master WHERE name = 'memory_states'").fetchone()
        is not None
    )


def state_rows(db: sqlite3.Connection, chunk_ids: Sequence[int]) -> list:
    """The memory-state rows of ``chunk_ids`` (at most SQLite's 999 variables at a time)."""
    if not chunk_ids or not has_states(db):
        return []
    q = ",".join("?" * len(chunk_ids))
    sql = f"SELECT {STATE_COLUMNS} FROM memory_states WHERE chunk_id IN ({q})"
    return db.execute(sql, [int(i) for i in chunk_ids]).fetchall()
