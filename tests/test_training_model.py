"""Training wiring on a tiny random Llama: attention switches, adapter roles, losses, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.config import ModelConfig
from training.model import LLM2Comp, format_query
from training.objectives import PretextBatch, decoder_hidden, pretext_loss, teacher_hidden


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add contention on a shared CPU
    yield
    torch.set_num_threads(old)


@pytest.fixture()
def model(tiny_base):
    torch.manual_seed(0)
    m = LLM2Comp.from_config(
        ModelConfig(base=str(tiny_base), max_length=64), device="cpu", precision="fp32"
    )
    with torch.no_grad():  # a non-zero adapter, so "adapter on" and "adapter off" differ
        for name, p in m.peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    return m.eval()


def _first_state(model, ids, causal):
    with torch.no_grad():
        return model.inner(input_ids=torch.tensor([ids]), is_causal=causal).last_hidden_state[0, 0]


def test_per_call_is_causal_switches_attention_both_ways(model):
    ids = model.tokenize(["the index of a file is json"])[0]
    changed = ids[:-1] + [ids[-1] + 1]
    # bidirectional: the first position sees the last token
    assert not torch.allclose(
        _first_state(model, ids, False), _first_state(model, changed, False), atol=1e-6
    )
    # causal: it cannot, in the same model, right after a bidirectional call
    assert torch.allclose(
        _first_state(model, ids, True), _first_state(model, changed, True), atol=1e-6
    )
    assert not torch.allclose(
        _first_state(model, ids, False), _first_state(model, changed, False), atol=1e-6
    )
    # the frozen role (adapter disabled, causal) with padding, through inputs_embeds
    short, long_ = ids[:3], ids
    rows = [short + [model.pad_id] * (len(long_) - 3), long_]
    mask = torch.tensor([[1] * 3 + [0] * (len(long_) - 3), [1] * len(long_)])
    emb = model.token_embeddings(torch.tensor(rows))
    alt = model.token_embeddings(torch.tensor([short[:2] + [short[2] + 1] + rows[0][3:], long_]))
    with torch.no_grad():
        a, b = model.frozen_hidden(emb, mask)[0, 0], model.frozen_hidden(alt, mask)[0, 0]
    assert torch.allclose(a, b, atol=1e-6)


def test_student_is_bidirectional_with_padding(model):
    a, b = model.tokenize(["the file", "the index of a file is json"])
    changed = a[:-1] + [a[-1] + 1]
    with torch.no_grad():
        h1 = model.memory_states([a, b])[0]
        h2 = model.memory_states([changed, b])[0]
    assert not torch.allclose(h1, h2, atol=1e-6)


def test_disable_adapter_gives_the_original_lm(model, tiny_base):
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32).eval()
    ids = torch.tensor([model.tokenize(["rotate log file by size"])[0]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        want = plain(input_ids=ids).logits[0]
        got = model.logits(model.frozen_hidden(model.token_embeddings(ids), mask))[0]
        with_adapter = model.logits(model.inner(input_ids=ids, is_causal=True).last_hidden_state)[0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(with_adapter, want, atol=1e-3)


def test_memory_init_matches_compsearch_default(tiny_base):
    from compsearch import Encoder

    m = LLM2Comp.from_config(ModelConfig(base=str(tiny_base)), device="cpu", precision="fp32")
    enc = Encoder.from_base(str(tiny_base), dtype="float32")
    assert torch.equal(m.memory.detach(), enc.memory)
    # the untrained student is compsearch's untrained encoder
    ids = enc.tokenize(["parse http request header"])
    with torch.no_grad():
        mine = m.eval().embed(ids).numpy()
    np.testing.assert_allclose(
        mine[0], enc.encode(["parse http request header"], normalize=False)[0], rtol=1e-5, atol=1e-6
    )


def test_teacher_and_decoder_positions_match_full_forward(model, tiny_base):
    """Logits at the selected positions equal the full LM's logits at those positions."""
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32).eval()
    ctx = [[5, 6, 7], [8, 9, 10, 11, 12]]
    tgt = [[13, 14], [15, 16, 17]]
    with torch.no_grad():
        got = model.logits(teacher_hidden(model, ctx, tgt))
        want = torch.cat(
            [
                plain(input_ids=torch.tensor([c + t])).logits[0, len(c) - 1 : len(c) + len(t) - 1]
                for c, t in zip(ctx, tgt)
            ]
        )
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        mem = torch.randn(2, model.memory.shape[0], model.hidden_size)
        got = model.logits(decoder_hidden(model, mem, tgt))
        k = mem.shape[1]
        want = []
        for i, t in enumerate(tgt):
            emb = torch.cat([mem[i], plain.get_input_embeddings()(torch.tensor(t))])[None]
            want.append(plain(inputs_embeds=emb).logits[0, k - 1 : k - 1 + len(t)])
        torch.testing.assert_close(got, torch.cat(want), atol=1e-5, rtol=1e-5)


def test_ctkd_loss_is_kl_and_trains_only_student_parts(model):
    model.train()
    batch = PretextBatch(context=[[5, 6, 7, 8], [9, 10, 11]], target=[[12, 13, 14], [15, 16]])
    loss, stats = pretext_loss(model, batch, "ctkd")
    assert loss.item() >= 0 and stats["nll_teacher"] > 0
    loss.backward()
    grads = {n: p.grad for n, p in model.trainable().items()}
    assert grads["memory"] is not None and grads["memory"].abs().sum() > 0
    assert all(g is not None for g in grads.values())
    assert not any(p.requires_grad for n, p in model.lm.named_parameters() if "lora_" not in n)
    for obj in ("nll", "rc"):
        assert torch.isfinite(pretext_loss(model, batch, obj)[0])


def test_gradient_checkpointing_gives_the_same_gradients(tiny_base):
    def grads(gc):
        torch.manual_seed(0)
        m = LLM2Comp.from_config(
            ModelConfig(base=str(tiny_base), lora_dropout=0.0),
            device="cpu",
            precision="fp32",
            gradient_checkpointing=gc,
        ).train()
        loss, _ = pretext_loss(m, PretextBatch([[5, 6, 7, 8]], [[9, 10, 11]]), "ctkd")
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in m.trainable().items()}

    l1, g1 = grads(False)
    l2, g2 = grads(True)
    torch.testing.assert_close(l1, l2)
    for n in g1:
        torch.testing.assert_close(g1[n], g2[n], atol=1e-6, rtol=1e-5)


def test_query_format_matches_compsearch(tiny_encoder):
    from compsearch.encoder import EncoderConfig

    class Stub:
        config = EncoderConfig(query_prompt="Find it")

    from compsearch import Encoder

    assert Encoder.prepare(Stub(), ["a query"], "query") == [format_query("a query", "Find it")]
    assert format_query("q", None) == "q"


def test_export_matches_compsearch_encoder(model, tmp_path):
    """A trained student's embeddings equal Encoder.load(exported folder).encode()."""
    from compsearch import Encoder
    from compsearch.encoder import CONFIG_FILE, MEMORY_FILE
    from safetensors.torch import load_file

    from training.export import export_encoder

    with torch.no_grad():
        model.memory.add_(torch.randn_like(model.memory) * 0.3)
    out = export_encoder(
        model,
        tmp_path / "enc",
        query_prompt="Search this",
        training={"recipe": "llm2comp", "stages": [{"stage": "ctkd", "steps": 3}]},
    )
    cfg = json.loads((out / CONFIG_FILE).read_text())
    assert cfg["training"]["stages"][0]["stage"] == "ctkd" and cfg["base_fingerprint"]
    mem = load_file(str(out / MEMORY_FILE))["memory"]
    assert mem.dtype == torch.float32 and tuple(mem.shape) == tuple(model.memory.shape)
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    enc = Encoder.load(out, dtype="float32")
    texts = ["rotate log file by size when the log is full", "json", "the index of a file"]
    with torch.no_grad():
        docs = torch.nn.functional.normalize(
            model.eval().embed([t[:64] for t in model.tokenize(texts)]), dim=-1
        ).numpy()
        queries = torch.nn.functional.normalize(
            model.embed(model.tokenize([format_query(t, "Search this") for t in texts])), dim=-1
        ).numpy()
    np.testing.assert_allclose(enc.encode(texts), docs, atol=1e-5)
    np.testing.assert_allclose(enc.encode(texts, kind="query"), queries, atol=1e-5)
    # the untrained default differs, so the check above can fail
    untrained = Encoder.from_base(str(model.cfg.base), dtype="float32", query_prompt=None)
    assert np.abs(untrained.encode(texts) - docs).max() > 1e-3
    # bf16 adapter export: half the size, nearly the same embeddings
    small = export_encoder(
        model, tmp_path / "enc16", query_prompt=None, training={}, adapter_dtype="bfloat16"
    )
    np.testing.assert_allclose(Encoder.load(small, dtype="float32").encode(texts), docs, atol=2e-2)


@pytest.mark.parametrize("stage", ["ctkd", "scl"])
def test_length_sorted_chunks_give_the_same_loss_and_gradients(tiny_base, stage):
    from training.objectives import TripleBatch, stage_loss

    def run(chunk):
        torch.manual_seed(0)
        m = LLM2Comp.from_config(
            ModelConfig(base=str(tiny_base), lora_dropout=0.0, forward_chunk=chunk),
            device="cpu",
            precision="fp32",
        ).train()
        with torch.no_grad():
            for name, p in m.peft.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.2)
        if stage == "ctkd":
            batch = PretextBatch(
                [[5, 6, 7, 8, 9, 10], [9, 10], [11, 12, 13], [5, 9, 7, 6, 4]],
                [[12, 13, 14], [15, 16, 5, 6], [7], [8, 9]],
            )
        else:
            batch = TripleBatch(
                [[5, 6], [7, 8, 9, 10, 11], [12]],
                [[5, 6, 7], [8], [9, 10, 11, 12], [13, 14], [15, 16, 17, 18, 19], [20]],
            )
        loss, _ = stage_loss(m, batch, stage, 0.05)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in m.trainable().items()}

    l0, g0 = run(0)
    l2, g2 = run(2)
    torch.testing.assert_close(l0, l2, atol=1e-5, rtol=1e-5)
    for n in g0:
        torch.testing.assert_close(g0[n], g2[n], atol=1e-5, rtol=1e-4)
