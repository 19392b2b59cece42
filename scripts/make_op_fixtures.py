#!/usr/bin/env python3
"""One small ONNX model per op family the importer supports, with ONNX
Runtime's outputs on seeded random inputs, committed under
crates/nncert-exec/tests/fixtures/ops/ so that `cargo test` checks import and
every engine against an independent implementation of each op.

usage: make_op_fixtures.py OUT_DIR   (needs: pip install onnx onnxruntime numpy)
"""
import json, os, sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import onnxruntime as ort

rng = np.random.default_rng(2021)


def w(*shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def model(name, in_shape, nodes, inits, opset=13):
    g = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    return m


def cases():
    n = helper.make_node
    yield "conv_asym_pads_strides", model("c1", [1, 2, 9, 9], [
        n("Conv", ["x", "W", "B"], ["c"], kernel_shape=[3, 3], pads=[1, 0, 2, 1], strides=[2, 1]),
        n("Relu", ["c"], ["y"])], {"W": w(4, 2, 3, 3), "B": w(4)})
    yield "conv_groups_dilation", model("c2", [1, 4, 8, 8], [
        n("Conv", ["x", "W"], ["c"], group=2, dilations=[2, 2], pads=[2, 1, 0, 2]),
        n("LeakyRelu", ["c"], ["y"], alpha=0.2)], {"W": w(6, 2, 3, 3)})
    yield "conv_autopad_same_lower", model("c3", [1, 2, 7, 7], [
        n("Conv", ["x", "W"], ["y"], strides=[2, 2], auto_pad="SAME_LOWER")], {"W": w(3, 2, 4, 4)})
    yield "batchnorm_sigmoid_tanh_atan", model("bn", [1, 3, 4, 4], [
        n("BatchNormalization", ["x", "g", "b", "m", "v"], ["bn"], epsilon=1e-3),
        n("Sigmoid", ["bn"], ["s"]), n("Tanh", ["s"], ["t"]), n("Atan", ["t"], ["y"])],
        {"g": w(3), "b": w(3), "m": w(3), "v": np.abs(w(3)) + 0.5})
    yield "pools_pad", model("pool", [1, 2, 10, 10], [
        n("MaxPool", ["x"], ["mp"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        n("AveragePool", ["mp"], ["ap"], kernel_shape=[2, 2], pads=[1, 0, 0, 1], count_include_pad=1),
        n("AveragePool", ["ap"], ["ap2"], kernel_shape=[2, 2], pads=[0, 1, 1, 0]),
        n("Pad", ["ap2", "pads", "pv"], ["y"], mode="constant")],
        {"pads": np.array([0, 0, 1, 2, 0, 1, 0, 0], dtype=np.int64), "pv": np.array(0.3, dtype=np.float32)})
    yield "global_avgpool_flatten_gemm_softmax", model("gap", [1, 3, 5, 5], [
        n("GlobalAveragePool", ["x"], ["g"]), n("Flatten", ["g"], ["f"], axis=1),
        n("Gemm", ["f", "W", "C"], ["l"], alpha=0.5, beta=2.0, transB=1),
        n("Softmax", ["l"], ["y"], axis=1)], {"W": w(4, 3), "C": w(1, 4)})
    yield "matmul_add_sub_mul_div_neg", model("ew", [1, 6], [
        n("Sub", ["x", "mean"], ["a"]), n("Div", ["a", "std"], ["b"]),
        n("MatMul", ["b", "W"], ["c"]), n("Add", ["c", "B"], ["d"]),
        n("Mul", ["d", "k"], ["e"]), n("Neg", ["e"], ["f"]), n("Sub", ["one", "f"], ["y"])],
        {"mean": w(6), "std": np.abs(w(6)) + 0.5, "W": w(6, 5), "B": w(5),
         "k": np.array([1.5], dtype=np.float32), "one": np.array(1.0, dtype=np.float32)})
    yield "shape_gather_concat_reshape", model("shp", [1, 2, 3, 4], [
        n("Shape", ["x"], ["s"]),
        n("Gather", ["s", "zero"], ["b"], axis=0), n("Unsqueeze", ["b", "ax0"], ["bu"]),
        n("Concat", ["bu", "minus1"], ["target"], axis=0),
        n("Cast", ["target"], ["t64"], to=TensorProto.INT64),
        n("Reshape", ["x", "t64"], ["r"]), n("Relu", ["r"], ["y"])],
        {"zero": np.array(0, dtype=np.int64), "ax0": np.array([0], dtype=np.int64),
         "minus1": np.array([-1], dtype=np.int64)})
    yield "transpose_concat_residual", model("res", [1, 2, 3, 3], [
        n("Conv", ["x", "W"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        n("Relu", ["c"], ["r"]), n("Add", ["r", "x"], ["s"]),
        n("Concat", ["s", "x"], ["cc"], axis=1),
        n("Transpose", ["cc"], ["t"], perm=[0, 2, 3, 1]),
        n("Identity", ["t"], ["i"]), n("Dropout", ["i"], ["y"])], {"W": w(2, 2, 3, 3)})
    yield "squeeze_unsqueeze_opset11", model("sq", [1, 4, 1], [
        n("Squeeze", ["x"], ["s"], axes=[2]), n("Unsqueeze", ["s"], ["u"], axes=[0]),
        n("Constant", [], ["k"], value=numpy_helper.from_array(w(4), "k")),
        n("Add", ["u", "k"], ["y"])], {}, opset=11)
    yield "squeeze_unsqueeze_opset13", model("sq13", [1, 4, 1], [
        n("Squeeze", ["x", "ax"], ["s"]), n("Unsqueeze", ["s", "ax"], ["u"]),
        n("Pad", ["u", "pads"], ["y"])],
        {"ax": np.array([2], dtype=np.int64), "pads": np.array([0, 1, 0, 0, 2, 0], dtype=np.int64)})
    yield "pad_attr_opset9", model("pad9", [1, 1, 3, 3], [
        n("Pad", ["x"], ["p"], pads=[0, 0, 1, 1, 0, 0, 2, 0], value=-0.5),
        n("MaxPool", ["p"], ["y"], kernel_shape=[2, 2])], {}, opset=9)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, m in cases():
        path = os.path.join(out, name + ".onnx")
        onnx.save(m, path)
        s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        shape = s.get_inputs()[0].shape
        xs = [rng.random(int(np.prod(shape)), dtype=np.float32) for _ in range(5)]
        ys = [s.run(None, {"x": x.reshape(shape)})[0] for x in xs]
        if name.endswith("softmax"):  # nncert drops a final Softmax: compare logits
            s2 = onnx.load(path)
            s2.graph.node.pop()
            s2.graph.node[-1].output[0] = "y"
            ys = [ort.InferenceSession(s2.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x.reshape(shape)})[0] for x in xs]
        json.dump({"model": name + ".onnx", "inputs": [x.tolist() for x in xs],
                   "outputs": [y.ravel().astype(float).tolist() for y in ys]},
                  open(os.path.join(out, name + ".json"), "w"))
        print(name)


if __name__ == "__main__":
    main()
