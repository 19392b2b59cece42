#!/usr/bin/env bash
# nncert vs auto_LiRPA (CPU), side by side in one run on this machine.
# Builds its own venv (torch 1.13.1 is the newest torch with Python 3.11
# wheels that auto_LiRPA 0.3 runs on; auto_LiRPA pins torch<1.13, hence --no-deps).
# MNIST: relu_stable and mnistfc 256x{2,4,6} on COUNT test images (CROWN)
# and ALPHA_COUNT (α-CROWN); then CROWN on every oval21 instance.
# usage: bench/autolirpa_compare.sh [COUNT] [ALPHA_COUNT] > results.jsonl
# NNCERT_BIN=path: compare that nncert binary instead of this checkout's build;
# ONLY=oval21: the oval21 part alone.
set -eu
COUNT=${1:-200}
ALPHA_COUNT=${2:-50}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${NNCERT_SHARED:-$ROOT/../shared}
VENV=${LIRPA_VENV:-$ROOT/target/lirpa-venv}
NNCERT=${NNCERT_BIN:-$ROOT/target/release/nncert}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import auto_LiRPA, onnx" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "torch==1.13.1" "numpy<2" "onnx==1.14.1" tqdm appdirs packaging >&2
  "$VENV/bin/pip" install -q --no-deps "auto-lirpa==0.3" >&2
fi
(cd "$ROOT" && cargo build --release -q)
run() {
  "$VENV/bin/python" -W ignore "$ROOT/bench/autolirpa_compare.py" --nncert "$NNCERT" \
    --mnist "$SHARED/data/mnist" "$@"
}
for method in crown alpha-crown; do
  [ "${ONLY:-}" = oval21 ] && break
  n=$COUNT; [ $method = alpha-crown ] && n=$ALPHA_COUNT
  run --model "$SHARED/models/mnist_relu_stable_conv.onnx" --eps 0.1 --count "$n" --method $method
  for w in 2 4 6; do
    # auto_LiRPA 0.3's α-CROWN fails on the deeper nets: record it and go on.
    run --model "$SHARED/vnncomp2021/mnistfc/mnist-net_256x$w.onnx" --eps 0.03 --count "$n" --method $method ||
      echo "{\"model\": \"mnist-net_256x$w.onnx\", \"method\": \"$method\", \"error\": \"failed, see stderr\"}"
  done
done
OVAL=$SHARED/vnncomp2021/oval21
for net in $(cut -d, -f1 "$OVAL/oval21_instances.csv" | sort -u); do
  specs=$(awk -F, -v n="$net" '$1 == n { print "'"$OVAL"'/" $2 }' "$OVAL/oval21_instances.csv")
  # shellcheck disable=SC2086
  "$VENV/bin/python" -W ignore "$ROOT/bench/autolirpa_compare.py" --nncert "$NNCERT" \
    --model "$OVAL/$net" --vnnlib $specs
done
