//! nncert-spec: what is to be verified. Input sets (boxes, norm balls clipped
//! to a domain), output properties as a disjunction of conjunctions of linear
//! constraints `c·y ≤ d` describing the *unsafe* outputs (VNN-LIB's
//! convention), the VNN-LIB parser, robustness-spec builders and the
//! VNN-COMP result format.

mod property;
mod robustness;
mod vnncomp;
mod vnnlib;

pub use property::{
    Case, InputBox, InputSet, LinearConstraint, Norm, NormBall, OutputDnf, Property,
};
pub use robustness::{robustness_property, robustness_property_per_target};
pub use vnncomp::{write_atomically, VnnResult};
pub use vnnlib::{parse_vnnlib, read_vnnlib, SpecError};
