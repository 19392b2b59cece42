//! Floating-point error model of sound mode.
//!
//! A float32 affine op with fan-in n computes, under round-to-nearest, any
//! summation order, blocking or FMA, `fl(b + Σ w·x) = b + Σ w·x + δ` with
//! `|δ| ≤ γ_{n+1}·S + n·2⁻¹⁴⁹·(1 + γ_n)`, `S = |b| + Σ|w|·|x|`,
//! `γ_k = k·u / (1 − k·u)`, u = 2⁻²⁴ (Higham, Accuracy and Stability, §3.1;
//! the 2⁻¹⁴⁹ term covers underflow of the products). The analyser's own f64
//! arithmetic obeys the same law with u = 2⁻⁵³, and since `A·W` errs by at most
//! γ·|A|·|W|·m, its rounding is charged as one more per-neuron perturbation
//! with the same S (see docs/soundness.md).

/// Unit roundoff of float32 round-to-nearest.
pub const U32: f64 = 1.0 / (1u64 << 24) as f64;
/// Unit roundoff of float64.
pub const U64: f64 = f64::EPSILON / 2.0;
/// Smallest positive subnormal float32.
pub const MIN_SUBNORMAL32: f64 = 1.401_298_464_324_817e-45;

/// γ_k = k·u/(1 − k·u), rounded up.
pub fn gamma(k: usize, u: f64) -> f64 {
    let ku = k as f64 * u;
    assert!(ku < 0.5, "γ_{k} undefined for u = {u}");
    up(up(ku) / down(1.0 - ku))
}

/// Next f64 above (outward rounding of an upper bound).
#[inline]
pub fn up(x: f64) -> f64 {
    x.next_up()
}

/// Next f64 below (outward rounding of a lower bound).
#[inline]
pub fn down(x: f64) -> f64 {
    x.next_down()
}

/// Which arithmetic the bounds must enclose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Soundness {
    /// Real arithmetic, f64 analyser rounding ignored (what most verifiers do).
    Real,
    /// The float32 network under any summation order, FMA or blocking, and the
    /// analyser's own f64 rounding.
    Float32,
}

/// Radius of the perturbation a float32 affine op with fan-in `n` (bias
/// included as one more term) may add to its exact value, plus the analyser's
/// f64 error on the same magnitude `s = |b| + Σ|w|·m`.
pub fn affine_error(s: f64, n: usize) -> f64 {
    let net = up(gamma(n + 1, U32) * s) + up(n as f64 * MIN_SUBNORMAL32 * (1.0 + gamma(n, U32)));
    let analyser = up(gamma(n + 2, U64) * s);
    // The computed S may itself be low by a factor (1 + γ_n(f64)); 2⁻³⁰ covers n < 10⁶.
    up(up(net + analyser) * (1.0 + 1.0 / (1u64 << 30) as f64))
}

/// The float32 lattice over-approximation of `[lo, hi]`: the next float32
/// outside each end, so that every float32 input either reading of
/// `|x − x0| ≤ ε` admits (float32 or float64 arithmetic) lies inside.
pub fn float32_enclosure(lo: f64, hi: f64) -> (f64, f64) {
    let below = |v: f64| {
        let f = v as f32;
        let f = if (f as f64) > v { f.next_down() } else { f };
        f.next_down() as f64
    };
    let above = |v: f64| {
        let f = v as f32;
        let f = if (f as f64) < v { f.next_up() } else { f };
        f.next_up() as f64
    };
    (below(lo), above(hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_values() {
        assert!(gamma(1, U32) > U32 && gamma(1, U32) < 1.0001 * U32);
        assert!(gamma(1000, U32) > 1000.0 * U32);
    }

    #[test]
    fn float32_enclosure_is_strictly_outside() {
        for (lo, hi) in [(0.1, 0.3), (0.0, 1.0), (-1e-30, 1e-30), (0.5, 0.5)] {
            let (l, h) = float32_enclosure(lo, hi);
            assert!(l < lo && h > hi);
            assert_eq!(l as f32 as f64, l);
            assert_eq!(h as f32 as f64, h);
            // At most two float32 steps outside, so the widening costs nothing in tightness.
            assert!((l as f32).next_up().next_up() as f64 >= lo);
            assert!((h as f32).next_down().next_down() as f64 <= hi);
        }
    }

    #[test]
    fn affine_error_covers_a_worst_case_sum() {
        // Sum of n copies of 1 + 2^-24·k in float32 vs exact: error within the bound.
        let n = 1000;
        let xs: Vec<f32> = (0..n)
            .map(|k| 1.0 + (k % 7) as f32 * f32::EPSILON)
            .collect();
        let exact: f64 = xs.iter().map(|&v| v as f64).sum();
        let fl: f32 = xs.iter().sum();
        let s: f64 = xs.iter().map(|&v| v.abs() as f64).sum();
        assert!((fl as f64 - exact).abs() <= affine_error(s, n));
    }
}
