#!/usr/bin/env bash
# The stage-1 ablation of issue 13 (configs/cpu_ablation.py): every arm in turn, one process at a time,
# resumable (rerun the same command; finished arms and stages are skipped). Order: the key comparison
# first (ctkd and none, seed 1), then nll and rc (seed 1), then the second seed of ctkd and none.
# Runs: <cache>/training-runs/ablation/ablation-<arm>-s<seed>. Usage: training/ablation.sh [--set k=v ...]
set -euo pipefail
for run in ctkd:1 none:1 nll:1 rc:1 ctkd:2 none:2; do
  SEED=${run#*:} training/arm.sh "${run%:*}" cpu-ablation "$@"
done
echo "$(date -u +%FT%TZ) ablation: every arm done"
