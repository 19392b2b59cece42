//! Conv2d. The backward pass is a transposed convolution done as one GEMM
//! (Wᵀ times the coefficients) and a col2im scatter: the conv's dense
//! Toeplitz matrix is never built (CNN-Cert's point).

use crate::fp::affine_error;
use crate::interval::Interval;
use nncert_model::forward::ConvCall;
use nncert_model::Window2d;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

fn kernel(c: &ConvCall) -> (usize, usize, usize) {
    let [_, icg, kh, kw] = c.weight.shape[..] else {
        unreachable!("conv weight is 4-D")
    };
    (icg, kh, kw)
}

/// A convolution's sizes as its GEMMs see them: output positions per
/// channel, kernel taps per output, output channels per group, input and
/// output lengths.
fn gemm_dims(c: &ConvCall) -> (usize, usize, usize, usize, usize) {
    let (ic, ih, iw) = c.in_chw;
    let (oc, oh, ow) = c.out_chw;
    let (icg, kh, kw) = kernel(c);
    (
        oh * ow,
        icg * kh * kw,
        oc / c.groups,
        ic * ih * iw,
        oc * oh * ow,
    )
}

fn out_len(c: &ConvCall) -> usize {
    c.out_chw.0 * c.out_chw.1 * c.out_chw.2
}

/// Interval arithmetic by GEMMs: `lo = b + W⁺·lo + W⁻·hi`, `hi` alike. Any
/// summation order is covered by `error_radius`, so the GEMMs' is as good
/// as the loops'.
pub fn interval(c: &ConvCall, x: &Interval) -> Interval {
    let (pos, neg): (Vec<f64>, Vec<f64>) = c
        .weight
        .data
        .iter()
        .map(|&w| (f64::from(w).max(0.0), f64::from(w).min(0.0)))
        .unzip();
    let mut lo = bias_planes(c, |b| b);
    let mut hi = lo.clone();
    accumulate(c, &pos, &x.lo, &mut lo);
    accumulate(c, &neg, &x.hi, &mut lo);
    accumulate(c, &pos, &x.hi, &mut hi);
    accumulate(c, &neg, &x.lo, &mut hi);
    Interval { lo, hi }
}

pub fn error_radius(c: &ConvCall, x: &Interval) -> Vec<f64> {
    let abs_w: Vec<f64> = c.weight.data.iter().map(|&w| f64::from(w).abs()).collect();
    let mut s = bias_planes(c, f64::abs);
    accumulate(c, &abs_w, &x.magnitude(), &mut s);
    let (icg, kh, kw) = kernel(c);
    s.iter().map(|&v| affine_error(v, icg * kh * kw)).collect()
}

/// One sample's output filled with `f(bias)` per channel.
fn bias_planes(c: &ConvCall, f: impl Fn(f64) -> f64) -> Vec<f64> {
    let (oc, oh, ow) = c.out_chw;
    (0..oc * oh * ow)
        .map(|o| f(c.bias.map_or(0.0, |b| b.data[o / (oh * ow)] as f64)))
        .collect()
}

/// `y += conv(w, x)` for one sample, by im2col and GEMM per group (`w` the
/// conv's weights in f64, any sign pattern).
fn accumulate(c: &ConvCall, w: &[f64], x: &[f64], y: &mut [f64]) {
    let (p, k, ocg, _, _) = gemm_dims(c);
    let mut cols = vec![0.0; k * p];
    for g in 0..c.groups {
        let taps = tap_table(c, g);
        for (col, &i) in cols.iter_mut().zip(taps.iter()) {
            *col = if i == usize::MAX { 0.0 } else { x[i] };
        }
        let out = &mut y[g * ocg * p..];
        super::dgemm(ocg, k, p, &w[g * ocg * k..], k, 1, &cols, p, 1, out, p);
    }
}

/// Columns (spec row, output position) processed per GEMM, bounding the buffers.
const CHUNK_COLUMNS: usize = 1 << 14;

/// Backward through a convolution: `a_in = a·T` for the conv's Toeplitz
/// matrix T, never materialised. Per group, only the columns (spec row,
/// output position) with a nonzero coefficient go through the GEMM
/// `W_gᵀ · a` and the col2im scatter: back-substitution rows start one-hot
/// and stay local for several layers, so most columns are zero (the point of
/// auto_LiRPA's "patches" mode, reached here without a second representation).
pub fn backward(c: &ConvCall, a: &[f64], s: usize) -> (Vec<f64>, Vec<f64>) {
    let (p, k, ocg, in_len, out_n) = gemm_dims(c);
    // Summed in the flat order of `a`, channel by channel.
    let cst = (0..s)
        .map(|si| {
            c.bias.map_or(0.0, |b| {
                a[si * out_n..][..out_n]
                    .chunks(p)
                    .zip(&b.data)
                    .flat_map(|(plane, &bc)| plane.iter().map(move |v| v * bc as f64))
                    .sum()
            })
        })
        .collect();
    let w: Vec<f64> = c.weight.data.iter().map(|&v| v as f64).collect();
    let mut a_in = vec![0.0; s * in_len];
    for g in 0..c.groups {
        let taps = tap_table(c, g);
        let coeff = |si: usize, o: usize, pos: usize| a[si * out_n + (g * ocg + o) * p + pos];
        // Columns with a nonzero coefficient in any of the group's channels,
        // found plane by plane (contiguous) rather than column by column.
        let mut live = vec![false; s * p];
        for (si, live_si) in live.chunks_mut(p).enumerate() {
            for plane in a[si * out_n + g * ocg * p..][..ocg * p].chunks(p) {
                live_si
                    .iter_mut()
                    .zip(plane)
                    .for_each(|(l, &v)| *l |= v != 0.0);
            }
        }
        let active: Vec<(usize, usize)> = (0..s * p)
            .filter(|&col| live[col])
            .map(|col| (col / p, col % p))
            .collect();
        for block in active.chunks(CHUNK_COLUMNS) {
            let n = block.len();
            // at[ocg, n]: the block's coefficients; cols[k, n] = W_gᵀ[k, ocg] · at.
            let mut at = vec![0.0; ocg * n];
            for o in 0..ocg {
                for (col, &(si, pos)) in block.iter().enumerate() {
                    at[o * n + col] = coeff(si, o, pos);
                }
            }
            let mut cols = vec![0.0; k * n];
            super::dgemm(k, ocg, n, &w[g * ocg * k..], 1, k, &at, n, 1, &mut cols, n);
            for t in 0..k {
                let row = &cols[t * n..][..n];
                let tap = &taps[t * p..][..p];
                for (&v, &(si, pos)) in row.iter().zip(block) {
                    let i = tap[pos];
                    if i != usize::MAX {
                        a_in[si * in_len + i] += v;
                    }
                }
            }
        }
    }
    (a_in, cst)
}

/// The convolution of `n` inputs in f64 by im2col and GEMM (no rounding
/// contract: for gradients and relaxed evaluations, not for bounds).
pub(crate) fn forward(c: &ConvCall, x: &[f64], n: usize) -> Vec<f64> {
    let w: Vec<f64> = c.weight.data.iter().map(|&v| v as f64).collect();
    let (in_len, out_n) = (gemm_dims(c).3, out_len(c));
    let mut y: Vec<f64> = (0..n).flat_map(|_| bias_planes(c, |b| b)).collect();
    for (xs, ys) in x.chunks(in_len).zip(y.chunks_mut(out_n)) {
        accumulate(c, &w, xs, ys);
    }
    y
}

/// Input index of each (kernel tap, output position) of group `g`,
/// `[icg·kh·kw, oh·ow]`, usize::MAX where the tap reads padding. Cached per
/// thread by geometry: branch and bound asks for the same tables thousands
/// of times.
pub(crate) fn tap_table(c: &ConvCall, g: usize) -> Rc<Vec<usize>> {
    type Geometry = (
        (usize, usize, usize),
        (usize, usize, usize),
        [usize; 4],
        Window2d,
        usize,
    );
    thread_local! {
        static TABLES: RefCell<HashMap<Geometry, Rc<Vec<usize>>>> = RefCell::new(HashMap::new());
    }
    let (icg, kh, kw) = kernel(c);
    let key = (c.in_chw, c.out_chw, [icg, kh, kw, c.groups], c.window, g);
    TABLES.with(|t| {
        t.borrow_mut()
            .entry(key)
            .or_insert_with(|| Rc::new(build_tap_table(c, g)))
            .clone()
    })
}

fn build_tap_table(c: &ConvCall, g: usize) -> Vec<usize> {
    let (_, oh, ow) = c.out_chw;
    let (icg, kh, kw) = kernel(c);
    let p = oh * ow;
    let mut taps = vec![usize::MAX; icg * kh * kw * p];
    for (t, slot) in taps.chunks_mut(p).enumerate() {
        let (icl, ky, kx) = (t / (kh * kw), t / kw % kh, t % kw);
        for (pos, v) in slot.iter_mut().enumerate() {
            if let Some(i) = c.input_index(g * icg + icl, ky, kx, pos / ow, pos % ow) {
                *v = i;
            }
        }
    }
    taps
}
