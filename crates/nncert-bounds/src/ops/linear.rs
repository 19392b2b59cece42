//! Linear (Gemm, MatMul): `y[.., o] = Σ_i W[o,i]·x[.., i] + b[o]` over the last axis.

use crate::fp::affine_error;
use crate::interval::Interval;
use nncert_model::Tensor;

fn dims(w: &Tensor, len: usize) -> (usize, usize, usize) {
    let (out, inp) = (w.shape[0], w.shape[1]);
    (out, inp, len / inp)
}

pub fn interval(w: &Tensor, b: Option<&Tensor>, x: &Interval) -> Interval {
    let (out, inp, rows) = dims(w, x.len());
    let (mut lo, mut hi) = (
        Vec::with_capacity(rows * out),
        Vec::with_capacity(rows * out),
    );
    for r in 0..rows {
        let (xl, xh) = (&x.lo[r * inp..][..inp], &x.hi[r * inp..][..inp]);
        for o in 0..out {
            let bias = b.map_or(0.0, |b| b.data[o] as f64);
            let wo = &w.data[o * inp..][..inp];
            let low = |w: f64, l: f64, h: f64| w * if w >= 0.0 { l } else { h };
            lo.push(bias + super::sum8(wo, xl, xh, low));
            hi.push(bias + super::sum8(wo, xh, xl, low));
        }
    }
    Interval { lo, hi }
}

pub fn error_radius(w: &Tensor, b: Option<&Tensor>, x: &Interval) -> Vec<f64> {
    let (out, inp, rows) = dims(w, x.len());
    let m = x.magnitude();
    let mut e = Vec::with_capacity(rows * out);
    for r in 0..rows {
        for o in 0..out {
            let (wo, mr) = (&w.data[o * inp..][..inp], &m[r * inp..][..inp]);
            let s = b.map_or(0.0, |b| (b.data[o] as f64).abs())
                + super::sum8(wo, mr, mr, |w, m, _| w.abs() * m);
            e.push(affine_error(s, inp));
        }
    }
    e
}

/// Up to this many rows, products with W loop over its f32 entries directly:
/// converting W to f64 and packing it for a GEMM costs more than they do.
const DIRECT_ROWS: usize = 4;

/// `rows` rows of `x·Wᵀ + b` in f64 (no rounding contract: for gradients
/// and relaxed evaluations, not for bounds).
pub(crate) fn forward(w: &Tensor, b: Option<&Tensor>, x: &[f64], rows: usize) -> Vec<f64> {
    let (out, inp) = (w.shape[0], w.shape[1]);
    let mut y: Vec<f64> = (0..rows * out)
        .map(|k| b.map_or(0.0, |b| b.data[k % out] as f64))
        .collect();
    if rows <= DIRECT_ROWS {
        for (xr, yr) in x.chunks(inp).zip(y.chunks_mut(out)) {
            for (yo, wo) in yr.iter_mut().zip(w.data.chunks(inp)) {
                *yo += super::sum8(wo, xr, xr, |w, x, _| w * x);
            }
        }
        return y;
    }
    let wf: Vec<f64> = w.data.iter().map(|&v| v as f64).collect();
    super::dgemm(rows, inp, out, x, inp, 1, &wf, 1, inp, &mut y, out);
    y
}

/// `a_in = a·W` per row block, constant `a·b`.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
pub fn backward(w: &Tensor, b: Option<&Tensor>, a: &[f64], s: usize) -> (Vec<f64>, Vec<f64>) {
    let (out, inp) = (w.shape[0], w.shape[1]);
    let rows = a.len() / (s * out);
    if s * rows <= DIRECT_ROWS {
        return (sparse_product(w, a), constant(b, a, s));
    }
    // Outputs no row sees (inactive ReLUs behind, or not in the spec) drop
    // out of the GEMM, and their rows of W are never converted.
    let mut seen = vec![false; out];
    let mut nonzeros = 0;
    for row in a.chunks_exact(out) {
        seen.iter_mut().zip(row).for_each(|(l, &c)| *l |= c != 0.0);
        nonzeros += row.iter().filter(|&&c| c != 0.0).count();
    }
    let live: Vec<usize> = (0..out).filter(|&o| seen[o]).collect();
    let m = live.len();
    // Sparse rows (a refinement's one-hot rows, first of all) cost an axpy per
    // nonzero; a GEMM does about four times the multiply-adds per cycle.
    if nonzeros * SPARSE_ADVANTAGE <= s * rows * m {
        return (sparse_product(w, a), constant(b, a, s));
    }
    let mut wf: Vec<f64> = Vec::with_capacity(m * inp);
    for &o in &live {
        wf.extend(w.data[o * inp..][..inp].iter().map(|&v| v as f64));
    }
    // a is [s·rows, out] row-major, as a_in is [s·rows, inp]: one GEMM,
    // on a itself when every output is live.
    let a_in = if m == out {
        super::dgemm_new((s * rows, m, inp), (a, m, 1), (&wf, inp, 1))
    } else {
        let mut packed: Vec<f64> = Vec::with_capacity(s * rows * m);
        for row in a.chunks_exact(out) {
            packed.extend(live.iter().map(|&o| row[o]));
        }
        super::dgemm_new((s * rows, m, inp), (&packed, m, 1), (&wf, inp, 1))
    };
    (a_in, constant(b, a, s))
}

/// Rows with at most this many times fewer nonzeros than `backward`'s GEMM
/// has multiply-adds per input go through `sparse_product` instead.
const SPARSE_ADVANTAGE: usize = 4;

/// `a·W` row by row: each nonzero coefficient adds its row of W (read as
/// f32, converted on the fly) to the result.
#[inline(always)]
fn sparse_product(w: &Tensor, a: &[f64]) -> Vec<f64> {
    let (out, inp) = (w.shape[0], w.shape[1]);
    let mut a_in = vec![0.0; a.len() / out * inp];
    for (ar, out_row) in a.chunks(out).zip(a_in.chunks_mut(inp)) {
        for (&c, wo) in ar.iter().zip(w.data.chunks(inp)) {
            if c != 0.0 {
                out_row
                    .iter_mut()
                    .zip(wo)
                    .for_each(|(v, &wi)| *v += c * wi as f64);
            }
        }
    }
    a_in
}

/// Per spec row, `a·b` over every row block.
fn constant(b: Option<&Tensor>, a: &[f64], s: usize) -> Vec<f64> {
    let per_row = a.len() / s;
    (0..s)
        .map(|si| {
            b.map_or(0.0, |b| {
                a[si * per_row..][..per_row]
                    .chunks(b.data.len())
                    .map(|row| super::sum8(&b.data, row, row, |b, c, _| b * c))
                    .sum()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `backward` equals `a·W` and `a·b` by definition on each of its paths:
    /// a few rows (direct), one-hot rows (sparse), dense rows (GEMM on `a`)
    /// and rows with an output no row sees (packed GEMM).
    #[test]
    fn backward_agrees_with_the_definition_on_every_path() {
        let (out, inp) = (7, 11);
        let w = Tensor::new(
            vec![out, inp],
            (0..out * inp)
                .map(|i| ((i * 29 % 23) as f32 - 11.0) / 8.0)
                .collect(),
        );
        let b = Tensor::new(vec![out], (0..out).map(|o| o as f32 - 2.5).collect());
        let value = |r: usize, o: usize| ((r * 13 + o * 7) % 17) as f64 - 8.25;
        let one_hot = |r: usize, o: usize| if o == r % out { value(r, o) } else { 0.0 };
        let dead_output = |r: usize, o: usize| if o == 3 { 0.0 } else { value(r, o) };
        type Coefficient<'f> = &'f dyn Fn(usize, usize) -> f64;
        let cases: [(usize, usize, Coefficient); 4] = [
            (1, 3, &value),
            (2, 20, &one_hot),
            (2, 20, &value),
            (3, 10, &dead_output),
        ];
        for (case, &(s, rows, coeff)) in cases.iter().enumerate() {
            let a: Vec<f64> = (0..s * rows * out)
                .map(|k| coeff(k / out, k % out))
                .collect();
            let (a_in, cst) = backward(&w, Some(&b), &a, s);
            for (r, row) in a.chunks(out).enumerate() {
                for i in 0..inp {
                    let want: f64 = (0..out).map(|o| row[o] * w.data[o * inp + i] as f64).sum();
                    let got = a_in[r * inp + i];
                    assert!(
                        (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
                        "case {case}"
                    );
                }
            }
            for (si, &c) in cst.iter().enumerate() {
                let want: f64 = a[si * rows * out..][..rows * out]
                    .iter()
                    .enumerate()
                    .map(|(k, v)| v * b.data[k % out] as f64)
                    .sum();
                assert!(
                    (c - want).abs() <= 1e-12 * (1.0 + want.abs()),
                    "case {case}"
                );
            }
        }
    }
}
