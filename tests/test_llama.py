"""compsearch.llama (the transformers-free forward used with cached merged weights) against
transformers' LlamaModel on a tiny random Llama: same hidden states, padded or not, fp32 and bf16."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compsearch import Encoder
from compsearch import llama

TEXTS = ["the index of a file", "rotate log file by size when the log is full", "json"]


@pytest.fixture(scope="module")
def pair(tiny_base, tmp_path_factory):
    from transformers import AutoConfig, AutoModel
    from safetensors.torch import save_file

    cfg = AutoConfig.from_pretrained(tiny_base)
    cfg.is_causal = False
    ref = AutoModel.from_pretrained(tiny_base, config=cfg, dtype=torch.float32).eval()
    folder = tmp_path_factory.mktemp("merged")
    save_file(
        {k: v.contiguous() for k, v in ref.state_dict().items()}, str(folder / "model.safetensors")
    )
    raw = json.loads((tiny_base / "config.json").read_text())
    assert llama.supports(raw)
    return ref, folder, raw


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_same_hidden_states_as_transformers(pair, dtype, tol):
    ref, folder, raw = pair
    mine = llama.load(folder, raw, None, "cpu", dtype)
    ref = ref.to(dtype)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [5, 6, 7, 1, 1, 1]])
    mask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        b = mine(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        torch.testing.assert_close(b[0], a[0], atol=tol, rtol=tol)
        torch.testing.assert_close(b[1, :3], a[1, :3], atol=tol, rtol=tol)  # padded positions aside
        c = ref(input_ids=ids[:1], is_causal=True).last_hidden_state.float()
        d = mine(input_ids=ids[:1], is_causal=True).last_hidden_state.float()
        torch.testing.assert_close(d, c, atol=tol, rtol=tol)
    ref.float()


def test_depth_and_unsupported_configs(pair):
    ref, folder, raw = pair
    one = llama.load(folder, raw, 1, "cpu", torch.float32)
    assert len(one.layers) == 1 and one.config.num_hidden_layers == 1
    assert not llama.supports(dict(raw, model_type="gemma"))
    assert not llama.supports(dict(raw, rope_parameters={"rope_type": "llama3", "rope_theta": 1e4}))
    assert not llama.supports(dict(raw, attention_bias=True))


def test_cached_encoder_uses_it_and_matches(tiny_encoder, tmp_path, monkeypatch):
    from test_encoder import _with_random_adapter

    monkeypatch.setenv(
        "COMPSEARCH_HOME", str(tmp_path / "home")
    )  # no merged cache from other tests
    _with_random_adapter(tiny_encoder, tmp_path / "lora")
    # the first load merges with transformers, caches, then runs what later loads run
    first = Encoder.load(tmp_path / "lora", dtype="float32")
    second = Encoder.load(tmp_path / "lora", dtype="float32")  # reads the cache: compsearch.llama
    assert isinstance(second.model, llama.LlamaEncoderModel)
    assert isinstance(first.model, llama.LlamaEncoderModel)
    np.testing.assert_allclose(second.encode(TEXTS), first.encode(TEXTS), atol=1e-6)
    monkeypatch.setenv("COMPSEARCH_TRANSFORMERS", "1")
    through_transformers = Encoder.load(tmp_path / "lora", dtype="float32")
    assert not isinstance(through_transformers.model, llama.LlamaEncoderModel)
    np.testing.assert_allclose(through_transformers.encode(TEXTS), second.encode(TEXTS), atol=1e-5)
