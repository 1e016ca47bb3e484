"""cpu-long-lr: ``cpu-long`` at five times the learning rate (5e-4 instead of 1e-4), everything else equal.

    python -m training scl --config cpu-long-lr   # the same command resumes; ~3-4 h of one core

Why: a 100-step probe from the shipped default on the doc2query triples (``cpu-d2q``, arm d2q, with
``--set optim.lr=5e-4``; ``training/results/eval-lr/``) scored +.018 [+.001, +.034] over the same run
at 1e-4, paired over the 929 dev queries, and its training loss on not-yet-seen triples was lower from
step 30 on. If the recipe is learning-rate bound, the long run should be too. Same seed (2026), data
sample, order, warmup and schedule as ``cpu-long``, so the two long runs compare query by query and the
better one ships. Runs and checkpoints (every 10 steps): ``<cache>/training-runs/long-lr/scl``.

The run that shipped as the default ``a45d244d`` on 2026-12-03 is this config with the schedule ended
at step 400 and two threads: ``cpu-long-lr-400`` (``configs/cpu_long_lr_400.py``).
"""

from compsearch.fsutil import cache_home
from training.config import merge
from training.configs.cpu_long import config as cpu_long
from training.configs.cpu_long import from_default

LR = 5e-4


def config(stage: str):
    if stage != "scl":
        return from_default(stage, "cpu-long-lr", {})  # the one-line refusal
    return merge(
        cpu_long(stage),
        {
            "name": "long-lr",
            "out_dir": str(cache_home() / "training-runs" / "long-lr" / "scl"),
            "optim.lr": LR,
        },
        "cpu-long-lr",
    )
