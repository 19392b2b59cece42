//! The training losses: cross-entropy on the nominal logits, on IBP's
//! worst-case logits (Gowal et al.), and the constrained-IBP objective
//! κ·ℓ(z, y) + (1 − κ)·ℓ(ẑ(ε), y) + λ·Σ_k ‖z̄_k − z̲_k‖² (constrained-ibp-training.md §3.3).

use crate::net::{IbpBounds, Net};
use crate::Result;
use candle_core::{Tensor, D};

/// Mean cross-entropy of logits `[B, K]` against labels `[B]` (u32).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_norm = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let picked = shifted.gather(&labels.unsqueeze(1)?, 1)?;
    Ok((log_norm - picked)?.mean_all()?)
}

/// ẑ: the true class at its lower bound, the others at their upper bounds.
pub fn worst_case_logits(b: &IbpBounds, labels: &Tensor) -> Result<Tensor> {
    let classes = b.lo.dim(1)?;
    let onehot = labels
        .unsqueeze(1)?
        .broadcast_eq(&Tensor::arange(0u32, classes as u32, labels.device())?.unsqueeze(0)?)?
        .to_dtype(b.lo.dtype())?;
    let gap = (&b.hi - &b.lo)?;
    Ok((&b.hi - (onehot * gap)?)?)
}

/// Which images of the batch IBP verifies: ẑ's argmax is the label
/// (every other logit's upper bound below the label's lower bound).
pub fn ibp_verified(b: &IbpBounds, labels: &Tensor) -> Result<Vec<bool>> {
    let z = worst_case_logits(b, labels)?;
    let best = z.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let z = z.to_vec2::<f32>()?;
    let labels = labels.to_vec1::<u32>()?;
    Ok(best
        .iter()
        .zip(&labels)
        .zip(&z)
        .map(|((&b, &y), row)| {
            b == y
                && row
                    .iter()
                    .enumerate()
                    .all(|(t, &v)| t == y as usize || v < row[y as usize])
        })
        .collect())
}

/// The weights of one step's loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossWeights {
    /// Radius of the training ball.
    pub eps: f64,
    /// Weight of the nominal loss (1: nominal training only).
    pub kappa: f64,
    /// Weight of the hidden-layer bound size (0: plain IBP).
    pub lambda: f64,
}

/// The parts of one step's loss (scalars), `total` the one to minimise.
pub struct LossParts {
    pub total: Tensor,
    pub nominal: Tensor,
    pub robust: Tensor,
    pub bound_size: Tensor,
}

pub fn ibp_loss(net: &Net, x: &Tensor, y: &Tensor, w: LossWeights) -> Result<LossParts> {
    let nominal = cross_entropy(&net.forward(x)?, y)?;
    let bounds = net.ibp(x, w.eps)?;
    let robust = cross_entropy(&worst_case_logits(&bounds, y)?, y)?;
    let total = ((&nominal * w.kappa)? + (&robust * (1.0 - w.kappa))?)?;
    let total = (total + (&bounds.hidden_size * w.lambda)?)?;
    Ok(LossParts {
        total,
        nominal,
        robust,
        bound_size: bounds.hidden_size,
    })
}
