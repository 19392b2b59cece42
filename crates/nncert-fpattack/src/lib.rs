//! nncert-fpattack: the attack of fp-exploit-verified-nns.md on verifiers
//! that reason in real arithmetic, and the check that nncert's sound mode
//! resists it.
//!
//! - `perturbation`: the float32 box of inputs that satisfy `‖x − x0‖∞ ≤ ε`
//!   (and [0, 1]) read in float32 and in float64 (Appendix A).
//! - `oracle`: the verifiers attacked: the real-arithmetic MILP (MIPVerify's
//!   formulation, "worst" objective and τ queries), real-arithmetic β-CROWN
//!   branch and bound (decision queries), and nncert's sound pipeline.
//! - `climb`: hill climbing on 4×4 tiles with U(−u, u) perturbations (Appendix A).
//! - `incomplete`: §5's 13×13 network on which real-arithmetic CROWN is
//!   fooled by float32, and the attack on it.
//! - `pipeline`: per seed image, brightness bisection (step 1), τ search
//!   (step 2), hill climbing per float32 engine, with and without the gap (step 3).

pub mod climb;
pub mod incomplete;
pub mod oracle;
pub mod perturbation;
pub mod pipeline;

/// Carlini–Wagner margin `y_t − max_{i≠t} y_i` (eq. 1): positive iff `t` wins.
pub fn cw_loss(y: &[f64], t: usize) -> f64 {
    let other = (0..y.len())
        .filter(|&i| i != t)
        .map(|i| y[i])
        .fold(f64::NEG_INFINITY, f64::max);
    y[t] - other
}
