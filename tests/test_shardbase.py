"""An index folder's FAISS base built from vector shards (``shardindex.build_base``, the Ray
path's write), in RAM or with on-disk inverted lists (``basefile``): equal to the single-process
build, keyed by chunk id, checked by verify, kept by later writes, compact and garbage collection.

Without Ray: the shards are written here from a single-process index of the same corpus (the
torch-free ``TextSeeded`` encoder makes the same vector for the same text in any batch), so the
write path cannot tell them from shards a cluster made. ``test_cluster.py`` runs the Ray path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

import compsearch.index
from compsearch import CompsearchError, Retriever
from compsearch.chunking import ChunkingConfig
from compsearch.cli import main
from compsearch.indexdir import read_manifest
from compsearch.maintenance import compact, verify
from compsearch.shards import ShardEncoder, text_hashes, write_set, write_shard

from conftest import WORDS
from synthetic import TextSeeded

SMALL = ChunkingConfig(max_tokens=24, overlap_tokens=4)


def _corpus(root, files: int = 70, seed: int = 0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        paras = [" ".join(rng.choice(WORDS, 14)) for _ in range(6)]
        (root / f"doc{i:03d}.md").write_text(f"# Doc {i}\n\n" + "\n\n".join(paras) + "\n")
    (root / "copy.md").write_text((root / "doc000.md").read_text())  # duplicate chunks
    return root


def _shards_from(single: Retriever, folder, leave_out: int = 25):
    """Shards holding the single index's vectors by content hash: split in two with an overlap
    (a text in two shards), ``leave_out`` texts in none (encoded by the writer), and a shard of
    texts the index does not hold."""
    store, _ = single._open_read()
    ids = store.all_ids().tolist()
    by_hash = {}
    for i, c in store.get(ids).items():
        by_hash.setdefault(c.content_hash, i)
    hashes = sorted(by_hash)[leave_out:]
    vectors = store.vectors([by_hash[h] for h in hashes], TextSeeded.dim)
    half = len(hashes) // 2
    parts = [(hashes[:half], vectors[:half]), (hashes[half - 20 :], vectors[half - 20 :])]
    rng = np.random.default_rng(5)
    fake = rng.standard_normal((30, TextSeeded.dim)).astype(np.float32)
    parts.append((text_hashes([f"not indexed {i}" for i in range(30)]), fake))
    folder.mkdir(parents=True, exist_ok=True)
    listed = []
    for k, (h, v) in enumerate(parts):
        write_shard(folder / f"s{k}.safetensors", h, v, TextSeeded.fingerprint)
        listed.append({"file": f"s{k}.safetensors", "count": len(h)})
    entry = {"fingerprint": TextSeeded.fingerprint, "name": TextSeeded.name, "dim": TextSeeded.dim}
    write_set(folder, entry, SMALL.to_dict(), listed)
    return folder


def _pair(tmp_path, ondisk: bool):
    docs = _corpus(tmp_path / "docs")
    single = Retriever.open(tmp_path / "single", TextSeeded())
    single.index([docs], chunking=SMALL, index_type="ivf")
    encoder = ShardEncoder(TextSeeded(), _shards_from(single, tmp_path / "shards"),
                           ondisk_lists=ondisk)  # fmt: skip
    built = Retriever.open(tmp_path / "built", encoder)
    built.index([docs], chunking=SMALL, index_type="ivf")
    return docs, single, built, encoder


def _base(r: Retriever):
    return r._open_read()[1].base


def _queries(n: int = 40):
    rng = np.random.default_rng(11)
    q = rng.standard_normal((n, TextSeeded.dim)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


@pytest.mark.parametrize("ondisk", [False, True])
def test_shard_built_base_equals_single_process(tmp_path, ondisk):
    docs, single, built, encoder = _pair(tmp_path, ondisk)
    assert encoder.served > 0 and encoder.encoded > 0  # both paths into the base were taken
    a, b = _base(single), _base(built)
    assert b.spec == a.spec and b.spec.nprobe < b.spec.nlist  # an approximate search
    assert a.ntotal == b.ntotal == single.count() == built.count()
    assert (b.lists is not None) == ondisk
    queries = _queries()
    (sa, ia), (sb, ib) = a.search(queries, 10), b.search(queries, 10)
    np.testing.assert_array_equal(ia, ib)  # same quantiser, same lists: the same top-k
    np.testing.assert_allclose(sa, sb, rtol=1e-6)
    for q in ["rotate log file", "json parse value", "memory token encoder"]:
        want = [(h.source, h.span) for h in single.search(q, k=5, mode="dense")]
        assert [(h.source, h.span) for h in built.search(q, k=5, mode="dense")] == want
    manifest = read_manifest(tmp_path / "built")
    names = set(manifest["files"])
    assert names == ({manifest["base"]["file"], manifest["base"]["lists"]} if ondisk else
                     {manifest["base"]["file"]})  # fmt: skip
    assert verify(tmp_path / "built") == []


def test_later_writes_compact_and_gc_keep_on_disk_lists(tmp_path, monkeypatch):
    docs, single, built, _ = _pair(tmp_path, ondisk=True)
    ix = tmp_path / "built"
    first = read_manifest(ix)["base"]
    r = Retriever.open(ix, TextSeeded())  # a later writer: no shards
    r.add(["cookie header sort parse", "rotate rotate rotate log"], ids=["x1", "x2"])
    r.delete(["x2"])
    single.add(["cookie header sort parse"], ids=["x1"])
    assert read_manifest(ix)["base"] == first  # the base stays; the delta is in the store
    added = TextSeeded().encode(["cookie header sort parse", "rotate rotate rotate log"])
    hits = r.search_vectors(added, k=3)  # the delta is searched, the tombstone skipped
    assert hits[0][0].doc_id == "x1" and all(h.doc_id != "x2" for h in hits[1])
    assert verify(ix) == []
    # a file deleted and one added: the base becomes stale and is built again, still on disk
    monkeypatch.setattr(compsearch.index, "STALE_MIN", 5)
    monkeypatch.setattr(compsearch.index, "STALE_FRACTION", 0.0)
    (docs / "doc001.md").unlink()
    (docs / "new.md").write_text("# New\n\n" + " ".join(WORDS[:40]) + "\n")
    r.index([docs])
    second = read_manifest(ix)["base"]
    assert second["file"] != first["file"] and second["lists"].endswith(".ivfdata")
    _finds_itself(r, str(docs / "new.md"))
    assert verify(ix) == []
    compact(ix)
    third = read_manifest(ix)["base"]
    assert third["lists"] and verify(ix) == []
    # garbage collection keeps the current and the previous base, each with its lists
    left = sorted(p.name for p in ix.iterdir() if p.name.startswith("base-"))
    assert left == sorted([second["file"], second["lists"], third["file"], third["lists"]])
    assert not [p for p in ix.iterdir() if p.name.startswith(".tmp-")]
    again = Retriever.open(ix, TextSeeded())
    _finds_itself(again, str(docs / "new.md"))
    _finds_itself(again, str(docs / "doc002.md"))
    gone = str(docs / "doc001.md")
    assert all(h.source != gone for q in ["json", "the of"] for h in again.search(q, k=10))


def _finds_itself(r: Retriever, source: str) -> None:
    """Every chunk of ``source`` is its own nearest neighbour (searched by its stored vector)."""
    store, _ = r._open_read()
    ids = store.ids_for_source(source)
    assert ids
    hits = r.search_vectors(store.vectors(ids, TextSeeded.dim), k=1, rerank="none")
    assert [h[0].id for h in hits] == ids


def test_damaged_lists_are_one_line(tmp_path):
    _pair(tmp_path, ondisk=True)
    ix = tmp_path / "built"
    lists = ix / read_manifest(ix)["base"]["lists"]
    data = bytearray(lists.read_bytes())
    data[len(data) // 2] ^= 0x40  # inside a list, past the first MiB check on load? (small file)
    lists.write_bytes(bytes(data))
    problems = verify(ix)
    assert len(problems) == 1 and lists.name in problems[0] and "digest" in problems[0]
    out = CliRunner().invoke(main, ["verify", str(ix)])
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert out.exit_code == 1 and len(lines) == 1 and lists.name in lines[0], out.output
    with pytest.raises(CompsearchError) as err:  # a load checks the edges of a small file
        Retriever.open(ix, TextSeeded()).search("json", k=1)
    assert "damaged" in str(err.value) and "\n" not in str(err.value)
    lists.write_bytes(bytes(data[: len(data) // 2]))  # truncated: never mapped (SIGBUS)
    problems = verify(ix)
    assert len(problems) == 1 and "bytes, the manifest recorded" in problems[0]
    with pytest.raises(CompsearchError, match="bytes, the manifest recorded"):
        Retriever.open(ix, TextSeeded()).search("json", k=1)


def test_json_output_stays_json_with_on_disk_lists(tmp_path):
    """FAISS prints on the C stdout when it finds lists beside their index: swallowed."""
    _pair(tmp_path, ondisk=True)
    code = textwrap.dedent(f"""
        import json
        from compsearch import Retriever
        from synthetic import TextSeeded
        hits = Retriever.open({str(tmp_path / "built")!r}, TextSeeded()).search("json", k=2)
        print(json.dumps([h.source for h in hits]))
    """)
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert len(__import__("json").loads(out.stdout)) == 2


def _env():
    tests = os.path.dirname(os.path.abspath(__file__))
    return dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(tests), tests]),
                OMP_NUM_THREADS="1")  # fmt: skip


BUILDER = textwrap.dedent("""
    import os, signal, sys
    from compsearch import Retriever, basefile, shardindex
    from compsearch.shards import ShardEncoder
    from compsearch.store import Store
    from synthetic import TextSeeded

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    class Os:  # basefile's os, dying right after the lists are renamed into place
        def __getattr__(self, name):
            return getattr(os, name)
        def replace(self, src, dst):
            os.replace(src, dst)
            if str(dst).endswith(".ivfdata"):
                die()

    point = sys.argv[4]
    if point == "merge":  # the blocks are written, the lists not yet merged
        shardindex._merge_into = die
    elif point == "write":  # the lists are merged, nothing renamed yet
        basefile.write = die
    elif point == "lists-renamed":
        basefile.os = Os()
    elif point == "commit":  # both files in place, the store not committed
        Store.commit = die
    enc = ShardEncoder(TextSeeded(), sys.argv[2], ondisk_lists=True)
    Retriever.open(sys.argv[1], enc).index([sys.argv[3]], index_type="ivf-sq8")
    print("done", flush=True)
""")


@pytest.mark.slow  # four writers killed, one completing (~10 s)
def test_kill_9_during_an_on_disk_build_leaves_the_previous_index(tmp_path):
    """kill -9 at each step of writing a new on-disk base (``--type ivf-sq8`` from the shards):
    the previous (ivf) index answers and verifies; the next run completes and leaves no debris."""
    docs, single, built, _ = _pair(tmp_path, ondisk=True)
    ix = tmp_path / "built"
    before = read_manifest(ix)
    want = [h.id for h in Retriever.open(ix, TextSeeded()).search("json", k=5)]
    for point in ["merge", "write", "lists-renamed", "commit", None]:
        args = [str(ix), str(tmp_path / "shards"), str(docs), str(point)]
        out = subprocess.run([sys.executable, "-c", BUILDER, *args], env=_env(),
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        if point is None:
            assert out.returncode == 0 and "done" in out.stdout, out.stderr
            break
        assert out.returncode == -9, (point, out.stderr)
        assert read_manifest(ix) == before, point
        assert verify(ix) == [], point
        assert [h.id for h in Retriever.open(ix, TextSeeded()).search("json", k=5)] == want
    after = read_manifest(ix)
    assert after["index"]["spec"]["kind"] == "ivf-sq8" and after["base"]["lists"]
    assert verify(ix) == [] and not [p for p in ix.iterdir() if p.name.startswith(".tmp-")]
    left = {p.name for p in ix.iterdir() if p.name.startswith("base-")}
    keep = {after["base"]["file"], after["base"]["lists"], before["base"]["file"]}
    assert left == keep | {before["base"]["lists"]}  # the previous base stays for its readers


def test_a_failed_on_disk_build_leaves_the_index_as_it_was(tmp_path, monkeypatch):
    """A full disk while the new base is written: one line, the old base answers, and neither
    the build folder nor a half-written base is left."""
    from compsearch import basefile

    _pair(tmp_path, ondisk=True)
    ix = tmp_path / "built"
    before = read_manifest(ix)
    listing = sorted(p.name for p in ix.iterdir())

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(basefile, "write", full)
    with pytest.raises(CompsearchError, match="no space left") as err:
        compact(ix)
    assert "\n" not in str(err.value)
    assert read_manifest(ix) == before and sorted(p.name for p in ix.iterdir()) == listing
    assert verify(ix) == []


@pytest.mark.parametrize("lists", ["../outside.ivfdata", "base-000009.ivfdata", 7])
def test_hostile_lists_entry_is_one_line(tmp_path, lists):
    import json

    _pair(tmp_path, ondisk=True)
    ix = tmp_path / "built"
    manifest = json.loads((ix / "manifest.json").read_text())
    manifest["base"]["lists"] = lists
    (ix / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CompsearchError) as err:
        Retriever.open(ix, TextSeeded()).search("json", k=1)
    assert "base.lists must name" in str(err.value) and "\n" not in str(err.value)


def test_ondisk_lists_without_ray_is_one_line(tmp_path):
    docs = _corpus(tmp_path / "docs", files=2)
    out = CliRunner().invoke(main, ["index", str(docs), "--index", str(tmp_path / "ix"),
                                    "--type", "ivf", "--ondisk-lists"])  # fmt: skip
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert out.exit_code == 1 and len(lines) == 1 and "--ray" in lines[0], out.output
    assert not (tmp_path / "ix" / "manifest.json").exists()
