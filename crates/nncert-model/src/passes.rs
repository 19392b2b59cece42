//! Canonicalisation passes. Each rewrites the graph without changing what it
//! computes in real arithmetic; folded weights are computed in f64 and rounded
//! once to float32, so float32 outputs may move by a few ulps (docs/design.md).

use crate::error::Result;
use crate::forward::{run_all, Reference};
use crate::graph::{Graph, NodeId};
use crate::kernels::convert;
use crate::op::{chw, BinaryKind, Op};
use crate::tensor::Tensor;

/// Which passes `canonicalize` runs.
#[derive(Clone, Copy, Debug)]
pub struct PassOptions {
    pub fold_constants: bool,
    pub resolve_shapes: bool,
    pub fold_batchnorm: bool,
    pub fold_affine: bool,
    pub fold_bias_add: bool,
    pub fuse_linear_chains: bool,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            fold_constants: true,
            resolve_shapes: true,
            fold_batchnorm: true,
            fold_affine: true,
            fold_bias_add: true,
            fuse_linear_chains: true,
        }
    }
}

impl PassOptions {
    /// Only the passes that leave every float32 operation as written
    /// (folding batch norms, affine ops or linear chains changes what
    /// float32 computes, so sound mode must bound the graph unfolded), and
    /// `fold_bias_add`, whose rewrite the float32 error bound covers.
    pub fn float32_exact() -> Self {
        PassOptions {
            fold_batchnorm: false,
            fold_affine: false,
            fuse_linear_chains: false,
            ..PassOptions::default()
        }
    }
}

/// Rewrites counted per pass (for `nncert info`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub constants_folded: usize,
    pub shape_ops_resolved: usize,
    pub batchnorms_folded: usize,
    pub affines_folded: usize,
    pub bias_adds_folded: usize,
    pub linear_chains_fused: usize,
}

/// Runs the selected passes to a fixed point and returns the canonical graph.
pub fn canonicalize(graph: &Graph, opts: PassOptions) -> Result<(Graph, PassReport)> {
    let mut g = graph.clone();
    let mut report = PassReport::default();
    loop {
        let before = report;
        if opts.fold_constants {
            report.constants_folded += fold_constants(&mut g)?;
        }
        if opts.resolve_shapes {
            report.shape_ops_resolved += resolve_shapes(&mut g);
        }
        if opts.fold_batchnorm {
            report.batchnorms_folded += fold_batchnorm(&mut g);
        }
        if opts.fold_affine {
            report.affines_folded += fold_affine(&mut g);
        }
        if opts.fold_bias_add {
            report.bias_adds_folded += fold_bias_add(&mut g);
        }
        if opts.fuse_linear_chains {
            report.linear_chains_fused += fuse_linear_chains(&mut g);
        }
        g.prune();
        if report == before {
            break;
        }
    }
    g.validate()?;
    Ok((g, report))
}

/// Ops that remain after canonicalisation and that the bound engines treat
/// natively; anything else is reported by `nncert info`.
pub fn is_canonical(op: &Op) -> bool {
    !matches!(
        op,
        Op::Constant(_) | Op::BatchNorm { .. } | Op::Binary(BinaryKind::Mul | BinaryKind::Div)
    )
}

fn to_tensor(shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::new(shape.to_vec(), v.iter().map(|&x| x as f32).collect())
}

/// Evaluates nodes that do not depend on the input, then turns
/// `x ± c`, `c + x`, `c − x`, `x · c`, `c · x` and `x / c` into Affine nodes.
pub fn fold_constants(g: &mut Graph) -> Result<usize> {
    let mut is_const: Vec<bool> = Vec::with_capacity(g.nodes.len());
    for n in &g.nodes {
        let c = match n.op {
            Op::Input => false,
            Op::Constant(_) => true,
            _ => n.inputs.iter().all(|&i| is_const[i]),
        };
        is_const.push(c);
    }
    let mut count = 0;
    let foldable: Vec<NodeId> = (0..g.nodes.len())
        .filter(|&i| is_const[i] && !matches!(g.nodes[i].op, Op::Constant(_)))
        .collect();
    if !foldable.is_empty() {
        let values = run_all(g, &Reference, &vec![0.0; g.input_len()])?;
        for id in foldable {
            g.nodes[id].op = Op::Constant(to_tensor(&g.nodes[id].shape, &values[id]));
            g.nodes[id].inputs.clear();
            count += 1;
        }
    }
    for id in 0..g.nodes.len() {
        let Op::Binary(kind) = g.nodes[id].op else {
            continue;
        };
        let (a, b) = (g.nodes[id].inputs[0], g.nodes[id].inputs[1]);
        let shape = g.nodes[id].shape.clone();
        let (var, c, const_first) = match (&g.nodes[a].op, &g.nodes[b].op) {
            (_, Op::Constant(c)) => (a, c, false),
            (Op::Constant(c), _) => (b, c, true),
            _ => continue,
        };
        // Only when the variable already has the output shape (no broadcast of x).
        let Some(c) = c
            .broadcast_to(&shape)
            .filter(|_| g.nodes[var].shape == shape)
        else {
            continue;
        };
        let neg = |t: &Tensor| Tensor::new(t.shape.clone(), t.data.iter().map(|v| -v).collect());
        let ones = Tensor::new(shape.clone(), vec![1.0; c.numel()]);
        let (scale, shift) = match (kind, const_first) {
            (BinaryKind::Add, _) => (None, Some(c)),
            (BinaryKind::Sub, false) => (None, Some(neg(&c))),
            (BinaryKind::Sub, true) => (Some(neg(&ones)), Some(c)),
            (BinaryKind::Mul, _) => (Some(c), None),
            (BinaryKind::Div, false) => (
                Some(Tensor::new(
                    shape.clone(),
                    c.data.iter().map(|&v| (1.0 / v as f64) as f32).collect(),
                )),
                None,
            ),
            (BinaryKind::Div, true) => continue,
        };
        g.nodes[id].op = Op::Affine { scale, shift };
        g.nodes[id].inputs = vec![var];
        count += 1;
    }
    Ok(count)
}

/// Merges chains of Reshape, drops identity Reshape/Transpose/Affine, composes Transposes.
pub fn resolve_shapes(g: &mut Graph) -> usize {
    let mut count = 0;
    for id in 0..g.nodes.len() {
        let Some(&x) = g.nodes[id].inputs.first() else {
            continue;
        };
        let same_shape = g.nodes[x].shape == g.nodes[id].shape;
        match (&g.nodes[id].op, &g.nodes[x].op) {
            (Op::Reshape, _) if same_shape => {
                g.redirect(id, x);
                count += 1;
            }
            (Op::Transpose { perm }, _) if perm.iter().enumerate().all(|(i, &p)| i == p) => {
                g.redirect(id, x);
                count += 1;
            }
            (
                Op::Affine {
                    scale: None,
                    shift: None,
                },
                _,
            ) => {
                g.redirect(id, x);
                count += 1;
            }
            // Move an Affine past a Reshape so it can meet the Linear after it (ACAS Xu: Sub, Flatten, MatMul).
            (Op::Reshape, Op::Affine { .. }) if g.use_counts()[x] == 1 => {
                let reshaped = |t: &Tensor| Tensor::new(g.nodes[id].shape.clone(), t.data.clone());
                let Op::Affine { scale, shift } = &g.nodes[x].op else {
                    unreachable!()
                };
                let affine = Op::Affine {
                    scale: scale.as_ref().map(reshaped),
                    shift: shift.as_ref().map(reshaped),
                };
                let shape = g.nodes[id].shape.clone();
                g.nodes[x].op = Op::Reshape;
                g.nodes[x].shape = shape;
                g.nodes[id].op = affine;
                count += 1;
            }
            (Op::Reshape, Op::Reshape) => {
                g.nodes[id].inputs = g.nodes[x].inputs.clone();
                count += 1;
            }
            (Op::Transpose { perm: outer }, Op::Transpose { perm: inner }) => {
                let composed = outer.iter().map(|&p| inner[p]).collect();
                g.nodes[id].op = Op::Transpose { perm: composed };
                g.nodes[id].inputs = g.nodes[x].inputs.clone();
                count += 1;
            }
            _ => {}
        }
    }
    count
}

/// Per-channel scale and shift equivalent to a batch norm.
fn batchnorm_affine(op: &Op) -> Option<(Vec<f64>, Vec<f64>)> {
    let Op::BatchNorm {
        gamma,
        beta,
        mean,
        var,
        epsilon,
    } = op
    else {
        return None;
    };
    let scale: Vec<f64> = (0..gamma.numel())
        .map(|c| gamma.data[c] as f64 / (var.data[c] as f64 + *epsilon as f64).sqrt())
        .collect();
    let shift = (0..gamma.numel())
        .map(|c| beta.data[c] as f64 - mean.data[c] as f64 * scale[c])
        .collect();
    Some((scale, shift))
}

/// Folds BatchNorm into the Conv/Linear before it where possible, otherwise
/// rewrites it as an Affine node.
pub fn fold_batchnorm(g: &mut Graph) -> usize {
    let mut count = 0;
    for id in 0..g.nodes.len() {
        let Some((scale, shift)) = batchnorm_affine(&g.nodes[id].op) else {
            continue;
        };
        let shape = g.nodes[id].shape.clone();
        let c = shape[1];
        let inner: usize = shape[2..].iter().product();
        let expand = |v: &[f64]| {
            to_tensor(
                &shape,
                &(0..shape.iter().product::<usize>())
                    .map(|i| v[(i / inner) % c])
                    .collect::<Vec<_>>(),
            )
        };
        g.nodes[id].op = Op::Affine {
            scale: Some(expand(&scale)),
            shift: Some(expand(&shift)),
        };
        count += 1;
    }
    count
}

/// How an Affine node's parameters vary over the axis a Linear/Conv mixes:
/// per-feature vectors when they are uniform over every other position.
fn affine_per_feature(g: &Graph, id: NodeId, conv_like: bool) -> Option<(Vec<f64>, Vec<f64>)> {
    let Op::Affine { scale, shift } = &g.nodes[id].op else {
        return None;
    };
    let shape = &g.nodes[id].shape;
    let total: usize = shape.iter().product();
    let (features, feature_of): (usize, Box<dyn Fn(usize) -> usize>) = if conv_like {
        let (c, h, w) = chw(shape)?;
        (c, Box::new(move |i| i / (h * w)))
    } else {
        let f = *shape.last()?;
        (f, Box::new(move |i| i % f))
    };
    let per = |t: &Option<Tensor>, default: f64| -> Option<Vec<f64>> {
        let mut v: Vec<Option<f64>> = vec![None; features];
        for i in 0..total {
            let x = t.as_ref().map_or(default, |t| t.data[i] as f64);
            match v[feature_of(i)] {
                None => v[feature_of(i)] = Some(x),
                Some(y) if y == x => {}
                Some(_) => return None,
            }
        }
        Some(v.into_iter().map(|x| x.unwrap_or(default)).collect())
    };
    Some((per(scale, 1.0)?, per(shift, 0.0)?))
}

fn only_use(uses: &[usize], id: NodeId) -> bool {
    uses[id] == 1
}

/// Folds Affine nodes into the Linear/Conv before or after them (input
/// normalisation, folded batch norm). Into a padded Conv only without shift:
/// padding zeros are not normalised.
pub fn fold_affine(g: &mut Graph) -> usize {
    let mut count = 0;
    for id in 0..g.nodes.len() {
        let uses = g.use_counts();
        let x = match g.nodes[id].inputs.first() {
            Some(&x) => x,
            None => continue,
        };
        // Affine after Linear/Conv: scale rows of W, map the bias.
        if matches!(g.nodes[id].op, Op::Affine { .. }) && only_use(&uses, x) {
            let conv_like = matches!(g.nodes[x].op, Op::Conv2d { .. });
            if matches!(g.nodes[x].op, Op::Linear { .. } | Op::Conv2d { .. }) {
                if let Some((s, t)) = affine_per_feature(g, id, conv_like) {
                    scale_outputs(&mut g.nodes[x].op, &s, &t);
                    g.redirect(id, x);
                    count += 1;
                    continue;
                }
            }
        }
        // Affine before Linear/Conv: scale columns of W, shift into the bias.
        if matches!(g.nodes[id].op, Op::Linear { .. } | Op::Conv2d { .. })
            && matches!(g.nodes[x].op, Op::Affine { .. })
            && only_use(&uses, x)
        {
            let conv_like = matches!(g.nodes[id].op, Op::Conv2d { .. });
            let padded = matches!(&g.nodes[id].op, Op::Conv2d { window, .. } if window.pads.iter().any(|&p| p > 0));
            if let Some((s, t)) = affine_per_feature(g, x, conv_like) {
                if padded && t.iter().any(|&v| v != 0.0) {
                    continue;
                }
                scale_inputs(&mut g.nodes[id].op, &s, &t);
                g.nodes[id].inputs[0] = g.nodes[x].inputs[0];
                count += 1;
            }
        }
    }
    count
}

/// Folds a bias addition (an Affine node with a shift and no scale, per
/// output feature) into the bias-less Linear/Conv before it: MatMul then
/// Add as ONNX exporters write `x·Wᵀ + b`. Not exact in float32, since
/// `fl(fl(W·x) + b)` rounds twice, but that is one summation order of the
/// n + 1 terms `w·x` and `b`, which the float32 charge of an affine op with
/// a bias, γ_{n+1}·(|b| + Σ|w|·|x|), covers; and `b` stays the float32
/// tensor it was. So sound mode may fold it, and bounds one node, not two.
pub fn fold_bias_add(g: &mut Graph) -> usize {
    let mut count = 0;
    for id in 0..g.nodes.len() {
        let uses = g.use_counts();
        let Some(&x) = g.nodes[id].inputs.first() else {
            continue;
        };
        let bias_free = matches!(
            g.nodes[x].op,
            Op::Linear { bias: None, .. } | Op::Conv2d { bias: None, .. }
        );
        if !bias_free
            || !only_use(&uses, x)
            || !matches!(
                g.nodes[id].op,
                Op::Affine {
                    scale: None,
                    shift: Some(_)
                }
            )
        {
            continue;
        }
        let conv_like = matches!(g.nodes[x].op, Op::Conv2d { .. });
        if let Some((s, t)) = affine_per_feature(g, id, conv_like) {
            scale_outputs(&mut g.nodes[x].op, &s, &t);
            g.redirect(id, x);
            count += 1;
        }
    }
    count
}

/// `op` followed by `y ↦ s·y + t` per output feature.
fn scale_outputs(op: &mut Op, s: &[f64], t: &[f64]) {
    let (Op::Linear { weight, bias } | Op::Conv2d { weight, bias, .. }) = op else {
        return;
    };
    let out = weight.shape[0];
    let per = weight.numel() / out;
    for (row, &so) in weight.data.chunks_mut(per).zip(s) {
        for v in row {
            *v = (*v as f64 * so) as f32;
        }
    }
    let b: Vec<f64> = (0..out)
        .map(|o| bias.as_ref().map_or(0.0, |b| b.data[o] as f64) * s[o] + t[o])
        .collect();
    *bias = Some(to_tensor(&[out], &b));
}

/// `op` applied to `x ↦ s·x + t` per input feature (input channel for convs).
fn scale_inputs(op: &mut Op, s: &[f64], t: &[f64]) {
    let groups = match op {
        Op::Conv2d { groups, .. } => *groups,
        _ => 1,
    };
    let (Op::Linear { weight, bias } | Op::Conv2d { weight, bias, .. }) = op else {
        return;
    };
    let out = weight.shape[0];
    let fan = weight.shape[1];
    let spatial = weight.numel() / (out * fan);
    let out_per_group = out / groups;
    let mut b: Vec<f64> = (0..out)
        .map(|o| bias.as_ref().map_or(0.0, |b| b.data[o] as f64))
        .collect();
    for (o, bo) in b.iter_mut().enumerate() {
        let g = o / out_per_group;
        for f in 0..fan {
            let feature = g * fan + f;
            for w in &mut weight.data[(o * fan + f) * spatial..][..spatial] {
                *bo += *w as f64 * t[feature];
                *w = (*w as f64 * s[feature]) as f32;
            }
        }
    }
    *bias = Some(to_tensor(&[out], &b));
}

/// Fuses Linear→Linear (no activation between) when the product is no larger
/// than the two factors: W = W2·W1, b = W2·b1 + b2.
pub fn fuse_linear_chains(g: &mut Graph) -> usize {
    let mut count = 0;
    for id in 0..g.nodes.len() {
        let uses = g.use_counts();
        let Some(&x) = g.nodes[id].inputs.first() else {
            continue;
        };
        let (
            Op::Linear {
                weight: w2,
                bias: b2,
            },
            Op::Linear {
                weight: w1,
                bias: b1,
            },
        ) = (&g.nodes[id].op, &g.nodes[x].op)
        else {
            continue;
        };
        let (o2, m) = (w2.shape[0], w2.shape[1]);
        let i1 = w1.shape[1];
        if !only_use(&uses, x) || o2 * i1 > o2 * m + m * i1 {
            continue;
        }
        let (w1v, w2v): (Vec<f64>, Vec<f64>) = (convert(&w1.data), convert(&w2.data));
        let mut w = vec![0.0; o2 * i1];
        let mut b = vec![0.0; o2];
        for o in 0..o2 {
            b[o] = b2.as_ref().map_or(0.0, |t| t.data[o] as f64);
            for k in 0..m {
                let a = w2v[o * m + k];
                b[o] += a * b1.as_ref().map_or(0.0, |t| t.data[k] as f64);
                for i in 0..i1 {
                    w[o * i1 + i] += a * w1v[k * i1 + i];
                }
            }
        }
        g.nodes[id].op = Op::Linear {
            weight: to_tensor(&[o2, i1], &w),
            bias: Some(to_tensor(&[o2], &b)),
        };
        g.nodes[id].inputs = g.nodes[x].inputs.clone();
        count += 1;
    }
    count
}
