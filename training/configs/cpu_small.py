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
"""

from training.config import DataConfig, ModelConfig, OptimConfig, TrainConfig


def config(stage: str) -> TrainConfig:
    # One intra-op thread: on a CPU shared with other jobs, two threads wait for each other at every
    # op (measured 3-4x slower per step here under load); on an idle machine try --set cpu_threads=0.
    common = dict(name="cpu-small", seed=1234, precision="auto", save_every=50, keep_checkpoints=2, cpu_threads=1)
    small = dict(base="bundled", forward_chunk=4)  # length-sorted chunks of 4 rows: less padding
    if stage in ("ctkd", "nll", "rc"):
        return TrainConfig(
            stage=stage, out_dir="training/runs/{name}/stage1", **common,
            model=ModelConfig(**small, max_length=160, train_memory=True),
            data=DataConfig(train=["ctkd.jsonl"], heldout=["heldout.jsonl"], min_chars=200,
                            min_side_tokens=10, max_continuation_tokens=32),
            optim=OptimConfig(lr=1e-4, weight_decay=1e-5, warmup_steps=15, max_steps=300, grad_clip=2.0,
                              batch_size=8, micro_batch_size=8))
    if stage == "ucl":
        return TrainConfig(
            stage=stage, out_dir="training/runs/{name}/ucl", temperature=0.05, **common,
            model=ModelConfig(**small, max_length=64, attention_dropout=0.2, lora_dropout=0.05,
                              train_memory=False, init_from="training/runs/{name}/stage1"),
            data=DataConfig(train=["ucl.jsonl"], heldout=["heldout.jsonl"], min_chars=20, min_tokens=4),
            optim=OptimConfig(lr=3e-5, weight_decay=1e-5, warmup_steps=10, max_steps=100, grad_clip=1.0,
                              batch_size=32, micro_batch_size=32))
    if stage == "scl":
        return TrainConfig(
            stage=stage, out_dir="training/runs/{name}/scl", temperature=0.05, **{**common, "save_every": 25,
                                                                          "keep_checkpoints": 0},
            model=ModelConfig(**small, max_length=128, train_memory=False, init_from="training/runs/{name}/ucl"),
            data=DataConfig(train=["scl.jsonl"], heldout=["heldout.jsonl"], num_hard_negatives=1),
            optim=OptimConfig(lr=1e-4, weight_decay=1e-5, warmup_steps=10, max_steps=150, grad_clip=1.0,
                              batch_size=16, micro_batch_size=16))
    raise ValueError(f"cpu-small has no stage {stage!r}")


def scaled(stage: str, name: str, steps: dict, warmup: dict, minutes: dict | None = None) -> TrainConfig:
    """cpu-small with other step counts (and optional per-stage time budgets): the shorter CPU configs."""
    import dataclasses

    cfg = config(stage)
    optim = dict(max_steps=steps[stage], warmup_steps=warmup[stage])
    if minutes:
        optim["max_minutes"] = minutes[stage]
    return dataclasses.replace(cfg, name=name, save_every=10, keep_checkpoints=2,
                               data=dataclasses.replace(cfg.data, heldout_limit=256),
                               optim=dataclasses.replace(cfg.optim, **optim))
