#!/usr/bin/env bash
# How far two nncert binaries' bounds differ: `nncert bounds` on three
# mnistfc, one oval21 and one cifar10_resnet instance, CROWN / Fast-Lin /
# α-CROWN, sound, real, and real without the IBP intersection (45 runs
# each), then the largest relative and absolute difference of the lower bounds.
# usage: bench/bounds_drift.sh OLD_BINARY NEW_BINARY
set -eu
OLD_BIN=$1 NEW_BIN=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
S=${NNCERT_SHARED:-$ROOT/../shared}/vnncomp2021
OUT=$(mktemp -d)
first() { awk -F, -v d="$1" 'NR==1 {print d "/" $2}' "$S/$1/$1_instances.csv"; }
pairs=("mnistfc/mnist-net_256x4.onnx mnistfc/prop_0_0.03.vnnlib"
  "mnistfc/mnist-net_256x6.onnx mnistfc/prop_3_0.05.vnnlib"
  "mnistfc/mnist-net_256x2.onnx mnistfc/prop_1_0.03.vnnlib"
  "oval21/nets/cifar_base_kw.onnx $(first oval21)"
  "cifar10_resnet/onnx/resnet_2b.onnx $(first cifar10_resnet)")
for side in old new; do
  bin=$OLD_BIN; [ $side = new ] && bin=$NEW_BIN
  i=0
  for pair in "${pairs[@]}"; do
    read -r model spec <<< "$pair"
    for m in crown fastlin alpha-crown; do
      for flags in "" "--unsound" "--unsound --no-ibp-intersection"; do
        i=$((i + 1))
        # shellcheck disable=SC2086
        "$bin" bounds "$S/$model" "$S/$spec" --method $m $flags > "$OUT/$side.$i.json"
      done
    done
  done
done
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
lowers = lambda d: [r["lower"] for c in d["cases"] for t in c["terms"] for r in t]
rel = ab = 0.0
runs = sorted({f.split(".", 1)[1] for f in os.listdir(out)})
for f in runs:
    a = lowers(json.load(open(f"{out}/old.{f}")))
    b = lowers(json.load(open(f"{out}/new.{f}")))
    assert len(a) == len(b), f
    for p, q in zip(a, b):
        if p != q:
            ab = max(ab, abs(p - q))
            rel = max(rel, abs(p - q) / max(abs(p), abs(q)))
print(f"{len(runs)} runs: max relative difference {rel:.2e}, max absolute {ab:.2e}")
PY
rm -rf "$OUT"
