//! nncert-verify: complete verification on top of nncert-bounds.
//!
//! - `witness`: a counterexample counts only after the f64 reference and
//!   every float32 engine, re-executing it, all violate the property.
//! - `attack`: PGD (L∞, L2, L1) with restarts on one linear margin.
//! - `bab`: branch and bound on ReLU neurons, CROWN bounds per subdomain.
//! - `input_split`: branch and bound on the input box (few input dimensions).
//! - `leaf`: exact leaves of ReLU branch and bound (LP dual → β-CROWN bound).
//! - `milp`: MIPVerify's MILP formulation through good_lp (microlp, or CBC).
//! - `robustness`: the per-image pipeline with target-label guidance
//!   (attack → incomplete → complete, one label at a time).
//! - `terms`: a VNN-LIB case's unsafe terms taken the same way, most
//!   dangerous first, by PGD and branch and bound.

pub mod attack;
pub mod bab;
pub mod input_split;
pub mod leaf;
pub mod milp;
pub mod robustness;
pub mod terms;
pub mod witness;

pub use witness::{Counterexample, Models};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum VerifyError {
    #[error(transparent)]
    Model(#[from] nncert_model::ModelError),
    #[error(transparent)]
    Bounds(#[from] nncert_bounds::BoundsError),
    #[error("MILP solver: {0}")]
    Solver(String),
}

pub type Result<T> = std::result::Result<T, VerifyError>;

/// An item of a search queue, keyed by its bound: a `BinaryHeap` of these
/// pops the lowest key first (the part most likely to hold a
/// counterexample, and the one that most needs splitting).
struct LowestFirst<T> {
    key: f64,
    item: T,
}

impl<T> Ord for LowestFirst<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.key.total_cmp(&self.key)
    }
}

impl<T> PartialOrd for LowestFirst<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> PartialEq for LowestFirst<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl<T> Eq for LowestFirst<T> {}

/// How a search over one property ended.
#[derive(Debug)]
pub enum Outcome {
    Proved,
    Counterexample(Counterexample),
    /// Neither: the search ran out of things to try (or of its memory cap).
    Unknown,
    /// A real-arithmetic solver (the MILP) found no counterexample, which
    /// float32 (sound) mode cannot accept as a proof.
    Unconfirmed,
    Timeout,
}
