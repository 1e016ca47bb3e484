"""The multi-process path on CPU with two gloo processes: gathered negatives and averaged gradients
equal one process on the concatenated batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import WORDS
from training import testing as T

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
ROOT = Path(__file__).resolve().parents[1]


def test_gathered_infonce_equals_single_process(tmp_path):
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    from training.objectives import SentenceBatch, TripleBatch, scl_loss, ucl_loss

    # fork: the children inherit the imported modules, so the test costs milliseconds, not imports
    mp.start_processes(
        T.gather_worker,
        args=(2, str(tmp_path / "rendezvous"), str(tmp_path)),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    got = load_file(str(tmp_path / "gathered.safetensors"))
    q, p, neg = T.gather_case()
    for name in ("scl", "ucl"):
        model = T.BagOfWords()
        if name == "scl":
            loss, stats = scl_loss(model, TripleBatch(q, p + neg), 0.05)
            assert stats["negatives"] == 2 * len(q) - 1
        else:
            loss, _ = ucl_loss(model, SentenceBatch(q), 0.05)
        loss.backward()
        torch.testing.assert_close(got[f"{name}_loss"][0], loss.detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got[f"{name}_grad"], model.table.grad, atol=1e-6, rtol=1e-4)
        # without the gather each process would only see its own half: a different loss
        half, _ = (
            scl_loss(model, TripleBatch(q[:4], p[:4] + neg[:4]), 0.05)
            if name == "scl"
            else ucl_loss(model, SentenceBatch(q[:4]), 0.05)
        )
        assert abs(float(half) - float(loss)) > 1e-3


def _dist_config(tiny_base, tmp_path) -> Path:
    trip = T.write_jsonl(tmp_path / "triples.jsonl", T.triples(WORDS, 16))
    common = {
        "precision": "fp32",
        "progress": False,
        "diagnostics": False,
        "export": False,
        "seed": 5,
        "model": {"base": str(tiny_base), "max_length": 48, "lora_dropout": 0.0},
        "data": {"train": [str(trip)], "limit": 12},
        "optim": {"max_steps": 3, "batch_size": 4, "micro_batch_size": 2, "lr": 1e-2},
    }
    cfg_file = tmp_path / "dist.json"
    cfg_file.write_text(json.dumps({"common": {**common, "out_dir": str(tmp_path / "two")}}))
    return cfg_file


def _compare_with_one_process(cfg_file: Path, tmp_path: Path) -> None:
    from training.config import load_config
    from training.train import train

    torch.set_num_threads(1)
    one = load_config(
        str(cfg_file), "scl", {"out_dir": str(tmp_path / "one"), "optim.micro_batch_size": 4}
    )
    train(one)
    rows = [
        json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    ]
    assert rows[0]["negatives"] == 2 * 4 - 1  # 4 gathered positives + 4 hard negatives
    two_losses, one_losses = [r["loss"] for r in rows], T.losses(tmp_path / "one")
    assert len(two_losses) == 3
    for a, b in zip(two_losses, one_losses):
        assert abs(a - b) < 1e-4, (two_losses, one_losses)


def test_two_processes_train_like_one(tiny_base, tmp_path):
    """The whole loop with 2 gloo processes (micro-batch 2 each, env:// as torchrun sets it) follows the
    same loss curve as one process with micro-batch 4: data sharding, gathered negatives, averaged
    gradients and the rank-0 checkpoint all line up."""
    import torch.multiprocessing as mp

    from training.config import load_config

    cfg = load_config(str(_dist_config(tiny_base, tmp_path)), "scl")
    mp.start_processes(
        T.train_worker,
        args=(2, T.free_port(), cfg.to_dict()),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    assert (tmp_path / "two" / "checkpoints" / "step_000003" / "rng_rank1.safetensors").is_file()
    _compare_with_one_process(tmp_path / "dist.json", tmp_path)


@pytest.mark.slow
def test_torchrun_cli_two_processes(tiny_base, tmp_path):
    """The same through the real launcher and CLI: torchrun --nproc_per_node 2 -m training scl."""
    cfg_file = _dist_config(tiny_base, tmp_path)
    env = dict(
        os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "training",
            "scl",
            "--config",
            str(cfg_file),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _compare_with_one_process(cfg_file, tmp_path)
