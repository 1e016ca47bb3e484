"""The Retriever as a component of a service: string ids, upsert, get, count, delete, threads,
foreign embedders and sentence-transformers folders."""

from __future__ import annotations

import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from compsearch import CompsearchError, Retriever
from compsearch.indexdir import read_manifest


class HashEmbedder:
    """A foreign embedding model: 16-d vectors from a hash of each word (deterministic)."""

    def encode(self, texts):
        out = np.zeros((len(texts), 16), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, zlib.crc32(w.encode()) % 16] += 1.0
        return out + 1e-3


def test_string_ids_upsert_get_count_delete(tmp_path, tiny_encoder):
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    assert r.count() == 0 and r.get(["a"]) == []
    assert r.add(
        ["json parse text", "rotate log file"],
        [{"n": 1}, {"n": 2, "source": "s.md"}],
        ids=["a", "b"],
    ) == ["a", "b"]
    assert r.count() == 2
    got = r.get(["b", "missing", "a"])
    assert [g.doc_id for g in got] == ["b", "a"]
    assert got[0].metadata == {"n": 2, "source": "s.md"} and got[0].source == "s.md"  # not moved
    # an existing id is replaced, not duplicated
    r.upsert(["a"], ["http request header"], {"n": 3})
    assert r.count() == 2
    assert r.get(["a"])[0].text == "http request header"
    assert {h.doc_id for h in r.search("header", k=5)} == {"a", "b"}
    assert r.count(where={"n": 3}) == 1
    assert r.delete(["b"]) == 1 and r.count() == 1


def test_deleting_nothing_commits_nothing(tmp_path, tiny_encoder):
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    assert r.delete(["x"]) == 0  # no index yet: nothing is created
    assert read_manifest(tmp_path / "ix") is None
    r.add(["json parse text"], ids=["a"])
    gen = read_manifest(tmp_path / "ix")["generation"]
    assert r.delete(["nope"]) == 0 and r.delete([12345]) == 0 and r.delete(where={"n": 9}) == 0
    assert read_manifest(tmp_path / "ix")["generation"] == gen


@pytest.mark.parametrize(
    "ids, message",
    [
        (["a"], "1 ids for 2 texts"),
        (["a", "a"], "unique"),
        (["a", 3], "non-empty strings"),
        ("ab", "list of strings"),
    ],
)
def test_bad_ids_are_one_line_errors(tmp_path, tiny_encoder, ids, message):
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    with pytest.raises(CompsearchError, match=message):
        r.add(["json parse", "log file"], ids=ids)


def test_one_retriever_shared_by_threads(tmp_path, tiny_encoder):
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.add([f"json parse text {i}" for i in range(20)], ids=[f"d{i}" for i in range(20)])
    errors = []

    def work(i):
        try:
            if i % 5 == 0:
                r.add([f"rotate log file {i}"], ids=[f"w{i}"])
            hits = r.search("json parse", k=3)
            assert len(hits) == 3
            return len(r.get([f"d{i % 20}"]))
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            errors.append(repr(exc))
            return -1

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(20)))
    assert errors == [] and results == [1] * 20
    assert r.count() == 24


def test_foreign_embedder_is_stored_fingerprinted_and_required_again(tmp_path):
    model = HashEmbedder()
    r = Retriever.open(tmp_path / "ix", model)
    r.add(["rotate the log file", "parse json text"], ids=["log", "json"])
    assert r.search("log file", k=1)[0].doc_id == "log"
    entry = read_manifest(tmp_path / "ix")["encoder"]
    assert entry["dim"] == 16 and entry["kind"] == "external"
    with pytest.raises(CompsearchError, match="pass that model"):
        Retriever.open(tmp_path / "ix").search("log", k=1)
    assert Retriever.open(tmp_path / "ix", HashEmbedder()).search("json", k=1)[0].doc_id == "json"

    class Other(HashEmbedder):
        def encode(self, texts):
            return super().encode(texts)[:, ::-1].copy()

    with pytest.raises(CompsearchError, match="cannot be mixed"):
        Retriever.open(tmp_path / "ix", Other())


def test_foreign_embedder_with_bad_output_is_refused(tmp_path):
    with pytest.raises(CompsearchError, match="NaN"):
        Retriever.open(tmp_path / "ix", lambda texts: np.full((len(texts), 4), np.nan)).add(["a b"])


def _minilm():
    # sentence-transformers and all-MiniLM-L6-v2 come with the bench extra `make test` installs
    import sentence_transformers as st

    from benchmarks.mteb_suite.models import minilm_path

    return st, minilm_path()


def test_sentence_transformers_folder_is_loaded_as_such(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    st, path = _minilm()
    r = Retriever.open(tmp_path / "ix", str(path))
    assert r.encoder.dim == 384
    r.add(["The cat sat on the mat.", "Stock markets fell sharply today."], ids=["cat", "stocks"])
    assert r.search("a kitten resting on a rug", k=1)[0].doc_id == "cat"
    ref = st.SentenceTransformer(str(path), device="cpu").encode(
        ["The cat sat on the mat."], normalize_embeddings=True
    )
    assert np.allclose(r.encoder.encode(["The cat sat on the mat."]), ref, atol=1e-5)
    reopened = Retriever.open(tmp_path / "ix")  # found again from the manifest's source
    assert reopened.encoder.fingerprint == r.encoder.fingerprint
    assert reopened.search("falling share prices", k=1)[0].doc_id == "stocks"


def test_lock_is_reentrant_for_rerankers(tmp_path, tiny_encoder):
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.add(["json parse text", "rotate log file"], ids=["a", "b"])
    assert isinstance(r._lock, type(threading.RLock()))
    assert len(r.search("json", k=2, rerank="exact")) == 2
