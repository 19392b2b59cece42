//! Certified radius by bisection (CNN-Cert §4): the largest ε at which a
//! property is still certified, to a relative tolerance.

/// Largest ε in [0, hi] with `certified(ε)`, assuming monotonicity, within
/// `tol` (absolute). Returns 0 when even the smallest probe fails.
pub fn certified_radius(mut certified: impl FnMut(f64) -> bool, hi: f64, tol: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, hi);
    if certified(hi) {
        return hi;
    }
    while hi - lo > tol {
        let mid = 0.5 * (lo + hi);
        if certified(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_threshold() {
        let r = certified_radius(|e| e <= 0.123, 1.0, 1e-6);
        assert!((r - 0.123).abs() < 1e-6 && r <= 0.123);
        assert_eq!(certified_radius(|_| true, 0.5, 1e-6), 0.5);
        assert_eq!(certified_radius(|_| false, 0.5, 1e-3), 0.0);
    }
}
