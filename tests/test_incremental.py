"""Incremental generations: a write changes the live store in place and leaves the FAISS base
alone until it is stale; searches over base + delta - tombstones equal exact search; format 1
indexes are read as they are and migrated by the first write; concurrent readers and writers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from compsearch import Retriever
from compsearch.errors import CompsearchError
from compsearch.indexdir import read_manifest
from compsearch.maintenance import compact, verify

from oldformat import to_format_1


def _unit(rng, n, dim):
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _exact(r, q, k):
    """The k nearest stored chunks by brute force over the store's vectors."""
    hits = r.get()
    ids = [h.doc_id for h in hits]
    store, _ = r._open_read()
    chunk_ids = list(store.chunks_for_doc_ids(ids).values())
    vecs = store.vectors(chunk_ids, q.shape[0])
    names = store.doc_ids_for_chunks(chunk_ids)
    order = np.argsort(-(vecs @ q), kind="stable")[:k]
    return [names[chunk_ids[i]] for i in order]


def test_a_small_write_leaves_the_base_and_costs_what_it_changes(tmp_path, tiny_encoder):
    ix, dim = tmp_path / "ix", tiny_encoder.dim
    rng = np.random.default_rng(0)
    r = Retriever.open(ix, tiny_encoder)
    r.add(
        [f"t{i}" for i in range(300)],
        ids=[f"d{i}" for i in range(300)],
        vectors=_unit(rng, 300, dim),
    )
    m1 = read_manifest(ix)
    base = ix / m1["base"]["file"]
    stat = base.stat()
    r.add(["one more"], ids=["x"], vectors=_unit(rng, 1, dim))
    r.delete(["d3"])
    m2 = read_manifest(ix)
    assert m2["generation"] == m1["generation"] + 2 and m2["base"] == m1["base"]
    assert base.stat().st_ino == stat.st_ino and base.stat().st_mtime_ns == stat.st_mtime_ns
    assert m2["counts"]["chunks"] == 300 and m2["index"]["ntotal"] == 300
    assert not any(p.name.startswith("g0") for p in ix.iterdir())  # no generation folders
    # no-op writes commit nothing
    assert r.delete(["nope", 10**9]) == 0
    assert read_manifest(ix)["generation"] == m2["generation"]
    assert verify(ix) == []


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_base_plus_delta_minus_tombstones_equals_exact_search(
    tmp_path, tiny_encoder, kind, monkeypatch
):
    import compsearch.index as index_mod

    monkeypatch.setattr(index_mod, "STALE_MIN", 40)  # fold the delta into the base now and then
    dim, rng = tiny_encoder.dim, np.random.default_rng(1)
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.add(
        [f"t{i}" for i in range(400)],
        ids=[f"d{i}" for i in range(400)],
        vectors=_unit(rng, 400, dim),
    )
    if kind != "flat":
        from compsearch.maintenance import rebuild

        rebuild(tmp_path / "ix", kind, nlist=4, nprobe=4) if kind == "ivf" else rebuild(
            tmp_path / "ix", kind
        )
    reader = Retriever.open(tmp_path / "ix", tiny_encoder)  # another handle: refreshes by itself
    alive, n, bases = set(f"d{i}" for i in range(400)), 400, set()
    for step in range(12):
        new = [f"d{n + i}" for i in range(7)]
        r.add(new, ids=new, vectors=_unit(rng, 7, dim))
        alive |= set(new)
        n += 7
        gone = sorted(rng.choice(sorted(alive), size=5, replace=False).tolist())
        assert r.delete(gone) == 5
        alive -= set(gone)
        bases.add(read_manifest(tmp_path / "ix")["base"]["file"])
        q = _unit(rng, 1, dim)[0]
        for who in (r, reader):
            got = [
                h.doc_id for h in who.search_vectors(q[None], 10, mode="dense", rerank="exact")[0]
            ]
            assert set(got) <= alive and got == _exact(who, q, 10)
            assert who.count() == len(alive)
    assert len(bases) > 1  # the delta was folded into a new base at least once
    assert verify(tmp_path / "ix") == []
    assert sum(p.name.startswith("base-") for p in (tmp_path / "ix").iterdir()) <= 2
    compact(tmp_path / "ix")
    m = read_manifest(tmp_path / "ix")
    assert m["base"]["last_id"] >= max(int(x[1:]) for x in alive) and verify(tmp_path / "ix") == []


def test_a_format_1_index_is_read_as_is_and_migrated_by_the_first_write(tmp_path, tiny_encoder):
    from conftest import write_corpus

    ix = tmp_path / "ix"
    r = Retriever.open(ix, tiny_encoder)
    r.index([write_corpus(tmp_path / "docs")])
    before = [(h.source, h.text) for h in r.search("json parse", k=5, mode="hybrid")]
    r.close()
    gdir = to_format_1(ix)
    old = Retriever.open(ix, tiny_encoder)
    assert [(h.source, h.text) for h in old.search("json parse", k=5)] == before
    assert verify(ix) == [] and read_manifest(ix)["format_version"] == 1
    assert not (ix / "chunks.sqlite").exists()  # reading changed nothing
    r = Retriever.open(ix, tiny_encoder)
    r.add(["rotate the log file daily"], ids=["new"])  # the first write migrates
    m = read_manifest(ix)
    assert m["format_version"] == 2 and (ix / m["base"]["file"]).is_file()
    assert gdir.is_dir()  # kept for readers of the old manifest until the next write
    assert [(h.source, h.text) for h in old.search("json parse", k=5)] == before  # still works
    assert verify(ix) == []
    r.delete(["new"])
    assert not gdir.exists()
    assert [
        (h.source, h.text) for h in Retriever.open(ix, tiny_encoder).search("json parse", k=5)
    ] == before


def test_a_migration_that_fails_leaves_the_format_1_index(tmp_path, tiny_encoder, monkeypatch):
    import compsearch.format1 as format1

    ix = tmp_path / "ix"
    Retriever.open(ix, tiny_encoder).add(["json parse text"], ids=["a"])
    to_format_1(ix, digests=False)  # from before digests, too

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(format1, "atomic_write_text", crash)  # dies just before its commit point
    with pytest.raises(KeyboardInterrupt):
        Retriever.open(ix, tiny_encoder).add(["b text"], ids=["b"])
    monkeypatch.undo()
    assert read_manifest(ix)["format_version"] == 1 and verify(ix) == []
    assert [h.doc_id for h in Retriever.open(ix, tiny_encoder).get()] == ["a"]
    Retriever.open(ix, tiny_encoder).add(["b text"], ids=["b"])
    assert read_manifest(ix)["format_version"] == 2 and verify(ix) == []
    assert sorted(h.doc_id for h in Retriever.open(ix, tiny_encoder).get()) == ["a", "b"]


def test_the_store_is_the_commit_point_and_the_mirror_follows(tmp_path, tiny_encoder):
    ix = tmp_path / "ix"
    r = Retriever.open(ix, tiny_encoder)
    r.add(["json parse text"], ids=["a"])
    behind = (ix / "manifest.json").read_text()
    r.add(["rotate log file"], ids=["b"])
    gen = read_manifest(ix)["generation"]
    (ix / "manifest.json").write_text(behind)  # a crash between the commit and the mirror
    assert read_manifest(ix)["generation"] == gen  # readers take the store's
    assert Retriever.open(ix, tiny_encoder).count() == 2
    Retriever.open(ix, tiny_encoder).add(["sort values"], ids=["c"])  # the writer rolls forward
    assert json.loads((ix / "manifest.json").read_text())["generation"] == gen + 1
    ahead = json.loads((ix / "manifest.json").read_text())
    ahead["generation"] += 5  # a manifest ahead of its store: not something a crash makes
    (ix / "manifest.json").write_text(json.dumps(ahead))
    with pytest.raises(CompsearchError, match="behind its manifest"):
        Retriever.open(ix, tiny_encoder)


@pytest.mark.parametrize(
    "field, value",
    [
        ("base", {"file": "../../etc/passwd", "last_id": 0, "ntotal": 1}),
        ("base", {"file": "base-000001.faiss", "last_id": -5, "ntotal": 1}),
        ("base", None),
        ("files", {"../chunks.sqlite": {"bytes": 1, "sha256": "x", "edges_sha256": "x"}}),
    ],
)
def test_hostile_format_2_manifests_are_one_line(tmp_path, tiny_encoder, field, value):
    ix = tmp_path / "ix"
    Retriever.open(ix, tiny_encoder).add(["json parse text"], ids=["a"])
    m = json.loads((ix / "manifest.json").read_text())
    m[field] = value
    (ix / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CompsearchError, match="corrupt") as exc:
        Retriever.open(ix, tiny_encoder).search("json")
    assert "\n" not in str(exc.value)


def test_a_store_left_by_a_first_write_that_never_committed_is_removed(tmp_path, tiny_encoder):
    ix = tmp_path / "ix"
    ix.mkdir()
    (ix / "chunks.sqlite").write_bytes(b"half a first write")
    (ix / "base-000001.faiss").write_bytes(b"junk")
    assert Retriever.open(ix, tiny_encoder).count() == 0  # no manifest: no index
    Retriever.open(ix, tiny_encoder).add(["json parse text"], ids=["a"])
    assert verify(ix) == [] and Retriever.open(ix, tiny_encoder).count() == 1


def test_a_shared_retriever_serves_threads_while_it_writes(tmp_path, tiny_encoder):
    dim, rng = tiny_encoder.dim, np.random.default_rng(2)
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.add([f"t{i}" for i in range(50)], vectors=_unit(rng, 50, dim))
    errors, counts, stop = [], [], threading.Event()

    def read():
        q = _unit(np.random.default_rng(), 1, dim)
        while not stop.is_set():
            try:
                counts.append(r.count())
                assert len(r.search_vectors(q, 5, mode="dense")[0]) == 5
                r.search("t1", k=3, mode="lexical")
            except Exception as exc:  # noqa: BLE001 - any error fails the test below
                errors.append(repr(exc))

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    writers = [
        threading.Thread(
            target=lambda s=s: [
                r.add([f"w{s}-{i}"], vectors=_unit(np.random.default_rng(s * 100 + i), 1, dim))
                for i in range(15)
            ]
        )
        for s in range(2)
    ]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    assert r.count() == 80 and min(counts) >= 50 and verify(tmp_path / "ix") == []


WRITER = textwrap.dedent("""
    import sys
    from compsearch import Retriever
    from synthetic import TextSeeded
    r = Retriever.open(sys.argv[1], TextSeeded())  # no torch: writers start at once
    tag, n = sys.argv[2], int(sys.argv[3])
    for i in range(0, n, 25):
        r.add([f"{tag} {j}" for j in range(i, i + 25)], ids=[f"{tag}{j}" for j in range(i, i + 25)])
    print("done", flush=True)
""")

READER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from compsearch import Retriever
    r = Retriever.open(sys.argv[1])
    seen, errors, end = [], 0, time.time() + float(sys.argv[2])
    q = np.ones((1, int(sys.argv[3])), np.float32)
    while time.time() < end:
        n = r.count()
        hits = r.search_vectors(q / np.linalg.norm(q), 3, mode="dense")[0]
        assert len(hits) >= min(3, n)
        seen.append(n)
    assert seen == sorted(seen), "a reader went back in time"
    print("ok", len(seen), seen[0], seen[-1], flush=True)
""")


@pytest.mark.slow
def test_concurrent_writer_processes_lose_nothing_and_readers_never_fail(tmp_path):
    from synthetic import DIM, TextSeeded

    ix = tmp_path / "ix"
    Retriever.open(ix, TextSeeded()).add(["seed text"], ids=["seed"])
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([os.path.dirname(tests), tests])
    )
    run = lambda args: subprocess.Popen(
        [sys.executable, "-c", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # noqa: E731
    readers = [run([READER, str(ix), "6", str(DIM)]) for _ in range(2)]
    writers = [run([WRITER, str(ix), tag, "500"]) for tag in ("a", "b")]
    for p in writers + readers:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    r = Retriever.open(ix, TextSeeded())
    assert r.count() == 1001 and len({h.doc_id for h in r.get()}) == 1001
    assert verify(ix) == []


def test_a_file_that_changes_vanishes_or_turns_unreadable_while_indexed(
    tmp_path, tiny_encoder, monkeypatch
):
    """Between the scan and the write pass: what is stored is what the write pass read (with its
    digest), a file gone is a stated skip, a known file now unreadable loses its chunks."""
    from collections import Counter

    import compsearch.indexing as indexing
    from compsearch.documents import Skipped
    from conftest import write_corpus

    docs, ix = write_corpus(tmp_path / "docs"), tmp_path / "ix"
    r = Retriever.open(ix, tiny_encoder)
    r.index([docs])
    for name in ("notes.txt", "code.py", "guide/logging.md"):
        (docs / name).write_text((docs / name).read_text() + "\nchanged once\n")
    real, calls = indexing.read_bytes, Counter()

    def racing(path):
        calls[path.name] += 1
        if calls[path.name] == 2:  # the write pass
            if path.name == "notes.txt":
                path.write_text("rotate the log file, edited meanwhile\n")
            elif path.name == "logging.md":
                path.unlink()
            elif path.name == "code.py":
                return Skipped(path, "unreadable: Permission denied")
        return real(path)

    monkeypatch.setattr(indexing, "read_bytes", racing)
    report = r.index([docs])
    monkeypatch.undo()
    reasons = {os.path.basename(p): why for p, why in report.skipped}
    assert "unreadable" in reasons["code.py"] and "logging.md" in reasons
    sources = {os.path.basename(h.source) for h in r.get()}
    assert "code.py" not in sources and "logging.md" not in sources
    notes = [h.text for h in r.get() if h.source.endswith("notes.txt")]
    assert notes and all("edited meanwhile" in t for t in "".join(notes).split("\0"))
    assert verify(ix) == []
    again = r.index([docs])  # notes.txt is stored as read: unchanged; code.py is back
    assert again.files_indexed == 1 and {os.path.basename(h.source) for h in r.get()} >= {
        "code.py",
        "notes.txt",
    }


def test_a_read_only_index_folder(tmp_path, tiny_encoder, monkeypatch):
    """Searches work; a write is one line. (chmod means nothing to root: simulated there.)"""
    ix = tmp_path / "ix"
    Retriever.open(ix, tiny_encoder).add(["json parse text"], ids=["a"])
    if os.geteuid() != 0:
        for p in [ix, *ix.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        try:
            assert Retriever.open(ix, tiny_encoder).search("json", k=1)[0].doc_id == "a"
            with pytest.raises(CompsearchError, match="not writable|could not be written"):
                Retriever.open(ix, tiny_encoder).add(["rotate"], ids=["b"])
        finally:
            for p in [ix, *ix.rglob("*")]:
                p.chmod(p.stat().st_mode | 0o200)
        return
    import filelock

    def denied(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(ix / ".lock"))

    monkeypatch.setattr(filelock.FileLock, "acquire", denied)
    with pytest.raises(CompsearchError, match="not writable \\(Permission denied\\)") as exc:
        Retriever.open(ix, tiny_encoder).add(["rotate"], ids=["b"])
    assert "\n" not in str(exc.value)
    monkeypatch.undo()
    import sqlite3

    from compsearch.storefile import connect_readonly

    real = sqlite3.connect

    def no_shm(database, **kw):  # SQLite cannot make the WAL's shared memory in a read-only folder
        if "immutable=1" not in database:
            raise sqlite3.OperationalError("unable to open database file")
        return real(database, **kw)

    monkeypatch.setattr(sqlite3, "connect", no_shm)
    db = connect_readonly(ix / "chunks.sqlite")
    assert db.execute("SELECT count(*) FROM chunks").fetchone()[0] == 1
