"""base: the recipe's stage structure, which every other config changes only where it must.

What all configs share (the authors' optimisation, ``/work/shared/design/method.md``, and our stage
chaining): stage 1 (ctkd / nll / rc, same wiring) writes ``training/runs/{name}/stage1`` whatever its
objective and trains the memory tokens; UCL continues from it with attention dropout 0.2 (the SimCSE
views) and frozen memory tokens; SCL continues from UCL with one hard negative per query;
lr 1e-4 / 3e-5 / 1e-4, weight decay 1e-5, gradient clip 2.0 / 1.0 / 1.0, temperature 0.05; data from
``python -m training data`` (``ctkd.jsonl``, ``ucl.jsonl``, ``scl.jsonl``, ``heldout.jsonl``).
Sizes (batches, lengths, steps) are the library defaults here; the other configs set them.

A config is ``derive(stage, common, stages)``: the base, then ``common``, then the stage's own section
(``stages["stage1"]`` for any stage-1 objective, ``stages["ucl"]``, ``stages["scl"]``), all as
``--set``-style dotted keys (``{"optim.lr": 3e-5}``), checked and typed like ``--set``.
"""

from __future__ import annotations

from training.config import PRETEXT_STAGES, STAGES, TrainConfig, merge
from training.errors import TrainingError

RECIPE = {
    "stage1": {
        "out_dir": "training/runs/{name}/stage1",
        "model.train_memory": True,
        "data.train": ["ctkd.jsonl"],
        "data.min_chars": 200,
        "data.min_side_tokens": 10,
        "optim.lr": 1e-4,
        "optim.weight_decay": 1e-5,
        "optim.grad_clip": 2.0,
    },
    "ucl": {
        "out_dir": "training/runs/{name}/ucl",
        "temperature": 0.05,
        "model.attention_dropout": 0.2,
        "model.lora_dropout": 0.05,
        "model.train_memory": False,
        "model.init_from": "training/runs/{name}/stage1",
        "data.train": ["ucl.jsonl"],
        "data.min_chars": 20,
        "data.min_tokens": 4,
        "optim.lr": 3e-5,
        "optim.weight_decay": 1e-5,
        "optim.grad_clip": 1.0,
    },
    "scl": {
        "out_dir": "training/runs/{name}/scl",
        "temperature": 0.05,
        "model.train_memory": False,
        "model.init_from": "training/runs/{name}/ucl",
        "data.train": ["scl.jsonl"],
        "data.num_hard_negatives": 1,
        "optim.lr": 1e-4,
        "optim.weight_decay": 1e-5,
        "optim.grad_clip": 1.0,
    },
}
COMMON = {
    "name": "base",
    "seed": 1234,
    "precision": "auto",
    "model.base": "bundled",
    "data.heldout": ["heldout.jsonl"],
}


def section(stage: str) -> str:
    """The config section of a stage: ``stage1`` for every stage-1 objective, else the stage."""
    if stage not in STAGES:
        raise TrainingError(f"stage must be one of {', '.join(STAGES)}, not {stage!r}")
    return "stage1" if stage in PRETEXT_STAGES else stage


def derive(
    stage: str, common: dict | None = None, stages: dict | None = None, *, where: str = "config"
) -> TrainConfig:
    """The base config of ``stage`` with ``common`` and then ``stages[section(stage)]`` applied."""
    part = section(stage)
    cfg = merge(TrainConfig(stage=stage), {**COMMON, **RECIPE[part]}, "configs/base.py")
    cfg = merge(cfg, common or {}, where)
    return merge(cfg, (stages or {}).get(part, {}), f"{where} [{part}]")


def config(stage: str) -> TrainConfig:
    return derive(stage)
