//! The f64 GEMM libraries on the shapes back-substitution produces
//! (`m` spec rows × `k` live outputs × `n` inputs): matrixmultiply's dgemm
//! (what the bound computation used before session 10) against the `gemm`
//! crate (what it uses now), one and two threads, best of three.
//! `cargo bench -p nncert-bounds --bench gemm_shapes`

use std::time::Instant;

type Product = fn(usize, usize, usize, &[f64], &[f64], &mut [f64]);

fn matrixmultiply_threads(m: usize, k: usize, n: usize, a: &[f64], b: &[f64], c: &mut [f64]) {
    // SAFETY: a is m×k, b is k×n, c is m×n, all row-major and in bounds.
    unsafe {
        matrixmultiply::dgemm(
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
            1.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

fn gemm_with(
    p: gemm::Parallelism,
    m: usize,
    k: usize,
    n: usize,
    a: &[f64],
    b: &[f64],
    c: &mut [f64],
) {
    // SAFETY: as above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            true,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            p,
        )
    }
}

fn gemm_one_thread(m: usize, k: usize, n: usize, a: &[f64], b: &[f64], c: &mut [f64]) {
    gemm_with(gemm::Parallelism::None, m, k, n, a, b, c)
}

fn gemm_two_threads(m: usize, k: usize, n: usize, a: &[f64], b: &[f64], c: &mut [f64]) {
    gemm_with(gemm::Parallelism::Rayon(2), m, k, n, a, b, c)
}

/// GFLOP/s of `product` on an m×k×n product, best of three timed batches.
fn gflops(product: Product, (m, k, n): (usize, usize, usize)) -> f64 {
    let a: Vec<f64> = (0..m * k).map(|i| (i % 7) as f64 * 0.1).collect();
    let b: Vec<f64> = (0..k * n).map(|i| (i % 5) as f64 * 0.1).collect();
    let mut c = vec![0.0; m * n];
    let flops = 2.0 * (m * k * n) as f64;
    let reps = (2e9 / flops).max(3.0) as usize;
    let best = (0..3)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                product(m, k, n, &a, &b, &mut c);
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .fold(f64::MAX, f64::min);
    flops / best / 1e9
}

fn main() {
    let shapes = [
        (1, 256, 784),
        (10, 256, 256),
        (40, 256, 784),
        (200, 256, 784),
        (500, 1568, 784),
        (1000, 64, 3072),
    ];
    println!("GFLOP/s per library (matrixmultiply's threads: MATMUL_NUM_THREADS, default all)");
    println!("m x k x n | matrixmultiply | gemm 1 thread | gemm 2 threads");
    for s in shapes {
        println!(
            "{} x {} x {} | {:.1} | {:.1} | {:.1}",
            s.0,
            s.1,
            s.2,
            gflops(matrixmultiply_threads, s),
            gflops(gemm_one_thread, s),
            gflops(gemm_two_threads, s)
        );
    }
}
