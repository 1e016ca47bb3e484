"""FAISS wrapper, index choice and training, and the chunk store."""

from __future__ import annotations

import numpy as np
import pytest

from compsearch import CompsearchError
from compsearch.index import (
    FLAT_MAX,
    IVF_MAX,
    IndexSpec,
    VectorIndex,
    build_index,
    choose_spec,
    nlist_for,
)
from compsearch.store import ChunkRecord, Store


def _vectors(n, dim=32, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_choose_by_size():
    assert choose_spec(100, 576).kind == "flat"
    assert choose_spec(FLAT_MAX, 576).kind == "ivf"
    assert choose_spec(IVF_MAX, 576).kind == "ivf-sq8"
    assert choose_spec(20_000_000, 576).kind == "ivf-pq"
    assert choose_spec(10, 576, "hnsw").kind == "hnsw"
    spec = choose_spec(100_000, 576)
    assert spec.nlist == nlist_for(100_000) == 1264 and 8 <= spec.nprobe <= spec.nlist
    assert nlist_for(100) == 2  # never fewer than ~39 training points per list
    with pytest.raises(CompsearchError, match="unknown index type"):
        choose_spec(10, 8, "annoy")


@pytest.mark.parametrize("kind", ["flat", "ivf", "ivf-sq8", "ivf-pq", "hnsw"])
def test_every_kind_finds_near_duplicates(kind, tmp_path):
    x = _vectors(2000)
    ids = np.arange(10_000, 12_000, dtype=np.int64)
    spec = choose_spec(len(x), 32, kind)
    if kind.startswith("ivf"):
        spec.nlist, spec.nprobe = 16, 16
    index = build_index(
        spec, 32, len(x), lambda: iter([(ids[:1000], x[:1000]), (ids[1000:], x[1000:])])
    )
    assert index.ntotal == 2000
    scores, found = index.search(x[:50], 5)
    assert (found[:, 0] == ids[:50]).mean() >= (0.9 if kind == "ivf-pq" else 0.99)
    if kind == "ivf-pq":  # polysemous codes are never searched with: not trained
        import faiss

        ivf = faiss.downcast_index(faiss.extract_index_ivf(index.index))
        assert isinstance(ivf, faiss.IndexIVFPQ) and not ivf.do_polysemous_training
    index.save(tmp_path / "v.faiss")
    again = VectorIndex.load(tmp_path / "v.faiss", spec, 32)
    np.testing.assert_array_equal(again.search(x[:50], 5)[1], found)
    allowed = ids[100:110]
    _, sel = index.search(x[100:101], 3, allowed)
    assert set(sel[0][sel[0] >= 0]) <= set(allowed) and sel[0][0] == ids[100]


def test_remove_and_hnsw_refuses(tmp_path):
    x = _vectors(100)
    flat = VectorIndex.empty(IndexSpec("flat"), 32)
    flat.add(np.arange(100), x)
    assert flat.remove(np.array([3, 4])) == 2 and flat.ntotal == 98
    assert 3 not in flat.search(x[3:4], 5)[1][0]
    hnsw = VectorIndex.empty(IndexSpec("hnsw"), 32)
    hnsw.add(np.arange(100), x)
    with pytest.raises(CompsearchError, match="rebuild"):
        hnsw.remove(np.array([1]))


def test_untrained_and_corrupt(tmp_path):
    ivf = VectorIndex.empty(IndexSpec("ivf", nlist=4), 32)
    with pytest.raises(CompsearchError, match="trained"):
        ivf.add(np.arange(3), _vectors(3))
    (tmp_path / "bad.faiss").write_bytes(b"garbage" * 10)
    with pytest.raises(CompsearchError, match="corrupt"):
        VectorIndex.load(tmp_path / "bad.faiss", IndexSpec(), 32)
    with pytest.raises(CompsearchError, match="missing"):
        VectorIndex.load(tmp_path / "none.faiss", IndexSpec(), 32)
    with pytest.raises(CompsearchError, match="divide"):
        IndexSpec("ivf-pq", nlist=4, pq_m=5).factory(32)


def test_store_round_trip_and_filters(tmp_path):
    s = Store(tmp_path / "c.sqlite")
    recs = [
        ChunkRecord(
            text=f"t{i}",
            source=f"/d/{'a' if i < 3 else 'b'}/f{i}.md",
            start_line=i,
            end_line=i + 1,
            section="S",
            metadata={"kind": "md", "n": i},
        )
        for i in range(5)
    ]
    x = _vectors(5)
    ids = s.add(recs, x)
    assert ids == [0, 1, 2, 3, 4]
    got = s.get([4, 0])
    assert got[4].text == "t4" and got[0].metadata == {"kind": "md", "n": 0}
    np.testing.assert_array_equal(s.vectors([2, 0], 32), x[[2, 0]])
    assert s.ids_where({"source": "/d/a/*"}).tolist() == [0, 1, 2]
    assert s.ids_where({"n": [1, 4]}).tolist() == [1, 4]
    assert s.ids_where({"source": "/d/b/*", "kind": "md"}).tolist() == [3, 4]
    with pytest.raises(CompsearchError, match="filter key"):
        s.ids_where({"x') OR 1=1 --": 1})
    s.put_file("/d/a/f0.md", "h", 1, 0.0, "markdown", 1, "now")
    assert s.delete_file("/d/a/f0.md") == [0] and s.files() == {}
    assert s.add(recs[:1], x[:1]) == [5]  # ids never reused
    assert s.check() == []
    s.commit()
    s.close()
    ro = Store(tmp_path / "c.sqlite", readonly=True)
    assert ro.count() == 5
    with pytest.raises(CompsearchError, match="missing"):
        ro.vectors([99], 32)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(CompsearchError, match="corrupt"):
        Store(tmp_path / "junk.sqlite", readonly=True)


def test_bm25_scores_rank_lexical_matches():
    from compsearch.rerank import bm25_scores

    s = bm25_scores("rotate the log", ["json parse value", "log rotate size", "log data"])
    assert s[1] > s[2] > s[0] == 0.0
    assert bm25_scores("the of", ["json", "log"]) == [0.0, 0.0]  # stopwords only
