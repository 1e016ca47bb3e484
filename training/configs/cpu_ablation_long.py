"""cpu-ablation-long: ``cpu-ablation`` with a stage 1 five times longer (400 steps instead of 80).

    SEED=1 training/arm.sh ctkd cpu-ablation-long      # run ablation-long-ctkd-s1; also nll, rc
    ABLATION_CONFIG=cpu-ablation-long ABLATION_ARMS="ctkd:1 nll:1 rc:1" training/ablation.sh

Why: at 80 steps from the untrained base, stage 1 did not lower its own loss at depth 8 (CTKD's KL
averaged 2.12 over steps 1-10 and 2.27 over steps 71-80; NLL 5.48 and 5.50), so the 80-step arms
compare SCL runs after a stage 1 that had not yet learned, and found no difference. A stage 1 must
first learn before the paper's KL > NLL > reconstruction can be tested. Everything else (depth 8, the
untrained start, UCL 16 and SCL 200 steps on the same data, seeds) is ``cpu-ablation``'s, so the
``none`` arm is the same run as there (``ablation-none-s<n>``). About 60 minutes of CTKD per arm on one
core here (NLL and reconstruction run no teacher: ~25 minutes).
"""

from training.config import merge
from training.configs.cpu_ablation import config as cpu_ablation

STAGE1_STEPS = 400
STAGE1_WARMUP = 20


def config(stage: str):
    cfg = cpu_ablation(stage)
    extra = {"name": "cpu-ablation-long"}
    if stage in ("ctkd", "nll", "rc"):
        extra.update({"optim.max_steps": STAGE1_STEPS, "optim.warmup_steps": STAGE1_WARMUP})
    return merge(cfg, extra, "cpu-ablation-long")
