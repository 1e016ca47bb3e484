"""cpu-ablation: the stage-1 ablation at a budget where SCL learns (issue 13, item 5).

    SEED=1 training/arm.sh ctkd cpu-ablation     # run ablation-ctkd-s1; also nll, rc, none; SEED=2 ...
    training/ablation.sh                          # every arm of the ablation in turn, resumable

Every arm is the shipped depth (the first 8 of SmolLM2-135M's 30 layers; the CTKD teacher and the
decoder stay the full model) started from the untrained base (fresh memory tokens and LoRA), then
the same UCL and SCL: stage 1 (ctkd / nll / rc) 80 steps, UCL 16, SCL 200, so every arm sees the
same UCL and SCL steps and items, and ``none`` skips stage 1. The SCL data is cpu-depth's
(``scl.jsonl`` plus the seeded sample of question-shaped pairs). ``seed`` (LoRA initialisation, data
order, the question sample) and ``model.memory_seed`` come from ``--set`` (``arm.sh`` sets both from
``SEED``), so the arms of one seed see identical data, which is what makes a paired comparison fair.

Measured on one core beside a second job (2026-12-02): ctkd 43 minutes an arm (its stage 1 runs the
full-depth teacher), rc 27, nll 24, none 21. Runs live outside the
repository, in ``<cache>/training-runs/ablation/<name>/{stage1,ucl,scl}`` (``$COMPSEARCH_HOME`` or
``~/.cache/compsearch``), and resume from their latest checkpoint when the same command runs again.
"""

from compsearch.fsutil import cache_home
from training.config import merge
from training.configs.cpu_depth import QDATA_SCL
from training.configs.cpu_small import scaled

LAYERS = 8
STEPS = {"ctkd": 80, "nll": 80, "rc": 80, "ucl": 16, "scl": 200}
WARMUP = {"ctkd": 8, "nll": 8, "rc": 8, "ucl": 2, "scl": 13}


def config(stage: str):
    cfg = scaled(stage, "cpu-ablation", STEPS, WARMUP)
    part = "stage1" if stage in ("ctkd", "nll", "rc") else stage
    runs = cache_home() / "training-runs" / "ablation" / "{name}"
    init = {"stage1": None, "ucl": str(runs / "stage1"), "scl": str(runs / "ucl")}
    return merge(
        cfg,
        {
            "out_dir": str(runs / part),
            "model.num_layers": LAYERS,
            "model.init_from": init[part],
            **({"data.train": ["scl.jsonl", QDATA_SCL]} if part == "scl" else {}),
        },
        "cpu-ablation",
    )
