//! The training losses: cross-entropy on the nominal logits, on IBP's
//! worst-case logits (Gowal et al.), and the constrained-IBP objective
//! κ·ℓ(z, y) + (1 − κ)·ℓ(ẑ(ε), y) + λ·Σ_k ‖z̄_k − z̲_k‖² (constrained-ibp-training.md §3.3).

use crate::crown_ibp::crown_ibp_margins;
use crate::eval::{pgd, Pgd};
use crate::net::{IbpBounds, Net};
use crate::Result;
use candle_core::{DType, Tensor, D};

/// Mean cross-entropy of logits `[B, K]` against labels `[B]` (u32).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_norm = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let picked = shifted.gather(&labels.unsqueeze(1)?, 1)?;
    Ok((log_norm - picked)?.mean_all()?)
}

/// `[B, classes]`: 1 at each image's label.
pub fn onehot(labels: &Tensor, classes: usize, dtype: DType) -> Result<Tensor> {
    let all = Tensor::arange(0u32, classes as u32, labels.device())?.unsqueeze(0)?;
    Ok(labels.unsqueeze(1)?.broadcast_eq(&all)?.to_dtype(dtype)?)
}

/// ẑ: the true class at its lower bound, the others at their upper bounds.
pub fn worst_case_logits(b: &IbpBounds, labels: &Tensor) -> Result<Tensor> {
    let onehot = onehot(labels, b.lo.dim(1)?, b.lo.dtype())?;
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
    /// Weight of Xiao et al.'s ReLU-stability loss (0: off).
    pub relu_stability: f64,
}

/// The parts of one step's loss (scalars), `total` the one to minimise.
pub struct LossParts {
    pub total: Tensor,
    pub nominal: Tensor,
    pub robust: Tensor,
    pub bound_size: Tensor,
}

pub fn ibp_loss(net: &Net, x: &Tensor, y: &Tensor, w: LossWeights) -> Result<LossParts> {
    bound_loss(net, x, y, w, 0.0)
}

/// The robust loss on the margin lower bounds `β·CROWN-IBP + (1 − β)·IBP`
/// (Zhang et al. 2020): `ℓ(−m, y)`, which at β = 0 is IBP's `ℓ(ẑ, y)`
/// (cross-entropy is invariant to shifting every logit by `z̲_y`).
pub fn crown_ibp_loss(
    net: &Net,
    x: &Tensor,
    y: &Tensor,
    w: LossWeights,
    beta: f64,
) -> Result<LossParts> {
    bound_loss(net, x, y, w, beta)
}

fn bound_loss(net: &Net, x: &Tensor, y: &Tensor, w: LossWeights, beta: f64) -> Result<LossParts> {
    let nominal = cross_entropy(&net.forward(x)?, y)?;
    let bounds = net.ibp(x, w.eps)?;
    let worst = if beta == 0.0 {
        worst_case_logits(&bounds, y)?
    } else {
        let onehot = onehot(y, bounds.lo.dim(1)?, bounds.lo.dtype())?;
        let lower_y = (&onehot * &bounds.lo)?.sum_keepdim(D::Minus1)?;
        // IBP's margins z̲_y − z̄_t, 0 at t = y.
        let ibp = lower_y.broadcast_sub(&bounds.hi)?.mul(&(1.0 - &onehot)?)?;
        let crown = crown_ibp_margins(net, &bounds, y)?;
        ((crown * beta)? + (ibp * (1.0 - beta))?)?.neg()?
    };
    let robust = cross_entropy(&worst, y)?;
    let total = ((&nominal * w.kappa)? + (&robust * (1.0 - w.kappa))?)?;
    // Terms of weight 0 stay out of the graph: backward would still run them.
    let total = if w.lambda > 0.0 {
        (total + (&bounds.hidden_size * w.lambda)?)?
    } else {
        total
    };
    let total = if w.relu_stability > 0.0 {
        (total + (bounds.relu_stability()? * w.relu_stability)?)?
    } else {
        total
    };
    Ok(LossParts {
        total,
        nominal,
        robust,
        bound_size: bounds.hidden_size,
    })
}

/// Adversarial training's loss (Madry et al.): `κ·ℓ(z(x), y) + (1 − κ)·ℓ(z(x_adv), y)`
/// with `x_adv` from a PGD attack of radius `w.eps` (`w.lambda` unused).
pub fn pgd_loss(
    net: &Net,
    x: &Tensor,
    y: &Tensor,
    w: LossWeights,
    attack: Pgd,
) -> Result<LossParts> {
    let nominal = cross_entropy(&net.forward(x)?, y)?;
    let attack = Pgd {
        eps: w.eps,
        ..attack
    };
    let x_adv = pgd(net, x, y, &attack)?.last.detach();
    let robust = cross_entropy(&net.forward(&x_adv)?, y)?;
    let total = ((&nominal * w.kappa)? + (&robust * (1.0 - w.kappa))?)?;
    Ok(LossParts {
        total,
        bound_size: nominal.zeros_like()?,
        nominal,
        robust,
    })
}
