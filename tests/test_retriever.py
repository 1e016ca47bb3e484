"""The Retriever API: indexing folders incrementally, searching, filters, encoder identity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compsearch import CompsearchError, Encoder, Retriever
from compsearch.chunking import CHUNKER_VERSION, ChunkingConfig
from compsearch.indexdir import MANIFEST, read_manifest

from conftest import write_corpus

SMALL = ChunkingConfig(max_tokens=24, overlap_tokens=4)


def _snapshot(r: Retriever):
    """Everything observable about an index, independent of chunk ids and timestamps."""
    store, index = r._open_read()
    rows = store.get(store.all_ids().tolist())
    chunks = sorted((c.source, c.start_line, c.end_line, c.section, c.text) for c in rows.values())
    vecs = {
        (c.source, c.start_line, c.end_line, c.text): v
        for c, v in zip(rows.values(), store.vectors(list(rows), index.dim))
    }
    return chunks, vecs, store.files()


def _hits(r, q, k=5):
    return [(h.source, h.span, h.text, round(h.score, 5)) for h in r.search(q, k=k)]


def test_index_and_search(tiny_encoder, tmp_path):
    docs = write_corpus(tmp_path / "docs")
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    report = r.index([docs], chunking=SMALL)
    assert report.files_indexed == 4 and report.files_total == 4
    reasons = dict((p.rsplit("/", 1)[-1], why) for p, why in report.skipped)
    assert reasons["image.png"].startswith("unsupported") and reasons[".hidden.md"] == "hidden"
    assert reasons["blank.md"] == "empty file"
    assert report.chunks_total == report.chunks_added > 4
    # a chunk's own text is its nearest neighbour (the tiny encoder has no query prompt;
    # chunks without a section are embedded as their plain text)
    store, _ = r._open_read()
    some = next(c for c in store.get(store.all_ids().tolist()).values() if c.section is None)
    hit = r.search(some.text, k=1, mode="dense")[0]
    assert hit.text == some.text and hit.score == pytest.approx(1.0, abs=1e-4)
    assert hit.span == (some.start_line, some.end_line)
    assert hit.to_dict()["source"] == some.source
    # results are cited by line span in the real file
    for h in r.search("rotate log file", k=10):
        lines = open(h.source).read().split("\n")
        assert "\n".join(lines[h.start_line - 1 : h.end_line]) == h.text


def test_incremental_equals_fresh_build(tiny_encoder, tmp_path):
    docs = write_corpus(tmp_path / "docs")
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.index([docs], chunking=SMALL)
    # change one file, delete one, add one
    (docs / "notes.txt").write_text("json value key sort\n\nprint table data\n")
    (docs / "guide" / "install.md").unlink()
    (docs / "new.md").write_text("# New\n\nmemory token encoder model\n")
    report = r.index([docs])
    assert (report.files_indexed, report.files_unchanged, report.files_removed) == (2, 2, 1)
    again = r.index([docs])
    assert (again.files_indexed, again.chunks_added, again.chunks_removed) == (0, 0, 0)

    fresh = Retriever.open(tmp_path / "fresh", tiny_encoder)
    fresh.index([docs], chunking=SMALL)
    a, b = _snapshot(r), _snapshot(fresh)
    assert a[0] == b[0] and a[2] == b[2]
    for key in a[1]:
        np.testing.assert_allclose(a[1][key], b[1][key], atol=1e-5)
    for q in ["json value", "rotate log", "memory encoder"]:
        assert [h[:3] for h in _hits(r, q)] == [h[:3] for h in _hits(fresh, q)]


def test_rechunk_when_chunking_changes(tiny_encoder, tmp_path):
    docs = write_corpus(tmp_path / "docs")
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.index([docs], chunking=SMALL)
    rep = r.index([docs], chunking=ChunkingConfig(max_tokens=64, overlap_tokens=0))
    assert rep.files_indexed == 4 and rep.files_unchanged == 0
    assert read_manifest(tmp_path / "ix")["chunking"]["max_tokens"] == 64


def test_rechunk_when_chunker_version_changes(tiny_encoder, tmp_path):
    docs = write_corpus(tmp_path / "docs")
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    first = r.index([docs], chunking=SMALL)
    manifest = read_manifest(tmp_path / "ix")
    assert manifest["chunker_version"] == CHUNKER_VERSION
    # the index says another chunker made its chunks: every file is re-chunked and re-encoded
    manifest["chunker_version"] = CHUNKER_VERSION + 1
    (tmp_path / "ix" / MANIFEST).write_text(json.dumps(manifest))
    rep = Retriever.open(tmp_path / "ix", tiny_encoder).index([docs])
    assert (rep.files_indexed, rep.files_unchanged) == (first.files_indexed, 0)
    assert rep.chunks_removed == first.chunks_added
    after = read_manifest(tmp_path / "ix")
    assert after["chunker_version"] == CHUNKER_VERSION and after["chunking"] == SMALL.to_dict()
    again = Retriever.open(tmp_path / "ix", tiny_encoder).index([docs])
    assert (again.files_indexed, again.files_unchanged) == (0, first.files_indexed)


@pytest.mark.parametrize(
    "where, value, message",
    [
        (("generation",), "../../etc/passwd", "generation must be a positive integer"),
        (("generation",), 1.5, "generation must be a positive integer"),
        (("generation",), None, "generation must be a positive integer"),
        (("generation",), True, "generation must be a positive integer"),
        (("format_version",), "1", "format_version must be an integer"),
        (("encoder",), ["x"], "encoder must be a mapping"),
        (("encoder", "dim"), "32", "encoder.dim must be a positive integer"),
        (("encoder", "source"), 5, "encoder.source a string or null"),
        (("encoder", "fingerprint"), None, "encoder.fingerprint must be a string"),
        (("index", "spec", "evil"), 1, "unknown index parameter"),
        (("index", "spec", "nlist"), "4", "nlist must be an integer"),
        (("index", "spec", "kind"), ["flat"], "unknown index type"),
        (("index", "spec"), "flat", "must be a mapping"),
        (("index", "requested"), "annoy", "index.requested must be one of"),
        (("chunking", "max_tokens"), "many", "chunking: max_tokens must be an integer"),
        (("chunking", "extra"), 1, "unknown chunking option"),
        (("chunker_version",), "2", "chunker_version must be a positive integer"),
        (("counts", "chunks"), -1, "counts must map"),
        (("roots",), "/", "roots must be a list"),
    ],
)
def test_hostile_manifest_is_a_one_line_error(tiny_encoder, tmp_path, where, value, message):
    from compsearch.maintenance import inspect

    ix = tmp_path / "ix"
    Retriever.open(ix, tiny_encoder).index([write_corpus(tmp_path / "docs")], chunking=SMALL)
    manifest = read_manifest(ix)
    node = manifest
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    (ix / MANIFEST).write_text(json.dumps(manifest))
    for attempt in (
        lambda: Retriever.open(ix),
        lambda: Retriever.open(ix, tiny_encoder).index([]),
        lambda: inspect(ix),
    ):
        with pytest.raises(CompsearchError, match=message) as err:
            attempt()
        assert "\n" not in str(err.value) and "corrupt" in str(err.value)


def test_chunking_policy_is_decided_by_the_library(tiny_encoder, tmp_path):
    from compsearch.retriever import resolve_chunking

    current = ChunkingConfig(max_tokens=64, overlap_tokens=16).to_dict()
    assert resolve_chunking(None) == ChunkingConfig()
    assert resolve_chunking(current) == ChunkingConfig(64, 16)
    assert resolve_chunking(current, chunk_tokens=128) == ChunkingConfig(128, 16)  # overlap kept
    assert resolve_chunking(current, chunk_tokens=16) == ChunkingConfig(16, 2)  # scaled to 1/8
    assert resolve_chunking(current, overlap=0) == ChunkingConfig(64, 0)
    assert resolve_chunking(None, chunk_tokens=32, overlap=8) == ChunkingConfig(32, 8)
    assert resolve_chunking(current, SMALL) == SMALL
    with pytest.raises(CompsearchError, match="not both"):
        resolve_chunking(None, SMALL, chunk_tokens=32)
    with pytest.raises(CompsearchError, match="overlap_tokens"):
        resolve_chunking(None, chunk_tokens=32, overlap=32)
    # Retriever.index applies it: a new budget re-chunks, keeping the recorded overlap
    docs = write_corpus(tmp_path / "docs")
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.index([docs], chunking=SMALL)
    rep = r.index([docs], chunk_tokens=48)
    assert rep.files_indexed == 4 and r.manifest["chunking"] == {
        "max_tokens": 48,
        "overlap_tokens": 4,
    }


def test_chunk_budget_above_encoder_max_length_is_refused(tiny_encoder, tmp_path):
    docs = write_corpus(tmp_path / "docs")
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    limit = tiny_encoder.config.max_length
    with pytest.raises(CompsearchError, match=f"above the encoder's max_length of {limit}"):
        r.index([docs], chunk_tokens=limit + 1)
    with pytest.raises(CompsearchError, match="max_length"):
        r.index([docs], chunking=ChunkingConfig(max_tokens=limit * 2))
    assert not r.exists  # nothing was written
    assert r.index([docs], chunk_tokens=limit).files_indexed == 4


def test_add_filter_delete(tiny_encoder, tmp_path):
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    ids = r.add(
        ["json parse value", "log rotate size", "http cookie header"],
        [{"lang": "en", "source": "a"}, {"lang": "de", "source": "b"}, {"lang": "en"}],
    )
    assert ids == [0, 1, 2]
    hits = r.search("log rotate size", k=3, where={"lang": "en"})
    assert {h.id for h in hits} == {0, 2}
    assert r.search("json", k=5, where={"source": "a"})[0].id == 0
    assert r.search("json", k=5, where={"lang": "fr"}) == []
    assert r.delete(where={"lang": "de"}) == 1
    assert {h.id for h in r.search("log", k=5)} == {0, 2}
    with pytest.raises(CompsearchError):
        r.add(["", "x"])
    with pytest.raises(CompsearchError, match="k must"):
        r.search("x", k=0)


def test_index_types_and_rebuild(tiny_encoder, tmp_path):
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    texts = [
        f"{a} {b} {c}"
        for a in ["json", "log", "http", "file"]
        for b in ["parse", "rotate", "sort", "print", "build"]
        for c in ["value", "key", "size", "data"]
    ]
    r.add(texts * 3)
    assert r.manifest["index"]["spec"]["kind"] == "flat"
    docs = write_corpus(tmp_path / "docs")
    rep = r.index([docs], chunking=SMALL, index_type="ivf")
    assert rep.rebuilt and r.manifest["index"]["spec"]["kind"] == "ivf"
    assert r.manifest["index"]["requested"] == "ivf"
    # exact re-scoring is applied automatically on approximate indexes
    top = r.search(texts[5], k=3, mode="dense")
    assert top[0].text == texts[5] and top[0].score == pytest.approx(1.0, abs=1e-4)
    rep = r.index([docs], index_type="hnsw")
    assert r.manifest["index"]["spec"]["kind"] == "hnsw"
    (docs / "notes.txt").unlink()  # removal from HNSW is a tombstone: no rebuild
    rep = r.index([docs])
    assert rep.files_removed == 1 and not rep.rebuilt
    assert not any(h.source.endswith("notes.txt") for h in r.search("json", k=50, mode="dense"))
    assert r.search(texts[7], k=1)[0].text == texts[7]
    hybrid = r.search("json parse value", k=3, rerank="hybrid")
    assert len(hybrid) == 3 and "dense_score" in hybrid[0].metadata


def test_encoder_mismatch_refused(tiny_encoder, tiny_base, tmp_path):
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.add(["json parse"])
    other = Encoder.from_base(str(tiny_base), dtype="float32", query_prompt=None, seed=7)
    with pytest.raises(CompsearchError, match="cannot be mixed"):
        Retriever.open(tmp_path / "ix", other)
    # reopening without an encoder loads the recorded one and verifies its fingerprint
    r2 = Retriever.open(tmp_path / "ix")
    assert r2.encoder.fingerprint == tiny_encoder.fingerprint
    assert r2.search("json parse", k=1)[0].text == "json parse"


def test_missing_and_corrupt_index(tiny_encoder, tmp_path):
    with pytest.raises(CompsearchError, match="no index"):
        Retriever.open(tmp_path / "nothing", must_exist=True)
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.add(["json parse"])
    (tmp_path / "ix" / MANIFEST).write_text("{oops")
    with pytest.raises(CompsearchError, match="corrupt"):
        Retriever.open(tmp_path / "ix")
    (tmp_path / "ix" / MANIFEST).write_text(json.dumps({"format": "other"}))
    with pytest.raises(CompsearchError, match="not a compsearch index"):
        Retriever.open(tmp_path / "ix")
    r2 = Retriever.open(tmp_path / "ix2", tiny_encoder)
    r2.add(["json parse"])
    manifest = read_manifest(tmp_path / "ix2")
    (tmp_path / "ix2" / manifest["base"]["file"]).unlink()
    with pytest.raises(CompsearchError, match="damaged"):
        Retriever.open(tmp_path / "ix2").search("json")
    (tmp_path / "ix2" / "chunks.sqlite").unlink()
    with pytest.raises(CompsearchError, match="damaged"):
        Retriever.open(tmp_path / "ix2").search("json")


def test_failed_write_leaves_index_intact(tiny_encoder, tmp_path, monkeypatch):
    docs = write_corpus(tmp_path / "docs")
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.index([docs], chunking=SMALL)
    before = _snapshot(r)
    (docs / "notes.txt").write_text("json json json\n")
    import compsearch.indexing as mod  # the write path of Retriever.index

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "chunk_document", boom)
    with pytest.raises(KeyboardInterrupt):
        r.index([docs])
    monkeypatch.undo()
    fresh = Retriever.open(tmp_path / "ix", tiny_encoder)
    assert _snapshot(fresh)[0] == before[0]
    assert [p.name for p in (tmp_path / "ix").iterdir() if p.name.startswith(".tmp")] == []
    assert fresh.index([docs]).files_indexed == 1


def test_index_files_have_usual_permissions(tiny_encoder, tmp_path):
    import os

    old = os.umask(0o027)
    try:
        r = Retriever.open(tmp_path / "ix", tiny_encoder)
        r.index([write_corpus(tmp_path / "docs")], chunking=SMALL)
    finally:
        os.umask(old)
    manifest = read_manifest(tmp_path / "ix")
    base = tmp_path / "ix" / manifest["base"]["file"]
    assert manifest["generation"] == int(base.name[5:11])
    assert (tmp_path / "ix").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "ix" / MANIFEST).stat().st_mode & 0o777 == 0o640
    for p in (base, tmp_path / "ix" / "chunks.sqlite"):
        assert p.stat().st_mode & 0o777 == 0o640, p
