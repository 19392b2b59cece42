//! §5 of fp-exploit-verified-nns.md: an incomplete verifier (CROWN in real
//! arithmetic) fooled by float32. A 13×13 input, a 5×5 convolution with one
//! output channel, two dense layers of 16 and a dense layer to one neuron
//! `u`, all with ReLU, then logits `[u, 1e-7]`. The biases keep every ReLU
//! before `u` active on the whole input box and put the largest real value
//! of `u`'s pre-activation at 0 (rounded down to float32), so in real
//! arithmetic `u = 0` and the label 1 wins by 1e-7 everywhere: CROWN
//! certifies it. In float32 the pre-activation at the maximiser is rounded,
//! and hill climbing from `x1 = x0 + ε·sign(W_equiv)` finds inputs where
//! `u > 1e-7`.

use crate::climb::{hill_climb, ClimbConfig};
use crate::perturbation::nextafter_box;
use nncert_bounds::{is_certified, Ball, BoundConfig, BoundsError, Method, Soundness};
use nncert_exec::Engine;
use nncert_model::forward::reference_forward;
use nncert_model::testing::random_tensor;
use nncert_model::{Graph, Op, Tensor, Window2d};
use nncert_spec::Norm;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The label the network is built to be (barely) robust for.
pub const LABEL: usize = 1;

/// The constructed network and its centre input.
pub struct BoundaryNetwork {
    pub graph: Graph,
    pub x0: Vec<f32>,
    pub eps: f64,
    /// `W_equiv`: `u`'s pre-activation as an affine function of the input
    /// (all earlier ReLUs being active), weights per input.
    pub w_equiv: Vec<f64>,
}

/// The layers (conv, fc 16, fc 16, fc 1) as a graph on the 13×13 input,
/// each followed by a ReLU when `relu` (without: the affine chain, which is
/// what the network computes while every ReLU is active).
fn chain(layers: &[Op], relu: bool) -> Graph {
    let mut g = Graph::with_input("x", vec![1, 1, 13, 13]);
    let mut id = 0;
    for (k, op) in layers.iter().enumerate() {
        if matches!(op, Op::Linear { .. }) && g.nodes[id].shape.len() != 2 {
            let n = g.nodes[id].shape.iter().product();
            id = g
                .push_reshaped("flatten", Op::Reshape, vec![id], Some(&[1, n]))
                .expect("static shapes");
        }
        id = g
            .push(&format!("layer{k}"), op.clone(), vec![id])
            .expect("static shapes");
        if relu {
            id = g
                .push(&format!("relu{k}"), Op::Relu, vec![id])
                .expect("static shapes");
        }
    }
    g
}

/// Per output of `g` (an affine function), its weights per input and its
/// value at 0, read off the f64 reference.
fn affine_map(g: &Graph) -> (Vec<Vec<f64>>, Vec<f64>) {
    let n = g.input_len();
    let at0 = reference_forward(g, &vec![0.0; n]).expect("affine chain runs");
    let mut w = vec![vec![0.0; n]; at0.len()];
    for i in 0..n {
        let mut e = vec![0.0; n];
        e[i] = 1.0;
        let y = reference_forward(g, &e).expect("affine chain runs");
        for (o, row) in w.iter_mut().enumerate() {
            row[i] = y[o] - at0[o];
        }
    }
    (w, at0)
}

/// Minimum (`sign` 1) or maximum (`sign` −1, negated) of each output over the box.
fn extreme(w: &[Vec<f64>], c: &[f64], lo: &[f64], hi: &[f64], sign: f64) -> Vec<f64> {
    w.iter()
        .zip(c)
        .map(|(row, &c)| {
            c + row
                .iter()
                .zip(lo.iter().zip(hi))
                .map(|(&wi, (&l, &h))| (sign * wi * l).min(sign * wi * h) * sign)
                .sum::<f64>()
        })
        .collect()
}

fn set_bias(op: &mut Op, bias: Vec<f32>) {
    match op {
        Op::Conv2d { bias: b, .. } | Op::Linear { bias: b, .. } => {
            *b = Some(Tensor::new(vec![bias.len()], bias));
        }
        _ => unreachable!("only conv and linear layers get biases"),
    }
}

/// Builds the network of §5 around a random `x0` in [0.25, 0.75]^169.
pub fn boundary_network(seed: u64, eps: f64) -> BoundaryNetwork {
    let mut r = StdRng::seed_from_u64(seed);
    let x0: Vec<f32> = (0..169).map(|_| r.gen_range(0.25..0.75)).collect();
    let lo: Vec<f64> = x0.iter().map(|&v| (v as f64 - eps).max(0.0)).collect();
    let hi: Vec<f64> = x0.iter().map(|&v| (v as f64 + eps).min(1.0)).collect();
    let window = Window2d {
        kernel: [5, 5],
        stride: [1, 1],
        pads: [0; 4],
        dilation: [1, 1],
    };
    let mut layers = vec![
        Op::Conv2d {
            weight: random_tensor(&mut r, &[1, 1, 5, 5], 1.0),
            bias: None,
            window,
            groups: 1,
        },
        Op::Linear {
            weight: random_tensor(&mut r, &[16, 81], 1.0),
            bias: None,
        },
        Op::Linear {
            weight: random_tensor(&mut r, &[16, 16], 1.0),
            bias: None,
        },
        Op::Linear {
            weight: random_tensor(&mut r, &[1, 16], 1.0),
            bias: None,
        },
    ];
    // Each hidden layer: the smallest bias that keeps it ≥ 1 on the box.
    for k in 0..3 {
        let (w, c) = affine_map(&chain(&layers[..=k], false));
        let min = extreme(&w, &c, &lo, &hi, 1.0);
        let bias = match k {
            0 => vec![(1.0 - min.iter().fold(f64::INFINITY, |a, &b| a.min(b))) as f32],
            _ => min.iter().map(|&m| (1.0 - m) as f32).collect(),
        };
        set_bias(&mut layers[k], bias);
    }
    // u's bias: minus the largest real pre-activation, rounded down.
    let (w, c) = affine_map(&chain(&layers, false));
    let max = extreme(&w, &c, &lo, &hi, -1.0)[0];
    let mut b = (-max) as f32;
    if b as f64 > -max {
        b = b.next_down();
    }
    set_bias(&mut layers[3], vec![b]);
    let mut graph = chain(&layers, true);
    let id = graph.output;
    let logits = Op::Linear {
        weight: Tensor::new(vec![2, 1], vec![1.0, 0.0]),
        bias: Some(Tensor::new(vec![2], vec![0.0, 1e-7])),
    };
    graph
        .push("logits", logits, vec![id])
        .expect("static shapes");
    let w_equiv = w.into_iter().next().expect("one output");
    BoundaryNetwork {
        graph,
        x0,
        eps,
        w_equiv,
    }
}

/// What the attack found on one engine.
#[derive(Clone, Debug)]
pub struct EngineAttack {
    pub engine: String,
    /// A point of the float32 box where the engine's label is not 1.
    pub adversarial: Option<Vec<f32>>,
    /// The engine's CW loss of label 1 where the climb ended.
    pub loss: f64,
    /// The f64 reference's CW loss at that point (real arithmetic: > 0).
    pub reference_loss: f64,
}

/// Whether CROWN certifies label 1 on the ball (real or sound mode).
pub fn crown_certifies(n: &BoundaryNetwork, soundness: Soundness) -> Result<bool, BoundsError> {
    let x0: Vec<f64> = n.x0.iter().map(|&v| v as f64).collect();
    let ball = Ball {
        eps: n.eps,
        norm: Norm::Linf,
        domain: (0.0, 1.0),
    };
    is_certified(
        &n.graph,
        &x0,
        LABEL,
        ball,
        &BoundConfig::new(Method::Crown, soundness),
    )
}

/// Hill climbing (Appendix A's random perturbation) on each engine from
/// `x1 = x0 + ε·sign(W_equiv)`, inside the nextafter box.
pub fn attack(
    n: &BoundaryNetwork,
    engines: &[Engine],
    cfg: &ClimbConfig,
) -> nncert_model::Result<Vec<EngineAttack>> {
    let (lo, hi) = nextafter_box(&n.x0, n.eps);
    let x1: Vec<f32> = n
        .w_equiv
        .iter()
        .enumerate()
        .map(|(i, &w)| if w >= 0.0 { hi[i] } else { lo[i] })
        .collect();
    engines
        .iter()
        .map(|e| {
            let climb = hill_climb(
                e,
                &n.graph,
                &x1,
                (&lo, &hi),
                LABEL,
                &cfg.for_engine(e.kind()),
            )?;
            let xd: Vec<f64> = climb.x.iter().map(|&v| v as f64).collect();
            let reference = reference_forward(&n.graph, &xd)?;
            Ok(EngineAttack {
                engine: e.kind().to_string(),
                adversarial: (climb.loss < 0.0).then(|| climb.x.clone()),
                loss: climb.loss,
                reference_loss: crate::cw_loss(&reference, LABEL),
            })
        })
        .collect()
}
