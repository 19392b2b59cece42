//! Soundness: for random networks covering every op each method supports,
//! and random input regions (L∞ boxes, L2 and L1 balls), ≥ 1000 float32
//! points per region (box corners included) are run through every float32
//! engine; every node's value must lie inside the sound-mode bounds, and
//! every spec value above the certified lower bound.

use nncert_bounds::{lower_bounds, propagate, BoundConfig, Method, Region, Soundness};
use nncert_exec::{all_engines, Engine};
use nncert_model::forward::run_all;
use nncert_model::testing::{
    flatten_then_linear, random_conv_chain, random_conv_net, random_residual_net, random_tensor,
};
use nncert_model::{reference_forward, Graph, Op, Tensor, Window2d};
use nncert_spec::{InputSet, Norm, NormBall};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Conv (asymmetric pads, stride), ReLU, leaky ReLU, affine, average pool,
/// pad, residual add, transpose, reshape, linear: the ops CROWN supports.
fn crown_net(seed: u64) -> Graph {
    let mut r = StdRng::seed_from_u64(seed);
    let mut g = Graph::with_input("x", vec![1, 2, 8, 8]);
    let w = |k, s, pads| Window2d {
        kernel: [k, k],
        stride: [s, s],
        pads,
        dilation: [1, 1],
    };
    let conv = |r: &mut StdRng, oc, ic, k, win| Op::Conv2d {
        weight: random_tensor(r, &[oc, ic, k, k], 0.6),
        bias: Some(random_tensor(r, &[oc], 0.3)),
        window: win,
        groups: 1,
    };
    let mut id = g
        .push(
            "conv1",
            conv(&mut r, 3, 2, 3, w(3, 2, [1, 0, 2, 1])),
            vec![0],
        )
        .unwrap();
    id = g.push("relu1", Op::Relu, vec![id]).unwrap();
    let shape = g.nodes[id].shape.clone();
    let aff = Op::Affine {
        scale: Some(random_tensor(&mut r, &shape, 1.5)),
        shift: Some(random_tensor(&mut r, &shape, 0.3)),
    };
    let a = g.push("affine", aff, vec![id]).unwrap();
    let b = g
        .push(
            "conv2",
            conv(&mut r, 3, 3, 3, w(3, 1, [1, 1, 1, 1])),
            vec![a],
        )
        .unwrap();
    let b = g
        .push("leaky", Op::LeakyRelu { alpha: 0.1 }, vec![b])
        .unwrap();
    id = g
        .push(
            "residual",
            Op::Binary(nncert_model::BinaryKind::Add),
            vec![a, b],
        )
        .unwrap();
    id = g
        .push(
            "avgpool",
            Op::AvgPool2d {
                window: w(2, 1, [0, 0, 1, 1]),
                count_include_pad: false,
            },
            vec![id],
        )
        .unwrap();
    id = g
        .push(
            "pad",
            Op::Pad {
                pads: vec![0, 0, 1, 0, 0, 0, 0, 1],
                value: 0.2,
            },
            vec![id],
        )
        .unwrap();
    id = g
        .push(
            "transpose",
            Op::Transpose {
                perm: vec![0, 2, 3, 1],
            },
            vec![id],
        )
        .unwrap();
    id = flatten_then_linear(&mut g, &mut r, id, 12, 0.4);
    id = g.push("relu2", Op::Relu, vec![id]).unwrap();
    g.push(
        "fc2",
        Op::Linear {
            weight: random_tensor(&mut r, &[4, 12], 0.6),
            bias: None,
        },
        vec![id],
    )
    .unwrap();
    g
}

/// Adds max pooling, sigmoid, tanh and atan.
fn ibp_net(seed: u64) -> Graph {
    let mut r = StdRng::seed_from_u64(seed);
    let mut g = Graph::with_input("x", vec![1, 1, 7, 7]);
    let win = Window2d {
        kernel: [3, 3],
        stride: [1, 1],
        pads: [1, 1, 1, 1],
        dilation: [1, 1],
    };
    let mut id = g
        .push(
            "conv",
            Op::Conv2d {
                weight: random_tensor(&mut r, &[2, 1, 3, 3], 0.8),
                bias: Some(random_tensor(&mut r, &[2], 0.3)),
                window: win,
                groups: 1,
            },
            vec![0],
        )
        .unwrap();
    id = g.push("sigmoid", Op::Sigmoid, vec![id]).unwrap();
    id = g
        .push(
            "maxpool",
            Op::MaxPool2d {
                window: Window2d {
                    kernel: [2, 2],
                    stride: [2, 2],
                    pads: [0, 0, 1, 1],
                    dilation: [1, 1],
                },
            },
            vec![id],
        )
        .unwrap();
    id = g.push("tanh", Op::Tanh, vec![id]).unwrap();
    id = flatten_then_linear(&mut g, &mut r, id, 3, 1.0);
    g.push("atan", Op::Atan, vec![id]).unwrap();
    g
}

fn region_set(g: &Graph, r: &mut StdRng, norm: Norm) -> InputSet {
    let center: Vec<f64> = (0..g.input_len()).map(|_| r.gen::<f32>() as f64).collect();
    let eps = match norm {
        // Small inputs get wide boxes, so that many neurons are unstable.
        Norm::Linf if g.input_len() <= 10 => r.gen_range(0.2..0.6),
        Norm::Linf => r.gen_range(0.005..0.1),
        Norm::L2 => r.gen_range(0.05..0.5),
        Norm::L1 => r.gen_range(0.1..1.0),
    };
    InputSet::Ball(NormBall {
        center,
        eps,
        norm,
        domain: (0.0, 1.0),
    })
}

/// Float32 points of the set: box corners (L∞), then random points on and inside the boundary.
fn samples(set: &InputSet, r: &mut StdRng, count: usize) -> Vec<f32> {
    let InputSet::Ball(b) = set else {
        unreachable!()
    };
    let bb = set.bounding_box();
    let n = b.center.len();
    let mut pts = Vec::new();
    let mut kept = 0;
    if b.norm == Norm::Linf && n <= 10 {
        // Every corner: the extremes of piecewise-linear transfer functions lie there.
        for m in 0..1usize << n {
            pts.extend((0..n).map(|i| if m >> i & 1 == 1 { bb.hi[i] } else { bb.lo[i] } as f32));
            kept += 1;
        }
    }
    while kept < count {
        let p: Vec<f64> = match b.norm {
            Norm::Linf if kept % 2 == 0 => (0..n)
                .map(|i| if r.gen() { bb.lo[i] } else { bb.hi[i] })
                .collect(),
            Norm::Linf => (0..n).map(|i| r.gen_range(bb.lo[i]..=bb.hi[i])).collect(),
            _ => {
                let dir: Vec<f64> = (0..n).map(|_| r.gen_range(-1.0..1.0f64)).collect();
                let len = b.norm.of(dir.iter().copied());
                let t = if kept % 2 == 0 { 1.0 } else { r.gen::<f64>() };
                (0..n)
                    .map(|i| (b.center[i] + dir[i] / len * b.eps * t).clamp(0.0, 1.0))
                    .collect()
            }
        };
        // Round toward the (float32) centre so no coordinate moves away from it.
        let p32: Vec<f32> = p
            .iter()
            .zip(&b.center)
            .map(|(&v, &c)| {
                let f = v as f32;
                if (f as f64 - c).abs() > (v - c).abs() {
                    if (f as f64) > v {
                        f.next_down()
                    } else {
                        f.next_up()
                    }
                } else {
                    f
                }
            })
            .collect();
        // Keep only points the f64 reading admits (a safety net; rounding inward keeps them).
        if set.contains(&p32.iter().map(|&v| v as f64).collect::<Vec<_>>()) {
            pts.extend(p32);
            kept += 1;
        }
    }
    pts
}

fn check(g: &Graph, method: Method, norm: Norm, seed: u64) {
    let mut r = StdRng::seed_from_u64(seed);
    let set = region_set(g, &mut r, norm);
    let cfg = BoundConfig::new(method, Soundness::Float32);
    let region = Region::of(&set, cfg.soundness);
    let nb = propagate(g, &region, &cfg).unwrap();
    let out = g.output_len();
    let rows = 3;
    let spec: Vec<f64> = (0..rows * out).map(|_| r.gen_range(-1.0..1.0)).collect();
    let lb = lower_bounds(g, &nb, &region, &cfg, &spec, rows).unwrap();
    let x = samples(&set, &mut r, 1000);
    let engines: Vec<Engine> = all_engines(g).unwrap();
    for e in &engines {
        let values = run_all(g, e, &x).unwrap();
        for (id, v) in values.iter().enumerate() {
            let per = g.nodes[id].shape.iter().product::<usize>();
            for (k, chunk) in v.chunks(per).enumerate() {
                for (j, &y) in chunk.iter().enumerate() {
                    let b = &nb.nodes[id];
                    assert!(b.lo[j] <= y as f64 && y as f64 <= b.hi[j], "{} {norm:?} seed {seed}: {} sample {k} node `{}`[{j}] = {y} outside [{}, {}]", method.name(), e.kind(), g.nodes[id].name, b.lo[j], b.hi[j]);
                }
            }
        }
        for (k, y) in values[g.output].chunks(out).enumerate() {
            for (row, l) in lb.iter().enumerate() {
                let v: f64 = spec[row * out..][..out]
                    .iter()
                    .zip(y)
                    .map(|(c, &y)| c * y as f64)
                    .sum();
                assert!(
                    *l <= v,
                    "{} {norm:?}: {} sample {k} spec row {row}: {v} below certified {l}",
                    method.name(),
                    e.kind()
                );
            }
        }
    }
}

#[test]
fn crown_and_fastlin_bounds_hold_for_every_float32_engine() {
    for seed in 0..6 {
        for method in [Method::Crown, Method::FastLin, Method::AlphaCrown] {
            for norm in [Norm::Linf, Norm::L2, Norm::L1] {
                check(&crown_net(seed), method, norm, seed * 10 + 1);
                // Conv chains: intermediate bounds by patches.
                check(&random_conv_chain(seed), method, norm, seed * 10 + 2);
            }
        }
        check(&random_residual_net(seed), Method::Crown, Norm::Linf, seed);
    }
}

#[test]
fn ibp_bounds_hold_for_every_float32_engine() {
    for seed in 0..6 {
        for norm in [Norm::Linf, Norm::L2] {
            check(&ibp_net(seed), Method::Ibp, norm, seed + 100);
            check(&ibp_net(seed), Method::Crown, norm, seed + 300);
            // Grouped dilated convs, batch norm, every activation, both poolings, pad.
            check(&random_conv_net(seed), Method::Ibp, norm, seed + 400);
            check(&random_conv_net(seed), Method::Crown, norm, seed + 500);
            check(&random_conv_net(seed), Method::AlphaCrown, norm, seed + 600);
            check(&random_conv_net(seed), Method::Symbolic, norm, seed + 700);
            check(&crown_net(seed), Method::Symbolic, norm, seed + 800);
            check(&random_conv_net(seed), Method::DeepZ, norm, seed + 900);
            check(&crown_net(seed), Method::DeepZ, norm, seed + 1000);
            check(&crown_net(seed), Method::Ibp, norm, seed + 200);
        }
    }
}

#[test]
fn crown_is_at_least_as_tight_as_ibp_on_every_node() {
    for seed in 0..4 {
        let g = crown_net(seed);
        let mut r = StdRng::seed_from_u64(seed);
        let set = region_set(&g, &mut r, Norm::Linf);
        for soundness in [Soundness::Real, Soundness::Float32] {
            let region = Region::of(&set, soundness);
            let ibp = propagate(&g, &region, &BoundConfig::new(Method::Ibp, soundness)).unwrap();
            let crown =
                propagate(&g, &region, &BoundConfig::new(Method::Crown, soundness)).unwrap();
            for (a, b) in crown.nodes.iter().zip(&ibp.nodes) {
                assert!(
                    a.lo.iter().zip(&b.lo).all(|(x, y)| x >= y)
                        && a.hi.iter().zip(&b.hi).all(|(x, y)| x <= y)
                );
            }
        }
    }
}

#[test]
fn symbolic_and_deepz_are_at_least_as_tight_as_ibp_and_often_tighter() {
    for method in [Method::Symbolic, Method::DeepZ] {
        forward_domain_beats_ibp(method);
    }
}

fn forward_domain_beats_ibp(method: Method) {
    let mut tighter = 0;
    for seed in 0..6 {
        for g in [crown_net(seed), random_conv_net(seed)] {
            let mut r = StdRng::seed_from_u64(seed + 40);
            let set = region_set(&g, &mut r, Norm::Linf);
            for soundness in [Soundness::Real, Soundness::Float32] {
                let region = Region::of(&set, soundness);
                let bounds = |m| propagate(&g, &region, &BoundConfig::new(m, soundness)).unwrap();
                let (ibp, sym) = (bounds(Method::Ibp), bounds(method));
                for (a, b) in sym.nodes.iter().zip(&ibp.nodes) {
                    assert!(a.lo.iter().zip(&b.lo).all(|(x, y)| x >= y));
                    assert!(a.hi.iter().zip(&b.hi).all(|(x, y)| x <= y));
                }
                let width = |nb: &nncert_bounds::NetworkBounds| {
                    let o = &nb.nodes[g.output];
                    o.hi.iter().zip(&o.lo).map(|(h, l)| h - l).sum::<f64>()
                };
                tighter += (width(&sym) < width(&ibp) * 0.999) as usize;
            }
        }
    }
    assert!(
        tighter >= 12,
        "{} tightened the output on only {tighter} of 24 cases",
        method.name()
    );
}

/// Real mode is checked against the f64 reference: it claims real arithmetic only.
#[test]
fn real_mode_bounds_hold_in_f64() {
    for seed in 0..4 {
        let g = crown_net(seed);
        let mut r = StdRng::seed_from_u64(seed + 7);
        let set = region_set(&g, &mut r, Norm::Linf);
        let cfg = BoundConfig::new(Method::Crown, Soundness::Real);
        let nb = propagate(&g, &Region::of(&set, cfg.soundness), &cfg).unwrap();
        let x: Vec<f64> = samples(&set, &mut r, 500)
            .iter()
            .map(|&v| v as f64)
            .collect();
        let y = reference_forward(&g, &x).unwrap();
        let out = &nb.nodes[g.output];
        for chunk in y.chunks(g.output_len()) {
            assert!(chunk
                .iter()
                .enumerate()
                .all(|(j, v)| out.lo[j] - 1e-12 <= *v && *v <= out.hi[j] + 1e-12));
        }
    }
}

/// With every ReLU stable, CROWN's bound on a linear spec over a box is the
/// exact minimum, attained at a corner: compare with enumeration of all corners.
#[test]
fn crown_is_exact_when_every_relu_is_stable() {
    let mut r = StdRng::seed_from_u64(3);
    let mut g = Graph::with_input("x", vec![1, 4]);
    let w = random_tensor(&mut r, &[5, 4], 1.0);
    // Biases large and positive: every neuron active on [0.4, 0.6]^4.
    let l1 = g
        .push(
            "fc1",
            Op::Linear {
                weight: w,
                bias: Some(Tensor::new(vec![5], vec![5.0; 5])),
            },
            vec![0],
        )
        .unwrap();
    let a = g.push("relu", Op::Relu, vec![l1]).unwrap();
    g.push(
        "fc2",
        Op::Linear {
            weight: random_tensor(&mut r, &[2, 5], 1.0),
            bias: None,
        },
        vec![a],
    )
    .unwrap();
    let set = InputSet::Ball(NormBall {
        center: vec![0.5; 4],
        eps: 0.1,
        norm: Norm::Linf,
        domain: (0.0, 1.0),
    });
    let cfg = BoundConfig::new(Method::Crown, Soundness::Real);
    let region = Region::of(&set, cfg.soundness);
    let nb = propagate(&g, &region, &cfg).unwrap();
    let spec = vec![1.0, -1.0];
    let lb = lower_bounds(&g, &nb, &region, &cfg, &spec, 1).unwrap()[0];
    let corners: Vec<f64> = (0..16)
        .flat_map(|m: usize| (0..4).map(move |i| if m >> i & 1 == 1 { 0.6 } else { 0.4 }))
        .collect();
    let y = reference_forward(&g, &corners).unwrap();
    let exact = y
        .chunks(2)
        .map(|v| v[0] - v[1])
        .fold(f64::INFINITY, f64::min);
    assert!((lb - exact).abs() < 1e-9, "CROWN {lb} vs exact {exact}");
}

/// One op after the input (plus what it needs), on at most 9 inputs so that
/// every corner of the box is sampled: a direct test of each transfer function.
fn one_op_graphs(seed: u64) -> Vec<(&'static str, Graph, bool)> {
    let mut r = StdRng::seed_from_u64(seed);
    let centred = |g: &mut Graph, r: &mut StdRng, n: usize| {
        // An affine first, so values straddle zero inside the [0, 1] domain.
        let shape = g.nodes[0].shape.clone();
        let aff = Op::Affine {
            scale: Some(random_tensor(r, &shape, 2.0)),
            shift: Some(Tensor::new(shape.clone(), vec![-0.5; n])),
        };
        g.push("centre", aff, vec![0]).unwrap()
    };
    let mut out = Vec::new();
    let flat = |r: &mut StdRng, op: fn(&mut StdRng) -> Op, name: &'static str, crown: bool| {
        let mut g = Graph::with_input("x", vec![1, 6]);
        let c = centred(&mut g, r, 6);
        g.push(name, op(r), vec![c]).unwrap();
        (name, g, crown)
    };
    out.push(flat(&mut r, |_| Op::Relu, "relu", true));
    out.push(flat(
        &mut r,
        |_| Op::LeakyRelu { alpha: 0.2 },
        "leaky_relu",
        true,
    ));
    out.push(flat(
        &mut r,
        |r| Op::Linear {
            weight: random_tensor(r, &[3, 6], 1.0),
            bias: Some(random_tensor(r, &[3], 1.0)),
        },
        "linear",
        true,
    ));
    out.push(flat(
        &mut r,
        |r| Op::Affine {
            scale: Some(random_tensor(r, &[1, 6], 2.0)),
            shift: Some(random_tensor(r, &[1, 6], 1.0)),
        },
        "affine",
        true,
    ));
    out.push(flat(&mut r, |_| Op::Sigmoid, "sigmoid", true));
    out.push(flat(&mut r, |_| Op::Tanh, "tanh", true));
    out.push(flat(&mut r, |_| Op::Atan, "atan", true));
    out.push(flat(
        &mut r,
        |_| Op::Transpose { perm: vec![1, 0] },
        "transpose",
        true,
    ));
    out.push(flat(
        &mut r,
        |_| Op::Pad {
            pads: vec![1, 0, 0, 2],
            value: -0.3,
        },
        "pad",
        true,
    ));
    let spatial = |r: &mut StdRng, name: &'static str, op: Op, crown: bool| {
        let mut g = Graph::with_input("x", vec![1, 1, 3, 3]);
        let c = centred(&mut g, r, 9);
        g.push(name, op, vec![c]).unwrap();
        (name, g, crown)
    };
    let w2 = Window2d {
        kernel: [2, 2],
        stride: [1, 1],
        pads: [1, 0, 0, 1],
        dilation: [1, 1],
    };
    let conv = Op::Conv2d {
        weight: random_tensor(&mut r, &[2, 1, 2, 2], 1.0),
        bias: Some(random_tensor(&mut r, &[2], 0.5)),
        window: w2,
        groups: 1,
    };
    out.push(spatial(&mut r, "conv", conv, true));
    out.push(spatial(
        &mut r,
        "avgpool",
        Op::AvgPool2d {
            window: w2,
            count_include_pad: true,
        },
        true,
    ));
    out.push(spatial(
        &mut r,
        "maxpool",
        Op::MaxPool2d { window: w2 },
        true,
    ));
    let bn = Op::BatchNorm {
        gamma: random_tensor(&mut r, &[1], 2.0),
        beta: random_tensor(&mut r, &[1], 1.0),
        mean: random_tensor(&mut r, &[1], 1.0),
        var: Tensor::new(vec![1], vec![r.gen_range(0.1..2.0)]),
        epsilon: 1e-5,
    };
    out.push(spatial(&mut r, "batchnorm", bn, true));
    // Two-input ops: the value and its ReLU.
    for (name, op) in [
        ("add", Op::Binary(nncert_model::BinaryKind::Add)),
        ("sub", Op::Binary(nncert_model::BinaryKind::Sub)),
        ("concat", Op::Concat { axis: 1 }),
    ] {
        let mut g = Graph::with_input("x", vec![1, 6]);
        let c = centred(&mut g, &mut r, 6);
        let relu = g.push("relu", Op::Relu, vec![c]).unwrap();
        g.push(name, op, vec![c, relu]).unwrap();
        out.push((name, g, true));
    }
    out
}

#[test]
fn every_transfer_function_is_sound_on_every_corner() {
    for seed in 0..5 {
        for (name, g, crown) in one_op_graphs(seed) {
            eprintln!("{name}");
            let methods: &[Method] = if crown {
                &[
                    Method::Ibp,
                    Method::FastLin,
                    Method::Crown,
                    Method::AlphaCrown,
                    Method::Symbolic,
                    Method::DeepZ,
                ]
            } else {
                &[Method::Ibp, Method::Symbolic, Method::DeepZ]
            };
            for &m in methods {
                check(&g, m, Norm::Linf, seed);
            }
        }
    }
}

/// Three inputs, wide boxes, two hidden ReLU layers: most neurons unstable,
/// and every corner sampled, so a loose-but-wrong relaxation shows.
#[test]
fn deep_relu_net_with_unstable_neurons() {
    for seed in 0..20 {
        let mut r = StdRng::seed_from_u64(seed);
        let mut g = Graph::with_input("x", vec![1, 3]);
        let mut id = 0;
        for (k, (o, i)) in [(8, 3), (8, 8)].into_iter().enumerate() {
            id = g
                .push(
                    &format!("fc{k}"),
                    Op::Linear {
                        weight: random_tensor(&mut r, &[o, i], 1.5),
                        bias: Some(random_tensor(&mut r, &[o], 0.5)),
                    },
                    vec![id],
                )
                .unwrap();
            id = g.push(&format!("relu{k}"), Op::Relu, vec![id]).unwrap();
        }
        g.push(
            "out",
            Op::Linear {
                weight: random_tensor(&mut r, &[2, 8], 1.0),
                bias: None,
            },
            vec![id],
        )
        .unwrap();
        for m in [
            Method::Crown,
            Method::FastLin,
            Method::AlphaCrown,
            Method::Symbolic,
            Method::DeepZ,
        ] {
            check(&g, m, Norm::Linf, seed);
        }
    }
}

/// The floating-point gap itself: on a single point, real-arithmetic bounds
/// are exact, and a float32 engine's long dot product lands outside them;
/// sound mode contains every engine's value.
#[test]
fn real_mode_is_broken_by_float32_and_sound_mode_is_not() {
    let mut r = StdRng::seed_from_u64(42);
    let n = 2000;
    let mut g = Graph::with_input("x", vec![1, n]);
    g.push(
        "fc",
        Op::Linear {
            weight: random_tensor(&mut r, &[4, n], 1.0),
            bias: Some(random_tensor(&mut r, &[4], 1.0)),
        },
        vec![0],
    )
    .unwrap();
    let x: Vec<f32> = (0..n).map(|_| r.gen::<f32>()).collect();
    let set = InputSet::Ball(NormBall {
        center: x.iter().map(|&v| v as f64).collect(),
        eps: 0.0,
        norm: Norm::Linf,
        domain: (0.0, 1.0),
    });
    let bounds = |soundness| {
        let cfg = BoundConfig::new(Method::Crown, soundness);
        propagate(&g, &Region::of(&set, soundness), &cfg)
            .unwrap()
            .nodes[g.output]
            .clone()
    };
    let (real, sound) = (bounds(Soundness::Real), bounds(Soundness::Float32));
    let mut escaped = 0;
    for e in all_engines(&g).unwrap() {
        let y: Vec<f64> = e.run(&g, &x).unwrap().iter().map(|&v| v as f64).collect();
        escaped += (!real.contains(&y)) as usize;
        assert!(sound.contains(&y), "{} escapes sound-mode bounds", e.kind());
    }
    assert!(
        escaped > 0,
        "expected float32 rounding to leave the real-arithmetic bounds"
    );
}

/// One hidden ReLU layer on a 2-D box: CROWN's bound lies below the exact
/// minimum (dense grid, Lipschitz error accounted) and within the relaxation's
/// known gap: the sum over unstable neurons of |c_j| times the largest
/// distance between ReLU and the line used for that neuron.
#[test]
fn crown_gap_to_the_exact_minimum_is_within_the_relaxation_gap() {
    for seed in 0..10 {
        let mut r = StdRng::seed_from_u64(seed);
        let mut g = Graph::with_input("x", vec![1, 2]);
        let w1 = random_tensor(&mut r, &[6, 2], 2.0);
        let b1 = random_tensor(&mut r, &[6], 1.0);
        let h = g
            .push(
                "fc1",
                Op::Linear {
                    weight: w1.clone(),
                    bias: Some(b1.clone()),
                },
                vec![0],
            )
            .unwrap();
        let a = g.push("relu", Op::Relu, vec![h]).unwrap();
        let w2 = random_tensor(&mut r, &[1, 6], 1.0);
        g.push(
            "fc2",
            Op::Linear {
                weight: w2.clone(),
                bias: None,
            },
            vec![a],
        )
        .unwrap();
        let set = InputSet::Ball(NormBall {
            center: vec![0.5, 0.5],
            eps: 0.5,
            norm: Norm::Linf,
            domain: (0.0, 1.0),
        });
        let cfg = BoundConfig::new(Method::Crown, Soundness::Real);
        let region = Region::of(&set, cfg.soundness);
        let nb = propagate(&g, &region, &cfg).unwrap();
        let lb = lower_bounds(&g, &nb, &region, &cfg, &[1.0], 1).unwrap()[0];
        let steps = 400;
        let grid: Vec<f64> = (0..=steps)
            .flat_map(|i| {
                (0..=steps).flat_map(move |j| [i as f64 / steps as f64, j as f64 / steps as f64])
            })
            .collect();
        let y = reference_forward(&g, &grid).unwrap();
        let grid_min = y.iter().cloned().fold(f64::INFINITY, f64::min);
        // |∂y/∂x| ≤ Σ_j |w2_j|·|w1_j|₁; the grid's nearest point is within h/2 per axis.
        let lipschitz: f64 = (0..6)
            .map(|j| {
                (w2.data[j] as f64).abs()
                    * ((w1.data[2 * j] as f64).abs() + (w1.data[2 * j + 1] as f64).abs())
            })
            .sum();
        let exact_low = grid_min - lipschitz * 0.5 / steps as f64;
        let pre = &nb.nodes[h];
        let gap: f64 = (0..6)
            .filter(|&j| pre.lo[j] < 0.0 && pre.hi[j] > 0.0)
            .map(|j| {
                let (l, u, c) = (pre.lo[j], pre.hi[j], w2.data[j] as f64);
                // Negative coefficients use the chord (gap ≤ triangle height −ul/(u−l)),
                // positive ones the adaptive lower line α·z (gap ≤ min(u, −l)).
                c.abs() * if c < 0.0 { -u * l / (u - l) } else { u.min(-l) }
            })
            .sum();
        assert!(
            lb <= grid_min + 1e-12,
            "seed {seed}: CROWN {lb} above the grid minimum {grid_min}"
        );
        assert!(
            exact_low - lb <= gap + 1e-12,
            "seed {seed}: gap {} exceeds the relaxation gap {gap}",
            exact_low - lb
        );
    }
}

/// MatMul then Add, as ONNX exporters write dense layers (ACAS Xu): sound
/// mode folds the Add into the MatMul's bias (`fold_bias_add`), so its
/// bounds are computed on a graph that rounds once per layer where the
/// float32 engines, running the graph as written, round twice. Every
/// engine's output must still lie inside them, with large biases that make
/// the second rounding count.
#[test]
fn folded_bias_adds_keep_sound_bounds_for_the_graph_as_written() {
    use nncert_model::passes::{canonicalize, PassOptions};
    for seed in 0..6 {
        let mut r = StdRng::seed_from_u64(seed);
        let mut g = Graph::with_input("x", vec![1, 5]);
        let mut id = 0;
        for (k, (fan_in, fan_out)) in [(5, 12), (12, 12), (12, 3)].into_iter().enumerate() {
            let fc = Op::Linear {
                weight: random_tensor(&mut r, &[fan_out, fan_in], 1.0),
                bias: None,
            };
            id = g.push(&format!("matmul{k}"), fc, vec![id]).unwrap();
            let add = Op::Affine {
                scale: None,
                shift: Some(random_tensor(&mut r, &[1, fan_out], 300.0)),
            };
            id = g.push(&format!("add{k}"), add, vec![id]).unwrap();
            if k < 2 {
                id = g.push(&format!("relu{k}"), Op::Relu, vec![id]).unwrap();
            }
        }
        let (bounded, report) = canonicalize(&g, PassOptions::float32_exact()).unwrap();
        assert_eq!(report.bias_adds_folded, 3);
        let set = region_set(&g, &mut r, Norm::Linf);
        let x = samples(&set, &mut r, 1000);
        let engines: Vec<Engine> = all_engines(&g).unwrap();
        for method in [Method::Ibp, Method::Crown, Method::Symbolic, Method::DeepZ] {
            let cfg = BoundConfig::new(method, Soundness::Float32);
            let region = Region::of(&set, cfg.soundness);
            let nb = propagate(&bounded, &region, &cfg).unwrap();
            let out = &nb.nodes[bounded.output];
            for e in &engines {
                let y = run_all(&g, e, &x).unwrap().swap_remove(g.output);
                for (k, yk) in y.chunks(3).enumerate() {
                    for (j, &v) in yk.iter().enumerate() {
                        let v = v as f64;
                        assert!(
                            out.lo[j] <= v && v <= out.hi[j],
                            "{} seed {seed}: {} sample {k} output {j} = {v} outside [{}, {}]",
                            method.name(),
                            e.kind(),
                            out.lo[j],
                            out.hi[j]
                        );
                    }
                }
            }
        }
    }
}

/// Leaky ReLU with α outside [0, 1] is not monotone (α < 0) or not convex
/// (α > 1), so the transfer functions would be wrong: every method refuses
/// it instead of returning bounds. The α-dependent sample below shows why
/// for α = −0.5: f(−2) = f(1) = 1 but f(0) = 0 lies outside [f(−2), f(1)].
#[test]
fn leaky_relu_outside_the_unit_interval_is_refused() {
    for alpha in [-0.5f32, 2.0] {
        let mut g = Graph::with_input("x", vec![1, 3]);
        let w = Tensor::new(
            vec![3, 3],
            vec![1.0, -1.0, 0.5, 0.2, 1.0, -1.0, 1.0, 1.0, 1.0],
        );
        let fc = g
            .push(
                "fc",
                Op::Linear {
                    weight: w,
                    bias: None,
                },
                vec![0],
            )
            .unwrap();
        g.push("leaky", Op::LeakyRelu { alpha }, vec![fc]).unwrap();
        let set = InputSet::Ball(NormBall {
            center: vec![0.5; 3],
            eps: 0.5,
            norm: Norm::Linf,
            domain: (0.0, 1.0),
        });
        for method in [Method::Ibp, Method::Symbolic, Method::DeepZ, Method::Crown] {
            for soundness in [Soundness::Real, Soundness::Float32] {
                let cfg = BoundConfig::new(method, soundness);
                let err = propagate(&g, &Region::of(&set, soundness), &cfg).unwrap_err();
                assert!(
                    err.to_string().contains("alpha outside [0, 1]"),
                    "α {alpha}, {method:?}: {err}"
                );
            }
        }
    }
}
