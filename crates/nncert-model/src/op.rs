//! The closed set of operations of the graph IR, their attributes and their
//! output-shape rules. Shapes are per sample, exactly as the ONNX file gives
//! them (a leading batch dimension of 1 included); engines batch N samples.

use crate::error::{ModelError, Result};
use crate::tensor::{broadcast_shape, numel, Tensor};
use serde::{Deserialize, Serialize};

/// Elementwise binary operations between two node values (numpy broadcasting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
}

/// Geometry of a 2-D convolution or pooling window over a `[1, C, H, W]` or `[C, H, W]` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// top, left, bottom, right
    pub pads: [usize; 4],
    pub dilation: [usize; 2],
}

impl Window2d {
    /// Output spatial size for an input of `h × w`, or None if the window does not fit.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let dim = |n: usize, pb: usize, pe: usize, k: usize, s: usize, d: usize| {
            let span = d * (k - 1) + 1;
            let padded = n + pb + pe;
            (k > 0 && s > 0 && padded >= span).then(|| (padded - span) / s + 1)
        };
        let oh = dim(
            h,
            self.pads[0],
            self.pads[2],
            self.kernel[0],
            self.stride[0],
            self.dilation[0],
        )?;
        let ow = dim(
            w,
            self.pads[1],
            self.pads[3],
            self.kernel[1],
            self.stride[1],
            self.dilation[1],
        )?;
        Some((oh, ow))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// The network input.
    Input,
    /// A constant tensor (weights not owned by a Linear/Conv, shape operands).
    Constant(Tensor),
    /// `y[..., o] = Σ_i weight[o, i]·x[..., i] + bias[o]` over the last axis (Gemm, MatMul).
    Linear {
        weight: Tensor,
        bias: Option<Tensor>,
    },
    /// 2-D convolution; weight `[OC, IC/groups, KH, KW]`.
    Conv2d {
        weight: Tensor,
        bias: Option<Tensor>,
        window: Window2d,
        groups: usize,
    },
    /// Elementwise `y = x·scale + shift`; both have the node's shape when present.
    Affine {
        scale: Option<Tensor>,
        shift: Option<Tensor>,
    },
    /// Inference batch normalisation over channel axis 1; parameters have shape `[C]`.
    BatchNorm {
        gamma: Tensor,
        beta: Tensor,
        mean: Tensor,
        var: Tensor,
        epsilon: f32,
    },
    Binary(BinaryKind),
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Sigmoid,
    Tanh,
    Atan,
    MaxPool2d {
        window: Window2d,
    },
    AvgPool2d {
        window: Window2d,
        count_include_pad: bool,
    },
    /// Constant-mode padding; `pads` = begins of every axis then ends (ONNX order).
    Pad {
        pads: Vec<usize>,
        value: f32,
    },
    /// Reinterpretation of the row-major data with the node's shape
    /// (Flatten, Reshape, Squeeze, Unsqueeze).
    Reshape,
    Transpose {
        perm: Vec<usize>,
    },
    Concat {
        axis: usize,
    },
}

/// Channel, height, width of a `[1, C, H, W]` or `[C, H, W]` shape.
pub fn chw(shape: &[usize]) -> Option<(usize, usize, usize)> {
    match shape {
        [1, c, h, w] | [c, h, w] => Some((*c, *h, *w)),
        _ => None,
    }
}

/// The shape of a spatial op's output, keeping the input's leading batch dim if present.
fn with_chw(input: &[usize], c: usize, h: usize, w: usize) -> Vec<usize> {
    if input.len() == 4 {
        vec![1, c, h, w]
    } else {
        vec![c, h, w]
    }
}

impl Op {
    /// Short name used in summaries and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input => "Input",
            Op::Constant(_) => "Constant",
            Op::Linear { .. } => "Linear",
            Op::Conv2d { .. } => "Conv2d",
            Op::Affine { .. } => "Affine",
            Op::BatchNorm { .. } => "BatchNorm",
            Op::Binary(BinaryKind::Add) => "Add",
            Op::Binary(BinaryKind::Sub) => "Sub",
            Op::Binary(BinaryKind::Mul) => "Mul",
            Op::Binary(BinaryKind::Div) => "Div",
            Op::Relu => "Relu",
            Op::LeakyRelu { .. } => "LeakyRelu",
            Op::Sigmoid => "Sigmoid",
            Op::Tanh => "Tanh",
            Op::Atan => "Atan",
            Op::MaxPool2d { .. } => "MaxPool2d",
            Op::AvgPool2d { .. } => "AvgPool2d",
            Op::Pad { .. } => "Pad",
            Op::Reshape => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Concat { .. } => "Concat",
        }
    }

    /// Whether the op is elementwise with one input (activations).
    pub fn is_activation(&self) -> bool {
        matches!(
            self,
            Op::Relu | Op::LeakyRelu { .. } | Op::Sigmoid | Op::Tanh | Op::Atan
        )
    }

    /// Every weight tensor of the op with a stable field name (native format, validation).
    pub fn tensors_mut(&mut self) -> Vec<(&'static str, &mut Tensor)> {
        let mut out: Vec<(&'static str, &mut Tensor)> = Vec::new();
        match self {
            Op::Constant(t) => out.push(("value", t)),
            Op::Linear { weight, bias } | Op::Conv2d { weight, bias, .. } => {
                out.push(("weight", weight));
                if let Some(b) = bias {
                    out.push(("bias", b));
                }
            }
            Op::Affine { scale, shift } => {
                if let Some(s) = scale {
                    out.push(("scale", s));
                }
                if let Some(s) = shift {
                    out.push(("shift", s));
                }
            }
            Op::BatchNorm {
                gamma,
                beta,
                mean,
                var,
                ..
            } => {
                out.extend([
                    ("gamma", gamma),
                    ("beta", beta),
                    ("mean", mean),
                    ("var", var),
                ]);
            }
            _ => {}
        }
        out
    }

    /// Number of stored parameters (constants excluded).
    pub fn param_count(&self) -> usize {
        let mut op = self.clone();
        if matches!(op, Op::Constant(_)) {
            return 0;
        }
        op.tensors_mut().iter().map(|(_, t)| t.numel()).sum()
    }

    /// Output shape given the input shapes, checking that the op fits them.
    /// `reshape_to` is the declared target for `Reshape`.
    pub fn output_shape(
        &self,
        node: &str,
        inputs: &[&[usize]],
        reshape_to: Option<&[usize]>,
    ) -> Result<Vec<usize>> {
        let err = |r: String| ModelError::shape(node, r);
        let arity = match self {
            Op::Input | Op::Constant(_) => 0,
            Op::Binary(_) => 2,
            Op::Concat { .. } => inputs.len().max(1),
            _ => 1,
        };
        if inputs.len() != arity {
            return Err(err(format!(
                "{} takes {arity} inputs, got {}",
                self.name(),
                inputs.len()
            )));
        }
        let x = inputs.first().copied().unwrap_or(&[]);
        match self {
            Op::Input => Err(err("Input has no computed shape".into())),
            Op::Constant(t) => Ok(t.shape.clone()),
            Op::Linear { weight, bias } => linear_shape(x, weight, bias.as_ref()).map_err(err),
            Op::Conv2d {
                weight,
                bias,
                window,
                groups,
            } => conv_shape(x, weight, bias.as_ref(), window, *groups).map_err(err),
            Op::Affine { scale, shift } => {
                for t in [scale, shift].into_iter().flatten() {
                    if t.shape != x {
                        return Err(err(format!(
                            "affine parameter shape {:?} != input {:?}",
                            t.shape, x
                        )));
                    }
                }
                Ok(x.to_vec())
            }
            Op::BatchNorm {
                gamma,
                beta,
                mean,
                var,
                ..
            } => {
                let c = *x
                    .get(1)
                    .ok_or_else(|| err(format!("BatchNorm needs rank ≥ 2, got {x:?}")))?;
                if [gamma, beta, mean, var].iter().any(|t| t.shape != [c]) {
                    return Err(err(format!("BatchNorm parameters must have shape [{c}]")));
                }
                Ok(x.to_vec())
            }
            Op::Binary(_) => broadcast_shape(inputs[0], inputs[1]).ok_or_else(|| {
                err(format!(
                    "cannot broadcast {:?} with {:?}",
                    inputs[0], inputs[1]
                ))
            }),
            Op::Relu | Op::LeakyRelu { .. } | Op::Sigmoid | Op::Tanh | Op::Atan => Ok(x.to_vec()),
            Op::MaxPool2d { window } | Op::AvgPool2d { window, .. } => {
                let (c, h, w) =
                    chw(x).ok_or_else(|| err(format!("pooling needs [1,C,H,W], got {x:?}")))?;
                let k = window.kernel;
                let p = window.pads;
                if k.contains(&0) || p[0] >= k[0] || p[2] >= k[0] || p[1] >= k[1] || p[3] >= k[1] {
                    return Err(err(
                        "pooling needs a non-empty kernel larger than each pad".into()
                    ));
                }
                let (oh, ow) = window
                    .output_hw(h, w)
                    .ok_or_else(|| err("pooling window larger than input".into()))?;
                Ok(with_chw(x, c, oh, ow))
            }
            Op::Pad { pads, .. } => {
                if pads.len() != 2 * x.len() {
                    return Err(err(format!(
                        "Pad has {} pads for rank {}",
                        pads.len(),
                        x.len()
                    )));
                }
                Ok(x.iter()
                    .enumerate()
                    .map(|(i, d)| d + pads[i] + pads[i + x.len()])
                    .collect())
            }
            Op::Reshape => {
                let to = reshape_to.ok_or_else(|| err("Reshape without target shape".into()))?;
                if numel(to) != numel(x) {
                    return Err(err(format!("cannot reshape {x:?} to {to:?}")));
                }
                Ok(to.to_vec())
            }
            Op::Transpose { perm } => {
                let mut seen = vec![false; x.len()];
                if perm.len() != x.len()
                    || perm
                        .iter()
                        .any(|&p| p >= x.len() || std::mem::replace(&mut seen[p], true))
                {
                    return Err(err(format!(
                        "bad permutation {perm:?} for rank {}",
                        x.len()
                    )));
                }
                Ok(perm.iter().map(|&p| x[p]).collect())
            }
            Op::Concat { axis } => {
                let mut out = x.to_vec();
                if *axis >= out.len() {
                    return Err(err(format!("concat axis {axis} out of range for {x:?}")));
                }
                for s in &inputs[1..] {
                    let same_rest = s.len() == out.len()
                        && s.iter()
                            .zip(&out)
                            .enumerate()
                            .all(|(i, (a, b))| i == *axis || a == b);
                    if !same_rest {
                        return Err(err(format!(
                            "cannot concat {s:?} with {x:?} on axis {axis}"
                        )));
                    }
                    out[*axis] += s[*axis];
                }
                Ok(out)
            }
        }
    }
}

fn linear_shape(
    x: &[usize],
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> std::result::Result<Vec<usize>, String> {
    let [out, inp] = weight.shape[..] else {
        return Err(format!("linear weight must be 2-D, got {:?}", weight.shape));
    };
    match x.last() {
        Some(&d) if d == inp => {}
        _ => {
            return Err(format!(
                "input {x:?} does not end in {inp} (weight {out}×{inp})"
            ))
        }
    }
    if let Some(b) = bias {
        if b.shape != [out] {
            return Err(format!("bias shape {:?} != [{out}]", b.shape));
        }
    }
    let mut s = x.to_vec();
    *s.last_mut().unwrap() = out;
    Ok(s)
}

fn conv_shape(
    x: &[usize],
    weight: &Tensor,
    bias: Option<&Tensor>,
    window: &Window2d,
    groups: usize,
) -> std::result::Result<Vec<usize>, String> {
    let (c, h, w) = chw(x).ok_or_else(|| format!("Conv needs input [1,C,H,W], got {x:?}"))?;
    let [oc, icg, kh, kw] = weight.shape[..] else {
        return Err(format!("conv weight must be 4-D, got {:?}", weight.shape));
    };
    if groups == 0 || c % groups != 0 || oc % groups != 0 || icg * groups != c {
        return Err(format!(
            "conv weight {:?} with {groups} groups does not fit {c} channels",
            weight.shape
        ));
    }
    if window.kernel != [kh, kw] {
        return Err(format!(
            "kernel_shape {:?} != weight {:?}",
            window.kernel, weight.shape
        ));
    }
    if window.dilation.contains(&0) {
        return Err("dilation must be ≥ 1".into());
    }
    if let Some(b) = bias {
        if b.shape != [oc] {
            return Err(format!("bias shape {:?} != [{oc}]", b.shape));
        }
    }
    let (oh, ow) = window
        .output_hw(h, w)
        .ok_or("kernel larger than padded input")?;
    Ok(with_chw(x, oc, oh, ow))
}
