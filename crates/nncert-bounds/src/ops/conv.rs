//! Conv2d. The backward pass is a transposed convolution done as one GEMM
//! (Wᵀ times the coefficients) and a col2im scatter: the conv's dense
//! Toeplitz matrix is never built (CNN-Cert's point).

use crate::fp::affine_error;
use crate::interval::Interval;
use nncert_model::forward::ConvCall;

fn kernel(c: &ConvCall) -> (usize, usize, usize) {
    let [_, icg, kh, kw] = c.weight.shape[..] else {
        unreachable!("conv weight is 4-D")
    };
    (icg, kh, kw)
}

/// Calls `f(out_index, in_index, weight)` for every valid (output, input) pair.
fn for_each_tap(c: &ConvCall, mut f: impl FnMut(usize, usize, f64)) {
    c.for_each_tap(|o, i, w| f(o, i, c.weight.data[w] as f64));
}

fn out_len(c: &ConvCall) -> usize {
    c.out_chw.0 * c.out_chw.1 * c.out_chw.2
}

fn bias_of(c: &ConvCall, out: usize) -> f64 {
    let per = c.out_chw.1 * c.out_chw.2;
    c.bias.map_or(0.0, |b| b.data[out / per] as f64)
}

pub fn interval(c: &ConvCall, x: &Interval) -> Interval {
    let n = out_len(c);
    let mut lo: Vec<f64> = (0..n).map(|o| bias_of(c, o)).collect();
    let mut hi = lo.clone();
    for_each_tap(c, |o, i, w| {
        if w >= 0.0 {
            lo[o] += w * x.lo[i];
            hi[o] += w * x.hi[i];
        } else {
            lo[o] += w * x.hi[i];
            hi[o] += w * x.lo[i];
        }
    });
    Interval { lo, hi }
}

pub fn error_radius(c: &ConvCall, x: &Interval) -> Vec<f64> {
    let m = x.magnitude();
    let mut s: Vec<f64> = (0..out_len(c)).map(|o| bias_of(c, o).abs()).collect();
    for_each_tap(c, |o, i, w| s[o] += w.abs() * m[i]);
    let (icg, kh, kw) = kernel(c);
    s.iter().map(|&v| affine_error(v, icg * kh * kw)).collect()
}

/// Rows of coefficients processed per GEMM, bounding the im2col buffer.
const CHUNK_ELEMENTS: usize = 1 << 22;

pub fn backward(c: &ConvCall, a: &[f64], s: usize) -> (Vec<f64>, Vec<f64>) {
    let (ic, ih, iw) = c.in_chw;
    let (oc, oh, ow) = c.out_chw;
    let (icg, kh, kw) = kernel(c);
    let (p, k, ocg, in_len, out_n) = (
        oh * ow,
        icg * kh * kw,
        oc / c.groups,
        ic * ih * iw,
        oc * oh * ow,
    );
    let cst = (0..s)
        .map(|si| {
            a[si * out_n..][..out_n]
                .iter()
                .enumerate()
                .map(|(o, v)| v * bias_of(c, o))
                .sum()
        })
        .collect();
    let w: Vec<f64> = c.weight.data.iter().map(|&v| v as f64).collect();
    let mut a_in = vec![0.0; s * in_len];
    let chunk = (CHUNK_ELEMENTS / (k * p).max(1)).max(1);
    for s0 in (0..s).step_by(chunk) {
        let sc = chunk.min(s - s0);
        for g in 0..c.groups {
            // at: [ocg, sc·p], the group's coefficients with spec rows side by side.
            let mut at = vec![0.0; ocg * sc * p];
            for si in 0..sc {
                for o in 0..ocg {
                    let src = &a[(s0 + si) * out_n + (g * ocg + o) * p..][..p];
                    at[o * sc * p + si * p..][..p].copy_from_slice(src);
                }
            }
            let mut cols = vec![0.0; k * sc * p];
            // cols[k, sc·p] = W_gᵀ[k, ocg] · at
            super::dgemm(
                k,
                ocg,
                sc * p,
                &w[g * ocg * k..],
                1,
                k,
                &at,
                sc * p,
                1,
                &mut cols,
                sc * p,
            );
            for si in 0..sc {
                let dst = &mut a_in[(s0 + si) * in_len..][..in_len];
                for icl in 0..icg {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let row = &cols[((icl * kh + ky) * kw + kx) * sc * p + si * p..][..p];
                            for oy in 0..oh {
                                for ox in 0..ow {
                                    if let Some(i) = c.input_index(g * icg + icl, ky, kx, oy, ox) {
                                        dst[i] += row[oy * ow + ox];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (a_in, cst)
}
