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

pub use fp::Soundness;
pub use interval::{Interval, Region};
pub use ops::activation::Slopes;
pub use propagate::{lower_bounds, propagate, NetworkBounds};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundConfig {
    pub method: Method,
    pub soundness: Soundness,
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
    #[error("the input region has {got} dimensions, the model {expected}")]
    Dimension { got: usize, expected: usize },
}
