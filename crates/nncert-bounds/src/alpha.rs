//! α-CROWN (Xu et al. 2021): the lower slope of every unstable ReLU becomes a
//! variable per (spec row, neuron) in [leak, 1], optimised by projected Adam
//! on the output bound. Intermediate bounds stay CROWN's. Any slope in that
//! range gives a valid relaxation, so every iterate's bound is sound (it is
//! computed by the same back-substitution, float32 charges included) and
//! the best per row is kept: α-CROWN is never looser than CROWN, its start.
//!
//! β-CROWN (Wang et al. 2021) adds, on a branch-and-bound subdomain, one
//! multiplier β ≥ 0 per split constraint `g(z) ≤ 0`, optimised jointly with
//! the slopes: `min f ≥ min (f + β·g)` over any superset of the subdomain,
//! so every iterate stays sound too.

use crate::interval::Region;
use crate::ops::activation::{self, Slopes};
use crate::ops::pool;
use crate::ops::Gemm64;
use crate::propagate::{backsubstitute, monotone, NetworkBounds, ReluSplit, SubdomainRow, Trace};
use crate::{BoundConfig, BoundsError, Method};
use nncert_model::forward::run_with;
use nncert_model::{Graph, NodeId, Op};
use nncert_spec::Norm;
use std::collections::HashMap;

const LEARNING_RATE: f64 = 0.1;
/// β-CROWN's step for the split multipliers (its default lr_beta).
const BETA_LEARNING_RATE: f64 = 0.05;
const BETAS: (f64, f64) = (0.9, 0.999);

/// Lower bounds of `spec · y` (`s` rows) with optimised ReLU slopes.
pub(crate) fn optimise(
    g: &Graph,
    nb: &NetworkBounds,
    region: &Region,
    cfg: &BoundConfig,
    spec: &[f64],
    s: usize,
) -> Result<Vec<f64>, BoundsError> {
    let start = Trace {
        alphas: initial_slopes(g, nb, s),
        ..Trace::default()
    };
    let rows = SubdomainRow {
        graph: g,
        bounds: nb,
        region,
        spec,
        splits: &[],
    };
    let (best, _) = ascend(&rows, cfg, s, start, cfg.alpha_iterations)?;
    Ok(best)
}

/// α-CROWN's slopes and β-CROWN's split multipliers of one spec row: a
/// branch-and-bound subdomain hands its own to its children (warm start).
#[derive(Clone, Debug, Default)]
pub struct Multipliers {
    alphas: HashMap<NodeId, Vec<f64>>,
    betas: HashMap<NodeId, Vec<f64>>,
}

/// The bound of one spec row over a subdomain with optimised slopes and
/// split multipliers (with `Method::AlphaCrown`, `alpha_iterations` Adam
/// steps from `warm`; otherwise CROWN's), and the trace (coefficients per
/// node, slopes, multipliers) of the iterate that gave it.
pub(crate) fn optimise_row(
    row: &SubdomainRow,
    cfg: &BoundConfig,
    warm: &Multipliers,
) -> Result<(f64, Trace), BoundsError> {
    let iterations = match cfg.method {
        Method::AlphaCrown => cfg.alpha_iterations,
        _ => 0,
    };
    let start = warm.start_trace(row.graph, row.bounds, row.splits, 1);
    let (best, trace) = ascend(row, cfg, 1, start, iterations)?;
    Ok((best[0], trace))
}

impl Multipliers {
    /// The trace that starts a bound of `s` copies of this row: each row
    /// gets these slopes (CROWN's where none is given) and multipliers, and
    /// each of `splits` its constraint's sign.
    pub(crate) fn start_trace(
        &self,
        g: &Graph,
        nb: &NetworkBounds,
        splits: &[ReluSplit],
        s: usize,
    ) -> Trace {
        let mut start = Trace {
            alphas: initial_slopes(g, nb, s),
            ..Trace::default()
        };
        for (id, a) in start.alphas.iter_mut() {
            if let Some(w) = self.alphas.get(id) {
                *a = w.repeat(s);
            }
        }
        for sp in splits {
            let n = nb.nodes[sp.pre].len();
            let sign = start
                .split_signs
                .entry(sp.pre)
                .or_insert_with(|| vec![0.0; n]);
            sign[sp.index] = if sp.active { -1.0 } else { 1.0 };
            let beta = self.betas.get(&sp.pre).map(|b| b.repeat(s));
            start
                .betas
                .entry(sp.pre)
                .or_insert_with(|| beta.unwrap_or_else(|| vec![0.0; s * n]));
        }
        start
    }

    /// No slopes, and `betas[k]` as the multiplier of `splits[k]` (an exact
    /// leaf's LP dual, which has no unstable neuron to give a slope).
    pub fn of_splits(nb: &NetworkBounds, splits: &[ReluSplit], betas: &[f64]) -> Multipliers {
        let mut m = Multipliers::default();
        for (sp, &b) in splits.iter().zip(betas) {
            let n = nb.nodes[sp.pre].len();
            m.betas.entry(sp.pre).or_insert_with(|| vec![0.0; n])[sp.index] = b;
        }
        m
    }
}

impl From<Trace> for Multipliers {
    fn from(trace: Trace) -> Self {
        Multipliers {
            alphas: trace.alphas,
            betas: trace.betas,
        }
    }
}

/// Projected Adam ascent on the slopes and split multipliers of `start`
/// for the `s` rows of `rows.spec`; the best bound per row, and the trace
/// of the last iterate that raised one.
fn ascend(
    rows: &SubdomainRow,
    cfg: &BoundConfig,
    s: usize,
    mut trace: Trace,
    iterations: usize,
) -> Result<(Vec<f64>, Trace), BoundsError> {
    let SubdomainRow {
        graph: g,
        bounds: nb,
        region,
        spec,
        ..
    } = *rows;
    let mut best = vec![f64::NEG_INFINITY; s];
    let mut best_trace = None;
    let (mut adam_alpha, mut adam_beta) = (Adam::new(LEARNING_RATE), Adam::new(BETA_LEARNING_RATE));
    let free = !(trace.alphas.is_empty() && trace.betas.is_empty());
    for step in 0..=iterations {
        trace.coeffs = Some(vec![None; g.output + 1]);
        let lb = match backsubstitute(g, g.output, nb, region, cfg, spec, s, &mut trace) {
            Err(BoundsError::Timeout) if best[0].is_finite() => break,
            r => r?,
        };
        if best_trace.is_none() || lb.iter().zip(&best).any(|(v, b)| v > b) {
            best_trace = Some(trace.clone());
        }
        best.iter_mut().zip(&lb).for_each(|(b, &v)| *b = b.max(v));
        let reached = cfg
            .alpha_stop_above
            .is_some_and(|t| best.iter().all(|&b| b > t));
        if step == iterations || !free || reached {
            break;
        }
        let (ga, gb) = gradient(g, nb, region, &trace, s);
        adam_alpha.ascend(&mut trace.alphas, &ga, |id| leak_range(&g.nodes[id].op));
        adam_beta.ascend(&mut trace.betas, &gb, |_| Some((0.0, f64::INFINITY)));
    }
    Ok((
        best,
        best_trace.expect("the first step either bounds or fails"),
    ))
}

/// CROWN's adaptive slopes, per row, for every ReLU node with unstable neurons.
fn initial_slopes(g: &Graph, nb: &NetworkBounds, s: usize) -> HashMap<NodeId, Vec<f64>> {
    let mut alphas = HashMap::new();
    for (id, node) in g.nodes.iter().enumerate() {
        let Some((lo, _)) = leak_range(&node.op) else {
            continue;
        };
        let x = &nb.nodes[node.inputs[0]];
        if !(0..x.len()).any(|j| activation::is_unstable(x.lo[j], x.hi[j])) {
            continue;
        }
        let line = activation::row_lines(x, lo, Slopes::Adaptive, None);
        let row: Vec<f64> = (0..x.len()).map(|j| line(0, j).0).collect();
        alphas.insert(id, row.repeat(s));
    }
    alphas
}

/// The range of valid lower slopes of a (leaky) ReLU: [leak, 1].
fn leak_range(op: &Op) -> Option<(f64, f64)> {
    match op {
        Op::Relu => Some((0.0, 1.0)),
        Op::LeakyRelu { alpha } => {
            let a = *alpha as f64;
            Some((a.min(1.0), a.max(1.0)))
        }
        _ => None,
    }
}

/// Per node, the gradient of the bound in that node's parameters.
type Gradients = HashMap<NodeId, Vec<f64>>;

/// ∂ bound / ∂ α: for row si and unstable neuron j of ReLU node k taking its
/// lower line, the coefficient reaching k times the value of k's input in
/// the relaxed network evaluated at the minimising input (the adjoint of
/// the back-substitution is that forward evaluation). ∂ bound / ∂ β: the
/// constraint's sign times the split neuron's value there.
fn gradient(
    g: &Graph,
    nb: &NetworkBounds,
    region: &Region,
    trace: &Trace,
    s: usize,
) -> (Gradients, Gradients) {
    let coeffs = trace.coeffs.as_ref().expect("traced back-substitution");
    let values = relaxed_forward(g, nb, region, trace, s);
    let mut alpha_grads = HashMap::new();
    for (&id, alphas) in &trace.alphas {
        let x = &nb.nodes[g.nodes[id].inputs[0]];
        let n = x.len();
        let mut grad = vec![0.0; alphas.len()];
        if let (Some(a), Some(v)) = (&coeffs[id], &values) {
            let input = &v[g.nodes[id].inputs[0]];
            for (k, gk) in grad.iter_mut().enumerate() {
                let j = k % n;
                if a[k] >= 0.0 && activation::is_unstable(x.lo[j], x.hi[j]) {
                    *gk = a[k] * input[k];
                }
            }
        }
        alpha_grads.insert(id, grad);
    }
    let mut beta_grads = HashMap::new();
    for (&pre, betas) in &trace.betas {
        let sign = &trace.split_signs[&pre];
        let n = sign.len();
        let grad = match &values {
            Some(v) => (0..betas.len()).map(|k| sign[k % n] * v[pre][k]).collect(),
            None => vec![0.0; betas.len()],
        };
        beta_grads.insert(pre, grad);
    }
    (alpha_grads, beta_grads)
}

/// Every node's value (batch of `s`, one per spec row) when the network's
/// relaxed ops are replaced by the lines back-substitution chose for that
/// row, evaluated at the input point where the row's bound is attained.
fn relaxed_forward(
    g: &Graph,
    nb: &NetworkBounds,
    region: &Region,
    trace: &Trace,
    s: usize,
) -> Option<Vec<Vec<f64>>> {
    let coeffs = trace.coeffs.as_ref()?;
    let x_star = minimisers(coeffs[g.input].as_ref()?, s, region);
    run_with(g, &Gemm64, &x_star, |id, values| {
        let node = &g.nodes[id];
        let a = coeffs.get(id)?.as_ref()?;
        let x = &nb.nodes.get(*node.inputs.first()?)?;
        let v = &values[node.inputs[0]];
        let n = x.len();
        let pick = |k: usize, lower: (f64, f64), upper: (f64, f64)| {
            let (slope, icpt) = if a[k] >= 0.0 { lower } else { upper };
            slope * v[k] + icpt
        };
        match &node.op {
            Op::Relu | Op::LeakyRelu { .. } => {
                let (leak, _) = leak_range(&node.op)?;
                let line = activation::row_lines(
                    x,
                    leak,
                    Slopes::Adaptive,
                    trace.alphas.get(&id).map(Vec::as_slice),
                );
                Some(
                    (0..s * n)
                        .map(|k| {
                            let (sl, su, bu) = line(k / n, k % n);
                            pick(k, (sl, 0.0), (su, bu))
                        })
                        .collect(),
                )
            }
            Op::Sigmoid | Op::Tanh | Op::Atan => {
                let lines = activation::s_shaped_lines(x, monotone(&node.op));
                Some(
                    (0..s * n)
                        .map(|k| {
                            let (sl, bl, su, bu) = lines[k % n];
                            pick(k, (sl, bl), (su, bu))
                        })
                        .collect(),
                )
            }
            Op::MaxPool2d { window } => {
                let in_shape = &g.nodes[node.inputs[0]].shape;
                let lines = pool::max_lines(x, in_shape, window);
                let m = lines.len();
                Some(
                    (0..s * m)
                        .map(|k| match lines[k % m] {
                            (_, Some(top)) if a[k] < 0.0 => top,
                            (best, _) => v[(k / m) * n + best],
                        })
                        .collect(),
                )
            }
            _ => None,
        }
    })
    .ok()
}

/// Per row, the input point minimising `a·x` over the region: over the box,
/// or over the norm ball when that gives the larger minimum (as `concretize`).
pub(crate) fn minimisers(a: &[f64], s: usize, region: &Region) -> Vec<f64> {
    let b = &region.bbox;
    let n = b.len();
    let mut out = Vec::with_capacity(s * n);
    for row in a.chunks(n).take(s) {
        let corner: Vec<f64> = (0..n)
            .map(|j| if row[j] >= 0.0 { b.lo[j] } else { b.hi[j] })
            .collect();
        let value = |x: &[f64]| row.iter().zip(x).map(|(c, v)| c * v).sum::<f64>();
        let best = match &region.ball {
            Some((center, eps, norm)) => {
                let p = ball_minimiser(row, center, *eps, *norm);
                if value(&p) > value(&corner) {
                    p
                } else {
                    corner
                }
            }
            None => corner,
        };
        out.extend(best);
    }
    out
}

/// argmin of `row · x` over ‖x − center‖ ≤ eps: the steepest-descent step
/// of length eps from `center` in that norm (PGD's step too).
pub fn ball_minimiser(row: &[f64], center: &[f64], eps: f64, norm: Norm) -> Vec<f64> {
    let mut p = center.to_vec();
    match norm {
        Norm::Linf => p
            .iter_mut()
            .zip(row)
            .for_each(|(x, &c)| *x -= eps * c.signum()),
        Norm::L2 => {
            let len = row.iter().map(|c| c * c).sum::<f64>().sqrt();
            if len > 0.0 {
                p.iter_mut()
                    .zip(row)
                    .for_each(|(x, &c)| *x -= eps * c / len);
            }
        }
        Norm::L1 => {
            if let Some(k) = (0..row.len()).max_by(|&i, &j| row[i].abs().total_cmp(&row[j].abs())) {
                p[k] -= eps * row[k].signum();
            }
        }
    }
    p
}

/// Adam ascent (Kingma and Ba), projected onto each node's range.
struct Adam {
    learning_rate: f64,
    step: i32,
    moments: HashMap<NodeId, (Vec<f64>, Vec<f64>)>,
}

impl Adam {
    fn new(learning_rate: f64) -> Self {
        Adam {
            learning_rate,
            step: 0,
            moments: HashMap::new(),
        }
    }

    fn ascend(
        &mut self,
        params: &mut HashMap<NodeId, Vec<f64>>,
        grads: &Gradients,
        range: impl Fn(NodeId) -> Option<(f64, f64)>,
    ) {
        self.step += 1;
        let (b1, b2) = BETAS;
        let (c1, c2) = (1.0 - b1.powi(self.step), 1.0 - b2.powi(self.step));
        for (&id, p) in params.iter_mut() {
            let (lo, hi) = range(id).expect("every parameter has a range");
            let gr = &grads[&id];
            let (m, v) = self
                .moments
                .entry(id)
                .or_insert_with(|| (vec![0.0; p.len()], vec![0.0; p.len()]));
            for k in 0..p.len() {
                m[k] = b1 * m[k] + (1.0 - b1) * gr[k];
                v[k] = b2 * v[k] + (1.0 - b2) * gr[k] * gr[k];
                let step = self.learning_rate * (m[k] / c1) / ((v[k] / c2).sqrt() + 1e-8);
                p[k] = (p[k] + step).clamp(lo, hi);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{propagate_split, Method, Soundness};
    use nncert_model::testing::random_relu_mlp;
    use nncert_spec::{InputSet, NormBall};

    /// The first `k` unstable neurons of the first ReLU, split alternately.
    fn first_splits(g: &Graph, nb: &NetworkBounds, k: usize) -> Vec<ReluSplit> {
        let Some(relu) = g.nodes.iter().find(|n| n.op == Op::Relu) else {
            return Vec::new();
        };
        let pre = relu.inputs[0];
        let x = &nb.nodes[pre];
        (0..x.len())
            .filter(|&j| activation::is_unstable(x.lo[j], x.hi[j]))
            .take(k)
            .enumerate()
            .map(|(i, index)| ReluSplit {
                pre,
                index,
                active: i % 2 == 0,
            })
            .collect()
    }

    /// CROWN's trace (no optimisation) of one row over a subdomain.
    fn crown_trace(row: &SubdomainRow, cfg: &BoundConfig) -> Trace {
        let crown = BoundConfig {
            method: Method::Crown,
            ..*cfg
        };
        optimise_row(row, &crown, &Multipliers::default())
            .unwrap()
            .1
    }

    /// Replaces every slope α by `f(false, α)` and every multiplier β by `f(true, β)`.
    fn set_parameters(trace: &mut Trace, mut f: impl FnMut(bool, f64) -> f64) {
        trace
            .alphas
            .values_mut()
            .flatten()
            .for_each(|a| *a = f(false, *a));
        trace
            .betas
            .values_mut()
            .flatten()
            .for_each(|b| *b = f(true, *b));
    }

    fn param(t: &mut Trace, beta: bool, id: NodeId, k: usize) -> &mut f64 {
        let p = if beta { &mut t.betas } else { &mut t.alphas };
        &mut p.get_mut(&id).expect("a parameter")[k]
    }

    /// The adjoint (relaxed forward) gradients in the slopes and in the split
    /// multipliers equal finite differences of the bound.
    #[test]
    fn gradient_matches_finite_differences() {
        let (mut alphas_checked, mut betas_checked) = (0, 0);
        for seed in 0..8 {
            let g = random_relu_mlp(&[3, 10, 10, 2], seed);
            let set = InputSet::Ball(NormBall {
                center: vec![0.5; 3],
                eps: 0.4,
                norm: Norm::Linf,
                domain: (0.0, 1.0),
            });
            let cfg = BoundConfig::new(Method::Crown, Soundness::Real);
            let region = Region::of(&set, cfg.soundness);
            let root = propagate_split(&g, &region, &cfg, &[], None)
                .unwrap()
                .unwrap();
            let splits = first_splits(&g, &root, 2);
            let Some(nb) = propagate_split(&g, &region, &cfg, &splits, None).unwrap() else {
                continue;
            };
            let spec = [1.0, -0.5];
            // The gradient is of the bound concretised at the input (no early
            // concretisation over intermediate intervals, which needs the IBP flag).
            let at_input = BoundConfig {
                intersect_ibp: false,
                ..cfg
            };
            let bound = |trace: &mut Trace| {
                backsubstitute(&g, g.output, &nb, &region, &at_input, &spec, 1, trace).unwrap()[0]
            };
            let row = SubdomainRow {
                graph: &g,
                bounds: &nb,
                region: &region,
                spec: &spec,
                splits: &splits,
            };
            let mut trace = crown_trace(&row, &cfg);
            // Move away from CROWN's 0/1 slopes, into the interior; β > 0.
            set_parameters(
                &mut trace,
                |is_beta, v| if is_beta { 0.2 } else { 0.3 + 0.4 * v },
            );
            let base = bound(&mut trace);
            let (grads_alpha, grads_beta) = gradient(&g, &nb, &region, &trace, 1);
            let mut check = |beta: bool, grads: &Gradients, checked: &mut usize| {
                for (&id, grad) in grads {
                    for (k, &an) in grad.iter().enumerate() {
                        let h = 1e-6;
                        *param(&mut trace, beta, id, k) += h;
                        let fd = (bound(&mut trace) - base) / h;
                        *param(&mut trace, beta, id, k) -= h;
                        assert!(
                            (fd - an).abs() <= 1e-4 * (1.0 + an.abs()),
                            "seed {seed} node {id}[{k}] (beta {beta}): adjoint {an}, finite difference {fd}"
                        );
                        *checked += (an != 0.0) as usize;
                    }
                }
            };
            check(false, &grads_alpha, &mut alphas_checked);
            check(true, &grads_beta, &mut betas_checked);
        }
        assert!(
            alphas_checked > 10,
            "only {alphas_checked} nonzero α gradients checked"
        );
        assert!(
            betas_checked > 4,
            "only {betas_checked} nonzero β gradients checked"
        );
    }

    /// With arbitrary slopes in [0, 1] and arbitrary multipliers β ≥ 0, and
    /// with optimised ones (which push the bound up to the subdomain's
    /// minimum, where a wrong sign would show), the sound-mode bound holds for
    /// every sampled input inside the subdomain, on the f64 reference and
    /// every float32 engine.
    #[test]
    fn any_slopes_and_multipliers_give_sound_bounds() {
        use nncert_exec::all_engines;
        use nncert_model::forward::{run_all, Reference};
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut checked = 0;
        for seed in 0..10 {
            let g = random_relu_mlp(&[2, 8, 8, 2], 100 + seed);
            let engines = all_engines(&g).unwrap();
            let set = InputSet::Box(nncert_spec::InputBox {
                lo: vec![-0.5; 2],
                hi: vec![0.5; 2],
            });
            let cfg = BoundConfig {
                intersect_ibp: false,
                ..BoundConfig::new(Method::Crown, Soundness::Float32)
            };
            let region = Region::of(&set, cfg.soundness);
            let root = propagate_split(&g, &region, &cfg, &[], None)
                .unwrap()
                .unwrap();
            // Every unstable neuron of the first ReLU, split the way it is at a
            // random point: the subdomain holds that point.
            let p: Vec<f64> = (0..2).map(|_| rng.gen_range(-0.5..0.5)).collect();
            let at_p = run_all(&g, &Reference, &p).unwrap();
            let splits: Vec<ReluSplit> = first_splits(&g, &root, usize::MAX)
                .into_iter()
                .map(|sp| ReluSplit {
                    active: at_p[sp.pre][sp.index] > 0.0,
                    ..sp
                })
                .collect();
            let Some(nb) = propagate_split(&g, &region, &cfg, &splits, None).unwrap() else {
                continue;
            };
            let spec = [1.0, -0.5];
            let row = SubdomainRow {
                graph: &g,
                bounds: &nb,
                region: &region,
                spec: &spec,
                splits: &splits,
            };
            let mut trace = crown_trace(&row, &cfg);
            set_parameters(&mut trace, |is_beta, _| match is_beta {
                false => rng.gen_range(0.0..=1.0),
                true => rng.gen_range(0.0..3.0),
            });
            let random =
                backsubstitute(&g, g.output, &nb, &region, &cfg, &spec, 1, &mut trace).unwrap()[0];
            let optimising = BoundConfig {
                method: Method::AlphaCrown,
                alpha_iterations: 100,
                ..cfg
            };
            let warm = Multipliers::default();
            let optimised = optimise_row(&row, &optimising, &warm).unwrap().0;
            let bound = random.max(optimised);
            for _ in 0..3000 {
                let x: Vec<f32> = (0..2).map(|_| rng.gen_range(-0.5f32..=0.5)).collect();
                let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                let values = run_all(&g, &Reference, &x64).unwrap();
                let inside = splits.iter().all(|sp| {
                    let z = values[sp.pre][sp.index];
                    if sp.active {
                        z > 1e-6
                    } else {
                        z < -1e-6
                    }
                });
                if !inside {
                    continue;
                }
                let mut ys = vec![values[g.output].clone()];
                for e in &engines {
                    ys.push(e.run(&g, &x).unwrap().iter().map(|&v| v as f64).collect());
                }
                for y in ys {
                    let v: f64 = spec.iter().zip(&y).map(|(c, v)| c * v).sum();
                    assert!(v >= bound, "seed {seed}: {v} < bound {bound}");
                }
                checked += 1;
            }
        }
        assert!(
            checked > 1000,
            "only {checked} points inside the subdomains"
        );
    }
}
