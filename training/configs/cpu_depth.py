"""cpu-depth: the compute-optimal depth comparison (issue 13, item 3): one CPU budget, any student depth.

    COMPSEARCH_TRAIN_DEPTH=8 python -m training ctkd --config cpu-depth    # then ucl, then scl
    training/depth.sh 8          # all three stages, resumable; see training/README.md for the background run

The depth L comes from ``$COMPSEARCH_TRAIN_DEPTH`` (default 8; 30 is SmolLM2-135M's full depth), because
the step counts depend on it: every depth gets the same wall-clock budget per stage (``MINUTES``, about
two hours in all, as cpu-2h), and a shallower student fits more steps in it. The step counts are the
cpu-2h counts at full depth (where stage 1 took 22 of its 32 minutes and SCL hit its 80 at step 143 of 150)
times the estimated speed-up of a depth-L step (``speedup``), so that the learning-rate schedule
ends near the budget; ``optim.max_minutes`` still ends a stage that runs slow. Do not change the depth
with ``--set model.num_layers``: the step counts would not follow.

The student is the first L layers of the bundled SmolLM2-135M-Instruct; the CTKD teacher and the
decoder stay the full 30-layer model. Stage 1 starts from the shipped default encoder
(``model.init_from=default``: its memory tokens and the LoRA of its first L layers); ``--set
model.init_from=null`` starts from the untrained base instead. Runs, checkpoints and exports live
outside the repository, in ``<cache>/training-runs/depth-<L>/`` (``$COMPSEARCH_HOME`` or
``~/.cache/compsearch``), and resume from their latest checkpoint when the same command runs again.

Everything else (lengths, batches, learning rates, seeds) is cpu-small's, so depths differ in
depth and steps only; the SCL data is cpu-small's ``scl.jsonl`` plus a sample of the question-shaped
pairs of ``training/qdata.py`` (``QDATA_SCL``), the same at every depth.
"""

import os

from compsearch.fsutil import cache_home
from training.configs.cpu_small import config as cpu_small
from training.config import merge
from training.errors import TrainingError

FULL_DEPTH = 30  # SmolLM2-135M
STEPS_AT_FULL_DEPTH = {"stage1": 80, "ucl": 16, "scl": 150}  # cpu-2h
WARMUP_FRACTION = {
    "stage1": 0.1,
    "ucl": 0.125,
    "scl": 0.067,
}  # cpu-2h's warmups (8, 2, 10) as fractions
MINUTES = {"stage1": 32, "ucl": 9, "scl": 80}
# SCL also reads question-shaped pairs (``python -m training.qdata build --out <data>/qdata --mine``):
# headings -> sections of Debian manuals, docstring summaries -> code, man options -> their text,
# each with a BM25 hard negative; a seeded sample of them beside cpu-small's scl.jsonl.
QDATA_SCL = {"path": "qdata/qdata-scl.jsonl", "sample": 8000}


def depth() -> int:
    raw = os.environ.get("COMPSEARCH_TRAIN_DEPTH", "8")
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= FULL_DEPTH:
        raise TrainingError(
            f"COMPSEARCH_TRAIN_DEPTH={raw!r}: give a number of layers from 1 to {FULL_DEPTH}"
        )
    return value


def speedup(part: str, layers: int, total: int = FULL_DEPTH) -> float:
    """Estimated steps per hour at depth ``layers`` relative to full depth (an estimate from work per step).

    UCL and SCL run only the student: work proportional to depth. A stage-1 step also runs the full
    teacher (forward, 160 tokens) and the full decoder (forward and backward, 8 memory + 32 tokens);
    with forward:backward work 1:2 per layer and token and a 128-token context, its work is
    3*L*128 + 30*160 + 3*30*40 layer-tokens."""
    if part != "stage1":
        return total / layers
    work = lambda n: 3 * n * 128 + total * 160 + 3 * total * 40  # noqa: E731
    return work(total) / work(layers)


def config(stage: str):
    L = depth()
    cfg = cpu_small(stage)
    part = "stage1" if stage in ("ctkd", "nll", "rc") else stage
    steps = max(1, round(STEPS_AT_FULL_DEPTH[part] * speedup(part, L)))
    runs = cache_home() / "training-runs" / "{name}"
    out = {"stage1": runs / "stage1", "ucl": runs / "ucl", "scl": runs / "scl"}
    init = {"stage1": "default", "ucl": str(out["stage1"]), "scl": str(out["ucl"])}
    return merge(
        cfg,
        {
            "name": f"depth-{L}",
            "out_dir": str(out[part]),
            "save_every": 10,
            "keep_checkpoints": 2,
            "model.num_layers": None if L == FULL_DEPTH else L,
            "model.init_from": init[part],
            "data.heldout_limit": 256,
            "optim.max_steps": steps,
            **({"data.train": ["scl.jsonl", QDATA_SCL]} if part == "scl" else {}),
            "optim.warmup_steps": max(1, round(steps * WARMUP_FRACTION[part])),
            "optim.max_minutes": MINUTES[part],
        },
        "cpu-depth",
    )
