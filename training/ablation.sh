#!/usr/bin/env bash
# The stage-1 ablation of issue 13 (configs/cpu_ablation.py): every arm in turn, one process at a time,
# resumable (rerun the same command; finished arms and stages are skipped). Default order: the key
# comparison first (ctkd and none, seed 1), then nll and rc (seed 1), then the second seed of ctkd and none.
# ABLATION_CONFIG picks another config (cpu-ablation-long: a 400-step stage 1) and ABLATION_ARMS the arms
# ("objective:seed ..."). Runs: <cache>/training-runs/ablation/<config minus cpu->-<arm>-s<seed>.
# Usage: [ABLATION_CONFIG=...] [ABLATION_ARMS="ctkd:1 nll:1"] training/ablation.sh [--set k=v ...]
set -euo pipefail
config=${ABLATION_CONFIG:-cpu-ablation}
arms=${ABLATION_ARMS:-ctkd:1 none:1 nll:1 rc:1 ctkd:2 none:2}
for run in $arms; do
  SEED=${run#*:} training/arm.sh "${run%:*}" "$config" "$@"
done
echo "$(date -u +%FT%TZ) ablation ($config): every arm done"
