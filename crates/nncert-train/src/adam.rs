//! Adam (Kingma & Ba) over candle variables, with its moments kept so a
//! checkpoint resumes exactly.

use crate::Result;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

pub struct Adam {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Steps taken (for the bias correction).
    pub t: u64,
    /// First and second moments, one pair per variable.
    pub moments: Vec<(Tensor, Tensor)>,
}

impl Adam {
    pub fn new(vars: &[Var]) -> Result<Adam> {
        let moments = vars
            .iter()
            .map(|v| Ok((v.zeros_like()?, v.zeros_like()?)))
            .collect::<Result<_>>()?;
        Ok(Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            t: 0,
            moments,
        })
    }

    /// One step at learning rate `lr`; variables without a gradient stay.
    pub fn step(&mut self, vars: &[Var], grads: &GradStore, lr: f64) -> Result<()> {
        self.t += 1;
        let c1 = 1.0 - self.beta1.powi(self.t as i32);
        let c2 = 1.0 - self.beta2.powi(self.t as i32);
        for (v, (m, s)) in vars.iter().zip(self.moments.iter_mut()) {
            let Some(g) = grads.get(v) else { continue };
            // Detached: a gradient carries the step's whole graph, and moments
            // built on it would chain every step's graph together.
            let g = g.detach();
            *m = ((&*m * self.beta1)? + (&g * (1.0 - self.beta1))?)?.detach();
            *s = ((&*s * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?.detach();
            let update = (&*m / c1)?.div(&((&*s / c2)?.sqrt()? + self.eps)?)?;
            v.set(&(v.as_tensor().detach() - (update * lr)?)?)?;
        }
        Ok(())
    }
}
