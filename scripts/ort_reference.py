#!/usr/bin/env python3
"""Independent reference outputs from ONNX Runtime for nncert's cross-check.

For each ONNX model, feeds N seeded random inputs in [0, 1) (or the given
MNIST images) and writes a JSON file {model, inputs, outputs} that the Rust
test crates/nncert-exec/tests/crosscheck_onnxruntime.rs compares every nncert
engine against.

usage: ort_reference.py OUT_DIR MODEL.onnx...            random inputs
       ort_reference.py --mnist IDX_DIR N OUT.json MODEL  first N test images
"""
import gzip, json, os, sys
import numpy as np
import onnxruntime as ort


def session(model):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    return s, inp.name, shape


def run(model, inputs):
    s, name, shape = session(model)
    outs = [s.run(None, {name: x.reshape(shape).astype(np.float32)})[0].ravel() for x in inputs]
    return {"model": os.path.abspath(model), "inputs": [x.ravel().tolist() for x in inputs], "outputs": [o.astype(float).tolist() for o in outs]}


def main():
    if sys.argv[1] == "--mnist":
        idx_dir, n, out, model = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
        raw = gzip.open(os.path.join(idx_dir, "t10k-images-idx3-ubyte.gz")).read()[16:16 + n * 784]
        imgs = np.frombuffer(raw, dtype=np.uint8).astype(np.float32).reshape(n, 784) / np.float32(255)
        data = run(model, list(imgs))
        data["model"] = os.path.basename(model)
        json.dump(data, open(out, "w"))
        return
    out_dir, models = sys.argv[1], sys.argv[2:]
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(20211)
    for i, m in enumerate(models):
        _, _, shape = session(m)
        xs = [rng.random(int(np.prod(shape)), dtype=np.float32) for _ in range(20)]
        json.dump(run(m, xs), open(os.path.join(out_dir, f"{i:03d}.json"), "w"))
        print(f"ort reference: {m}", flush=True)


if __name__ == "__main__":
    main()
