//! Step 3 of the attack (Appendix A): from the quasi-adversarial point, add
//! U(−u, u) noise to one tile at a time, keep the change only when the
//! engine's CW loss strictly drops, and stay inside the perturbation box.

use crate::cw_loss;
use crate::perturbation::project;
use nncert_exec::{Engine, EngineKind, WINOGRAD_TILE};
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
    /// Rows and columns at the start of each tile left unperturbed (the
    /// paper's offset; 0 on CPUs). Ignored on flat inputs.
    pub offset: usize,
    pub seed: u64,
}

impl Default for ClimbConfig {
    fn default() -> Self {
        ClimbConfig {
            sweeps: 1000,
            scale: 2e-7,
            tile: 4,
            offset: 0,
            seed: 0,
        }
    }
}

impl ClimbConfig {
    /// The tiles Appendix A uses for an engine: for Winograd (offset 4,
    /// stride 9), so that the perturbed 5×5 patches fall in distinct 9×9
    /// output tiles and their errors stay independent; `self`'s otherwise.
    pub fn for_engine(&self, kind: EngineKind) -> ClimbConfig {
        match kind {
            EngineKind::Winograd => ClimbConfig {
                tile: WINOGRAD_TILE,
                offset: 4,
                ..*self
            },
            _ => *self,
        }
    }
}

/// Where the climb ended: the point, the engine's CW loss there, and the
/// sweeps run.
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
    Ok(engine_losses(engine, g, x, label)?[0])
}

/// The engine's CW loss of `label` at each input of the batch `xs`.
fn engine_losses(
    engine: &Engine,
    g: &Graph,
    xs: &[f32],
    label: usize,
) -> nncert_model::Result<Vec<f64>> {
    let y = engine.run(g, xs)?;
    Ok(y.chunks(g.output_len())
        .map(|row| {
            let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            cw_loss(&row, label)
        })
        .collect())
}

/// The tiles of the input as index lists: of every `tile × tile` square of a
/// `[1, C, H, W]` input, the part from `offset` on in both axes, all
/// channels; of a flat input, runs of `tile²` values.
pub fn tiles(input_shape: &[usize], tile: usize, offset: usize) -> Vec<Vec<usize>> {
    let (c, h, w) = match *input_shape {
        [1, c, h, w] => (c, h, w),
        _ => (1, 1, input_shape.iter().product()),
    };
    let (th, tw, skip) = if h == 1 {
        (1, tile * tile, 0)
    } else {
        (tile, tile, offset)
    };
    let mut out = Vec::new();
    for y0 in (0..h).step_by(th) {
        for x0 in (0..w).step_by(tw) {
            let mut idx = Vec::new();
            for ch in 0..c {
                for y in (y0 + skip)..(y0 + th).min(h) {
                    for x in (x0 + skip)..(x0 + tw).min(w) {
                        idx.push((ch * h + y) * w + x);
                    }
                }
            }
            if !idx.is_empty() {
                out.push(idx);
            }
        }
    }
    out
}

/// Most candidates evaluated in one batch.
const MAX_BATCH: usize = 32;

/// Hill climbing from `start` (inside `[lo, hi]`) until the loss is negative
/// or the sweeps run out: per tile in turn, the current point with U(−u, u)
/// noise on that tile, kept on a strict decrease of the loss.
///
/// The candidates of the next tiles are evaluated speculatively as one
/// batch (each built from the current point with its tile's noise, drawn
/// in the sequential order); the first improving one is kept and the rest
/// are rebuilt from it. Engines give a batch's rows the bits they give each
/// row alone, so this is the sequential climb, step for step, at a fraction
/// of the cost where one row costs as much as many (a dense GEMM packs its
/// weights per call). The batch doubles while nothing improves and starts
/// again at one after an improvement.
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
    let (tiles, len) = (tiles(g.input_shape(), cfg.tile, cfg.offset), x.len());
    for sweep in 0..cfg.sweeps {
        if loss < 0.0 {
            return Ok(Climb {
                x,
                loss,
                sweeps: sweep,
            });
        }
        let noise: Vec<Vec<f32>> = tiles
            .iter()
            .map(|t| {
                t.iter()
                    .map(|_| rng.gen_range(-cfg.scale..=cfg.scale))
                    .collect()
            })
            .collect();
        let (mut next, mut batch) = (0, 1);
        while next < tiles.len() {
            let end = (next + batch).min(tiles.len());
            let mut candidates = Vec::with_capacity((end - next) * len);
            for (t, n) in tiles[next..end].iter().zip(&noise[next..end]) {
                let mut cand = x.clone();
                for (&i, &d) in t.iter().zip(n) {
                    cand[i] = (cand[i] + d).clamp(lo[i], hi[i]);
                }
                candidates.extend(cand);
            }
            let losses = engine_losses(engine, g, &candidates, label)?;
            match losses.iter().position(|&l| l < loss) {
                Some(k) => {
                    x.copy_from_slice(&candidates[k * len..][..len]);
                    loss = losses[k];
                    (next, batch) = (next + k + 1, 1);
                }
                None => (next, batch) = (end, (2 * batch).min(MAX_BATCH)),
            }
        }
    }
    Ok(Climb {
        x,
        loss,
        sweeps: cfg.sweeps,
    })
}
