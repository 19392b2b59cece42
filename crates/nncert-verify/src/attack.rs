//! Falsification by projected gradient descent (Madry et al. 2018) on one
//! linear margin `spec · y`, over a box or a norm ball clipped to the input
//! domain: the first restart starts at the centre, the others at uniform
//! points of the set's box. Whenever the f64 margin reaches the unsafe side, the
//! point, rounded to float32 inside the box, is re-executed on every engine
//! (`Models::confirm`); only a confirmed point ends the search.

use crate::witness::f32_point_inside;
use crate::{Counterexample, Models, Result};
use nncert_bounds::{ball_minimiser, spec_gradient};
use nncert_model::{Deadline, Graph};
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
    for restart in 0..cfg.restarts {
        let start = restart_point(set, &b, restart, &mut rng);
        let found = descend_from(m, p, set, spec, rhs, start, cfg.steps, deadline)?;
        if found.is_some() || deadline.expired() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// One PGD run of `steps` steps from `start` (see `descent_step`).
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
        x = descent_step(set, &b, &x, &grad, (k, steps));
    }
    Ok(None)
}

/// The lowest value of `min_r spec_r · y(x)` over the `rows` rows of `spec`
/// that PGD finds in `set` (each step descends the row lowest there: the
/// untargeted CW margin when the rows are label − other): an upper bound on
/// the true minimum, to rank inputs by how near their boundary lies.
pub fn lowest_row_value(
    g: &Graph,
    set: &InputSet,
    spec: &[f64],
    rows: usize,
    cfg: &PgdConfig,
) -> Result<f64> {
    let b = set.bounding_box();
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut lowest = f64::INFINITY;
    for restart in 0..cfg.restarts {
        let start = restart_point(set, &b, restart, &mut rng);
        let mut x = project(set, &b, start);
        for k in 0..=cfg.steps {
            let (values, grads) = spec_gradient(g, &x, spec, rows)?;
            let (r, &v) = values
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .expect("at least one row");
            lowest = lowest.min(v);
            x = descent_step(
                set,
                &b,
                &x,
                &grads[r * x.len()..][..x.len()],
                (k, cfg.steps),
            );
        }
    }
    Ok(lowest)
}

/// PGD's lowest margin `y_label − max_{t≠label} y_t` over `ball` (an upper
/// bound on the true worst margin; the ball's centre ranks by it).
pub fn lowest_margin(g: &Graph, ball: &NormBall, label: usize, cfg: &PgdConfig) -> Result<f64> {
    let classes = g.output_len();
    let spec = margin_rows(label, classes);
    lowest_row_value(g, &InputSet::Ball(ball.clone()), &spec, classes - 1, cfg)
}

/// The rows `y_label − y_t`, one per other label `t` in ascending order.
pub fn margin_rows(label: usize, classes: usize) -> Vec<f64> {
    let mut spec = vec![0.0; (classes - 1) * classes];
    for (row, t) in (0..classes).filter(|&t| t != label).enumerate() {
        spec[row * classes + label] = 1.0;
        spec[row * classes + t] = -1.0;
    }
    spec
}

/// The first restart starts at the set's centre, the others at uniform
/// points of its box.
fn restart_point(set: &InputSet, b: &InputBox, restart: usize, rng: &mut impl Rng) -> Vec<f64> {
    match set {
        _ if restart > 0 => (0..b.dim())
            .map(|i| b.lo[i] + (b.hi[i] - b.lo[i]) * rng.gen::<f64>())
            .collect(),
        InputSet::Ball(ball) => ball.center.clone(),
        InputSet::Box(b) => b.center(),
    }
}

/// Step `k` of `steps` against `grad` from `x`, projected into `set`: its
/// length decays linearly from 2.5/steps of the radius (at least 1/20 of it).
fn descent_step(
    set: &InputSet,
    b: &InputBox,
    x: &[f64],
    grad: &[f64],
    (k, steps): (usize, usize),
) -> Vec<f64> {
    let fraction = (2.5 / steps.max(1) as f64).max(1.0 / 20.0);
    let step = fraction * (1.0 - k as f64 / (steps + 1) as f64);
    let next = match set {
        InputSet::Ball(ball) => ball_minimiser(grad, x, step * ball.eps, ball.norm),
        // A box is a unit L∞ ball once each coordinate is scaled by its half-width.
        InputSet::Box(_) => (0..x.len())
            .map(|i| x[i] - step * 0.5 * (b.hi[i] - b.lo[i]) * grad[i].signum())
            .collect(),
    };
    project(set, b, next)
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
