//! Each canonicalisation pass removes its pattern and preserves outputs.

use nncert_model::passes::{
    canonicalize, fold_affine, fold_batchnorm, fold_bias_add, fold_constants, fuse_linear_chains,
    resolve_shapes, PassOptions,
};
use nncert_model::testing::{
    random_conv_net, random_inputs, random_residual_net, random_tensor, relative_discrepancy,
};
use nncert_model::{reference_forward, BinaryKind, Graph, Op, Tensor, Window2d};
use rand::SeedableRng;

fn outputs(g: &Graph) -> Vec<f64> {
    let x: Vec<f64> = random_inputs(g, 4, 11).iter().map(|&v| v as f64).collect();
    reference_forward(g, &x).unwrap()
}

/// Applies `pass`, checks outputs are preserved, returns the rewritten graph.
fn preserved(g: &Graph, pass: impl Fn(&mut Graph) -> usize) -> (Graph, usize) {
    let mut h = g.clone();
    let n = pass(&mut h);
    h.prune();
    h.validate().unwrap();
    let d = relative_discrepancy(&outputs(&h), &outputs(g));
    assert!(d < 1e-6, "pass changed outputs by {d}");
    (h, n)
}

fn count(g: &Graph, name: &str) -> usize {
    g.op_histogram().get(name).copied().unwrap_or(0)
}

fn rng() -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(5)
}

#[test]
fn fold_constants_evaluates_constant_subgraphs_and_makes_affines() {
    let mut r = rng();
    let mut g = Graph::with_input("x", vec![1, 4]);
    let c1 = g
        .push("c1", Op::Constant(random_tensor(&mut r, &[4], 1.0)), vec![])
        .unwrap();
    let c2 = g
        .push("c2", Op::Constant(Tensor::new(vec![1], vec![2.5])), vec![])
        .unwrap();
    let m = g
        .push("m", Op::Binary(BinaryKind::Mul), vec![c1, c2])
        .unwrap();
    let y = g
        .push("add", Op::Binary(BinaryKind::Add), vec![0, m])
        .unwrap();
    let z = g
        .push("div", Op::Binary(BinaryKind::Div), vec![y, c2])
        .unwrap();
    g.push("rsub", Op::Binary(BinaryKind::Sub), vec![c1, z])
        .unwrap();
    let (h, n) = preserved(&g, |g| fold_constants(g).unwrap());
    assert_eq!(n, 4);
    assert_eq!(
        count(&h, "Add") + count(&h, "Sub") + count(&h, "Mul") + count(&h, "Div"),
        0
    );
    assert_eq!(count(&h, "Affine"), 3);
}

#[test]
fn resolve_shapes_merges_reshapes_and_transposes() {
    let mut g = Graph::with_input("x", vec![1, 2, 3, 4]);
    let a = g
        .push_reshaped("r1", Op::Reshape, vec![0], Some(&[1, 6, 4]))
        .unwrap();
    let b = g
        .push_reshaped("r2", Op::Reshape, vec![a], Some(&[1, 24]))
        .unwrap();
    let c = g
        .push_reshaped("r3", Op::Reshape, vec![b], Some(&[1, 2, 3, 4]))
        .unwrap();
    let d = g
        .push(
            "t1",
            Op::Transpose {
                perm: vec![0, 2, 3, 1],
            },
            vec![c],
        )
        .unwrap();
    let e = g
        .push(
            "t2",
            Op::Transpose {
                perm: vec![0, 3, 1, 2],
            },
            vec![d],
        )
        .unwrap();
    g.push("relu", Op::Relu, vec![e]).unwrap();
    let (h, n) = preserved(&g, resolve_shapes);
    assert!(n >= 3);
    let (h, _) = preserved(&h, resolve_shapes);
    assert_eq!(
        count(&h, "Reshape") + count(&h, "Transpose"),
        0,
        "{:?}",
        h.op_histogram()
    );
}

#[test]
fn fold_batchnorm_folds_into_conv_and_keeps_lone_ones_as_affine() {
    let g = random_conv_net(2);
    assert_eq!(count(&g, "BatchNorm"), 1);
    let (h, n) = preserved(&g, fold_batchnorm);
    assert_eq!(n, 1);
    assert_eq!(count(&h, "BatchNorm"), 0);
    // Then the affine folds into the grouped, dilated conv before it.
    let (h, n) = preserved(&h, fold_affine);
    assert_eq!((n, count(&h, "Affine")), (1, 0));
}

fn normalised_conv(pads: [usize; 4]) -> Graph {
    let mut r = rng();
    let mut g = Graph::with_input("x", vec![1, 2, 5, 5]);
    let per_channel =
        |v: [f32; 2]| Tensor::new(vec![1, 2, 5, 5], (0..50).map(|i| v[i / 25]).collect());
    let norm = Op::Affine {
        scale: Some(per_channel([2.0, 0.5])),
        shift: Some(per_channel([-0.4, 0.3])),
    };
    let a = g.push("normalise", norm, vec![0]).unwrap();
    let w = Window2d {
        kernel: [3, 3],
        stride: [1, 1],
        pads,
        dilation: [1, 1],
    };
    let conv = Op::Conv2d {
        weight: random_tensor(&mut r, &[3, 2, 3, 3], 0.5),
        bias: None,
        window: w,
        groups: 1,
    };
    let c = g.push("conv", conv, vec![a]).unwrap();
    g.push("relu", Op::Relu, vec![c]).unwrap();
    g
}

#[test]
fn fold_affine_folds_input_normalisation_into_unpadded_conv_only() {
    let (h, n) = preserved(&normalised_conv([0; 4]), fold_affine);
    assert_eq!((n, count(&h, "Affine")), (1, 0));
    // Padding zeros are not normalised: folding a shift there would be wrong.
    let (h, n) = preserved(&normalised_conv([1; 4]), fold_affine);
    assert_eq!((n, count(&h, "Affine")), (0, 1));
}

#[test]
fn fold_affine_folds_into_linear_on_both_sides() {
    let mut r = rng();
    let mut g = Graph::with_input("x", vec![1, 3]);
    let aff = |r: &mut rand::rngs::StdRng, n| Op::Affine {
        scale: Some(random_tensor(r, &[1, n], 2.0)),
        shift: Some(random_tensor(r, &[1, n], 1.0)),
    };
    let a = g.push("pre", aff(&mut r, 3), vec![0]).unwrap();
    let l = g
        .push(
            "fc",
            Op::Linear {
                weight: random_tensor(&mut r, &[4, 3], 1.0),
                bias: None,
            },
            vec![a],
        )
        .unwrap();
    g.push("post", aff(&mut r, 4), vec![l]).unwrap();
    let (h, n) = preserved(&g, fold_affine);
    assert_eq!((n, count(&h, "Affine")), (2, 0));
}

/// Only a shift-only Affine right after a bias-less Linear is folded, and
/// the bias it leaves is the shift tensor itself, bit for bit (sound mode
/// relies on both: see `fold_bias_add`).
#[test]
fn fold_bias_add_moves_only_a_pure_shift_into_a_bias_free_linear() {
    let mut r = rng();
    let linear = |r: &mut rand::rngs::StdRng, bias: bool| Op::Linear {
        weight: random_tensor(r, &[4, 3], 1.0),
        bias: bias.then(|| random_tensor(r, &[4], 1.0)),
    };
    let shift = random_tensor(&mut r, &[1, 4], 1.0);
    let add = |scale: Option<Tensor>| Op::Affine {
        scale,
        shift: Some(shift.clone()),
    };
    let net = |r: &mut rand::rngs::StdRng, bias: bool, scale: Option<Tensor>| {
        let mut g = Graph::with_input("x", vec![1, 3]);
        let l = g.push("fc", linear(r, bias), vec![0]).unwrap();
        g.push("add", add(scale), vec![l]).unwrap();
        g
    };
    let (h, n) = preserved(&net(&mut r, false, None), fold_bias_add);
    assert_eq!((n, count(&h, "Affine")), (1, 0));
    let Op::Linear { bias: Some(b), .. } = &h.nodes[h.output].op else {
        panic!("no bias after folding");
    };
    assert_eq!(b.data, shift.data);
    // A bias already there, or a scale: not a plain bias addition.
    let (_, n) = preserved(&net(&mut r, true, None), fold_bias_add);
    assert_eq!(n, 0);
    let scale = Some(random_tensor(&mut r, &[1, 4], 1.0));
    let (_, n) = preserved(&net(&mut r, false, scale), fold_bias_add);
    assert_eq!(n, 0);
    // The input normalisation before a Linear stays (it rounds before the products).
    let mut g = Graph::with_input("x", vec![1, 3]);
    let sub = Op::Affine {
        scale: None,
        shift: Some(random_tensor(&mut r, &[1, 3], 1.0)),
    };
    let a = g.push("sub", sub, vec![0]).unwrap();
    g.push("fc", linear(&mut r, false), vec![a]).unwrap();
    let (_, n) = preserved(&g, fold_bias_add);
    assert_eq!(n, 0);
}

#[test]
fn fuse_linear_chains_fuses_only_when_smaller() {
    let mut r = rng();
    let mut g = Graph::with_input("x", vec![1, 6]);
    let l1 = g
        .push(
            "fc1",
            Op::Linear {
                weight: random_tensor(&mut r, &[4, 6], 1.0),
                bias: Some(random_tensor(&mut r, &[4], 1.0)),
            },
            vec![0],
        )
        .unwrap();
    let l2 = g
        .push(
            "fc2",
            Op::Linear {
                weight: random_tensor(&mut r, &[3, 4], 1.0),
                bias: Some(random_tensor(&mut r, &[3], 1.0)),
            },
            vec![l1],
        )
        .unwrap();
    let relu = g.push("relu", Op::Relu, vec![l2]).unwrap();
    // A bottleneck (3 → 1 → 50) would grow when fused: kept.
    let l3 = g
        .push(
            "fc3",
            Op::Linear {
                weight: random_tensor(&mut r, &[1, 3], 1.0),
                bias: None,
            },
            vec![relu],
        )
        .unwrap();
    g.push(
        "fc4",
        Op::Linear {
            weight: random_tensor(&mut r, &[50, 1], 1.0),
            bias: None,
        },
        vec![l3],
    )
    .unwrap();
    let (h, n) = preserved(&g, fuse_linear_chains);
    assert_eq!((n, count(&h, "Linear")), (1, 3));
}

#[test]
fn canonicalize_preserves_random_nets() {
    for seed in 0..4 {
        for g in [random_conv_net(seed), random_residual_net(seed)] {
            let (h, _) = canonicalize(&g, PassOptions::default()).unwrap();
            let d = relative_discrepancy(&outputs(&h), &outputs(&g));
            assert!(d < 1e-6, "seed {seed}: {d}");
        }
    }
}
