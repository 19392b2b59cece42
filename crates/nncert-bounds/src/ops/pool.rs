//! Pooling. Max pooling is exact and monotone (interval only for now);
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
