"""Memory-token states in the store, and the two rerankers that read them (maxsim, likelihood)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from compsearch import memstates
from compsearch.errors import CompsearchError
from compsearch.rerank_late import Decoder, LikelihoodReranker, maxsim

TEXTS = [
    "the search index holds every chunk vector",
    "rotate the log file when its size grows",
    "parse the json request and return the value",
    "sort the table by key and print the data",
    "the http cookie header of the response",
]


def _ids(r):
    store, _ = r._open_read()
    return sorted(int(i) for i in store.all_ids())


def _rows(r):
    store, _ = r._open_read()
    return sorted(i for (i,) in store.db.execute("SELECT chunk_id FROM memory_states"))


# ---------------------------------------------------------------------------- maths


def test_maxsim_matches_numpy_reference():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(8, 16))
    d = rng.normal(size=(5, 8, 16))
    qu, _ = memstates.normalise(q)
    du, _ = memstates.normalise(d)
    ref = []
    for doc in d:
        cos = [
            [a @ b / np.linalg.norm(a) / np.linalg.norm(b) for b in doc] for a in q
        ]  # loops on purpose: an independent computation
        ref.append(np.mean([max(row) for row in cos]))
    np.testing.assert_allclose(maxsim(qu, du), ref, rtol=1e-5)


@pytest.mark.parametrize("dtype,tol", [("fp16", 1e-3), ("int8", 1 / 127)])
def test_pack_round_trip_error_is_bounded(dtype, tol):
    raw = np.random.default_rng(1).normal(size=(8, 64)).astype(np.float32) * 5
    unit, norms = memstates.unpack(dtype, 8, 64, *memstates.pack(raw, dtype))
    ref_unit, ref_norms = memstates.normalise(raw)
    # int8: each value within half a step of its token's scale (max |x| / 127)
    step = np.abs(ref_unit).max(1, keepdims=True) * tol
    assert np.all(np.abs(unit - ref_unit) <= step * (0.5 if dtype == "int8" else 1) + 1e-7)
    np.testing.assert_allclose(norms, ref_norms)
    np.testing.assert_allclose(unit * norms[:, None], raw, atol=float(np.abs(raw).max()) * tol)


def test_encoder_states_are_the_forward_that_makes_the_vector(tiny_encoder):
    vecs, states = tiny_encoder.encode_states(TEXTS, kind="document")
    assert states.shape == (len(TEXTS), tiny_encoder.config.num_memory_tokens, tiny_encoder.dim)
    mean = states.mean(1)
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    np.testing.assert_allclose(vecs, mean, atol=1e-5)
    np.testing.assert_allclose(vecs, tiny_encoder.encode(TEXTS), atol=1e-5)


# ---------------------------------------------------------------------------- the store


@pytest.mark.parametrize("dtype", ["fp16", "int8"])
def test_states_one_row_per_chunk_through_deletes_and_upserts(tmp_path, tiny_encoder, dtype):
    from compsearch import Retriever

    r = Retriever.open(tmp_path / "idx", tiny_encoder)
    r.add(TEXTS[:3], ids=["a", "b", "c"], memory_states=dtype)
    assert _rows(r) == _ids(r) and len(_ids(r)) == 3
    r.add(TEXTS[3:])  # no option given: the index's setting is kept
    assert _rows(r) == _ids(r) and len(_ids(r)) == 5
    r.upsert(["b"], ["a brand new text about memory tokens"])
    r.delete(["a"])
    assert _rows(r) == _ids(r) and len(_ids(r)) == 4
    # the stored states are the encoder's for that chunk
    store, _ = r._open_read()
    cid = r.get(["b"])[0].id
    unit, norms = memstates.read(store.db, [cid])[cid]
    _, raw = tiny_encoder.encode_states(["a brand new text about memory tokens"])
    tol = 2e-3 if dtype == "fp16" else 2e-2
    np.testing.assert_allclose(unit * norms[:, None], raw[0], atol=tol * np.abs(raw).max())
    info = r.info()["memory_states"]
    k, dim = tiny_encoder.config.num_memory_tokens, tiny_encoder.dim
    per_value = 2 if dtype == "fp16" else 1
    scale = 4 * k if dtype == "int8" else 0
    assert info == {"dtype": dtype, "chunks": 4, "bytes": 4 * (k * dim * per_value + scale + 4 * k)}


def test_states_added_to_an_existing_index_and_dropped(tmp_path, tiny_encoder):
    from compsearch import Retriever

    r = Retriever.open(tmp_path / "idx", tiny_encoder)
    r.add(TEXTS[:2])
    assert r.info()["memory_states"] is None
    r.add(TEXTS[2:3], memory_states="int8")  # turning it on fills every chunk, old ones too
    assert _rows(r) == _ids(r) and len(_rows(r)) == 3
    r.add(TEXTS[3:4], memory_states="none")
    store, _ = r._open_read()
    assert memstates.setting(store.db) is None and r.info()["memory_states"] is None


def test_folder_index_keeps_states_consistent(tmp_path, tiny_encoder):
    from compsearch import Retriever

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Logs\n\nrotate the log file when its size grows\n")
    (docs / "b.md").write_text("# Json\n\nparse the json request and return the value\n")
    r = Retriever.open(tmp_path / "idx", tiny_encoder)
    r.index([docs], memory_states="fp16")
    assert _rows(r) == _ids(r) and len(_ids(r)) >= 2
    (docs / "a.md").write_text("# Logs\n\nsort the table by key and print the data\n")
    (docs / "b.md").unlink()
    r.index([docs])
    assert _rows(r) == _ids(r) and r.info()["memory_states"]["dtype"] == "fp16"
    # stored states are the states of the chunk's embed text (section path + text)
    store, _ = r._open_read()
    res = r.get(_ids(r))[0]
    unit, norms = memstates.read(store.db, [res.id])[res.id]
    _, raw = tiny_encoder.encode_states([memstates.embed_text(res.text, res.section)])
    np.testing.assert_allclose(unit * norms[:, None], raw[0], atol=2e-3 * np.abs(raw).max())


def test_bad_memory_states_option_is_one_line(tmp_path, tiny_encoder):
    from compsearch import Retriever

    r = Retriever.open(tmp_path / "idx", tiny_encoder)
    with pytest.raises(CompsearchError, match="fp16, int8 or none"):
        r.add(TEXTS, memory_states="fp8")


# ---------------------------------------------------------------------------- maxsim


def test_maxsim_rerank_scores_are_maxsim_of_the_states(tmp_path, tiny_encoder):
    from compsearch import Retriever

    r = Retriever.open(tmp_path / "idx", tiny_encoder)
    r.add(TEXTS, memory_states="fp16")
    hits = r.search("json request value", k=5, mode="dense", rerank="maxsim")
    _, q = tiny_encoder.encode_states(["json request value"], kind="query")
    _, d = tiny_encoder.encode_states(TEXTS)
    ref = maxsim(memstates.normalise(q[0])[0], memstates.normalise(d)[0])
    got = {h.text: h.score for h in hits}
    np.testing.assert_allclose([got[t] for t in TEXTS], ref, atol=2e-3)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # the default (hybrid) mode reranks too
    hybrid = r.search("json request value", k=5, rerank="maxsim")
    np.testing.assert_allclose(sorted(h.score for h in hybrid), sorted(ref), atol=2e-3)


def test_maxsim_without_states_is_one_line_error(tmp_path, tiny_encoder):
    from compsearch import Retriever

    r = Retriever.open(tmp_path / "idx", tiny_encoder)
    r.add(TEXTS)
    with pytest.raises(CompsearchError, match="--memory-states"):
        r.search("json", rerank="maxsim")


def test_cli_maxsim_without_states_exits_nonzero(tmp_path, tiny_base):
    from compsearch.cli import main

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("rotate the log file when its size grows\n")
    idx = str(tmp_path / "idx")
    runner = CliRunner()
    res = runner.invoke(main, ["index", str(docs), "--index", idx, "--model", str(tiny_base)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["query", "log", "--index", idx, "--rerank", "maxsim"])
    assert res.exit_code != 0
    assert "--memory-states" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    # with the option the same query works, and info reports the states
    res = runner.invoke(
        main, ["index", str(docs), "--index", idx, "--memory-states", "int8", "--json"]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["query", "log", "--index", idx, "--rerank", "maxsim", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["results"]
    res = runner.invoke(main, ["info", "--index", idx, "--json"])
    assert json.loads(res.output)["memory_states"]["dtype"] == "int8"
    res = runner.invoke(main, ["info", "--index", idx])
    assert "memory states" in res.output and "int8, 1 chunks" in res.output


# ---------------------------------------------------------------------------- likelihood


def _independent_logp(base, states: np.ndarray, query: str) -> np.ndarray:
    """log p(query | states) with transformers' causal LM, one candidate at a time."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    ids = AutoTokenizer.from_pretrained(base)(" " + query, add_special_tokens=False)["input_ids"]
    out = []
    for s in states:
        with torch.no_grad():
            emb = lm.get_input_embeddings()(torch.tensor([ids]))
            x = torch.cat([torch.from_numpy(s)[None].float(), emb], 1)
            logits = lm(inputs_embeds=x).logits[0]
        k = len(s)
        logp = torch.log_softmax(logits.float(), -1)
        out.append(np.mean([float(logp[k - 1 + t, tok]) for t, tok in enumerate(ids)]))
    return np.array(out)


def test_likelihood_equals_an_independent_computation(tmp_path, tiny_base, tiny_encoder):
    from compsearch import Retriever

    r = Retriever.open(tmp_path / "idx", tiny_encoder)
    r.add(TEXTS)  # no stored states: the candidates are encoded at query time
    decoder = Decoder(tiny_base, dtype="float32")
    query = "rotate the log file"
    hits = r.search(query, k=5, mode="dense", rerank=LikelihoodReranker(decoder), fetch=5)
    _, states = tiny_encoder.encode_states([h.text for h in hits])
    np.testing.assert_allclose(
        [h.score for h in hits], _independent_logp(tiny_base, states, query), atol=1e-4
    )
    # stored states give the same scores (fp16 storage: close, not equal)
    r2 = Retriever.open(tmp_path / "idx2", tiny_encoder)
    r2.add(TEXTS, memory_states="fp16")
    hits2 = r2.search(query, k=5, mode="dense", rerank=LikelihoodReranker(decoder), fetch=5)
    a = {h.text: h.score for h in hits}
    b = {h.text: h.score for h in hits2}
    np.testing.assert_allclose([a[t] for t in TEXTS], [b[t] for t in TEXTS], atol=2e-3)


def test_likelihood_reorders_a_hand_made_case(tiny_base, tiny_encoder):
    """A chunk whose memory states make the decoder predict the query goes first."""
    import sqlite3
    from types import SimpleNamespace

    from compsearch.results import SearchResult

    decoder = Decoder(tiny_base, dtype="float32")
    query = "json request"
    ids = decoder.target_ids(query)
    emb = decoder.lm.get_input_embeddings().weight.detach().numpy()
    k, dim = tiny_encoder.config.num_memory_tokens, tiny_encoder.dim
    # "good": the query's own token embeddings repeated, a prompt that makes the query likely;
    # "bad": noise of the same scale
    good = np.concatenate([np.tile(emb[ids], (k // len(ids), 1)), emb[ids][: k % len(ids)]])
    bad = np.random.default_rng(0).normal(size=(k, dim)).astype(np.float32)
    bad *= float(np.abs(emb).mean())
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE chunks (id INTEGER PRIMARY KEY)")
    memstates._create(db)
    memstates.write(db, [1, 2], [bad, good], "fp16")
    fake = SimpleNamespace(_open_read=lambda: (SimpleNamespace(db=db), None), root="x")
    results = [SearchResult(id=i, score=1.0 - i, text="t", source="s") for i in (1, 2)]
    out = LikelihoodReranker(decoder).rerank(query, None, results, fake)
    assert [x.id for x in out] == [2, 1]
    assert out[0].score > out[1].score


def test_numpy_query_path_returns_the_same_states(tiny_encoder, tmp_path):
    """The torch-free query encoder gives maxsim the same query states as the torch encoder."""
    from compsearch import Retriever
    from compsearch.npquery import NumpyQueryEncoder, light_query_encoder
    from test_npquery import QUERIES, _adapted_index

    enc = _adapted_index(tiny_encoder, tmp_path)
    light = light_query_encoder(tmp_path / "ix", Retriever.open(tmp_path / "ix").manifest)
    assert isinstance(light, NumpyQueryEncoder)
    for kind in ("query", "document"):
        v1, s1 = light.encode_states(QUERIES, kind=kind)
        v2, s2 = enc.encode_states(QUERIES, kind=kind)
        np.testing.assert_allclose(s1, s2, atol=5e-5)
        np.testing.assert_allclose(v1, v2, atol=2e-5)


def test_server_passes_the_rerankers_through(tmp_path, tiny_encoder):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from compsearch import Retriever
    from compsearch.server import create_app

    r = Retriever.open(tmp_path / "idx", tiny_encoder)
    r.add(TEXTS)
    client = TestClient(create_app(r))
    resp = client.post("/search", json={"query": "json value", "rerank": "maxsim"})
    assert resp.status_code == 400 and "--memory-states" in resp.json()["error"]
    r.add(["one more text about the log"], memory_states="int8")
    resp = client.post("/search", json={"query": "json value", "k": 3, "rerank": "maxsim"})
    assert resp.status_code == 200 and len(resp.json()["results"]) == 3


def test_a_maxsim_query_process_does_not_import_torch(tiny_encoder, tmp_path):
    """With stored states and the numpy query path, maxsim reranking needs no torch."""
    import os
    import subprocess
    import sys

    from compsearch import Encoder, Retriever
    from conftest import write_corpus
    from test_encoder import _with_random_adapter

    _with_random_adapter(tiny_encoder, tmp_path / "lora")
    enc = Encoder.load(tmp_path / "lora", dtype="float32")  # writes the merged-weights cache
    Retriever.open(tmp_path / "ix", enc).index(
        [write_corpus(tmp_path / "docs")], memory_states="int8"
    )
    code = (
        "import sys; from compsearch.cli import main\n"
        "try:\n    main(['query', 'rotate log file', '--index', sys.argv[1], '--json',"
        " '--rerank', 'maxsim', '-k', '3'])\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NOTORCH', file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "ix")],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)["results"]
    assert len(hits) == 3 and hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert proc.stderr.strip().splitlines()[-1] == "NOTORCH", proc.stderr


@pytest.mark.parametrize("dtype", ["fp16", "int8"])
def test_memory_states_are_in_the_store_digest(tmp_path, tiny_encoder, dtype):
    """verify finds a flipped memory-state byte; adds, deletes, a type change and dropping the
    states keep the digest in step (verify stays clean after each)."""
    import sqlite3

    from compsearch import Retriever
    from compsearch.maintenance import verify

    ix = tmp_path / "ix"
    r = Retriever.open(ix, tiny_encoder)
    r.add(TEXTS[:3], ids=["a", "b", "c"], memory_states=dtype)
    r.delete(["b"])
    r.add(TEXTS[3:4], ids=["d"])
    assert verify(ix) == []
    other = "int8" if dtype == "fp16" else "fp16"
    r.add(TEXTS[4:5], ids=["e"], memory_states=other)  # every row redone in the other type
    assert verify(ix) == []
    r.close()
    db = sqlite3.connect(ix / "chunks.sqlite")
    cid, blob = db.execute("SELECT chunk_id, states FROM memory_states LIMIT 1").fetchone()
    flipped = bytearray(blob)
    flipped[3] ^= 0x01
    db.execute("UPDATE memory_states SET states = ? WHERE chunk_id = ?", (bytes(flipped), cid))
    db.commit()
    problems = verify(ix)
    assert len(problems) == 1 and "differs from the digest" in problems[0], problems
    db.execute("UPDATE memory_states SET states = ? WHERE chunk_id = ?", (blob, cid))
    db.commit()
    db.close()
    assert verify(ix) == []
    r = Retriever.open(ix, tiny_encoder)
    r.add(TEXTS[5:6], memory_states="none")  # dropped: out of the digest with the table
    assert verify(ix) == []


def test_a_digest_from_before_memory_states_were_covered(tmp_path, tiny_encoder):
    """An index written before the digest covered memory states verifies as it was (states not
    checked) until its next write, which recomputes the digest once, states included."""
    import sqlite3

    from compsearch import Retriever
    from compsearch.maintenance import verify
    from compsearch.storefile import COVERS_KEY, DIGEST_KEY, full_digest

    ix = tmp_path / "ix"
    r = Retriever.open(ix, tiny_encoder)
    r.add(TEXTS[:3], memory_states="fp16")
    r.close()
    db = sqlite3.connect(ix / "chunks.sqlite")  # what an older compsearch left
    db.execute("DELETE FROM meta WHERE key = ?", (COVERS_KEY,))
    old = f"{full_digest(db, states=False):032x}"
    db.execute("UPDATE meta SET value = ? WHERE key = ?", (old, DIGEST_KEY))
    db.commit()
    db.execute("UPDATE memory_states SET norms = zeroblob(length(norms))")  # unseen by it
    db.commit()
    assert verify(ix) == []
    Retriever.open(ix, tiny_encoder).add(TEXTS[3:4])  # the next write covers them
    covers = db.execute("SELECT value FROM meta WHERE key = ?", (COVERS_KEY,)).fetchone()
    assert covers == ("memory_states",) and verify(ix) == []
    db.execute("UPDATE memory_states SET norms = zeroblob(length(norms) + 4)")
    db.commit()
    db.close()
    assert any("differs from the digest" in p for p in verify(ix))
