//! What ReLU branch and bound needs from one spec row's bound: the lower
//! bound (CROWN, or α,β-CROWN with optimised slopes and split multipliers),
//! a score per unstable ReLU neuron saying how much the bound would gain
//! from splitting it, and the input point where the bound is attained.

use crate::alpha::{minimisers, optimise_row, Multipliers};
use crate::fp::Soundness;
use crate::interval::Region;
use crate::ops::activation::{self, Slopes};
use crate::propagate::{
    backsubstitute, box_min_of, interval_lower, ReluSplit, SubdomainRow, Trace,
};
use crate::{BoundConfig, BoundsError, Method};
use nncert_model::{NodeId, Op};

pub struct RowBound {
    /// Lower bound of `spec · y` over the subdomain.
    pub lower: f64,
    /// Unstable ReLU neurons (as their active split) with their scores, best first.
    pub candidates: Vec<(ReluSplit, f64)>,
    /// A minimiser of the bound's linear function over the region.
    pub minimiser: Vec<f64>,
    /// The optimised slopes and multipliers, for the children's warm start.
    pub multipliers: Multipliers,
}

/// The bound of one spec row over a subdomain (`nb` bounded with `splits`
/// clamped), with the branching scores of BaBSR's intercept heuristic
/// (Bunel et al. 2020): |a_j|·(−l_j·u_j)/(u_j − l_j), the coefficient
/// reaching neuron j times its upper line's intercept, the slack that
/// splitting j removes from the bound. With `Method::AlphaCrown` the slopes
/// and the splits' β multipliers are optimised from `warm` (β-CROWN,
/// `alpha_iterations` steps, stopping above `alpha_stop_above`); otherwise
/// the bound is CROWN's.
pub fn bound_for_branching(
    row: &SubdomainRow,
    cfg: &BoundConfig,
    warm: &Multipliers,
) -> Result<RowBound, BoundsError> {
    let (g, nb, spec) = (row.graph, row.bounds, row.spec);
    let (crown, mut trace) = optimise_row(row, cfg, warm)?;
    let ibp = interval_lower(&nb.nodes[g.output], spec, 1, cfg.soundness)[0];
    let coeffs = trace.coeffs.take().expect("traced");
    let mut candidates = Vec::new();
    for (id, node) in g.nodes.iter().enumerate() {
        let leak = match node.op {
            Op::Relu => 0.0,
            Op::LeakyRelu { alpha } => alpha as f64,
            _ => continue,
        };
        let pre = node.inputs[0];
        let x = &nb.nodes[pre];
        let a = coeffs[id].as_deref();
        for j in (0..x.len()).filter(|&j| activation::is_unstable(x.lo[j], x.hi[j])) {
            let (_, _, intercept) =
                activation::relaxation(x.lo[j], x.hi[j], leak, Slopes::Adaptive);
            let weight = a.map_or(0.0, |a| a[j].abs());
            let split = ReluSplit {
                pre,
                index: j,
                active: true,
            };
            // A tiny tie-break keeps neurons the output does not see splittable.
            candidates.push((split, weight * intercept + 1e-12 * intercept));
        }
    }
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
    let minimiser = match &coeffs[g.input] {
        Some(a) => minimisers(a, 1, row.region),
        None => row.region.bbox.lo.clone(),
    };
    Ok(RowBound {
        lower: if cfg.intersect_ibp {
            crown.max(ibp)
        } else {
            crown
        },
        candidates,
        minimiser,
        multipliers: trace.into(),
    })
}

/// Filtered strong branching (FSB, De Palma et al. 2021): of the `k` best
/// candidates by BaBSR score, the split whose worse child has the highest
/// bound. All children are bounded together, one row each, by a single
/// back-substitution with the parent's intermediate bounds (valid on every
/// child), the parent's slopes and multipliers (`rb`'s), and in each row
/// its split neuron fixed to its phase: cheap, and it sees how fixing the
/// neuron changes every earlier coefficient, which BaBSR's intercept score
/// does not. The choice only steers the search; soundness rests on the
/// children's own bounds.
pub fn strongest_split(
    row: &SubdomainRow,
    cfg: &BoundConfig,
    rb: &RowBound,
    k: usize,
) -> Result<Option<ReluSplit>, BoundsError> {
    let candidates: Vec<ReluSplit> = rb.candidates.iter().take(k).map(|c| c.0).collect();
    let lower = child_bounds(row, cfg, rb, &candidates)?;
    let worse = |c: usize| lower[2 * c].min(lower[2 * c + 1]);
    let best = (0..candidates.len()).max_by(|&a, &b| worse(a).total_cmp(&worse(b)).then(b.cmp(&a)));
    Ok(best.map(|c| candidates[c]))
}

/// Lower bounds of the two children of each candidate, inactive then
/// active (rows 2c and 2c + 1 of one back-substitution).
fn child_bounds(
    row: &SubdomainRow,
    cfg: &BoundConfig,
    rb: &RowBound,
    candidates: &[ReluSplit],
) -> Result<Vec<f64>, BoundsError> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let (g, rows) = (row.graph, 2 * candidates.len());
    let mut trace = rb.multipliers.start_trace(g, row.bounds, row.splits, rows);
    for (c, split) in candidates.iter().enumerate() {
        let fixed = trace.fixed.entry(split.pre).or_default();
        fixed.push((2 * c, split.index, false));
        fixed.push((2 * c + 1, split.index, true));
    }
    backsubstitute(
        g,
        g.output,
        row.bounds,
        row.region,
        cfg,
        &row.spec.repeat(rows),
        rows,
        &mut trace,
    )
}

/// `coeffs · x + constant` over the input.
#[derive(Clone, Debug)]
pub struct AffineForm {
    pub coeffs: Vec<f64>,
    pub constant: f64,
}

/// On a subdomain where no ReLU is unstable (every one fixed by its bounds
/// or a split) the network is affine on the input: the spec row's form and
/// each split neuron's input's form (in `splits` order), in real
/// arithmetic, over the region's bounding box. They pose the leaf's exact
/// LP; its multipliers then go back through `bound_for_branching`, which
/// gives the (sound) bound.
pub fn leaf_forms(row: &SubdomainRow) -> Result<(AffineForm, Vec<AffineForm>), BoundsError> {
    let (g, nb, bbox) = (row.graph, row.bounds, &row.region.bbox);
    let cfg = BoundConfig {
        intersect_ibp: false,
        ..BoundConfig::new(Method::Crown, Soundness::Real)
    };
    let region = Region {
        bbox: bbox.clone(),
        ball: None,
    };
    let forms = |node: NodeId, rows: &[f64], s: usize| -> Result<Vec<AffineForm>, BoundsError> {
        let mut trace = Trace {
            coeffs: Some(vec![None; node + 1]),
            ..Trace::default()
        };
        let values = backsubstitute(g, node, nb, &region, &cfg, rows, s, &mut trace)?;
        let n = bbox.len();
        let coeffs = trace.coeffs.and_then(|c| c[g.input].clone());
        let coeffs = coeffs.unwrap_or_else(|| vec![0.0; s * n]);
        // The bound is the box minimum plus the constant: subtract the former.
        Ok(coeffs
            .chunks(n)
            .zip(values)
            .map(|(a, v)| AffineForm {
                coeffs: a.to_vec(),
                constant: v - box_min_of(a, &bbox.lo, &bbox.hi).0,
            })
            .collect())
    };
    let objective = forms(g.output, row.spec, 1)?.remove(0);
    let mut split_forms = Vec::with_capacity(row.splits.len());
    for sp in row.splits {
        let mut row = vec![0.0; nb.nodes[sp.pre].len()];
        row[sp.index] = 1.0;
        split_forms.extend(forms(sp.pre, &row, 1)?);
    }
    Ok((objective, split_forms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{propagate_split, Soundness};
    use nncert_model::testing::random_relu_mlp;
    use nncert_model::Graph;
    use nncert_model::Tensor;
    use nncert_spec::{InputBox, InputSet, Norm, NormBall};

    /// Compares strong branching's batched child bounds with each child
    /// bounded on its own (the split neuron's interval clamped at 0, the
    /// child's split added, the parent's slopes and multipliers), below a
    /// parent split once from the root; returns how many children matched.
    fn compare_children(g: &Graph, set: &InputSet, spec: &[f64], label: &str) -> usize {
        let mut compared = 0;
        for soundness in [Soundness::Real, Soundness::Float32] {
            for intersect_ibp in [false, true] {
                let cfg = BoundConfig {
                    alpha_iterations: 5,
                    intersect_ibp,
                    ..BoundConfig::new(Method::AlphaCrown, soundness)
                };
                let region = Region::of(set, soundness);
                let root = propagate_split(g, &region, &cfg, &[], None)
                    .unwrap()
                    .unwrap();
                let root_row = SubdomainRow {
                    graph: g,
                    bounds: &root,
                    region: &region,
                    spec,
                    splits: &[],
                };
                let rb0 = bound_for_branching(&root_row, &cfg, &Multipliers::default()).unwrap();
                // The parent is split once, so that it carries a multiplier.
                let Some(&(first, _)) = rb0.candidates.first() else {
                    continue;
                };
                let splits = [first];
                let Some(nb) = propagate_split(g, &region, &cfg, &splits, None).unwrap() else {
                    continue;
                };
                let parent = SubdomainRow {
                    bounds: &nb,
                    splits: &splits,
                    ..root_row
                };
                let rb = bound_for_branching(&parent, &cfg, &rb0.multipliers).unwrap();
                let candidates: Vec<ReluSplit> =
                    rb.candidates.iter().take(6).map(|c| c.0).collect();
                let batched = child_bounds(&parent, &cfg, &rb, &candidates).unwrap();
                let once = BoundConfig {
                    alpha_iterations: 0,
                    ..cfg
                };
                for (c, split) in candidates.iter().enumerate() {
                    for (row, active) in [(2 * c, false), (2 * c + 1, true)] {
                        let mut clamped = nb.clone();
                        let iv = &mut clamped.nodes[split.pre];
                        if active {
                            iv.lo[split.index] = iv.lo[split.index].max(0.0);
                        } else {
                            iv.hi[split.index] = iv.hi[split.index].min(0.0);
                        }
                        let child = [first, ReluSplit { active, ..*split }];
                        let alone_row = SubdomainRow {
                            bounds: &clamped,
                            splits: &child,
                            ..parent
                        };
                        let alone = optimise_row(&alone_row, &once, &rb.multipliers).unwrap().0;
                        assert!(
                            (batched[row] - alone).abs() <= 1e-9 * (1.0 + alone.abs()),
                            "{label} {soundness:?} ibp {intersect_ibp} candidate {c} \
                             active {active}: {} vs {alone}",
                            batched[row]
                        );
                        compared += 1;
                    }
                }
            }
        }
        compared
    }

    #[test]
    fn child_rows_equal_children_bounded_one_by_one() {
        let ball = InputSet::Ball(NormBall {
            center: vec![0.5; 4],
            eps: 0.3,
            norm: Norm::Linf,
            domain: (0.0, 1.0),
        });
        let compared: usize = (0..6)
            .map(|seed| {
                let g = random_relu_mlp(&[4, 12, 12, 12, 3], seed);
                compare_children(&g, &ball, &[1.0, -1.0, 0.0], &format!("seed {seed}"))
            })
            .sum();
        assert!(compared >= 100, "only {compared} children compared");
    }

    /// y = Σ relu(z_i) + z_i, z = x on [−1, 1]³: the skip connection leaves
    /// z pending beside the ReLU, so a neuron fixed active must lie in its
    /// clamped interval [0, 1] in the early bounds of its row too.
    #[test]
    fn child_rows_clamp_the_fixed_neuron_in_early_bounds() {
        let mut g = Graph::with_input("x", vec![1, 3]);
        let identity = Op::Linear {
            weight: Tensor::new(vec![3, 3], vec![1., 0., 0., 0., 1., 0., 0., 0., 1.]),
            bias: None,
        };
        let z = g.push("fc", identity, vec![0]).unwrap();
        let r = g.push("relu", Op::Relu, vec![z]).unwrap();
        let skip = Op::Binary(nncert_model::BinaryKind::Add);
        let r = g.push("skip", skip, vec![r, z]).unwrap();
        let sum = Op::Linear {
            weight: Tensor::new(vec![1, 3], vec![1.0; 3]),
            bias: None,
        };
        g.push("out", sum, vec![r]).unwrap();
        let cube = InputSet::Box(InputBox {
            lo: vec![-1.0; 3],
            hi: vec![1.0; 3],
        });
        assert!(compare_children(&g, &cube, &[1.0], "relus with a skip") >= 8);
    }
}
