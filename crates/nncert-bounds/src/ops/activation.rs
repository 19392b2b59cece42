//! ReLU and leaky ReLU (exact in float32; CROWN relaxations), and the
//! S-shaped sigmoid, tanh, arctan (CNN-Cert-Ada tangent/secant relaxations).

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

/// Whether a neuron with input in [l, u] is relaxed (its lower slope is free).
pub fn is_unstable(l: f64, u: f64) -> bool {
    l < 0.0 && u > 0.0
}

/// The lines of every neuron and spec row: `lower` (α-CROWN's per-row slopes,
/// `[s, n]`) replaces the lower slope of unstable neurons when given.
pub fn row_lines<'a>(
    x: &'a Interval,
    alpha: f64,
    slopes: Slopes,
    lower: Option<&'a [f64]>,
) -> impl Fn(usize, usize) -> (f64, f64, f64) + 'a {
    let n = x.len();
    let lines: Vec<(f64, f64, f64)> = (0..n)
        .map(|j| relaxation(x.lo[j], x.hi[j], alpha, slopes))
        .collect();
    move |si, j| {
        let (sl, su, bu) = lines[j];
        match lower {
            Some(l) if is_unstable(x.lo[j], x.hi[j]) => (l[si * n + j], su, bu),
            _ => (sl, su, bu),
        }
    }
}

/// For lower bounds: positive coefficients take the lower line, negative the
/// upper. Rewrites the coefficients `a` (`[s, n]`) into those on the ReLU's
/// input, in place, and returns the constant each row gains.
pub fn backward(
    a: &mut [f64],
    s: usize,
    x: &Interval,
    alpha: f64,
    slopes: Slopes,
    lower: Option<&[f64]>,
) -> Vec<f64> {
    let n = x.len();
    let [mut sl, su, bu] = line_arrays(x, alpha, slopes);
    let unstable: Vec<usize> = (0..n).filter(|&j| is_unstable(x.lo[j], x.hi[j])).collect();
    let mut cst = vec![0.0; s];
    for (si, row) in a.chunks_exact_mut(n).take(s).enumerate() {
        if let Some(l) = lower {
            // α-CROWN's slopes of this row: only unstable neurons have one.
            unstable.iter().for_each(|&j| sl[j] = l[si * n + j]);
        }
        cst[si] = relax_row(row, &sl, &su, &bu);
    }
    cst
}

/// Every neuron's lower slope, upper slope and upper intercept, as three arrays.
pub(crate) fn line_arrays(x: &Interval, alpha: f64, slopes: Slopes) -> [Vec<f64>; 3] {
    let n = x.len();
    let (mut sl, mut su, mut bu) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    for j in 0..n {
        (sl[j], su[j], bu[j]) = relaxation(x.lo[j], x.hi[j], alpha, slopes);
    }
    [sl, su, bu]
}

/// One row of `backward`, branch-free: `max(c,0)·sl + min(c,0)·su`, where
/// the other product is ±0 and changes nothing but a zero's sign, so the
/// lanes vectorise. The constant's terms all have one sign: any order of
/// its sum rounds within the charge `propagate` makes for it.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
pub(crate) fn relax_row(row: &mut [f64], sl: &[f64], su: &[f64], bu: &[f64]) -> f64 {
    let n = row.len();
    let (sl, su, bu) = (&sl[..n], &su[..n], &bu[..n]);
    let relax = |c: &mut f64, sl: f64, su: f64, bu: f64| {
        let (pos, neg) = (super::positive_part(*c), super::negative_part(*c));
        *c = pos * sl + neg * su;
        neg * bu
    };
    // Four lanes in chunks of four, as `lane_sums` (which cannot write `row`).
    let mut lanes = [0.0f64; 4];
    let chunks = (row.chunks_exact_mut(4).zip(sl.chunks_exact(4)))
        .zip(su.chunks_exact(4).zip(bu.chunks_exact(4)));
    for ((c, l), (u, b)) in chunks {
        (0..4).for_each(|k| lanes[k] += relax(&mut c[k], l[k], u[k], b[k]));
    }
    let mut total = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for j in n / 4 * 4..n {
        total += relax(&mut row[j], sl[j], su[j], bu[j]);
    }
    total
}

/// `backward`'s result redone for neurons fixed to one phase in one row,
/// `(row, neuron, active)` with `before` their coefficients on the output:
/// the line through such a neuron becomes the identity (active) or the leak
/// (inactive), without the upper line's intercept. Lets one
/// back-substitution bound many split children at once.
pub fn fix_phases(
    before: &[f64],
    a_in: &mut [f64],
    cst: &mut [f64],
    x: &Interval,
    alpha: f64,
    fixed: &[(usize, usize, bool)],
) {
    let n = x.len();
    for (&(si, j, active), &c) in fixed.iter().zip(before) {
        if c < 0.0 {
            let (_, _, bu) = relaxation(x.lo[j], x.hi[j], alpha, Slopes::Adaptive);
            cst[si] -= c * bu;
        }
        a_in[si * n + j] = c * if active { 1.0 } else { alpha };
    }
}

/// A monotone increasing activation computed by libm.
#[derive(Clone, Copy, Debug)]
pub enum Monotone {
    Sigmoid,
    Tanh,
    Atan,
}

impl Monotone {
    pub(crate) fn eval(self, v: f64) -> f64 {
        match self {
            Monotone::Sigmoid => 1.0 / (1.0 + (-v).exp()),
            Monotone::Tanh => v.tanh(),
            Monotone::Atan => v.atan(),
        }
    }

    pub(crate) fn derivative(self, v: f64) -> f64 {
        match self {
            Monotone::Sigmoid => {
                let s = self.eval(v);
                s * (1.0 - s)
            }
            Monotone::Tanh => 1.0 - v.tanh().powi(2),
            Monotone::Atan => 1.0 / (1.0 + v * v),
        }
    }

    /// The tangent at `d` as (slope, intercept).
    fn tangent(self, d: f64) -> (f64, f64) {
        let k = self.derivative(d);
        (k, self.eval(d) - k * d)
    }

    /// The chord from l to u as (slope, intercept).
    fn chord(self, l: f64, u: f64) -> (f64, f64) {
        let k = (self.eval(u) - self.eval(l)) / (u - l);
        (k, self.eval(l) - k * l)
    }

    /// A tangent at d between `from` and `to` that passes on the safe side of
    /// (p, f(p)): bisection on h(d) = f(d) + f'(d)(p − d) − f(p), keeping the
    /// end where `safe(h)` holds.
    fn tangent_through(self, p: f64, from: f64, to: f64, safe: impl Fn(f64) -> bool) -> (f64, f64) {
        let h = |d: f64| self.eval(d) + self.derivative(d) * (p - d) - self.eval(p);
        let (mut bad, mut good) = (from, to);
        for _ in 0..60 {
            let mid = 0.5 * (bad + good);
            if safe(h(mid)) {
                good = mid;
            } else {
                bad = mid;
            }
        }
        self.tangent(good)
    }
}

/// Linear lower and upper bounds `(sl, bl, su, bu)`: sl·x + bl ≤ f(x) ≤ su·x + bu on [l, u].
///
/// f is convex on (−∞, 0] and concave on [0, ∞) (sigmoid, tanh, arctan).
/// Convex part: chord above, tangent at the midpoint below; concave part the
/// reverse. Across 0 (CROWN): the upper line is the tangent at some d ∈ [0, u]
/// through (l, f(l)) — above f on [0, u] by concavity, and on [l, 0] above the
/// chord of the convex part since it passes through (l, f(l)) and above (0, f(0)).
/// If no such d ≤ u exists (h(u) < 0), the chord is above f: with g = chord − f,
/// g(u) = 0 and g'(u) < 0, g convex on [0, u] so g > 0 there, and g concave on
/// [l, 0] with g(l) = 0, g(0) > 0, so g ≥ 0. The lower line mirrors this.
pub fn s_shaped_relaxation(l: f64, u: f64, f: Monotone) -> (f64, f64, f64, f64) {
    let (sl, bl, su, bu) = if u - l < 1e-9 * (1.0 + l.abs().max(u.abs())) {
        // Tiny (or zero-width) ranges: the tangent at the midpoint, shifted by
        // its worst gap |f''|·h²/2 ≤ (u − l)² (|f''| < 1 for all three); at
        // zero width this is the derivative, which gradients rely on.
        let (k, b) = f.tangent(0.5 * (l + u));
        let gap = (u - l) * (u - l);
        (k, b - gap, k, b + gap)
    } else if u <= 0.0 {
        let (a, b) = f.tangent(0.5 * (l + u));
        let (c, d) = f.chord(l, u);
        (a, b, c, d)
    } else if l >= 0.0 {
        let (a, b) = f.chord(l, u);
        let (c, d) = f.tangent(0.5 * (l + u));
        (a, b, c, d)
    } else {
        let upper = if f.eval(u) + f.derivative(u) * (l - u) - f.eval(l) >= 0.0 {
            f.tangent_through(l, 0.0, u, |h| h >= 0.0)
        } else {
            f.chord(l, u)
        };
        let lower = if f.eval(l) + f.derivative(l) * (u - l) - f.eval(u) <= 0.0 {
            f.tangent_through(u, 0.0, l, |h| h <= 0.0)
        } else {
            f.chord(l, u)
        };
        (lower.0, lower.1, upper.0, upper.1)
    };
    // Margin for the f64 evaluation of f, f′ and the intercepts.
    let m = 1e-12 * (1.0 + sl.abs().max(su.abs()) * l.abs().max(u.abs()) + bl.abs().max(bu.abs()));
    (sl, bl - m, su, bu + m)
}

/// `(slope_l, intercept_l, slope_u, intercept_u)` of every neuron.
pub fn s_shaped_lines(x: &Interval, f: Monotone) -> Vec<(f64, f64, f64, f64)> {
    (0..x.len())
        .map(|j| s_shaped_relaxation(x.lo[j], x.hi[j], f))
        .collect()
}

/// Backward through an S-shaped activation with general lines.
pub fn s_shaped_backward(a: &[f64], s: usize, x: &Interval, f: Monotone) -> (Vec<f64>, Vec<f64>) {
    let n = x.len();
    let lines = s_shaped_lines(x, f);
    let mut a_in = vec![0.0; s * n];
    let mut cst = vec![0.0; s];
    for si in 0..s {
        for (j, &(sl, bl, su, bu)) in lines.iter().enumerate() {
            let v = a[si * n + j];
            let (slope, intercept) = if v >= 0.0 { (sl, bl) } else { (su, bu) };
            a_in[si * n + j] = v * slope;
            cst[si] += v * intercept;
        }
    }
    (a_in, cst)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectorised rows pick each coefficient's line as the definition
    /// does (positive: lower line, negative: upper line and its intercept),
    /// with α-CROWN's per-row slopes on unstable neurons only, for lengths
    /// with and without a tail past the four lanes.
    #[test]
    fn backward_picks_each_coefficients_line() {
        for n in [1, 3, 4, 7, 13] {
            let lo: Vec<f64> = (0..n).map(|j| [-2.0, 0.5, -1.0, -0.3][j % 4]).collect();
            let hi: Vec<f64> = (0..n).map(|j| [1.0, 2.0, -0.5, 3.0][j % 4]).collect();
            let x = Interval { lo, hi };
            let s = 3;
            let a: Vec<f64> = (0..s * n)
                .map(|k| ((k * 7 % 11) as f64 - 5.0) / 3.0)
                .collect();
            let alphas: Vec<f64> = (0..s * n).map(|k| (k % 5) as f64 / 4.0).collect();
            for (slopes, lower) in [
                (Slopes::Adaptive, None),
                (Slopes::Parallel, None),
                (Slopes::Adaptive, Some(alphas.as_slice())),
            ] {
                let mut a_in = a.clone();
                let cst = backward(&mut a_in, s, &x, 0.1, slopes, lower);
                for si in 0..s {
                    let mut want_cst = 0.0;
                    for j in 0..n {
                        let (mut sl, su, bu) = relaxation(x.lo[j], x.hi[j], 0.1, slopes);
                        if let (Some(l), true) = (lower, is_unstable(x.lo[j], x.hi[j])) {
                            sl = l[si * n + j];
                        }
                        let c = a[si * n + j];
                        let want = if c >= 0.0 { c * sl } else { c * su };
                        want_cst += if c < 0.0 { c * bu } else { 0.0 };
                        assert_eq!(a_in[si * n + j], want, "n {n} row {si} neuron {j}");
                    }
                    assert!((cst[si] - want_cst).abs() <= 1e-14 * (1.0 + want_cst.abs()));
                }
            }
        }
    }

    /// The lines enclose f on dense samples of [l, u], in every regime:
    /// convex, concave, straddling (tangent and chord cases), tiny and huge ranges.
    #[test]
    fn s_shaped_lines_enclose_the_function() {
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for f in [Monotone::Sigmoid, Monotone::Tanh, Monotone::Atan] {
            for k in 0..3000 {
                let scale = [1e-10, 0.01, 1.0, 8.0, 200.0][k % 5];
                let offset = if k % 5 == 0 {
                    (next() * 2.0 - 1.0) * 4.0
                } else {
                    0.0
                };
                let (a, b) = (
                    offset + (next() * 2.0 - 1.0) * scale,
                    offset + (next() * 2.0 - 1.0) * scale,
                );
                let (l, u) = (a.min(b), a.max(b));
                let (sl, bl, su, bu) = s_shaped_relaxation(l, u, f);
                for i in 0..=200 {
                    let x = l + (u - l) * i as f64 / 200.0;
                    let y = f.eval(x);
                    assert!(
                        sl * x + bl <= y && y <= su * x + bu,
                        "{f:?} on [{l}, {u}] at {x}: {} ≤ {y} ≤ {}",
                        sl * x + bl,
                        su * x + bu
                    );
                }
            }
        }
    }

    #[test]
    fn relu_lines_enclose_relu() {
        for (l, u) in [(-1.0, 2.0), (-3.0, 0.5), (0.5, 1.0), (-2.0, -1.0)] {
            for slopes in [Slopes::Parallel, Slopes::Adaptive] {
                let (sl, su, bu) = relaxation(l, u, 0.1, slopes);
                for i in 0..=100 {
                    let x = l + (u - l) * i as f64 / 100.0;
                    let y = leaky(x, 0.1);
                    assert!(sl * x <= y + 1e-15 && y <= su * x + bu + 1e-15);
                }
            }
        }
    }
}
