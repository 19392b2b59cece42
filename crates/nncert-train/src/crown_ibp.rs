//! CROWN-IBP (Zhang et al. 2020): IBP's pre-activation bounds, then one
//! CROWN backward pass from the margin specification `z_y − z_t` to the
//! input box, with CROWN-Ada's ReLU relaxation (upper: the chord; lower:
//! slope 1 when u > −l, else 0). Differentiable end to end in candle; convs
//! go backward as transposed convolutions (im2col GEMMs, `conv.rs`).

use crate::conv::conv2d_transpose;
use crate::loss::onehot;
use crate::net::{IbpBounds, Layer, Net};
use crate::Result;
use candle_core::{DType, Tensor, D};

/// `[B, K, K]`: row t of image b is `e_y − e_t` (zero for t = y).
fn margin_spec(y: &Tensor, classes: usize, dtype: DType) -> Result<Tensor> {
    let onehot = onehot(y, classes, dtype)?;
    let eye = Tensor::eye(classes, dtype, y.device())?.unsqueeze(0)?;
    Ok(onehot.unsqueeze(1)?.broadcast_sub(&eye)?)
}

/// `[B, …]` repeated K times along a new second axis, as `[B·K, …]`.
fn per_row(t: &Tensor, k: usize) -> Result<Tensor> {
    let dims = t.dims();
    let mut wide = vec![dims[0], k];
    wide.extend_from_slice(&dims[1..]);
    let mut flat = vec![dims[0] * k];
    flat.extend_from_slice(&dims[1..]);
    Ok(t.unsqueeze(1)?.broadcast_as(wide)?.reshape(flat)?)
}

/// Σ over all axes but the first.
fn sum_rest(t: &Tensor) -> Result<Tensor> {
    Ok(t.flatten_from(1)?.sum(D::Minus1)?)
}

/// Lower bounds of the margins `z_y − z_t`, `[B, K]` (0 at t = y), over the
/// box of `b` (from [`Net::ibp`] on the same batch).
pub fn crown_ibp_margins(net: &Net, b: &IbpBounds, y: &Tensor) -> Result<Tensor> {
    let (batch, classes) = b.lo.dims2()?;
    let rows = batch * classes;
    let dtype = b.lo.dtype();
    let mut a = margin_spec(y, classes, dtype)?.reshape((rows, classes))?;
    let mut bias = Tensor::zeros(rows, dtype, b.lo.device())?;
    // Shapes of each layer's input, per image.
    let mut shapes: Vec<Vec<usize>> = vec![b.input.0.dims()[1..].to_vec()];
    shapes.extend(b.pre_activation.iter().map(|(l, _)| l.dims()[1..].to_vec()));
    for (k, layer) in net.layers.iter().enumerate().rev() {
        let mut in_shape = vec![rows];
        in_shape.extend_from_slice(&shapes[k]);
        (a, bias) = match layer {
            Layer::Dense { w, b: bb } => {
                let a2 = a.flatten_from(1)?;
                let bias = (bias + a2.matmul(&bb.unsqueeze(1)?)?.squeeze(1)?)?;
                (a2.matmul(w.as_tensor())?.reshape(in_shape)?, bias)
            }
            Layer::Conv { w, b: bb, stride } => {
                let bias = (bias + sum_rest(&a.broadcast_mul(&bb.reshape((1, (), 1, 1))?)?)?)?;
                let input = [shapes[k][1], shapes[k][2]];
                (conv2d_transpose(&a, w, *stride, input)?, bias)
            }
        };
        if k > 0 {
            let (l, u) = &b.pre_activation[k - 1];
            (a, bias) = relax_relu(&a, bias, &per_row(l, classes)?, &per_row(u, classes)?)?;
        }
    }
    let (lo, hi) = (per_row(&b.input.0, classes)?, per_row(&b.input.1, classes)?);
    let positive = a.relu()?;
    let negative = (&a - &positive)?;
    let lower = (bias + sum_rest(&((positive * lo)? + (negative * hi)?)?)?)?;
    Ok(lower.reshape((batch, classes))?)
}

/// `a·relu(z)` ≥ `a'·z + bias'` for z ∈ [l, u]: positive coefficients take
/// the lower line, negative ones the upper (chord) line.
fn relax_relu(a: &Tensor, bias: Tensor, l: &Tensor, u: &Tensor) -> Result<(Tensor, Tensor)> {
    let active = l.ge(0.0)?.to_dtype(a.dtype())?;
    let unstable = (l.lt(0.0)?.to_dtype(a.dtype())? * u.gt(0.0)?.to_dtype(a.dtype())?)?;
    // Clamped so that stable elements (masked out) never divide by zero.
    let width = (u - l)?.clamp(1e-12, f64::INFINITY)?;
    let chord = (u / &width)?;
    let upper_slope = (&active + (&unstable * &chord)?)?;
    let upper_shift = (&unstable * (l.neg()? * &chord)?)?;
    let steep = u.gt(&l.neg()?)?.to_dtype(a.dtype())?;
    let lower_slope = (&active + (&unstable * steep)?)?;
    let positive = a.relu()?;
    let negative = (a - &positive)?;
    let bias = (bias + sum_rest(&(&negative * upper_shift)?)?)?;
    Ok((
        ((positive * lower_slope)? + (negative * upper_slope)?)?,
        bias,
    ))
}
