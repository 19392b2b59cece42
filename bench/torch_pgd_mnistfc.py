"""PGD in torch on a VNN-COMP mnistfc instance (dense Gemm/MatMul/Add/Relu
ONNX, a box over 784 inputs, "some other logit >= the label's"): many random
restarts of sign-gradient steps on the worst margin, in float64. Prints the
first step that crosses the margin, or the best margin reached. A yardstick
for how hard an instance's counterexample is to reach by gradient; nncert
does not depend on it.

Usage (the auto_LiRPA venv of bench/autolirpa_compare.sh has torch and onnx):
  target/lirpa-venv/bin/python bench/torch_pgd_mnistfc.py MODEL.onnx SPEC.vnnlib RESTARTS STEPS
"""
import sys, re, onnx, torch, numpy as np, time
from onnx import numpy_helper
model, spec, restarts, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
m = onnx.load(model)
inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
layers = []
for n in m.graph.node:
    if n.op_type in ('Gemm','MatMul'):
        W = inits[n.input[1]]; b = inits[n.input[2]] if len(n.input) > 2 else None
        tb = any(a.name=='transB' and a.i==1 for a in n.attribute)
        layers.append(('lin', torch.tensor(W.T if tb else W, dtype=torch.float64), None if b is None else torch.tensor(b, dtype=torch.float64)))
    elif n.op_type == 'Add':
        layers.append(('add', torch.tensor(inits[n.input[1]], dtype=torch.float64)))
    elif n.op_type == 'Relu': layers.append(('relu',))
    elif n.op_type in ('Flatten','Reshape'): pass
    else: print('op', n.op_type)
def f(x):
    for l in layers:
        if l[0]=='lin': x = x @ l[1] + (0 if l[2] is None else l[2])
        elif l[0]=='add': x = x + l[1]
        else: x = torch.relu(x)
    return x
txt = open(spec).read()
lo = np.zeros(784); hi = np.zeros(784)
for k, v in re.findall(r'\(<= X_(\d+) ([-\d.e]+)\)', txt): hi[int(k)] = float(v)
for k, v in re.findall(r'\(>= X_(\d+) ([-\d.e]+)\)', txt): lo[int(k)] = float(v)
label = int(re.search(r'label: (\d+)', txt).group(1))
lo = torch.tensor(lo); hi = torch.tensor(hi)
torch.manual_seed(0)
t = time.time()
best = 1e9
for chunk in range(0, restarts, 1000):
    R = min(1000, restarts - chunk)
    x = lo + (hi - lo) * torch.rand(R, 784, dtype=torch.float64)
    x.requires_grad_(True)
    for k in range(steps):
        y = f(x)
        other = y.clone(); other[:, label] = -1e9
        margin = y[:, label] - other.max(1).values
        best = min(best, margin.min().item())
        if margin.min() <= 0: print('found', time.time()-t, k, chunk); sys.exit()
        g, = torch.autograd.grad(margin.sum(), x)
        step = (hi - lo) * 2.5 / steps * (1 - k / steps)
        x = torch.max(torch.min(x - step * g.sign(), hi), lo).detach().requires_grad_(True)
print('not found, best margin', best, time.time()-t)
