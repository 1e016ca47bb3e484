#!/usr/bin/env bash
# Evaluate finished ablation arms (training/ablation.sh) on the dev tasks, keeping per-query scores for
# the paired comparisons of `python -m training report`: the five quick retrieval tasks and the FAQ
# question task (full profile), dense only, one thread. Each arm's encoder is linked as
# <cache>/training-runs/ablation/encoders/<arm> so that its model label is compsearch:<arm>; results
# merge into training/results/eval-ablation/ (quality-quick.json, faq/quality-full.json).
# Usage: training/eval_arm.sh ablation-ctkd-s1 [more arms]      (PYTHON=... picks the interpreter)
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: training/eval_arm.sh ARM [ARM ...]" >&2; exit 2; }
py=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
root=$("$py" -c 'from compsearch.fsutil import cache_home; print(cache_home() / "training-runs" / "ablation")')
out=${EVAL_OUT:-training/results/eval-ablation}
mkdir -p "$root/encoders" "$out/faq"
specs=()
for arm in "$@"; do
  enc="$root/$arm/scl/encoder"
  [ -f "$enc/compsearch_encoder.json" ] || { echo "error: $arm has no finished SCL encoder at $enc" >&2; exit 1; }
  ln -sfn "$enc" "$root/encoders/$arm"
  specs+=("compsearch:$root/encoders/$arm")
done
models=$(IFS=,; echo "${specs[*]}")
"$py" -m benchmarks.mteb_suite run --quick --per-query --threads 1 --out "$out" --models "$models" \
  --tasks DebianPackageRetrieval,ManPageRetrieval,PythonDocsRetrieval,FoldocRetrieval,WordNetNounRetrieval
"$py" -m benchmarks.mteb_suite run --full --per-query --threads 1 --out "$out/faq" --models "$models" --tasks FaqRetrieval
