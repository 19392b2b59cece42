#!/usr/bin/env python3
"""Step 3 of the fp attack on a deployed runtime nncert does not implement: ONNX Runtime
(--runtime onnxruntime, CPU, one thread) or tract (--runtime tract, its Python bindings'
default pipeline: load, into_model, into_runnable).

For every case `nncert fp-attack` wrote with a gap network (case_*_gap.onnx: the plain
verifier claims it robust at x0) and, with --model (the attacked model), for every dimmed
case on the model itself (Table 1, no gap), hill-climbs the runtime's CW loss
from the quasi-adversarial point x1, inside the case's float32 box, as Appendix A says:
U(-2e-7, 2e-7) noise on 4x4 tiles of every channel, kept on a strict decrease, 1000
sweeps, stopping once the loss is negative. Each point where the runtime's label flips
is re-run on nncert's f64 reference (`nncert run --engine reference --json`): real
arithmetic must keep the label there, or the claim itself was wrong.

Prints one line per case and a summary; writes RUNTIME_climb.json into the case folder.

usage: runtime_climb.py --nncert target/release/nncert CASE_DIR [--runtime onnxruntime|tract]
                        [--model M.onnx] [--sweeps 1000] [--seed 0]
"""
import argparse, glob, json, os, subprocess, sys, tempfile
import numpy as np


def onnxruntime_session(model):
    """(run: float32 input of the model's shape -> output array, input shape)"""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
    from ort_reference import session  # one ONNX Runtime set-up for the cross-check and the climbs
    s, name, shape = session(model)
    return (lambda x: s.run(None, {name: x.reshape(shape)})[0]), shape


def tract_session(model):
    import tract
    inference = tract.onnx().load(model)
    fact = str(inference.input_fact(0))  # e.g. "1,1,28,28,F32"
    shape = [int(d) if d.isdigit() else 1 for d in fact.split(",")[:-1]]
    r = inference.into_model().into_runnable()
    return (lambda x: r.run([x.reshape(shape)])[0].to_numpy()), shape


def runtime_version(runtime):
    if runtime == "tract":
        import tract
        return tract.version()
    import onnxruntime
    return onnxruntime.__version__


RUNTIMES = {"onnxruntime": ("ONNX Runtime", onnxruntime_session), "tract": ("tract", tract_session)}


def cw_loss(y, label):
    y = np.asarray(y, dtype=np.float64)
    return y[label] - np.max(np.delete(y, label))


def tiles(shape, tile=4):
    """Index lists of tile x tile squares per channel ([1, C, H, W]) or runs of tile^2."""
    if len(shape) == 4:
        _, c, h, w = shape
        return [[(ch * h + y) * w + x for ch in range(c) for y in range(y0, min(y0 + tile, h))
                 for x in range(x0, min(x0 + tile, w))]
                for y0 in range(0, h, tile) for x0 in range(0, w, tile)]
    n = int(np.prod(shape))
    return [list(range(k, min(k + tile * tile, n))) for k in range(0, n, tile * tile)]


def climb(infer, shape, x1, lo, hi, label, sweeps, rng, scale=np.float32(2e-7)):
    run = lambda x: cw_loss(infer(x).ravel(), label)
    x = np.clip(x1, lo, hi)
    loss = run(x)
    ts = [np.array(t) for t in tiles(shape)]
    for sweep in range(sweeps):
        if loss < 0:
            return x, loss, sweep
        for t in ts:
            cand = x.copy()
            noise = rng.uniform(-scale, scale, len(t)).astype(np.float32)
            cand[t] = np.clip(cand[t] + noise, lo[t], hi[t])
            l = run(cand)
            if l < loss:
                x, loss = cand, l
    return x, loss, sweeps


def reference_loss(nncert, model, x, label):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([float(v) for v in x], f)
    try:
        out = subprocess.run([nncert, "run", model, "--input", f.name, "--engine", "reference", "--json"],
                             check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)
    return cw_loss(json.loads(out)["outputs"]["reference"], label)


def climb_case(a, model, case, gap):
    infer, shape = RUNTIMES[a.runtime][1](model)
    f32 = lambda k: np.array(case[k], dtype=np.float32)
    x, loss, sweeps = climb(infer, shape, f32("x1"), f32("box_lo"), f32("box_hi"),
                            case["label"], a.sweeps, np.random.default_rng(a.seed))
    inside = bool(np.all((f32("box_lo") <= x) & (x <= f32("box_hi"))))
    ref = reference_loss(a.nncert, model, x, case["label"]) if loss < 0 else None
    r = {"index": case["index"], "label": case["label"], "gap": gap, "tau0": case["tau0"],
         "runtime_cw_loss": loss, "sweeps": sweeps, "inside_box": inside, "reference_cw_loss": ref,
         "success": bool(loss < 0 and inside), "x_adv": [float(v) for v in x]}
    print(f"case {r['index']:>5} ({'gap network' if gap else 'no gap'}): {RUNTIMES[a.runtime][0]} CW loss "
          f"{loss:.3e} after {sweeps} sweeps" + (f", f64 reference {ref:.3e}" if ref is not None else ""),
          flush=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nncert", required=True)
    ap.add_argument("--runtime", choices=sorted(RUNTIMES), default="onnxruntime")
    ap.add_argument("--model", help="the attacked model: also climb it, without gap, on dimmed cases")
    ap.add_argument("--sweeps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("dir")
    a = ap.parse_args()
    name, version = RUNTIMES[a.runtime][0], runtime_version(a.runtime)
    results = []
    for path in sorted(glob.glob(os.path.join(a.dir, "case_*.json"))):
        case = json.load(open(path))
        if case.get("x1") is None:
            continue
        if a.model and case.get("alpha") is not None and case.get("claim_x0") == "robust":
            results.append(climb_case(a, a.model, case, False))
        gap = path[: -len(".json")] + "_gap.onnx"
        if os.path.exists(gap):
            results.append(climb_case(a, gap, case, True))
    for gap, what in [(False, "networks without gap (Table 1)"), (True, "gap networks")]:
        rs = [r for r in results if r["gap"] == gap]
        wins = [r for r in rs if r["success"]]
        if rs:
            print(f"{name} {version}: {len(wins)} of {len(rs)} {what} broken; "
                  f"real arithmetic keeps the label at {sum(r['reference_cw_loss'] > 0 for r in wins)} of them")
    json.dump({"runtime": a.runtime, "version": version, "sweeps": a.sweeps, "cases": results},
              open(os.path.join(a.dir, f"{a.runtime}_climb.json"), "w"))


if __name__ == "__main__":
    main()
