//! Small random networks exercising every op, for tests across the workspace.

use crate::forward::ConvCall;
use crate::graph::Graph;
use crate::op::{BinaryKind, Op, Window2d};
use crate::tensor::Tensor;
use rand::{Rng, SeedableRng};

pub fn random_tensor(rng: &mut impl Rng, shape: &[usize], scale: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::new(
        shape.to_vec(),
        (0..n).map(|_| rng.gen_range(-scale..scale)).collect(),
    )
}

/// A convolution with its geometry drawn at random (groups, kernel,
/// strides, pads, dilations, input size), for tests of conv kernels.
pub struct RandomConv {
    pub weight: Tensor,
    pub bias: Tensor,
    pub window: Window2d,
    pub groups: usize,
    pub in_chw: (usize, usize, usize),
    pub out_chw: (usize, usize, usize),
}

impl RandomConv {
    /// Up to `max_ocg` output channels per group; None when the window does
    /// not fit the input drawn.
    pub fn draw(r: &mut impl Rng, max_ocg: usize) -> Option<RandomConv> {
        let groups = r.gen_range(1..=2);
        let (icg, ocg) = (r.gen_range(1..=3), r.gen_range(1..=max_ocg));
        let (kh, kw) = (r.gen_range(1..=4), r.gen_range(1..=4));
        let window = Window2d {
            kernel: [kh, kw],
            stride: [r.gen_range(1..=3), r.gen_range(1..=3)],
            pads: [0; 4].map(|_| r.gen_range(0..=2)),
            dilation: [r.gen_range(1..=2), r.gen_range(1..=2)],
        };
        let (h, w) = (r.gen_range(5..=9), r.gen_range(5..=9));
        let (oh, ow) = window.output_hw(h, w)?;
        Some(RandomConv {
            weight: random_tensor(r, &[groups * ocg, icg, kh, kw], 1.0),
            bias: random_tensor(r, &[groups * ocg], 1.0),
            window,
            groups,
            in_chw: (groups * icg, h, w),
            out_chw: (groups * ocg, oh, ow),
        })
    }

    pub fn call(&self) -> ConvCall<'_> {
        ConvCall {
            weight: &self.weight,
            bias: Some(&self.bias),
            window: self.window,
            groups: self.groups,
            in_chw: self.in_chw,
            out_chw: self.out_chw,
        }
    }
}

fn window(k: usize, s: usize, pads: [usize; 4], d: usize) -> Window2d {
    Window2d {
        kernel: [k, k],
        stride: [s, s],
        pads,
        dilation: [d, d],
    }
}

/// A convolutional net touching conv (strides, asymmetric pads, dilation,
/// groups), batch norm, every activation, both poolings, pad, reshape, linear.
pub fn random_conv_net(seed: u64) -> Graph {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    let mut g = Graph::with_input("x", vec![1, 2, 11, 11]);
    let conv = |r: &mut rand::rngs::StdRng, oc, icg, k, w: Window2d, groups| Op::Conv2d {
        weight: random_tensor(r, &[oc, icg, k, k], 0.5),
        bias: Some(random_tensor(r, &[oc], 0.2)),
        window: w,
        groups,
    };
    let c1 = conv(&mut r, 4, 2, 3, window(3, 2, [1, 0, 2, 1], 1), 1);
    let mut id = g.push("conv1", c1, vec![0]).unwrap();
    id = g.push("relu", Op::Relu, vec![id]).unwrap();
    let c2 = conv(&mut r, 4, 2, 2, window(2, 1, [1, 1, 1, 1], 2), 2);
    id = g.push("conv2", c2, vec![id]).unwrap();
    let bn = Op::BatchNorm {
        gamma: random_tensor(&mut r, &[4], 1.0),
        beta: random_tensor(&mut r, &[4], 0.5),
        mean: random_tensor(&mut r, &[4], 0.5),
        var: Tensor::new(vec![4], (0..4).map(|_| r.gen_range(0.1..2.0)).collect()),
        epsilon: 1e-5,
    };
    id = g.push("bn", bn, vec![id]).unwrap();
    id = g
        .push("leaky", Op::LeakyRelu { alpha: 0.1 }, vec![id])
        .unwrap();
    id = g
        .push(
            "maxpool",
            Op::MaxPool2d {
                window: window(2, 1, [0, 1, 1, 0], 1),
            },
            vec![id],
        )
        .unwrap();
    id = g
        .push(
            "avgpool",
            Op::AvgPool2d {
                window: window(2, 2, [1, 1, 0, 0], 1),
                count_include_pad: true,
            },
            vec![id],
        )
        .unwrap();
    id = g
        .push(
            "pad",
            Op::Pad {
                pads: vec![0, 0, 1, 0, 0, 0, 0, 1],
                value: 0.25,
            },
            vec![id],
        )
        .unwrap();
    id = g.push("sigmoid", Op::Sigmoid, vec![id]).unwrap();
    id = flatten_then_linear(&mut g, &mut r, id, 6, 0.5);
    id = g.push("tanh", Op::Tanh, vec![id]).unwrap();
    g.push("atan", Op::Atan, vec![id]).unwrap();
    g
}

/// Three convolutions (asymmetric pads, stride 2, groups, dilation) with
/// ReLU and leaky ReLU between them, then a linear layer: the conv chains
/// back-substitution keeps as patches.
pub fn random_conv_chain(seed: u64) -> Graph {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    let mut g = Graph::with_input("x", vec![1, 2, 12, 12]);
    let conv = |r: &mut rand::rngs::StdRng, oc, icg, k, w: Window2d, groups| Op::Conv2d {
        weight: random_tensor(r, &[oc, icg, k, k], 0.6),
        bias: Some(random_tensor(r, &[oc], 0.3)),
        window: w,
        groups,
    };
    let c1 = conv(&mut r, 4, 2, 3, window(3, 2, [1, 0, 2, 1], 1), 1);
    let mut id = g.push("conv1", c1, vec![0]).unwrap();
    id = g.push("relu1", Op::Relu, vec![id]).unwrap();
    let c2 = conv(&mut r, 4, 2, 2, window(2, 1, [1, 2, 0, 1], 2), 2);
    id = g.push("conv2", c2, vec![id]).unwrap();
    id = g
        .push("leaky", Op::LeakyRelu { alpha: 0.1 }, vec![id])
        .unwrap();
    let c3 = conv(&mut r, 3, 4, 3, window(3, 2, [1, 1, 1, 1], 1), 1);
    id = g.push("conv3", c3, vec![id]).unwrap();
    id = g.push("relu3", Op::Relu, vec![id]).unwrap();
    flatten_then_linear(&mut g, &mut r, id, 5, 0.5);
    g
}

/// A residual net: conv, add of two branches, sub, concat, transpose, linear.
pub fn random_residual_net(seed: u64) -> Graph {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    let mut g = Graph::with_input("x", vec![1, 3, 6, 6]);
    let same = window(3, 1, [1, 1, 1, 1], 1);
    let conv = |r: &mut rand::rngs::StdRng| Op::Conv2d {
        weight: random_tensor(r, &[3, 3, 3, 3], 0.4),
        bias: Some(random_tensor(r, &[3], 0.2)),
        window: same,
        groups: 1,
    };
    let a = g.push("conv_a", conv(&mut r), vec![0]).unwrap();
    let a = g.push("relu_a", Op::Relu, vec![a]).unwrap();
    let b = g.push("conv_b", conv(&mut r), vec![a]).unwrap();
    let s = g
        .push("residual", Op::Binary(BinaryKind::Add), vec![a, b])
        .unwrap();
    let d = g
        .push("diff", Op::Binary(BinaryKind::Sub), vec![s, 0])
        .unwrap();
    let c = g
        .push("concat", Op::Concat { axis: 1 }, vec![s, d])
        .unwrap();
    let t = g
        .push(
            "transpose",
            Op::Transpose {
                perm: vec![0, 2, 3, 1],
            },
            vec![c],
        )
        .unwrap();
    let f = g
        .push_reshaped("flatten", Op::Reshape, vec![t], Some(&[1, 216]))
        .unwrap();
    let lin = Op::Linear {
        weight: random_tensor(&mut r, &[5, 216], 0.3),
        bias: None,
    };
    g.push("fc", lin, vec![f]).unwrap();
    g
}

/// Flattens node `id` to `[1, n]` and applies a random Linear with `out` outputs.
pub fn flatten_then_linear(
    g: &mut Graph,
    r: &mut impl Rng,
    id: usize,
    out: usize,
    scale: f32,
) -> usize {
    let n = g.nodes[id].shape.iter().product();
    let flat = g
        .push_reshaped("flatten", Op::Reshape, vec![id], Some(&[1, n]))
        .unwrap();
    let lin = Op::Linear {
        weight: random_tensor(r, &[out, n], scale),
        bias: Some(random_tensor(r, &[out], 0.3)),
    };
    g.push("fc", lin, vec![flat]).unwrap()
}

/// A dense ReLU net with the given layer widths (input first): hidden
/// layers have biases in ±0.3, the output layer none; weights in ±1.
pub fn random_relu_mlp(widths: &[usize], seed: u64) -> Graph {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    let mut g = Graph::with_input("x", vec![1, widths[0]]);
    let mut id = 0;
    let last = widths.len() - 1;
    for k in 1..last {
        let layer = Op::Linear {
            weight: random_tensor(&mut r, &[widths[k], widths[k - 1]], 1.0),
            bias: Some(random_tensor(&mut r, &[widths[k]], 0.3)),
        };
        id = g.push(&format!("fc{}", k - 1), layer, vec![id]).unwrap();
        id = g
            .push(&format!("relu{}", k - 1), Op::Relu, vec![id])
            .unwrap();
    }
    let out = Op::Linear {
        weight: random_tensor(&mut r, &[widths[last], widths[last - 1]], 1.0),
        bias: None,
    };
    g.push("out", out, vec![id]).unwrap();
    g
}

/// A random batch of `n` inputs in [0, 1) for `graph`.
pub fn random_inputs(graph: &Graph, n: usize, seed: u64) -> Vec<f32> {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n * graph.input_len()).map(|_| r.gen::<f32>()).collect()
}

/// max |a − b| / max(|b|∞, 1e-6): the discrepancy measure of the cross-checks.
pub fn relative_discrepancy(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}
