"""cpu-small: the bundled SmolLM2-135M-Instruct on a 2-core CPU (this project's machines).

Data comes from ``python -m training data`` (files in ``$COMPSEARCH_TRAIN_DATA``, default
``~/.cache/compsearch/training-data``). Stage 1 writes ``training/runs/{name}/stage1`` whatever its objective,
so an ablation is a name: ``python -m training nll --config cpu-small --set name=abl-nll``, then
``ucl`` and ``scl`` with the same name continue from it; ``--set model.init_from=null`` on ``ucl``
is the "no stage 1" arm.

Measured on this machine (AMD EPYC without AVX512/AMX, fp32, 1 thread, forward_chunk=4,
2026-11-22): ~16-17 s per CTKD step (batch 8, 160-token passages, continuation 32), ~27-45 s per
UCL step (32 sentences, 2 views) and ~40-49 s per SCL step (16 triples, 128 tokens), so the
defaults below take ~1.5 h (CTKD), ~1 h (UCL) and ~2 h (SCL). Two threads were 3-4x *slower* while
other jobs shared the CPU; without length-sorted chunks steps were 20-50% slower.

Differences from ``base`` (the recipe): the sizes below, one thread, length-sorted chunks of 4 rows.
"""

import dataclasses

from training.configs.base import derive

# One intra-op thread: on a CPU shared with other jobs, two threads wait for each other at every
# op (measured 3-4x slower per step here under load); on an idle machine try --set cpu_threads=0.
COMMON = {
    "name": "cpu-small",
    "save_every": 50,
    "keep_checkpoints": 2,
    "cpu_threads": 1,
    "model.forward_chunk": 4,
}  # length-sorted chunks of 4 rows: less padding
STAGES = {
    "stage1": {
        "model.max_length": 160,
        "data.max_continuation_tokens": 32,
        "optim.warmup_steps": 15,
        "optim.max_steps": 300,
        "optim.batch_size": 8,
        "optim.micro_batch_size": 8,
    },
    "ucl": {
        "model.max_length": 64,
        "optim.warmup_steps": 10,
        "optim.max_steps": 100,
        "optim.batch_size": 32,
        "optim.micro_batch_size": 32,
    },
    "scl": {
        "model.max_length": 128,
        "save_every": 25,
        "keep_checkpoints": 0,
        "optim.warmup_steps": 10,
        "optim.max_steps": 150,
        "optim.batch_size": 16,
        "optim.micro_batch_size": 16,
    },
}


def config(stage: str):
    return derive(stage, COMMON, STAGES, where="cpu-small")


def scaled(stage: str, name: str, steps: dict, warmup: dict, minutes: dict | None = None):
    """cpu-small with other step counts (and optional per-stage time budgets): the shorter CPU configs."""
    cfg = config(stage)
    optim = dict(max_steps=steps[stage], warmup_steps=warmup[stage])
    if minutes:
        optim["max_minutes"] = minutes[stage]
    return dataclasses.replace(
        cfg,
        name=name,
        save_every=10,
        keep_checkpoints=2,
        data=dataclasses.replace(cfg.data, heldout_limit=256),
        optim=dataclasses.replace(cfg.optim, **optim),
    )
