"""The Ray path (compsearch.cluster) on a local two-slot Ray cluster started here, and the
IVF-from-shards build (compsearch.shardindex): both must equal the single-process result.

Ray is an extra (``compsearch[ray]``), installed by ``make setup``: when it is missing these tests
fail (the import below), they do not skip.
"""

from __future__ import annotations

import json
import sys
import os
from pathlib import Path

import numpy as np
import pytest
import ray  # noqa: F401  (no importorskip: CI installs the extra, a missing Ray must fail)
from click.testing import CliRunner

from compsearch import CompsearchError, Retriever
from compsearch import cluster
from compsearch.chunking import ChunkingConfig
from compsearch.cli import main
from compsearch.shards import SET_FILE, ShardEncoder, ShardSet, read_shard, text_hashes
from compsearch.shards import write_set, write_shard

from conftest import WORDS, write_corpus

SMALL = ChunkingConfig(max_tokens=24, overlap_tokens=4)
QUERIES = ["rotate log file", "json parse value", "memory token encoder", "http request header"]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local Ray cluster with two worker slots, for this module only."""
    home = tmp_path_factory.getbasetemp() / "cshome"  # = conftest's isolated cache
    repo = str(Path(__file__).resolve().parent.parent)
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])),
        "COMPSEARCH_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=200 * 1024**2,
        runtime_env={"env_vars": env},
    )
    yield
    ray.shutdown()


def _corpus(root: Path) -> Path:
    """conftest's corpus (5 candidate files, one of them empty) plus 13 generated ones."""
    write_corpus(root)
    rng = np.random.default_rng(0)
    for i in range(12):
        paras = [" ".join(rng.choice(WORDS, 12)) for _ in range(3)]
        (root / f"gen{i:02d}.md").write_text(f"# Part {i}\n\n" + "\n\n".join(paras) + "\n")
    (root / "gen_copy.md").write_text((root / "gen00.md").read_text())  # a duplicate
    return root


def _snapshot(r: Retriever):
    store, _ = r._open_read()
    chunks = store.get(store.all_ids().tolist())
    by_key = {(c.source, c.start_line, c.end_line, c.text): i for i, c in chunks.items()}
    vectors = dict(zip(by_key, store.vectors(list(by_key.values()), r.encoder.dim)))
    return sorted(by_key), vectors


def _hits(r: Retriever, q: str, k: int = 5):
    return [(h.source, h.span, h.text) for h in r.search(q, k=k, mode="dense")]


@pytest.mark.slow  # starts Ray (~10 s) and its workers
def test_ray_index_equals_single_process(local_ray, tiny_encoder, tmp_path):
    docs = _corpus(tmp_path / "docs")
    single = Retriever.open(tmp_path / "single", tiny_encoder)
    single.index([docs], chunking=SMALL)

    shards = tmp_path / "shards"
    report, embedded = cluster.index(
        tmp_path / "ray", [docs], model=tiny_encoder, shards_dir=shards, workers=2,
        files_per_shard=3, chunking=SMALL,
    )  # fmt: skip
    assert embedded.files == 17 and embedded.shards == 6 and embedded.reused_shards == 0
    # every vector came from the shards; the duplicate file's chunks are stored once per shard
    assert embedded.served == report.chunks_added and embedded.encoded_here == 0
    assert report.files_indexed == 17 and report.chunks_total == single.count()

    ray_r = Retriever.open(tmp_path / "ray", tiny_encoder)
    (keys_a, vec_a), (keys_b, vec_b) = _snapshot(single), _snapshot(ray_r)
    assert keys_a == keys_b
    for key in keys_a:
        np.testing.assert_allclose(vec_a[key], vec_b[key], atol=1e-5)
    for q in QUERIES:
        assert _hits(ray_r, q) == _hits(single, q)
    assert ray_r.manifest["encoder"]["fingerprint"] == tiny_encoder.fingerprint

    # a re-run over the same shard folder finds its shards and indexes nothing new
    again, embedded = cluster.index(
        tmp_path / "ray", [docs], model=tiny_encoder, shards_dir=shards, workers=2,
        files_per_shard=3,
    )  # fmt: skip
    assert embedded.files == 0 and not again.committed
    # a changed file is the only one sent to the workers
    (docs / "notes.txt").write_text("json value key sort\n\nprint table data\n")
    again, embedded = cluster.index(
        tmp_path / "ray", [docs], model=tiny_encoder, shards_dir=shards, workers=2,
        files_per_shard=3,
    )  # fmt: skip
    assert embedded.files == 1 and again.files_indexed == 1 and embedded.encoded_here == 0
    single.index([docs])
    for q in QUERIES:
        assert _hits(Retriever.open(tmp_path / "ray", tiny_encoder), q) == _hits(single, q)


def test_shard_encoder_refuses_another_encoder(tiny_encoder, tiny_base, tmp_path):
    from compsearch import Encoder

    texts = ["rotate log file", "json parse value"]
    hashes = text_hashes(texts)
    vecs = tiny_encoder.encode(texts, kind="document")
    write_shard(tmp_path / "s.safetensors", hashes, vecs, tiny_encoder.fingerprint)
    write_set(
        tmp_path,
        {"fingerprint": tiny_encoder.fingerprint, "name": tiny_encoder.name, "dim": 32},
        SMALL.to_dict(),
        [{"file": "s.safetensors", "count": 2}],
    )
    served = ShardEncoder(tiny_encoder, tmp_path)
    np.testing.assert_array_equal(served.encode(texts), vecs)
    assert (served.served, served.encoded) == (2, 0)
    served.encode(["a text no shard holds"])
    assert served.encoded == 1

    other = Encoder.from_base(str(tiny_base), dtype="float32", query_prompt=None, seed=1)
    with pytest.raises(CompsearchError) as err:
        ShardEncoder(other, tmp_path)
    assert "\n" not in str(err.value) and "made by encoder" in str(err.value)
    # a shard file of another encoder inside the set is refused too
    write_shard(tmp_path / "s.safetensors", hashes, vecs, other.fingerprint)
    with pytest.raises(CompsearchError, match="cannot be mixed"):
        read_shard(tmp_path / "s.safetensors", tiny_encoder.fingerprint)
    with pytest.raises(CompsearchError, match="cannot be mixed"):
        ShardEncoder(tiny_encoder, tmp_path).encode(texts)
    # damaged or missing pieces are one line
    (tmp_path / "s.safetensors").write_bytes(b"not a shard")
    with pytest.raises(CompsearchError, match="unreadable"):
        ShardSet(tmp_path).read(0)
    with pytest.raises(CompsearchError, match="missing"):
        ShardSet(tmp_path / "nowhere")
    (tmp_path / SET_FILE).write_text(json.dumps({"format": "x"}))
    with pytest.raises(CompsearchError, match="not a compsearch shard set"):
        ShardSet(tmp_path)


@pytest.mark.slow  # starts Ray (~10 s) and its workers
def test_cli_index_ray(local_ray, tiny_base, tmp_path):
    docs = _corpus(tmp_path / "docs")
    runner = CliRunner()

    def run(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    ix = tmp_path / "ix"
    r = run("index", docs, "--index", ix, "--model", tiny_base, "--chunk-tokens", 32,
            "--ray", "--workers", 2, "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["files_indexed"] == 17 and report["ray"]["served"] == report["chunks_added"]
    assert not list(tmp_path.glob(".ix.shards-*"))  # the temporary shard folder is gone
    plain = tmp_path / "plain"
    assert run("index", docs, "--index", plain, "--model", tiny_base, "--chunk-tokens", 32,
               "--json").exit_code == 0  # fmt: skip
    for q in QUERIES[:2]:
        a = json.loads(run("query", q, "--index", ix, "--json").output)["results"]
        b = json.loads(run("query", q, "--index", plain, "--json").output)["results"]
        assert [(h["source"], h["start_line"]) for h in a] == [
            (h["source"], h["start_line"]) for h in b
        ]
    # shards of another encoder: one line, exit 1, the index untouched
    shards = tmp_path / "shards"
    assert run("index", docs, "--index", ix, "--ray", "--shards", shards).exit_code == 0
    (shards / SET_FILE).write_text(
        (shards / SET_FILE).read_text().replace(report["ray"]["fingerprint"], "f" * 64)
    )
    (docs / "notes.txt").write_text("changed\n")
    r = run("index", docs, "--index", ix, "--ray", "--shards", shards)
    assert r.exit_code == 1 and "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "made by encoder" in lines[0], r.output


def _random_shards(folder: Path, sizes=(200, 150, 180, 120), dim: int = 32) -> ShardSet:
    rng = np.random.default_rng(1)
    files = []
    for i, size in enumerate(sizes):
        v = rng.standard_normal((size, dim)).astype(np.float32)
        v[:, : dim // 4] += rng.standard_normal(dim // 4).astype(np.float32) * 2  # some structure
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        hashes = text_hashes([f"shard {i} row {j}" for j in range(size)])
        write_shard(folder / f"s{i}.safetensors", hashes, v, "f" * 64)
        files.append({"file": f"s{i}.safetensors", "count": size})
    write_set(folder, {"fingerprint": "f" * 64, "name": "random", "dim": dim}, None, files)
    return ShardSet(folder)


@pytest.mark.parametrize("kind", ["ivf", "ivf-pq"])
def test_ivf_from_shards_equals_single_process(kind, tmp_path):
    from compsearch.index import VectorIndex, build_index
    from compsearch.indexspec import IndexSpec
    from compsearch.shardindex import build_from_shards, load_ondisk

    shards = _random_shards(tmp_path / "shards")
    spec = IndexSpec(kind=kind, nlist=8, nprobe=3, pq_m=8 if kind == "ivf-pq" else 0)
    if kind == "ivf":  # the seeded training sample: the same as the write path's
        single = build_index(spec, 32, len(shards), shards.batches, seed=3)
        parallel = build_from_shards(shards, spec, seed=3, threads=2)
        ondisk = build_from_shards(shards, spec, seed=3, threads=2, ondisk=tmp_path / "ondisk")
    else:  # one trained index (PQ training is slow), filled three ways
        import faiss

        trained = VectorIndex.empty(spec, 32)
        faiss.downcast_index(trained.index).do_polysemous_training = False
        trained.train(np.concatenate([v for _, v in shards.batches()]))

        def copy():
            return VectorIndex(faiss.deserialize_index(faiss.serialize_index(trained.index)),
                               spec, 32)  # fmt: skip

        single = copy()
        for ids, vectors in shards.batches():
            single.add(ids, vectors)
        parallel = build_from_shards(shards, spec, threads=2, trained=copy())
        ondisk = build_from_shards(shards, spec, ondisk=tmp_path / "ondisk", trained=copy())
    queries = next(shards.batches())[1][:50]
    want = single.search(queries, 10)
    assert parallel.ntotal == ondisk.ntotal == single.ntotal == 650
    for got in (parallel.search(queries, 10), ondisk.search(queries, 10)):
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    # the on-disk folder moves with its lists, and is read back without loading them
    (tmp_path / "ondisk").rename(tmp_path / "moved")
    again = load_ondisk(tmp_path / "moved", spec, 32)
    np.testing.assert_array_equal(again.search(queries, 10)[1], want[1])
    assert not list((tmp_path / "shards").glob(".blocks-*"))  # block files are cleaned up
    with pytest.raises(CompsearchError, match="already exists"):
        build_from_shards(shards, spec, ondisk=tmp_path / "moved")
    with pytest.raises(CompsearchError, match="builds IVF indexes"):
        build_from_shards(shards, "flat")


@pytest.mark.slow  # starts Ray (~10 s) and its workers
def test_ivf_from_shards_on_ray_tasks(local_ray, tmp_path):
    from compsearch.index import build_index
    from compsearch.indexspec import IndexSpec
    from compsearch.shardindex import build_from_shards

    shards = _random_shards(tmp_path / "shards")
    spec = IndexSpec(kind="ivf-sq8", nlist=8, nprobe=3)
    single = build_index(spec, 32, len(shards), shards.batches, seed=0)
    on_ray = build_from_shards(shards, spec, use_ray=True, ondisk=tmp_path / "ondisk")
    queries = next(shards.batches())[1][:50]
    np.testing.assert_array_equal(on_ray.search(queries, 10)[1], single.search(queries, 10)[1])


@pytest.mark.slow  # starts one encoder actor
def test_worker_refusal_is_one_line(local_ray, tiny_encoder, tmp_path):
    """A worker that loads another encoder than the driver's stops the run with one line."""
    docs = _corpus(tmp_path / "docs")
    spec = cluster._worker_spec(tiny_encoder, tmp_path / "shards", SMALL, 0)
    spec["fingerprint"] = "0" * 64
    files = [{"path": str(docs / "notes.txt"), "kind": "text", "language": "", "compressed": False}]
    with pytest.raises(CompsearchError) as err:
        cluster._run(ray, files, spec, 1, 0, 1)
    assert "not the driver's" in str(err.value) and "\n" not in str(err.value)
    assert not list((tmp_path / "shards").glob("shard-*"))


def test_without_ray_installed_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without the extra has
    with pytest.raises(CompsearchError, match=r"pip install 'compsearch\[ray\]'"):
        cluster.import_ray()


@pytest.mark.slow  # starts Ray (~10 s) and its workers
def test_ray_ivf_base_from_shards_equals_single_process(local_ray, tiny_encoder, tmp_path):
    """--type ivf on the Ray path: the base is built from the shards, keyed by chunk id, with
    on-disk lists in the index folder, and answers as the single-process IVF index does."""
    from compsearch.maintenance import verify

    docs = _corpus(tmp_path / "docs")
    single = Retriever.open(tmp_path / "single", tiny_encoder)
    single.index([docs], chunking=SMALL, index_type="ivf")
    report, embedded = cluster.index(
        tmp_path / "ray", [docs], model=tiny_encoder, workers=2, files_per_shard=3,
        chunking=SMALL, index_type="ivf", ondisk_lists=True,
    )  # fmt: skip
    assert embedded.served == report.chunks_added and report.index_type == "ivf"
    ray_r = Retriever.open(tmp_path / "ray", tiny_encoder)
    manifest = ray_r.manifest
    assert manifest["base"]["lists"] in manifest["files"]
    assert (tmp_path / "ray" / manifest["base"]["lists"]).is_file()
    assert ray_r._open_read()[1].base.ntotal == single.count()
    for q in QUERIES:
        assert _hits(ray_r, q) == _hits(single, q)
    assert verify(tmp_path / "ray") == []
    # later writes on top of it: a changed file through the ordinary path
    (docs / "notes.txt").write_text("json value key sort\n\nprint table data\n")
    Retriever.open(tmp_path / "ray", tiny_encoder).index([docs])
    single.index([docs])
    for q in QUERIES:
        assert _hits(Retriever.open(tmp_path / "ray", tiny_encoder), q) == _hits(single, q)
    assert verify(tmp_path / "ray") == []
