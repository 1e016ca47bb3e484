#!/usr/bin/env bash
# One arm of the stage-1 ablation: STAGE1 (ctkd | nll | rc | none) -> UCL -> SCL under one run name.
# Resumable: rerun the same command after an interruption and each stage continues from its last
# checkpoint (finished stages are skipped). Usage: training/arm.sh ctkd [config] [extra --set args]
# Run name: the config's name without "cpu-" (and without .py/.json) plus the arm (quick-ctkd, gpu-small-ctkd).
# STEPS_STAGE1 / STEPS_UCL / STEPS_SCL (optional) override optim.max_steps of that stage, so that all
# arms of one ablation share step counts chosen at launch (e.g. from a measured time per step).
set -euo pipefail
arm=${1:?usage: training/arm.sh ctkd|nll|rc|none [config] [--set k=v ...]}
config=${2:-cpu-quick}
shift $(( $# >= 2 ? 2 : 1 ))
base=$(basename "$config"); base=${base%.py}; base=${base%.json}
name="${base#cpu-}-${arm}"
py=${PYTHON:-python}
done_stage() { [ -f "training/runs/$name/$1/summary.json" ]; }
steps() { if [ -n "${1:-}" ]; then echo "--set optim.max_steps=$1"; fi; }
if [ "$arm" != none ]; then
  done_stage stage1 || $py -m training "$arm" --config "$config" --set name="$name" $(steps "${STEPS_STAGE1:-}") "$@"
  done_stage ucl || $py -m training ucl --config "$config" --set name="$name" $(steps "${STEPS_UCL:-}") "$@"
else
  done_stage ucl || $py -m training ucl --config "$config" --set name="$name" --set model.init_from=null \
    $(steps "${STEPS_UCL:-}") "$@"
fi
done_stage scl || $py -m training scl --config "$config" --set name="$name" $(steps "${STEPS_SCL:-}") "$@"
