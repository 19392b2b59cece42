//! nncert-bounds: bound propagation over the graph IR.
//!
//! Methods: IBP (intervals), Fast-Lin and CROWN (back-substitution with
//! parallel or adaptive ReLU slopes). Intermediate bounds: IBP everywhere,
//! refined by back-substitution on every ReLU input for the neurons IBP
//! leaves unstable. In `Soundness::Float32` mode (the default of the CLI)
//! every bound also holds for the float32 network under any summation order
//! and for the analyser's own f64 rounding (`fp`, docs/soundness.md).

mod alpha;
mod branching;
pub mod fp;
mod gradient;
pub mod interval;
pub mod ops;
mod patches;
mod propagate;
pub mod radius;
mod robustness;
mod symbolic;

pub use alpha::{ball_minimiser, Multipliers};
pub use branching::{bound_for_branching, leaf_forms, strongest_split, AffineForm, RowBound};
pub use fp::Soundness;
pub use gradient::spec_gradient;
pub use interval::{Interval, Region};
pub use ops::activation::Slopes;
pub use propagate::{
    lower_bounds, propagate, propagate_split, NetworkBounds, ReluSplit, SubdomainRow,
};
pub use robustness::{is_certified, robustness_margins, Ball};
pub use symbolic::{affine_step, SymBounds};

use nncert_model::Deadline;
use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Ibp,
    /// Symbolic intervals (ReluVal / Neurify): forward linear bounds in the input.
    Symbolic,
    /// Zonotopes (DeepZ): affine forms over noise symbols, one fresh per relaxed neuron.
    DeepZ,
    FastLin,
    Crown,
    /// CROWN with the output bound's ReLU slopes optimised (Xu et al. 2021).
    AlphaCrown,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Ibp => "ibp",
            Method::Symbolic => "symbolic",
            Method::DeepZ => "deepz",
            Method::FastLin => "fastlin",
            Method::Crown => "crown",
            Method::AlphaCrown => "alpha-crown",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct BoundConfig {
    pub method: Method,
    pub soundness: Soundness,
    /// Checked between nodes; past it, propagation stops with `BoundsError::Timeout`.
    pub deadline: Deadline,
    /// α-CROWN: Adam steps on the slopes (the best bound seen is kept).
    pub alpha_iterations: usize,
    /// α-CROWN stops early once every row's bound exceeds this (a verdict
    /// needs no tighter bound); None runs every iteration.
    pub alpha_stop_above: Option<f64>,
    /// Intersect back-substitution bounds with IBP's (tighter; the default).
    /// Off: back-substitution bounds replace IBP's where it refines (every
    /// neuron of a layer more than 90% unstable), and the output bound is
    /// CROWN's alone, as auto_LiRPA 0.3 computes them by default (for
    /// like-for-like comparisons).
    pub intersect_ibp: bool,
}

impl BoundConfig {
    pub fn new(method: Method, soundness: Soundness) -> Self {
        BoundConfig {
            method,
            soundness,
            deadline: Deadline::none(),
            alpha_iterations: 20,
            alpha_stop_above: None,
            intersect_ibp: true,
        }
    }
}

#[derive(Debug, Error)]
pub enum BoundsError {
    #[error("{method} does not support `{op}` (node `{node}`) yet{hint}")]
    Unsupported {
        method: &'static str,
        op: &'static str,
        node: String,
        hint: &'static str,
    },
    #[error("symbolic intervals / zonotopes would need {entries} coefficients at node `{node}`; use crown")]
    TooLarge { node: String, entries: usize },
    #[error("the deadline passed during bound propagation")]
    Timeout,
    #[error("the input region has {got} dimensions, the model {expected}")]
    Dimension { got: usize, expected: usize },
    /// A concrete evaluation (gradients, relaxed networks) failed.
    #[error(transparent)]
    Model(#[from] nncert_model::ModelError),
}
