#!/usr/bin/env bash
# One arm of the stage-1 ablation: STAGE1 (ctkd | nll | rc | none) -> UCL -> SCL under one run name.
# Resumable: rerun the same command after an interruption and each stage continues from its last
# checkpoint (finished stages are skipped). Usage: training/arm.sh ctkd [config] [extra --set args]
set -euo pipefail
arm=${1:?usage: training/arm.sh ctkd|nll|rc|none [config] [--set k=v ...]}
config=${2:-cpu-quick}
shift $(( $# >= 2 ? 2 : 1 ))
name="${config#cpu-}-${arm}"
py=${PYTHON:-python}
done_stage() { [ -f "training/runs/$name/$1/summary.json" ]; }
if [ "$arm" != none ]; then
  done_stage stage1 || $py -m training "$arm" --config "$config" --set name="$name" "$@"
  done_stage ucl || $py -m training ucl --config "$config" --set name="$name" "$@"
else
  done_stage ucl || $py -m training ucl --config "$config" --set name="$name" --set model.init_from=null "$@"
fi
done_stage scl || $py -m training scl --config "$config" --set name="$name" "$@"
