//! Input-space branch and bound for low-dimensional inputs (ReluVal-style
//! bisection; ACAS Xu has 5 inputs): a piece of the input box is closed when
//! sound-mode CROWN excludes every still-open unsafe term on it; otherwise
//! its centre is tried as a counterexample (re-executed on the f64 reference
//! and every float32 engine) and it is halved along the dimension whose
//! width, relative to the case's box, is largest. The pieces cover the box
//! (halves share their boundary), so "every piece closed" proves the case.

use crate::witness::f32_point_inside;
use crate::{Models, Outcome, Result};
use nncert_bounds::{lower_bounds, propagate, BoundConfig, BoundsError, Region};
use nncert_model::{Deadline, Graph};
use nncert_spec::{Case, InputBox, InputSet, LinearConstraint, Property};

/// Inputs with at most this many dimensions are split.
pub const MAX_SPLIT_DIM: usize = 16;

/// Splits `case`'s input box until every piece is closed (see the module doc).
pub fn prove_by_splitting(
    m: &Models,
    p: &Property,
    case: &Case,
    cfg: &BoundConfig,
    deadline: Deadline,
) -> Result<Outcome> {
    let root = case.input.bounding_box();
    let width0: Vec<f64> = root.lo.iter().zip(&root.hi).map(|(l, h)| h - l).collect();
    let all_terms: Vec<usize> = (0..case.unsafe_output.terms.len()).collect();
    let mut stack = vec![(root, all_terms)];
    while let Some((b, open)) = stack.pop() {
        if deadline.expired() {
            return Ok(Outcome::Timeout);
        }
        let open = match still_open(m.bounded, case, &b, &open, cfg) {
            Ok(open) => open,
            Err(BoundsError::Timeout) => return Ok(Outcome::Timeout),
            Err(e) => return Err(e.into()),
        };
        if open.is_empty() {
            continue;
        }
        if let Some(x) = f32_point_inside(&b.center(), &b) {
            if let Some(ce) = m.confirm(p, &[x])? {
                return Ok(Outcome::Counterexample(ce));
            }
        }
        match halves(&b, &width0) {
            Some((left, right)) => {
                stack.push((left, open.clone()));
                stack.push((right, open));
            }
            // A piece too thin to halve in float32 stayed open.
            None => return Ok(Outcome::Unknown),
        }
    }
    Ok(Outcome::Proved)
}

/// The unsafe terms of `case` that sound bounds over box `b` fail to exclude.
fn still_open(
    g: &Graph,
    case: &Case,
    b: &InputBox,
    open: &[usize],
    cfg: &BoundConfig,
) -> std::result::Result<Vec<usize>, BoundsError> {
    let region = Region::of(&InputSet::Box(b.clone()), cfg.soundness);
    let nb = propagate(g, &region, cfg)?;
    let mut left = Vec::new();
    for &t in open {
        let term: &[LinearConstraint] = &case.unsafe_output.terms[t];
        let spec: Vec<f64> = term.iter().flat_map(|c| c.coeffs.clone()).collect();
        let lb = lower_bounds(g, &nb, &region, cfg, &spec, term.len())?;
        if !term.iter().zip(&lb).any(|(c, l)| *l > c.rhs) {
            left.push(t);
        }
    }
    Ok(left)
}

/// `b` halved along its relatively widest dimension, or None when that
/// dimension holds no float32 strictly inside (nothing left to split).
fn halves(b: &InputBox, width0: &[f64]) -> Option<(InputBox, InputBox)> {
    let k = (0..b.dim()).max_by(|&i, &j| {
        let rel = |d: usize| (b.hi[d] - b.lo[d]) / width0[d].max(f64::MIN_POSITIVE);
        rel(i).total_cmp(&rel(j))
    })?;
    let mid = 0.5 * (b.lo[k] + b.hi[k]);
    let m32 = mid as f32 as f64;
    if !(m32 > b.lo[k] && m32 < b.hi[k]) {
        return None;
    }
    let (mut left, mut right) = (b.clone(), b.clone());
    left.hi[k] = mid;
    right.lo[k] = mid;
    Some((left, right))
}
