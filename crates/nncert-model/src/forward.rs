//! Batched forward execution of a graph. Engines plug in their own Linear and
//! Conv2d (where float32 implementations differ); everything else is shared.

use crate::error::{ModelError, Result};
use crate::graph::{Graph, NodeId};
use crate::kernels::{self, convert, Real};
use crate::op::{chw, Op, Window2d};
use crate::tensor::{numel, Tensor};

/// The affine ops whose summation order defines an engine's numerics.
pub trait AffineKernels<T: Real> {
    /// `y[s, o] = Σ_i w[o,i] x[s,i] + b[o]` for `rows` rows of length `w.shape[1]`.
    fn linear(
        &self,
        node: NodeId,
        weight: &Tensor,
        bias: Option<&Tensor>,
        x: &[T],
        rows: usize,
    ) -> Vec<T>;
    fn conv2d(&self, node: NodeId, conv: &ConvCall, x: &[T], n: usize) -> Vec<T>;
}

/// Everything a convolution kernel needs to know about one Conv2d node.
pub struct ConvCall<'a> {
    pub weight: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub window: Window2d,
    pub groups: usize,
    pub in_chw: (usize, usize, usize),
    pub out_chw: (usize, usize, usize),
}

impl<'a> ConvCall<'a> {
    /// The Conv2d call of node `id` of `graph`, or None if it is not a convolution.
    pub fn of(graph: &'a Graph, id: NodeId) -> Option<ConvCall<'a>> {
        let node = &graph.nodes[id];
        let Op::Conv2d {
            weight,
            bias,
            window,
            groups,
        } = &node.op
        else {
            return None;
        };
        Some(ConvCall {
            weight,
            bias: bias.as_ref(),
            window: *window,
            groups: *groups,
            in_chw: chw(&graph.nodes[node.inputs[0]].shape)?,
            out_chw: chw(&node.shape)?,
        })
    }

    /// Calls `f(output index, input index, weight index)` for every tap that
    /// reads the input (not padding), outputs in row-major order and, within
    /// an output, taps in (in-channel, ky, kx) order: the summation order of
    /// the direct convolution.
    pub fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (oc, oh, ow) = self.out_chw;
        let (_, h, w) = self.in_chw;
        let [_, icg, kh, kw] = self.weight.shape[..] else {
            unreachable!("conv weight is 4-D")
        };
        let taps = self.pixel_taps();
        let ocg = oc / self.groups;
        for o in 0..oc {
            let g = o / ocg;
            for (p, pixel_taps) in taps.iter().enumerate() {
                let out = o * oh * ow + p;
                for icl in 0..icg {
                    let (channel, kernel) = ((g * icg + icl) * h * w, (o * icg + icl) * kh * kw);
                    for &(k, offset) in pixel_taps {
                        f(out, channel + offset, kernel + k);
                    }
                }
            }
        }
    }

    /// Per output pixel, its taps inside the input: (ky·kw + kx, offset in a channel).
    fn pixel_taps(&self) -> Vec<Vec<(usize, usize)>> {
        let (_, oh, ow) = self.out_chw;
        let kw = self.window.kernel[1];
        let taps = self.window.kernel[0] * kw;
        (0..oh * ow)
            .map(|p| {
                let (oy, ox) = (p / ow, p % ow);
                (0..taps)
                    .filter_map(|k| Some((k, self.input_index(0, k / kw, k % kw, oy, ox)?)))
                    .collect()
            })
            .collect()
    }

    /// Input flat index of (channel, kernel row, kernel col) for output pixel
    /// (oy, ox), or None where the kernel reads padding.
    #[inline]
    pub fn input_index(
        &self,
        ic: usize,
        ky: usize,
        kx: usize,
        oy: usize,
        ox: usize,
    ) -> Option<usize> {
        let (_, h, w) = self.in_chw;
        let wd = &self.window;
        let y = (oy * wd.stride[0] + ky * wd.dilation[0]) as isize - wd.pads[0] as isize;
        let x = (ox * wd.stride[1] + kx * wd.dilation[1]) as isize - wd.pads[1] as isize;
        (y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w)
            .then(|| (ic * h + y as usize) * w + x as usize)
    }
}

/// Runs `graph` on a batch of `n` samples (`input.len() == n · input size`),
/// returning the value of every node (batched). Nodes not needed are still computed.
pub fn run_all<T: Real, K: AffineKernels<T>>(
    graph: &Graph,
    kernels: &K,
    input: &[T],
) -> Result<Vec<Vec<T>>> {
    run_with(graph, kernels, input, |_, _| None)
}

/// [`run_all`] where `replace(node, values so far)` may supply a node's value
/// instead of the op (bound analyses evaluate their relaxations this way).
pub fn run_with<T: Real, K: AffineKernels<T>>(
    graph: &Graph,
    kernels: &K,
    input: &[T],
    mut replace: impl FnMut(NodeId, &[Vec<T>]) -> Option<Vec<T>>,
) -> Result<Vec<Vec<T>>> {
    let per = graph.input_len();
    if per == 0 || !input.len().is_multiple_of(per) || input.is_empty() {
        return Err(ModelError::InputSize {
            got: input.len(),
            expected: per,
            shape: graph.input_shape().to_vec(),
        });
    }
    let n = input.len() / per;
    let mut values: Vec<Vec<T>> = Vec::with_capacity(graph.nodes.len());
    for (id, node) in graph.nodes.iter().enumerate() {
        let arg = |k: usize| values[node.inputs[k]].as_slice();
        let in_shape = |k: usize| graph.nodes[node.inputs[k]].shape.as_slice();
        if let Some(y) = replace(id, &values) {
            values.push(y);
            continue;
        }
        let y = match &node.op {
            Op::Input => input.to_vec(),
            Op::Constant(t) => convert::<T>(&t.data).repeat(n),
            Op::Linear { weight, bias } => {
                let rows = n * numel(&node.shape) / weight.shape[0];
                kernels.linear(id, weight, bias.as_ref(), arg(0), rows)
            }
            Op::Conv2d { .. } => {
                kernels.conv2d(id, &ConvCall::of(graph, id).expect("conv"), arg(0), n)
            }
            op => shared_op(op, arg, in_shape, &node.shape, node.inputs.len(), n),
        };
        values.push(y);
    }
    Ok(values)
}

/// Runs the graph and returns only the output (batched).
pub fn run<T: Real, K: AffineKernels<T>>(
    graph: &Graph,
    kernels: &K,
    input: &[T],
) -> Result<Vec<T>> {
    let mut values = run_all(graph, kernels, input)?;
    Ok(std::mem::take(&mut values[graph.output]))
}

/// Ops evaluated identically by every engine.
fn shared_op<'v, T: Real>(
    op: &Op,
    arg: impl Fn(usize) -> &'v [T],
    in_shape: impl Fn(usize) -> &'v [usize],
    out_shape: &[usize],
    arity: usize,
    n: usize,
) -> Vec<T> {
    let x = arg(0);
    let map = |f: &dyn Fn(T) -> T| x.iter().map(|&v| f(v)).collect::<Vec<T>>();
    match op {
        Op::Relu => map(&kernels::relu),
        Op::LeakyRelu { alpha } => map(&|v| kernels::leaky_relu(v, T::of_f32(*alpha))),
        Op::Sigmoid => map(&kernels::sigmoid),
        Op::Tanh => map(&|v| v.tanh()),
        Op::Atan => map(&|v| v.atan()),
        Op::Affine { scale, shift } => {
            let (s, b) = (
                scale.as_ref().map(|t| convert::<T>(&t.data)),
                shift.as_ref().map(|t| convert::<T>(&t.data)),
            );
            kernels::affine(x, s.as_deref(), b.as_deref(), n)
        }
        Op::BatchNorm {
            gamma,
            beta,
            mean,
            var,
            epsilon,
        } => kernels::batch_norm(x, in_shape(0), [gamma, beta, mean, var], *epsilon),
        Op::Binary(kind) => {
            kernels::binary(*kind, (x, in_shape(0)), (arg(1), in_shape(1)), out_shape, n)
        }
        Op::MaxPool2d { window } => kernels::max_pool(x, in_shape(0), window, n),
        Op::AvgPool2d {
            window,
            count_include_pad,
        } => kernels::avg_pool(x, in_shape(0), window, *count_include_pad, n),
        Op::Pad { pads, value } => kernels::pad(x, in_shape(0), out_shape, pads, *value, n),
        Op::Reshape => x.to_vec(),
        Op::Transpose { perm } => kernels::gather(
            x,
            &kernels::transpose_map(in_shape(0), perm),
            numel(in_shape(0)),
            n,
        ),
        Op::Concat { axis } => {
            let parts: Vec<(&[T], &[usize])> = (0..arity).map(|k| (arg(k), in_shape(k))).collect();
            kernels::concat(&parts, *axis, n)
        }
        Op::Input | Op::Constant(_) | Op::Linear { .. } | Op::Conv2d { .. } => {
            unreachable!("engine ops")
        }
    }
}

/// The reference semantics: every op in f64, each sum accumulated in a fixed
/// order (bias first, then inputs in index order).
pub struct Reference;

impl AffineKernels<f64> for Reference {
    fn linear(
        &self,
        _: NodeId,
        weight: &Tensor,
        bias: Option<&Tensor>,
        x: &[f64],
        rows: usize,
    ) -> Vec<f64> {
        direct_linear(weight, bias, x, rows, |v| v as f64)
    }

    fn conv2d(&self, _: NodeId, c: &ConvCall, x: &[f64], n: usize) -> Vec<f64> {
        direct_conv(c, x, n, |v| v as f64)
    }
}

/// Direct linear layer: per output, bias then Σ in input order, one
/// accumulator. Generic so that the float32 direct engine shares the order.
pub fn direct_linear<T: Real>(
    weight: &Tensor,
    bias: Option<&Tensor>,
    x: &[T],
    rows: usize,
    of: impl Fn(f32) -> T,
) -> Vec<T> {
    let (out, inp) = (weight.shape[0], weight.shape[1]);
    let mut y = vec![T::zero(); rows * out];
    for (xr, yr) in x.chunks(inp).zip(y.chunks_mut(out)) {
        // LANES outputs at a time, as in `direct_conv`.
        for o0 in (0..out).step_by(LANES) {
            let outs: [usize; LANES] = std::array::from_fn(|j| (o0 + j).min(out - 1));
            let rows = outs.map(|o| &weight.data[o * inp..][..inp]);
            let mut acc = outs.map(|o| bias.map_or(T::zero(), |b| of(b.data[o])));
            for (i, &xi) in xr.iter().enumerate() {
                for (a, w) in acc.iter_mut().zip(&rows) {
                    *a = *a + of(w[i]) * xi;
                }
            }
            for (&o, &a) in outs.iter().zip(&acc) {
                yr[o] = a;
            }
        }
    }
    y
}

/// Direct convolution: for each output, bias then Σ over (input channel,
/// kernel row, kernel column) in that order. Generic so that the float32
/// direct engine shares the exact loop order.
pub fn direct_conv<T: Real>(c: &ConvCall, x: &[T], n: usize, of: impl Fn(f32) -> T) -> Vec<T> {
    let (ic, ih, iw) = c.in_chw;
    let (oc, oh, ow) = c.out_chw;
    let (in_len, out_len, plane) = (ic * ih * iw, oc * oh * ow, oh * ow);
    let [_, icg, kh, kw] = c.weight.shape[..] else {
        unreachable!("conv weight is 4-D")
    };
    let (taps, ocg) = (c.pixel_taps(), oc / c.groups);
    let mut y = vec![T::zero(); n * out_len];
    for (xs, ys) in x.chunks(in_len).zip(y.chunks_mut(out_len)) {
        // LANES outputs of one group at a time, each its own sum in its own
        // order: independent additions the CPU can overlap.
        let starts = (0..c.groups).flat_map(|g| (g * ocg..(g + 1) * ocg).step_by(LANES));
        for o0 in starts {
            let g = o0 / ocg;
            let outs: [usize; LANES] = std::array::from_fn(|j| (o0 + j).min((g + 1) * ocg - 1));
            let channels = g * icg..(g + 1) * icg;
            for (p, pixel_taps) in taps.iter().enumerate() {
                let mut acc = outs.map(|o| c.bias.map_or(T::zero(), |b| of(b.data[o])));
                for (icl, channel) in channels.clone().enumerate() {
                    let xc = &xs[channel * ih * iw..][..ih * iw];
                    for &(k, offset) in pixel_taps {
                        for (a, &o) in acc.iter_mut().zip(&outs) {
                            *a = *a + of(c.weight.data[(o * icg + icl) * kh * kw + k]) * xc[offset];
                        }
                    }
                }
                for (&o, &a) in outs.iter().zip(&acc) {
                    ys[o * plane + p] = a;
                }
            }
        }
    }
    y
}

/// Outputs the direct convolution sums side by side.
const LANES: usize = 4;

/// The f64 reference forward pass on a batch of float32 inputs.
pub fn reference_forward(graph: &Graph, input: &[f64]) -> Result<Vec<f64>> {
    run(graph, &Reference, input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{random_tensor, RandomConv};
    use rand::{Rng, SeedableRng};

    /// The direct linear layer is bias, then the inputs in order, one
    /// float32 accumulator per output, bit for bit.
    #[test]
    fn direct_linear_sums_in_input_order() {
        let mut r = rand::rngs::StdRng::seed_from_u64(3);
        for (out, inp, rows) in [(1, 5, 1), (7, 13, 2), (10, 33, 3)] {
            let weight = random_tensor(&mut r, &[out, inp], 1.0);
            let bias = random_tensor(&mut r, &[out], 1.0);
            let x: Vec<f32> = (0..rows * inp).map(|_| r.gen_range(-1.0..1.0)).collect();
            let y = direct_linear(&weight, Some(&bias), &x, rows, |v| v);
            for (row, o) in (0..rows).flat_map(|row| (0..out).map(move |o| (row, o))) {
                let mut want = bias.data[o];
                for i in 0..inp {
                    want += weight.data[o * inp + i] * x[row * inp + i];
                }
                assert_eq!(
                    y[row * out + o].to_bits(),
                    want.to_bits(),
                    "row {row} output {o}"
                );
            }
        }
    }

    /// The direct convolution is bias, then the taps in (input channel,
    /// kernel row, kernel column) order, one float32 accumulator: checked
    /// bit for bit against that sum written out, on padded, strided,
    /// dilated and grouped convolutions.
    #[test]
    fn direct_conv_sums_in_the_documented_order() {
        let mut drawn = 0;
        for seed in 0..24 {
            let mut r = rand::rngs::StdRng::seed_from_u64(seed);
            let Some(conv) = RandomConv::draw(&mut r, 9) else {
                continue;
            };
            drawn += 1;
            let c = conv.call();
            let ((ic, h, w), (oc, oh, ow)) = (c.in_chw, c.out_chw);
            let [_, icg, kh, kw] = conv.weight.shape[..] else {
                unreachable!()
            };
            let ocg = oc / c.groups;
            let x: Vec<f32> = (0..ic * h * w).map(|_| r.gen_range(-1.0..1.0)).collect();
            let y = direct_conv(&c, &x, 1, |v| v);
            for o in 0..oc {
                for (oy, ox) in (0..oh).flat_map(|oy| (0..ow).map(move |ox| (oy, ox))) {
                    let mut want = conv.bias.data[o];
                    for icl in 0..icg {
                        for (ky, kx) in (0..kh).flat_map(|ky| (0..kw).map(move |kx| (ky, kx))) {
                            let channel = o / ocg * icg + icl;
                            if let Some(i) = c.input_index(channel, ky, kx, oy, ox) {
                                let tap = ((o * icg + icl) * kh + ky) * kw + kx;
                                want += conv.weight.data[tap] * x[i];
                            }
                        }
                    }
                    let got = y[(o * oh + oy) * ow + ox];
                    assert_eq!(got.to_bits(), want.to_bits(), "seed {seed} output {o}");
                }
            }
        }
        assert!(drawn >= 12, "only {drawn} of 24 geometries fit");
    }
}
