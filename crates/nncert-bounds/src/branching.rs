//! What ReLU branch and bound needs from one spec row's bound: the lower
//! bound (CROWN, or α,β-CROWN with optimised slopes and split multipliers),
//! a score per unstable ReLU neuron saying how much the bound would gain
//! from splitting it, and the input point where the bound is attained.

use crate::alpha::{minimisers, optimise_row, Multipliers};
use crate::fp::Soundness;
use crate::interval::{Interval, Region};
use crate::ops::activation::{self, Slopes};
use crate::propagate::{
    apply_splits, backsubstitute, box_min_of, interval_lower, NetworkBounds, ReluSplit, Trace,
};
use crate::{BoundConfig, BoundsError, Method};
use nncert_model::{Graph, NodeId, Op};

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
    g: &Graph,
    nb: &NetworkBounds,
    region: &Region,
    cfg: &BoundConfig,
    spec: &[f64],
    splits: &[ReluSplit],
    warm: &Multipliers,
) -> Result<RowBound, BoundsError> {
    let (crown, mut trace) = optimise_row(g, nb, region, cfg, spec, splits, warm)?;
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
        Some(a) => minimisers(a, 1, region),
        None => region.bbox.lo.clone(),
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
/// bound. Each child is bounded by one back-substitution with the parent's
/// intermediate bounds (valid on the child), the split neuron's interval
/// clamped at 0, and the parent's slopes and multipliers (`rb`'s): cheap,
/// and it sees how clamping the neuron changes every earlier coefficient,
/// which BaBSR's intercept score does not. The choice only steers the
/// search; soundness rests on the children's own bounds.
#[allow(clippy::too_many_arguments)]
pub fn strongest_split(
    g: &Graph,
    nb: &NetworkBounds,
    region: &Region,
    cfg: &BoundConfig,
    spec: &[f64],
    splits: &[ReluSplit],
    rb: &RowBound,
    k: usize,
) -> Result<Option<ReluSplit>, BoundsError> {
    let once = BoundConfig {
        alpha_iterations: 0,
        ..*cfg
    };
    let mut clamped = nb.clone();
    let mut child_splits = splits.to_vec();
    let mut best: Option<(f64, ReluSplit)> = None;
    for &(split, _) in rb.candidates.iter().take(k) {
        let saved = nb.nodes[split.pre].clone();
        let mut worse = f64::INFINITY;
        for active in [false, true] {
            let child = ReluSplit { active, ..split };
            // Never empty: the candidate is unstable, lo < 0 < hi.
            apply_splits(&mut clamped.nodes[split.pre], split.pre, &[child]);
            child_splits.push(child);
            let bound = optimise_row(
                g,
                &clamped,
                region,
                &once,
                spec,
                &child_splits,
                &rb.multipliers,
            );
            child_splits.pop();
            clamped.nodes[split.pre].clone_from(&saved);
            worse = worse.min(bound?.0);
        }
        if best.is_none_or(|(b, _)| worse > b) {
            best = Some((worse, split));
        }
    }
    Ok(best.map(|(_, split)| split))
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
/// arithmetic. They pose the leaf's exact LP; its multipliers then go back
/// through `bound_for_branching`, which gives the (sound) bound.
pub fn leaf_forms(
    g: &Graph,
    nb: &NetworkBounds,
    bbox: &Interval,
    spec: &[f64],
    splits: &[ReluSplit],
) -> Result<(AffineForm, Vec<AffineForm>), BoundsError> {
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
    let objective = forms(g.output, spec, 1)?.remove(0);
    let mut split_forms = Vec::with_capacity(splits.len());
    for sp in splits {
        let mut row = vec![0.0; nb.nodes[sp.pre].len()];
        row[sp.index] = 1.0;
        split_forms.extend(forms(sp.pre, &row, 1)?);
    }
    Ok((objective, split_forms))
}
