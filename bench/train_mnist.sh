#!/usr/bin/env bash
# The training experiments of docs/training.md (constrained-ibp-training.md,
# shortened to fit this 2-core CPU). Usage: bench/train_mnist.sh OUT [small01|eps04]
#   small01: MNIST small, IBP, trained at ε 0.2, evaluated at 0.1 (≤ 20 min).
#   eps04:   MNIST small at ε 0.4, IBP vs constrained IBP, with the ramp of
#            the shortened schedule and 2.5× faster (the paper's Figure 5).
set -euo pipefail
OUT=${1:?usage: bench/train_mnist.sh OUT [small01|eps04]}
WHICH=${2:-small01}
cd "$(dirname "$0")/.."
SHARED="${NNCERT_SHARED:-$(cd .. && pwd)/shared}"
DATA="mnist:$SHARED/data/mnist"
NNCERT=${NNCERT:-target/release/nncert}
[ -x "$NNCERT" ] || cargo build --release -p nncert-cli
mkdir -p "$OUT"

eval_run() { # DIR EPS
  "$NNCERT" eval --model "$1/model.onnx" --data "$DATA" --eps "$2" --count 1000 \
    --pgd-steps 50 --pgd-restarts 2 --json > "$1/eval.json"
  cat "$1/eval.json"
}

case "$WHICH" in
  small01)
    "$NNCERT" train --data "$DATA" --arch small --epochs 15 --warmup-epochs 1 --ramp-epochs 5 \
      --eps-train 0.2 --eps-test 0.1 --lr-decay-at 0.7,0.9 --eval-count 200 --max-minutes 20 --out "$OUT/small-ibp-0.1"
    eval_run "$OUT/small-ibp-0.1" 0.1
    ;;
  eps04)
    for ramp in 3.5 1.4; do
      for lambda in 0 0.1; do
        dir="$OUT/small-eps0.4-ramp$ramp-lambda$lambda"
        "$NNCERT" train --data "$DATA" --arch small --epochs 6 --warmup-epochs 0.5 --ramp-epochs "$ramp" \
          --eps-train 0.4 --eps-test 0.4 --lambda "$lambda" --lr-decay-at 0.7,0.9 --out "$dir"
        eval_run "$dir" 0.4
      done
    done
    "$NNCERT" plot-training --run IBP="$OUT/small-eps0.4-ramp3.5-lambda0" \
      --run constrained-IBP="$OUT/small-eps0.4-ramp3.5-lambda0.1" --out "$OUT/plots-eps0.4"
    "$NNCERT" plot-training --run IBP="$OUT/small-eps0.4-ramp1.4-lambda0" \
      --run constrained-IBP="$OUT/small-eps0.4-ramp1.4-lambda0.1" --out "$OUT/plots-eps0.4-fast-ramp"
    ;;
  *) echo "unknown experiment $WHICH (small01 | eps04)" >&2; exit 2 ;;
esac
