"""cpu-long-lr-400: the round that made the default ``a45d244d`` (2026-12-03): ``cpu-long-lr`` with its
learning-rate schedule ended at step 400 instead of 1,000 and two threads per step.

    git worktree add /tmp/prev e33d193     # the default it continues, 00222e84
    OMP_NUM_THREADS=2 python -m training scl --config cpu-long-lr-400 \
        --set model.init_from=/tmp/prev/compsearch/default_model

Why this run: the machine holding the 1,000-step runs' checkpoints (``cpu-long-lr`` at step 480) was
replaced, and a session ends every process it started after three hours, so the candidate was re-run
to fit one session. Same seed (2026), data mix, order, lr 5e-4 and 25 warmup steps as ``cpu-long-lr``;
400 steps took 63 minutes of both cores (why two threads: ``training/README.md``, "when the second core
is idle"). Like ``cpu-long`` it is pinned to ``00222e84`` (``model.init_fingerprint``): with today's
default in ``compsearch/default_model`` the command without ``--set model.init_from`` refuses in one
line. Runs and checkpoints (every 10 steps): ``<cache>/training-runs/long-lr-400/scl``; the same command
resumes. Scores: ``training/results/eval-long-lr400/``.
"""

from compsearch.fsutil import cache_home
from training.config import merge
from training.configs.cpu_long_lr import config as cpu_long_lr

STEPS = 400
THREADS = 2


def config(stage: str):
    return merge(
        cpu_long_lr(stage),  # refuses every stage but scl in one line
        {
            "name": "long-lr-400",
            "out_dir": str(cache_home() / "training-runs" / "long-lr-400" / "scl"),
            "optim.max_steps": STEPS,
            "cpu_threads": THREADS,
        },
        "cpu-long-lr-400",
    )
