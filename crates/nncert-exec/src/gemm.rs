//! Safe wrappers over `matrixmultiply::sgemm` for row-major matrices.

/// `A[m×k] · B[k×n]` with A row-major and B addressed by its strides.
fn sgemm(
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    (rsb, csb): (usize, usize),
) -> Vec<f32> {
    assert!(a.len() >= m * k && b.len() >= k * n);
    let mut c = vec![0.0f32; m * n];
    // SAFETY: B has k·n elements and both stride layouts address exactly those;
    // A and C are dense row-major of the asserted sizes.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    c
}

/// `A[m×k] · B[k×n]`, all row-major.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    sgemm(a, b, (m, k, n), (n, 1))
}

/// `A[m×k] · Bᵀ` where `B` is `[n×k]` row-major (a weight matrix `[out, in]`).
pub fn matmul_bt(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    sgemm(a, b, (m, k, n), (1, k))
}
