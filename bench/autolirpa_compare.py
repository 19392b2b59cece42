#!/usr/bin/env python3
"""Side-by-side CROWN / α-CROWN bounds: nncert vs auto_LiRPA, same machine, same run.

For each MNIST test image `start..start+count` that the model classifies
correctly, both tools bound y_label − y_t over the L∞ ball of radius eps
clipped to [0, 1]; nncert with --unsound --no-ibp-intersection (real
arithmetic, plain CROWN: what auto_LiRPA computes). Prints a JSON line per
model: bound agreement (max relative difference over all margins), per-image
times, and nncert's default (sound, IBP-intersected) certified count and time. Run it through
bench/autolirpa_compare.sh, which builds the venv.

With --vnnlib SPEC... (instead of --mnist) each spec's input box and output
constraints come from `nncert bounds` (VNN-COMP instances, e.g. oval21), and
both tools bound every constraint of every unsafe term.
"""
import argparse, gzip, json, os, struct, subprocess, sys, time

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm


def mnist_test(data_dir, start, count):
    def read(name):
        for candidate in (name, name + ".gz"):
            path = os.path.join(data_dir, candidate)
            if os.path.exists(path):
                opener = gzip.open if path.endswith(".gz") else open
                with opener(path, "rb") as f:
                    return f.read()
        sys.exit(f"no {name}[.gz] in {data_dir}")
    images, labels = read("t10k-images-idx3-ubyte"), read("t10k-labels-idx1-ubyte")
    n = struct.unpack(">I", images[4:8])[0]
    x = np.frombuffer(images, np.uint8, offset=16).reshape(n, 1, 28, 28).astype(np.float32) / 255.0
    y = np.frombuffer(labels, np.uint8, offset=8)
    return x[start:start + count], y[start:start + count]


class Flatten(torch.nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1)


def torch_model(path):
    """An nn.Sequential for the plain feed-forward ONNX graphs benchmarked here."""
    m = onnx.load(path)
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for node in m.graph.node:
        if node.op_type == "Constant":
            init[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    layers = []
    for node in m.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        op = node.op_type
        if op == "Constant":
            continue
        if op == "Conv":
            w = init[node.input[1]]
            top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
            if (top, left) != (bottom, right):
                layers.append(torch.nn.ZeroPad2d((left, right, top, bottom)))
                top = left = 0
            conv = torch.nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]),
                                   stride=tuple(attrs.get("strides", [1, 1])), padding=(top, left))
            conv.weight.data = torch.tensor(w)
            conv.bias.data = torch.tensor(init[node.input[2]])
            layers.append(conv)
        elif op == "Gemm":
            w = init[node.input[1]]
            if not attrs.get("transB", 0):
                w = w.T
            lin = torch.nn.Linear(w.shape[1], w.shape[0])
            lin.weight.data = torch.tensor(np.ascontiguousarray(w))
            lin.bias.data = torch.tensor(init[node.input[2]])
            layers.append(lin)
        elif op == "Relu":
            layers.append(torch.nn.ReLU())
        elif op in ("Flatten", "Reshape"):
            layers.append(Flatten())
        else:
            sys.exit(f"{path}: op {op} not handled by this benchmark's converter")
    return torch.nn.Sequential(Flatten(), *layers) if layers and isinstance(layers[0], torch.nn.Linear) else torch.nn.Sequential(*layers)


def lirpa_margins(net, x, labels, eps, method, alpha_iterations, dtype=torch.float32):
    net = net.to(dtype)
    model = BoundedModule(net, torch.zeros(1, *x.shape[1:], dtype=dtype), device="cpu", verbose=False)
    if method == "alpha-crown":
        # As nncert certify: 20 Adam steps, lr 0.1, stop once every margin is positive.
        model.set_bound_opts({"optimize_bound_args": {
            "iteration": alpha_iterations, "lr_alpha": 0.1,
            "stop_criterion_func": lambda lb: (lb > 0).all()}})
    margins, times = [], []
    for xi, label in zip(x, labels):
        xt = torch.tensor(xi, dtype=dtype).unsqueeze(0)
        others = [t for t in range(10) if t != label]
        C = torch.zeros(1, 9, 10, dtype=dtype)
        for r, t in enumerate(others):
            C[0, r, label], C[0, r, t] = 1.0, -1.0
        ptb = PerturbationLpNorm(norm=np.inf, eps=eps, x_L=(xt - eps).clamp(0, 1), x_U=(xt + eps).clamp(0, 1))
        start = time.perf_counter()
        lb, _ = model.compute_bounds(x=(BoundedTensor(xt, ptb),), C=C, bound_upper=False,
                                     method="CROWN-Optimized" if method == "alpha-crown" else "backward")
        times.append(time.perf_counter() - start)
        row = lb[0].tolist()
        margins.append([None if t == label else row[others.index(t)] for t in range(10)])
    return margins, times


def onnx_input_shape(path):
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    return [max(d.dim_value, 1) for d in dims][1:]


def lirpa_box_bounds(net, shape, lo, hi, C, dtype):
    """CROWN lower bounds of the rows of C over the box [lo, hi], and the time taken."""
    net = net.to(dtype)
    model = BoundedModule(net, torch.zeros(1, *shape, dtype=dtype), device="cpu", verbose=False)
    x_L = torch.tensor(lo, dtype=dtype).reshape(1, *shape)
    x_U = torch.tensor(hi, dtype=dtype).reshape(1, *shape)
    ptb = PerturbationLpNorm(norm=np.inf, eps=float((x_U - x_L).max()) / 2, x_L=x_L, x_U=x_U)
    c = torch.tensor(C, dtype=dtype).unsqueeze(0)
    start = time.perf_counter()
    lb, _ = model.compute_bounds(x=(BoundedTensor((x_L + x_U) / 2, ptb),), C=c, bound_upper=False, method="backward")
    return lb[0].tolist(), time.perf_counter() - start


def compare_vnnlib(a):
    """CROWN on VNN-LIB instances: every constraint of every unsafe term, both tools.

    Both tools bound every instance of the model in one process (auto_LiRPA's
    compute_bounds calls are timed, nncert's per-case `ms`); nncert is also run
    once per instance (a fresh process each: cold memory and caches) and that
    time is reported beside it. The timings are taken in --rounds rounds, the
    tools alternating, and each instance's fastest round counts: this VM's
    speed drifts by up to 2x over minutes, and alternating exposes both tools
    to the same drift."""
    net = torch_model(a.model).eval()
    shape = onnx_input_shape(a.model)

    def bounds(specs, *flags):
        cmd = [a.nncert, "bounds", a.model, *specs, "--method", "crown", *flags]
        return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)["cases"]

    real = ("--unsound", "--no-ibp-intersection")
    ours, default = bounds(a.vnnlib, *real), bounds(a.vnnlib)
    rows = [[c for term in case["terms"] for c in term] for case in ours]
    boxes = [(case["input_lo"], case["input_hi"]) for case in ours]
    warm, cold, lirpa = ([[] for _ in ours] for _ in range(3))
    for _ in range(a.rounds):
        for times, case in zip(warm, bounds(a.vnnlib, *real)):
            times.append(case["ms"] / 1e3)
        for times, case in zip(cold, [c for spec in a.vnnlib for c in bounds([spec], *real)]):
            times.append(case["ms"] / 1e3)
        for times, (lo, hi), r in zip(lirpa, boxes, rows):
            times.append(lirpa_box_bounds(net, shape, lo, hi, [c["coeffs"] for c in r], torch.float32)[1])
    worst_rel, terms_total = 0.0, 0
    excluded = {"nncert": 0, "auto_lirpa": 0, "nncert_default": 0}
    for case, case_default, r, (lo, hi) in zip(ours, default, rows, boxes):
        C = [c["coeffs"] for c in r]
        theirs, _ = lirpa_box_bounds(net, shape, lo, hi, C, torch.float32)
        theirs64, _ = lirpa_box_bounds(net, shape, lo, hi, C, torch.float64)
        for c, t in zip(r, theirs64):
            worst_rel = max(worst_rel, abs(c["lower"] - t) / max(abs(t), 1e-12))
        k = 0
        for term, term_default in zip(case["terms"], case_default["terms"]):
            excluded["nncert"] += any(c["excluded"] for c in term)
            excluded["auto_lirpa"] += any(theirs[k + i] > c["rhs"] for i, c in enumerate(term))
            excluded["nncert_default"] += any(c["excluded"] for c in term_default)
            k += len(term)
            terms_total += 1
    n = len(ours)
    best = lambda ts: sum(min(t) for t in ts)
    print(json.dumps({
        "model": os.path.basename(a.model), "method": "crown", "instances": n, "terms": terms_total,
        "terms_excluded_nncert": excluded["nncert"], "terms_excluded_auto_lirpa": excluded["auto_lirpa"],
        "terms_excluded_nncert_default": excluded["nncert_default"], "max_rel_diff": worst_rel,
        "rounds": a.rounds,
        "nncert_ms_per_instance": round(1e3 * best(warm) / n, 2),
        "auto_lirpa_ms_per_instance": round(1e3 * best(lirpa) / n, 2),
        "speedup": round(best(lirpa) / best(warm), 2),
        "nncert_cold_ms_per_instance": round(1e3 * best(cold) / n, 2),
        "speedup_cold": round(best(lirpa) / best(cold), 2), "torch_threads": torch.get_num_threads(),
    }))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nncert", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--mnist")
    p.add_argument("--vnnlib", nargs="+", help="VNN-LIB specs for --model (instead of MNIST images)")
    p.add_argument("--rounds", type=int, default=3, help="--vnnlib: timing rounds (each instance's fastest counts)")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--method", choices=["crown", "alpha-crown"], default="crown")
    a = p.parse_args()
    torch.set_grad_enabled(a.method == "alpha-crown")
    if a.vnnlib:
        return compare_vnnlib(a)
    if not a.mnist:
        p.error("--mnist or --vnnlib is required")
    def nncert(*flags):
        cmd = [a.nncert, "certify", "--model", a.model, "--data", f"mnist:{a.mnist}", "--eps", str(a.eps),
               "--start", str(a.start), "--count", str(a.count), "--method", a.method, "--json", *flags]
        return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    # Like for like: real arithmetic, no intersection with IBP (auto_LiRPA does neither).
    t0 = time.perf_counter()
    report = nncert("--unsound", "--no-ibp-intersection")
    nncert_wall = time.perf_counter() - t0
    default = nncert()["summary"]
    kept = [r for r in report["images"] if r["verdict"] != "misclassified"]
    x, y = mnist_test(a.mnist, a.start, a.count)
    idx = [r["index"] - a.start for r in kept]
    net = torch_model(a.model).eval()
    # The converted model must compute what the ONNX model does.
    with torch.no_grad():
        pred = net(torch.tensor(x[idx])).argmax(1).tolist()
    assert pred == [r["predicted"] for r in kept], "converted model disagrees with nncert's predictions"
    t0 = time.perf_counter()
    margins, times = lirpa_margins(net, x[idx], y[idx], a.eps, a.method, 20)
    lirpa_wall = time.perf_counter() - t0
    # CROWN agreement is judged against auto_LiRPA in float64: in float32 its own rounding (~1e-5)
    # dominates. α-CROWN is an optimisation whose result depends on the optimiser's path, so
    # there the comparison is of bounds and counts, in auto_LiRPA's float32 (its float64 α path
    # fails in auto_LiRPA 0.3 with a dtype error).
    margins64 = margins if a.method == "alpha-crown" else lirpa_margins(
        torch_model(a.model).eval(), x[idx], y[idx], a.eps, a.method, 20, torch.float64)[0]
    worst_rel, worst_abs, nncert_tighter, lirpa_tighter = 0.0, 0.0, 0, 0
    for r, m in zip(kept, margins64):
        for ours, theirs in zip(r["margins"], m):
            if ours is None:
                continue
            diff = abs(ours - theirs)
            worst_abs = max(worst_abs, diff)
            worst_rel = max(worst_rel, diff / max(abs(theirs), 1e-12))
            nncert_tighter += ours > theirs + 1e-9 * max(1.0, abs(theirs))
            lirpa_tighter += theirs > ours + 1e-9 * max(1.0, abs(theirs))
    cert = lambda ms: sum(all(v is None or v > 0 for v in row) for row in ms)
    nncert_ms = sum(r["ms"] for r in kept) / len(kept)
    lirpa_ms = 1e3 * sum(times) / len(times)
    print(json.dumps({
        "model": os.path.basename(a.model), "method": a.method, "eps": a.eps, "images": len(kept),
        "nncert_certified": sum(r["verdict"] == "certified" for r in kept), "auto_lirpa_certified": cert(margins),
        "max_rel_diff": worst_rel, "max_abs_diff": worst_abs, "margins_nncert_tighter": nncert_tighter,
        "margins_auto_lirpa_tighter": lirpa_tighter,
        "nncert_ms_per_image": round(nncert_ms, 2), "auto_lirpa_ms_per_image": round(lirpa_ms, 2),
        "speedup": round(lirpa_ms / nncert_ms, 2),
        "nncert_wall_s": round(nncert_wall, 2), "auto_lirpa_wall_s": round(lirpa_wall, 2),
        "torch_threads": torch.get_num_threads(),
        "nncert_default_certified": default["certified"], "nncert_default_ms_per_image": round(default["ms_per_image"], 2),
    }))


if __name__ == "__main__":
    main()
