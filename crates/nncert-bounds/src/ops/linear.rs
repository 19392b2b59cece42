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
        let mut a_in = vec![0.0; s * rows * inp];
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
        return (a_in, constant(b, a, s));
    }
    // Outputs no row sees (inactive ReLUs behind, or not in the spec) drop
    // out of the GEMM, and their rows of W are never converted.
    let mut seen = vec![false; out];
    for row in a.chunks_exact(out) {
        seen.iter_mut().zip(row).for_each(|(l, &c)| *l |= c != 0.0);
    }
    let live: Vec<usize> = (0..out).filter(|&o| seen[o]).collect();
    let m = live.len();
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
