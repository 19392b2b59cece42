//! Transfer functions, one file per op family. Each provides:
//! - `interval`: bounds of the op's output from bounds of its inputs, in f64
//!   round-to-nearest (what real-arithmetic IBP computes);
//! - `error_radius`: per output element, how far the float32 network and the
//!   analyser's own f64 rounding can move a value beyond that (sound mode);
//! - `backward`: the linear lower-bound coefficients on the inputs given
//!   coefficients `a` (spec rows × output size) on the output, and the
//!   constant each spec row gains.

pub mod activation;
pub mod conv;
pub mod elementwise;
pub mod linear;
pub mod pool;
pub mod shape;

/// Row-major `C = A·B` in f64, with explicit strides (matrixmultiply::dgemm).
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
    assert!(a.len() > a_max && b.len() > b_max && c.len() >= (m.max(1) - 1) * rsc + n);
    // SAFETY: the assertion covers every element the strides address.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            1.0,
            c.as_mut_ptr(),
            rsc as isize,
            1,
        );
    }
}
