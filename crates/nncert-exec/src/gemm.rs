//! Safe wrappers over `matrixmultiply::sgemm` for row-major matrices.

/// `A[m×k] · B[k×n]`, all row-major.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    assert!(a.len() >= m * k && b.len() >= k * n);
    let mut c = vec![0.0f32; m * n];
    // SAFETY: the asserted lengths cover every element the strides address.
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
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    c
}

/// `A[m×k] · Bᵀ` where `B` is `[n×k]` row-major (a weight matrix `[out, in]`).
pub fn matmul_bt(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    assert!(a.len() >= m * k && b.len() >= k * n);
    let mut c = vec![0.0f32; m * n];
    // SAFETY: as above; Bᵀ is addressed with row stride 1 and column stride k.
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
            1,
            k as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    c
}
