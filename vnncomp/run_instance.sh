#!/usr/bin/env bash
# VNN-COMP tool contract: run_instance.sh v1 BENCHMARK ONNX VNNLIB RESULTS TIMEOUT
# Writes sat (with the counterexample), unsat, unknown, timeout or error to
# RESULTS. The tool stops itself a second before TIMEOUT to leave time to
# write the file.
set -uo pipefail
[ $# -eq 6 ] || { echo "usage: $0 v1 BENCHMARK ONNX VNNLIB RESULTS TIMEOUT" >&2; exit 1; }
VERSION=$1 ONNX=$3 VNNLIB=$4 RESULTS=$5 TIMEOUT=$6
[ "$VERSION" = v1 ] || { echo "run_instance.sh: expected version v1, got '$VERSION'" >&2; exit 1; }
BIN="$(cd "$(dirname "$0")/.." && pwd)/target/release/nncert"
LIMIT=$(awk -v t="$TIMEOUT" 'BEGIN { l = t - 1; if (l < 0.5 * t) l = 0.5 * t; print l }')
"$BIN" vnncomp "$ONNX" "$VNNLIB" --timeout "$LIMIT" --out "$RESULTS"
