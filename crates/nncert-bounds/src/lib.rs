//! nncert-bounds: bound propagation over the graph IR.
//!
//! Methods: IBP (intervals), Fast-Lin and CROWN (back-substitution with
//! parallel or adaptive ReLU slopes). Intermediate bounds: IBP everywhere,
//! refined by back-substitution on every ReLU input for the neurons IBP
//! leaves unstable. In `Soundness::Float32` mode (the default of the CLI)
//! every bound also holds for the float32 network under any summation order
//! and for the analyser's own f64 rounding (`fp`, docs/soundness.md).

pub mod fp;
pub mod interval;
pub mod ops;
mod propagate;
pub mod radius;
mod robustness;

pub use fp::Soundness;
pub use interval::{Interval, Region};
pub use ops::activation::Slopes;
pub use propagate::{lower_bounds, propagate, NetworkBounds};
pub use robustness::{is_certified, robustness_margins, Ball};

use nncert_model::Deadline;
use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Ibp,
    FastLin,
    Crown,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Ibp => "ibp",
            Method::FastLin => "fastlin",
            Method::Crown => "crown",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct BoundConfig {
    pub method: Method,
    pub soundness: Soundness,
    /// Checked between nodes; past it, propagation stops with `BoundsError::Timeout`.
    pub deadline: Deadline,
}

impl BoundConfig {
    pub fn new(method: Method, soundness: Soundness) -> Self {
        BoundConfig {
            method,
            soundness,
            deadline: Deadline::none(),
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
    #[error("the deadline passed during bound propagation")]
    Timeout,
    #[error("the input region has {got} dimensions, the model {expected}")]
    Dimension { got: usize, expected: usize },
}
