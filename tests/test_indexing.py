"""The folder write path: no-op runs, vector reuse, prune, include/exclude, waiting writers, CLI
conventions (JSON errors, environment in --help, full text when piped, --threads)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time

import pytest
from click.testing import CliRunner

from compsearch import CompsearchError, Retriever
from compsearch.cli import main
from compsearch.indexdir import read_manifest, transaction
from conftest import write_corpus


class CountingEncoder:
    """Wraps an encoder and counts the texts it was asked to encode."""

    def __init__(self, inner):
        self.inner, self.encoded = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, texts, **kw):
        self.encoded += len(texts)
        return self.inner.encode(texts, **kw)


def test_a_run_with_nothing_to_do_loads_no_encoder_and_writes_nothing(
    tmp_path, tiny_encoder, monkeypatch
):
    docs = write_corpus(tmp_path / "docs")
    first = Retriever.open(tmp_path / "ix", tiny_encoder).index([docs])
    assert first.committed and first.files_indexed == 4
    gen = read_manifest(tmp_path / "ix")["generation"]

    import compsearch.embedders as embedders

    def no_load(*a, **k):
        raise AssertionError("the encoder was loaded for a run with nothing to do")

    monkeypatch.setattr(embedders, "load_encoder", no_load)
    again = Retriever.open(tmp_path / "ix").index([docs])
    assert not again.committed and again.files_unchanged == 4 and again.files_indexed == 0
    assert again.chunks_total == first.chunks_total
    assert read_manifest(tmp_path / "ix")["generation"] == gen


def test_moved_and_edited_files_reuse_their_vectors(tmp_path, tiny_encoder):
    docs = write_corpus(tmp_path / "docs")
    enc = CountingEncoder(tiny_encoder)
    r = Retriever.open(tmp_path / "ix", enc)
    first = r.index([docs])
    before = {(h.text, tuple(h.metadata.items())) for h in r.get()}
    shutil.move(docs / "guide", docs / "manual")  # moved inside the indexed root
    enc.encoded = 0
    moved = r.index([docs])
    assert moved.files_indexed == 2 and moved.files_removed == 2
    assert moved.chunks_reused == moved.chunks_added > 0 and enc.encoded == 0
    assert {(h.text, tuple(h.metadata.items())) for h in r.get()} == before
    assert moved.chunks_total == first.chunks_total
    # an edit re-encodes only the chunk that changed
    (docs / "notes.txt").write_text("http request header cookie parse\n\nbrand new error value\n")
    edited = r.index([docs])
    assert edited.files_indexed == 1 and enc.encoded == edited.chunks_added - edited.chunks_reused
    # reused vectors are the vectors the encoder gives (same text, same encoder)
    hit = r.search("rotate log file", k=1)[0]
    store, _ = r._open_read()
    assert (
        store.vectors([hit.id], tiny_encoder.dim)
        @ tiny_encoder.encode(
            [hit.text if not hit.section else _embed_text(hit)], kind="document"
        ).T
    ).item() > 0.999


def _embed_text(hit):
    from compsearch.documents import Chunk

    return Chunk(hit.text, hit.start_line, hit.end_line, hit.section).embed_text


def test_prune_removes_vanished_roots_and_commits_nothing_otherwise(tmp_path, tiny_encoder):
    a, b = write_corpus(tmp_path / "a"), tmp_path / "b"
    b.mkdir()
    (b / "x.md").write_text("# X\n\njson parse text\n")
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.index([a])
    r.index([b])
    assert set(read_manifest(tmp_path / "ix")["roots"]) == {str(a), str(b)}
    gen = read_manifest(tmp_path / "ix")["generation"]
    assert not r.prune().committed and read_manifest(tmp_path / "ix")["generation"] == gen
    shutil.rmtree(b)
    report = r.prune()
    assert report.committed and report.files_removed == 1 and report.chunks_removed >= 1
    assert read_manifest(tmp_path / "ix")["roots"] == [str(a)]
    assert all(not h.source.startswith(str(b)) for h in r.get())


def test_include_exclude_through_the_api_and_cli(tmp_path, tiny_encoder, tiny_base):
    docs = write_corpus(tmp_path / "docs")
    rep = Retriever.open(tmp_path / "ix", tiny_encoder).index(
        [docs], include=["*.md"], exclude=["install.md"]
    )
    assert rep.files_indexed == 1
    assert (
        "not matched by --include"
        in dict((os.path.basename(p), r) for p, r in rep.skipped)["notes.txt"]
    )
    out = CliRunner().invoke(
        main,
        [
            "index",
            str(docs),
            "--index",
            str(tmp_path / "ix2"),
            "--model",
            str(tiny_base),
            "--include",
            "*.py",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["files_indexed"] == 1


def test_a_second_writer_waits_then_proceeds_and_loses_nothing(tmp_path, tiny_encoder, monkeypatch):
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.add(["json parse text"], ids=["a"])
    held = threading.Event()

    def hold():
        with transaction(tmp_path / "ix"):
            held.set()
            time.sleep(1.5)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    start = time.perf_counter()
    Retriever.open(tmp_path / "ix", tiny_encoder).add(["rotate log file"], ids=["b"])
    assert time.perf_counter() - start > 1.0  # it waited instead of failing
    t.join()
    assert Retriever.open(tmp_path / "ix", tiny_encoder).count() == 2


def test_a_writer_gives_up_after_the_lock_timeout(tmp_path, tiny_encoder, monkeypatch, caplog):
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.add(["json parse text"], ids=["a"])
    monkeypatch.setenv("COMPSEARCH_LOCK_TIMEOUT", "0.3")
    with transaction(tmp_path / "ix"):
        with pytest.raises(CompsearchError, match="still being updated by another process"):
            Retriever.open(tmp_path / "ix", tiny_encoder).add(["rotate log file"], ids=["b"])
    assert "waiting up to 0.3 s" in caplog.text
    monkeypatch.setenv("COMPSEARCH_LOCK_TIMEOUT", "soon")
    with pytest.raises(CompsearchError, match="must be a number of seconds"):
        r.add(["x y"], ids=["c"])


def test_cli_conventions(tmp_path, tiny_base, monkeypatch):
    runner = CliRunner()
    help_text = runner.invoke(main, ["--help"]).output
    for name in (
        "COMPSEARCH_INDEX",
        "COMPSEARCH_HOME",
        "COMPSEARCH_THREADS",
        "COMPSEARCH_LOCK_TIMEOUT",
        "Exit status",
        "--threads",
    ):
        assert name in help_text
    # errors under --json: one JSON object on stdout, one line on stderr, exit 1
    res = runner.invoke(main, ["query", "x", "--index", str(tmp_path / "none"), "--json"])
    assert res.exit_code == 1
    payload = json.loads(res.stdout)
    assert payload["exit_code"] == 1 and "no index" in payload["error"]
    assert len(res.stderr.strip().splitlines()) == 1
    # piped output is never cut: a 600-character chunk comes back whole
    long = "json " * 120
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "long.txt").write_text(long.strip() + "\n")
    ix = tmp_path / "ix"
    assert (
        runner.invoke(
            main, ["index", str(docs), "--index", str(ix), "--model", str(tiny_base)]
        ).exit_code
        == 0
    )
    out = runner.invoke(main, ["query", "json", "--index", str(ix), "-k", "1"]).output
    assert long.strip() in out and "…" not in out
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("COMPSEARCH_THREADS", raising=False)
    assert runner.invoke(main, ["--threads", "1", "info", "--index", str(ix)]).exit_code == 0
    assert os.environ["OMP_NUM_THREADS"] == "1"
    assert runner.invoke(main, ["--threads", "0", "info", "--index", str(ix)]).exit_code == 2


def test_full_disk_is_one_line_and_leaves_the_index(tmp_path, tiny_encoder, monkeypatch, caplog):
    import errno
    import sqlite3

    import compsearch.indexdir as indexdir
    from compsearch.index import VectorIndex
    from compsearch.maintenance import rebuild, verify
    from compsearch.store import Store

    ix = tmp_path / "ix"
    r = Retriever.open(ix, tiny_encoder)
    r.add(["json parse text"], ids=["a"])
    gen = read_manifest(ix)["generation"]

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    def sqlite_full(*a, **k):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "add", sqlite_full)  # the store's transaction: rolled back
    with pytest.raises(CompsearchError, match="no space left .* previous index is intact"):
        r.add(["rotate log file"], ids=["b"])
    monkeypatch.undo()
    monkeypatch.setattr(VectorIndex, "save", full)  # a new FAISS base: never named, removed
    with pytest.raises(CompsearchError, match="no space left .* previous index is intact"):
        rebuild(ix, "hnsw")
    monkeypatch.undo()
    assert read_manifest(ix)["generation"] == gen and verify(ix) == []
    assert sorted(
        p.name for p in ix.iterdir() if not p.name.startswith(("chunks.sqlite", "."))
    ) == sorted(["encoder", read_manifest(ix)["base"]["file"], "manifest.json"])
    # the mirror manifest.json cannot be written after the commit: the write stands (the store
    # is the commit point), a warning says so, readers take the store's manifest, and the next
    # write rolls the mirror forward
    monkeypatch.setattr(indexdir, "atomic_write_text", full)
    r.add(["rotate log file"], ids=["b"])
    monkeypatch.undo()
    assert "could not be updated" in caplog.text
    assert json.loads((ix / "manifest.json").read_text())["generation"] == gen
    assert read_manifest(ix)["generation"] == gen + 1
    fresh = Retriever.open(ix, tiny_encoder)
    assert [h.doc_id for h in fresh.get(["a", "b"])] == ["a", "b"]
    fresh.add(["sort values"], ids=["c"])
    assert json.loads((ix / "manifest.json").read_text())["generation"] == gen + 2
    assert verify(ix) == []


def test_a_reader_that_read_an_old_manifest_finds_the_new_generation(tmp_path, tiny_encoder):
    w = Retriever.open(tmp_path / "ix", tiny_encoder)
    w.add(["json parse text"], ids=["a"])
    reader = Retriever.open(tmp_path / "ix", tiny_encoder)  # manifest read, files not opened yet
    for i in range(3):  # three commits: its generation is gone
        w.add([f"rotate log file {i}"], ids=[f"b{i}"])
    assert len(reader.search("json", k=10)) == 4  # the newest generation, no error


def test_a_base_model_that_wants_to_run_its_own_code_is_refused(tmp_path, tiny_base):
    import json as _json

    from compsearch import Encoder

    evil = tmp_path / "evil"
    shutil.copytree(tiny_base, evil)
    cfg = _json.loads((evil / "config.json").read_text())
    cfg["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (evil / "config.json").write_text(_json.dumps(cfg))
    (evil / "modeling_evil.py").write_text("raise SystemExit('this must never run')\n")
    with pytest.raises(CompsearchError, match="asks to run its own code"):
        Encoder.load(str(evil))
    res = CliRunner().invoke(
        main, ["index", str(tmp_path), "--index", str(tmp_path / "ix"), "--model", str(evil)]
    )
    assert res.exit_code == 1 and "asks to run its own code" in res.output


@pytest.mark.parametrize("damage", ["garbage", "empty", "wrong_key", "no_file"])
def test_a_damaged_encoder_folder_is_one_line(tmp_path, tiny_encoder, damage):
    from compsearch import Encoder

    folder = tiny_encoder.save(tmp_path / "enc")
    mem = folder / "memory.safetensors"
    if damage == "garbage":
        mem.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{bad" + os.urandom(64))
    elif damage == "empty":
        mem.write_bytes(b"")
    elif damage == "wrong_key":
        from safetensors.numpy import save_file
        import numpy as np

        save_file({"not_memory": np.zeros((8, 32), np.float32)}, str(mem))
    else:
        mem.unlink()
    with pytest.raises(CompsearchError, match="damaged"):
        Encoder.load(folder)


@pytest.mark.parametrize("damage", ["view", "recursive_view", "missing_column", "dropped"])
def test_a_tampered_store_is_one_line_never_a_hang(tmp_path, tiny_encoder, damage):
    import sqlite3

    from compsearch.indexdir import store_path

    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.add(["json parse text", "rotate log file"], ids=["a", "b"])
    path = store_path(tmp_path / "ix", r.manifest)
    r.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA foreign_keys=OFF")
    if damage == "missing_column":
        db.execute("ALTER TABLE chunks DROP COLUMN section")
    else:
        db.execute("DROP TABLE chunks")
        if damage == "view":
            db.execute("CREATE VIEW chunks AS SELECT 1 AS id")
        elif damage == "recursive_view":
            db.execute(
                "CREATE VIEW chunks AS WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL "
                "SELECT x + 1 FROM n) SELECT x AS id FROM n"
            )
    db.commit()
    db.close()
    start = time.perf_counter()
    with pytest.raises(CompsearchError, match="damaged"):
        Retriever.open(tmp_path / "ix", tiny_encoder).search("json", k=1)
    assert time.perf_counter() - start < 30
    res = CliRunner().invoke(main, ["query", "json", "--index", str(tmp_path / "ix")])
    assert res.exit_code == 1 and "damaged" in res.output and "Traceback" not in res.output


def test_flipped_bytes_are_found_by_load_or_verify(tmp_path, tiny_encoder, monkeypatch):
    import compsearch.manifest as manifest_mod
    from compsearch.maintenance import verify

    monkeypatch.setattr(manifest_mod, "EDGE_BYTES", 4096)  # small files: edges of 4 KiB, not 1 MiB
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    import random

    from conftest import WORDS

    rng = random.Random(0)
    r.add([" ".join(rng.choice(WORDS) for _ in range(120)) for _ in range(400)])
    r.close()
    manifest = read_manifest(tmp_path / "ix")
    assert set(manifest["files"]) == {manifest["base"]["file"]}  # the immutable FAISS base
    assert verify(tmp_path / "ix") == []
    store = tmp_path / "ix" / "chunks.sqlite"  # the live store: its content digest
    size = store.stat().st_size
    assert size > 3 * 4096
    data = bytearray(store.read_bytes())
    data[size // 2] ^= 0xFF
    store.write_bytes(bytes(data))
    try:  # a read may not notice;
        Retriever.open(tmp_path / "ix", tiny_encoder).search("json", k=3)
    except CompsearchError as exc:
        assert "damaged" in str(exc) and "\n" not in str(exc)
    problems = verify(tmp_path / "ix")  # verify does
    assert any("differs from the digest" in p for p in problems), problems
    faiss_file = tmp_path / "ix" / manifest["base"]["file"]  # a flip in the first MiB: on load
    data = bytearray(faiss_file.read_bytes())
    data[100] ^= 0xFF
    faiss_file.write_bytes(bytes(data))
    with pytest.raises(CompsearchError, match=f"damaged: {manifest['base']['file']} differs"):
        Retriever.open(tmp_path / "ix", tiny_encoder).search("json", k=1)
    with open(faiss_file, "ab") as f:  # truncated or grown: found on load
        f.write(b"x")
    with pytest.raises(CompsearchError, match="bytes, the manifest recorded"):
        Retriever.open(tmp_path / "ix", tiny_encoder).search("json", k=1)


def test_hostile_folder_entries_are_stated_skips(tmp_path, tiny_encoder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ok.md").write_text("# Title\n\njson parse text\n")
    os.mkfifo(docs / "pipe")  # reading it would block for ever
    (docs / "zero.txt").symlink_to("/dev/zero")  # endless
    (docs / "odd\nname.txt").write_text("rotate log file\n")  # newline in the name: indexed
    latin = os.fsencode(str(docs)) + b"/caf\xe9.txt"  # not valid UTF-8: stated skip
    with open(latin, "wb") as f:
        f.write(b"cafe text\n")
    report = Retriever.open(tmp_path / "ix", tiny_encoder).index([docs])
    reasons = {os.path.basename(p): r for p, r in report.skipped}
    assert reasons["pipe"] == "not a regular file" and reasons["zero.txt"] == "not a regular file"
    assert reasons["caf\\xe9.txt"] == "file name is not valid UTF-8"
    assert report.files_indexed == 2
    out = CliRunner().invoke(main, ["index", str(docs), "--index", str(tmp_path / "ix"), "-v"])
    assert out.exit_code == 0 and "caf\\xe9.txt" in out.output


def test_piped_info_shows_whole_values(tmp_path, tiny_encoder):
    Retriever.open(tmp_path / "ix", tiny_encoder).add(["json parse text"])
    out = CliRunner().invoke(main, ["info", "--index", str(tmp_path / "ix")]).output
    fingerprint = read_manifest(tmp_path / "ix")["encoder"]["fingerprint"]
    assert fingerprint in out and "…" not in out
