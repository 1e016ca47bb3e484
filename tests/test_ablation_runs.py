"""The stage-1 ablation's runs: cpu-ablation's resolved config and training/arm.sh's seeded, resumable arms."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training import testing as T
from training.config import load_config

ROOT = Path(__file__).resolve().parents[1]
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda omicron".split()

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def test_cpu_ablation_arms_share_depth_steps_and_data_and_live_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPSEARCH_HOME", str(tmp_path))
    runs = tmp_path / "training-runs" / "ablation"
    s1 = {
        o: load_config("cpu-ablation", o, {"name": f"ablation-{o}-s1"})
        for o in ("ctkd", "nll", "rc")
    }
    for objective, cfg in s1.items():
        assert cfg.run_dir == runs / f"ablation-{objective}-s1" / "stage1"
        assert (
            cfg.model.init_from is None
        )  # the untrained base: the ablation measures stage 1 itself
        assert cfg.model.num_layers == 8 and cfg.model.train_memory
    assert len({c.optim.max_steps for c in s1.values()}) == 1
    ucl = load_config("cpu-ablation", "ucl", {"name": "ablation-none-s2", "seed": 2})
    scl = load_config("cpu-ablation", "scl", {"name": "ablation-none-s2", "seed": 2})
    assert ucl.model.init_from.format(name=ucl.name) == str(runs / "ablation-none-s2" / "stage1")
    assert scl.model.init_from.format(name=scl.name) == str(runs / "ablation-none-s2" / "ucl")
    assert scl.run_dir == runs / "ablation-none-s2" / "scl" and scl.seed == 2
    assert scl.model.num_layers == 8 and scl.optim.max_steps == 200
    assert {"path": "qdata/qdata-scl.jsonl", "sample": 8000} in scl.data.train


def _tiny_config(path: Path, base: Path, data: dict, runs: Path) -> Path:
    common = {
        "precision": "fp32",
        "progress": False,
        "diagnostics": False,
        "save_every": 1,
        "model": {"base": str(base), "max_length": 48},
        "optim": {"max_steps": 2, "batch_size": 4, "micro_batch_size": 4},
    }
    stage1 = {
        "out_dir": str(runs / "{name}" / "stage1"),
        "data": {
            "train": [str(data["passages"])],
            "min_side_tokens": 4,
            "max_continuation_tokens": 8,
        },
    }
    path.write_text(
        json.dumps(
            {
                "common": common,
                "ctkd": stage1,
                "nll": stage1,
                "ucl": {
                    "out_dir": str(runs / "{name}" / "ucl"),
                    "model": {"init_from": str(runs / "{name}" / "stage1")},
                    "data": {"train": [str(data["sentences"])]},
                },
                "scl": {
                    "out_dir": str(runs / "{name}" / "scl"),
                    "model": {"init_from": str(runs / "{name}" / "ucl")},
                    "data": {"train": [str(data["triples"])], "num_hard_negatives": 1},
                },
            }
        )
    )
    return path


def _arm(arm: str, config: Path, seed: str | None, tmp_path: Path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    env.pop("SEED", None)
    if seed:
        env["SEED"] = seed
    return subprocess.run(
        ["bash", "training/arm.sh", arm, str(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_arm_sh_runs_seeded_arms_and_skips_finished_stages(tiny_base, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    data = {
        "passages": T.write_jsonl(
            d / "p.jsonl", [{"text": t} for t in T.word_texts(WORDS, 12, 20, 40)]
        ),
        "sentences": T.write_jsonl(
            d / "s.jsonl", [{"text": t} for t in T.word_texts(WORDS, 12, 5, 12, 1)]
        ),
        "triples": T.write_jsonl(d / "t.jsonl", T.triples(WORDS, 12)),
    }
    runs = tmp_path / "runs"
    config = _tiny_config(tmp_path / "cpu-tiny.json", tiny_base, data, runs)
    r = _arm("ctkd", config, "2", tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    arm = runs / "tiny-ctkd-s2"
    for stage in ("stage1", "ucl", "scl"):
        saved = json.loads((arm / stage / "config.json").read_text())
        assert saved["seed"] == 2 and saved["model"]["memory_seed"] == 2
        assert (arm / stage / "summary.json").is_file()
    assert f"encoder in {arm / 'scl'}/encoder" in r.stdout
    # a rerun skips the finished stages: nothing is trained again
    before = (arm / "scl" / "summary.json").stat().st_mtime_ns
    again = _arm("ctkd", config, "2", tmp_path)
    assert again.returncode == 0 and (arm / "scl" / "summary.json").stat().st_mtime_ns == before
    # the "none" arm starts UCL from the untrained base and has no stage 1
    none = _arm("none", config, None, tmp_path)
    assert none.returncode == 0, none.stderr[-2000:]
    assert not (runs / "tiny-none" / "stage1").exists()
    ucl = json.loads((runs / "tiny-none" / "ucl" / "config.json").read_text())
    assert (
        ucl["model"]["init_from"] is None
        and (runs / "tiny-none" / "scl" / "summary.json").is_file()
    )


def test_arm_sh_refuses_an_unknown_config_in_one_line(tmp_path):
    r = _arm("ctkd", tmp_path / "missing-config", "1", tmp_path)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "no config" in r.stderr


def test_eval_arm_sh_refuses_an_unfinished_arm_in_one_line(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "COMPSEARCH_HOME": str(tmp_path)}
    r = subprocess.run(
        ["bash", "training/eval_arm.sh", "ablation-ctkd-s9"],
        cwd=ROOT,
        env={**env, "EVAL_OUT": str(tmp_path / "out")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0
    assert "ablation-ctkd-s9 has no finished SCL encoder" in r.stderr
    assert not (tmp_path / "out" / "quality-quick.json").exists()
    usage = subprocess.run(
        ["bash", "training/eval_arm.sh"], cwd=ROOT, capture_output=True, text=True
    )
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_cpu_ablation_long_changes_only_the_length_of_stage_1(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPSEARCH_HOME", str(tmp_path))
    for stage in ("ctkd", "nll", "rc", "ucl", "scl"):
        short = load_config("cpu-ablation", stage, {"name": "x"})
        long = load_config("cpu-ablation-long", stage, {"name": "x"})
        if stage in ("ucl", "scl"):
            assert long.to_dict() == short.to_dict()
        else:
            assert long.optim.max_steps == 5 * short.optim.max_steps == 400
            assert long.model == short.model and long.data == short.data
