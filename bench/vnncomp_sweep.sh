#!/usr/bin/env bash
# Runs every VNN-COMP 2021 instance of ../shared through the tool contract
# (vnncomp/prepare_instance.sh, vnncomp/run_instance.sh) with a
# per-instance timeout (default 10 s; `official`: each instance's own, from
# the benchmark's instance list) and prints, per instance:
#   benchmark,onnx,vnnlib,consensus,nncert_result,seconds
# usage: [BENCHMARKS="acasxu mnistfc"] [NETS="mnist-net_256x2.onnx"] bench/vnncomp_sweep.sh [TIMEOUT|official] > results.csv
# (NETS: only the instances of these networks, as the instance lists name them)
set -u
T=${1:-10}
SHARED=${NNCERT_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
TOOL=$(cd "$(dirname "$0")/../vnncomp" && pwd)
OUT=$(mktemp)
echo "benchmark,onnx,vnnlib,consensus,nncert_result,seconds"
for dir in "$SHARED"/vnncomp2021/*/; do
  bench=$(basename "$dir")
  if [ -n "${BENCHMARKS:-}" ] && ! [[ " $BENCHMARKS " == *" $bench "* ]]; then continue; fi
  csv=$(ls "$dir"*.csv | head -1)
  # `|| [ -n "$onnx" ]`: a list without a final newline (mnistfc's) keeps its last line.
  while IFS=, read -r onnx spec timeout || [ -n "$onnx" ]; do
    [ -z "$onnx" ] && continue
    if [ -n "${NETS:-}" ] && ! [[ " $NETS " == *" $onnx "* ]]; then continue; fi
    consensus=$(awk -F, -v b="$bench" -v o="$onnx" -v s="$spec" '$1==b && $2==o && $3==s {print $4}' "$SHARED/vnncomp2021/reference.csv" | head -1)
    "$TOOL/prepare_instance.sh" v1 "$bench" "$dir$onnx" "$dir$spec" >/dev/null 2>&1 || { echo "$bench,$onnx,$spec,${consensus:-?},error,0"; continue; }
    start=$(date +%s.%N)
    limit=$T
    # The instance's own timeout (some lists end their lines with CR LF).
    [ "$T" = official ] && limit=${timeout%$'\r'}
    "$TOOL/run_instance.sh" v1 "$bench" "$dir$onnx" "$dir$spec" "$OUT" "$limit" >/dev/null 2>&1
    end=$(date +%s.%N)
    echo "$bench,$onnx,$spec,${consensus:-?},$(head -1 "$OUT"),$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }')"
  done < "$csv"
done
rm -f "$OUT"
