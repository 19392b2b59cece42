//! Step 3 of the attack (Appendix A): from the quasi-adversarial point, add
//! U(−u, u) noise to one tile at a time, keep the change only when the
//! engine's CW loss strictly drops, and stay inside the perturbation box.

use crate::cw_loss;
use crate::perturbation::project;
use nncert_exec::Engine;
use nncert_model::Graph;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Copy, Debug)]
pub struct ClimbConfig {
    /// Passes over all tiles (the paper's N).
    pub sweeps: usize,
    /// Noise scale u.
    pub scale: f32,
    /// Tile side (the paper's stride, 4 on CPUs).
    pub tile: usize,
    pub seed: u64,
}

impl Default for ClimbConfig {
    fn default() -> Self {
        ClimbConfig {
            sweeps: 1000,
            scale: 2e-7,
            tile: 4,
            seed: 0,
        }
    }
}

/// Where the climb ended: the point, the engine's CW loss there, and the sweeps run.
#[derive(Clone, Debug)]
pub struct Climb {
    pub x: Vec<f32>,
    pub loss: f64,
    pub sweeps: usize,
}

/// The engine's CW loss of `label` at `x`.
pub fn engine_loss(
    engine: &Engine,
    g: &Graph,
    x: &[f32],
    label: usize,
) -> nncert_model::Result<f64> {
    let y: Vec<f64> = engine.run(g, x)?.iter().map(|&v| v as f64).collect();
    Ok(cw_loss(&y, label))
}

/// The tiles of the input as index lists: `tile × tile` squares of every
/// channel of a `[1, C, H, W]` input, or runs of `tile²` values of a flat one.
pub fn tiles(input_shape: &[usize], tile: usize) -> Vec<Vec<usize>> {
    let (c, h, w) = match *input_shape {
        [1, c, h, w] => (c, h, w),
        _ => (1, 1, input_shape.iter().product()),
    };
    let (th, tw) = if h == 1 {
        (1, tile * tile)
    } else {
        (tile, tile)
    };
    let mut out = Vec::new();
    for y0 in (0..h).step_by(th) {
        for x0 in (0..w).step_by(tw) {
            let mut idx = Vec::new();
            for ch in 0..c {
                for y in y0..(y0 + th).min(h) {
                    for x in x0..(x0 + tw).min(w) {
                        idx.push((ch * h + y) * w + x);
                    }
                }
            }
            out.push(idx);
        }
    }
    out
}

/// Hill climbing from `start` (inside `[lo, hi]`) until the loss is negative
/// or the sweeps run out.
pub fn hill_climb(
    engine: &Engine,
    g: &Graph,
    start: &[f32],
    (lo, hi): (&[f32], &[f32]),
    label: usize,
    cfg: &ClimbConfig,
) -> nncert_model::Result<Climb> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut x = start.to_vec();
    project(&mut x, lo, hi);
    let mut loss = engine_loss(engine, g, &x, label)?;
    let tiles = tiles(g.input_shape(), cfg.tile);
    for sweep in 0..cfg.sweeps {
        if loss < 0.0 {
            return Ok(Climb {
                x,
                loss,
                sweeps: sweep,
            });
        }
        for t in &tiles {
            let mut cand = x.clone();
            for &i in t {
                cand[i] = (cand[i] + rng.gen_range(-cfg.scale..=cfg.scale)).clamp(lo[i], hi[i]);
            }
            let l = engine_loss(engine, g, &cand, label)?;
            if l < loss {
                (x, loss) = (cand, l);
            }
        }
    }
    Ok(Climb {
        x,
        loss,
        sweeps: cfg.sweeps,
    })
}
