//! Falsification by projected gradient descent (Madry et al. 2018) on one
//! linear margin `spec · y`, over a box or a norm ball clipped to the input
//! domain: the first restart starts at the centre, the others at uniform
//! points of the set's box. Whenever the f64 margin reaches the unsafe side, the
//! point, rounded to float32 inside the box, is re-executed on every engine
//! (`Models::confirm`); only a confirmed point ends the search.

use crate::witness::f32_point_inside;
use crate::{Counterexample, Models, Result};
use nncert_bounds::{ball_minimiser, spec_gradient};
use nncert_model::Deadline;
use nncert_spec::{InputBox, InputSet, Norm, NormBall, Property};
use rand::{Rng, SeedableRng};

#[derive(Clone, Copy, Debug)]
pub struct PgdConfig {
    pub steps: usize,
    pub restarts: usize,
    pub seed: u64,
}

impl Default for PgdConfig {
    fn default() -> Self {
        PgdConfig {
            steps: 40,
            restarts: 3,
            seed: 0,
        }
    }
}

/// Searches `set` for a confirmed counterexample to `p` with `spec · y ≤ rhs`.
pub fn pgd(
    m: &Models,
    p: &Property,
    set: &InputSet,
    spec: &[f64],
    rhs: f64,
    cfg: &PgdConfig,
    deadline: Deadline,
) -> Result<Option<Counterexample>> {
    let b = set.bounding_box();
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let centre = match set {
        InputSet::Ball(ball) => ball.center.clone(),
        InputSet::Box(b) => b.center(),
    };
    for restart in 0..cfg.restarts {
        let start = if restart == 0 {
            centre.clone()
        } else {
            (0..b.dim())
                .map(|i| b.lo[i] + (b.hi[i] - b.lo[i]) * rng.gen::<f64>())
                .collect()
        };
        let found = descend_from(m, p, set, spec, rhs, start, cfg.steps, deadline)?;
        if found.is_some() || deadline.expired() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// One PGD run of `steps` steps from `start`, the step length decaying
/// linearly from 2.5/steps of the radius (at least 1/20 of it).
#[allow(clippy::too_many_arguments)]
pub fn descend_from(
    m: &Models,
    p: &Property,
    set: &InputSet,
    spec: &[f64],
    rhs: f64,
    start: Vec<f64>,
    steps: usize,
    deadline: Deadline,
) -> Result<Option<Counterexample>> {
    let b = set.bounding_box();
    let fraction = (2.5 / steps.max(1) as f64).max(1.0 / 20.0);
    let mut x = project(set, &b, start);
    for k in 0..=steps {
        if deadline.expired() {
            return Ok(None);
        }
        let (value, grad) = spec_gradient(m.bounded, &x, spec, 1)?;
        if value[0] <= rhs {
            if let Some(ce) = f32_point_inside(&x, &b)
                .map(|x32| m.confirm(p, &[x32]))
                .transpose()?
                .flatten()
            {
                return Ok(Some(ce));
            }
        }
        let step = fraction * (1.0 - k as f64 / (steps + 1) as f64);
        let next = match set {
            InputSet::Ball(ball) => ball_minimiser(&grad, &x, step * ball.eps, ball.norm),
            // A box is a unit L∞ ball once each coordinate is scaled by its half-width.
            InputSet::Box(b) => (0..x.len())
                .map(|i| x[i] - step * 0.5 * (b.hi[i] - b.lo[i]) * grad[i].signum())
                .collect(),
        };
        x = project(set, &b, next);
    }
    Ok(None)
}

/// Back into the ball (radial scaling for L2 and L1), then into the box.
fn project(set: &InputSet, b: &InputBox, mut x: Vec<f64>) -> Vec<f64> {
    if let InputSet::Ball(ball) = set {
        radial_shrink(ball, &mut x);
    }
    x.iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = v.clamp(b.lo[i], b.hi[i]));
    x
}

fn radial_shrink(ball: &NormBall, x: &mut [f64]) {
    if ball.norm != Norm::Linf {
        let d = ball.norm.of(x.iter().zip(&ball.center).map(|(v, c)| v - c));
        if d > ball.eps {
            let shrink = ball.eps / d * (1.0 - 1e-9);
            x.iter_mut()
                .zip(&ball.center)
                .for_each(|(v, c)| *v = c + (*v - c) * shrink);
        }
    }
}
