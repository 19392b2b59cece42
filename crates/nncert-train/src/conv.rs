//! Unpadded 2-d convolution and its transpose for training, as candle
//! custom ops whose forward and backward passes are im2col + GEMM
//! (matrixmultiply) per image.
//!
//! Why not candle's own `conv2d`: on the CPU its backward pass runs
//! `conv_transpose2d` and a conv2d with the output gradient as kernel, both
//! direct loops, and an unfold + matmul built from candle ops makes autodiff
//! zero-fill and accumulate a gradient for the whole column matrix
//! (K² times the input). Here the column matrix of one image is a reused
//! buffer that autodiff never sees, and a constant input (the image batch)
//! gets no gradient.

use crate::Result;
use candle_core::{
    backend::BackendStorage, CpuStorage, CustomOp2, Layout, Shape, Tensor, WithDType,
};

/// The geometry of a square-kernel, unpadded, stride-s convolution on
/// `[C, H, W]` inputs. `out_h`/`out_w` are its output size; an input larger
/// than the windows reach (a transposed conv's output padding) is allowed,
/// the unreached rows and columns get no contribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    channels: usize,
    height: usize,
    width: usize,
    kernel: usize,
    stride: usize,
    out_h: usize,
    out_w: usize,
    out_channels: usize,
}

impl Geometry {
    fn positions(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Length of a column-matrix row, C·K·K.
    fn patch(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }

    fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    fn out_len(&self) -> usize {
        self.out_channels * self.positions()
    }

    /// Calls `f(column-matrix offset, image offset)` for every kernel row
    /// (K consecutive entries on both sides) of one image's column matrix;
    /// the column-matrix offset is `position·patch + (c·K + ky)·K`.
    fn for_each_kernel_row(&self, mut f: impl FnMut(usize, usize)) {
        let k = self.kernel;
        for oy in 0..self.out_h {
            for ox in 0..self.out_w {
                let row = (oy * self.out_w + ox) * self.patch();
                for c in 0..self.channels {
                    for ky in 0..k {
                        let src = (c * self.height + oy * self.stride + ky) * self.width
                            + ox * self.stride;
                        f(row + (c * k + ky) * k, src);
                    }
                }
            }
        }
    }

    fn im2col<T: Copy>(&self, image: &[T], cols: &mut [T]) {
        let k = self.kernel;
        self.for_each_kernel_row(|dst, src| {
            cols[dst..dst + k].copy_from_slice(&image[src..src + k]);
        });
    }

    /// Adds the column matrix's entries into the image (overlaps summed).
    fn col2im<T: WithDType>(&self, cols: &[T], image: &mut [T]) {
        let k = self.kernel;
        self.for_each_kernel_row(|c, dst| {
            for (x, v) in image[dst..dst + k].iter_mut().zip(&cols[c..c + k]) {
                *x += *v;
            }
        });
    }
}

/// A row-major-or-not matrix operand: data and (row, column) strides.
struct Operand<'a, T> {
    data: &'a [T],
    strides: (usize, usize),
}

trait Gemm: WithDType {
    /// `c ← a·b + beta·c`, `a` m×k, `b` k×n, `c` m×n row-major.
    fn gemm(
        dims: (usize, usize, usize),
        a: Operand<Self>,
        b: Operand<Self>,
        beta: Self,
        c: &mut [Self],
    );
}

/// The highest index an operand of `rows × cols` with these strides reads.
fn span(rows: usize, cols: usize, (rs, cs): (usize, usize)) -> usize {
    (rows - 1) * rs + (cols - 1) * cs
}

macro_rules! impl_gemm {
    ($t:ty, $f:path) => {
        impl Gemm for $t {
            fn gemm(
                (m, k, n): (usize, usize, usize),
                a: Operand<$t>,
                b: Operand<$t>,
                beta: $t,
                c: &mut [$t],
            ) {
                assert!(span(m, k, a.strides) < a.data.len());
                assert!(span(k, n, b.strides) < b.data.len());
                assert!(m * n <= c.len());
                // SAFETY: the asserts keep every access of the three
                // operands inside their slices.
                unsafe {
                    $f(
                        m,
                        k,
                        n,
                        1.0,
                        a.data.as_ptr(),
                        a.strides.0 as isize,
                        a.strides.1 as isize,
                        b.data.as_ptr(),
                        b.strides.0 as isize,
                        b.strides.1 as isize,
                        beta,
                        c.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                }
            }
        }
    };
}
impl_gemm!(f32, matrixmultiply::sgemm);
impl_gemm!(f64, matrixmultiply::dgemm);

/// Images per thread for a batch of `batch` (candle's thread count).
fn group_size(batch: usize) -> usize {
    batch
        .div_ceil(candle_core::utils::get_num_threads().max(1))
        .max(1)
}

/// Maps `f` over groups of whole images on scoped threads: `f(input group,
/// output group)` with `in_len`/`out_len` values per image.
fn per_image_group<T: Send + Sync>(
    (input, in_len): (&[T], usize),
    (output, out_len): (&mut [T], usize),
    f: impl Fn(&[T], &mut [T]) + Sync,
) {
    let n = group_size(input.len() / in_len);
    std::thread::scope(|s| {
        for (i, o) in input.chunks(n * in_len).zip(output.chunks_mut(n * out_len)) {
            let f = &f;
            s.spawn(move || f(i, o));
        }
    });
}

/// `[B, C, H, W]` → `[B, O, out_h, out_w]`: per image `W (O×P) · colsᵀ`.
fn conv_forward<T: Gemm>(g: &Geometry, x: &[T], w: &[T]) -> Vec<T> {
    let mut out = vec![T::zero(); x.len() / g.image_len() * g.out_len()];
    per_image_group((x, g.image_len()), (&mut out, g.out_len()), |x, out| {
        conv_forward_serial(g, x, w, out)
    });
    out
}

fn conv_forward_serial<T: Gemm>(g: &Geometry, x: &[T], w: &[T], out: &mut [T]) {
    let (l, p) = (g.positions(), g.patch());
    let mut cols = vec![T::zero(); l * p];
    for (img, o) in x.chunks(g.image_len()).zip(out.chunks_mut(g.out_len())) {
        g.im2col(img, &mut cols);
        let w = Operand {
            data: w,
            strides: (p, 1),
        };
        let cols_t = Operand {
            data: &cols,
            strides: (1, p),
        };
        T::gemm((g.out_channels, p, l), w, cols_t, T::zero(), o);
    }
}

/// The adjoint of [`conv_forward`] in its input: `[B, O, out_h, out_w]` →
/// `[B, C, H, W]`, per image `col2im(gradᵀ (L×O) · W)`.
fn conv_input_grad<T: Gemm>(g: &Geometry, grad: &[T], w: &[T]) -> Vec<T> {
    let mut x = vec![T::zero(); grad.len() / g.out_len() * g.image_len()];
    per_image_group((grad, g.out_len()), (&mut x, g.image_len()), |grad, x| {
        conv_input_grad_serial(g, grad, w, x)
    });
    x
}

fn conv_input_grad_serial<T: Gemm>(g: &Geometry, grad: &[T], w: &[T], x: &mut [T]) {
    let (l, p) = (g.positions(), g.patch());
    let mut cols = vec![T::zero(); l * p];
    for (gr, img) in grad.chunks(g.out_len()).zip(x.chunks_mut(g.image_len())) {
        let gr_t = Operand {
            data: gr,
            strides: (1, l),
        };
        let w = Operand {
            data: w,
            strides: (p, 1),
        };
        T::gemm((l, g.out_channels, p), gr_t, w, T::zero(), &mut cols);
        g.col2im(&cols, img);
    }
}

/// The adjoint of [`conv_forward`] in its kernel: `Σ_b grad_b (O×L) · cols_b`.
/// Each thread sums its images' products; the partial sums are added last.
fn conv_weight_grad<T: Gemm>(g: &Geometry, grad: &[T], x: &[T]) -> Vec<T> {
    let n = group_size(x.len() / g.image_len());
    let partials: Vec<Vec<T>> = std::thread::scope(|s| {
        let handles: Vec<_> = grad
            .chunks(n * g.out_len())
            .zip(x.chunks(n * g.image_len()))
            .map(|(grad, x)| s.spawn(move || conv_weight_grad_serial(g, grad, x)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("conv worker"))
            .collect()
    });
    let sum = partials.into_iter().reduce(|mut w, part| {
        for (a, b) in w.iter_mut().zip(&part) {
            *a += *b;
        }
        w
    });
    sum.unwrap_or_else(|| vec![T::zero(); g.out_channels * g.patch()])
}

fn conv_weight_grad_serial<T: Gemm>(g: &Geometry, grad: &[T], x: &[T]) -> Vec<T> {
    let (l, p) = (g.positions(), g.patch());
    let mut cols = vec![T::zero(); l * p];
    let mut w = vec![T::zero(); g.out_channels * p];
    for (gr, img) in grad.chunks(g.out_len()).zip(x.chunks(g.image_len())) {
        g.im2col(img, &mut cols);
        let gr = Operand {
            data: gr,
            strides: (l, 1),
        };
        let cols = Operand {
            data: &cols,
            strides: (p, 1),
        };
        T::gemm((g.out_channels, l, p), gr, cols, T::one(), &mut w);
    }
    w
}

fn slice<'a, T: WithDType>(data: &'a [T], layout: &Layout) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => Err(candle_core::Error::RequiresContiguous { op: "conv" }),
    }
}

/// A two-operand computation written once for both float types training
/// uses; [`on_storages`] and [`on_tensors`] pick the type.
trait SliceOp: Copy {
    fn run<T: Gemm>(self, a: &[T], b: &[T]) -> Vec<T>;
}

/// The three per-image products; each op and its gradients are made of them.
#[derive(Clone, Copy, Debug)]
enum Kernel {
    /// [`conv_forward`]`(x, w)`.
    Forward,
    /// [`conv_input_grad`]`(grad, w)`.
    InputGrad,
    /// [`conv_weight_grad`]`(grad, x)`.
    WeightGrad,
}

impl SliceOp for (Kernel, &Geometry) {
    fn run<T: Gemm>(self, a: &[T], b: &[T]) -> Vec<T> {
        let (kernel, g) = self;
        match kernel {
            Kernel::Forward => conv_forward(g, a, b),
            Kernel::InputGrad => conv_input_grad(g, a, b),
            Kernel::WeightGrad => conv_weight_grad(g, a, b),
        }
    }
}

/// `op` on two `f32` or two `f64` storages.
fn on_storages(
    op: impl SliceOp,
    name: &'static str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
) -> candle_core::Result<CpuStorage> {
    Ok(match (s1, s2) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => {
            CpuStorage::F32(op.run(slice(a, l1)?, slice(b, l2)?))
        }
        (CpuStorage::F64(a), CpuStorage::F64(b)) => {
            CpuStorage::F64(op.run(slice(a, l1)?, slice(b, l2)?))
        }
        _ => return Err(candle_core::Error::UnsupportedDTypeForOp(s1.dtype(), name)),
    })
}

/// `op` on two tensors (copied out flat), as a tensor of `shape`.
fn on_tensors(
    op: impl SliceOp,
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
) -> candle_core::Result<Tensor> {
    let (a, b) = (a.flatten_all()?, b.flatten_all()?);
    let dev = a.device();
    match a.dtype() {
        candle_core::DType::F32 => {
            Tensor::from_vec(op.run::<f32>(&a.to_vec1()?, &b.to_vec1()?), shape, dev)
        }
        _ => Tensor::from_vec(op.run::<f64>(&a.to_vec1()?, &b.to_vec1()?), shape, dev),
    }
}

/// The convolution `(x [B, C, H, W], w [O, C, K, K])` → `[B, O, out_h,
/// out_w]`, or with `transposed` its adjoint in the input, `(a [B, O,
/// out_h, out_w], w)` → `[B, C, H, W]`.
struct Conv {
    g: Geometry,
    transposed: bool,
}

impl CustomOp2 for Conv {
    fn name(&self) -> &'static str {
        if self.transposed {
            "im2col-conv-transpose2d"
        } else {
            "im2col-conv2d"
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = &self.g;
        let batch = l1.dims()[0];
        let (kernel, shape) = if self.transposed {
            (Kernel::InputGrad, (batch, g.channels, g.height, g.width))
        } else {
            (Kernel::Forward, (batch, g.out_channels, g.out_h, g.out_w))
        };
        let out = on_storages((kernel, g), "conv", (s1, l1), (s2, l2))?;
        Ok((out, shape.into()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        w: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = &self.g;
        // The kernel gradient pairs the conv-output-shaped operand with the
        // input-shaped one.
        let (arg_kernel, (out_side, in_side)) = if self.transposed {
            (Kernel::Forward, (arg, grad))
        } else {
            (Kernel::InputGrad, (grad, arg))
        };
        let grad_arg = arg
            .track_op()
            .then(|| on_tensors((arg_kernel, g), grad, w, arg.dims()));
        let grad_w = w
            .track_op()
            .then(|| on_tensors((Kernel::WeightGrad, g), out_side, in_side, w.dims()));
        Ok((grad_arg.transpose()?, grad_w.transpose()?))
    }
}

/// `conv2d(x, w)` with no padding: `x` `[B, C, H, W]`, `w` `[O, C, K, K]`
/// → `[B, O, out_h, out_w]`. Equal to candle's `conv2d(w, 0, stride, 1, 1)`.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    let (_, channels, height, width) = x.dims4()?;
    let (out_channels, _, kernel, _) = w.dims4()?;
    let g = Geometry {
        channels,
        height,
        width,
        kernel,
        stride,
        out_h: (height - kernel) / stride + 1,
        out_w: (width - kernel) / stride + 1,
        out_channels,
    };
    let op = Conv {
        g,
        transposed: false,
    };
    Ok(x.contiguous()?.apply_op2(&w.contiguous()?, op)?)
}

/// The transpose of [`conv2d`]: `a` `[B, O, out_h, out_w]` → `[B, C, H, W]`
/// for an input of size `height × width` (≥ what the windows reach).
pub fn conv2d_transpose(
    a: &Tensor,
    w: &Tensor,
    stride: usize,
    input: [usize; 2],
) -> Result<Tensor> {
    let (_, _, out_h, out_w) = a.dims4()?;
    let (out_channels, channels, kernel, _) = w.dims4()?;
    let g = Geometry {
        channels,
        height: input[0],
        width: input[1],
        kernel,
        stride,
        out_h,
        out_w,
        out_channels,
    };
    let op = Conv {
        g,
        transposed: true,
    };
    Ok(a.contiguous()?.apply_op2(&w.contiguous()?, op)?)
}

/// Adds a per-channel bias `b [C]` to `y [B, C, H, W]` (`hw` = H·W). The
/// same as `y.broadcast_add(b.reshape((1, C, 1, 1)))`, but the bias gradient
/// is a contiguous per-channel sum ([`ChannelSums`]): candle's broadcast
/// backward reduces over the strided dims 0, 2, 3 on one thread (≈ 10% of a
/// small-net IBP step).
#[derive(Clone, Copy)]
struct ChannelBias {
    hw: usize,
}

impl SliceOp for ChannelBias {
    fn run<T: Gemm>(self, y: &[T], b: &[T]) -> Vec<T> {
        let c = b.len();
        y.chunks(self.hw)
            .enumerate()
            .flat_map(|(plane, ys)| {
                let bias = b[plane % c];
                ys.iter().map(move |&v| v + bias)
            })
            .collect()
    }
}

/// `(grad [B, C, H, W], b [C])` → the sum of `grad` per channel (`b` gives
/// only the channel count); planes summed in order, one after the other.
#[derive(Clone, Copy)]
struct ChannelSums {
    hw: usize,
}

impl SliceOp for ChannelSums {
    fn run<T: Gemm>(self, grad: &[T], b: &[T]) -> Vec<T> {
        let channels = b.len();
        let mut sums = vec![T::zero(); channels];
        for (plane, gs) in grad.chunks(self.hw).enumerate() {
            sums[plane % channels] += gs.iter().fold(T::zero(), |a, &v| a + v);
        }
        sums
    }
}

impl CustomOp2 for ChannelBias {
    fn name(&self) -> &'static str {
        "channel-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = on_storages(*self, "channel-bias", (s1, l1), (s2, l2))?;
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        y: &Tensor,
        b: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let sums = ChannelSums { hw: self.hw };
        let grad_b = b.track_op().then(|| on_tensors(sums, grad, b, b.dims()));
        Ok((y.track_op().then(|| grad.clone()), grad_b.transpose()?))
    }
}

/// `y [B, C, H, W] + b [C]` per channel (see [`ChannelBias`]).
pub fn add_channel_bias(y: &Tensor, b: &Tensor) -> Result<Tensor> {
    let hw = y.dims()[2..].iter().product();
    Ok(y.contiguous()?
        .apply_op2(&b.contiguous()?, ChannelBias { hw })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let data: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
        d.max(0).unwrap().to_scalar::<f64>().unwrap()
    }

    /// Values and both gradients equal candle's direct convolution (f64),
    /// for the strides and kernels of Table 1's nets; likewise the transposed
    /// conv (with output padding) and candle's `conv_transpose2d`.
    #[test]
    fn equals_candle_convolution_and_its_gradients() {
        for (seed, (c, hw, o, k, s)) in [(3, 11, 4, 4, 2), (2, 9, 5, 3, 1), (1, 28, 16, 4, 2)]
            .into_iter()
            .enumerate()
        {
            let seed = seed as u64;
            let x = Var::from_tensor(&random(&[2, c, hw, hw], seed)).unwrap();
            let w = Var::from_tensor(&random(&[o, c, k, k], seed + 10)).unwrap();
            let ours = conv2d(&x, &w, s).unwrap();
            let theirs = x.conv2d(&w, 0, s, 1, 1).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            assert!(max_diff(&ours, &theirs) < 1e-12);
            let probe = random(ours.dims(), seed + 20);
            let g_ours = (&ours * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g_theirs = (&theirs * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for v in [&x, &w] {
                let (a, b) = (g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
                assert!(max_diff(a, b) < 1e-12, "seed {seed}");
            }
            let pad = 1;
            let size = (ours.dims()[2] - 1) * s + k + pad;
            let a = Var::from_tensor(&probe).unwrap();
            let t_ours = conv2d_transpose(&a, &w, s, [size, size]).unwrap();
            // Output padding as explicit zero rows and columns: candle's
            // backward pass of `conv_transpose2d` with output padding fails.
            let t_theirs = a.conv_transpose2d(&w, 0, 0, s, 1).unwrap();
            let t_theirs = t_theirs.pad_with_zeros(2, 0, pad).unwrap();
            let t_theirs = t_theirs.pad_with_zeros(3, 0, pad).unwrap();
            assert!(max_diff(&t_ours, &t_theirs) < 1e-12);
            let probe = random(t_ours.dims(), seed + 30);
            let g_ours = (&t_ours * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g_theirs = (&t_theirs * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for v in [&a, &w] {
                let (x, y) = (g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
                assert!(max_diff(x, y) < 1e-12, "transposed, seed {seed}");
            }
        }
    }

    /// The channel bias and its gradients equal candle's broadcast add.
    #[test]
    fn channel_bias_equals_broadcast_add() {
        let y = Var::from_tensor(&random(&[3, 4, 5, 6], 40)).unwrap();
        let b = Var::from_tensor(&random(&[4], 41)).unwrap();
        let ours = add_channel_bias(&y, &b).unwrap();
        let theirs = y.broadcast_add(&b.reshape((1, 4, 1, 1)).unwrap()).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-15);
        let probe = random(ours.dims(), 42);
        let loss = |t: &Tensor| (t * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let (g_ours, g_theirs) = (loss(&ours), loss(&theirs));
        for v in [&y, &b] {
            let (a, c) = (g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
            assert!(max_diff(a, c) < 1e-12);
        }
        let narrow = add_channel_bias(
            &y.to_dtype(DType::F32).unwrap(),
            &b.to_dtype(DType::F32).unwrap(),
        )
        .unwrap();
        assert!(max_diff(&narrow.to_dtype(DType::F64).unwrap(), &ours) < 1e-6);
    }

    #[test]
    fn float32_matches_float64() {
        let x = random(&[3, 2, 10, 10], 7);
        let w = random(&[4, 2, 3, 3], 8);
        let wide = conv2d(&x, &w, 1).unwrap();
        let (x32, w32) = (
            x.to_dtype(DType::F32).unwrap(),
            w.to_dtype(DType::F32).unwrap(),
        );
        let narrow = conv2d(&x32, &w32, 1).unwrap().to_dtype(DType::F64).unwrap();
        assert!(max_diff(&wide, &narrow) < 1e-5);
    }
}
