"""cpu-quick: cpu-small with ~10x fewer steps, sized so one arm of the stage-1 ablation (stage 1 ->
UCL -> SCL) takes about 30 minutes on one core of this project's 2-core CPU, and two arms run side
by side. This is the budget of the stage-1 ablation in ``training/results/ablation.md`` (the shipped default
model used ``cpu-2h``).

    python -m training ctkd --config cpu-quick --set name=q-ctkd   # or nll / rc
    python -m training ucl  --config cpu-quick --set name=q-ctkd   # continues from q-ctkd/stage1
    python -m training scl  --config cpu-quick --set name=q-ctkd
    # the "no stage 1" arm:  ucl --set name=q-none --set model.init_from=null, then scl

Measured here (2026-11-30, two arms side by side, one thread each): stage 1 ~9-11 min (18-30 s/step),
UCL ~5.5 min, SCL ~11 min (~33 s/step), so ~28 min per arm. At most two processes at once: an SCL
process holds ~9 GB.

Same data, learning rates, lengths and seeds as cpu-small; only the step counts (and warmups and
checkpoint intervals, scaled with them) and the held-out diagnostics set (256 texts) differ.
"""

from training.configs.cpu_small import scaled

STEPS = {"ctkd": 30, "nll": 30, "rc": 30, "ucl": 10, "scl": 20}
WARMUP = {"ctkd": 3, "nll": 3, "rc": 3, "ucl": 1, "scl": 2}


def config(stage: str):
    return scaled(stage, "cpu-quick", STEPS, WARMUP)
