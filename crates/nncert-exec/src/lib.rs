//! nncert-exec: float32 execution engines with distinct, documented numerics.
//!
//! All engines share the elementwise/pooling/data-movement kernels of
//! `nncert_model::kernels` (whose float32 results do not depend on the engine)
//! and differ in how Linear and Conv2d sum their products:
//!
//! | engine | Linear | Conv2d |
//! |---|---|---|
//! | `Direct` | bias, then Σ in input order, one f32 accumulator | bias, then Σ over (in-channel, ky, kx), one f32 accumulator |
//! | `Im2col` | blocked SGEMM (`matrixmultiply`, FMA where the CPU has it), bias added last | im2col + blocked SGEMM, bias added last |
//! | `Toeplitz` | as `Im2col` | conv lowered to one dense matrix (MIPVerify's "mm" model), blocked SGEMM over all inputs, bias last |
//! | `Winograd` | as `Direct` | Winograd F(9×9, r×r) where it applies (one group, dilation 1; stride s as the stride-1 convolution sampled every s outputs), else as `Direct`; **not covered by sound mode**, so not in [`all_engines`] |

mod gemm;
pub mod winograd;

use nncert_model::forward::{direct_conv, direct_linear, run, AffineKernels, ConvCall};
use nncert_model::{Graph, NodeId, Result, Tensor};
use std::collections::HashMap;
use std::fmt;

/// The float32 implementations nncert can execute a network with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EngineKind {
    Direct,
    Im2col,
    Toeplitz,
    /// The fp-exploit paper's high-error Winograd convolution (module `winograd`).
    Winograd,
}

/// Output tile side of the Winograd engine (cuDNN's for 5×5 kernels).
pub const WINOGRAD_TILE: usize = 9;

impl EngineKind {
    pub const ALL: [EngineKind; 3] = [EngineKind::Direct, EngineKind::Im2col, EngineKind::Toeplitz];

    /// Whether nncert's sound mode bounds this engine's float32 results
    /// (docs/soundness.md): every engine but Winograd.
    pub fn covered_by_sound_mode(self) -> bool {
        Self::ALL.contains(&self)
    }

    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Direct => "direct",
            EngineKind::Im2col => "im2col",
            EngineKind::Toeplitz => "toeplitz",
            EngineKind::Winograd => "winograd",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Largest dense conv matrix the Toeplitz engine builds (entries).
const MAX_TOEPLITZ_ENTRIES: usize = 1 << 28;

/// A float32 engine prepared for one graph (the Toeplitz engine precomputes
/// its dense conv matrices).
pub struct Engine {
    kind: EngineKind,
    toeplitz: HashMap<NodeId, Vec<f32>>,
    /// Per Winograd-run convolution: the transforms and the transformed kernels.
    winograd: HashMap<NodeId, (winograd::Winograd, Vec<Vec<f32>>)>,
}

impl Engine {
    pub fn new(kind: EngineKind, graph: &Graph) -> Result<Engine> {
        let (mut toeplitz, mut winograd) = (HashMap::new(), HashMap::new());
        for id in 0..graph.nodes.len() {
            let Some(call) = ConvCall::of(graph, id) else {
                continue;
            };
            match kind {
                EngineKind::Toeplitz => {
                    toeplitz.insert(id, toeplitz_matrix(&call, &graph.nodes[id].name)?);
                }
                EngineKind::Winograd => {
                    let w = winograd::Winograd::new(WINOGRAD_TILE, call.window.kernel[0]);
                    if w.fits(&call) {
                        let u = w.kernel_transform(&call);
                        winograd.insert(id, (w, u));
                    }
                }
                _ => {}
            }
        }
        Ok(Engine {
            kind,
            toeplitz,
            winograd,
        })
    }

    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// Runs a batch (`input.len()` a multiple of the input size) and returns the batched output.
    pub fn run(&self, graph: &Graph, input: &[f32]) -> Result<Vec<f32>> {
        run(graph, self, input)
    }
}

/// Every engine, prepared for `graph`.
pub fn all_engines(graph: &Graph) -> Result<Vec<Engine>> {
    EngineKind::ALL
        .iter()
        .map(|&k| Engine::new(k, graph))
        .collect()
}

impl AffineKernels<f32> for Engine {
    fn linear(
        &self,
        _: NodeId,
        weight: &Tensor,
        bias: Option<&Tensor>,
        x: &[f32],
        rows: usize,
    ) -> Vec<f32> {
        match self.kind {
            EngineKind::Direct | EngineKind::Winograd => {
                direct_linear(weight, bias, x, rows, |v| v)
            }
            EngineKind::Im2col | EngineKind::Toeplitz => {
                let (out, inp) = (weight.shape[0], weight.shape[1]);
                let mut y = gemm::matmul_bt(x, &weight.data, rows, inp, out);
                add_bias_rows(&mut y, bias, out);
                y
            }
        }
    }

    fn conv2d(&self, node: NodeId, c: &ConvCall, x: &[f32], n: usize) -> Vec<f32> {
        match self.kind {
            EngineKind::Direct => direct_conv(c, x, n, |v| v),
            EngineKind::Winograd => match self.winograd.get(&node) {
                Some((w, u)) => w.conv(c, u, x, n),
                None => direct_conv(c, x, n, |v| v),
            },
            EngineKind::Im2col => im2col_conv(c, x, n),
            EngineKind::Toeplitz => {
                let t = &self.toeplitz[&node];
                let (ic, ih, iw) = c.in_chw;
                let (oc, oh, ow) = c.out_chw;
                let mut y = gemm::matmul_bt(x, t, n, ic * ih * iw, oc * oh * ow);
                add_bias_channels(&mut y, c.bias, oc, oh * ow);
                y
            }
        }
    }
}

fn add_bias_rows(y: &mut [f32], bias: Option<&Tensor>, out: usize) {
    if let Some(b) = bias {
        for (i, v) in y.iter_mut().enumerate() {
            *v += b.data[i % out];
        }
    }
}

fn add_bias_channels(y: &mut [f32], bias: Option<&Tensor>, channels: usize, spatial: usize) {
    if let Some(b) = bias {
        for (i, v) in y.iter_mut().enumerate() {
            *v += b.data[(i / spatial) % channels];
        }
    }
}

/// im2col + SGEMM per sample and group: columns `[icg·kh·kw, oh·ow]`.
fn im2col_conv(c: &ConvCall, x: &[f32], n: usize) -> Vec<f32> {
    let (ic, ih, iw) = c.in_chw;
    let (oc, oh, ow) = c.out_chw;
    let [_, icg, kh, kw] = c.weight.shape[..] else {
        unreachable!()
    };
    let (ocg, k, p) = (oc / c.groups, icg * kh * kw, oh * ow);
    let mut y = Vec::with_capacity(n * oc * p);
    let mut cols = vec![0.0f32; k * p];
    for s in 0..n {
        let xs = &x[s * ic * ih * iw..(s + 1) * ic * ih * iw];
        for g in 0..c.groups {
            for icl in 0..icg {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let row = (icl * kh + ky) * kw + kx;
                        for oy in 0..oh {
                            for ox in 0..ow {
                                cols[row * p + oy * ow + ox] = c
                                    .input_index(g * icg + icl, ky, kx, oy, ox)
                                    .map_or(0.0, |i| xs[i]);
                            }
                        }
                    }
                }
            }
            let wg = &c.weight.data[g * ocg * k..(g + 1) * ocg * k];
            y.extend(gemm::matmul(wg, &cols, ocg, k, p));
        }
    }
    add_bias_channels(&mut y, c.bias, oc, p);
    y
}

/// The dense `[out_numel, in_numel]` matrix of a convolution (without bias).
fn toeplitz_matrix(c: &ConvCall, node: &str) -> Result<Vec<f32>> {
    let (ic, ih, iw) = c.in_chw;
    let (oc, oh, ow) = c.out_chw;
    let (rows, cols) = (oc * oh * ow, ic * ih * iw);
    if rows.saturating_mul(cols) > MAX_TOEPLITZ_ENTRIES {
        return Err(nncert_model::ModelError::unsupported(
            "Conv2d",
            node,
            format!("the Toeplitz engine would need a {rows}×{cols} matrix"),
        ));
    }
    let mut t = vec![0.0f32; rows * cols];
    c.for_each_tap(|o, i, w| t[o * cols + i] += c.weight.data[w]);
    Ok(t)
}
