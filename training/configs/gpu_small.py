"""gpu-small: the bundled SmolLM2-135M-Instruct on one GPU (bf16 autocast), the whole recipe in minutes.

Larger batches and longer passages than cpu-small (which is sized for a 2-core CPU); learning rates,
temperatures and dropout as the authors (see ``paper.py``). The step counts below are the defaults;
the shipped model's run states its own in ``training/results/ablation.md`` (and every run's
``config.json``). One arm of the stage-1 ablation is ``training/arm.sh ctkd gpu-small``; on one GPU
several arms can share the card (each process needs ~3-6 GB).

    python -m training ctkd --config gpu-small --set name=gpu-small-ctkd
    python -m training ucl  --config gpu-small --set name=gpu-small-ctkd
    python -m training scl  --config gpu-small --set name=gpu-small-ctkd
"""

from training.config import DataConfig, ModelConfig, OptimConfig, TrainConfig

STEPS = {"stage1": 400, "ucl": 200, "scl": 300}


def config(stage: str) -> TrainConfig:
    common = dict(name="gpu-small", seed=1234, device="auto", precision="auto", save_every=100, keep_checkpoints=1,
                  log_every=1)
    model = dict(base="bundled")
    if stage in ("ctkd", "nll", "rc"):
        return TrainConfig(
            stage=stage, out_dir="training/runs/{name}/stage1", **common,
            model=ModelConfig(**model, max_length=256, train_memory=True),
            data=DataConfig(train=["ctkd.jsonl"], heldout=["heldout.jsonl"], min_chars=200,
                            min_side_tokens=10, max_continuation_tokens=64),
            optim=OptimConfig(lr=1e-4, weight_decay=1e-5, warmup_steps=20, max_steps=STEPS["stage1"], grad_clip=2.0,
                              batch_size=32, micro_batch_size=32))
    if stage == "ucl":
        return TrainConfig(
            stage=stage, out_dir="training/runs/{name}/ucl", temperature=0.05, **common,
            model=ModelConfig(**model, max_length=64, attention_dropout=0.2, lora_dropout=0.05,
                              train_memory=False, init_from="training/runs/{name}/stage1"),
            data=DataConfig(train=["ucl.jsonl"], heldout=["heldout.jsonl"], min_chars=20, min_tokens=4),
            optim=OptimConfig(lr=3e-5, weight_decay=1e-5, warmup_steps=0, max_steps=STEPS["ucl"], grad_clip=1.0,
                              batch_size=128, micro_batch_size=128))
    if stage == "scl":
        return TrainConfig(
            stage=stage, out_dir="training/runs/{name}/scl", temperature=0.05, **common,
            model=ModelConfig(**model, max_length=128, train_memory=False, init_from="training/runs/{name}/ucl"),
            data=DataConfig(train=["scl.jsonl"], heldout=["heldout.jsonl"], num_hard_negatives=1),
            optim=OptimConfig(lr=1e-4, weight_decay=1e-5, warmup_steps=20, max_steps=STEPS["scl"], grad_clip=1.0,
                              batch_size=64, micro_batch_size=64))
    raise ValueError(f"gpu-small has no stage {stage!r}")
