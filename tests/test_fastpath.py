"""Depth, per-call length, the merged-weights cache, the light tokenizer and int8, on a tiny model."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from compsearch import CompsearchError, Encoder
from compsearch.encoder import CONFIG_FILE, PACKAGED_DEFAULT, encoder_fingerprint
from compsearch.fastpath import MERGED_DIR, RECORD_FILE, WEIGHTS_FILE, LightTokenizer

TEXTS = [
    "the index of a file",
    "rotate log file by size when the log is full",
    "json",
    "parse http request header cookie value and return the response error",
]
# the shipped default's identity (the 8-layer student, its model card names the same): a code change
# that alters how fingerprints are computed would orphan every index users built with it
SHIPPED_FINGERPRINT = "a45d244d27aff2077eae8c0c7efca9a39eb4f1e196210fe6d961013547c63a2e"


def test_shipped_default_keeps_its_fingerprint():
    from safetensors.torch import load_file

    from compsearch.encoder import ADAPTER_DIR, MEMORY_FILE, EncoderConfig, _read_adapter

    cfg = EncoderConfig.from_dict(json.loads((PACKAGED_DEFAULT / CONFIG_FILE).read_text()))
    assert cfg.num_layers == 8  # the compact student: the first 8 of the base's 30 layers
    assert SHIPPED_FINGERPRINT in (PACKAGED_DEFAULT / "README.md").read_text()
    memory = load_file(str(PACKAGED_DEFAULT / MEMORY_FILE))["memory"]
    adapter = _read_adapter(PACKAGED_DEFAULT / ADAPTER_DIR)
    assert encoder_fingerprint(cfg, memory, adapter) == SHIPPED_FINGERPRINT


# -------------------------------------------------------------------- depth
def test_depth_is_saved_loaded_and_fingerprinted(tiny_base, tiny_encoder, tmp_path):
    shallow = Encoder.from_base(str(tiny_base), dtype="float32", query_prompt=None, num_layers=1)
    assert shallow.model.config.num_hidden_layers == 1 and len(shallow.model.layers) == 1
    assert shallow.fingerprint != tiny_encoder.fingerprint
    assert not np.allclose(shallow.encode(TEXTS), tiny_encoder.encode(TEXTS), atol=1e-4)
    # an explicit full depth is still an explicit depth (a different, stated identity)
    full = Encoder.from_base(str(tiny_base), dtype="float32", query_prompt=None, num_layers=2)
    assert full.fingerprint != tiny_encoder.fingerprint
    np.testing.assert_allclose(full.encode(TEXTS), tiny_encoder.encode(TEXTS), atol=1e-6)

    folder = shallow.save(tmp_path / "shallow")
    assert json.loads((folder / CONFIG_FILE).read_text())["num_layers"] == 1
    again = Encoder.load(folder, dtype="float32")
    assert again.config.num_layers == 1 and again.fingerprint == shallow.fingerprint
    np.testing.assert_array_equal(again.encode(TEXTS), shallow.encode(TEXTS))


def test_folder_without_depth_loads_as_full_depth(tiny_encoder, tmp_path):
    folder = tiny_encoder.save(tmp_path / "old")
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    del cfg["num_layers"]  # today's format
    (folder / CONFIG_FILE).write_text(json.dumps(cfg))
    old = Encoder.load(folder, dtype="float32")
    assert old.config.num_layers is None and old.model.config.num_hidden_layers == 2
    assert old.fingerprint == tiny_encoder.fingerprint


@pytest.mark.parametrize("depth", [0, -1, 3, 99])
def test_bad_depth_refused_with_one_line(tiny_base, tiny_encoder, tmp_path, depth):
    with pytest.raises(CompsearchError) as err:
        Encoder.from_base(str(tiny_base), dtype="float32", num_layers=depth)
    assert "\n" not in str(err.value) and "num_layers" in str(err.value)
    folder = tiny_encoder.save(tmp_path / "enc")
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    cfg["num_layers"] = depth
    (folder / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(CompsearchError) as err:
        Encoder.load(folder, dtype="float32")
    assert "\n" not in str(err.value) and "num_layers" in str(err.value)


# -------------------------------------------------------------------- length per call
def test_per_call_max_length(tiny_base, caplog):
    enc = Encoder.from_base(str(tiny_base), dtype="float32", query_prompt=None)
    before = enc.fingerprint
    enc._fingerprint = None
    with caplog.at_level(logging.WARNING):
        v = enc.encode(["the " * 20, "json file"], max_length=8)
    assert enc.last_truncated == [0] and "truncated" in caplog.text
    np.testing.assert_allclose(v[0], enc.encode(["the " * 8])[0], atol=1e-6)
    np.testing.assert_allclose(v[1], enc.encode(["json file"])[0], atol=1e-6)
    assert enc.config.max_length == 512 and enc.fingerprint == before
    assert enc.encode(["the " * 20])[0] @ v[0] < 0.99999  # the config's length applies again
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_length"):
            enc.encode(["x"], max_length=bad)


# -------------------------------------------------------------------- merged weights cache
def _adapted(tiny_encoder, folder):
    from test_encoder import _with_random_adapter

    _with_random_adapter(tiny_encoder, folder)
    return folder


def test_merged_weights_are_cached_and_read_back(tiny_encoder, tmp_path, monkeypatch):
    import compsearch.encoder as encmod
    from compsearch.fsutil import cache_home

    folder = _adapted(tiny_encoder, tmp_path / "lora")
    first = Encoder.load(folder, dtype="float32")
    cache = cache_home() / MERGED_DIR / first.fingerprint
    assert (cache / WEIGHTS_FILE).is_file() and (cache / RECORD_FILE).is_file()
    want = first.encode(TEXTS)

    def no_merge(*a, **k):
        raise AssertionError("merged again although the cache is valid")

    monkeypatch.setattr(encmod, "merge_adapter", no_merge)
    second = Encoder.load(folder, dtype="float32")
    assert second.fingerprint == first.fingerprint
    np.testing.assert_allclose(second.encode(TEXTS), want, atol=1e-6)


def test_a_first_bf16_load_runs_what_every_later_load_runs(tiny_encoder, tmp_path, monkeypatch):
    """The load that merges and caches must give the vectors later loads give: once it cast the
    whole merged model to bf16, RoPE's inv_freq included (cosine ~.9997 to later loads)."""
    import compsearch.encoder as encmod

    folder = _adapted(tiny_encoder, tmp_path / "lora")
    first = Encoder.load(folder, dtype="bfloat16")
    want = first.encode(TEXTS)
    second = Encoder.load(folder, dtype="bfloat16")
    np.testing.assert_allclose(second.encode(TEXTS), want, atol=1e-6)
    # an unwritable cache: the merged transformers model runs, with only its weights in bf16
    monkeypatch.setattr(encmod, "write_merged", lambda fingerprint, model: None)
    monkeypatch.setattr(encmod, "read_merged", lambda fingerprint: None)
    uncached = Encoder.load(folder, dtype="bfloat16")
    assert {p.dtype for p in uncached.model.parameters()} == {torch.bfloat16}
    inv = [b for n, b in uncached.model.named_buffers() if n.endswith("inv_freq")]
    assert inv and all(b.dtype == torch.float32 for b in inv)
    cos = (np.asarray(uncached.encode(TEXTS)) * np.asarray(want)).sum(1)
    assert cos.min() > 0.999


def test_damaged_cache_is_detected_and_rebuilt(tiny_encoder, tmp_path, caplog):
    from compsearch.fsutil import cache_home

    folder = _adapted(tiny_encoder, tmp_path / "lora")
    enc = Encoder.load(folder, dtype="float32")
    want = enc.encode(TEXTS)
    weights = cache_home() / MERGED_DIR / enc.fingerprint / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-16:] = bytes(16)  # flip the last weights to zero: the header still parses
    weights.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        again = Encoder.load(folder, dtype="float32")
    assert "damaged" in caplog.text
    np.testing.assert_allclose(again.encode(TEXTS), want, atol=1e-6)
    weights.write_bytes(b"not safetensors at all")  # garbage: rebuilt too
    np.testing.assert_allclose(Encoder.load(folder, dtype="float32").encode(TEXTS), want, atol=1e-6)
    # a cache written for another encoder is not used for this one
    record = weights.parent / RECORD_FILE
    other = json.loads(record.read_text())
    other["fingerprint"] = "0" * 64
    record.write_text(json.dumps(other))
    np.testing.assert_allclose(Encoder.load(folder, dtype="float32").encode(TEXTS), want, atol=1e-6)
    assert json.loads(record.read_text())["fingerprint"] == enc.fingerprint
    assert not [
        p for p in weights.parent.parent.iterdir() if p.name.startswith(".")
    ]  # no temp left


# -------------------------------------------------------------------- tokenizer and int8
def test_light_tokenizer_matches_transformers(tiny_base):
    from transformers import AutoTokenizer

    light = LightTokenizer.from_folder(tiny_base)
    full = AutoTokenizer.from_pretrained(tiny_base)
    texts = TEXTS + ["", "UNKNOWN words here", "json\n\nfile  log"]
    assert light(texts)["input_ids"] == full(texts, add_special_tokens=True)["input_ids"]
    assert (light.pad_token_id, light.eos_token_id) == (full.pad_token_id, full.eos_token_id)


def test_int8_option(tiny_base):
    plain = Encoder.load(str(tiny_base), dtype="float32")
    q = Encoder.load(str(tiny_base), dtype="float32", quantize="int8")
    assert q.quantize == "int8" and plain.quantize is None and q.fingerprint == plain.fingerprint
    layer = q.model.layers[0]
    assert (
        type(layer.mlp.down_proj) is torch.nn.Linear
        and type(layer.self_attn.o_proj) is torch.nn.Linear
    )
    assert type(layer.self_attn.q_proj) is not torch.nn.Linear  # a dynamic-int8 Linear
    assert "int8" in str(layer.self_attn.q_proj.weight().dtype)
    cos = (q.encode(TEXTS) * plain.encode(TEXTS)).sum(1)
    assert cos.min() > 0.95
    with pytest.raises(CompsearchError, match="quantize"):
        Encoder.load(str(tiny_base), quantize="int4")


def test_benchmark_token_cap_is_per_call(tiny_encoder, tmp_path):
    from benchmarks.mteb_suite.models import load_model

    folder = tiny_encoder.save(tmp_path / "enc")
    loaded = load_model(f"compsearch:{folder}", max_tokens=4)
    enc = loaded.mteb_model.encoder
    assert enc.config.max_length == 512 and loaded.info["fingerprint"] == tiny_encoder.fingerprint
    long = "rotate log file by size when the log is full"
    capped = enc.encode([long])
    np.testing.assert_array_equal(capped, enc.encoder.encode([long], max_length=4))
    assert not np.allclose(capped, enc.encoder.encode([long]), atol=1e-3)
    assert enc.fingerprint == tiny_encoder.fingerprint  # still the saved identity after encoding


def test_speed_benchmark_pieces(tiny_base, tiny_encoder, tmp_path):
    """The depth benchmark's truncation equals a depth-L encoder; its report and plot are written."""
    from benchmarks import throughput_depth as bench

    cut = bench.truncated(tiny_encoder, 1, torch.float32, None)
    want = Encoder.from_base(str(tiny_base), dtype="float32", query_prompt=None, num_layers=1)
    np.testing.assert_allclose(cut.encode(TEXTS), want.encode(TEXTS), atol=1e-6)
    assert cut.fingerprint == want.fingerprint and len(tiny_encoder.model.layers) == 2
    assert bench.truncated(tiny_encoder, 2, torch.float32, "int8").quantize == "int8"
    row = {
        "depth": 1,
        "weights": "float32",
        "texts_per_s": 2.0,
        "tokens_per_s": 50.0,
        "seconds": 1.0,
        "query_p50_ms": 10.0,
        "query_p95_ms": 12.0,
        "cosine_to_fp32": 1.0,
    }
    cold = {
        k: {"min_s": 1.0, "median_s": 1.5, "all_s": [1.0, 2.0], "stderr_lines": 0}
        for k in (
            "compsearch_help",
            "compsearch_query",
            "python_empty",
            "import_torch",
            "import_torch_transformers_llama",
        )
    }
    data = {
        "machine": {"cpu": "cpu", "cores": 2, "torch_threads": 1, "when": "now"},
        "texts": 2,
        "batch_size": 2,
        "repeats": 1,
        "queries": 1,
        "text_tokens": 50,
        "default_dtype": "float32",
        "rows": [row, dict(row, weights="int8", depth=1, shipped=True)],
        "shipped_depth": 1,
        "minilm": {
            "texts_per_s": 4.0,
            "tokens_per_s": 80.0,
            "tokens": 80,
            "seconds": 0.5,
            "query_p50_ms": 5.0,
            "query_p95_ms": 6.0,
        },
        "threads": [{"threads": 1, "texts_per_s": 2.0, "query_p50_ms": 10.0, "query_p95_ms": 11.0}],
        "cold_start": cold,
    }
    md = bench.report(data)
    assert "| 1 | float32 | 2.00 | 50 | 0.50 | 10 | 12 | 2.0 | 1.0000 |" in md
    assert "| 1 **shipped** | int8 |" in md and "runs 1 layers" in md
    assert "`compsearch query` on a small existing index 1.00 s" in md
    bench.plot(data, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
