//! The perturbation box as float32 values (Appendix A): the widest `[xl, xu]`
//! whose every float32 value x satisfies `|x − x0| ≤ ε` and `0 ≤ x ≤ 1` both
//! when the difference is computed in float32 and in float64.

/// Whether `x` is within `eps` of `x0` on both readings.
fn within(x: f32, x0: f32, eps32: f32, eps64: f64) -> bool {
    let d32 = if x >= x0 { x - x0 } else { x0 - x };
    let d64 = (x as f64 - x0 as f64).abs();
    d32 <= eps32 && d64 <= eps64
}

/// Per coordinate, the float32 box around `x0` (module doc). `eps` is read
/// as the float32 and the float64 nearest to it (0.1 is neither exactly).
pub fn nextafter_box(x0: &[f32], eps: f64) -> (Vec<f32>, Vec<f32>) {
    let eps32 = eps as f32;
    let ok = |c: f32| move |x: f32| within(x, c, eps32, eps);
    let lo = x0
        .iter()
        .map(|&c| {
            widest(
                (c - eps32).max(0.0),
                ok(c),
                f32::next_down,
                f32::next_up,
                0.0,
            )
        })
        .collect();
    let hi = x0
        .iter()
        .map(|&c| {
            widest(
                (c + eps32).min(1.0),
                ok(c),
                f32::next_up,
                f32::next_down,
                1.0,
            )
        })
        .collect();
    (lo, hi)
}

/// From `start`, steps outward while the next value is valid and inside
/// the domain end `limit`, then inward until valid (validity is an interval
/// around x0, so the result is its end).
fn widest(
    start: f32,
    valid: impl Fn(f32) -> bool,
    out: fn(f32) -> f32,
    inward: fn(f32) -> f32,
    limit: f32,
) -> f32 {
    let mut v = start;
    while v != limit && valid(out(v)) {
        v = out(v);
    }
    while !valid(v) {
        v = inward(v);
    }
    v
}

/// `x` clamped coordinatewise into `[lo, hi]`.
pub fn project(x: &mut [f32], lo: &[f32], hi: &[f32]) {
    for ((v, &l), &h) in x.iter_mut().zip(lo).zip(hi) {
        *v = v.clamp(l, h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_is_valid_on_both_readings_and_maximal() {
        let eps = 0.1;
        let x0 = [0.0f32, 1.0, 0.1, 0.5, 0.9, 0.3, 1e-8, 0.99999994, 0.7];
        let (lo, hi) = nextafter_box(&x0, eps);
        for i in 0..x0.len() {
            let (c, l, h) = (x0[i], lo[i], hi[i]);
            assert!((0.0..=1.0).contains(&l) && (0.0..=1.0).contains(&h), "{i}");
            assert!(l <= c && c <= h);
            for v in [l, h] {
                assert!((v as f64 - c as f64).abs() <= eps, "f64 reading {i}");
                assert!((v - c).abs() <= eps as f32, "f32 reading {i}");
            }
            // One step further out breaks a reading or leaves [0, 1].
            let out_lo = l.next_down();
            assert!(l == 0.0 || (c as f64 - out_lo as f64) > eps || (c - out_lo) > eps as f32);
            let out_hi = h.next_up();
            assert!(h == 1.0 || (out_hi as f64 - c as f64) > eps || (out_hi - c) > eps as f32);
        }
        // Ends of the domain clamp.
        assert_eq!(lo[0], 0.0);
        assert_eq!(hi[1], 1.0);
        // float32 0.1 exceeds the float64 0.1: x = 0 is within ε on the
        // float32 reading (0.1f32 − 0 = ε32) but not on the float64 one.
        assert!(lo[2] > 0.0 && (x0[2] - 0.0) <= eps as f32 && (x0[2] as f64) > eps);
    }
}
