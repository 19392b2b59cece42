//! The trainable networks: the small / medium / large convolutional nets of
//! constrained-ibp-training.md Table 1 (Gowal et al.) and plain MLPs, with a
//! fixed input-normalisation layer; their forward pass, their interval
//! bounds (IBP, §3.2), and their conversion to and from nncert's graph.

use crate::conv::{add_channel_bias, conv2d};
use crate::{Result, TrainError};
use candle_core::{DType, Device, Tensor, Var, D};
use nncert_model::passes::{canonicalize, PassOptions};
use nncert_model::{Graph, Op, Window2d};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// One layer of an architecture; a ReLU follows every layer but the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LayerSpec {
    /// Conv2d(out channels, kernel, stride), no padding.
    Conv {
        out: usize,
        kernel: usize,
        stride: usize,
    },
    /// Fully connected (outputs); flattens its input first.
    Dense(usize),
}

/// The architectures of Table 1 and dense nets of the given hidden widths.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    Small,
    Medium,
    Large,
    Mlp(Vec<usize>),
}

impl Architecture {
    pub fn layers(&self, classes: usize) -> Vec<LayerSpec> {
        use LayerSpec::{Conv, Dense};
        let conv = |out, kernel, stride| Conv {
            out,
            kernel,
            stride,
        };
        let mut layers = match self {
            Architecture::Small => vec![conv(16, 4, 2), conv(32, 4, 1), Dense(100)],
            Architecture::Medium => vec![
                conv(32, 3, 1),
                conv(32, 4, 2),
                conv(64, 3, 1),
                conv(64, 4, 2),
                Dense(512),
                Dense(512),
            ],
            Architecture::Large => vec![
                conv(64, 3, 1),
                conv(64, 3, 1),
                conv(128, 3, 2),
                conv(128, 3, 1),
                conv(128, 3, 1),
                Dense(200),
            ],
            Architecture::Mlp(hidden) => hidden.iter().map(|&h| Dense(h)).collect(),
        };
        layers.push(Dense(classes));
        layers
    }
}

/// The per-channel input normalisation `(x − mean) / std`, part of the model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: f32,
    pub std: f32,
}

impl Normalization {
    /// The mean and standard deviation of all pixels of a data set.
    pub fn of(ds: &nncert_data::Dataset) -> Normalization {
        let n = ds.pixels.len().max(1) as f64;
        let mean = ds.pixels.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = ds
            .pixels
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        Normalization {
            mean: mean as f32,
            std: var.sqrt().max(1e-6) as f32,
        }
    }

    /// MNIST's training-set statistics.
    pub const MNIST: Normalization = Normalization {
        mean: 0.1307,
        std: 0.3081,
    };
}

#[derive(Clone, Debug)]
pub(crate) enum Layer {
    Conv { w: Var, b: Var, stride: usize },
    Dense { w: Var, b: Var },
}

/// A ReLU network: normalisation, then layers with ReLUs between them.
#[derive(Clone, Debug)]
pub struct Net {
    /// `[C, H, W]` of one input.
    pub input: [usize; 3],
    pub norm: Normalization,
    pub(crate) layers: Vec<Layer>,
}

/// Interval bounds of the logits and the hidden-layer bound size.
pub struct IbpBounds {
    pub lo: Tensor,
    pub hi: Tensor,
    /// Σ over hidden layers of the mean over their neurons of (z̄ − z̲)²,
    /// averaged over the batch (the constrained-IBP term, §3.3).
    pub hidden_size: Tensor,
    /// The normalised input box, then each hidden layer's pre-activation
    /// bounds (what CROWN-IBP's backward pass relaxes).
    pub input: (Tensor, Tensor),
    pub pre_activation: Vec<(Tensor, Tensor)>,
}

impl IbpBounds {
    /// Xiao et al.'s ReLU-stability loss, Σ over hidden layers of the mean
    /// over their neurons of −tanh(1 + z̲·z̄) (low when l·u > 0: stable),
    /// averaged over the batch. Computed on demand: its tanh costs ~6% of
    /// a training step when unused.
    pub fn relu_stability(&self) -> Result<Tensor> {
        let mut total = Tensor::zeros((), self.lo.dtype(), self.lo.device())?;
        for (l, u) in &self.pre_activation {
            let rs = ((l * u)? + 1.0)?.tanh()?.neg()?.flatten_from(1)?;
            total = (total + rs.mean(D::Minus1)?.mean_all()?)?;
        }
        Ok(total)
    }
}

fn uniform(r: &mut StdRng, shape: &[usize], bound: f32) -> Result<Var> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| r.gen_range(-bound..=bound)).collect();
    Ok(Var::from_tensor(&Tensor::from_vec(
        data,
        shape,
        &Device::Cpu,
    )?)?)
}

impl Net {
    /// PyTorch's default initialisation: U(±1/√fan_in) for weights and biases.
    pub fn new(
        arch: &Architecture,
        input: [usize; 3],
        classes: usize,
        norm: Normalization,
        seed: u64,
    ) -> Result<Net> {
        let mut r = StdRng::seed_from_u64(seed);
        let mut shape = input.to_vec();
        let mut layers = Vec::new();
        for spec in arch.layers(classes) {
            match spec {
                LayerSpec::Conv {
                    out,
                    kernel,
                    stride,
                } => {
                    let [c, h, w] = [shape[0], shape[1], shape[2]];
                    if h < kernel || w < kernel {
                        return Err(TrainError::Invalid(format!(
                            "a {kernel}×{kernel} convolution does not fit a {h}×{w} input"
                        )));
                    }
                    let bound = 1.0 / ((c * kernel * kernel) as f32).sqrt();
                    layers.push(Layer::Conv {
                        w: uniform(&mut r, &[out, c, kernel, kernel], bound)?,
                        b: uniform(&mut r, &[out], bound)?,
                        stride,
                    });
                    shape = vec![out, (h - kernel) / stride + 1, (w - kernel) / stride + 1];
                }
                LayerSpec::Dense(out) => {
                    let n: usize = shape.iter().product();
                    let bound = 1.0 / (n as f32).sqrt();
                    layers.push(Layer::Dense {
                        w: uniform(&mut r, &[out, n], bound)?,
                        b: uniform(&mut r, &[out], bound)?,
                    });
                    shape = vec![out];
                }
            }
        }
        Ok(Net {
            input,
            norm,
            layers,
        })
    }

    /// A copy in another float type (f64 for gradient checks).
    pub fn to_dtype(&self, dtype: DType) -> Result<Net> {
        let cast = |v: &Var| -> Result<Var> { Ok(Var::from_tensor(&v.to_dtype(dtype)?)?) };
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(match l {
                    Layer::Conv { w, b, stride } => Layer::Conv {
                        w: cast(w)?,
                        b: cast(b)?,
                        stride: *stride,
                    },
                    Layer::Dense { w, b } => Layer::Dense {
                        w: cast(w)?,
                        b: cast(b)?,
                    },
                })
            })
            .collect::<Result<_>>()?;
        Ok(Net {
            layers,
            ..self.clone()
        })
    }

    pub fn classes(&self) -> usize {
        match self.layers.last() {
            Some(Layer::Conv { b, .. } | Layer::Dense { b, .. }) => b.dims()[0],
            None => 0,
        }
    }

    /// The trainable tensors, in a fixed order (weights then bias per layer).
    pub fn vars(&self) -> Vec<Var> {
        self.layers
            .iter()
            .flat_map(|l| match l {
                Layer::Conv { w, b, .. } | Layer::Dense { w, b } => [w.clone(), b.clone()],
            })
            .collect()
    }

    fn normalize(&self, x: &Tensor) -> Result<Tensor> {
        let n = self.norm;
        Ok(x.affine(1.0 / n.std as f64, -(n.mean / n.std) as f64)?)
    }

    /// A batch `[B, C, H, W]` (values in [0, 1]) to its logits `[B, classes]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.normalize(x)?;
        let last = self.layers.len() - 1;
        for (k, layer) in self.layers.iter().enumerate() {
            h = match layer {
                Layer::Conv { w, b, stride } => add_channel_bias(&conv2d(&h, w, *stride)?, b)?,
                Layer::Dense { w, b } => h.flatten_from(1)?.matmul(&w.t()?)?.broadcast_add(b)?,
            };
            if k < last {
                h = h.relu()?;
            }
        }
        Ok(h)
    }

    /// IBP over the L∞ ball of radius `eps` around each image of the batch,
    /// clipped to [0, 1] (§3.2: centre and radius through affine layers,
    /// `r' = |W| r`; the ends through ReLU).
    pub fn ibp(&self, x: &Tensor, eps: f64) -> Result<IbpBounds> {
        let lo = self.normalize(&(x - eps)?.clamp(0f32, 1f32)?)?;
        let hi = self.normalize(&(x + eps)?.clamp(0f32, 1f32)?)?;
        let mut mid = ((&lo + &hi)? * 0.5)?;
        let mut rad = ((&hi - &lo)? * 0.5)?;
        let mut hidden_size = Tensor::zeros((), x.dtype(), x.device())?;
        let mut pre_activation = Vec::new();
        let input = (lo.clone(), hi.clone());
        let last = self.layers.len() - 1;
        for (k, layer) in self.layers.iter().enumerate() {
            (mid, rad) = match layer {
                Layer::Conv { w, b, stride } => (
                    add_channel_bias(&conv2d(&mid, w, *stride)?, b)?,
                    conv2d(&rad, &w.abs()?, *stride)?,
                ),
                Layer::Dense { w, b } => (
                    mid.flatten_from(1)?.matmul(&w.t()?)?.broadcast_add(b)?,
                    rad.flatten_from(1)?.matmul(&w.abs()?.t()?)?,
                ),
            };
            if k < last {
                let (l, u) = ((&mid - &rad)?, (&mid + &rad)?);
                let (lo, hi) = (l.relu()?, u.relu()?);
                pre_activation.push((l, u));
                let width = (&hi - &lo)?;
                let size = width.flatten_from(1)?.sqr()?.mean(D::Minus1)?.mean_all()?;
                hidden_size = (hidden_size + size)?;
                mid = ((lo + hi)? * 0.5)?;
                rad = (width * 0.5)?;
            }
        }
        Ok(IbpBounds {
            lo: (&mid - &rad)?,
            hi: (mid + rad)?,
            hidden_size,
            input,
            pre_activation,
        })
    }

    /// The network as an nncert graph: input `[1, C, H, W]`, the
    /// normalisation as an elementwise affine op, then conv / linear / ReLU.
    pub fn to_graph(&self) -> Result<Graph> {
        let [c, h, w] = self.input;
        let mut g = Graph::with_input("x", vec![1, c, h, w]);
        let n = c * h * w;
        let full = |v: f32| nncert_model::Tensor {
            shape: vec![1, c, h, w],
            data: vec![v; n],
        };
        let affine = Op::Affine {
            scale: Some(full(1.0 / self.norm.std)),
            shift: Some(full(-self.norm.mean / self.norm.std)),
        };
        let mut id = g.push("normalize", affine, vec![0])?;
        let last = self.layers.len() - 1;
        for (k, layer) in self.layers.iter().enumerate() {
            id = match layer {
                Layer::Conv { w, b, stride } => {
                    let kernel = w.dims()[2];
                    let op = Op::Conv2d {
                        weight: to_model_tensor(w)?,
                        bias: Some(to_model_tensor(b)?),
                        window: Window2d {
                            kernel: [kernel, kernel],
                            stride: [*stride, *stride],
                            pads: [0; 4],
                            dilation: [1, 1],
                        },
                        groups: 1,
                    };
                    g.push(&format!("conv{k}"), op, vec![id])?
                }
                Layer::Dense { w, b } => {
                    let flat: usize = g.nodes[id].shape.iter().product();
                    if g.nodes[id].shape.len() != 2 {
                        id = g.push_reshaped("flatten", Op::Reshape, vec![id], Some(&[1, flat]))?;
                    }
                    let op = Op::Linear {
                        weight: to_model_tensor(w)?,
                        bias: Some(to_model_tensor(b)?),
                    };
                    g.push(&format!("fc{k}"), op, vec![id])?
                }
            };
            if k < last {
                id = g.push(&format!("relu{k}"), Op::Relu, vec![id])?;
            }
        }
        Ok(g)
    }

    /// Reads back a graph of [`Net::to_graph`]'s form (as exported, or
    /// re-imported from ONNX, whose Mul/Add canonicalise to affine ops);
    /// other graphs are refused.
    pub fn from_graph(g: &Graph) -> Result<Net> {
        let g = &canonicalize(g, PassOptions::float32_exact())?.0;
        let shape = &g.nodes[0].shape;
        if shape.len() != 4 || shape[0] != 1 {
            return Err(refuse("the input is not one [1, C, H, W] image"));
        }
        let input = [shape[1], shape[2], shape[3]];
        // The input normalisation x·scale + shift, composed over leading affine ops.
        let (mut scale, mut shift) = (1.0f32, 0.0f32);
        let mut layers = Vec::new();
        // ReLUs after each layer: one after every layer but the last, none after it.
        let mut relus: Vec<usize> = Vec::new();
        for node in &g.nodes[1..] {
            match &node.op {
                Op::Affine { scale: s, shift: t } if layers.is_empty() => {
                    let (s, t) = (
                        common_value(s)?.unwrap_or(1.0),
                        common_value(t)?.unwrap_or(0.0),
                    );
                    (scale, shift) = (scale * s, shift * s + t);
                }
                Op::Relu if !layers.is_empty() => *relus.last_mut().expect("a layer") += 1,
                Op::Reshape => {}
                op => match trainable_layer(op)? {
                    Some(layer) => {
                        layers.push(layer);
                        relus.push(0);
                    }
                    None => return Err(refuse(&format!("op {} ({})", op.name(), node.name))),
                },
            }
        }
        let expected: Vec<usize> = (0..layers.len())
            .map(|k| usize::from(k + 1 < layers.len()))
            .collect();
        if layers.is_empty() || relus != expected {
            return Err(refuse(
                "not conv/dense layers with one ReLU between each two",
            ));
        }
        if scale.is_nan() || scale <= 0.0 {
            return Err(refuse("a non-positive input scale"));
        }
        let norm = Normalization {
            mean: -shift / scale,
            std: 1.0 / scale,
        };
        Ok(Net {
            input,
            norm,
            layers,
        })
    }
}

fn refuse(why: &str) -> TrainError {
    TrainError::Invalid(format!("not a trainable network: {why}"))
}

/// The common value of a normalisation tensor (which must be uniform).
fn common_value(t: &Option<nncert_model::Tensor>) -> Result<Option<f32>> {
    match t {
        Some(t) if t.data.iter().all(|&v| v == t.data[0]) => Ok(t.data.first().copied()),
        Some(_) => Err(refuse("a per-pixel input normalisation")),
        None => Ok(None),
    }
}

/// A conv (no padding, square stride) or dense layer with bias, as
/// trainable variables; `None` for any other op.
fn trainable_layer(op: &Op) -> Result<Option<Layer>> {
    let var = |t: &nncert_model::Tensor| -> Result<Var> {
        let t = Tensor::from_vec(t.data.clone(), t.shape.as_slice(), &Device::Cpu)?;
        Ok(Var::from_tensor(&t)?)
    };
    Ok(match op {
        Op::Conv2d {
            weight,
            bias: Some(b),
            window,
            groups: 1,
        } if window.pads == [0; 4]
            && window.dilation == [1, 1]
            && window.stride[0] == window.stride[1] =>
        {
            Some(Layer::Conv {
                w: var(weight)?,
                b: var(b)?,
                stride: window.stride[0],
            })
        }
        Op::Linear {
            weight,
            bias: Some(b),
        } => Some(Layer::Dense {
            w: var(weight)?,
            b: var(b)?,
        }),
        _ => None,
    })
}

fn to_model_tensor(v: &Var) -> Result<nncert_model::Tensor> {
    Ok(nncert_model::Tensor {
        shape: v.dims().to_vec(),
        data: v.flatten_all()?.to_vec1::<f32>()?,
    })
}

/// Images `idx` of a dataset as a batch `[B, C, H, W]` and their labels.
pub fn batch(ds: &nncert_data::Dataset, idx: &[usize]) -> Result<(Tensor, Tensor)> {
    let n = ds.image_len();
    let mut pixels = Vec::with_capacity(idx.len() * n);
    for &i in idx {
        pixels.extend_from_slice(ds.image(i));
    }
    let [c, h, w] = ds.shape;
    let x = Tensor::from_vec(pixels, (idx.len(), c, h, w), &Device::Cpu)?;
    let labels: Vec<u32> = idx.iter().map(|&i| ds.labels[i] as u32).collect();
    let y = Tensor::from_vec(labels, idx.len(), &Device::Cpu)?;
    Ok((x, y))
}
