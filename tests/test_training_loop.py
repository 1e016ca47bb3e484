"""The training loop on tiny models: losses go down, resume is exact, stages chain, errors are clear."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import WORDS
from training import testing as T
from training.checkpoint import find_checkpoint
from training.errors import TrainingError
from training.train import train

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def sharp_base(tiny_base, tmp_path_factory):
    return T.sharpen_base(tiny_base, tmp_path_factory.mktemp("sharp") / "base")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    passages = T.write_jsonl(
        d / "passages.jsonl", [{"text": t} for t in T.word_texts(WORDS, 24, 20, 40)]
    )
    sentences = T.write_jsonl(
        d / "sentences.jsonl", [{"text": t} for t in T.word_texts(WORDS, 24, 5, 12, 1)]
    )
    trip = T.write_jsonl(d / "triples.jsonl", T.triples(WORDS, 24))
    # 12 tokens each: with 6 tokens on each side the split point is fixed, so the batch repeats
    fixed = T.write_jsonl(d / "fixed.jsonl", [{"text": t} for t in T.word_texts(WORDS, 8, 12, 12)])
    return {"passages": passages, "sentences": sentences, "triples": trip, "fixed": fixed}


def _trend(ls):
    return np.mean(ls[-3:]) < 0.85 * np.mean(ls[:3])


def test_ctkd_loss_goes_down(sharp_base, files, tmp_path):
    cfg = T.tiny_config(
        "ctkd",
        sharp_base,
        [files["fixed"]],
        tmp_path / "ctkd",
        optim={"max_steps": 12, "lr": 1e-2},
        data={"limit": 4, "min_side_tokens": 6},
    )
    train(cfg)
    ls = T.losses(tmp_path / "ctkd")
    assert len(ls) == 12 and _trend(ls), ls


def test_scl_loss_goes_down_and_chains_from_stage1(sharp_base, files, tmp_path):
    s1 = T.tiny_config(
        "nll", sharp_base, [files["passages"]], tmp_path / "s1", optim={"max_steps": 2}, export=True
    )
    out1 = train(s1)
    enc1 = Path(out1["encoder"])
    cfg = T.tiny_config(
        "scl",
        sharp_base,
        [files["triples"]],
        tmp_path / "scl",
        optim={"max_steps": 12},
        data={"limit": 8},
        model={"init_from": str(tmp_path / "s1"), "train_memory": False},
        export=True,
        diagnostics=True,
    )
    out = train(cfg)
    ls = T.losses(tmp_path / "scl")
    assert _trend(ls), ls
    rows = [
        json.loads(line) for line in (tmp_path / "scl" / "metrics.jsonl").read_text().splitlines()
    ]
    assert rows[-1]["acc"] >= rows[0]["acc"] and rows[0]["negatives"] == 2 * 4 - 1
    # provenance chains the stages; the frozen memory is stage 1's
    cfg_json = json.loads((Path(out["encoder"]) / "compsearch_encoder.json").read_text())
    stages = cfg_json["training"]["stages"]
    assert [s["stage"] for s in stages] == ["nll", "scl"]
    assert stages[1]["data"][0]["used"] == 8 and stages[1]["data"][0]["files"][0]["sha256"]
    from safetensors.torch import load_file

    assert torch.equal(
        load_file(str(enc1 / "memory.safetensors"))["memory"],
        load_file(str(Path(out["encoder"]) / "memory.safetensors"))["memory"],
    )
    diag = json.loads((tmp_path / "scl" / "diagnostics" / "diagnostics.json").read_text())
    assert len(diag["memory_correlation"]["matrix"]) == 8
    assert (tmp_path / "scl" / "diagnostics" / "spectrum.png").is_file()


def test_ucl_runs_with_dropout_views(sharp_base, files, tmp_path):
    cfg = T.tiny_config(
        "ucl",
        sharp_base,
        [files["sentences"]],
        tmp_path / "ucl",
        optim={"max_steps": 3},
        model={"attention_dropout": 0.2},
    )
    train(cfg)
    ls = T.losses(tmp_path / "ucl")
    assert len(ls) == 3 and all(np.isfinite(ls)) and ls[0] > 0  # dropout: the two views differ


@pytest.mark.parametrize("stage", ["ctkd", "scl"])
def test_resume_continues_the_same_loss_curve(sharp_base, files, tmp_path, stage):
    data = [files["passages"] if stage == "ctkd" else files["triples"]]
    kw = dict(
        optim={"max_steps": 6, "warmup_steps": 2, "batch_size": 4, "micro_batch_size": 2},
        data={"limit": 10},
        model={"lora_dropout": 0.1},
    )
    straight = T.tiny_config(stage, sharp_base, data, tmp_path / "a", **kw)
    train(straight)
    interrupted = T.tiny_config(stage, sharp_base, data, tmp_path / "b", **kw)
    train(interrupted, stop_after=3)
    assert find_checkpoint(tmp_path / "b").name == "step_000003"
    assert len(T.losses(tmp_path / "b")) == 3
    torch.manual_seed(999)  # a resumed process starts from a different RNG state
    train(interrupted)  # resume="auto" picks up the checkpoint
    a, b = T.losses(tmp_path / "a"), T.losses(tmp_path / "b")
    assert len(b) == 6
    assert a == b  # bitwise: same data order, dropout masks, optimizer and schedule


def test_never_resume_starts_over(sharp_base, files, tmp_path):
    cfg = T.tiny_config(
        "nll", sharp_base, [files["passages"]], tmp_path / "r", optim={"max_steps": 2}
    )
    train(cfg)
    first = T.losses(tmp_path / "r")
    train(cfg, resume="never")
    assert T.losses(tmp_path / "r") == first


def test_out_of_memory_gives_a_clear_message(sharp_base, files, tmp_path, monkeypatch):
    import training.train as tr

    def boom(*a, **k):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
        )

    monkeypatch.setattr(tr, "stage_loss", boom)
    cfg = T.tiny_config("ctkd", sharp_base, [files["passages"]], tmp_path / "oom")
    with pytest.raises(TrainingError, match="micro_batch_size.*gradient_checkpointing"):
        train(cfg)


def test_cli_trains_and_exports(sharp_base, files, tmp_path, capsys):
    from compsearch import Encoder
    from training.__main__ import main

    cfg_file = tmp_path / "tiny.json"
    cfg_file.write_text(
        json.dumps(
            {
                "common": {
                    "precision": "fp32",
                    "progress": False,
                    "diagnostics": False,
                    "out_dir": str(tmp_path / "{stage}"),
                    "model": {"base": str(sharp_base), "max_length": 48},
                    "optim": {"max_steps": 2, "batch_size": 2, "micro_batch_size": 2},
                },
                "ctkd": {
                    "data": {
                        "train": [str(files["passages"])],
                        "min_side_tokens": 4,
                        "max_continuation_tokens": 8,
                    }
                },
            }
        )
    )
    assert (
        main(["ctkd", "--config", str(cfg_file), "--set", "optim.lr=0.001", "--set", "seed=3"]) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and Path(summary["encoder"]).is_dir()
    saved = json.loads((tmp_path / "ctkd" / "config.json").read_text())
    assert saved["optim"]["lr"] == 0.001 and saved["seed"] == 3
    out = tmp_path / "exported"
    assert main(["export", str(tmp_path / "ctkd"), str(out), "--adapter-dtype", "float32"]) == 0
    a = Encoder.load(out, dtype="float32").encode(["the index"])
    b = Encoder.load(summary["encoder"], dtype="float32").encode(["the index"])
    np.testing.assert_allclose(a, b, atol=1e-6)
    # bad input is an error message, not a traceback
    assert main(["ctkd", "--config", str(cfg_file), "--set", 'data.train=["missing.jsonl"]']) == 2
    assert "training data not found" in capsys.readouterr().err


def test_bf16_autocast_bf16_base_and_checkpointing_run(sharp_base, files, tmp_path):
    """The GPU-style path (bf16 autocast, bf16 frozen base, fp32 LoRA/memory, activation checkpointing)
    runs on the CPU too (slowly on CPUs without native bf16; the tiny model makes that irrelevant)."""
    from training.model import LLM2Comp

    cfg = T.tiny_config(
        "ctkd",
        sharp_base,
        [files["passages"]],
        tmp_path / "bf16",
        optim={"max_steps": 2},
        precision="bf16",
        gradient_checkpointing=True,
        model={"base_dtype": "bfloat16"},
    )
    train(cfg)
    assert all(np.isfinite(T.losses(tmp_path / "bf16")))
    m = LLM2Comp.from_config(cfg.model, device="cpu", precision="bf16")
    assert m.lm.get_input_embeddings().weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in m.trainable().values())


def test_ship_exports_a_small_default_with_a_model_card(sharp_base, files, tmp_path):
    from compsearch import Encoder
    from training.ship import ship

    with pytest.raises(TrainingError, match="has not finished"):
        ship(tmp_path / "arm", tmp_path / "default", report=None)
    cfg = T.tiny_config(
        "scl",
        sharp_base,
        [files["triples"]],
        tmp_path / "arm" / "scl",
        optim={"max_steps": 3},
        data={"limit": 8},
        export=True,
        diagnostics=True,
    )
    train(cfg)
    info = ship(tmp_path / "arm", tmp_path / "default", report=None)
    card = (tmp_path / "default" / "README.md").read_text()
    assert (
        "| 1 scl | all | 3 |" in card
        and info["min_cosine_vs_fp32"] > 0.99
        and info["fingerprint"] in card
    )
    # what the stage read: its file, how much of it, its digest
    assert "| 1 scl | `" in card and " of " in card.split("## Evaluation")[0]
    enc = Encoder.load(tmp_path / "default")
    assert (
        enc.fingerprint == info["fingerprint"]
        and enc.config.training["stages"][0]["stage"] == "scl"
    )
    with pytest.raises(TrainingError, match="over the"):
        ship(tmp_path / "arm", tmp_path / "default", report=None, max_mb=0.0001)
    # another stage folder (a cpu-continue round), its suite scores and its commands in the card
    shutil_copy = __import__("shutil").copytree
    shutil_copy(tmp_path / "arm" / "scl", tmp_path / "arm" / "scl-qa")
    scores = tmp_path / "quality-quick.json"
    scores.write_text(
        json.dumps(
            {
                "profile": "quick",
                "results": {
                    "compsearch:x": {"FoldocRetrieval": {"scores": {"main_score": 0.4321}}}
                },
            }
        )
    )
    qa = ship(
        tmp_path / "arm",
        tmp_path / "default-qa",
        report=None,
        stage="scl-qa",
        evals=[scores],
        reproduce=["training/depth.sh 8"],
    )
    card_qa = (tmp_path / "default-qa" / "README.md").read_text()
    assert qa["fingerprint"] == info["fingerprint"] and "`arm/scl-qa`" in card_qa
    assert "| FoldocRetrieval | quick | 0.432 |" in card_qa and "training/depth.sh 8" in card_qa
    assert "arm.sh" not in card_qa
    scores.write_text(json.dumps({"profile": "quick", "results": {"BM25": {}}}))
    with pytest.raises(TrainingError, match="one compsearch model"):
        ship(tmp_path / "arm", tmp_path / "x", report=None, stage="scl-qa", evals=[scores])
    assert not (tmp_path / "x").exists()
    # shipped on the training machine, copied back without checkpoints, shipped again here
    import shutil

    shutil.copytree(tmp_path / "arm", tmp_path / "back")
    (tmp_path / "back" / "ship.json").write_text(
        json.dumps(ship(tmp_path / "back", tmp_path / "back" / "shipped", report=None))
    )
    shutil.rmtree(tmp_path / "back" / "scl" / "checkpoints")
    shutil.rmtree(tmp_path / "back" / "scl" / "encoder")
    again = ship(tmp_path / "back", tmp_path / "default2", report=None)
    assert (
        again["fingerprint"] == info["fingerprint"]
        and again["min_cosine_vs_fp32"] == info["min_cosine_vs_fp32"]
    )
    np.testing.assert_allclose(
        Encoder.load(tmp_path / "default2").encode(["the index"]),
        enc.encode(["the index"]),
        atol=1e-6,
    )
    (tmp_path / "back" / "ship.json").unlink()  # without the check record it needs the checkpoints
    with pytest.raises(TrainingError):
        ship(tmp_path / "back", tmp_path / "default3", report=None)


def test_time_budget_ends_the_stage_early_but_exported_and_recorded(sharp_base, files, tmp_path):
    from compsearch import Encoder

    cfg = T.tiny_config(
        "ctkd",
        sharp_base,
        [files["passages"]],
        tmp_path / "tb",
        export=True,
        optim={"max_steps": 50, "max_minutes": 1e-9},
    )
    summary = train(cfg)
    assert (
        summary["steps"] == 1 and summary["stopped_early"] == "time budget" and summary["finished"]
    )
    assert len(T.losses(tmp_path / "tb")) == 1
    enc = Encoder.load(summary["encoder"], dtype="float32")
    assert enc.config.max_length == 512  # inference length, not the training cut (48)
    record = enc.config.training["stages"][-1]
    assert (
        record["steps"] == 1
        and record["max_steps"] == 50
        and "time budget" in record["stopped_early"]
    )
    assert (
        json.loads((tmp_path / "tb" / "summary.json").read_text())["stopped_early"] == "time budget"
    )
    # exporting the checkpoint (what `ship` does) keeps the same provenance
    from training.export import export_checkpoint

    again = Encoder.load(export_checkpoint(tmp_path / "tb", tmp_path / "exported"), dtype="float32")
    rec = again.config.training["stages"][-1]
    assert rec["samples"] == record["samples"] == cfg.optim.batch_size
    assert rec["stopped_early"] == record["stopped_early"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("stage", ["ctkd", "nll", "rc", "ucl", "scl"])
def test_every_stage_runs_on_cuda_in_bf16(sharp_base, files, tmp_path, stage):
    """The GPU path for real: CUDA device, bf16 autocast, bf16 frozen base, export and diagnostics."""
    from compsearch import Encoder

    train_files = {
        "ctkd": [files["passages"]],
        "nll": [files["passages"]],
        "rc": [files["passages"]],
        "ucl": [files["sentences"]],
        "scl": [files["triples"]],
    }[stage]
    cfg = T.tiny_config(
        stage,
        sharp_base,
        train_files,
        tmp_path / stage,
        device="cuda",
        precision="auto",
        export=True,
        diagnostics=True,
        optim={"max_steps": 3, "lr": 1e-3},
        data={"heldout": [str(files["sentences"])], "heldout_limit": 16},
    )
    summary = train(cfg)
    assert summary["steps"] == 3 and all(np.isfinite(T.losses(tmp_path / stage)))
    enc = Encoder.load(summary["encoder"], dtype="float32", device="cpu")
    assert enc.config.training["stages"][-1]["precision"] == "bf16"
    assert np.isfinite(enc.encode(["a query about the index"])).all()


def test_model_card_reproduce_line_names_the_runs_config():
    from training.ship import _arm_command

    assert _arm_command("2h-ctkd") == "ctkd cpu-2h"
    assert _arm_command("quick-rc") == "rc cpu-quick"
    assert _arm_command("gpu-small-nll") == "nll gpu-small"
    assert _arm_command("mine-ctkd") == "ctkd <config>"
