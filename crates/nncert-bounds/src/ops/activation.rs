//! ReLU and leaky ReLU (exact in float32; CROWN relaxations), and the
//! monotone sigmoid, tanh, arctan (interval bounds only, for now).

use crate::fp::{MIN_SUBNORMAL32, U32, U64};
use crate::interval::Interval;

/// How the lower line of an unstable ReLU is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slopes {
    /// Fast-Lin: the lower line is parallel to the upper one.
    Parallel,
    /// CROWN / CNN-Cert-Ada: slope 1 if u ≥ −l, else the negative-side slope.
    Adaptive,
}

fn leaky(v: f64, alpha: f64) -> f64 {
    if v >= 0.0 {
        v
    } else {
        alpha * v
    }
}

/// ReLU is leaky ReLU with α = 0.
pub fn interval(x: &Interval, alpha: f64) -> Interval {
    Interval {
        lo: x.lo.iter().map(|&v| leaky(v, alpha)).collect(),
        hi: x.hi.iter().map(|&v| leaky(v, alpha)).collect(),
    }
}

/// Float32 computes α·z with one rounding; the analyser's slope products err
/// by at most 2u₆₄·|a|·m (charged as a radius).
pub fn error_radius(x: &Interval, alpha: f64) -> Vec<f64> {
    x.magnitude()
        .iter()
        .map(|m| {
            2.0 * U64 * m
                + if alpha != 0.0 {
                    U32 * alpha.abs() * m + MIN_SUBNORMAL32
                } else {
                    0.0
                }
        })
        .collect()
}

/// Lower and upper lines `(slope_l, slope_u, intercept_u)` of one neuron with input in [l, u]
/// (the lower line passes through the origin).
pub fn relaxation(l: f64, u: f64, alpha: f64, slopes: Slopes) -> (f64, f64, f64) {
    if l >= 0.0 {
        return (1.0, 1.0, 0.0);
    }
    if u <= 0.0 {
        return (alpha, alpha, 0.0);
    }
    let su = (u - alpha * l) / (u - l);
    let sl = match slopes {
        Slopes::Parallel => su,
        Slopes::Adaptive if u >= -l => 1.0,
        Slopes::Adaptive => alpha,
    };
    (sl, su, alpha * l - su * l)
}

/// For lower bounds: positive coefficients take the lower line, negative the upper.
pub fn backward(
    a: &[f64],
    s: usize,
    x: &Interval,
    alpha: f64,
    slopes: Slopes,
) -> (Vec<f64>, Vec<f64>) {
    let n = x.len();
    let lines: Vec<(f64, f64, f64)> = (0..n)
        .map(|j| relaxation(x.lo[j], x.hi[j], alpha, slopes))
        .collect();
    let mut a_in = vec![0.0; s * n];
    let mut cst = vec![0.0; s];
    for si in 0..s {
        let (row, out) = (&a[si * n..][..n], &mut a_in[si * n..][..n]);
        for j in 0..n {
            let (sl, su, bu) = lines[j];
            if row[j] >= 0.0 {
                out[j] = row[j] * sl;
            } else {
                out[j] = row[j] * su;
                cst[si] += row[j] * bu;
            }
        }
    }
    (a_in, cst)
}

/// A monotone increasing activation computed by libm.
#[derive(Clone, Copy, Debug)]
pub enum Monotone {
    Sigmoid,
    Tanh,
    Atan,
}

impl Monotone {
    fn eval(self, v: f64) -> f64 {
        match self {
            Monotone::Sigmoid => 1.0 / (1.0 + (-v).exp()),
            Monotone::Tanh => v.tanh(),
            Monotone::Atan => v.atan(),
        }
    }
}

pub fn monotone_interval(x: &Interval, f: Monotone) -> Interval {
    Interval {
        lo: x.lo.iter().map(|&v| f.eval(v)).collect(),
        hi: x.hi.iter().map(|&v| f.eval(v)).collect(),
    }
}

/// Assumes the float32 libm (and sigmoid's three roundings) within 16 ulp,
/// i.e. relative 2⁻²⁰, plus an absolute 2⁻¹⁴⁰ near zero (docs/soundness.md).
pub fn monotone_error_radius(y: &Interval) -> Vec<f64> {
    y.magnitude()
        .iter()
        .map(|m| m / (1u64 << 20) as f64 + 2f64.powi(-140))
        .collect()
}
