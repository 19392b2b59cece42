//! The MILP encoding against the truth on small piecewise-linear networks:
//! its minimum is attained by its own minimiser (re-executed on the f64
//! reference), no sampled input goes below it, it is never below CROWN's
//! sound lower bound, and a cutoff below it is infeasible.

use nncert_bounds::{lower_bounds, propagate, BoundConfig, Interval, Method, Region, Soundness};
use nncert_model::forward::reference_forward;
use nncert_model::testing::{flatten_then_linear, random_relu_mlp, random_tensor};
use nncert_model::Deadline;
use nncert_model::{Graph, Op, Window2d};
use nncert_spec::{InputBox, InputSet};
use nncert_verify::milp::{
    encode, solve, BigM, Encoding, MilpSolver, MilpStatus, Objective, Query,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

fn solvers() -> Vec<MilpSolver> {
    [MilpSolver::MicroLp, MilpSolver::Cbc]
        .into_iter()
        .filter(|s| s.available())
        .collect()
}

/// conv → relu → max-pool → flatten → linear → leaky relu → linear.
fn pwl_conv_net(seed: u64) -> Graph {
    let mut r = StdRng::seed_from_u64(seed);
    let mut g = Graph::with_input("x", vec![1, 1, 5, 5]);
    let window = |k: usize, s: usize, p: usize| Window2d {
        kernel: [k, k],
        stride: [s, s],
        pads: [p, p, p, p],
        dilation: [1, 1],
    };
    let conv = Op::Conv2d {
        weight: random_tensor(&mut r, &[2, 1, 3, 3], 0.6),
        bias: Some(random_tensor(&mut r, &[2], 0.2)),
        window: window(3, 1, 1),
        groups: 1,
    };
    let mut id = g.push("conv", conv, vec![0]).unwrap();
    id = g.push("relu", Op::Relu, vec![id]).unwrap();
    let pool = Op::MaxPool2d {
        window: window(2, 2, 0),
    };
    id = g.push("pool", pool, vec![id]).unwrap();
    id = flatten_then_linear(&mut g, &mut r, id, 6, 0.5);
    id = g
        .push("leaky", Op::LeakyRelu { alpha: 0.2 }, vec![id])
        .unwrap();
    let out = Op::Linear {
        weight: random_tensor(&mut r, &[3, 6], 1.0),
        bias: None,
    };
    g.push("out", out, vec![id]).unwrap();
    g
}

fn margin(g: &Graph, x: &[f64], spec: &[f64]) -> f64 {
    let y = reference_forward(g, x).unwrap();
    y.iter().zip(spec).map(|(a, b)| a * b).sum()
}

fn samples(b: &InputBox, n: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|k| {
            (0..b.dim())
                .map(|i| match k {
                    // A few corners first.
                    0 => b.lo[i],
                    1 => b.hi[i],
                    _ if k < 8 && r.gen::<bool>() => b.lo[i],
                    _ if k < 8 => b.hi[i],
                    _ => r.gen_range(b.lo[i]..=b.hi[i]),
                })
                .collect()
        })
        .collect()
}

fn check_minimum(g: &Graph, b: &InputBox, spec: &[f64], solver: MilpSolver) {
    let set = InputSet::Box(b.clone());
    let cfg = BoundConfig::new(Method::Crown, Soundness::Real);
    let region = Region::of(&set, Soundness::Real);
    let nb = propagate(g, &region, &cfg).unwrap();
    let crown = lower_bounds(g, &nb, &region, &cfg, spec, 1).unwrap()[0];
    let input = Interval {
        lo: b.lo.clone(),
        hi: b.hi.clone(),
    };
    let tightening = BigM::Lp.tightening(solver, Deadline::none());
    let propagated = encode(g, &nb, &input, None).unwrap();
    let tightened = encode(g, &nb, &input, tightening.as_ref()).unwrap();
    eprintln!(
        "{solver:?}: {} binaries, {} after LP tightening",
        propagated.binaries(),
        tightened.binaries()
    );
    assert!(tightened.binaries() <= propagated.binaries());
    let a = check_encoding_minimum(g, b, spec, solver, &propagated, crown);
    let c = check_encoding_minimum(g, b, spec, solver, &tightened, crown);
    assert!(
        (a - c).abs() <= 1e-5 * (1.0 + a.abs()),
        "{solver:?}: LP tightening moved the minimum from {a} to {c}"
    );
}

/// The encoding's minimum of `spec · y`, checked against the network.
fn check_encoding_minimum(
    g: &Graph,
    b: &InputBox,
    spec: &[f64],
    solver: MilpSolver,
    enc: &Encoding,
    crown: f64,
) -> f64 {
    let query = |cutoff| Query {
        spec,
        cutoff,
        objective: Objective::Worst,
        time_limit: Duration::from_secs(60),
        solver,
    };
    let MilpStatus::Solution {
        x,
        margin: best,
        optimal: true,
        ..
    } = solve(enc, &query(None)).unwrap()
    else {
        panic!("{solver:?}: no optimal solution");
    };
    let tol = 1e-5 * (1.0 + best.abs());
    assert!(b.contains(&x), "{solver:?}: minimiser outside the box");
    let at_x = margin(g, &x, spec);
    assert!(
        (at_x - best).abs() <= tol,
        "{solver:?}: {best} vs re-executed {at_x}"
    );
    assert!(
        best >= crown - tol,
        "{solver:?}: {best} below CROWN's {crown}"
    );
    for p in samples(b, 3000, 7) {
        let m = margin(g, &p, spec);
        assert!(
            m >= best - tol,
            "{solver:?}: sample at {m} below the minimum {best}"
        );
    }
    let below = solve(enc, &query(Some(best - 1e-3 * (1.0 + best.abs())))).unwrap();
    assert!(
        matches!(below, MilpStatus::Infeasible),
        "{solver:?}: {below:?}"
    );
    best
}

#[test]
fn milp_minimum_of_relu_mlps_is_exact() {
    for solver in solvers() {
        for seed in 0..6 {
            let g = random_relu_mlp(&[3, 8, 8, 2], seed);
            let b = InputBox {
                lo: vec![-1.0, -0.5, 0.0],
                hi: vec![0.5, 1.0, 1.0],
            };
            check_minimum(&g, &b, &[1.0, -1.0], solver);
        }
    }
}

#[test]
fn milp_minimum_with_max_pool_and_leaky_relu_is_exact() {
    for solver in solvers() {
        for seed in 0..4 {
            let g = pwl_conv_net(seed);
            let mut r = StdRng::seed_from_u64(seed);
            let x0: Vec<f64> = (0..25).map(|_| r.gen_range(0.2..0.8)).collect();
            let b = InputBox {
                lo: x0.iter().map(|v| v - 0.1).collect(),
                hi: x0.iter().map(|v| v + 0.1).collect(),
            };
            check_minimum(&g, &b, &[1.0, 0.0, -1.0], solver);
        }
    }
}

/// The closest violating input: violates by the cutoff, and no sampled
/// violating input is nearer to x0.
#[test]
fn milp_closest_objective_finds_the_nearest_violation() {
    for solver in solvers() {
        let g = random_relu_mlp(&[2, 10, 2], 3);
        let b = InputBox {
            lo: vec![-1.0, -1.0],
            hi: vec![1.0, 1.0],
        };
        let x0 = vec![0.1, -0.2];
        let spec = [1.0, -1.0];
        let m0 = margin(&g, &x0, &spec);
        let cutoff = if m0 > 0.0 { 0.0 } else { m0 - 0.5 };
        let region = Region::of(&InputSet::Box(b.clone()), Soundness::Real);
        let nb = propagate(
            &g,
            &region,
            &BoundConfig::new(Method::Crown, Soundness::Real),
        )
        .unwrap();
        let input = Interval {
            lo: b.lo.clone(),
            hi: b.hi.clone(),
        };
        let enc = encode(&g, &nb, &input, None).unwrap();
        let q = Query {
            spec: &spec,
            cutoff: Some(cutoff),
            objective: Objective::Closest { x0: x0.clone() },
            time_limit: Duration::from_secs(60),
            solver,
        };
        let dist = |x: &[f64]| {
            x.iter()
                .zip(&x0)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max)
        };
        match solve(&enc, &q).unwrap() {
            MilpStatus::Solution {
                x,
                objective,
                optimal: true,
                ..
            } => {
                assert!(margin(&g, &x, &spec) <= cutoff + 1e-6);
                assert!((dist(&x) - objective).abs() < 1e-6);
                for p in samples(&b, 20000, 1) {
                    if margin(&g, &p, &spec) <= cutoff {
                        assert!(dist(&p) >= objective - 1e-6, "{solver:?}: nearer violation");
                    }
                }
            }
            MilpStatus::Infeasible => {
                for p in samples(&b, 20000, 1) {
                    assert!(
                        margin(&g, &p, &spec) > cutoff,
                        "{solver:?}: missed violation"
                    );
                }
            }
            other => panic!("{solver:?}: {other:?}"),
        }
    }
}

#[test]
fn milp_rejects_smooth_activations() {
    let mut g = random_relu_mlp(&[2, 3, 2], 0);
    let out = g.output;
    g.push("sig", Op::Sigmoid, vec![out]).unwrap();
    let b = Interval {
        lo: vec![0.0; 2],
        hi: vec![1.0; 2],
    };
    let set = InputSet::Box(InputBox {
        lo: b.lo.clone(),
        hi: b.hi.clone(),
    });
    let region = Region::of(&set, Soundness::Real);
    let nb = propagate(
        &g,
        &region,
        &BoundConfig::new(Method::Crown, Soundness::Real),
    )
    .unwrap();
    let err = encode(&g, &nb, &b, None).unwrap_err().to_string();
    assert!(err.contains("milp") && err.contains("Sigmoid"), "{err}");
}

/// Solves from several threads at once (as `--jobs` does) give the answers
/// of one thread: CBC's option parser is process-global, so unguarded
/// concurrent solves misread each other's options.
#[test]
fn concurrent_solves_agree_with_sequential_ones() {
    for solver in solvers() {
        let cases: Vec<(Graph, InputBox)> = (0..4)
            .map(|seed| {
                let g = random_relu_mlp(&[3, 8, 8, 2], seed);
                let b = InputBox {
                    lo: vec![-1.0, -0.5, 0.0],
                    hi: vec![0.5, 1.0, 1.0],
                };
                (g, b)
            })
            .collect();
        let minimum = |(g, b): &(Graph, InputBox)| {
            let set = InputSet::Box(b.clone());
            let cfg = BoundConfig::new(Method::Crown, Soundness::Real);
            let nb = propagate(g, &Region::of(&set, Soundness::Real), &cfg).unwrap();
            let input = Interval {
                lo: b.lo.clone(),
                hi: b.hi.clone(),
            };
            let enc = encode(g, &nb, &input, None).unwrap();
            let q = Query {
                spec: &[1.0, -1.0],
                cutoff: None,
                objective: Objective::Worst,
                time_limit: Duration::from_secs(60),
                solver,
            };
            match solve(&enc, &q).unwrap() {
                MilpStatus::Solution { margin, .. } => margin,
                other => panic!("{solver:?}: {other:?}"),
            }
        };
        let sequential: Vec<f64> = cases.iter().map(minimum).collect();
        for _round in 0..3 {
            let concurrent: Vec<f64> = std::thread::scope(|s| {
                let handles: Vec<_> = cases.iter().map(|c| s.spawn(move || minimum(c))).collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for (a, b) in sequential.iter().zip(&concurrent) {
                assert!(
                    (a - b).abs() <= 1e-6 * (1.0 + a.abs()),
                    "{solver:?}: {a} vs {b}"
                );
            }
        }
    }
}
