//! Elementwise affine maps (`x·s + t`) and the sum or difference of two values (residual blocks).

use crate::fp::affine_error;
use crate::interval::Interval;
use nncert_model::Tensor;

fn param(t: Option<&Tensor>, j: usize, default: f64) -> f64 {
    t.map_or(default, |t| t.data[j] as f64)
}

pub fn affine_interval(x: &Interval, scale: Option<&Tensor>, shift: Option<&Tensor>) -> Interval {
    let n = x.len();
    let (mut lo, mut hi) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for j in 0..n {
        let (s, t) = (param(scale, j, 1.0), param(shift, j, 0.0));
        let (a, b) = (x.lo[j] * s + t, x.hi[j] * s + t);
        lo.push(a.min(b));
        hi.push(a.max(b));
    }
    Interval { lo, hi }
}

/// Two roundings (x·s, then +t) and, when the scale came from folding a
/// division, the rounding of 1/c: γ₄ covers all three.
pub fn affine_error_radius(
    x: &Interval,
    scale: Option<&Tensor>,
    shift: Option<&Tensor>,
) -> Vec<f64> {
    x.magnitude()
        .iter()
        .enumerate()
        .map(|(j, m)| {
            affine_error(
                param(scale, j, 1.0).abs() * m + param(shift, j, 0.0).abs(),
                3,
            )
        })
        .collect()
}

pub fn affine_backward(
    a: &[f64],
    s: usize,
    scale: Option<&Tensor>,
    shift: Option<&Tensor>,
) -> (Vec<f64>, Vec<f64>) {
    let n = a.len() / s;
    let a_in = a
        .iter()
        .enumerate()
        .map(|(i, v)| v * param(scale, i % n, 1.0))
        .collect();
    let cst = (0..s)
        .map(|si| {
            a[si * n..][..n]
                .iter()
                .enumerate()
                .map(|(j, v)| v * param(shift, j, 0.0))
                .sum()
        })
        .collect();
    (a_in, cst)
}

/// `x + y` (sign = 1) or `x − y` (sign = −1).
pub fn sum_interval(x: &Interval, y: &Interval, sign: f64) -> Interval {
    let (yl, yh) = if sign > 0.0 {
        (&y.lo, &y.hi)
    } else {
        (&y.hi, &y.lo)
    };
    Interval {
        lo: x.lo.iter().zip(yl).map(|(a, b)| a + sign * b).collect(),
        hi: x.hi.iter().zip(yh).map(|(a, b)| a + sign * b).collect(),
    }
}

pub fn sum_error_radius(x: &Interval, y: &Interval) -> Vec<f64> {
    x.magnitude()
        .iter()
        .zip(y.magnitude())
        .map(|(a, b)| affine_error(a + b, 1))
        .collect()
}

/// Inference batch norm `(x − μ)/√(σ² + ε)·γ + β` over axis 1, as per-element
/// real-arithmetic scale and shift (f64) for a value of shape `shape`.
pub fn batchnorm_affine(params: [&Tensor; 4], eps: f32, shape: &[usize]) -> (Tensor64, Tensor64) {
    let [gamma, beta, mean, var] = params;
    let c = shape[1];
    let inner: usize = shape[2..].iter().product();
    let total: usize = shape.iter().product();
    let ch = |i: usize| (i / inner) % c;
    let scale: Vec<f64> = (0..total)
        .map(|i| gamma.data[ch(i)] as f64 / (var.data[ch(i)] as f64 + eps as f64).sqrt())
        .collect();
    let shift = (0..total)
        .map(|i| beta.data[ch(i)] as f64 - mean.data[ch(i)] as f64 * scale[i])
        .collect();
    (scale, shift)
}

/// Per-element f64 parameters.
pub type Tensor64 = Vec<f64>;

/// Float32 evaluates batch norm in five roundings (subtract, add ε, square
/// root, divide, multiply, add β): γ₆ on |s|·(|x| + |μ|) + |β|, plus the
/// analyser's error in forming s and t.
pub fn batchnorm_error_radius(
    x: &Interval,
    params: [&Tensor; 4],
    eps: f32,
    shape: &[usize],
) -> Vec<f64> {
    let (scale, _) = batchnorm_affine(params, eps, shape);
    let [_, beta, mean, _] = params;
    let c = shape[1];
    let inner: usize = shape[2..].iter().product();
    x.magnitude()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let ch = (i / inner) % c;
            affine_error(
                scale[i].abs() * (m + (mean.data[ch] as f64).abs()) + (beta.data[ch] as f64).abs(),
                6,
            )
        })
        .collect()
}

pub fn affine64_interval(x: &Interval, scale: &[f64], shift: &[f64]) -> Interval {
    let (lo, hi) = (0..x.len())
        .map(|j| {
            let (a, b) = (x.lo[j] * scale[j] + shift[j], x.hi[j] * scale[j] + shift[j]);
            (a.min(b), a.max(b))
        })
        .unzip();
    Interval { lo, hi }
}

pub fn affine64_backward(
    a: &[f64],
    s: usize,
    scale: &[f64],
    shift: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let n = scale.len();
    let a_in = a
        .iter()
        .enumerate()
        .map(|(i, v)| v * scale[i % n])
        .collect();
    let cst = (0..s)
        .map(|si| a[si * n..][..n].iter().zip(shift).map(|(v, t)| v * t).sum())
        .collect();
    (a_in, cst)
}
