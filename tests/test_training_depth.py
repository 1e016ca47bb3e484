"""A compact student on tiny random models: the first L layers learn, the full base teaches and decodes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import WORDS, make_tiny_base
from training import testing as T
from training.config import ModelConfig
from training.errors import TrainingError
from training.model import LLM2Comp, layer_of

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

TEXTS = [
    "rotate log file by size when the log is full",
    "json",
    "the index of a file is a table of data",
]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def base4(tmp_path_factory):
    """A 4-layer tiny Llama, so that depths 1..3 are real truncations."""
    return make_tiny_base(tmp_path_factory.mktemp("deep") / "base", seed=3, layers=4)


def _student(base, layers, lora_scale=0.2, **kw):
    torch.manual_seed(0)
    m = LLM2Comp.from_config(
        ModelConfig(base=str(base), num_layers=layers, max_length=64, **kw),
        device="cpu",
        precision="fp32",
    )
    with torch.no_grad():  # a non-zero adapter, so "adapter on" and "adapter off" differ
        for name, p in m.peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, lora_scale)
    return m.eval()


def _truncated(base, layers, causal_lm=False):
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from compsearch.encoder import truncate_config

    cfg = truncate_config(AutoConfig.from_pretrained(base), layers)
    cls = AutoModelForCausalLM if causal_lm else AutoModel
    return cls.from_pretrained(base, config=cfg, dtype=torch.float32).eval()


def _inputs(model, texts):
    from compsearch.encoder import memory_inputs

    ids = model.tokenize(texts)
    return memory_inputs(model.inner.get_input_embeddings(), model.memory, ids, model.pad_id)


@pytest.mark.parametrize("layers", [1, 3])
def test_shallow_student_is_the_base_truncated_at_its_depth(base4, layers):
    m = _student(base4, layers)
    assert m.student_depth == layers and len(m.student.layers) == layers
    inputs, attention, mem_mask = _inputs(m, TEXTS)
    ref = _truncated(base4, layers)
    with torch.no_grad(), m.peft.disable_adapter():
        mine = m.student(
            inputs_embeds=inputs, attention_mask=attention, is_causal=False
        ).last_hidden_state
    with torch.no_grad():
        want = ref(
            inputs_embeds=inputs, attention_mask=attention, is_causal=False
        ).last_hidden_state
        full = m.inner(
            inputs_embeds=inputs, attention_mask=attention, is_causal=False
        ).last_hidden_state
    torch.testing.assert_close(mine, want, atol=1e-5, rtol=1e-5)
    assert (
        mine - full
    ).abs().max() > 1e-3  # the full depth is something else, so the check can fail
    # the student shares the base's weights: nothing was copied
    assert (
        m.student.layers[0].mlp.down_proj.base_layer.weight
        is m.inner.layers[0].mlp.down_proj.base_layer.weight
    )
    # an untrained depth-L student is compsearch's untrained depth-L encoder
    from compsearch import Encoder

    fresh = _student(base4, layers, lora_scale=0.0)
    enc = Encoder.from_base(str(base4), num_layers=layers, dtype="float32", query_prompt=None)
    with torch.no_grad():
        got = torch.nn.functional.normalize(fresh.embed(fresh.tokenize(TEXTS)), dim=-1).numpy()
    np.testing.assert_allclose(enc.encode(TEXTS), got, atol=1e-5)


def test_teacher_and_decoder_run_every_layer_of_the_base(base4):
    from transformers import AutoModelForCausalLM

    m = _student(base4, 1)
    calls = [0] * 4
    hooks = [
        layer.register_forward_hook(lambda *a, i=i: calls.__setitem__(i, calls[i] + 1))
        for i, layer in enumerate(m.inner.layers)
    ]
    try:
        ids = m.tokenize(TEXTS[:1])
        with torch.no_grad():
            m.memory_states(ids)
        assert calls == [1, 0, 0, 0]
        emb = m.token_embeddings(torch.tensor(ids))
        with torch.no_grad():
            frozen = m.frozen_hidden(emb, torch.ones_like(torch.tensor(ids)))
        assert calls == [2, 1, 1, 1]
    finally:
        for h in hooks:
            h.remove()
    full = AutoModelForCausalLM.from_pretrained(base4, dtype=torch.float32).eval()
    with torch.no_grad():
        want = full.model(input_ids=torch.tensor(ids)).last_hidden_state
    torch.testing.assert_close(frozen, want, atol=1e-5, rtol=1e-5)


def test_only_the_students_layers_are_adapted_and_trained(base4):
    from training.objectives import PretextBatch, pretext_loss

    m = _student(base4, 2).train()
    params = m.trainable()
    layers = {layer_of(k) for k in params if k != "memory"}
    assert layers == {0, 1}
    loss, _ = pretext_loss(
        m, PretextBatch([[5, 6, 7, 8], [9, 10, 11]], [[12, 13], [14, 15, 5]]), "ctkd"
    )
    loss.backward()
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for k, p in params.items() if "lora_A" in k
    )
    assert m.memory.grad is not None and m.memory.grad.abs().sum() > 0
    # the layers beyond the student are the plain base (no LoRA there)
    assert not any("lora" in n for n, _ in m.inner.layers[2].named_modules())


@pytest.mark.parametrize("layers,recorded", [(2, 2), (4, None)])
def test_export_loads_as_exactly_the_trained_student(base4, tmp_path, layers, recorded):
    from compsearch import Encoder
    from compsearch.encoder import CONFIG_FILE

    from training.export import export_encoder

    m = _student(base4, layers)
    with torch.no_grad():
        m.memory.add_(torch.randn_like(m.memory) * 0.3)
    out = export_encoder(m, tmp_path / "enc", query_prompt="Search this", training={"stages": []})
    assert json.loads((out / CONFIG_FILE).read_text())["num_layers"] == recorded
    enc = Encoder.load(out, dtype="float32")
    assert enc.config.num_layers == recorded
    with torch.no_grad():
        want = torch.nn.functional.normalize(m.embed(m.tokenize(TEXTS)), dim=-1).numpy()
    np.testing.assert_allclose(enc.encode(TEXTS), want, atol=1e-5)
    # and the adapter is peft's own format for the truncated base
    conf = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert (
        conf["base_model_name_or_path"] == enc.config.base_model and conf["inference_mode"] is True
    )


def test_a_deeper_encoder_starts_a_shallow_student_not_the_reverse(base4, tmp_path):
    from safetensors.torch import load_file

    from training.export import export_encoder

    deep = _student(base4, None)
    with torch.no_grad():
        deep.memory.add_(torch.randn_like(deep.memory) * 0.3)
    folder = export_encoder(deep, tmp_path / "deep", query_prompt=None, training={})
    shallow = _student(base4, 2, lora_scale=0.0)
    shallow.load_encoder_folder(folder)
    saved = load_file(str(folder / "adapter" / "adapter_model.safetensors"))
    mine = shallow.state_tensors()
    assert torch.equal(mine["memory"], deep.memory.detach())
    assert set(mine) - {"memory"} == {k for k in saved if layer_of(k) < 2}
    assert all(torch.equal(mine[k], saved[k]) for k in mine if k != "memory")
    small = export_encoder(shallow, tmp_path / "shallow", query_prompt=None, training={})
    with pytest.raises(TrainingError, match="2-layer encoder; it cannot start a 3-layer student"):
        _student(base4, 3).load_encoder_folder(small)


@pytest.mark.parametrize("layers", [0, -1, 5, True])
def test_a_depth_the_base_does_not_have_is_refused_in_one_line(base4, tmp_path, capsys, layers):
    from training.__main__ import main

    passages = T.write_jsonl(
        tmp_path / "p.jsonl", [{"text": t} for t in T.word_texts(WORDS, 8, 20, 30)]
    )
    cfg_file = tmp_path / "tiny.json"
    cfg_file.write_text(
        json.dumps(
            {
                "common": {
                    "precision": "fp32",
                    "progress": False,
                    "diagnostics": False,
                    "out_dir": str(tmp_path / "{stage}"),
                    "model": {"base": str(base4), "max_length": 48, "num_layers": layers},
                    "data": {"train": [str(passages)], "min_side_tokens": 4},
                    "optim": {"max_steps": 1, "batch_size": 2, "micro_batch_size": 2},
                }
            }
        )
    )
    assert main(["ctkd", "--config", str(cfg_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "num_layers" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    if layers == 5:
        with pytest.raises(TrainingError, match="base model has 4 layers"):
            LLM2Comp.from_config(
                ModelConfig(base=str(base4), num_layers=5), device="cpu", precision="fp32"
            )


def test_a_shallow_student_trains_every_stage_and_ships_its_depth(base4, tmp_path):
    """A few steps of stage 1 -> SCL at depth 2 of 4, chained, exported with its depth."""
    from compsearch import Encoder

    from training.train import train

    passages = T.write_jsonl(
        tmp_path / "p.jsonl", [{"text": t} for t in T.word_texts(WORDS, 16, 20, 30)]
    )
    trip = T.write_jsonl(tmp_path / "t.jsonl", T.triples(WORDS, 16))
    s1 = T.tiny_config(
        "ctkd",
        base4,
        [passages],
        tmp_path / "s1",
        optim={"max_steps": 2},
        export=True,
        model={"num_layers": 2},
    )
    out1 = train(s1)
    s3 = T.tiny_config(
        "scl",
        base4,
        [trip],
        tmp_path / "s3",
        optim={"max_steps": 2},
        export=True,
        model={"num_layers": 2, "init_from": str(tmp_path / "s1"), "train_memory": False},
    )
    out3 = train(s3)
    assert (
        np.isfinite(T.losses(tmp_path / "s1")).all()
        and np.isfinite(T.losses(tmp_path / "s3")).all()
    )
    enc = Encoder.load(out3["encoder"], dtype="float32")
    assert enc.config.num_layers == 2 and [s["stage"] for s in enc.config.training["stages"]] == [
        "ctkd",
        "scl",
    ]
    assert enc.config.training["stages"][-1]["num_layers"] == 2
    assert Encoder.load(out1["encoder"]).fingerprint != enc.fingerprint
    # a stage pinned to another encoder than the one it would continue stops before training
    pinned = T.tiny_config(
        "scl",
        base4,
        [trip],
        tmp_path / "s3-pinned",
        optim={"max_steps": 2},
        model={
            "num_layers": 2,
            "init_from": str(tmp_path / "s1"),
            "train_memory": False,
            "init_fingerprint": "f" * 64,
        },
    )
    with pytest.raises(TrainingError, match="but this config continues encoder ffffffff"):
        train(pinned)
    assert not (tmp_path / "s3-pinned" / "metrics.jsonl").exists()


def test_cpu_depth_config_follows_the_depth_and_lives_in_the_cache(monkeypatch):
    from compsearch.fsutil import cache_home
    from training.config import load_config

    seen = {}
    for depth in ("30", "8"):
        monkeypatch.setenv("COMPSEARCH_TRAIN_DEPTH", depth)
        cfgs = {s: load_config("cpu-depth", s) for s in ("ctkd", "ucl", "scl")}
        assert all(
            c.run_dir.is_relative_to(cache_home() / "training-runs" / f"depth-{depth}")
            for c in cfgs.values()
        )
        assert cfgs["ctkd"].model.init_from == "default"
        assert cfgs["scl"].model.init_from.format(name=cfgs["scl"].name) == str(cfgs["ucl"].run_dir)
        seen[depth] = cfgs
    assert seen["30"]["scl"].model.num_layers is None and seen["8"]["scl"].model.num_layers == 8
    assert seen["30"]["scl"].optim.max_minutes == seen["8"]["scl"].optim.max_minutes  # equal budget
    assert (
        seen["8"]["scl"].optim.max_steps > 3 * seen["30"]["scl"].optim.max_steps
    )  # more steps in it
    for bad in ("0", "31", "eight"):
        monkeypatch.setenv("COMPSEARCH_TRAIN_DEPTH", bad)
        with pytest.raises(TrainingError, match="COMPSEARCH_TRAIN_DEPTH"):
            load_config("cpu-depth", "scl")


def test_cpu_continue_resumes_the_depth_run_on_the_question_mix(monkeypatch, tmp_path):
    from training.config import load_config

    monkeypatch.setenv("COMPSEARCH_HOME", str(tmp_path))
    monkeypatch.setenv("COMPSEARCH_TRAIN_DEPTH", "8")
    depth_scl = load_config("cpu-depth", "scl")
    cont = load_config("cpu-continue", "scl")
    assert cont.model.init_from == str(depth_scl.run_dir)  # continues the depth run's SCL
    assert cont.run_dir.parent == depth_scl.run_dir.parent and cont.run_dir != depth_scl.run_dir
    assert cont.model.num_layers == 8 and cont.model.max_length == 256
    kinds = [tuple(spec["sources"]) for spec in cont.data.train]
    assert ("sections",) in kinds and ("code",) in kinds and len(set(kinds)) == len(kinds)
    with pytest.raises(TrainingError, match="SCL round only"):
        load_config("cpu-continue", "ucl")


def test_cpu_long_continues_the_shipped_default_at_its_depth_with_a_fixed_schedule(
    monkeypatch, tmp_path
):
    from training.checkpoint import check_init_fingerprint, resolve_init
    from training.config import load_config
    from training.configs.cpu_long import CONTINUES

    monkeypatch.setenv("COMPSEARCH_HOME", str(tmp_path))
    cfg = load_config("cpu-long", "scl")
    kind, folder = resolve_init(cfg.model.init_from)
    shipped = json.loads((folder / "compsearch_encoder.json").read_text())
    assert kind == "encoder" and cfg.model.num_layers == shipped["num_layers"] == 8
    # it continues one particular default (00222e84), whatever ships after it
    assert cfg.model.init_fingerprint == CONTINUES and CONTINUES.startswith("00222e84")
    assert cfg.run_dir == tmp_path / "training-runs" / "long" / "scl"
    assert cfg.optim.max_minutes == 0 and cfg.optim.max_steps == 1000  # resumable to the same end
    assert cfg.seed != load_config("cpu-continue", "scl").seed  # a fresh sample of the mix
    assert sum(spec.get("sample", 0) for spec in cfg.data.train) >= cfg.optim.max_steps
    with pytest.raises(TrainingError, match="SCL round only"):
        load_config("cpu-long", "ctkd")
    # cpu-long-lr: the same run at 5x the learning rate, in its own folder
    fast = load_config("cpu-long-lr", "scl")
    assert (
        fast.optim.lr == 5 * cfg.optim.lr
        and fast.run_dir == tmp_path / "training-runs" / "long-lr" / "scl"
    )
    for same in ("seed", "data", "model"):
        assert getattr(fast, same) == getattr(cfg, same), same
    assert (fast.optim.max_steps, fast.optim.warmup_steps) == (
        cfg.optim.max_steps,
        cfg.optim.warmup_steps,
    )
    with pytest.raises(TrainingError, match="SCL round only"):
        load_config("cpu-long-lr", "ucl")
    # cpu-long-lr-400 (the round that shipped a45d244d): the same run, its schedule ended at 400
    shipped = load_config("cpu-long-lr-400", "scl")
    assert (shipped.optim.max_steps, shipped.cpu_threads) == (400, 2)
    assert shipped.run_dir == tmp_path / "training-runs" / "long-lr-400" / "scl"
    assert (shipped.optim.lr, shipped.optim.warmup_steps) == (fast.optim.lr, fast.optim.warmup_steps)
    for same in ("seed", "data", "model"):
        assert getattr(shipped, same) == getattr(fast, same), same
    with pytest.raises(TrainingError, match="SCL round only"):
        load_config("cpu-long-lr-400", "ctkd")
    # cpu-long-lr-2: the next round continues what cpu-long-lr-400 shipped, on a fresh sample
    nxt = load_config("cpu-long-lr-2", "scl")
    assert nxt.model.init_fingerprint.startswith("a45d244d") and nxt.model.init_from == "default"
    assert nxt.seed != shipped.seed and nxt.data == shipped.data
    assert (nxt.optim.lr, nxt.cpu_threads, nxt.model.max_length) == (
        shipped.optim.lr,
        shipped.cpu_threads,
        shipped.model.max_length,
    )
    assert nxt.run_dir == tmp_path / "training-runs" / "long-lr-2" / "scl"
    check_init_fingerprint(*resolve_init(nxt.model.init_from), nxt.model.init_fingerprint)
    with pytest.raises(TrainingError, match="continues encoder 00222e84"):  # today's default is newer
        check_init_fingerprint(*resolve_init(cfg.model.init_from), cfg.model.init_fingerprint)
    with pytest.raises(TrainingError, match="SCL round only"):
        load_config("cpu-long-lr-2", "ucl")


def test_the_depth_curve_gathers_equal_budget_points_only(tmp_path):
    from training import depth_curve as dc

    def suite(path, scores):
        path.parent.mkdir(parents=True, exist_ok=True)
        res = {t: {"scores": {"main_score": v}} for t, v in scores.items()}
        path.write_text(json.dumps({"results": {"compsearch:encoder": res}}))

    quick = {t: 0.5 for t, _ in dc.TASKS if t != "FaqRetrieval"}
    for depth, faq in ((8, 0.3), (10, None), (12, 0.2)):
        folder = tmp_path / f"eval-depth{depth}"
        suite(folder / "quality-quick.json", quick)
        if faq is not None:
            suite(folder / "faq" / "quality-full.json", {"FaqRetrieval": faq})
        (folder / "scl-summary.json").write_text(json.dumps({"steps": depth * 10}))
    suite(tmp_path / "eval-depth8-qa" / "quality-quick.json", quick)  # a later round: not a point
    speed = tmp_path / "throughput-depth.json"
    speed.write_text(
        json.dumps(
            {
                "default_dtype": "bfloat16",
                "minilm": {"texts_per_s": 20.0, "query_p50_ms": 10.0},
                "rows": [
                    {"depth": 8, "weights": "bfloat16", "texts_per_s": 18.0, "query_p50_ms": 15.0},
                    {"depth": 8, "weights": "int8", "texts_per_s": 1.0, "query_p50_ms": 99.0},
                ],
            }
        )
    )
    d = dc.gather(tmp_path, speed)
    assert [r["depth"] for r in d["rows"]] == [8, 10, 12]
    r8, r10, r12 = d["rows"]
    assert r8["texts_per_s_x_minilm"] == 0.9 and r8["query_p50_x_minilm"] == 1.5
    assert r8["mean"] == (0.5 * 5 + 0.3) / 6 and r8["scl_steps"] == 80
    assert r10["mean"] is None and r10["scores"]["FaqRetrieval"] is None  # incomplete: no mean
    assert r12["texts_per_s_x_minilm"] is None
    md = dc.markdown(d)
    assert "| 8 | 80 | .500 | .500 | .500 | .500 | .500 | .300 | .467 | — | 0.90 | 1.5 |" in md
    assert "| 10 | 100 |" in md and "—" in md
    assert all(r["vs_reference"] is None for r in d["rows"])  # no per-query scores kept: no test


def test_the_depth_curve_pairs_each_depth_with_the_reference_query_by_query(tmp_path):
    from training import depth_curve as dc

    def suite(path, per_query):
        path.parent.mkdir(parents=True, exist_ok=True)
        res = {
            t: {"scores": {"main_score": sum(q.values()) / len(q)}, "per_query": q}
            for t, q in per_query.items()
        }
        path.write_text(json.dumps({"results": {"compsearch:encoder": res}}))

    for depth, hit in ((8, 1.0), (12, 0.0), (15, 1.0)):
        folder = tmp_path / f"eval-depth{depth}"
        pq = {t: {f"q{i}": hit if i % 4 else 0.5 for i in range(20)} for t, _ in dc.TASKS}
        suite(folder / "quality-quick.json", {t: q for t, q in pq.items() if t != "FaqRetrieval"})
        if depth != 15:  # depth 15's FAQ file is missing: incomplete, not compared
            suite(folder / "faq" / "quality-full.json", {"FaqRetrieval": pq["FaqRetrieval"]})
    d = dc.gather(tmp_path, tmp_path / "none.json", reference=8)
    r8, r12, r15 = d["rows"]
    assert r8["vs_reference"] is None and r15["vs_reference"] is None
    v = r12["vs_reference"]
    assert v["tasks"] == 6 and v["queries"] == 120 and v["diff"] == pytest.approx(-0.75)
    assert v["ci95"][1] < 0 and v["p"] == 0
    assert "-0.750 [" in dc.markdown(d) and "vs depth 8" in dc.markdown(d)


def test_a_config_pinned_to_one_encoder_refuses_another(tiny_encoder, tmp_path):
    from compsearch.encoderfolder import read_fingerprint
    from training.checkpoint import check_init_fingerprint

    folder = tiny_encoder.save(tmp_path / "enc")
    fp = read_fingerprint(folder)
    assert fp == tiny_encoder.fingerprint  # from the files alone, as Encoder.load computes it
    check_init_fingerprint("encoder", folder, None)  # not pinned: anything goes
    check_init_fingerprint("encoder", folder, fp)
    check_init_fingerprint("encoder", folder, fp[:8].upper())  # a prefix, any case
    with pytest.raises(TrainingError, match=f"is encoder {fp[:8]}, but this config continues") as e:
        check_init_fingerprint("encoder", folder, "0" * 64 if fp[0] != "0" else "f" * 64)
    assert "\n" not in str(e.value)
    with pytest.raises(TrainingError, match="needs an encoder folder"):
        check_init_fingerprint("checkpoint", tmp_path, fp)
