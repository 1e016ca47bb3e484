"""Stored memory-token states: the k final hidden states of every chunk, for late interaction.

Why keep them: the embedding is the mean of k memory states, which throws away how the k tokens
differ. Kept per chunk they allow two rerankers (``rerank_late.py``): MaxSim between the query's
and the chunk's memory tokens, and the likelihood of the query when the frozen LM reads the
chunk's memory tokens (the CTKD decoder). They come from the forward that makes the chunk's
vector, so storing them costs no extra encoding, only disk: k x dim values per chunk.

Format, one row per chunk in the chunk store (same SQLite file, same transaction, so the
generation that commits a chunk commits its states): ``memory_states(chunk_id, dtype, k, dim,
states, scales, norms)``. ``states`` holds each token's state L2-normalised (what MaxSim reads),
as ``fp16`` or ``int8`` (then ``scales`` holds one float32 symmetric scale per token: value =
int8 * scale); ``norms`` holds the k float32 norms so the raw state (what the decoder reads) is
``unit * norm``. A trigger removes a chunk's row with the chunk, so deletes and upserts cannot
leave stale states. The option (``fp16``/``int8``) is kept in the store's ``meta`` table, which
travels with every generation, so later writes keep storing states. Every row is in the store's
content digest (``Store``): given a ``Store``, ``write``/``record``/``finish`` keep it in step
with each row they add, replace or drop, so ``verify`` finds a changed state byte.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import CompsearchError
from .storefile import STATE_COLUMNS, state_rows

DTYPES = ("fp16", "int8")
META_KEY = "memory_states"
SCHEMA = """
CREATE TABLE IF NOT EXISTS memory_states (
    chunk_id INTEGER PRIMARY KEY, dtype TEXT NOT NULL, k INTEGER NOT NULL, dim INTEGER NOT NULL,
    states BLOB NOT NULL, scales BLOB, norms BLOB NOT NULL);
CREATE TRIGGER IF NOT EXISTS chunks_forget_memory_states AFTER DELETE ON chunks
    BEGIN DELETE FROM memory_states WHERE chunk_id = old.id; END;
"""
FILL_BATCH = 64  # chunks encoded per step when states are computed for chunks that lack them


def check_dtype(value: str | None) -> str | None:
    """``fp16`` / ``int8`` / ``none`` (turn off) / None (keep the index's setting)."""
    if value is None or value in DTYPES or value == "none":
        return value
    raise CompsearchError(f"unknown memory-states type {value!r}; use fp16, int8 or none")


# ---------------------------------------------------------------------------- codec


def normalise(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(unit states, norms)`` of raw states (..., k, dim)."""
    raw = np.asarray(raw, np.float32)
    norms = np.linalg.norm(raw, axis=-1)
    return raw / np.maximum(norms, 1e-12)[..., None], norms.astype(np.float32)


def quantize_int8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8: ``(q, scale)`` with ``x ~= q * scale[:, None]``."""
    scale = np.abs(x).max(-1) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(x / scale[..., None]), -127, 127).astype(np.int8)
    return q, scale


def pack(raw: np.ndarray, dtype: str) -> tuple[bytes, bytes | None, bytes]:
    """One chunk's raw (k, dim) states -> ``(states, scales, norms)`` blobs."""
    unit, norms = normalise(raw)
    if dtype == "fp16":
        return unit.astype(np.float16).tobytes(), None, norms.tobytes()
    q, scale = quantize_int8(unit)
    return q.tobytes(), scale.tobytes(), norms.tobytes()


def unpack(dtype: str, k: int, dim: int, states: bytes, scales, norms: bytes):
    """``(unit states (k, dim) float32, norms (k,))`` of one stored row."""
    if dtype == "fp16":
        unit = np.frombuffer(states, np.float16).astype(np.float32)
    elif dtype == "int8":
        unit = np.frombuffer(states, np.int8).astype(np.float32).reshape(k, dim)
        unit = unit * np.frombuffer(scales, np.float32)[:, None]
    else:
        raise CompsearchError(f"stored memory states have an unknown type {dtype!r}")
    return unit.reshape(k, dim), np.frombuffer(norms, np.float32).copy()


# ---------------------------------------------------------------------------- store


def _digest(target, rows) -> None:
    """XOR state rows into (or out of) a ``Store``'s content digest; nothing for a bare db."""
    if hasattr(target, "_xor"):
        target._xor("state", rows)


def _has_table(db) -> bool:
    row = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'memory_states'").fetchone()
    return row is not None


def setting(db) -> str | None:
    """The index's option: ``fp16``, ``int8`` or None (no states kept)."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (META_KEY,)).fetchone()
    return row[0] if row and row[0] in DTYPES else None


def begin(db, encoder, requested: str | None) -> str | None:
    """Before a write encodes anything: the type it stores (None: no states), from ``requested``
    (None keeps the setting of the store ``db``; a new index has none). While it is on, the
    encoder keeps the states of the forward that makes the vectors."""
    requested = check_dtype(requested)
    if requested is not None:
        mode = None if requested == "none" else requested
    else:
        mode = setting(db) if db is not None else None
    if hasattr(encoder, "keep_states"):
        encoder.keep_states = mode is not None
        encoder.last_states = {}
    return mode


def encoder_for_add(retriever, requested: str | None):
    """``Retriever.add``'s encoder, keeping states when this write stores them."""
    db = retriever._open_read()[0].db if retriever.exists else None
    begin(db, retriever.encoder, requested)
    return retriever.encoder


def unchanged(retriever, requested: str | None) -> bool:
    """Whether ``requested`` leaves an existing index's setting as it is (nothing to write)."""
    requested = check_dtype(requested)
    if requested is None or not retriever.exists:
        return True
    current = setting(retriever._open_read()[0].db)
    return (current or "none") == requested


def finish(store, encoder, requested: str | None) -> None:
    """Before a write commits: record ``requested`` and give every chunk that lacks states its
    states (all of them when the option was just turned on, or changed type)."""
    requested = check_dtype(requested)
    db = store.db
    try:
        if requested == "none":
            if _has_table(db):
                _digest(store, db.execute(f"SELECT {STATE_COLUMNS} FROM memory_states"))
            db.execute("DELETE FROM meta WHERE key = ?", (META_KEY,))
            db.execute("DROP TRIGGER IF EXISTS chunks_forget_memory_states")
            db.execute("DROP TABLE IF EXISTS memory_states")
        elif requested is not None:
            record(store, requested)
        mode = setting(db)
        if mode is not None and (requested is not None or hasattr(encoder, "encode_states")):
            fill(store, encoder, None, mode)  # a foreign encoder asked to store states: an error
    finally:
        if hasattr(encoder, "keep_states"):
            encoder.keep_states = False
            encoder.last_states = {}


def record(target, dtype: str) -> None:
    """Turn the option on in a ``Store`` (or its connection; then its digest is not kept):
    rows of another type are dropped, to be redone."""
    db = getattr(target, "db", target)
    _create(db)
    other = f"SELECT {STATE_COLUMNS} FROM memory_states WHERE dtype != ?"
    _digest(target, db.execute(other, (dtype,)))
    db.execute("DELETE FROM memory_states WHERE dtype != ?", (dtype,))
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (META_KEY, dtype))


def _create(db) -> None:
    for statement in SCHEMA.split(";\n"):
        if statement.strip():
            db.execute(statement)


def fill(store, encoder, ids: Sequence[int] | None, mode: str) -> int:
    """Write states for chunks that lack them (``ids``, or every chunk); returns how many.

    States of the encoder's last forward (``keep_states``) are used when the chunk's text was in
    it; the rest are encoded here (an index that just turned the option on, a reused vector).
    """
    db = store.db
    if not _has_table(db):
        _create(db)
    if ids is None:
        rows = db.execute(
            "SELECT id, text, section FROM chunks "
            "WHERE id NOT IN (SELECT chunk_id FROM memory_states)"
        ).fetchall()
    else:
        have = set(_present(db, ids))
        rows = [r for r in _texts(db, [i for i in ids if i not in have])]
    if not rows:
        return 0
    if not hasattr(encoder, "encode_states"):
        raise CompsearchError(
            "memory states can only be made by a compsearch encoder, not by "
            f"{type(encoder).__name__}; index without --memory-states"
        )
    cached = getattr(encoder, "last_states", None) or {}
    texts = [embed_text(text, section) for _, text, section in rows]
    todo = [i for i, t in enumerate(texts) if t not in cached]
    computed: dict[str, np.ndarray] = {}
    for s in range(0, len(todo), FILL_BATCH):
        batch = [texts[i] for i in todo[s : s + FILL_BATCH]]
        _, states = encoder.encode_states(batch, kind="document")
        computed.update(zip(batch, states))
    write(store, [r[0] for r in rows], [computed.get(t, cached.get(t)) for t in texts], mode)
    return len(rows)


def embed_text(text: str, section: str | None) -> str:
    """The text a chunk's vector was made from (``Chunk.embed_text``)."""
    from .documents import Chunk

    return Chunk(text=text, start_line=1, end_line=1, section=section).embed_text


def _texts(db, ids: Sequence[int]):
    for s in range(0, len(ids), 500):
        part = list(ids[s : s + 500])
        q = ",".join("?" * len(part))
        yield from db.execute(f"SELECT id, text, section FROM chunks WHERE id IN ({q})", part)


def _present(db, ids: Sequence[int]) -> list[int]:
    out = []
    for s in range(0, len(ids), 500):
        part = [int(i) for i in ids[s : s + 500]]
        q = ",".join("?" * len(part))
        out += [
            r[0]
            for r in db.execute(f"SELECT chunk_id FROM memory_states WHERE chunk_id IN ({q})", part)
        ]
    return out


def write(target, ids: Sequence[int], raw_states, dtype: str) -> None:
    """Store raw (k, dim) states for chunk ``ids`` (replacing any) in a ``Store`` (or its
    connection; then its digest is not kept)."""
    db = getattr(target, "db", target)
    rows = []
    for i, raw in zip(ids, raw_states):
        raw = np.asarray(raw, np.float32)
        rows.append((int(i), dtype, int(raw.shape[0]), int(raw.shape[1]), *pack(raw, dtype)))
    if hasattr(target, "_xor"):
        for s in range(0, len(rows), 500):  # the rows replaced, then the new ones
            _digest(target, state_rows(db, [r[0] for r in rows[s : s + 500]]))
        _digest(target, rows)
    db.executemany(
        "INSERT OR REPLACE INTO memory_states (chunk_id, dtype, k, dim, states, scales, norms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def read(db, ids: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{chunk id: (unit states (k, dim), norms (k,))}`` for the ids that have states."""
    if not _has_table(db):
        return {}
    out = {}
    for s in range(0, len(ids), 500):
        part = [int(i) for i in ids[s : s + 500]]
        q = ",".join("?" * len(part))
        for cid, dtype, k, dim, states, scales, norms in db.execute(
            "SELECT chunk_id, dtype, k, dim, states, scales, norms FROM memory_states "
            f"WHERE chunk_id IN ({q})",
            part,
        ):
            out[cid] = unpack(dtype, k, dim, states, scales, norms)
    return out


def stats(db) -> dict | None:
    """What ``compsearch info`` shows: type, rows and bytes of stored states (None: not kept)."""
    mode = setting(db)
    if mode is None:
        return None
    if not _has_table(db):
        return {"dtype": mode, "chunks": 0, "bytes": 0}
    n, size = db.execute(
        "SELECT count(*), coalesce(sum(length(states) + coalesce(length(scales), 0) "
        "+ length(norms)), 0) FROM memory_states"
    ).fetchone()
    return {"dtype": mode, "chunks": int(n), "bytes": int(size)}


def missing_error(root) -> CompsearchError:
    return CompsearchError(
        f"index {root} keeps no memory states, which rerank 'maxsim' needs: add them with "
        f"compsearch index PATH --index {root} --memory-states fp16 (or int8)"
    )
