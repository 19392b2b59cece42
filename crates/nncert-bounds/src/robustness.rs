//! Local robustness of a classifier: lower bounds on `y_label − y_t` for
//! every other label `t` over a norm ball (positive for all t = certified).

use crate::{lower_bounds, propagate, BoundConfig, BoundsError, Region};
use nncert_model::Graph;
use nncert_spec::{InputSet, Norm, NormBall};

/// A norm ball around one input, clipped to the input domain.
#[derive(Clone, Copy, Debug)]
pub struct Ball {
    pub eps: f64,
    pub norm: Norm,
    pub domain: (f64, f64),
}

/// Lower bounds of `y_label − y_t` for t = 0.. (label skipped), over the ball.
pub fn robustness_margins(
    g: &Graph,
    x0: &[f64],
    label: usize,
    ball: Ball,
    cfg: &BoundConfig,
) -> Result<Vec<f64>, BoundsError> {
    let classes = g.output_len();
    let set = InputSet::Ball(NormBall {
        center: x0.to_vec(),
        eps: ball.eps,
        norm: ball.norm,
        domain: ball.domain,
    });
    let region = Region::of(&set, cfg.soundness);
    let nb = propagate(g, &region, cfg)?;
    let targets: Vec<usize> = (0..classes).filter(|&t| t != label).collect();
    let mut spec = vec![0.0; targets.len() * classes];
    for (r, &t) in targets.iter().enumerate() {
        spec[r * classes + label] = 1.0;
        spec[r * classes + t] = -1.0;
    }
    lower_bounds(g, &nb, &region, cfg, &spec, targets.len())
}

/// Whether every margin is strictly positive over the ball.
pub fn is_certified(
    g: &Graph,
    x0: &[f64],
    label: usize,
    ball: Ball,
    cfg: &BoundConfig,
) -> Result<bool, BoundsError> {
    Ok(robustness_margins(g, x0, label, ball, cfg)?
        .iter()
        .all(|&m| m > 0.0))
}
