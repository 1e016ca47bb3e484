"""A few checks on the real bundled SmolLM2-135M (converted once per machine into the cache)."""

from __future__ import annotations

import json as jsonmod
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def real():
    from compsearch import Encoder

    return Encoder.load()


def test_bundled_model_is_converted_and_fingerprinted(real):
    import hashlib

    from compsearch.models import base_fingerprint, bundled_base_path

    folder = bundled_base_path()
    source = jsonmod.loads((folder / "compsearch_source.json").read_text())
    assert len(source["gguf_sha256"]) == 64
    # identified by the GGUF it came from (machine-independent), which the default encoder records
    expected = hashlib.sha256(
        f"gguf:{source['gguf_sha256']}:conversion-v{source['conversion_version']}".encode()
    ).hexdigest()
    assert base_fingerprint(folder) == real.config.base_fingerprint == expected
    assert (folder / "model.safetensors").stat().st_size > 400e6  # fp32, 134.5M parameters
    base_cfg = jsonmod.loads((folder / "config.json").read_text())
    assert base_cfg["num_hidden_layers"] == 30  # the whole base is bundled ...
    cfg = real.model.config  # ... and the default encoder runs its first 8 layers, bidirectionally
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.is_causal) == (576, 8, False)
    assert real.source == "default" and real.dim == 576 and real.config.num_memory_tokens == 8


def test_real_encoder_mechanics(real):
    texts = [
        "The quick brown fox jumps over the lazy dog.",
        "json.dumps serialises a Python object to a JSON formatted string.",
        "Rotate the log file when it reaches a size limit.",
    ]
    v = real.encode(texts)
    assert v.shape == (3, 576) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    alone = np.stack([real.encode([t])[0] for t in texts])
    tol = 1e-4 if real.dtype == torch.float32 else 2e-2
    np.testing.assert_allclose(v, alone, atol=tol)
    q = real.encode(texts[:1], kind="query")
    assert float(q[0] @ v[0]) < 0.9999  # the query instruction changes the vector
    ids = real.tokenize([texts[0]])[0]
    with torch.no_grad():
        a = real.model(input_ids=torch.tensor([ids])).last_hidden_state[0, 0]
        b = real.model(input_ids=torch.tensor([ids[:-1] + [ids[-1] + 1]])).last_hidden_state[0, 0]
    assert not torch.allclose(a, b)  # bidirectional: the first token sees the last


def test_index_and_query_real_files(real, tmp_path):
    from compsearch import Retriever

    src = Path(jsonmod.__file__)
    r = Retriever.open(tmp_path / "ix", real)
    report = r.index([src])
    assert report.files_indexed == 1 and report.chunks_total >= 5 and report.truncated == 0
    hits = r.search("serialize an object to a JSON string", k=3)
    assert len(hits) == 3 and all(h.source == str(src) for h in hits)
    lines = src.read_text().split("\n")
    for h in hits:
        assert "\n".join(lines[h.start_line - 1 : h.end_line]) == h.text
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_the_default_is_the_shipped_trained_encoder(real):
    from compsearch.encoder import PACKAGED_DEFAULT

    stages = [s["stage"] for s in real.config.training["stages"]]
    assert stages[-1] == "scl" and "ucl" in stages and real.config.base_fingerprint
    assert real.source == "default" and (PACKAGED_DEFAULT / "adapter").is_dir()
    # the trained weights are in use: the memory tokens differ from the untrained initialisation
    from compsearch.encoder import initial_memory

    fresh = initial_memory(real.model.get_input_embeddings().weight, 8, 0).to(real.memory.device)
    assert not torch.allclose(real.memory.float(), fresh.float())


def test_second_load_reads_the_merged_cache_quietly(real):
    """After the first load (the fixture) merged and cached the adapter, a new process loads the
    shipped default without peft and without a word on stderr."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, compsearch; e = compsearch.Encoder.load(); v = e.encode('rotate the log');"
        "print('peft' in sys.modules, v.shape)"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "(576,)"] and res.stderr.strip() == ""
