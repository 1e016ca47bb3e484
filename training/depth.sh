#!/usr/bin/env bash
# The compute-optimal depth run at student depth L (configs/cpu_depth.py): stage 1 (ctkd) -> UCL -> SCL,
# each stage the same wall-clock budget at every depth. Resumable: rerun the same command after an
# interruption and each stage continues from its last checkpoint (finished stages are skipped).
# Runs live outside the repository: <cache>/training-runs/depth-L/{stage1,ucl,scl} (cache:
# $COMPSEARCH_HOME or ~/.cache/compsearch). Stage 1 starts from the shipped default encoder when no
# checkpoint exists; COMPSEARCH_DEPTH_INIT=<encoder folder> starts it from that encoder instead (a student
# deeper than the shipped default needs a deeper one, e.g. an older default from git history), and
# COMPSEARCH_DEPTH_INIT=null from the untrained base.
# Usage (from the repository root): training/depth.sh L [--set k=v ...]      (PYTHON=... picks the interpreter)
set -euo pipefail
L=${1:?usage: training/depth.sh LAYERS [--set k=v ...]}
shift
export COMPSEARCH_TRAIN_DEPTH=$L
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python}
runs=$("$py" -c 'from compsearch.fsutil import cache_home; print(cache_home() / "training-runs")')
name="depth-$L"
done_stage() { [ -f "$runs/$name/$1/summary.json" ]; }
echo "$(date -u +%FT%TZ) depth $L: runs in $runs/$name"
data=$("$py" -c 'from training.config import default_data_dir; print(default_data_dir())')
[ -f "$data/scl.jsonl" ] || "$py" -m training data
[ -f "$data/qdata/qdata-scl.jsonl" ] || "$py" -m training.qdata build --out "$data/qdata" --mine
init=()
[ -z "${COMPSEARCH_DEPTH_INIT:-}" ] || init=(--set "model.init_from=$COMPSEARCH_DEPTH_INIT")
done_stage stage1 || "$py" -m training ctkd --config cpu-depth "${init[@]}" "$@"
done_stage ucl || "$py" -m training ucl --config cpu-depth "$@"
done_stage scl || "$py" -m training scl --config cpu-depth "$@"
echo "$(date -u +%FT%TZ) depth $L: done; encoder in $runs/$name/scl/encoder"
