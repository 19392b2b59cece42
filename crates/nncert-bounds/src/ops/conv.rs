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
        for (col, &i) in cols.iter_mut().zip(taps.index.iter()) {
            *col = if i == usize::MAX { 0.0 } else { x[i] };
        }
        let out = &mut y[g * ocg * p..];
        super::dgemm(ocg, k, p, &w[g * ocg * k..], k, 1, &cols, p, 1, out, p);
    }
}

/// Backward through a convolution: `a_in = a·T` for the conv's Toeplitz
/// matrix T, never materialised: GEMMs with the weights, then each input
/// gathers the products that read it (col2im).
pub fn backward(c: &ConvCall, a: &[f64], s: usize) -> (Vec<f64>, Vec<f64>) {
    let (p, k, ..) = gemm_dims(c);
    backward_in_batches(c, a, s, rows_per_batch(p, k))
}

/// Rows per batched GEMM (`backward_batched`) for planes of `p` positions and
/// `k` taps, or 1 for row-by-row GEMMs (`backward_by_row`): batches when a
/// row's products are small (patches' windows hold one to a few dozen
/// positions), where a GEMM per row would be mostly call overhead, and as
/// many rows as keep the products within 2¹⁶ values (512 KiB, in cache).
fn rows_per_batch(p: usize, k: usize) -> usize {
    let rows = (1usize << 16) / (p * k).max(1);
    if rows >= 16 {
        rows
    } else {
        1
    }
}

fn backward_in_batches(c: &ConvCall, a: &[f64], s: usize, batch: usize) -> (Vec<f64>, Vec<f64>) {
    let (p, _, _, in_len, out_n) = gemm_dims(c);
    // Σ_c b_c·Σ_pos a[c, pos]: its rounding is within the γ charge sound
    // mode makes for the bias (docs/soundness.md), whatever the order.
    let cst = (0..s)
        .map(|si| {
            c.bias.map_or(0.0, |b| {
                let planes = a[si * out_n..][..out_n].chunks(p);
                (planes.zip(&b.data))
                    .map(|(plane, &bc)| bc as f64 * super::lane_sums([plane], |[v]| [v])[0])
                    .sum()
            })
        })
        .collect();
    let w: Vec<f64> = c.weight.data.iter().map(|&v| v as f64).collect();
    let taps: Vec<_> = (0..c.groups).map(|g| tap_table(c, g)).collect();
    let mut a_in = vec![0.0; s * in_len];
    if batch > 1 {
        backward_batched(c, (&w, &taps), a, &mut a_in, batch);
    } else {
        backward_by_row(c, (&w, &taps), a, &mut a_in);
    }
    (a_in, cst)
}

/// Row by row and group by group, the output positions with a nonzero
/// coefficient in any of the group's channels go through the GEMM `W_gᵀ · a`
/// and col2im, whose buffers then fit in cache: back-substitution rows start
/// one-hot and stay local for several layers, so most positions are often
/// zero (the point of auto_LiRPA's "patches" mode, reached here without a
/// second representation).
fn backward_by_row(c: &ConvCall, (w, taps): (&[f64], &[Rc<Taps>]), a: &[f64], a_in: &mut [f64]) {
    let (p, k, ocg, in_len, out_n) = gemm_dims(c);
    let (mut seen, mut live) = (vec![false; p], Vec::with_capacity(p));
    let (mut at, mut cols) = (Vec::new(), vec![0.0; k * p]);
    for (row, row_in) in a.chunks(out_n).zip(a_in.chunks_mut(in_len)) {
        for (g, taps) in taps.iter().enumerate() {
            let planes = &row[g * ocg * p..][..ocg * p];
            live_positions(planes, &mut seen, &mut live);
            let n = live.len();
            if n == 0 {
                continue;
            }
            // at[ocg, n]: the live coefficients (the planes themselves when all are live).
            let at = if n == p {
                planes
            } else {
                at.clear();
                at.extend((planes.chunks(p)).flat_map(|pl| live.iter().map(|&pos| pl[pos])));
                &at[..]
            };
            let cols = &mut cols[..k * n];
            super::dgemm_into(
                (k, ocg, n),
                (&w[g * ocg * k..], 1, k),
                (at, n, 1),
                (cols, n),
            );
            col2im(taps, cols, (&live, p), g, row_in);
        }
    }
}

/// `batch` rows at a time, one GEMM per group and output position over all
/// of them: `cols[r, pos, tap] = Σ_c a[r, c, pos]·W[c, tap]` reads `a` in
/// place (row stride the row length, column stride the plane), then each
/// input of each row gathers its entries.
fn backward_batched(
    c: &ConvCall,
    (w, taps): (&[f64], &[Rc<Taps>]),
    a: &[f64],
    a_in: &mut [f64],
    batch: usize,
) {
    let (p, k, ocg, in_len, out_n) = gemm_dims(c);
    let mut cols = vec![0.0; batch * p * k];
    for (rows, rows_in) in a.chunks(batch * out_n).zip(a_in.chunks_mut(batch * in_len)) {
        let r = rows.len() / out_n;
        for (g, taps) in taps.iter().enumerate() {
            for pos in 0..p {
                let planes = &rows[g * ocg * p + pos..];
                let dst = &mut cols[pos * k..];
                let w_g = &w[g * ocg * k..];
                super::dgemm_into((r, ocg, k), (planes, out_n, p), (w_g, k, 1), (dst, p * k));
            }
            let group_len = taps.readers.len() - 1;
            for (ri, row_in) in rows_in.chunks_mut(in_len).enumerate() {
                let inputs = &mut row_in[g * group_len..][..group_len];
                gather(
                    &taps.readers,
                    &taps.by_position,
                    &cols[ri * p * k..],
                    inputs,
                );
            }
        }
    }
}

/// The positions of `planes` (`[channels, seen.len()]`) with a nonzero
/// coefficient in some channel, into `live`.
fn live_positions(planes: &[f64], seen: &mut [bool], live: &mut Vec<usize>) {
    seen.fill(false);
    for plane in planes.chunks(seen.len()) {
        (seen.iter_mut().zip(plane)).for_each(|(l, &v)| *l |= v != 0.0);
    }
    live.clear();
    live.extend((0..seen.len()).filter(|&pos| seen[pos]));
}

/// Adds group `g`'s `cols` (`[taps, live positions]`, of `p` positions) to
/// the inputs they read. With every position live, a gather: each input
/// sums the entries that read it (no scattered read-modify-writes).
fn col2im(taps: &Taps, cols: &[f64], (live, p): (&[usize], usize), g: usize, row_in: &mut [f64]) {
    let group_len = taps.readers.len() - 1;
    if live.len() == p {
        let inputs = &mut row_in[g * group_len..][..group_len];
        gather(&taps.readers, &taps.sources, cols, inputs);
        return;
    }
    for (tap, col) in taps.index.chunks(p).zip(cols.chunks(live.len())) {
        for (&v, &pos) in col.iter().zip(live) {
            let i = tap[pos];
            if i != usize::MAX {
                row_in[i] += v;
            }
        }
    }
}

/// Input j adds `cols[e]` for each entry e of `sources[readers[j]..readers[j + 1]]`.
fn gather(readers: &[u32], sources: &[u32], cols: &[f64], inputs: &mut [f64]) {
    for (v, w) in inputs.iter_mut().zip(readers.windows(2)) {
        let sources = &sources[w[0] as usize..w[1] as usize];
        *v += sources.iter().map(|&e| cols[e as usize]).sum::<f64>();
    }
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

/// A convolution group's taps: `index[t·p + pos]` is the input that kernel
/// tap t reads at output position pos (usize::MAX where it reads padding);
/// the inputs of the group that some tap reads, in order, list their entries
/// `t·p + pos` in `sources[readers[j]..readers[j + 1]]` (input j of the group),
/// and the same entries written `pos·taps + t` in `by_position`.
pub(crate) struct Taps {
    pub(crate) index: Vec<usize>,
    readers: Vec<u32>,
    sources: Vec<u32>,
    by_position: Vec<u32>,
}

/// The taps of group `g` (`[icg·kh·kw, oh·ow]`). Cached per thread by
/// geometry: branch and bound asks for the same tables thousands of times.
pub(crate) fn tap_table(c: &ConvCall, g: usize) -> Rc<Taps> {
    type Geometry = (
        (usize, usize, usize),
        (usize, usize, usize),
        [usize; 4],
        Window2d,
        usize,
    );
    thread_local! {
        static TABLES: RefCell<HashMap<Geometry, Rc<Taps>>> = RefCell::new(HashMap::new());
    }
    let (icg, kh, kw) = kernel(c);
    let key = (c.in_chw, c.out_chw, [icg, kh, kw, c.groups], c.window, g);
    TABLES.with(|t| {
        t.borrow_mut()
            .entry(key)
            .or_insert_with(|| Rc::new(build_taps(c, g)))
            .clone()
    })
}

fn build_taps(c: &ConvCall, g: usize) -> Taps {
    let (_, oh, ow) = c.out_chw;
    let (icg, kh, kw) = kernel(c);
    let p = oh * ow;
    let mut index = vec![usize::MAX; icg * kh * kw * p];
    for (t, slot) in index.chunks_mut(p).enumerate() {
        let (icl, ky, kx) = (t / (kh * kw), t / kw % kh, t % kw);
        for (pos, v) in slot.iter_mut().enumerate() {
            if let Some(i) = c.input_index(g * icg + icl, ky, kx, pos / ow, pos % ow) {
                *v = i;
            }
        }
    }
    // The inverse, as CSR over the group's inputs.
    assert!(
        u32::try_from(index.len()).is_ok(),
        "conv tap table over 2³² entries"
    );
    let group_len = icg * c.in_chw.1 * c.in_chw.2;
    let first = g * group_len;
    let read = || index.iter().enumerate().filter(|(_, &i)| i != usize::MAX);
    let mut readers = vec![0u32; group_len + 1];
    read().for_each(|(_, &i)| readers[i - first + 1] += 1);
    for j in 0..group_len {
        readers[j + 1] += readers[j];
    }
    let mut next = readers.clone();
    let mut sources = vec![0u32; readers[group_len] as usize];
    for (e, &i) in read() {
        sources[next[i - first] as usize] = e as u32;
        next[i - first] += 1;
    }
    let k = icg * kh * kw;
    let by_position = (sources.iter())
        .map(|&e| (e as usize % p * k + e as usize / p) as u32)
        .collect();
    Taps {
        index,
        readers,
        sources,
        by_position,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nncert_model::testing::RandomConv;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// `backward` against the product with the Toeplitz matrix itself (built
    /// column by column from `forward` on unit inputs), on random geometries
    /// and rows that are dense, sparse, zero, or live on some positions
    /// only: the gather and the scatter paths.
    #[test]
    fn backward_is_the_product_with_the_toeplitz_matrix() {
        let mut drawn = 0;
        for seed in 0..24 {
            let mut r = StdRng::seed_from_u64(seed);
            let Some(conv) = RandomConv::draw(&mut r, 3) else {
                continue;
            };
            drawn += 1;
            let c = conv.call();
            let (in_len, out_n, p) = (gemm_dims(&c).3, out_len(&c), c.out_chw.1 * c.out_chw.2);
            let unbiased = ConvCall { bias: None, ..c };
            let toeplitz: Vec<Vec<f64>> = (0..in_len)
                .map(|i| {
                    let mut e = vec![0.0; in_len];
                    e[i] = 1.0;
                    forward(&unbiased, &e, 1)
                })
                .collect();
            let dense: Vec<f64> = (0..out_n).map(|_| r.gen_range(-1.0..1.0)).collect();
            let mut sparse = vec![0.0; out_n];
            (0..3).for_each(|_| sparse[r.gen_range(0..out_n)] = r.gen_range(-1.0..1.0));
            let some_positions: Vec<f64> = (0..out_n)
                .map(|o| if o % p < p / 2 { 0.0 } else { dense[o] })
                .collect();
            let rows = [dense, sparse, vec![0.0; out_n], some_positions];
            let a: Vec<f64> = rows.concat();
            // Row by row (live positions), and in batches of 3 rows and 1.
            for batch in [1, 3] {
                let (a_in, cst) = backward_in_batches(&c, &a, rows.len(), batch);
                for (si, row) in rows.iter().enumerate() {
                    for (i, column) in toeplitz.iter().enumerate() {
                        let want: f64 = row.iter().zip(column).map(|(x, y)| x * y).sum();
                        let got = a_in[si * in_len + i];
                        assert!(
                            (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
                            "seed {seed} row {si} input {i}: {got} vs {want}"
                        );
                    }
                    let want: f64 = (0..out_n)
                        .map(|o| row[o] * conv.bias.data[o / p] as f64)
                        .sum();
                    assert!((cst[si] - want).abs() <= 1e-12 * (1.0 + want.abs()));
                }
            }
        }
        assert!(drawn >= 12, "only {drawn} of 24 geometries fit");
    }
}
