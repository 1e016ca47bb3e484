#!/usr/bin/env bash
# One arm of the stage-1 ablation: STAGE1 (ctkd | nll | rc | none) -> UCL -> SCL under one run name.
# Resumable: rerun the same command after an interruption and each stage continues from its last
# checkpoint (finished stages are skipped). Usage: training/arm.sh ctkd [config] [extra --set args]
# Run name: the config's name without "cpu-" (and without .py/.json) plus the arm (quick-ctkd, gpu-small-ctkd),
# plus -s<SEED> when SEED is set (SEED=2 sets seed and model.memory_seed: ablation-ctkd-s2).
# STEPS_STAGE1 / STEPS_UCL / STEPS_SCL (optional) override optim.max_steps of that stage, so that all
# arms of one ablation share step counts chosen at launch (e.g. from a measured time per step).
# The runs folder is the config's (training/runs/<name>, or the cache for cpu-ablation).
set -euo pipefail
arm=${1:?usage: training/arm.sh ctkd|nll|rc|none [config] [--set k=v ...]}
config=${2:-cpu-quick}
shift $(( $# >= 2 ? 2 : 1 ))
base=$(basename "$config"); base=${base%.py}; base=${base%.json}
name="${base#cpu-}-${arm}"
seed=()
if [ -n "${SEED:-}" ]; then
  name="$name-s$SEED"
  seed=(--set "seed=$SEED" --set "model.memory_seed=$SEED")
fi
py=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
stage_dir() {
  "$py" -c 'import sys
from training.config import load_config
from training.errors import TrainingError
try:
    print(load_config(sys.argv[1], sys.argv[2], {"name": sys.argv[3]}).run_dir)
except TrainingError as e:
    sys.exit(f"error: {e}")' "$config" "$1" "$name"
}
stage_dir scl > /dev/null || exit 2   # an unknown config or a bad value: one line, before any training
done_stage() { [ -f "$(stage_dir "$1")/summary.json" ]; }
steps() { if [ -n "${1:-}" ]; then echo "--set optim.max_steps=$1"; fi; }
if [ "$arm" != none ]; then
  done_stage "$arm" || "$py" -m training "$arm" --config "$config" --set name="$name" "${seed[@]}" $(steps "${STEPS_STAGE1:-}") "$@"
  done_stage ucl || "$py" -m training ucl --config "$config" --set name="$name" "${seed[@]}" $(steps "${STEPS_UCL:-}") "$@"
else
  done_stage ucl || "$py" -m training ucl --config "$config" --set name="$name" "${seed[@]}" --set model.init_from=null \
    $(steps "${STEPS_UCL:-}") "$@"
fi
done_stage scl || "$py" -m training scl --config "$config" --set name="$name" "${seed[@]}" $(steps "${STEPS_SCL:-}") "$@"
echo "$(date -u +%FT%TZ) arm $name: done; encoder in $(stage_dir scl)/encoder"
