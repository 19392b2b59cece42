//! Exact leaves of ReLU branch and bound. On a subdomain where no ReLU is
//! unstable the network is affine, so the row's minimum over the subdomain
//! is a linear program: minimise `c·x + d` over the input box subject to
//! the split constraints `sign_k·(A_k·x + d_k) ≤ 0`. Gradient ascent on
//! β-CROWN's multipliers only approaches its optimum; the LP's dual — one
//! multiplier per split — reaches it. The solver's answer is never taken as
//! a proof: its multipliers go back through β-CROWN's bound, which is sound
//! for any β ≥ 0 (float32 charges included), and only that bound closes the
//! leaf. Otherwise the primal LP's minimiser is tried as a counterexample.

use crate::bab::RowProblem;
use crate::witness::f32_point_inside;
use crate::{Counterexample, Models, Result};
use good_lp::{variable, Expression, ProblemVariables, Solution, SolverModel, Variable};
use nncert_bounds::{
    bound_for_branching, leaf_forms, AffineForm, BoundConfig, Interval, Method, Multipliers,
    NetworkBounds, ReluSplit, SubdomainRow,
};

/// Largest multiplier the dual LP may use: it keeps the dual bounded when
/// the splits leave no input (an empty leaf then gets a huge bound).
const BETA_MAX: f64 = 1e6;

pub enum Leaf {
    /// β-CROWN's bound with the LP's multipliers exceeds the threshold.
    Closed,
    Refuted(Counterexample),
    /// Neither (the solver failed, or its minimiser is no counterexample on
    /// every engine).
    Open,
}

/// Decides one leaf (`bounds` with no unstable ReLU) of `q` under `splits`.
pub fn decide_leaf(
    m: &Models,
    q: &RowProblem,
    cfg: &BoundConfig,
    splits: &[ReluSplit],
    bounds: &NetworkBounds,
) -> Result<Leaf> {
    let bbox = &q.region.bbox;
    let row = SubdomainRow {
        graph: m.bounded,
        bounds,
        region: q.region,
        spec: q.spec,
        splits,
    };
    let (objective, forms) = leaf_forms(&row)?;
    let signs: Vec<f64> = splits
        .iter()
        .map(|sp| if sp.active { -1.0 } else { 1.0 })
        .collect();
    let Some(betas) = dual_multipliers(&objective, &forms, &signs, bbox) else {
        return Ok(Leaf::Open);
    };
    let exact = BoundConfig {
        method: Method::Crown,
        ..*cfg
    };
    let warm = Multipliers::of_splits(bounds, splits, &betas);
    let rb = bound_for_branching(&row, &exact, &warm)?;
    if rb.lower > q.rhs {
        return Ok(Leaf::Closed);
    }
    let Some(x) = primal_minimiser(&objective, &forms, &signs, bbox) else {
        return Ok(Leaf::Open);
    };
    let Some(x) = f32_point_inside(&x, &q.set.bounding_box()) else {
        return Ok(Leaf::Open);
    };
    Ok(match m.confirm(q.property, &[x])? {
        Some(ce) => Leaf::Refuted(ce),
        None => Leaf::Open,
    })
}

/// Inputs some form depends on (the others do not move the LP).
fn used_inputs(objective: &AffineForm, forms: &[AffineForm]) -> Vec<usize> {
    (0..objective.coeffs.len())
        .filter(|&i| objective.coeffs[i] != 0.0 || forms.iter().any(|f| f.coeffs[i] != 0.0))
        .collect()
}

/// The Lagrangian dual `max_{0 ≤ β} min_{x ∈ box} c·x + Σ_k β_k·sign_k·(A_k·x + d_k)`
/// as an LP: `t_i ≤ lo_i·r_i(β)` and `t_i ≤ hi_i·r_i(β)` with
/// `r(β) = c + Σ_k β_k·sign_k·A_k`, maximising `Σ t_i + Σ_k β_k·sign_k·d_k`.
fn dual_multipliers(
    objective: &AffineForm,
    forms: &[AffineForm],
    signs: &[f64],
    bbox: &Interval,
) -> Option<Vec<f64>> {
    let mut pv = ProblemVariables::new();
    let betas: Vec<Variable> = forms
        .iter()
        .map(|_| pv.add(variable().min(0.0).max(BETA_MAX)))
        .collect();
    let inputs = used_inputs(objective, forms);
    let ts: Vec<Variable> = inputs.iter().map(|_| pv.add(variable())).collect();
    let mut goal: Expression = ts.iter().copied().sum();
    for ((f, &s), &b) in forms.iter().zip(signs).zip(&betas) {
        goal.add_mul(s * f.constant, b);
    }
    let mut lp = pv.maximise(goal).using(good_lp::solvers::microlp::microlp);
    for (&i, &t) in inputs.iter().zip(&ts) {
        let mut r = Expression::from(objective.coeffs[i]);
        for ((f, &s), &b) in forms.iter().zip(signs).zip(&betas) {
            if f.coeffs[i] != 0.0 {
                r.add_mul(s * f.coeffs[i], b);
            }
        }
        lp.add_constraint((bbox.lo[i] * r.clone() - t).geq(0.0));
        lp.add_constraint((bbox.hi[i] * r - t).geq(0.0));
    }
    let sol = lp.solve().ok()?;
    Some(betas.iter().map(|&b| sol.value(b).max(0.0)).collect())
}

/// argmin `c·x` over the box and the split constraints, if the LP solves.
fn primal_minimiser(
    objective: &AffineForm,
    forms: &[AffineForm],
    signs: &[f64],
    bbox: &Interval,
) -> Option<Vec<f64>> {
    let mut pv = ProblemVariables::new();
    let inputs = used_inputs(objective, forms);
    let xs: Vec<Variable> = inputs
        .iter()
        .map(|&i| pv.add(variable().min(bbox.lo[i]).max(bbox.hi[i])))
        .collect();
    let linear = |a: &[f64], c: f64| {
        let mut e = Expression::from(c);
        for (&i, &x) in inputs.iter().zip(&xs) {
            e.add_mul(a[i], x);
        }
        e
    };
    let mut lp = pv
        .minimise(linear(&objective.coeffs, 0.0))
        .using(good_lp::solvers::microlp::microlp);
    for (f, &s) in forms.iter().zip(signs) {
        lp.add_constraint((s * linear(&f.coeffs, f.constant)).leq(0.0));
    }
    let sol = lp.solve().ok()?;
    // Inputs no form reads stay at the box's centre.
    let mut x: Vec<f64> = (0..bbox.len())
        .map(|i| 0.5 * (bbox.lo[i] + bbox.hi[i]))
        .collect();
    for (&i, &v) in inputs.iter().zip(&xs) {
        x[i] = sol.value(v);
    }
    Some(x)
}
