"""The FTS5 lexical index: identifier tokenisation, and staying in step with the chunks."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from compsearch import Retriever, lexical
from compsearch.indexdir import STORE_FILE
from compsearch.store import SCHEMA, ChunkRecord, Store

from conftest import write_corpus
from oldformat import to_format_1


def test_identifier_terms_and_query_expressions():
    assert lexical.identifier_terms("use os.path.join and parse_config_file") == [
        "ospathjoin",
        "parseconfigfile",
    ]
    assert lexical.identifier_terms("CVE-2024-3094 in libssl.so.3") == ["cve20243094", "libsslso3"]
    assert lexical.identifier_terms("call getUserName or HTTPServer") == [
        "get",
        "user",
        "name",
        "http",
        "server",
    ]
    assert lexical.identifier_terms("plain words only") == []
    expr = lexical.match_expression("The os.path.join of a file")
    assert expr == '"os" OR "path" OR "join" OR "file" OR idents : "ospathjoin"'
    assert lexical.match_expression("the of") == '"the" OR "of"'  # all stopwords: keep them
    assert lexical.match_expression('"; DROP -- *') == '"drop"'
    assert lexical.match_expression("?!") is None


def _store(path, texts):
    s = Store(path)
    ids = s.add(
        [ChunkRecord(text=t, source=f"/d/{i % 2}.md") for i, t in enumerate(texts)],
        np.zeros((len(texts), 4), np.float32),
    )
    return s, ids


def _lex(store, q, k=10):
    return [i for _, i in store.lexical_search(q, k)]


def test_identifiers_findable_whole_and_by_part(tmp_path):
    s, ids = _store(
        tmp_path / "s.sqlite",
        [
            "os.path.join builds paths",
            "a path and a join",
            "ENOSPC: no space left on device",
            "parse_config_file reads it",
            "the config file",
            "getUserName returns the user",
            "CVE-2024-3094 was in 2024",
            "releases of 2024",
        ],
    )
    assert _lex(s, "os.path.join")[0] == ids[0]
    assert set(_lex(s, "join")) == {ids[0], ids[1]}  # parts still match
    assert _lex(s, "ENOSPC") == [ids[2]] and _lex(s, "enospc") == [ids[2]]
    assert _lex(s, "parse_config_file")[0] == ids[3]
    assert _lex(s, "getUserName") == [ids[5]] and ids[5] in _lex(s, "user name")
    assert _lex(s, "CVE-2024-3094")[0] == ids[6]
    assert _lex(s, "configs")[0] in (ids[3], ids[4])  # Porter stemming
    scores = [sc for sc, _ in s.lexical_search("os.path.join", 5)]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0


def test_store_keeps_fts_in_step_on_add_and_delete(tmp_path):
    s, ids = _store(tmp_path / "s.sqlite", ["alpha one", "beta two", "gamma three", "alpha four"])
    assert s.check() == []
    s.delete([ids[0]])
    assert _lex(s, "alpha") == [ids[3]]
    removed = s.delete_file("/d/1.md")  # ids 1 and 3
    assert sorted(removed) == [ids[1], ids[3]] and _lex(s, "alpha") == [] and _lex(s, "beta") == []
    assert _lex(s, "gamma") == [ids[2]] and s.check() == []
    s.db.execute("DELETE FROM chunks WHERE id = ?", (ids[2],))  # bypassing the store...
    assert any("out of step" in p for p in s.check())  # ...is detected


def _old_store(path, texts):
    """A store written by the code before the lexical index: today's schema, no FTS table."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.executemany(
        "INSERT INTO chunks (id, source, text, content_hash, vector) VALUES (?, ?, ?, '', ?)",
        [(i, "/d/x.md", t, np.zeros(4, np.float32).tobytes()) for i, t in enumerate(texts)],
    )
    db.execute("INSERT INTO meta VALUES ('next_id', ?)", (str(len(texts)),))
    db.commit()
    db.close()


def test_old_store_gets_the_index_lazily_or_on_write(tmp_path):
    path = tmp_path / "old.sqlite"
    _old_store(path, ["ENOSPC here", "nothing there"])
    ro = Store(path, readonly=True)
    assert not lexical.exists(ro.db)
    assert _lex(ro, "ENOSPC") == [0]  # in-memory, read-only file
    ro.close()
    assert not lexical.exists(sqlite3.connect(path))  # the file was not changed
    rw = Store(path)  # a writer builds it
    assert lexical.is_current(rw.db) and _lex(rw, "ENOSPC") == [0] and rw.check() == []
    rw.commit()
    rw.close()
    # a different tokenisation version is rebuilt on the next write
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = 'old' WHERE key = ?", (lexical.META_KEY,))
    db.execute(f"DELETE FROM {lexical.TABLE}")
    db.commit()
    db.close()
    rw = Store(path)
    assert _lex(rw, "ENOSPC") == [0]
    rw.close()


def _fts_ids(r):
    store, _ = r._open_read()
    return sorted(i for (i,) in store.db.execute(f"SELECT rowid FROM {lexical.TABLE}"))


def test_index_updates_deletes_and_interrupts_keep_it_consistent(tiny_encoder, tmp_path):
    docs = write_corpus(tmp_path / "docs")
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.index([docs])
    store, _ = r._open_read()
    assert _fts_ids(r) == store.all_ids().tolist() and store.check() == []
    # incremental: a changed file's old words leave, new ones arrive
    (docs / "notes.txt").write_text("ENOSPC and the EACCES error codes\n")
    r.index([docs])
    assert r.search("ENOSPC", mode="lexical")[0].source.endswith("notes.txt")
    assert r.search("cookie", mode="lexical") == []
    # a deleted file leaves the lexical index too
    (docs / "code.py").unlink()
    r.index([docs])
    assert not any(h.source.endswith("code.py") for h in r.search("json parse", mode="lexical"))
    store, _ = r._open_read()
    assert _fts_ids(r) == store.all_ids().tolist() and store.check() == []
    # Retriever.delete by filter
    n = r.delete(where={"source": "guide/*"})
    assert n > 0 and r.search("rotate", mode="lexical") == []
    # an interrupted run leaves the committed lexical index as it was
    before = _fts_ids(r)
    (docs / "notes.txt").write_text("SIGSEGV crash\n")

    def stop(phase, done, total):
        if phase == "chunks":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        r.index([docs], progress=stop)
    r2 = Retriever.open(tmp_path / "ix", tiny_encoder)
    assert _fts_ids(r2) == before
    assert r2.search("SIGSEGV", mode="lexical") == []
    assert r2.search("ENOSPC", mode="lexical")[0].source.endswith("notes.txt")


def test_existing_index_gains_lexical_on_next_write_without_reencoding(
    tiny_encoder, tmp_path, monkeypatch
):
    docs = write_corpus(tmp_path / "docs")
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.index([docs])
    # make it an index from before the lexical index: format 1, no FTS table in its generation
    r.close()
    path = to_format_1(tmp_path / "ix") / STORE_FILE
    db = sqlite3.connect(path)
    db.execute(f"DROP TABLE {lexical.TABLE}")
    db.execute("DELETE FROM meta WHERE key = ?", (lexical.META_KEY,))
    db.commit()
    db.close()
    _as_written_before_digests(tmp_path / "ix")
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    assert r.search("rotate", mode="lexical")[0].source.endswith("logging.md")  # lazily
    monkeypatch.setattr(tiny_encoder, "encode", lambda *a, **k: pytest.fail("re-encoded"))
    report = r.index([docs])  # nothing changed on disk
    assert report.files_unchanged == 4 and report.chunks_added == 0
    store, _ = r._open_read()
    assert lexical.is_current(store.db) and store.check() == []
    assert r.search("rotate", mode="lexical")[0].source.endswith("logging.md")


def _as_written_before_digests(root):
    """Indexes from before the lexical index also predate file digests in the manifest."""
    import json

    manifest = json.loads((root / "manifest.json").read_text())
    manifest.pop("files", None)
    (root / "manifest.json").write_text(json.dumps(manifest))
