#!/usr/bin/env bash
# IBP / symbolic / Fast-Lin / CROWN / α-CROWN, sound vs unsound, on the relu_stable MNIST network
# (../shared/models/mnist_relu_stable_conv.onnx), L∞ ε = 0.1, first N test
# images; prints a markdown table row per configuration and checks that no
# certified image is one MIPVerify found not robust.
# usage: [METHODS="ibp crown"] bench/certify_relu_stable.sh [N=1000]
set -euo pipefail
N=${1:-1000}
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=${NNCERT_SHARED:-$HERE/../../shared}
BIN=${NNCERT_BIN:-$HERE/../target/release/nncert}
REF="$SHARED/reference/mipverify_mnist_relu_stable_linf_0.1_first1000.csv"
echo "| method | mode | certified / $N | ms/image | certified but not robust per MIPVerify |"
echo "|---|---|---|---|---|"
for method in ${METHODS:-ibp symbolic fastlin crown alpha-crown}; do
  for mode in sound unsound; do
    flag=$([ "$mode" = unsound ] && echo --unsound || true)
    "$BIN" certify --model "$SHARED/models/mnist_relu_stable_conv.onnx" --data "mnist:$SHARED/data/mnist" \
      --eps 0.1 --count "$N" --method "$method" $flag --json > /tmp/nncert_bench.json
    python3 - "$method" "$mode" "$REF" <<'PY'
import csv, json, sys
method, mode, ref = sys.argv[1:4]
r = json.load(open("/tmp/nncert_bench.json"))
robust = {int(x["test_index"]): x["mipverify_verdict"] for x in csv.DictReader(open(ref))}
bad = [i["index"] for i in r["images"] if i["verdict"] == "certified" and robust.get(i["index"]) not in (None, "robust")]
s = r["summary"]
print(f"| {method} | {mode} | {s['certified']} | {s['ms_per_image']:.1f} | {len(bad)} |")
PY
  done
done
