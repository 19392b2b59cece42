//! Transfer functions, one file per op family. Each provides:
//! - `interval`: bounds of the op's output from bounds of its inputs, in f64
//!   round-to-nearest (what real-arithmetic IBP computes);
//! - `error_radius`: per output element, how far the float32 network and the
//!   analyser's own f64 rounding can move a value beyond that (sound mode);
//! - `backward`: the linear lower-bound coefficients on the inputs given
//!   coefficients `a` (spec rows × output size) on the output, and the
//!   constant each spec row gains.

use nncert_model::forward::{AffineKernels, ConvCall};
use nncert_model::{NodeId, Tensor};

pub mod activation;
pub mod conv;
pub mod elementwise;
pub mod linear;
pub mod pool;
pub mod shape;

/// f64 linear and conv by GEMM for `run_with`: relaxed evaluations and
/// gradients, where only the value matters, not its rounding.
pub(crate) struct Gemm64;

impl AffineKernels<f64> for Gemm64 {
    fn linear(
        &self,
        _: NodeId,
        w: &Tensor,
        b: Option<&Tensor>,
        x: &[f64],
        rows: usize,
    ) -> Vec<f64> {
        linear::forward(w, b, x, rows)
    }

    fn conv2d(&self, _: NodeId, c: &ConvCall, x: &[f64], n: usize) -> Vec<f64> {
        conv::forward(c, x, n)
    }
}

/// Row-major `C += A·B` in f64, with explicit strides (the `gemm` crate:
/// 1.5–1.8× matrixmultiply's dgemm on this machine's shapes, docs/benchmarks.md).
#[allow(clippy::too_many_arguments)]
pub(crate) fn dgemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f64],
    rsa: usize,
    csa: usize,
    b: &[f64],
    rsb: usize,
    csb: usize,
    c: &mut [f64],
    rsc: usize,
) {
    assert!(c.len() >= (m.max(1) - 1) * rsc + n);
    // SAFETY: the assertion covers every element of C the strides address.
    unsafe {
        gemm_raw(
            true,
            (m, k, n),
            (a, rsa, csa),
            (b, rsb, csb),
            c.as_mut_ptr(),
            rsc,
        )
    }
}

/// `A·B` into a new row-major `m × n` matrix, operands as `(data, row
/// stride, column stride)`: `gemm` writes every element without reading it,
/// so the buffer is never zeroed first (the zeroing showed in profiles of
/// dense back-substitution).
pub(crate) fn dgemm_new(
    (m, k, n): (usize, usize, usize),
    a: (&[f64], usize, usize),
    b: (&[f64], usize, usize),
) -> Vec<f64> {
    let mut c: Vec<f64> = Vec::with_capacity(m * n);
    // SAFETY: the capacity holds the m × n elements addressed; with
    // `read_dst` false, `gemm` writes each of them (zeros when k = 0)
    // before `set_len` exposes them.
    unsafe {
        gemm_raw(false, (m, k, n), a, b, c.as_mut_ptr(), n);
        c.set_len(m * n);
    }
    c
}

/// `C = A·B` over the `m × n` block of `c` with row stride `rsc`, written
/// without being read (so `c` need not be zeroed), operands as `dgemm_new`'s.
pub(crate) fn dgemm_into(
    (m, k, n): (usize, usize, usize),
    a: (&[f64], usize, usize),
    b: (&[f64], usize, usize),
    (c, rsc): (&mut [f64], usize),
) {
    assert!(c.len() >= (m.max(1) - 1) * rsc + n);
    // SAFETY: the assertion covers every element of C the strides address.
    unsafe { gemm_raw(false, (m, k, n), a, b, c.as_mut_ptr(), rsc) }
}

/// `C = A·B` (or `C += A·B` with `read_dst`) through the `gemm` crate.
///
/// # Safety
/// `c` must address `(m − 1)·rsc + n` elements valid for writes.
unsafe fn gemm_raw(
    read_dst: bool,
    (m, k, n): (usize, usize, usize),
    (a, rsa, csa): (&[f64], usize, usize),
    (b, rsb, csb): (&[f64], usize, usize),
    c: *mut f64,
    rsc: usize,
) {
    let a_max = if m * k == 0 {
        0
    } else {
        (m - 1) * rsa + (k - 1) * csa
    };
    let b_max = if k * n == 0 {
        0
    } else {
        (k - 1) * rsb + (n - 1) * csb
    };
    // An empty A or B is never read (k = 0 writes zeros, or C += nothing).
    assert!((m * k == 0 || a.len() > a_max) && (k * n == 0 || b.len() > b_max));
    gemm::gemm(
        m,
        n,
        k,
        c,
        1,
        rsc as isize,
        read_dst,
        a.as_ptr(),
        csa as isize,
        rsa as isize,
        b.as_ptr(),
        csb as isize,
        rsb as isize,
        if read_dst { 1.0 } else { 0.0 },
        1.0,
        false,
        false,
        false,
        gemm_parallelism(),
    );
}

/// `Σ f(w[i], a[i], b[i])` with eight running sums: one sum waits on each
/// addition's latency. For sums whose rounding is charged whatever the
/// order (sound mode's γ terms) or not charged at all (relaxed evaluations).
#[inline(always)]
pub(crate) fn sum8(w: &[f32], a: &[f64], b: &[f64], f: impl Fn(f64, f64, f64) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let (wc, ac, bc) = (w.chunks_exact(8), a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = (wc
        .remainder()
        .iter()
        .zip(ac.remainder())
        .zip(bc.remainder()))
    .map(|((&wi, &ai), &bi)| f(wi as f64, ai, bi))
    .sum();
    for ((w8, a8), b8) in wc.zip(ac).zip(bc) {
        for l in 0..8 {
            acc[l] += f(w8[l] as f64, a8[l], b8[l]);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `K` sums of `term` over the elements of `M` slices taken side by side (as
/// long as the first), each kept in four running sums. Walked in chunks of
/// four, the loop has no bounds checks and its lanes vectorise. For sums
/// whose rounding is charged whatever their order (the γ terms of sound mode)
/// or not at all.
#[inline(always)]
pub(crate) fn lane_sums<const M: usize, const K: usize>(
    slices: [&[f64]; M],
    term: impl Fn([f64; M]) -> [f64; K],
) -> [f64; K] {
    let n = slices[0].len();
    let slices = slices.map(|s| &s[..n]);
    // acc[k]: quantity k's four lanes side by side, one vector register.
    let mut acc = [[0.0f64; 4]; K];
    let mut chunks = slices.map(|s| s.chunks_exact(4));
    for _ in 0..n / 4 {
        let c = chunks.each_mut().map(|it| it.next().expect("n / 4 chunks"));
        let t: [[f64; K]; 4] = std::array::from_fn(|l| term(std::array::from_fn(|m| c[m][l])));
        for (k, lanes) in acc.iter_mut().enumerate() {
            (0..4).for_each(|l| lanes[l] += t[l][k]);
        }
    }
    let mut total: [f64; K] =
        std::array::from_fn(|k| (acc[k][0] + acc[k][1]) + (acc[k][2] + acc[k][3]));
    for j in n / 4 * 4..n {
        let t = term(slices.map(|s| s[j]));
        (0..K).for_each(|k| total[k] += t[k]);
    }
    total
}

/// max(c, 0) and min(c, 0) (a NaN gives 0), written as comparisons:
/// `f64::max`'s NaN rule keeps LLVM from vectorising the loops they sit in.
#[inline(always)]
pub(crate) fn positive_part(c: f64) -> f64 {
    if c > 0.0 {
        c
    } else {
        0.0
    }
}

#[inline(always)]
pub(crate) fn negative_part(c: f64) -> f64 {
    if c < 0.0 {
        c
    } else {
        0.0
    }
}

/// Threads for the bound computation: `MATMUL_NUM_THREADS` when set (the
/// CLI sets it to 1 when it runs images or subdomains on parallel workers),
/// else all of rayon's.
pub(crate) fn bound_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("MATMUL_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(rayon::current_num_threads)
    })
}

thread_local! {
    /// Set while this thread works on one of several row blocks in parallel.
    static SERIAL_GEMM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's GEMMs single-threaded: the caller already
/// spreads independent work over the cores.
pub(crate) fn with_serial_gemm<R>(f: impl FnOnce() -> R) -> R {
    let before = SERIAL_GEMM.replace(true);
    let r = f();
    SERIAL_GEMM.set(before);
    r
}

/// `gemm` runs small products on the calling thread either way.
fn gemm_parallelism() -> gemm::Parallelism {
    match bound_threads() {
        n if n > 1 && !SERIAL_GEMM.get() => gemm::Parallelism::Rayon(n),
        _ => gemm::Parallelism::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nncert_model::forward::{run_all, Reference};
    use nncert_model::passes::{canonicalize, PassOptions};
    use nncert_model::testing::{random_conv_net, random_inputs, random_residual_net};

    /// Four running sums per quantity agree with plain sums to rounding,
    /// for lengths with and without a tail, and several quantities at once.
    #[test]
    fn lane_sums_agree_with_sequential_sums() {
        for n in [0, 1, 3, 4, 5, 8, 31, 784] {
            let x: Vec<f64> = (0..n)
                .map(|j| ((j * 37 % 101) as f64 - 50.0) / 7.0)
                .collect();
            let [sum, abs] = lane_sums([&x], |[v]| [v, v.abs()]);
            let (want, want_abs) = (
                x.iter().sum::<f64>(),
                x.iter().map(|v| v.abs()).sum::<f64>(),
            );
            assert!((sum - want).abs() <= 1e-12 * want_abs.max(1.0), "n {n}");
            assert!((abs - want_abs).abs() <= 1e-12 * want_abs.max(1.0), "n {n}");
            // Slices side by side, the second longer: the first sets the length.
            let y: Vec<f64> = (0..n + 3).map(|j| j as f64 - 2.5).collect();
            let [dot] = lane_sums([&x, &y], |[a, b]| [a * b]);
            let want_dot: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
            let scale: f64 = x.iter().zip(&y).map(|(a, b)| (a * b).abs()).sum();
            assert!((dot - want_dot).abs() <= 1e-12 * scale.max(1.0), "n {n}");
        }
    }

    /// The comparison forms of max(c, 0) and min(c, 0) agree with `f64::max`
    /// and `f64::min` on signed zeros, infinities, subnormals and NaN (0).
    #[test]
    fn positive_and_negative_parts_are_max_and_min_with_zero() {
        let values = [
            0.0,
            -0.0,
            1.5,
            -1.5,
            f64::INFINITY,
            f64::NEG_INFINITY,
            5e-324,
            -5e-324,
            f64::NAN,
        ];
        for c in values {
            assert_eq!(positive_part(c), c.max(0.0), "{c}");
            assert_eq!(negative_part(c), c.min(0.0), "{c}");
            assert_eq!(positive_part(c) + negative_part(c) == c, !c.is_nan(), "{c}");
        }
    }
    /// `dgemm_new` writes every element of its fresh matrix: it equals
    /// `dgemm` on zeros, for empty inner dimensions and strided operands too.
    #[test]
    fn fresh_gemm_equals_accumulating_gemm_on_zeros() {
        for (m, k, n) in [(1, 1, 1), (3, 0, 5), (7, 9, 13), (33, 17, 70), (64, 256, 9)] {
            let a: Vec<f64> = (0..m * k).map(|i| (i % 13) as f64 - 6.5).collect();
            let b: Vec<f64> = (0..k * n).map(|i| (i % 7) as f64 * 0.25).collect();
            // A row-major, B read transposed (column strides), as callers do.
            let fresh = dgemm_new((m, k, n), (&a, k, 1), (&b, 1, k));
            let mut want = vec![0.0; m * n];
            dgemm(m, k, n, &a, k, 1, &b, 1, k, &mut want, n);
            assert_eq!(fresh, want, "{m}×{k}×{n}");
        }
    }

    /// The GEMM kernels compute every node of a batch as the reference does
    /// (strided, padded, grouped and dilated convolutions, linear layers).
    #[test]
    fn gemm_kernels_agree_with_the_reference() {
        for seed in 0..6 {
            for net in [random_conv_net(seed), random_residual_net(seed)] {
                let g = canonicalize(&net, PassOptions::default()).unwrap().0;
                let x: Vec<f64> = random_inputs(&g, 3, seed)
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                let fast = run_all(&g, &Gemm64, &x).unwrap();
                let reference = run_all(&g, &Reference, &x).unwrap();
                for (id, (a, b)) in fast.iter().zip(&reference).enumerate() {
                    assert_eq!(a.len(), b.len());
                    for (u, v) in a.iter().zip(b) {
                        assert!(
                            (u - v).abs() <= 1e-12 * (1.0 + v.abs()),
                            "seed {seed} node {id}: {u} vs {v}"
                        );
                    }
                }
            }
        }
    }
}
