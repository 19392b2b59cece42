//! Generic kernels for every op whose float32 numerics do not depend on the
//! engine: activations, elementwise affine maps, pooling and data movement.
//! Engines differ only in Linear and Conv2d (see `forward::AffineKernels`).
//! All kernels take a batch of `n` samples stored back to back.

use crate::op::{chw, BinaryKind, Window2d};
use crate::tensor::{broadcast_index_map, numel, strides, Tensor};
use num_traits::Float;

/// A float type an engine computes in (f32 or f64).
pub trait Real: Float + Send + Sync + std::fmt::Debug + 'static {
    fn of_f32(v: f32) -> Self;
}
impl Real for f32 {
    fn of_f32(v: f32) -> Self {
        v
    }
}
impl Real for f64 {
    fn of_f32(v: f32) -> Self {
        v as f64
    }
}

pub fn convert<T: Real>(t: &[f32]) -> Vec<T> {
    t.iter().map(|&v| T::of_f32(v)).collect()
}

pub fn relu<T: Real>(x: T) -> T {
    if x > T::zero() {
        x
    } else {
        T::zero()
    }
}

pub fn leaky_relu<T: Real>(x: T, alpha: T) -> T {
    if x >= T::zero() {
        x
    } else {
        alpha * x
    }
}

/// 1 / (1 + e^-x): the form PyTorch and ONNX Runtime use.
pub fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// `y = x·scale + shift` elementwise (two roundings, no FMA), per sample.
pub fn affine<T: Real>(x: &[T], scale: Option<&[T]>, shift: Option<&[T]>, n: usize) -> Vec<T> {
    let per = x.len() / n.max(1);
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let k = i % per.max(1);
            let v = scale.map_or(v, |s| v * s[k]);
            shift.map_or(v, |s| v + s[k])
        })
        .collect()
}

/// Inference batch norm `(x − mean)/sqrt(var + eps)·gamma + beta` over axis 1 of `shape`.
pub fn batch_norm<T: Real>(x: &[T], shape: &[usize], params: [&Tensor; 4], eps: f32) -> Vec<T> {
    let [gamma, beta, mean, var] = params;
    let c = shape[1];
    let inner: usize = shape[2..].iter().product();
    let per = numel(shape);
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i % per) / inner % c;
            let denom = (T::of_f32(var.data[ch]) + T::of_f32(eps)).sqrt();
            (v - T::of_f32(mean.data[ch])) / denom * T::of_f32(gamma.data[ch])
                + T::of_f32(beta.data[ch])
        })
        .collect()
}

/// Elementwise binary op with numpy broadcasting, per sample.
pub fn binary<T: Real>(
    kind: BinaryKind,
    a: (&[T], &[usize]),
    b: (&[T], &[usize]),
    out: &[usize],
    n: usize,
) -> Vec<T> {
    let (ma, mb) = (broadcast_index_map(a.1, out), broadcast_index_map(b.1, out));
    let (pa, pb) = (numel(a.1), numel(b.1));
    let mut y = Vec::with_capacity(n * ma.len());
    for s in 0..n {
        for (&ia, &ib) in ma.iter().zip(&mb) {
            let (u, v) = (a.0[s * pa + ia], b.0[s * pb + ib]);
            y.push(match kind {
                BinaryKind::Add => u + v,
                BinaryKind::Sub => u - v,
                BinaryKind::Mul => u * v,
                BinaryKind::Div => u / v,
            });
        }
    }
    y
}

/// For each output position of a pooling window (channel-major), calls `f` with the valid
/// input indices (padding excluded) and the window size including padding.
pub fn for_each_window(
    in_shape: &[usize],
    w: &Window2d,
    mut f: impl FnMut(&mut dyn Iterator<Item = usize>, usize),
) {
    let (c, h, wd) = chw(in_shape).expect("checked at graph construction");
    let (oh, ow) = w.output_hw(h, wd).expect("checked at graph construction");
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let y0 = (oy * w.stride[0]) as isize - w.pads[0] as isize;
                let x0 = (ox * w.stride[1]) as isize - w.pads[1] as isize;
                // Window size counted with padding but clipped to the padded input (ONNX AveragePool).
                let y_end = (y0 + w.kernel[0] as isize).min((h + w.pads[2]) as isize);
                let x_end = (x0 + w.kernel[1] as isize).min((wd + w.pads[3]) as isize);
                let padded_size = ((y_end - y0) * (x_end - x0)) as usize;
                let mut idx = (0..w.kernel[0]).flat_map(move |ky| {
                    (0..w.kernel[1]).filter_map(move |kx| {
                        let y = y0 + (ky * w.dilation[0]) as isize;
                        let x = x0 + (kx * w.dilation[1]) as isize;
                        (y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < wd)
                            .then(|| (ch * h + y as usize) * wd + x as usize)
                    })
                });
                f(&mut idx, padded_size);
            }
        }
    }
}

pub fn max_pool<T: Real>(x: &[T], in_shape: &[usize], w: &Window2d, n: usize) -> Vec<T> {
    let per = numel(in_shape);
    let mut y = Vec::new();
    for s in 0..n {
        let xs = &x[s * per..(s + 1) * per];
        for_each_window(in_shape, w, |idx, _| {
            y.push(
                idx.map(|i| xs[i])
                    .fold(T::neg_infinity(), |m, v| if v > m { v } else { m }),
            );
        });
    }
    y
}

/// Average pooling; sums in window row-major order, then divides once.
pub fn avg_pool<T: Real>(
    x: &[T],
    in_shape: &[usize],
    w: &Window2d,
    include_pad: bool,
    n: usize,
) -> Vec<T> {
    let per = numel(in_shape);
    let mut y = Vec::new();
    for s in 0..n {
        let xs = &x[s * per..(s + 1) * per];
        for_each_window(in_shape, w, |idx, padded| {
            let mut count = 0usize;
            let sum = idx.fold(T::zero(), |acc, i| {
                count += 1;
                acc + xs[i]
            });
            let d = if include_pad { padded } else { count.max(1) };
            y.push(sum / T::from(d).expect("small integer"));
        });
    }
    y
}

pub fn pad<T: Real>(
    x: &[T],
    in_shape: &[usize],
    out_shape: &[usize],
    pads: &[usize],
    value: f32,
    n: usize,
) -> Vec<T> {
    let (per_in, per_out) = (numel(in_shape), numel(out_shape));
    let out_strides = strides(out_shape);
    let rank = in_shape.len();
    let mut y = vec![T::of_f32(value); n * per_out];
    let mut idx = vec![0usize; rank];
    for i in 0..per_in {
        let o: usize = (0..rank).map(|d| (idx[d] + pads[d]) * out_strides[d]).sum();
        for s in 0..n {
            y[s * per_out + o] = x[s * per_in + i];
        }
        for d in (0..rank).rev() {
            idx[d] += 1;
            if idx[d] < in_shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    y
}

/// For each flat index of the transposed tensor, the source flat index.
pub fn transpose_map(in_shape: &[usize], perm: &[usize]) -> Vec<usize> {
    let in_strides = strides(in_shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| in_shape[p]).collect();
    let total = numel(in_shape);
    let mut map = Vec::with_capacity(total);
    let mut idx = vec![0usize; out_shape.len()];
    for _ in 0..total {
        map.push(idx.iter().zip(perm).map(|(&i, &p)| i * in_strides[p]).sum());
        for d in (0..out_shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < out_shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    map
}

pub fn gather<T: Real>(x: &[T], map: &[usize], per_in: usize, n: usize) -> Vec<T> {
    (0..n)
        .flat_map(|s| map.iter().map(move |&i| x[s * per_in + i]))
        .collect()
}

/// Concatenation along `axis` of per-sample tensors.
pub fn concat<T: Real>(parts: &[(&[T], &[usize])], axis: usize, n: usize) -> Vec<T> {
    let mut y = Vec::new();
    for s in 0..n {
        let outer: usize = parts[0].1[..axis].iter().product();
        for o in 0..outer {
            for (data, shape) in parts {
                let block: usize = shape[axis..].iter().product();
                let start = s * numel(shape) + o * block;
                y.extend_from_slice(&data[start..start + block]);
            }
        }
    }
    y
}
