//! Symbolic interval propagation (ReluVal / Neurify, the "symbolic interval"
//! analysis of target-label-guided-verification.md §3): every node carries a
//! lower and an upper linear function of the input, `L(x) ≤ z(x) ≤ U(x)`,
//! pushed forward op by op; an unstable ReLU with concrete bounds [l, u]
//! becomes `λ·L ≤ relu(z) ≤ λ·(U − l)` with λ = u/(u − l) (Neurify's
//! symbolic linear relaxation). Concrete bounds come from minimising `L` and
//! maximising `U` over the input box, intersected with IBP.
//!
//! Zonotopes (DeepZ, Singh et al. 2018) share the machinery: the variables
//! are noise symbols in [−1, 1] instead of input coordinates (the input box
//! is `mid + rad·ε`), and a relaxed op adds a fresh symbol per relaxed
//! element: `relu(z) = λz + μ + μ·ε_new` with λ = u/(u − l), μ = −λl/2. Nodes
//! keep a lower and an upper function (equal without float32 charges), so
//! float32 error radii widen them as for symbolic intervals.
//!
//! Layout: `[m + 1, n]`, one row per variable and a last row for the
//! constant, so positive linear ops (pooling, shape ops) are the ordinary
//! kernels on a batch of m + 1. Cost and memory grow with n·m, which is why
//! these are the cheap domains for small inputs (ACAS Xu) and not for images.

use crate::fp::{affine_error, down, gamma, up, U64};
use crate::interval::{Interval, Region};
use crate::ops::activation::{self, Monotone};
use crate::ops::{conv, elementwise, linear, pool, shape};
use crate::propagate::monotone;
use crate::BoundsError;
use nncert_model::forward::ConvCall;
use nncert_model::{kernels, BinaryKind, Graph, NodeId, Op, Tensor};

/// Largest `(d + 1)·n` one node's two functions may take (2 × 2²⁶ f64 = 1 GiB).
const MAX_ENTRIES: usize = 1 << 26;

/// The variables of the linear functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// Symbolic intervals: the input coordinates.
    Symbolic,
    /// Zonotopes: noise symbols in [−1, 1], a fresh one per relaxed element.
    Zonotope,
}

/// Lower and upper linear functions of the variables for every element of a node.
#[derive(Clone, Debug)]
pub struct SymBounds {
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
    /// Elements per row (the node's size).
    pub n: usize,
}

impl SymBounds {
    pub fn rows(&self) -> usize {
        self.lo.len() / self.n
    }

    /// The same linear map (one that keeps order: non-negative weights) on both functions.
    fn map(&self, n: usize, f: impl Fn(&[f64]) -> Vec<f64>) -> SymBounds {
        SymBounds {
            lo: f(&self.lo),
            hi: f(&self.hi),
            n,
        }
    }

    /// The input point itself: L = U = x.
    pub fn identity(d: usize) -> SymBounds {
        let mut lo = vec![0.0; (d + 1) * d];
        for j in 0..d {
            lo[j * d + j] = 1.0;
        }
        SymBounds {
            hi: lo.clone(),
            lo,
            n: d,
        }
    }

    /// The input box as a zonotope: `mid + rad·ε`, one symbol per coordinate.
    fn box_zonotope(b: &Interval) -> SymBounds {
        let d = b.len();
        let mut lo = vec![0.0; (d + 1) * d];
        for j in 0..d {
            lo[j * d + j] = 0.5 * (b.hi[j] - b.lo[j]);
            lo[d * d + j] = 0.5 * (b.hi[j] + b.lo[j]);
        }
        SymBounds {
            hi: lo.clone(),
            lo,
            n: d,
        }
    }

    /// A constant: no variable rows (padded on demand).
    fn constant(v: &[f64]) -> SymBounds {
        SymBounds {
            lo: v.to_vec(),
            hi: v.to_vec(),
            n: v.len(),
        }
    }

    /// The same functions over `m` variables (m ≥ the current count): the new
    /// variables, which this node does not depend on, get zero rows.
    pub fn padded(&self, m: usize) -> SymBounds {
        let (n, have) = (self.n, self.rows() - 1);
        let widen = |v: &[f64]| {
            let mut out = v[..have * n].to_vec();
            out.resize(m * n, 0.0);
            out.extend_from_slice(&v[have * n..]);
            out
        };
        SymBounds {
            lo: widen(&self.lo),
            hi: widen(&self.hi),
            n,
        }
    }

    /// Appends fresh variables `first..first + k`, one per `(element, coefficient)`,
    /// in both functions (`first` ≥ the current count; rows between are zero).
    pub fn with_fresh(&self, first: usize, fresh: &[(usize, f64)]) -> SymBounds {
        let n = self.n;
        let mut out = self.padded(first + fresh.len());
        for (k, &(j, c)) in fresh.iter().enumerate() {
            out.lo[(first + k) * n + j] = c;
            out.hi[(first + k) * n + j] = c;
        }
        out
    }

    /// Concrete bounds over the variables' box `b` (its first `rows − 1`
    /// entries), rounded outward, and each element's magnitude
    /// `Σ|c|·max|x| + |c₀|` (over both functions).
    pub fn concretize(&self, b: &Interval, sound: bool) -> (Interval, Vec<f64>) {
        let (n, d) = (self.n, self.rows() - 1);
        let xmax: Vec<f64> = b.lo[..d]
            .iter()
            .zip(&b.hi)
            .map(|(l, h)| l.abs().max(h.abs()))
            .collect();
        let mut lo = self.lo[d * n..].to_vec();
        let mut hi = self.hi[d * n..].to_vec();
        let mut mag_lo: Vec<f64> = lo.iter().map(|v| v.abs()).collect();
        let mut mag_hi: Vec<f64> = hi.iter().map(|v| v.abs()).collect();
        for (r, &xm) in xmax.iter().enumerate() {
            let (cl, ch) = (&self.lo[r * n..][..n], &self.hi[r * n..][..n]);
            for j in 0..n {
                lo[j] += if cl[j] >= 0.0 {
                    cl[j] * b.lo[r]
                } else {
                    cl[j] * b.hi[r]
                };
                hi[j] += if ch[j] >= 0.0 {
                    ch[j] * b.hi[r]
                } else {
                    ch[j] * b.lo[r]
                };
                mag_lo[j] += cl[j].abs() * xm;
                mag_hi[j] += ch[j].abs() * xm;
            }
        }
        let mag: Vec<f64> = mag_lo.iter().zip(&mag_hi).map(|(a, b)| a.max(*b)).collect();
        if sound {
            let g = gamma(d + 2, U64);
            for j in 0..n {
                lo[j] = down(lo[j] - g * mag[j]);
                hi[j] = up(hi[j] + g * mag[j]);
            }
        }
        (Interval { lo, hi }, mag)
    }

    /// Widens by a per-element radius (on the constant row).
    pub(crate) fn widen(&mut self, r: &[f64]) {
        let start = (self.rows() - 1) * self.n;
        for (j, e) in r.iter().enumerate() {
            self.lo[start + j] -= e;
            self.hi[start + j] += e;
        }
    }

    /// `s·z + t` per element (s of any sign): a negative scale swaps the functions.
    pub fn scaled(&self, scale: impl Fn(usize) -> f64, shift: impl Fn(usize) -> f64) -> SymBounds {
        let (n, rows) = (self.n, self.rows());
        let mut out = SymBounds {
            lo: vec![0.0; rows * n],
            hi: vec![0.0; rows * n],
            n,
        };
        for r in 0..rows {
            for j in 0..n {
                let (s, k) = (scale(j), r * n + j);
                let (a, b) = (self.lo[k] * s, self.hi[k] * s);
                (out.lo[k], out.hi[k]) = if s >= 0.0 { (a, b) } else { (b, a) };
                if r == rows - 1 {
                    out.lo[k] += shift(j);
                    out.hi[k] += shift(j);
                }
            }
        }
        out
    }

    /// Per element, separate lines for the lower and the upper function:
    /// `L' = sl·L + bl`, `U' = su·U + bu` with sl, su ≥ 0.
    fn lines(&self, line: impl Fn(usize) -> (f64, f64, f64, f64)) -> SymBounds {
        let (n, rows) = (self.n, self.rows());
        let ls: Vec<(f64, f64, f64, f64)> = (0..n).map(line).collect();
        let mut out = self.clone();
        for r in 0..rows {
            for (j, &(sl, bl, su, bu)) in ls.iter().enumerate() {
                let k = r * n + j;
                out.lo[k] *= sl;
                out.hi[k] *= su;
                if r == rows - 1 {
                    out.lo[k] += bl;
                    out.hi[k] += bu;
                }
            }
        }
        out
    }

    /// Gathers elements by `map` (out index → input index, or `fill` for padding;
    /// `fill` goes to the constant row only).
    fn gathered(&self, map: &[Option<usize>], fill: f64) -> SymBounds {
        let rows = self.rows();
        let pick = |v: &[f64]| {
            (0..rows)
                .flat_map(|r| {
                    map.iter().map(move |m| match m {
                        Some(i) => v[r * self.n + i],
                        None if r == rows - 1 => fill,
                        None => 0.0,
                    })
                })
                .collect()
        };
        SymBounds {
            lo: pick(&self.lo),
            hi: pick(&self.hi),
            n: map.len(),
        }
    }
}

/// The functions of node `id` from its inputs'. `x(k)` is the concrete
/// (already intersected) interval of input k, `sym(k)` its functions;
/// `vars` counts the variables so far (fresh zonotope symbols add to it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn step<'s>(
    g: &Graph,
    id: NodeId,
    domain: Domain,
    input_box: &Interval,
    vars: &mut usize,
    sym: impl Fn(usize) -> &'s SymBounds,
    x: impl Fn(usize) -> &'s Interval,
) -> Result<SymBounds, BoundsError> {
    let node = &g.nodes[id];
    let n: usize = node.shape.iter().product();
    let entries = n.saturating_mul(*vars + 1);
    if entries > MAX_ENTRIES {
        return Err(BoundsError::TooLarge {
            node: node.name.clone(),
            entries,
        });
    }
    if let Some(s) = affine_step(g, id, *vars, &sym) {
        return Ok(s);
    }
    let m = *vars;
    let arg = |k: usize| sym(k).padded(m);
    let in_shape = |k: usize| g.nodes[node.inputs[k]].shape.as_slice();
    Ok(match &node.op {
        Op::Input if domain == Domain::Symbolic => SymBounds::identity(input_box.len()),
        Op::Input => SymBounds::box_zonotope(input_box),
        Op::Relu | Op::LeakyRelu { .. } => {
            let leak = match node.op {
                Op::LeakyRelu { alpha } => alpha as f64,
                _ => 0.0,
            };
            if !(0.0..=1.0).contains(&leak) {
                return Err(BoundsError::Unsupported {
                    method: domain_name(domain),
                    op: node.op.name(),
                    node: node.name.clone(),
                    hint: " with a negative-side slope outside [0, 1]",
                });
            }
            match domain {
                Domain::Symbolic => relu_step(sym(0), x(0), leak),
                Domain::Zonotope => relu_zonotope(&arg(0), x(0), leak, vars),
            }
        }
        op @ (Op::Sigmoid | Op::Tanh | Op::Atan) => match domain {
            Domain::Symbolic => s_shaped_step(sym(0), x(0), monotone(op)),
            Domain::Zonotope => s_shaped_zonotope(&arg(0), x(0), monotone(op), vars),
        },
        Op::MaxPool2d { window } => {
            let lines = pool::max_lines(x(0), in_shape(0), window);
            let best: Vec<Option<usize>> = lines.iter().map(|&(b, _)| Some(b)).collect();
            let out = arg(0).gathered(&best, 0.0);
            max_pool_step(out, x(0), &lines, domain, vars)
        }
        _ => {
            return Err(BoundsError::Unsupported {
                method: domain_name(domain),
                op: node.op.name(),
                node: node.name.clone(),
                hint: "; canonicalise the model first",
            })
        }
    })
}

/// The functions of an affine node (every op but the input, the activations,
/// max-pool and non-canonical binaries) from its inputs', mapped exactly as
/// the op maps values (up to f64 rounding); `None` for the other ops. `vars`
/// is the number of variables the inputs' functions may range over.
pub fn affine_step<'s>(
    g: &Graph,
    id: NodeId,
    vars: usize,
    sym: impl Fn(usize) -> &'s SymBounds,
) -> Option<SymBounds> {
    let node = &g.nodes[id];
    let n: usize = node.shape.iter().product();
    // Inputs over the same variables (constants and older branches have fewer).
    let m = vars;
    let arg = |k: usize| sym(k).padded(m);
    let in_shape = |k: usize| g.nodes[node.inputs[k]].shape.as_slice();
    Some(match &node.op {
        Op::Constant(t) => SymBounds::constant(&f64s(t)),
        Op::Linear { weight, bias } => linear_step(sym(0), weight, bias.as_ref()),
        Op::Conv2d { .. } => conv_step(sym(0), &ConvCall::of(g, id).expect("conv")),
        Op::Affine { scale, shift } => sym(0).scaled(
            |j| scale.as_ref().map_or(1.0, |t| t.data[j] as f64),
            |j| shift.as_ref().map_or(0.0, |t| t.data[j] as f64),
        ),
        Op::BatchNorm {
            gamma,
            beta,
            mean,
            var,
            epsilon,
        } => {
            let (s, t) =
                elementwise::batchnorm_affine([gamma, beta, mean, var], *epsilon, &node.shape);
            sym(0).scaled(|j| s[j], |j| t[j])
        }
        Op::Binary(kind @ (BinaryKind::Add | BinaryKind::Sub)) if in_shape(0) == in_shape(1) => {
            let (a, b) = (&arg(0), &arg(1));
            let (blo, bhi, sign) = match kind {
                BinaryKind::Add => (&b.lo, &b.hi, 1.0),
                _ => (&b.hi, &b.lo, -1.0),
            };
            SymBounds {
                lo: a.lo.iter().zip(blo).map(|(p, q)| p + sign * q).collect(),
                hi: a.hi.iter().zip(bhi).map(|(p, q)| p + sign * q).collect(),
                n,
            }
        }
        Op::AvgPool2d {
            window,
            count_include_pad,
        } => {
            let rows = sym(0).rows();
            sym(0).map(n, |v| {
                kernels::avg_pool(v, in_shape(0), window, *count_include_pad, rows)
            })
        }
        Op::Reshape => sym(0).clone(),
        Op::Transpose { perm } => {
            let map: Vec<Option<usize>> = shape::transpose_map(in_shape(0), perm)
                .into_iter()
                .map(Some)
                .collect();
            sym(0).gathered(&map, 0.0)
        }
        Op::Pad { pads, value } => sym(0).gathered(
            &shape::pad_map(in_shape(0), &node.shape, pads),
            *value as f64,
        ),
        Op::Concat { axis } => {
            let shapes: Vec<&[usize]> = (0..node.inputs.len()).map(in_shape).collect();
            let map = shape::concat_map(&shapes, *axis);
            let parts: Vec<SymBounds> = (0..node.inputs.len()).map(arg).collect();
            let pick = |f: fn(&SymBounds) -> &Vec<f64>| {
                (0..=m)
                    .flat_map(|r| map.iter().map(move |&(k, i)| (r, k, i)))
                    .map(|(r, k, i)| f(&parts[k])[r * parts[k].n + i])
                    .collect()
            };
            SymBounds {
                lo: pick(|s| &s.lo),
                hi: pick(|s| &s.hi),
                n,
            }
        }
        _ => return None,
    })
}

/// The analyser's own rounding in forming node `id`'s functions, as a
/// per-element radius: the op's float32 error model applied to the
/// functions' magnitudes (float32's γ exceeds f64's, so this over-covers).
pub(crate) fn rounding_radius(g: &Graph, id: NodeId, mag: impl Fn(usize) -> Interval) -> Vec<f64> {
    let node = &g.nodes[id];
    match &node.op {
        Op::Linear { weight, bias } => linear::error_radius(weight, bias.as_ref(), &mag(0)),
        Op::Conv2d { .. } => conv::error_radius(&ConvCall::of(g, id).expect("conv"), &mag(0)),
        Op::Affine { scale, shift } => {
            elementwise::affine_error_radius(&mag(0), scale.as_ref(), shift.as_ref())
        }
        Op::BatchNorm {
            gamma,
            beta,
            mean,
            var,
            epsilon,
        } => elementwise::batchnorm_error_radius(
            &mag(0),
            [gamma, beta, mean, var],
            *epsilon,
            &node.shape,
        ),
        Op::Binary(_) => elementwise::sum_error_radius(&mag(0), &mag(1)),
        Op::AvgPool2d {
            window,
            count_include_pad,
        } => pool::avg_error_radius(
            &mag(0),
            &g.nodes[node.inputs[0]].shape,
            window,
            *count_include_pad,
        ),
        // A slope and an intercept per element: two roundings of the magnitude.
        Op::Relu | Op::LeakyRelu { .. } | Op::Sigmoid | Op::Tanh | Op::Atan => {
            mag(0).hi.iter().map(|m| affine_error(2.0 * m, 2)).collect()
        }
        _ => Vec::new(),
    }
}

/// The box the variables of functions with `rows` rows range over: the
/// input region's box, or [−1, 1] per zonotope symbol.
pub(crate) fn variable_box(domain: Domain, region: &Region, rows: usize) -> Interval {
    match domain {
        Domain::Symbolic => region.bbox.clone(),
        Domain::Zonotope => Interval {
            lo: vec![-1.0; rows - 1],
            hi: vec![1.0; rows - 1],
        },
    }
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.data.iter().map(|&v| v as f64).collect()
}

/// `L' = W⁺L + W⁻U + b`, `U' = W⁺U + W⁻L + b` on the last axis.
fn linear_step(x: &SymBounds, w: &Tensor, b: Option<&Tensor>) -> SymBounds {
    let (out, inp) = (w.shape[0], w.shape[1]);
    let rows = x.lo.len() / inp;
    let pos: Vec<f64> = w.data.iter().map(|&v| (v as f64).max(0.0)).collect();
    let neg: Vec<f64> = w.data.iter().map(|&v| (v as f64).min(0.0)).collect();
    // y[rows, out] += a[rows, inp] · Wᵀ (W is [out, inp] row-major).
    let apply = |y: &mut Vec<f64>, a: &[f64], wt: &[f64]| {
        crate::ops::dgemm(rows, inp, out, a, inp, 1, wt, 1, inp, y, out)
    };
    let mut lo = vec![0.0; rows * out];
    let mut hi = vec![0.0; rows * out];
    apply(&mut lo, &x.lo, &pos);
    apply(&mut lo, &x.hi, &neg);
    apply(&mut hi, &x.hi, &pos);
    apply(&mut hi, &x.lo, &neg);
    let n = x.n / inp * out;
    let mut y = SymBounds { lo, hi, n };
    if let Some(b) = b {
        let c = (y.rows() - 1) * n;
        for j in 0..n {
            y.lo[c + j] += b.data[j % out] as f64;
            y.hi[c + j] += b.data[j % out] as f64;
        }
    }
    y
}

/// Convolution as im2col + GEMM over all d + 1 rows at once, per group,
/// with W split by sign as in `linear_step`.
fn conv_step(x: &SymBounds, c: &ConvCall) -> SymBounds {
    let (oc, oh, ow) = c.out_chw;
    let (p, rows, in_len) = (oh * ow, x.rows(), x.n);
    let [_, icg, kh, kw] = c.weight.shape[..] else {
        unreachable!("conv weight is 4-D")
    };
    let (k, ocg, out_n) = (icg * kh * kw, oc / c.groups, oc * p);
    let mut lo = vec![0.0; rows * out_n];
    let mut hi = vec![0.0; rows * out_n];
    for g in 0..c.groups {
        let taps = conv::tap_table(c, g);
        let w = &c.weight.data[g * ocg * k..][..ocg * k];
        let pos: Vec<f64> = w.iter().map(|&v| (v as f64).max(0.0)).collect();
        let neg: Vec<f64> = w.iter().map(|&v| (v as f64).min(0.0)).collect();
        // Rows in chunks bounding the im2col buffers to 2²² values.
        let chunk = ((1usize << 22) / (k * p).max(1)).max(1);
        for r0 in (0..rows).step_by(chunk) {
            let nr = chunk.min(rows - r0);
            // cols[k, nr·p] of each function, then [ocg, k] · cols.
            let cols = |v: &[f64]| {
                let mut m = vec![0.0; k * nr * p];
                for t in 0..k {
                    for r in 0..nr {
                        for q in 0..p {
                            let i = taps.index[t * p + q];
                            if i != usize::MAX {
                                m[(t * nr + r) * p + q] = v[(r0 + r) * in_len + i];
                            }
                        }
                    }
                }
                m
            };
            let (cl, ch) = (cols(&x.lo), cols(&x.hi));
            let mut yl = vec![0.0; ocg * nr * p];
            let mut yh = vec![0.0; ocg * nr * p];
            let mm = |y: &mut Vec<f64>, wm: &[f64], m: &[f64]| {
                crate::ops::dgemm(ocg, k, nr * p, wm, k, 1, m, nr * p, 1, y, nr * p)
            };
            mm(&mut yl, &pos, &cl);
            mm(&mut yl, &neg, &ch);
            mm(&mut yh, &pos, &ch);
            mm(&mut yh, &neg, &cl);
            for o in 0..ocg {
                for r in 0..nr {
                    let dst = (r0 + r) * out_n + (g * ocg + o) * p;
                    let src = (o * nr + r) * p;
                    lo[dst..dst + p].copy_from_slice(&yl[src..src + p]);
                    hi[dst..dst + p].copy_from_slice(&yh[src..src + p]);
                }
            }
        }
    }
    if let Some(b) = c.bias {
        let start = (rows - 1) * out_n;
        for j in 0..out_n {
            lo[start + j] += b.data[j / p] as f64;
            hi[start + j] += b.data[j / p] as f64;
        }
    }
    SymBounds { lo, hi, n: out_n }
}

/// Neurify's relaxation of (leaky) ReLU with concrete input bounds [l, u]:
/// leaky(z) = a·z + (1 − a)·relu(z), and λ·L ≤ relu(z) ≤ λ·(U − l).
fn relu_step(x: &SymBounds, b: &Interval, leak: f64) -> SymBounds {
    x.lines(|j| {
        let (l, u) = (b.lo[j], b.hi[j]);
        if l >= 0.0 {
            (1.0, 0.0, 1.0, 0.0)
        } else if u <= 0.0 {
            (leak, 0.0, leak, 0.0)
        } else {
            let lambda = u / (u - l);
            let s = leak + (1.0 - leak) * lambda;
            (s, 0.0, s, -(1.0 - leak) * lambda * l)
        }
    })
}

/// DeepZ's ReLU: for unstable z ∈ [l, u], relu(z) ∈ [λz, λz + 2μ], written
/// `λz + μ + μ·ε_new`; leaky(z) = a·z + (1 − a)·relu(z).
fn relu_zonotope(x: &SymBounds, b: &Interval, leak: f64, vars: &mut usize) -> SymBounds {
    let params: Vec<(f64, f64, f64)> = (0..x.n)
        .map(|j| {
            let (l, u) = (b.lo[j], b.hi[j]);
            if l >= 0.0 {
                (1.0, 0.0, 0.0)
            } else if u <= 0.0 {
                (leak, 0.0, 0.0)
            } else {
                let lambda = u / (u - l);
                let mu = -(1.0 - leak) * 0.5 * lambda * l;
                (leak + (1.0 - leak) * lambda, mu, mu)
            }
        })
        .collect();
    with_fresh_symbols(x, &params, vars)
}

/// DeepZ's S-shaped rule: λ = min(f′(l), f′(u)) makes f(z) − λz increasing
/// on [l, u] (f′ is unimodal), so f(z) = λz + μ₁ + μ₂·ε_new.
fn s_shaped_zonotope(x: &SymBounds, b: &Interval, f: Monotone, vars: &mut usize) -> SymBounds {
    let params: Vec<(f64, f64, f64)> = (0..x.n)
        .map(|j| {
            let (l, u) = (b.lo[j], b.hi[j]);
            let lambda = f.derivative(l).min(f.derivative(u)).max(0.0);
            let (gl, gu) = (f.eval(l) - lambda * l, f.eval(u) - lambda * u);
            // Margin for libm and the f64 arithmetic here.
            let m = 1e-12 * (1.0 + gl.abs() + gu.abs());
            (lambda, 0.5 * (gl + gu), 0.5 * (gu - gl) + m)
        })
        .collect();
    with_fresh_symbols(x, &params, vars)
}

/// Per element `s·z + c + μ·ε_new` from `(s, c, μ)`, s ≥ 0; a fresh symbol
/// for every element with μ > 0.
fn with_fresh_symbols(x: &SymBounds, params: &[(f64, f64, f64)], vars: &mut usize) -> SymBounds {
    let scaled = x.lines(|j| (params[j].0, params[j].1, params[j].0, params[j].1));
    let fresh: Vec<(usize, f64)> = params
        .iter()
        .enumerate()
        .filter(|(_, p)| p.2 > 0.0)
        .map(|(j, p)| (j, p.2))
        .collect();
    let out = scaled.with_fresh(*vars, &fresh);
    *vars += fresh.len();
    out
}

/// Max pooling after gathering each window's best input: exact where that
/// input dominates; elsewhere the upper function becomes the constant top
/// (symbolic) or the output becomes `[l_best, top]` as a fresh symbol (zonotope).
fn max_pool_step(
    mut out: SymBounds,
    x: &Interval,
    lines: &[(usize, Option<f64>)],
    domain: Domain,
    vars: &mut usize,
) -> SymBounds {
    let (n, rows) = (out.n, out.rows());
    let mut fresh = Vec::new();
    for (o, &(best, top)) in lines.iter().enumerate() {
        let Some(top) = top else { continue };
        (0..rows - 1).for_each(|r| out.hi[r * n + o] = 0.0);
        out.hi[(rows - 1) * n + o] = top;
        if domain == Domain::Zonotope {
            let mid = 0.5 * (x.lo[best] + top);
            (0..rows - 1).for_each(|r| out.lo[r * n + o] = 0.0);
            out.lo[(rows - 1) * n + o] = mid;
            out.hi[(rows - 1) * n + o] = mid;
            fresh.push((o, up(up(top - mid).max(up(mid - x.lo[best])))));
        }
    }
    if fresh.is_empty() {
        return out;
    }
    let out = out.with_fresh(*vars, &fresh);
    *vars += fresh.len();
    out
}

fn domain_name(d: Domain) -> &'static str {
    match d {
        Domain::Symbolic => "symbolic",
        Domain::Zonotope => "deepz",
    }
}

/// CNN-Cert-Ada's lines for S-shaped functions (non-negative slopes).
fn s_shaped_step(x: &SymBounds, b: &Interval, f: Monotone) -> SymBounds {
    let lines = activation::s_shaped_lines(b, f);
    x.lines(|j| lines[j])
}

/// Lower bounds of `spec · y` (`s` rows) from the output's functions:
/// `Σ_j spec⁺_j L_j + spec⁻_j U_j` minimised over the box.
pub(crate) fn spec_lower(
    y: &SymBounds,
    spec: &[f64],
    s: usize,
    b: &Interval,
    sound: bool,
) -> Vec<f64> {
    let (n, rows) = (y.n, y.rows());
    let mut lo = vec![0.0; rows * s];
    for r in 0..rows {
        for si in 0..s {
            let c = &spec[si * n..][..n];
            lo[r * s + si] = (0..n)
                .map(|j| {
                    if c[j] >= 0.0 {
                        c[j] * y.lo[r * n + j]
                    } else {
                        c[j] * y.hi[r * n + j]
                    }
                })
                .sum();
        }
    }
    let f = SymBounds {
        hi: lo.clone(),
        lo,
        n: s,
    };
    let (iv, fmag) = f.concretize(b, sound);
    if !sound {
        return iv.lo;
    }
    // The combination's own rounding: γ_{n+1} of Σ|c|·(magnitude of the functions).
    let (_, ymag) = y.concretize(b, false);
    (0..s)
        .map(|si| {
            let m: f64 = spec[si * n..][..n]
                .iter()
                .zip(&ymag)
                .map(|(c, v)| c.abs() * v)
                .sum();
            down(iv.lo[si] - gamma(n + 1, U64) * (m + fmag[si]))
        })
        .collect()
}
