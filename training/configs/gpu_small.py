"""gpu-small: the bundled SmolLM2-135M-Instruct on one GPU (bf16 autocast), the whole recipe in minutes.

Larger batches and longer passages than cpu-small (which is sized for a 2-core CPU); learning rates,
temperatures and dropout as the authors (``base``). The step counts below are the defaults;
the shipped model's run states its own in ``training/results/ablation.md`` (and every run's
``config.json``). One arm of the stage-1 ablation is ``training/arm.sh ctkd gpu-small``; on one GPU
several arms can share the card (each process needs ~3-6 GB).

    python -m training ctkd --config gpu-small --set name=gpu-small-ctkd
    python -m training ucl  --config gpu-small --set name=gpu-small-ctkd
    python -m training scl  --config gpu-small --set name=gpu-small-ctkd
"""

from training.configs.base import derive

STEPS = {"stage1": 400, "ucl": 200, "scl": 300}

COMMON = {
    "name": "gpu-small",
    "device": "auto",
    "save_every": 100,
    "keep_checkpoints": 1,
    "log_every": 1,
}
STAGES = {
    "stage1": {
        "model.max_length": 256,
        "data.max_continuation_tokens": 64,
        "optim.warmup_steps": 20,
        "optim.max_steps": STEPS["stage1"],
        "optim.batch_size": 32,
        "optim.micro_batch_size": 32,
    },
    "ucl": {
        "model.max_length": 64,
        "optim.warmup_steps": 0,
        "optim.max_steps": STEPS["ucl"],
        "optim.batch_size": 128,
        "optim.micro_batch_size": 128,
    },
    "scl": {
        "model.max_length": 128,
        "optim.warmup_steps": 20,
        "optim.max_steps": STEPS["scl"],
        "optim.batch_size": 64,
        "optim.micro_batch_size": 64,
    },
}


def config(stage: str):
    return derive(stage, COMMON, STAGES, where="gpu-small")
