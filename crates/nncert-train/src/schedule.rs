//! Schedules over training steps (Gowal et al.'s recipe): ε and κ stay at
//! 0 and 1 for a warm-up, ramp to their final values, then hold; the
//! learning rate drops tenfold at given fractions of training.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ramp {
    Linear,
    /// Smoothstep 3t² − 2t³: no jump in slope at either end.
    Smooth,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub total_steps: u64,
    pub warmup_steps: u64,
    pub ramp_steps: u64,
    pub ramp: Ramp,
    pub eps_train: f64,
    /// κ after the ramp (Gowal et al.: 0.5).
    pub kappa_end: f64,
    pub lr: f64,
    /// Fractions of `total_steps` after which the learning rate is divided by 10.
    pub lr_decay_at: Vec<f64>,
}

impl Schedule {
    /// Progress of the ramp at `step`, in [0, 1].
    pub fn ramp_progress(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return 0.0;
        }
        let t = ((step - self.warmup_steps) as f64 / self.ramp_steps.max(1) as f64).min(1.0);
        match self.ramp {
            Ramp::Linear => t,
            Ramp::Smooth => t * t * (3.0 - 2.0 * t),
        }
    }

    pub fn eps(&self, step: u64) -> f64 {
        self.eps_train * self.ramp_progress(step)
    }

    pub fn kappa(&self, step: u64) -> f64 {
        1.0 + (self.kappa_end - 1.0) * self.ramp_progress(step)
    }

    pub fn lr(&self, step: u64) -> f64 {
        let done = step as f64 / self.total_steps.max(1) as f64;
        let drops = self.lr_decay_at.iter().filter(|&&f| done >= f).count();
        self.lr * 0.1f64.powi(drops as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_warm_up_ramp_and_hold() {
        let s = Schedule {
            total_steps: 100,
            warmup_steps: 10,
            ramp_steps: 40,
            ramp: Ramp::Smooth,
            eps_train: 0.2,
            kappa_end: 0.5,
            lr: 1e-3,
            lr_decay_at: vec![0.5, 0.9],
        };
        assert_eq!(s.eps(0), 0.0);
        assert_eq!(s.kappa(9), 1.0);
        assert!((s.eps(30) - 0.1).abs() < 1e-12, "smoothstep is ½ halfway");
        assert!(s.eps(20) < 0.2 * 0.25 && s.eps(20) > 0.0);
        assert_eq!(s.eps(50), 0.2);
        assert_eq!(s.eps(99), 0.2);
        assert_eq!(s.kappa(60), 0.5);
        assert_eq!(s.lr(49), 1e-3);
        assert!((s.lr(50) - 1e-4).abs() < 1e-15);
        assert!((s.lr(95) - 1e-5).abs() < 1e-16);
        let linear = Schedule {
            ramp: Ramp::Linear,
            ..s
        };
        assert!((linear.eps(20) - 0.05).abs() < 1e-12);
    }
}
