//! Input-space branch and bound for low-dimensional inputs (ACAS Xu has 5
//! inputs): a piece of the input box is closed when sound-mode CROWN
//! excludes every still-open unsafe term on it; otherwise its centre, and a
//! short descent from it, are tried as counterexamples (re-executed on the
//! f64 reference and every float32 engine) and it is halved. The dimension
//! to halve is chosen by bounding both halves along every dimension (smart
//! branching, after BaBSB and α,β-CROWN's input split): the one whose
//! halves' bounds sum highest wins, and the halves keep their bounds, so a
//! half that closes is never queued. Open pieces are taken lowest bound
//! first. On ACAS Xu property 1 this decides in seconds what ReluVal's
//! gradient "smear" did not decide in minutes (docs/benchmarks.md). The
//! pieces cover the box (halves share their boundary), so "every piece
//! closed" proves the case; a piece too thin to halve in float32 stays open
//! and makes the answer `unknown` unless another piece yields a
//! counterexample.

use crate::attack::{descend_from, pgd, PgdConfig};
use crate::witness::f32_point_inside;
use crate::{Counterexample, LowestFirst, Models, Outcome, Result};
use nncert_bounds::{lower_bounds, propagate, BoundConfig, BoundsError, Region};
use nncert_model::{Deadline, Graph};
use nncert_spec::{Case, InputBox, InputSet, LinearConstraint, Property};
use rayon::prelude::*;
use std::collections::BinaryHeap;

/// Inputs with at most this many dimensions are split.
pub const MAX_SPLIT_DIM: usize = 16;

/// Per open term, `lower − rhs` of each of its constraints (the term is
/// excluded once one is positive).
type Slacks = Vec<Vec<f64>>;

/// A piece of the input box, the unsafe terms its bounds leave open with
/// their slacks, and its least excluded open term.
struct Piece {
    b: InputBox,
    open: Vec<usize>,
    slacks: Slacks,
    worst: Score,
}

impl Piece {
    /// The piece `b` with the bounds `slacks` of `terms`, each raised to
    /// the parent's (`floor`, also valid on its parts: CROWN on a part can
    /// come out looser than on the whole, its slopes being chosen anew);
    /// None when the bounds exclude every term.
    fn new(
        b: InputBox,
        terms: &[usize],
        mut slacks: Slacks,
        floor: Option<&Slacks>,
    ) -> Option<Piece> {
        if let Some(floor) = floor {
            for (s, f) in slacks.iter_mut().flatten().zip(floor.iter().flatten()) {
                *s = s.max(*f);
            }
        }
        let (open, slacks): (Vec<usize>, Slacks) = terms
            .iter()
            .zip(slacks)
            .filter(|(&t, s)| score(t, s).value <= 0.0)
            .map(|(&t, s)| (t, s))
            .unzip();
        let worst = open
            .iter()
            .zip(&slacks)
            .map(|(&t, s)| score(t, s))
            .min_by(|a, b| a.value.total_cmp(&b.value))?;
        Some(Piece {
            b,
            open,
            slacks,
            worst,
        })
    }

    /// The constraint of its worst term that came closest to excluding it:
    /// the one a counterexample finds hardest to meet, which attacks descend on.
    fn hardest<'c>(&self, case: &'c Case) -> &'c LinearConstraint {
        &case.unsafe_output.terms[self.worst.term][self.worst.constraint]
    }

    fn queued(self) -> LowestFirst<Piece> {
        LowestFirst {
            key: self.worst.value,
            item: self,
        }
    }
}

/// Gradient steps from each open piece's centre on its hardest constraint.
const DESCENT_STEPS: usize = 10;

/// Most pieces queued at once (a few hundred bytes each): past it the
/// answer is `unknown` (the memory cap).
const MAX_QUEUED_PIECES: usize = 1 << 20;

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
    let slacks = match term_slacks(m.bounded, case, &root, &all_terms, cfg) {
        Err(BoundsError::Timeout) => return Ok(Outcome::Timeout),
        r => r?,
    };
    // Lowest score first: the piece most likely to hold a counterexample (a
    // proof must close every piece, in any order).
    let mut queue: BinaryHeap<LowestFirst<Piece>> = Piece::new(root, &all_terms, slacks, None)
        .map(Piece::queued)
        .into_iter()
        .collect();
    if let Some(LowestFirst { item: piece, .. }) = queue.peek() {
        // A full attack on the box first: the pieces' own descents are short.
        let c = piece.hardest(case);
        let set = InputSet::Box(piece.b.clone());
        if let Some(ce) = pgd(
            m,
            p,
            &set,
            &c.coeffs,
            c.rhs,
            &PgdConfig::default(),
            deadline,
        )? {
            return Ok(Outcome::Counterexample(ce));
        }
    }
    let mut thin_piece_open = false;
    while let Some(LowestFirst { item: piece, .. }) = queue.pop() {
        if deadline.expired() {
            return Ok(Outcome::Timeout);
        }
        if let Some(ce) = search_piece(m, p, case, &piece, deadline)? {
            return Ok(Outcome::Counterexample(ce));
        }
        match best_halves(m.bounded, case, &piece, cfg, &width0) {
            Ok(Some(_)) if queue.len() >= MAX_QUEUED_PIECES => return Ok(Outcome::Unknown),
            Ok(Some(halves)) => queue.extend(halves.into_iter().flatten().map(Piece::queued)),
            // A piece too thin to halve in float32 stays open (it straddles
            // the unsafe set's boundary within float32's error); the other
            // pieces may still hold a counterexample.
            Ok(None) => thin_piece_open = true,
            Err(BoundsError::Timeout) => return Ok(Outcome::Timeout),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(if thin_piece_open {
        Outcome::Unknown
    } else {
        Outcome::Proved
    })
}

/// The piece's centre, then a short descent from it on its hardest
/// constraint: the splits follow the bounds, not the minimum, so the
/// centres alone may never reach it.
fn search_piece(
    m: &Models,
    p: &Property,
    case: &Case,
    piece: &Piece,
    deadline: Deadline,
) -> Result<Option<Counterexample>> {
    let b = &piece.b;
    if let Some(x) = f32_point_inside(&b.center(), b) {
        if let Some(ce) = m.confirm(p, &[x])? {
            return Ok(Some(ce));
        }
    }
    let c = piece.hardest(case);
    let set = InputSet::Box(b.clone());
    descend_from(
        m,
        p,
        &set,
        &c.coeffs,
        c.rhs,
        b.center(),
        DESCENT_STEPS,
        deadline,
    )
}

/// The slacks of `terms` under sound bounds over box `b`.
fn term_slacks(
    g: &Graph,
    case: &Case,
    b: &InputBox,
    terms: &[usize],
    cfg: &BoundConfig,
) -> std::result::Result<Slacks, BoundsError> {
    let region = Region::of(&InputSet::Box(b.clone()), cfg.soundness);
    let nb = propagate(g, &region, cfg)?;
    terms
        .iter()
        .map(|&t| {
            let term = &case.unsafe_output.terms[t];
            let spec: Vec<f64> = term.iter().flat_map(|c| c.coeffs.clone()).collect();
            let lb = lower_bounds(g, &nb, &region, cfg, &spec, term.len())?;
            Ok(term.iter().zip(&lb).map(|(c, l)| l - c.rhs).collect())
        })
        .collect()
}

/// How far one unsafe term is from excluded on a piece (`value` ≤ 0: open).
#[derive(Clone, Copy, Debug)]
struct Score {
    value: f64,
    term: usize,
    /// The term's constraint whose bound came closest to excluding it.
    constraint: usize,
}

/// Term `t`'s score: its largest slack.
fn score(t: usize, slack: &[f64]) -> Score {
    let (constraint, &value) = slack
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .expect("a term has constraints");
    Score {
        value,
        term: t,
        constraint,
    }
}

/// The halves of `piece` along the best dimension (see the module doc) with
/// their open terms (None for a half that closes); None when no dimension holds a
/// float32 strictly inside (nothing left to split). Ties go to the
/// relatively widest dimension. The halves are bounded on all cores.
fn best_halves(
    g: &Graph,
    case: &Case,
    piece: &Piece,
    cfg: &BoundConfig,
    width0: &[f64],
) -> std::result::Result<Option<[Option<Piece>; 2]>, BoundsError> {
    let b = &piece.b;
    let dims: Vec<usize> = (0..b.dim())
        .filter(|&k| {
            let m32 = (0.5 * (b.lo[k] + b.hi[k])) as f32 as f64;
            m32 > b.lo[k] && m32 < b.hi[k]
        })
        .collect();
    let halves: Vec<InputBox> = dims
        .iter()
        .flat_map(|&k| {
            let mid = 0.5 * (b.lo[k] + b.hi[k]);
            let (mut left, mut right) = (b.clone(), b.clone());
            left.hi[k] = mid;
            right.lo[k] = mid;
            [left, right]
        })
        .collect();
    let mut parts: Vec<Option<Piece>> = halves
        .into_par_iter()
        .map(|h| {
            let slacks = term_slacks(g, case, &h, &piece.open, cfg)?;
            Ok(Piece::new(h, &piece.open, slacks, Some(&piece.slacks)))
        })
        .collect::<std::result::Result<_, BoundsError>>()?;
    // A split's score: the sum of its halves' (a closed half's counts as 0).
    // The worse half alone (BaBSB's rule) was tried: it keeps halving the
    // same dimension into strips whose bounds hardly improve (a 2-input
    // test net: no decision in 20 s; ACAS Xu 3_9 property 1: 30 s timeout
    // against 4.3 s with the sum).
    let value = |p: &Option<Piece>| p.as_ref().map_or(0.0, |p| p.worst.value);
    let split_score = |i: usize| value(&parts[2 * i]) + value(&parts[2 * i + 1]);
    let rel = |i: usize| (b.hi[dims[i]] - b.lo[dims[i]]) / width0[dims[i]].max(f64::MIN_POSITIVE);
    let best = (0..dims.len()).max_by(|&i, &j| {
        split_score(i)
            .total_cmp(&split_score(j))
            .then(rel(i).total_cmp(&rel(j)))
    });
    Ok(best.map(|k| {
        let right = parts.swap_remove(2 * k + 1);
        [parts.swap_remove(2 * k), right]
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit_box() -> InputBox {
        InputBox {
            lo: vec![0.0],
            hi: vec![1.0],
        }
    }

    /// Slacks stay with their terms and constraints: a term closes when one
    /// of its constraints' slacks, raised to the parent's, is positive, and
    /// the worst open term names the constraint that came closest.
    #[test]
    fn pieces_keep_each_terms_slacks_and_take_the_parents_floor() {
        let terms = [0, 2];
        let slacks = vec![vec![-1.0, -3.0], vec![0.5, -2.0]];
        let p = Piece::new(unit_box(), &terms, slacks.clone(), None).unwrap();
        assert_eq!(p.open, vec![0]);
        assert_eq!(p.slacks, vec![vec![-1.0, -3.0]]);
        assert_eq!(
            (p.worst.term, p.worst.constraint, p.worst.value),
            (0, 0, -1.0)
        );
        // The parent's second constraint of term 0 was already positive.
        let floor = vec![vec![-2.0, 1.0], vec![-1.0, -1.0]];
        assert!(Piece::new(unit_box(), &terms, slacks.clone(), Some(&floor)).is_none());
        // A floor above some slacks and below others.
        let floor = vec![vec![-0.5, -4.0], vec![-1.0, -1.0]];
        let p = Piece::new(unit_box(), &terms, slacks, Some(&floor)).unwrap();
        assert_eq!(p.slacks, vec![vec![-0.5, -3.0]]);
        assert_eq!(
            (p.worst.term, p.worst.constraint, p.worst.value),
            (0, 0, -0.5)
        );
    }
}
