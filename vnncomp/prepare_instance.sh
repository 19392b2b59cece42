#!/usr/bin/env bash
# VNN-COMP tool contract: prepare_instance.sh v1 BENCHMARK ONNX VNNLIB
# Stops leftover nncert runs and checks that the model and the
# specification load (exit 1 if not, so the instance is skipped cleanly).
set -uo pipefail
[ $# -eq 4 ] || { echo "usage: $0 v1 BENCHMARK ONNX VNNLIB" >&2; exit 1; }
VERSION=$1 BENCHMARK=$2 ONNX=$3 VNNLIB=$4
[ "$VERSION" = v1 ] || { echo "prepare_instance.sh: expected version v1, got '$VERSION'" >&2; exit 1; }
BIN="$(cd "$(dirname "$0")/.." && pwd)/target/release/nncert"
pkill -f "$BIN vnncomp" 2>/dev/null || true
[ -x "$BIN" ] || { echo "prepare_instance.sh: $BIN not built; run install_tool.sh v1" >&2; exit 1; }
echo "preparing $BENCHMARK: $(basename "$ONNX") $(basename "$VNNLIB")"
[ -f "$VNNLIB" ] || { echo "prepare_instance.sh: no such file: $VNNLIB" >&2; exit 1; }
"$BIN" info "$ONNX" >/dev/null || exit 1
