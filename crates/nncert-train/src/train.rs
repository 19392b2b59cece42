//! The training loop: seeded shuffles, one loss per batch (nominal, IBP or
//! constrained IBP by the weights of the schedule), Adam, a per-epoch
//! evaluation and log, and a checkpoint after every epoch that a later run
//! resumes from exactly.

use crate::adam::Adam;
use crate::eval::{pgd_robust, EvalConfig, Pgd};
use crate::loss::{crown_ibp_loss, ibp_loss, ibp_verified, pgd_loss, LossParts, LossWeights};
use crate::net::{batch, Architecture, Net, Normalization};
use crate::schedule::Schedule;
use crate::{Result, TrainError};
use candle_core::{Device, Tensor, D};
use nncert_data::Dataset;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub arch: Architecture,
    pub epochs: usize,
    pub batch: usize,
    pub schedule: Schedule,
    /// Weight of the hidden-layer bound size: 0 is IBP, > 0 constrained IBP.
    pub lambda: f64,
    #[serde(default)]
    pub method: Method,
    /// Weight of the ReLU-stability loss of Xiao et al. (the relu_stable models').
    #[serde(default)]
    pub relu_stability: f64,
    pub seed: u64,
    /// Radius at which each epoch's IBP-verified test error is measured.
    pub eps_test: f64,
    /// Test images evaluated after each epoch.
    pub eval_count: usize,
}

/// What the robust part of the loss is computed on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Method {
    /// IBP's worst-case logits (and the bound-size penalty when λ > 0).
    #[default]
    Ibp,
    /// PGD adversarial examples with this many steps (one random start).
    Pgd { steps: usize },
    /// CROWN-IBP margins mixed with IBP's, β moving from `beta_start` to
    /// `beta_end` along the ε ramp (Zhang et al.: 1 → 0).
    CrownIbp { beta_start: f64, beta_end: f64 },
}

/// One epoch's line of the log (means over its batches, then the test figures).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub step: u64,
    pub eps: f64,
    pub kappa: f64,
    pub lr: f64,
    pub loss: f64,
    pub nominal_loss: f64,
    pub robust_loss: f64,
    /// Mean hidden-layer bound size Σ_k mean (z̄_k − z̲_k)² over the epoch.
    pub bound_size: f64,
    pub seconds: f64,
    pub test_error: f64,
    /// Test error at `eps_test` under a short PGD ([`EPOCH_PGD_STEPS`] steps,
    /// one restart); NaN in logs written before it was measured.
    #[serde(default = "not_measured")]
    pub pgd_error: f64,
    /// Test error at `eps_test` by the candle IBP of the training graph.
    pub ibp_verified_error: f64,
}

fn not_measured() -> f64 {
    f64::NAN
}

/// What the caller sees after each step (for a progress bar).
pub struct StepInfo {
    pub epoch: usize,
    pub step: u64,
    pub loss: f64,
    pub eps: f64,
}

/// Training state that survives a restart.
pub struct Trainer {
    pub config: TrainConfig,
    pub net: Net,
    adam: Adam,
    pub epochs_done: usize,
    pub step: u64,
    pub log: Vec<EpochLog>,
}

#[derive(Serialize, Deserialize)]
struct CheckpointMeta {
    config: TrainConfig,
    epochs_done: usize,
    step: u64,
    adam_t: u64,
    log: Vec<EpochLog>,
    input: [usize; 3],
    classes: usize,
    norm: Normalization,
}

fn io(path: &Path, e: std::io::Error) -> TrainError {
    TrainError::Io {
        path: path.display().to_string(),
        source: e,
    }
}

impl Trainer {
    pub fn new(
        config: TrainConfig,
        input: [usize; 3],
        classes: usize,
        norm: Normalization,
    ) -> Result<Trainer> {
        let net = Net::new(&config.arch, input, classes, norm, config.seed)?;
        let adam = Adam::new(&net.vars())?;
        Ok(Trainer {
            config,
            net,
            adam,
            epochs_done: 0,
            step: 0,
            log: Vec::new(),
        })
    }

    /// Runs the remaining epochs; stops early (between epochs) once `stop`
    /// says so. Writes `checkpoint.{json,safetensors}` and `log.json` into
    /// `out` after every epoch, then calls `on_epoch` with its log line.
    pub fn run(
        &mut self,
        data: (&Dataset, &Dataset),
        out: &Path,
        on_step: &mut dyn FnMut(&StepInfo),
        on_epoch: &mut dyn FnMut(&EpochLog),
        stop: &dyn Fn() -> bool,
    ) -> Result<()> {
        let (train, test) = data;
        while self.epochs_done < self.config.epochs && !stop() {
            let line = self.epoch(train, test, on_step)?;
            self.log.push(line);
            self.epochs_done += 1;
            self.save_checkpoint(out)?;
            on_epoch(self.log.last().expect("just pushed"));
        }
        Ok(())
    }

    fn epoch(
        &mut self,
        train: &Dataset,
        test: &Dataset,
        on_step: &mut dyn FnMut(&StepInfo),
    ) -> Result<EpochLog> {
        let start = Instant::now();
        let epoch = self.epochs_done;
        // Seeded per epoch, so a resumed run shuffles as the uninterrupted one.
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.config.seed ^ (epoch as u64 + 1));
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng);
        let vars = self.net.vars();
        let s = &self.config.schedule;
        let mut sums = [0.0f64; 4];
        let mut batches = 0usize;
        for idx in order.chunks(self.config.batch) {
            let w = LossWeights {
                eps: s.eps(self.step),
                kappa: s.kappa(self.step),
                lambda: self.config.lambda,
                relu_stability: self.config.relu_stability,
            };
            let (x, y) = batch(train, idx)?;
            let parts = self.loss(&x, &y, w)?;
            let grads = parts.total.backward()?;
            self.adam.step(&vars, &grads, s.lr(self.step))?;
            let scalars = [
                &parts.total,
                &parts.nominal,
                &parts.robust,
                &parts.bound_size,
            ];
            for (sum, t) in sums.iter_mut().zip(scalars) {
                *sum += t.to_scalar::<f32>()? as f64;
            }
            batches += 1;
            self.step += 1;
            on_step(&StepInfo {
                epoch,
                step: self.step,
                loss: parts.total.to_scalar::<f32>()? as f64,
                eps: w.eps,
            });
        }
        let seconds = start.elapsed().as_secs_f64();
        let n = batches.max(1) as f64;
        let eval = test.take(self.config.eval_count);
        let e = epoch_errors(&self.net, &eval, self.config.eps_test, self.config.seed)?;
        Ok(EpochLog {
            epoch,
            step: self.step,
            eps: s.eps(self.step),
            kappa: s.kappa(self.step),
            lr: s.lr(self.step),
            loss: sums[0] / n,
            nominal_loss: sums[1] / n,
            robust_loss: sums[2] / n,
            bound_size: sums[3] / n,
            seconds,
            test_error: e[0],
            pgd_error: e[1],
            ibp_verified_error: e[2],
        })
    }

    /// One batch's loss by the configured method.
    fn loss(&self, x: &Tensor, y: &Tensor, w: LossWeights) -> Result<LossParts> {
        match self.config.method {
            Method::Ibp => ibp_loss(&self.net, x, y, w),
            Method::CrownIbp {
                beta_start,
                beta_end,
            } => {
                let t = self.config.schedule.ramp_progress(self.step);
                let beta = beta_start + (beta_end - beta_start) * t;
                crown_ibp_loss(&self.net, x, y, w, beta)
            }
            Method::Pgd { steps } => {
                let attack = Pgd {
                    eps: w.eps,
                    steps,
                    restarts: 1,
                    seed: self.config.seed ^ self.step,
                };
                pgd_loss(&self.net, x, y, w, attack)
            }
        }
    }

    pub fn save_checkpoint(&self, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (i, (v, (m, s))) in self.net.vars().iter().zip(&self.adam.moments).enumerate() {
            tensors.insert(format!("param.{i}"), v.as_tensor().clone());
            tensors.insert(format!("adam_m.{i}"), m.clone());
            tensors.insert(format!("adam_v.{i}"), s.clone());
        }
        candle_core::safetensors::save(&tensors, out.join("checkpoint.safetensors"))?;
        let meta = CheckpointMeta {
            config: self.config.clone(),
            epochs_done: self.epochs_done,
            step: self.step,
            adam_t: self.adam.t,
            log: self.log.clone(),
            input: self.net.input,
            classes: self.net.classes(),
            norm: self.net.norm,
        };
        write_json(&out.join("checkpoint.json"), &meta)?;
        write_json(&out.join("log.json"), &self.log)
    }

    /// The trainer saved in `dir` by [`Trainer::save_checkpoint`].
    pub fn resume(dir: &Path) -> Result<Trainer> {
        let path = dir.join("checkpoint.json");
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        let meta: CheckpointMeta = serde_json::from_str(&text)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
        let mut t = Trainer::new(meta.config, meta.input, meta.classes, meta.norm)?;
        let tensors =
            candle_core::safetensors::load(dir.join("checkpoint.safetensors"), &Device::Cpu)?;
        let get = |k: String| {
            tensors
                .get(&k)
                .cloned()
                .ok_or_else(|| TrainError::Invalid(format!("checkpoint lacks {k}")))
        };
        for (i, (v, (m, s))) in t.net.vars().iter().zip(&mut t.adam.moments).enumerate() {
            v.set(&get(format!("param.{i}"))?)?;
            *m = get(format!("adam_m.{i}"))?;
            *s = get(format!("adam_v.{i}"))?;
        }
        t.adam.t = meta.adam_t;
        t.epochs_done = meta.epochs_done;
        t.step = meta.step;
        t.log = meta.log;
        Ok(t)
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
    std::fs::write(path, text).map_err(|e| io(path, e))
}

/// PGD steps of the per-epoch error estimate.
pub const EPOCH_PGD_STEPS: usize = 20;

/// Clean, PGD and IBP-verified test error (percent) at `eps`, by the
/// training graph's own float32 passes (quick per-epoch figures; the
/// reported verified errors come from nncert-bounds in `eval`).
pub fn epoch_errors(net: &Net, ds: &Dataset, eps: f64, seed: u64) -> Result<[f64; 3]> {
    let mut wrong = [0usize; 3];
    let all: Vec<usize> = (0..ds.len()).collect();
    let pgd = EvalConfig {
        eps,
        pgd_steps: EPOCH_PGD_STEPS,
        pgd_restarts: 1,
        seed,
        soundness: nncert_bounds::Soundness::Float32,
    };
    for idx in all.chunks(500) {
        let (x, y) = batch(ds, idx)?;
        let pred = net.forward(&x)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let labels = y.to_vec1::<u32>()?;
        let robust = pgd_robust(net, &x, &y, &pgd)?;
        let verified = ibp_verified(&net.ibp(&x, eps)?, &y)?;
        for k in 0..idx.len() {
            let correct = pred[k] == labels[k];
            wrong[0] += usize::from(!correct);
            wrong[1] += usize::from(!(correct && robust[k]));
            wrong[2] += usize::from(!(correct && verified[k]));
        }
    }
    let n = ds.len().max(1) as f64;
    Ok(wrong.map(|w| 100.0 * w as f64 / n))
}
