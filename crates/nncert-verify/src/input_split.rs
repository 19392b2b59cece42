//! Input-space branch and bound for low-dimensional inputs (ReluVal-style
//! bisection; ACAS Xu has 5 inputs): a piece of the input box is closed when
//! sound-mode CROWN excludes every still-open unsafe term on it; otherwise
//! its centre is tried as a counterexample (re-executed on the f64 reference
//! and every float32 engine) and it is halved along the dimension with the
//! largest smear (ReluVal: |∂c·y/∂x_i| at the centre, summed over the open
//! constraints, times the piece's width in x_i; the relatively widest
//! dimension where the gradient vanishes). The pieces cover the box (halves
//! share their boundary), so "every piece closed" proves the case; a piece
//! too thin to halve in float32 stays open and makes the answer `unknown`
//! unless another piece yields a counterexample.

use crate::witness::f32_point_inside;
use crate::{Models, Outcome, Result};
use nncert_bounds::{lower_bounds, propagate, spec_gradient, BoundConfig, BoundsError, Region};
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
    let mut thin_piece_open = false;
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
        let smear = smear(m.bounded, case, &b, &open)?;
        match halves(&b, &smear, &width0) {
            Some((left, right)) => {
                stack.push((left, open.clone()));
                stack.push((right, open));
            }
            // A piece too thin to halve in float32 stays open (it straddles
            // the unsafe set's boundary within float32's error); the other
            // pieces may still hold a counterexample.
            None => thin_piece_open = true,
        }
    }
    Ok(if thin_piece_open {
        Outcome::Unknown
    } else {
        Outcome::Proved
    })
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

/// Per input dimension, Σ over the open terms' constraints of |∂(c·y)/∂x_i|
/// at the piece's centre, times the piece's width in x_i.
fn smear(g: &Graph, case: &Case, b: &InputBox, open: &[usize]) -> Result<Vec<f64>> {
    let spec: Vec<f64> = open
        .iter()
        .flat_map(|&t| case.unsafe_output.terms[t].iter())
        .flat_map(|c| c.coeffs.iter().copied())
        .collect();
    let rows = spec.len() / g.output_len();
    let (_, grad) = spec_gradient(g, &b.center(), &spec, rows)?;
    let n = b.dim();
    Ok((0..n)
        .map(|i| (0..rows).map(|r| grad[r * n + i].abs()).sum::<f64>() * (b.hi[i] - b.lo[i]))
        .collect())
}

/// `b` halved along the dimension of largest `smear` (ties and zeros: the
/// relatively widest), or None when no dimension holds a float32 strictly
/// inside (nothing left to split).
fn halves(b: &InputBox, smear: &[f64], width0: &[f64]) -> Option<(InputBox, InputBox)> {
    let rel = |d: usize| (b.hi[d] - b.lo[d]) / width0[d].max(f64::MIN_POSITIVE);
    let mut order: Vec<usize> = (0..b.dim()).collect();
    order.sort_by(|&i, &j| {
        smear[j]
            .total_cmp(&smear[i])
            .then(rel(j).total_cmp(&rel(i)))
    });
    order.into_iter().find_map(|k| {
        let mid = 0.5 * (b.lo[k] + b.hi[k]);
        let m32 = mid as f32 as f64;
        (m32 > b.lo[k] && m32 < b.hi[k]).then(|| {
            let (mut left, mut right) = (b.clone(), b.clone());
            left.hi[k] = mid;
            right.lo[k] = mid;
            (left, right)
        })
    })
}
