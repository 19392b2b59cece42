//! Input sets and output properties.

use serde::{Deserialize, Serialize};

/// An axis-aligned box `lo ≤ x ≤ hi`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputBox {
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
}

impl InputBox {
    pub fn dim(&self) -> usize {
        self.lo.len()
    }
    pub fn contains(&self, x: &[f64]) -> bool {
        x.len() == self.dim()
            && x.iter()
                .zip(self.lo.iter().zip(&self.hi))
                .all(|(v, (l, h))| l <= v && v <= h)
    }
    pub fn center(&self) -> Vec<f64> {
        self.lo
            .iter()
            .zip(&self.hi)
            .map(|(l, h)| l + (h - l) / 2.0)
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Norm {
    L1,
    L2,
    Linf,
}

impl Norm {
    /// ‖v‖ in this norm.
    pub fn of(self, v: impl Iterator<Item = f64>) -> f64 {
        match self {
            Norm::L1 => v.map(f64::abs).sum(),
            Norm::L2 => v.map(|x| x * x).sum::<f64>().sqrt(),
            Norm::Linf => v.fold(0.0, |m, x| m.max(x.abs())),
        }
    }
}

impl std::str::FromStr for Norm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "1" | "l1" | "L1" => Ok(Norm::L1),
            "2" | "l2" | "L2" => Ok(Norm::L2),
            "inf" | "linf" | "Linf" | "L∞" => Ok(Norm::Linf),
            other => Err(format!("unknown norm `{other}` (expected inf, 2 or 1)")),
        }
    }
}

/// `{x : ‖x − center‖ ≤ eps, domain.0 ≤ x ≤ domain.1}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NormBall {
    pub center: Vec<f64>,
    pub eps: f64,
    pub norm: Norm,
    pub domain: (f64, f64),
}

impl NormBall {
    /// The smallest box containing the clipped ball.
    pub fn bounding_box(&self) -> InputBox {
        let (lo, hi) = self.domain;
        InputBox {
            lo: self.center.iter().map(|c| (c - self.eps).max(lo)).collect(),
            hi: self.center.iter().map(|c| (c + self.eps).min(hi)).collect(),
        }
    }
    pub fn contains(&self, x: &[f64]) -> bool {
        let (lo, hi) = self.domain;
        x.len() == self.center.len()
            && x.iter().all(|&v| lo <= v && v <= hi)
            && self.norm.of(x.iter().zip(&self.center).map(|(a, b)| a - b)) <= self.eps
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InputSet {
    Box(InputBox),
    Ball(NormBall),
}

impl InputSet {
    pub fn bounding_box(&self) -> InputBox {
        match self {
            InputSet::Box(b) => b.clone(),
            InputSet::Ball(b) => b.bounding_box(),
        }
    }
    pub fn contains(&self, x: &[f64]) -> bool {
        match self {
            InputSet::Box(b) => b.contains(x),
            InputSet::Ball(b) => b.contains(x),
        }
    }
    pub fn dim(&self) -> usize {
        match self {
            InputSet::Box(b) => b.dim(),
            InputSet::Ball(b) => b.center.len(),
        }
    }
}

/// `coeffs · y ≤ rhs` over the network outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearConstraint {
    pub coeffs: Vec<f64>,
    pub rhs: f64,
}

impl LinearConstraint {
    pub fn holds(&self, y: &[f64]) -> bool {
        self.coeffs.iter().zip(y).map(|(c, v)| c * v).sum::<f64>() <= self.rhs
    }
}

/// OR over terms of AND over constraints: the unsafe output region.
/// A term with no constraints is the whole output space.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct OutputDnf {
    pub terms: Vec<Vec<LinearConstraint>>,
}

impl OutputDnf {
    /// Whether `y` lies in the unsafe region.
    pub fn contains(&self, y: &[f64]) -> bool {
        self.terms.iter().any(|t| t.iter().all(|c| c.holds(y)))
    }
}

/// Inputs in `input` whose output falls in `unsafe_output` are counterexamples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub input: InputSet,
    pub unsafe_output: OutputDnf,
}

/// A verification problem: a counterexample to any case refutes it (`sat`);
/// the property holds (`unsat`) when no case has one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Property {
    pub num_inputs: usize,
    pub num_outputs: usize,
    pub cases: Vec<Case>,
}

impl Property {
    /// Whether (x, y) is a counterexample to some case.
    pub fn is_counterexample(&self, x: &[f64], y: &[f64]) -> bool {
        self.cases
            .iter()
            .any(|c| c.input.contains(x) && c.unsafe_output.contains(y))
    }
}
