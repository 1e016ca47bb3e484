"""The lexical index: SQLite FTS5 with BM25 ranking, inside the chunk store.

Why FTS5 and not a separate BM25 file: it lives in the same SQLite file as the chunks, so it is
written in the same transaction and committed in the same index generation as the vectors - a
crash or Ctrl-C can never leave the two out of step - and it needs no new dependency. Its
``bm25()`` uses the whole corpus's statistics, unlike BM25 computed over a few dense candidates.

Identifiers must stay findable. The ``body`` column uses FTS5's ``unicode61`` tokenizer (with the
Porter stemmer), which splits ``os.path.join``, ``snake_case`` and ``CVE-2024-3094`` into their
parts, so a query word like ``join`` matches. A second column, ``idents``, holds each compound
identifier of the chunk squashed into one token (``os.path.join`` -> ``ospathjoin``,
``CVE-2024-3094`` -> ``cve20243094``, ``parse_config_file`` -> ``parseconfigfile``) plus the parts of
camelCase names (``getUserName`` -> ``get user name``). A query is tokenised the same way, so an
identifier queried whole matches its one rare squashed token and ranks its chunk first, while
its parts still match like words.

Indexes written before this module existed have no FTS table: a writer creates and fills it from
the stored texts (no re-encoding) on the next write; a reader of such an index builds an
in-memory one the first time a lexical search needs it.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from typing import Iterable, Sequence

log = logging.getLogger(__name__)

TABLE = "chunks_fts"
VERSION = "fts5-porter-idents-1"  # stored in meta; a different value rebuilds the table
META_KEY = "lexical_index"
CREATE = (
    f"CREATE VIRTUAL TABLE {{schema}}{TABLE} USING fts5(body, idents, "
    f"tokenize='porter unicode61 remove_diacritics 2')"
)
# English function words dropped from queries (not from the index: phrase-free BM25 gains
# nothing from them and an OR over "the" touches every row).
STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with what which who how do does".split()
)
_WORD = re.compile(r"\w+")
_COMPOUND = re.compile(r"[^\W_]\w*(?:[.\-:/]\w+)+|\w*_\w*")
_CAMEL = re.compile(r"[a-z0-9]+[A-Z][A-Za-z0-9]*|[A-Z]{2,}[a-z][A-Za-z0-9]*")
_CAMEL_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
MAX_IDENT = 64
_STRIP = "\"'`()[]{}<>,;:!?"
_LITERAL = re.compile(
    r".*_.*[^\W_]|[^\W_]+(?:[.\-:/][^\W_]+)+|[a-z][a-z0-9]*[A-Z]\w*"
    r"|(?=\w*\d)(?=\w*[A-Za-z])\w+|[A-Z]{4,}[0-9]*"
)


def identifier_terms(text: str) -> list[str]:
    """The extra ``idents`` tokens of a text: squashed compound identifiers and camelCase parts."""
    out: list[str] = []
    for m in _COMPOUND.finditer(text):
        tok = m.group(0).strip("._-:/")
        squashed = "".join(_WORD.findall(tok)).replace("_", "").lower()
        if len(squashed) > 1 and len(squashed) <= MAX_IDENT and squashed != tok.lower():
            out.append(squashed)
    for m in _CAMEL.finditer(text):
        parts = _CAMEL_PARTS.findall(m.group(0))
        if len(parts) > 1:
            out.extend(p.lower() for p in parts)
    return out


def idents_column(text: str) -> str:
    return " ".join(identifier_terms(text))


def match_expression(query: str) -> str | None:
    """An FTS5 query (OR of quoted terms) for free text; None when it has no searchable term.

    Every term is quoted and made of word characters only, so FTS5 syntax in the user's query
    (``AND``, ``NEAR``, ``*``, ``"``, ``:``) is taken as text, never as an operator.
    """
    words = [w.lower() for w in _WORD.findall(query)]
    words = [w for w in words if w.strip("_")]
    kept = [w for w in words if w not in STOPWORDS] or words
    terms = list(dict.fromkeys(t for w in kept for t in w.split("_") if t))
    idents = list(dict.fromkeys(identifier_terms(query)))
    parts = [f'"{t}"' for t in terms] + [f'idents : "{t}"' for t in idents if t not in terms]
    return " OR ".join(parts) if parts else None


def literal_expression(query: str) -> str | None:
    """An FTS5 query matching chunks that contain the query's identifiers verbatim, or None.

    Only for queries that are *all* identifiers (stopwords aside): ``snake_case``, dotted or
    dashed compounds with a digit or dot (``os.path.join``, ``CVE-2024-3094``), ``camelCase``,
    letters mixed with digits (``0x80070005``), all-caps words of four letters or more
    (``ENOSPC``). Such a query is a lookup; hybrid search puts the few chunks matching it first
    (see ``modes.py``). A question that merely mentions ``X11`` is left to ranking: promoting on
    such queries cost 1.2 nDCG@10 points on the Debian task (benchmarks/results/search-modes.md).
    """
    parts = []
    for raw in query.split():
        tok = raw.strip(_STRIP).rstrip(".")
        if not tok or tok.lower() in STOPWORDS:
            continue
        compound = re.fullmatch(r"[^\W_]+(?:[.\-:/][^\W_]+)+", tok)
        if not _LITERAL.fullmatch(tok) or (
            compound and not any(c.isdigit() or c == "." for c in tok)
        ):
            return None  # a word of prose (or a hyphenated word): not a lookup
        words = _WORD.findall(tok)
        if compound or "_" in tok:
            squashed = "".join(words).replace("_", "").lower()
            parts.append(f'(idents : "{squashed}")')
        else:
            parts.append(f'("{words[0].lower()}")')
    return " AND ".join(dict.fromkeys(parts)) if parts else None


def literal_matches(
    db: sqlite3.Connection, query: str, limit: int, filter_sql: str = "1", params: Sequence = ()
) -> list[int] | None:
    """Ids of chunks containing all identifier-like tokens of ``query``, if at most ``limit``."""
    expr = literal_expression(query)
    if expr is None:
        return None
    ensure_readable(db)
    sql = (
        f"SELECT rowid FROM {TABLE} WHERE {TABLE} MATCH ?"
        + (
            ""
            if filter_sql == "1"
            else f" AND +rowid IN (SELECT id FROM chunks WHERE {filter_sql})"
        )
        + " LIMIT ?"
    )
    ids = [int(r[0]) for r in db.execute(sql, [expr, *params, limit + 1])]
    return ids if len(ids) <= limit else None


# ---------------------------------------------------------------- maintenance
def exists(db: sqlite3.Connection, schema: str = "main") -> bool:
    return (
        db.execute(f"SELECT 1 FROM {schema}.sqlite_master WHERE name = ?", (TABLE,)).fetchone()
        is not None
    )


def is_current(db: sqlite3.Connection) -> bool:
    """The store's own FTS table exists and was built by this tokenisation."""
    if not exists(db):
        return False
    row = db.execute("SELECT value FROM meta WHERE key = ?", (META_KEY,)).fetchone()
    return bool(row) and row[0] == VERSION


def ensure(db: sqlite3.Connection) -> bool:
    """(Writer) create and fill the FTS table if missing or outdated; True if it was (re)built."""
    if is_current(db):
        return False
    db.execute(f"DROP TABLE IF EXISTS {TABLE}")
    db.execute(CREATE.format(schema=""))
    _fill(db)
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (META_KEY, VERSION))
    return True


def ensure_readable(db: sqlite3.Connection) -> None:
    """(Reader) an older store without a current FTS table gets a temporary in-memory one."""
    if is_current(db) or exists(db, "temp"):
        return
    log.info(
        "this index has no lexical index yet; building one in memory (the next write "
        "to the index stores it)"
    )
    db.execute(CREATE.format(schema="temp."))
    _fill(db)


def _fill(db: sqlite3.Connection) -> None:
    cur = db.execute("SELECT id, text FROM chunks ORDER BY id")
    while rows := cur.fetchmany(2048):
        db.executemany(
            f"INSERT INTO {TABLE} (rowid, body, idents) VALUES (?, ?, ?)",
            [(i, t, idents_column(t)) for i, t in rows],
        )


def add(db: sqlite3.Connection, ids: Sequence[int], texts: Sequence[str]) -> None:
    db.executemany(
        f"INSERT INTO {TABLE} (rowid, body, idents) VALUES (?, ?, ?)",
        [(int(i), t, idents_column(t)) for i, t in zip(ids, texts)],
    )


def delete(db: sqlite3.Connection, ids: Iterable[int]) -> None:
    db.executemany(f"DELETE FROM {TABLE} WHERE rowid = ?", [(int(i),) for i in ids])


def check(db: sqlite3.Connection) -> list[str]:
    """Problems: a missing/outdated table, or rows that disagree with the chunks table."""
    if not is_current(db):
        return []  # an older index: the next write builds it, readers build it in memory
    problems = []
    try:
        db.execute(f"INSERT INTO {TABLE}({TABLE}) VALUES ('integrity-check')")
    except sqlite3.OperationalError as exc:
        if "readonly" not in str(exc):
            problems.append(f"lexical index integrity check failed ({exc})")
    except sqlite3.DatabaseError as exc:
        problems.append(f"lexical index integrity check failed ({exc})")
    missing = db.execute(
        f"SELECT count(*) FROM chunks WHERE id NOT IN (SELECT rowid FROM {TABLE})"
    ).fetchone()[0]
    extra = db.execute(
        f"SELECT count(*) FROM {TABLE} WHERE rowid NOT IN (SELECT id FROM chunks)"
    ).fetchone()[0]
    if missing or extra:
        problems.append(f"lexical index out of step: {missing} chunks missing, {extra} extra rows")
    return problems


# ---------------------------------------------------------------- search
def search(
    db: sqlite3.Connection, query: str, k: int, filter_sql: str = "1", params: Sequence = ()
) -> list[tuple[float, int]]:
    """``(score, chunk id)`` of the ``k`` best BM25 matches, best first (score = -bm25()).

    A filter is ``+rowid IN (SELECT id FROM chunks WHERE ...)``: the ``+`` keeps SQLite from
    handing the id list to FTS5 as rowid constraints, which re-runs the full-text query once
    per allowed id (p50 8.3 s against 21 ms per query, a 1,330-id filter over 133k chunks, 20
    queries, the setup of benchmarks/mteb_suite/lexical_scale.py); the subquery runs once.
    """
    expr = match_expression(query)
    if expr is None or k < 1:
        return []
    ensure_readable(db)
    sql = (
        f"SELECT rowid, bm25({TABLE}) AS s FROM {TABLE} WHERE {TABLE} MATCH ?"
        + (
            ""
            if filter_sql == "1"
            else f" AND +rowid IN (SELECT id FROM chunks WHERE {filter_sql})"
        )
        + " ORDER BY s LIMIT ?"
    )
    rows = db.execute(sql, [expr, *params, int(k)]).fetchall()
    return [(-float(s), int(i)) for i, s in rows]
