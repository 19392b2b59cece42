#!/usr/bin/env bash
# Runs `nncert vnncomp` on every VNN-COMP 2021 instance of ../shared with a
# per-instance timeout (default 10 s) and prints, per instance:
#   benchmark,onnx,vnnlib,consensus,nncert_result,seconds
# usage: [BENCHMARKS="acasxu mnistfc"] bench/vnncomp_sweep.sh [TIMEOUT] > results.csv
set -u
T=${1:-10}
SHARED=${NNCERT_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
BIN=${NNCERT_BIN:-$(dirname "$0")/../target/release/nncert}
OUT=$(mktemp)
echo "benchmark,onnx,vnnlib,consensus,nncert_result,seconds"
for dir in "$SHARED"/vnncomp2021/*/; do
  bench=$(basename "$dir")
  if [ -n "${BENCHMARKS:-}" ] && ! [[ " $BENCHMARKS " == *" $bench "* ]]; then continue; fi
  csv=$(ls "$dir"*.csv | head -1)
  while IFS=, read -r onnx spec timeout; do
    [ -z "$onnx" ] && continue
    consensus=$(awk -F, -v b="$bench" -v o="$onnx" -v s="$spec" '$1==b && $2==o && $3==s {print $4}' "$SHARED/vnncomp2021/reference.csv" | head -1)
    start=$(date +%s.%N)
    "$BIN" vnncomp "$dir$onnx" "$dir$spec" --timeout "$T" --out "$OUT" >/dev/null 2>&1
    end=$(date +%s.%N)
    echo "$bench,$onnx,$spec,${consensus:-?},$(head -1 "$OUT"),$(echo "$end - $start" | bc)"
  done < "$csv"
done
rm -f "$OUT"
