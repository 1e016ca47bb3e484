"""The torch-free query path (compsearch.npquery): same vectors as the encoder, used by a query
process when the merged cache is verified, and never for anything it cannot reproduce."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from compsearch import Encoder, Retriever
from compsearch.npquery import NumpyQueryEncoder, light_query_encoder, supports
from conftest import write_corpus

QUERIES = [
    "json parse",
    "how do I rotate the log file by size?",
    "HTTP request header cookie " * 20,
]


def _adapted_index(tiny_encoder, tmp_path):
    from test_encoder import _with_random_adapter

    folder = tmp_path / "lora"
    _with_random_adapter(tiny_encoder, folder)
    enc = Encoder.load(folder, dtype="float32")  # writes the merged-weights cache
    r = Retriever.open(tmp_path / "ix", enc)
    r.index([write_corpus(tmp_path / "docs")])
    return enc


def test_numpy_query_vectors_equal_the_encoders(tiny_encoder, tmp_path):
    enc = _adapted_index(tiny_encoder, tmp_path)
    light = light_query_encoder(tmp_path / "ix", Retriever.open(tmp_path / "ix").manifest)
    assert isinstance(light, NumpyQueryEncoder) and light.fingerprint == enc.fingerprint
    for kind in ("query", "document"):
        np.testing.assert_allclose(
            light.encode(QUERIES, kind=kind), enc.encode(QUERIES, kind=kind), atol=2e-5
        )
    assert light.encode("json parse").shape == (enc.dim,)
    np.testing.assert_allclose(
        light.encode(QUERIES, max_length=4), enc.encode(QUERIES, max_length=4), atol=2e-5
    )


def test_a_fresh_retriever_searches_through_it_and_gets_the_same_hits(
    tiny_encoder, tmp_path, monkeypatch
):
    enc = _adapted_index(tiny_encoder, tmp_path)
    fresh = Retriever.open(tmp_path / "ix")
    assert isinstance(fresh.query_encoder, NumpyQueryEncoder)
    got = [(h.id, round(h.score, 4)) for h in fresh.search("rotate log file", k=3)]
    want = [
        (h.id, round(h.score, 4))
        for h in Retriever.open(tmp_path / "ix", enc).search("rotate log file", k=3)
    ]
    assert got == want
    monkeypatch.setenv("COMPSEARCH_TRANSFORMERS", "1")
    assert not isinstance(Retriever.open(tmp_path / "ix").query_encoder, NumpyQueryEncoder)


def test_not_used_without_a_verified_cache_or_for_other_models(tiny_encoder, tmp_path):
    Retriever.open(tmp_path / "ix", tiny_encoder).index([write_corpus(tmp_path / "docs")])
    assert light_query_encoder(tmp_path / "ix", Retriever.open(tmp_path / "ix").manifest) is None
    assert supports({"model_type": "llama"})
    assert not supports({"model_type": "gemma3"})
    assert not supports({"model_type": "llama", "rope_scaling": {"rope_type": "llama3"}})
    assert not supports({"model_type": "llama", "attention_bias": True})


def test_a_query_process_does_not_import_torch(tiny_encoder, tmp_path):
    _adapted_index(tiny_encoder, tmp_path)
    code = (
        "import sys; from compsearch.cli import main\n"
        "try:\n    main(['query', 'rotate log file', '--index', sys.argv[1], '--json'])\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NOTORCH', file=sys.stderr)\n"
    )
    import os

    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "ix")],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["results"]) == Retriever.open(tmp_path / "ix").count()
    assert proc.stderr.strip().splitlines()[-1] == "NOTORCH", proc.stderr
