//! Each canonicalisation pass removes its pattern and preserves outputs.

use nncert_model::passes::{
    canonicalize, fold_affine, fold_batchnorm, fold_constants, fuse_linear_chains, resolve_shapes,
    PassOptions,
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
