//! Branch and bound on ReLU neurons for one linear property `spec · y > rhs`.
//!
//! A subdomain is the input region plus a set of ReLU splits (neuron ≥ 0 or
//! ≤ 0). Its intermediate bounds are CROWN's over the region with every
//! split neuron's interval clamped at 0 (`propagate_split`): sound, since
//! each subdomain's inputs lie in the region and satisfy its splits, and
//! the two children of a split cover their parent. Children reuse the
//! parent's bounds of every node up to the split one. The output bound is
//! CROWN's, or with `Method::AlphaCrown` β-CROWN's: slopes and one
//! Lagrange multiplier per split constraint optimised from the parent's
//! values, which imposes the splits on the input too. A subdomain is closed
//! when its bound exceeds `rhs`; otherwise the input point where its bound
//! is attained is tried as a counterexample (re-executed on every engine)
//! and the neuron with the best BaBSR score is split. Depth first, so
//! memory stays proportional to depth; a cap on the stored bounds and the
//! deadline end the search early.
//!
//! Gradient ascent need not reach the optimal multipliers, so a subdomain
//! with every neuron split may stay open: the search then answers
//! `Unknown`, never `Proved`.

use crate::attack::descend_from;
use crate::witness::f32_point_inside;
use crate::{Models, Outcome, Result};
use nncert_bounds::{
    bound_for_branching, propagate_split, BoundConfig, BoundsError, Multipliers, NetworkBounds,
    Region, ReluSplit,
};
use nncert_model::Deadline;
use nncert_spec::{InputSet, Property};

/// PGD steps from each open subdomain's bound minimiser.
const GUIDED_STEPS: usize = 10;

#[derive(Clone, Copy, Debug)]
pub struct BabConfig {
    /// Bounds per subdomain (CROWN, or β-CROWN with `Method::AlphaCrown`;
    /// its `deadline` is the search's).
    pub bounds: BoundConfig,
    /// Most f64 values the queued subdomains' bounds may hold (memory cap).
    pub max_stored_values: usize,
}

impl BabConfig {
    pub fn new(bounds: BoundConfig) -> Self {
        BabConfig {
            bounds,
            max_stored_values: 1 << 27,
        }
    }
}

/// How many subdomains were bounded.
#[derive(Clone, Copy, Debug, Default)]
pub struct BabStats {
    pub subdomains: usize,
}

struct Subdomain {
    splits: Vec<ReluSplit>,
    bounds: NetworkBounds,
    /// The parent's bound, valid here too (CROWN's own may come out lower).
    inherited: f64,
    /// The parent's optimised slopes and multipliers (warm start).
    warm: Multipliers,
}

fn stored_values(nb: &NetworkBounds) -> usize {
    nb.nodes.iter().map(|iv| 2 * iv.len()).sum::<usize>()
        + nb.err.iter().map(Vec::len).sum::<usize>()
}

/// One linear property: `spec · y > rhs` over `region` is to be proved
/// (unsafe: `≤ rhs`); counterexamples are sought in `set` (which `region`
/// encloses) and confirmed against `property`.
pub struct RowProblem<'a> {
    pub property: &'a Property,
    pub region: &'a Region,
    pub set: &'a InputSet,
    pub spec: &'a [f64],
    pub rhs: f64,
}

/// Proves the row or finds a counterexample (see the module doc).
pub fn prove_row(m: &Models, q: &RowProblem, cfg: &BabConfig) -> Result<(Outcome, BabStats)> {
    let mut stats = BabStats::default();
    match search(m, q, cfg, &mut stats) {
        Err(crate::VerifyError::Bounds(BoundsError::Timeout)) => Ok((Outcome::Timeout, stats)),
        r => Ok((r?, stats)),
    }
}

fn search(m: &Models, q: &RowProblem, cfg: &BabConfig, stats: &mut BabStats) -> Result<Outcome> {
    let RowProblem {
        property: p,
        region,
        set,
        spec,
        rhs,
    } = *q;
    let g = m.bounded;
    let candidates_box = set.bounding_box();
    let deadline: Deadline = cfg.bounds.deadline;
    let row_cfg = BoundConfig {
        alpha_stop_above: Some(rhs),
        ..cfg.bounds
    };
    let Some(root) = propagate_split(g, region, &cfg.bounds, &[], None)? else {
        return Ok(Outcome::Proved);
    };
    let mut stored = stored_values(&root);
    let mut stack = vec![Subdomain {
        splits: Vec::new(),
        bounds: root,
        inherited: f64::NEG_INFINITY,
        warm: Multipliers::default(),
    }];
    let mut open_leaf = false;
    while let Some(sub) = stack.pop() {
        stored -= stored_values(&sub.bounds);
        if deadline.expired() {
            return Ok(Outcome::Timeout);
        }
        let rb = bound_for_branching(
            g,
            &sub.bounds,
            region,
            &row_cfg,
            spec,
            &sub.splits,
            &sub.warm,
        )?;
        stats.subdomains += 1;
        let lower = rb.lower.max(sub.inherited);
        if lower > rhs {
            continue;
        }
        // The bound's minimiser, then a short descent from it (bound-guided points).
        if let Some(x) = f32_point_inside(&rb.minimiser, &candidates_box) {
            if let Some(ce) = m.confirm(p, &[x])? {
                return Ok(Outcome::Counterexample(ce));
            }
        }
        let start = rb.minimiser.clone();
        if let Some(ce) = descend_from(m, p, set, spec, rhs, start, GUIDED_STEPS, deadline)? {
            return Ok(Outcome::Counterexample(ce));
        }
        let Some(&(split, _)) = rb.candidates.first() else {
            open_leaf = true;
            continue;
        };
        // Inactive pushed first: the active child (usually the harder) is explored first.
        for active in [false, true] {
            let mut splits = sub.splits.clone();
            splits.push(ReluSplit { active, ..split });
            let resume = Some((&sub.bounds, split.pre));
            if let Some(bounds) = propagate_split(g, region, &cfg.bounds, &splits, resume)? {
                stored += stored_values(&bounds);
                stack.push(Subdomain {
                    splits,
                    bounds,
                    inherited: lower,
                    warm: rb.multipliers.clone(),
                });
            }
        }
        if stored > cfg.max_stored_values {
            return Ok(Outcome::Unknown);
        }
    }
    Ok(if open_leaf {
        Outcome::Unknown
    } else {
        Outcome::Proved
    })
}
