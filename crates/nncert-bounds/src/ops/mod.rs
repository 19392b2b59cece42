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

#[cfg(test)]
mod tests {
    use super::*;
    use nncert_model::forward::{run_all, Reference};
    use nncert_model::passes::{canonicalize, PassOptions};
    use nncert_model::testing::{random_conv_net, random_inputs, random_residual_net};

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
