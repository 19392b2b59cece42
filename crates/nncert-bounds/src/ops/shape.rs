//! Data movement: Reshape (identity on the row-major data), Transpose, Pad, Concat.
//! All exact in float32; backward passes permute or scatter coefficients.

use crate::interval::Interval;
use nncert_model::kernels;

/// Output position → input position, for ops that copy values.
pub fn transpose_map(in_shape: &[usize], perm: &[usize]) -> Vec<usize> {
    kernels::transpose_map(in_shape, perm)
}

pub fn gather_interval(x: &Interval, map: &[usize]) -> Interval {
    Interval {
        lo: map.iter().map(|&i| x.lo[i]).collect(),
        hi: map.iter().map(|&i| x.hi[i]).collect(),
    }
}

/// Backward of `y[o] = x[map[o]]`.
pub fn gather_backward(a: &[f64], s: usize, map: &[usize], in_len: usize) -> Vec<f64> {
    let n = map.len();
    let mut a_in = vec![0.0; s * in_len];
    for si in 0..s {
        for (o, &i) in map.iter().enumerate() {
            a_in[si * in_len + i] += a[si * n + o];
        }
    }
    a_in
}

/// For each output position of a Pad, the input position (None for padding).
pub fn pad_map(in_shape: &[usize], out_shape: &[usize], pads: &[usize]) -> Vec<Option<usize>> {
    let ids: Vec<f64> = (0..in_shape.iter().product::<usize>())
        .map(|i| i as f64)
        .collect();
    kernels::pad(&ids, in_shape, out_shape, pads, -1.0, 1)
        .iter()
        .map(|&v| (v >= 0.0).then_some(v as usize))
        .collect()
}

pub fn pad_interval(x: &Interval, map: &[Option<usize>], value: f64) -> Interval {
    let pick = |v: &[f64]| map.iter().map(|m| m.map_or(value, |i| v[i])).collect();
    Interval {
        lo: pick(&x.lo),
        hi: pick(&x.hi),
    }
}

pub fn pad_backward(
    a: &[f64],
    s: usize,
    map: &[Option<usize>],
    in_len: usize,
    value: f64,
) -> (Vec<f64>, Vec<f64>) {
    let n = map.len();
    let mut a_in = vec![0.0; s * in_len];
    let mut cst = vec![0.0; s];
    for si in 0..s {
        for (o, m) in map.iter().enumerate() {
            match m {
                Some(i) => a_in[si * in_len + i] += a[si * n + o],
                None => cst[si] += a[si * n + o] * value,
            }
        }
    }
    (a_in, cst)
}

/// For each output position of a Concat, (input number, position in it).
pub fn concat_map(shapes: &[&[usize]], axis: usize) -> Vec<(usize, usize)> {
    let ids: Vec<Vec<f64>> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| {
            (0..s.iter().product::<usize>())
                .map(|i| (k as f64) * 1e12 + i as f64)
                .collect()
        })
        .collect();
    let parts: Vec<(&[f64], &[usize])> = ids
        .iter()
        .zip(shapes)
        .map(|(d, s)| (d.as_slice(), *s))
        .collect();
    kernels::concat(&parts, axis, 1)
        .iter()
        .map(|&v| ((v / 1e12) as usize, (v % 1e12) as usize))
        .collect()
}
