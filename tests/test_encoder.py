"""Encoder mechanics on a tiny random Llama: attention, pooling, batching, prompts, persistence."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from compsearch import CompsearchError, Encoder
from compsearch.encoder import CONFIG_FILE, memory_inputs, pool_memory

TEXTS = [
    "the index of a file",
    "rotate log file by size when the log is full",
    "json",
    "parse http request header cookie value and return the response error",
]


def _hidden(enc, ids, **kw):
    with torch.no_grad():
        return enc.model(input_ids=torch.tensor([ids]), **kw).last_hidden_state[0]


def test_attention_is_bidirectional(tiny_encoder):
    ids = tiny_encoder.tokenize(["the index of a file"])[0]
    changed = ids[:-1] + [ids[-1] + 1]
    first = _hidden(tiny_encoder, ids)[0]
    assert not torch.allclose(first, _hidden(tiny_encoder, changed)[0], atol=1e-6)
    # the same model run causally per call: the first position cannot see the last token
    assert torch.allclose(
        _hidden(tiny_encoder, ids, is_causal=True)[0],
        _hidden(tiny_encoder, changed, is_causal=True)[0],
        atol=1e-6,
    )


def test_bidirectional_with_padding(tiny_encoder):
    """The trap: is_causal=False only on attention modules stays causal on padded batches."""
    short, long_ = tiny_encoder.tokenize(["the file", "the index of a file is json"])
    changed = short[:-1] + [short[-1] + 1]

    def first_state(row):
        width = len(long_)
        ids = torch.tensor([row + [1] * (width - len(row)), long_])
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)), [1] * width])
        with torch.no_grad():
            return tiny_encoder.model(input_ids=ids, attention_mask=mask).last_hidden_state[0, 0]

    assert not torch.allclose(first_state(short), first_state(changed), atol=1e-6)


def test_memory_layout_and_pooling(tiny_encoder):
    embed = tiny_encoder.model.get_input_embeddings()
    ids = [[5, 6, 7], [5]]
    k = tiny_encoder.config.num_memory_tokens
    inputs, attn, mem = memory_inputs(embed, tiny_encoder.memory, ids, pad_id=1)
    assert inputs.shape[:2] == (2, 3 + k)
    assert mem[0].nonzero().flatten().tolist() == list(range(3, 3 + k))
    assert mem[1].nonzero().flatten().tolist() == list(range(1, 1 + k))
    assert attn[1].tolist() == [1] * (1 + k) + [0] * 2
    assert torch.equal(inputs[1, 1 : 1 + k], tiny_encoder.memory.to(inputs.dtype))
    hidden = torch.randn(2, 3 + k, 4)
    pooled = pool_memory(hidden, mem)
    assert torch.allclose(pooled[0], hidden[0, 3 : 3 + k].mean(0))
    assert torch.allclose(pooled[1], hidden[1, 1 : 1 + k].mean(0))


def test_embedding_is_mean_of_memory_states_and_normalised(tiny_encoder):
    ids = tiny_encoder.tokenize([TEXTS[1]])[0]
    k = tiny_encoder.config.num_memory_tokens
    with torch.no_grad():
        inputs = torch.cat(
            [
                tiny_encoder.model.get_input_embeddings()(torch.tensor([ids])),
                tiny_encoder.memory[None],
            ],
            1,
        )
        hidden = tiny_encoder.model(inputs_embeds=inputs).last_hidden_state[0]
    want = hidden[-k:].mean(0).numpy()
    got = tiny_encoder.encode([TEXTS[1]], normalize=False)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    v = tiny_encoder.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert v.dtype == np.float32 and v.shape == (4, tiny_encoder.dim)


def test_embedding_does_not_depend_on_batch(tiny_encoder):
    together = tiny_encoder.encode(TEXTS, batch_size=4)
    alone = np.stack([tiny_encoder.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    mixed = tiny_encoder.encode(TEXTS[::-1] + ["the"] * 3, batch_size=3)
    np.testing.assert_allclose(mixed[:4][::-1], alone, atol=1e-5)


def test_memory_tokens_matter(tiny_encoder, tiny_base):
    other = Encoder.from_base(str(tiny_base), dtype="float32", query_prompt=None, seed=1)
    assert not np.allclose(other.encode(TEXTS), tiny_encoder.encode(TEXTS), atol=1e-4)
    assert other.fingerprint != tiny_encoder.fingerprint


def test_query_prompt(tiny_base):
    enc = Encoder.from_base(str(tiny_base), dtype="float32", query_prompt="search the index")
    q = enc.encode(["json file"], kind="query")
    np.testing.assert_allclose(q, enc.encode(["search the index: json file\n"]), atol=1e-6)
    assert not np.allclose(q, enc.encode(["json file"], kind="document"), atol=1e-4)
    with pytest.raises(ValueError, match="kind"):
        enc.encode(["x"], kind="passage")


def test_truncation_is_counted_and_reported(tiny_base, caplog):
    enc = Encoder.from_base(str(tiny_base), dtype="float32", query_prompt=None, max_length=8)
    with caplog.at_level(logging.WARNING):
        v = enc.encode(["the " * 20, "json file", "log " * 9])
    assert enc.last_truncated == [0, 2] and enc.truncated_total == 2
    assert "truncated" in caplog.text
    np.testing.assert_allclose(v[0], enc.encode(["the " * 8])[0], atol=1e-6)
    enc.encode(["json"])
    assert enc.last_truncated == [] and enc.truncated_total == 2


def test_bad_input(tiny_encoder):
    assert tiny_encoder.encode([]).shape == (0, tiny_encoder.dim)
    with pytest.raises(TypeError):
        tiny_encoder.encode([b"bytes"])
    with pytest.raises(ValueError):
        tiny_encoder.encode(["x"], batch_size=0)


def _with_random_adapter(enc, folder):
    """Save enc with a LoRA adapter whose weights are random (so it changes the output)."""
    from peft import LoraConfig, get_peft_model

    import warnings

    base = Encoder.load(str(enc.base_path), dtype="float32")
    with (
        warnings.catch_warnings()
    ):  # peft reads transformers 5's deprecated is_gradient_checkpointing
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        peft_model = get_peft_model(
            base.model,
            LoraConfig(
                r=4,
                lora_alpha=8,
                target_modules=["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            ),
        )
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.2)
    enc.save(folder)
    peft_model.save_pretrained(folder / "adapter")


def test_save_load_round_trip_exact(tiny_encoder, tmp_path):
    folder = tmp_path / "enc"
    tiny_encoder.save(folder)
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    assert cfg["num_memory_tokens"] == 8 and cfg["base_fingerprint"]
    again = Encoder.load(folder, dtype="float32")
    assert again.fingerprint == tiny_encoder.fingerprint
    np.testing.assert_array_equal(again.encode(TEXTS), tiny_encoder.encode(TEXTS))

    _with_random_adapter(tiny_encoder, tmp_path / "lora")
    adapted = Encoder.load(tmp_path / "lora", dtype="float32")
    assert adapted.fingerprint != tiny_encoder.fingerprint
    assert not np.allclose(adapted.encode(TEXTS), tiny_encoder.encode(TEXTS), atol=1e-3)
    adapted.save(tmp_path / "copy")
    copy = Encoder.load(tmp_path / "copy", dtype="float32")
    assert copy.fingerprint == adapted.fingerprint
    np.testing.assert_array_equal(copy.encode(TEXTS), adapted.encode(TEXTS))
    adapted.save(tmp_path / "copy")  # overwriting an existing folder is atomic too
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    # peft writes target_modules from a set: the order varies between exports of the same weights
    acfg_file = tmp_path / "copy" / "adapter" / "adapter_config.json"
    acfg = json.loads(acfg_file.read_text())
    acfg["target_modules"] = list(reversed(sorted(acfg["target_modules"])))
    acfg_file.write_text(json.dumps(acfg))
    assert Encoder.load(tmp_path / "copy", dtype="float32").fingerprint == adapted.fingerprint


def test_load_errors(tiny_encoder, tmp_path):
    with pytest.raises(CompsearchError, match="not found"):
        Encoder.load(tmp_path / "nope")
    folder = tiny_encoder.save(tmp_path / "enc")
    (folder / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CompsearchError, match="not a valid encoder config"):
        Encoder.load(folder)
    tiny_encoder.save(folder)
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    cfg["base_fingerprint"] = "0" * 64
    (folder / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(CompsearchError, match="fingerprint"):
        Encoder.load(folder)
    cfg["format_version"] = 99
    (folder / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(CompsearchError, match="newer"):
        Encoder.load(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompsearchError, match="config.json"):
        Encoder.load(tmp_path / "empty")


def test_converted_gguf_is_identified_by_its_source_not_its_bytes(tmp_path):
    from conftest import make_tiny_base

    from compsearch.models import base_fingerprint, folder_fingerprint

    folder = make_tiny_base(tmp_path / "base")
    plain = base_fingerprint(folder)
    assert plain == folder_fingerprint(folder)
    source = {"gguf_sha256": "ab" * 32, "conversion_version": 1, "fingerprint": plain}
    (folder / "compsearch_source.json").write_text(json.dumps(source))
    ident = base_fingerprint(folder)
    assert ident != plain
    # another transformers version writes a different config.json: same source, same identity
    cfg = json.loads((folder / "config.json").read_text())
    cfg["transformers_version"] = "99.0.0"
    (folder / "config.json").write_text(json.dumps(cfg))
    assert base_fingerprint(folder) == ident and folder_fingerprint(folder) != plain
    # another GGUF or another conversion is another base model
    for change in ({"gguf_sha256": "cd" * 32}, {"conversion_version": 2}):
        (folder / "compsearch_source.json").write_text(json.dumps({**source, **change}))
        assert base_fingerprint(folder) != ident


def test_packaged_default_model_is_small_pickle_free_and_recorded():
    from compsearch.encoder import PACKAGED_DEFAULT

    assert (PACKAGED_DEFAULT / "compsearch_encoder.json").is_file(), (
        "the trained default is not packaged"
    )
    files = [p for p in PACKAGED_DEFAULT.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 32 * 2**20
    assert {p.suffix for p in files} <= {".safetensors", ".json", ".md"}
    cfg = json.loads((PACKAGED_DEFAULT / "compsearch_encoder.json").read_text())
    assert cfg["num_memory_tokens"] == 8
    stages = [s["stage"] for s in cfg["training"]["stages"]]
    assert stages[0] in ("ctkd", "nll", "rc") and stages[-1] == "scl" and "ucl" in stages
    card = (PACKAGED_DEFAULT / "README.md").read_text()
    assert cfg["base_fingerprint"] in card and "## Evaluation" in card


def test_saved_folder_has_usual_permissions(tiny_encoder, tmp_path):
    """Temp folders are 0700; a saved model must not stay readable by its owner only."""
    import os

    old = os.umask(0o022)
    try:
        folder = tiny_encoder.save(tmp_path / "enc")
        _with_random_adapter(tiny_encoder, tmp_path / "lora")
        Encoder.load(tmp_path / "lora", dtype="float32").save(folder)  # replacing an existing one
    finally:
        os.umask(old)
    assert folder.stat().st_mode & 0o777 == 0o755
    entries = list(folder.rglob("*"))
    assert any(p.is_dir() for p in entries)
    for p in entries:
        assert p.stat().st_mode & 0o777 == (0o755 if p.is_dir() else 0o644), p


def test_sentence_transformers_conventions(tiny_base):
    enc = Encoder.from_base(str(tiny_base), dtype="float32", query_prompt="search the index")
    one = enc.encode("json file")
    assert one.shape == (enc.dim,)
    np.testing.assert_array_equal(one, enc.encode(["json file"])[0])
    q = enc.encode(["json file"], kind="query")
    np.testing.assert_array_equal(enc.encode_query(["json file"]), q)
    np.testing.assert_array_equal(enc.encode(["json file"], prompt_name="query"), q)
    np.testing.assert_array_equal(enc.encode_document("json file"), one)
    np.testing.assert_allclose(
        enc.encode(["json file"], prompt="search the index: "),
        enc.encode(["search the index: json file"]),
        atol=1e-6,
    )
    t = enc.encode(["json file", "log"], convert_to_tensor=True)
    assert isinstance(t, torch.Tensor) and t.shape == (2, enc.dim)
    raw = enc.encode(["json file"], normalize_embeddings=False)
    np.testing.assert_array_equal(raw, enc.encode(["json file"], normalize=False))
    assert abs(float(np.linalg.norm(raw)) - 1.0) > 1e-4
    assert enc.encode(["json"], batch_size=1, show_progress_bar=True, device="cpu").shape == (
        1,
        enc.dim,
    )
    with pytest.raises(ValueError, match="kind"):
        enc.encode(["x"], prompt_name="passage")
