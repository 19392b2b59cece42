//! Evaluation of a trained network: clean error, PGD error (Madry et al.:
//! random starts, signed-gradient steps on the margin loss), and verified
//! error by nncert-bounds' IBP and CROWN on the exported graph, in sound
//! (float32) mode unless asked otherwise.

use crate::loss::onehot;
use crate::net::{batch, Net};
use crate::{Result, TrainError};
use candle_core::{Tensor, Var, D};
use nncert_bounds::{is_certified, Ball, BoundConfig, Method, Soundness};
use nncert_data::Dataset;
use nncert_model::passes::{canonicalize, PassOptions};
use nncert_model::Graph;
use nncert_spec::Norm;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

#[derive(Clone, Copy, Debug)]
pub struct EvalConfig {
    pub eps: f64,
    pub pgd_steps: usize,
    pub pgd_restarts: usize,
    pub seed: u64,
    pub soundness: Soundness,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub count: usize,
    pub eps: f64,
    pub sound: bool,
    /// Percentages of the `count` images.
    pub clean_error: f64,
    pub pgd_error: f64,
    pub ibp_verified_error: f64,
    pub crown_verified_error: f64,
    /// Images IBP verifies and CROWN does not (0 for a consistent pair).
    pub ibp_only: usize,
}

/// Per image: correct, survives PGD, verified by IBP, verified by CROWN.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImageEval {
    pub correct: bool,
    pub pgd_robust: bool,
    pub ibp: bool,
    pub crown: bool,
}

/// Evaluates `g` (a graph of [`Net::to_graph`]'s form) on `ds`;
/// `progress` is called after each image's bounds.
pub fn evaluate(
    g: &Graph,
    ds: &Dataset,
    cfg: &EvalConfig,
    progress: &mut dyn FnMut(usize),
) -> Result<(EvalReport, Vec<ImageEval>)> {
    let net = Net::from_graph(g)?;
    let mut images = vec![ImageEval::default(); ds.len()];
    let all: Vec<usize> = (0..ds.len()).collect();
    for idx in all.chunks(500) {
        let (x, y) = batch(ds, idx)?;
        let robust = pgd_robust(&net, &x, &y, cfg)?;
        let pred = net.forward(&x)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let labels = y.to_vec1::<u32>()?;
        for (k, &i) in idx.iter().enumerate() {
            images[i].correct = pred[k] == labels[k];
            images[i].pgd_robust = images[i].correct && robust[k];
        }
    }
    let opts = match cfg.soundness {
        Soundness::Real => PassOptions::default(),
        Soundness::Float32 => PassOptions::float32_exact(),
    };
    let bounded = canonicalize(g, opts)?.0;
    let ball = Ball {
        eps: cfg.eps,
        norm: Norm::Linf,
        domain: (0.0, 1.0),
    };
    for (i, image) in images.iter_mut().enumerate() {
        if image.correct {
            let x0: Vec<f64> = ds.image(i).iter().map(|&v| v as f64).collect();
            let label = ds.labels[i] as usize;
            let check = |method| {
                is_certified(
                    &bounded,
                    &x0,
                    label,
                    ball,
                    &BoundConfig::new(method, cfg.soundness),
                )
            };
            image.ibp = check(Method::Ibp)?;
            image.crown = check(Method::Crown)?;
        }
        progress(i + 1);
    }
    let pct = |f: &dyn Fn(&ImageEval) -> bool| {
        100.0 * images.iter().filter(|e| !f(e)).count() as f64 / ds.len().max(1) as f64
    };
    let report = EvalReport {
        count: ds.len(),
        eps: cfg.eps,
        sound: cfg.soundness == Soundness::Float32,
        clean_error: pct(&|e| e.correct),
        pgd_error: pct(&|e| e.pgd_robust),
        ibp_verified_error: pct(&|e| e.ibp),
        crown_verified_error: pct(&|e| e.crown),
        ibp_only: images.iter().filter(|e| e.ibp && !e.crown).count(),
    };
    Ok((report, images))
}

/// Whether each image of the batch keeps its label through every PGD
/// restart (an image misclassified at any iterate is not robust).
pub fn pgd_robust(net: &Net, x0: &Tensor, y: &Tensor, cfg: &EvalConfig) -> Result<Vec<bool>> {
    let attack = Pgd {
        eps: cfg.eps,
        steps: cfg.pgd_steps,
        restarts: cfg.pgd_restarts,
        seed: cfg.seed,
    };
    Ok(pgd(net, x0, y, &attack)?.robust)
}

/// An L∞ PGD attack (Madry et al.) on the margin loss.
#[derive(Clone, Copy, Debug)]
pub struct Pgd {
    pub eps: f64,
    pub steps: usize,
    pub restarts: usize,
    pub seed: u64,
}

pub struct PgdOutcome {
    /// Per image: no iterate of any restart was misclassified.
    pub robust: Vec<bool>,
    /// The last restart's final iterate (the adversarial batch for training).
    pub last: Tensor,
}

/// Uniform random start in the ball, `steps` signed-gradient steps of
/// 2.5ε/steps on the margin `max_{t≠y} z_t − z_y`, projected on the ball
/// clipped to [0, 1]; repeated `restarts` times.
pub fn pgd(net: &Net, x0: &Tensor, y: &Tensor, a: &Pgd) -> Result<PgdOutcome> {
    let n = y.dim(0)?;
    let mut robust = vec![true; n];
    if a.eps <= 0.0 || a.restarts == 0 {
        return Ok(PgdOutcome {
            robust,
            last: x0.clone(),
        });
    }
    let classes = net.classes();
    let onehot = onehot(y, classes, x0.dtype())?;
    let (lo, hi) = (
        (x0 - a.eps)?.clamp(0f32, 1f32)?,
        (x0 + a.eps)?.clamp(0f32, 1f32)?,
    );
    let step = 2.5 * a.eps / a.steps.max(1) as f64;
    let mut rng = StdRng::seed_from_u64(a.seed);
    let mut x = x0.clone();
    for _ in 0..a.restarts {
        let noise: Vec<f32> = (0..x0.elem_count())
            .map(|_| rng.gen_range(-a.eps..=a.eps) as f32)
            .collect();
        let noise = Tensor::from_vec(noise, x0.shape(), x0.device())?;
        x = (x0 + noise)?.clamp(&lo, &hi)?;
        for k in 0..=a.steps {
            let v = Var::from_tensor(&x)?;
            let logits = net.forward(v.as_tensor())?;
            let label_logit = (&logits * &onehot)?.sum(D::Minus1)?;
            let others = (&logits - (&onehot * 1e4)?)?.max(D::Minus1)?;
            let margin = (others - label_logit)?;
            for (i, &m) in margin.to_vec1::<f32>()?.iter().enumerate() {
                if m > 0.0 {
                    robust[i] = false;
                }
            }
            if k == a.steps {
                break;
            }
            let grads = margin.sum_all()?.backward()?;
            let g = grads
                .get(&v)
                .ok_or_else(|| TrainError::Invalid("no input gradient".into()))?;
            x = (x + (g.detach().sign()? * step)?)?.clamp(&lo, &hi)?;
        }
    }
    Ok(PgdOutcome { robust, last: x })
}
