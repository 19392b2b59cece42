//! Pooling. Max pooling is exact in float32 (relaxed for back-substitution);
//! average pooling is linear (interval, error, backward).

use crate::fp::affine_error;
use crate::interval::Interval;
use nncert_model::{kernels, Window2d};

pub fn max_interval(x: &Interval, in_shape: &[usize], w: &Window2d) -> Interval {
    Interval {
        lo: kernels::max_pool(&x.lo, in_shape, w, 1),
        hi: kernels::max_pool(&x.hi, in_shape, w, 1),
    }
}

/// Backward through max pooling (CNN-Cert): if one input's lower bound is
/// at least every other input's upper bound the max is that input exactly;
/// otherwise max ≥ z_i* (i* with the largest lower bound) and max ≤ max_i u_i.
pub fn max_backward(
    a: &[f64],
    s: usize,
    x: &Interval,
    in_shape: &[usize],
    w: &Window2d,
) -> (Vec<f64>, Vec<f64>) {
    let in_len: usize = in_shape.iter().product();
    let lines = max_lines(x, in_shape, w);
    let n = lines.len();
    let mut a_in = vec![0.0; s * in_len];
    let mut cst = vec![0.0; s];
    for si in 0..s {
        for (o, &(best, upper)) in lines.iter().enumerate() {
            let v = a[si * n + o];
            match upper {
                Some(top) if v < 0.0 => cst[si] += v * top,
                _ => a_in[si * in_len + best] += v,
            }
        }
    }
    (a_in, cst)
}

/// Per output: (input of the lower line, constant upper bound or None if exact).
pub fn max_lines(x: &Interval, in_shape: &[usize], w: &Window2d) -> Vec<(usize, Option<f64>)> {
    let mut lines = Vec::new();
    kernels::for_each_window(in_shape, w, |idx, _| {
        let members: Vec<usize> = idx.collect();
        let best = *members
            .iter()
            .max_by(|&&i, &&j| x.lo[i].total_cmp(&x.lo[j]))
            .expect("pads < kernel, so no empty window");
        let others_hi = members
            .iter()
            .filter(|&&j| j != best)
            .map(|&j| x.hi[j])
            .fold(f64::NEG_INFINITY, f64::max);
        let exact = x.lo[best] >= others_hi;
        let top = members
            .iter()
            .map(|&j| x.hi[j])
            .fold(f64::NEG_INFINITY, f64::max);
        lines.push((best, (!exact).then_some(top)));
    });
    lines
}

pub fn avg_interval(x: &Interval, in_shape: &[usize], w: &Window2d, include_pad: bool) -> Interval {
    Interval {
        lo: kernels::avg_pool(&x.lo, in_shape, w, include_pad, 1),
        hi: kernels::avg_pool(&x.hi, in_shape, w, include_pad, 1),
    }
}

/// A sum of at most k·k terms and one division.
pub fn avg_error_radius(
    x: &Interval,
    in_shape: &[usize],
    w: &Window2d,
    include_pad: bool,
) -> Vec<f64> {
    let s = kernels::avg_pool(&x.magnitude(), in_shape, w, include_pad, 1);
    s.iter()
        .map(|&v| affine_error(v, w.kernel[0] * w.kernel[1] + 1))
        .collect()
}

pub fn avg_backward(
    a: &[f64],
    s: usize,
    in_shape: &[usize],
    w: &Window2d,
    include_pad: bool,
) -> Vec<f64> {
    let in_len: usize = in_shape.iter().product();
    let mut windows: Vec<(Vec<usize>, f64)> = Vec::new();
    kernels::for_each_window(in_shape, w, |idx, padded| {
        let members: Vec<usize> = idx.collect();
        let d = if include_pad {
            padded
        } else {
            members.len().max(1)
        };
        windows.push((members, 1.0 / d as f64));
    });
    let n = windows.len();
    let mut a_in = vec![0.0; s * in_len];
    for si in 0..s {
        for (o, (members, inv)) in windows.iter().enumerate() {
            let v = a[si * n + o] * inv;
            for &i in members {
                a_in[si * in_len + i] += v;
            }
        }
    }
    a_in
}
