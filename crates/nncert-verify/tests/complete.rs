//! Falsification, branch and bound and label-guided verification on small
//! networks where the truth is known (linear algebra or dense sampling).

use nncert_bounds::{
    bound_for_branching, lower_bounds, propagate, propagate_split, Ball, BoundConfig, Method,
    Multipliers, Region, ReluSplit, Soundness, SubdomainRow,
};
use nncert_exec::all_engines;
use nncert_model::forward::{run_all, Reference};
use nncert_model::testing::{random_relu_mlp, random_tensor};
use nncert_model::{Graph, Op, Tensor};
use nncert_spec::{
    Case, InputBox, InputSet, LinearConstraint, Norm, NormBall, OutputDnf, Property,
};
use nncert_verify::attack::{lowest_margin, lowest_row_value, margin_rows, pgd, PgdConfig};
use nncert_verify::bab::{prove_row, BabConfig, RowProblem, BRANCH_CANDIDATES};
use nncert_verify::input_split::prove_by_splitting;
use nncert_verify::milp::{self, BigM, MilpSolver};
use nncert_verify::robustness::{
    verify_robustness, CompleteEngine, PipelineConfig, Stage, Verdict,
};
use nncert_verify::{Models, Outcome};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `spec · y ≤ rhs` over the box is the unsafe set.
fn property(b: &InputBox, spec: &[f64], rhs: f64) -> Property {
    Property {
        num_inputs: b.dim(),
        num_outputs: spec.len(),
        cases: vec![Case {
            input: InputSet::Box(b.clone()),
            unsafe_output: OutputDnf {
                terms: vec![vec![LinearConstraint {
                    coeffs: spec.to_vec(),
                    rhs,
                }]],
            },
        }],
    }
}

fn grid(b: &InputBox, per_dim: usize) -> Vec<Vec<f64>> {
    let mut pts = vec![vec![]];
    for d in 0..b.dim() {
        pts = pts
            .into_iter()
            .flat_map(|p: Vec<f64>| {
                (0..per_dim).map(move |i| {
                    let mut q = p.clone();
                    q.push(b.lo[d] + (b.hi[d] - b.lo[d]) * i as f64 / (per_dim - 1) as f64);
                    q
                })
            })
            .collect();
    }
    pts
}

/// The single output's minimum over a 201 × 201 grid of a 2-D box.
fn grid_minimum(g: &Graph, b: &InputBox) -> f64 {
    grid(b, 201)
        .iter()
        .map(|x| nncert_model::reference_forward(g, x).unwrap()[0])
        .fold(f64::INFINITY, f64::min)
}

/// The ten 2-input test nets on [−0.5, 0.5]²: `f(seed, models, box, grid
/// minimum of y)` for each.
fn for_each_grid_net(mut f: impl FnMut(u64, &Models, &InputBox, f64)) {
    let b = InputBox {
        lo: vec![-0.5, -0.5],
        hi: vec![0.5, 0.5],
    };
    for seed in 0..10 {
        let g = random_relu_mlp(&[2, 8, 8, 1], 100 + seed);
        let engines = all_engines(&g).unwrap();
        let m = Models {
            executed: &g,
            bounded: &g,
            engines: &engines,
        };
        f(seed, &m, &b, grid_minimum(&g, &b));
    }
}

/// Branch and bound on `y > rhs` over a grid net's box, with its statistics.
fn prove_on_grid_net(
    m: &Models,
    b: &InputBox,
    rhs: f64,
    cfg: &BabConfig,
) -> (Outcome, nncert_verify::bab::BabStats) {
    let p = property(b, &[1.0], rhs);
    let set = InputSet::Box(b.clone());
    let region = Region::of(&set, cfg.bounds.soundness);
    let row = RowProblem {
        property: &p,
        region: &region,
        set: &set,
        spec: &[1.0],
        rhs,
    };
    prove_row(m, &row, cfg).unwrap()
}

/// Branch and bound on `y > rhs` over a grid net's box, checked against
/// `holds` (whether the grid says it is true): Some(true) when proved,
/// Some(false) when refuted by a confirmed counterexample, None when open.
fn decide_on_grid_net(
    seed: u64,
    m: &Models,
    b: &InputBox,
    rhs: f64,
    holds: bool,
    cfg: &BabConfig,
) -> Option<bool> {
    let p = property(b, &[1.0], rhs);
    match prove_on_grid_net(m, b, rhs, cfg).0 {
        Outcome::Proved => {
            assert!(
                holds,
                "seed {seed} {:?}: proved a false property",
                cfg.bounds.method
            );
            Some(true)
        }
        Outcome::Counterexample(ce) => {
            assert!(!holds, "seed {seed}: counterexample to a true property");
            assert!(p.is_counterexample(&ce.x, &ce.y));
            Some(false)
        }
        _ => None,
    }
}

/// Under any set of splits, every node's interval and the branching bound
/// hold for the sampled inputs that satisfy the splits (f64 reference for
/// the split test; every float32 engine for the output), in both modes.
#[test]
fn split_bounds_hold_on_their_subdomain() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut checked = 0;
    for seed in 0..12 {
        let g = random_relu_mlp(&[3, 10, 10, 2], seed);
        let engines = all_engines(&g).unwrap();
        let b = InputBox {
            lo: vec![-1.0; 3],
            hi: vec![1.0; 3],
        };
        for soundness in [Soundness::Real, Soundness::Float32] {
            let cfg = BoundConfig::new(Method::Crown, soundness);
            let region = Region::of(&InputSet::Box(b.clone()), soundness);
            let root = propagate(&g, &region, &cfg).unwrap();
            let mut unstable: Vec<(usize, usize)> = Vec::new();
            for (id, n) in g.nodes.iter().enumerate() {
                if n.op == Op::Relu {
                    let pre = &root.nodes[n.inputs[0]];
                    unstable.extend(
                        (0..pre.len())
                            .filter(|&j| pre.lo[j] < 0.0 && pre.hi[j] > 0.0)
                            .map(|j| (n.inputs[0], j)),
                    );
                }
                let _ = id;
            }
            if unstable.len() < 3 {
                continue;
            }
            let splits: Vec<ReluSplit> = (0..3)
                .map(|_| {
                    let (pre, index) = unstable[rng.gen_range(0..unstable.len())];
                    ReluSplit {
                        pre,
                        index,
                        active: rng.gen(),
                    }
                })
                .collect();
            let Some(nb) = propagate_split(&g, &region, &cfg, &splits, None).unwrap() else {
                continue;
            };
            let spec = [1.0, -1.0];
            let row = SubdomainRow {
                graph: &g,
                bounds: &nb,
                region: &region,
                spec: &spec,
                splits: &splits,
            };
            // CROWN, and β-CROWN with multipliers on the splits.
            let lowers: Vec<f64> = [Method::Crown, Method::AlphaCrown]
                .into_iter()
                .map(|method| {
                    let c = BoundConfig { method, ..cfg };
                    let warm = Multipliers::default();
                    bound_for_branching(&row, &c, &warm).unwrap().lower
                })
                .collect();
            for _ in 0..2000 {
                let x: Vec<f32> = (0..3).map(|_| rng.gen_range(-1.0f32..=1.0)).collect();
                let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                let values = run_all(&g, &Reference, &x64).unwrap();
                let inside = splits.iter().all(|sp| {
                    let z = values[sp.pre][sp.index];
                    if sp.active {
                        z > 1e-6
                    } else {
                        z < -1e-6
                    }
                });
                if !inside {
                    continue;
                }
                for (id, v) in values.iter().enumerate() {
                    assert!(nb.nodes[id].contains(v), "seed {seed} node {id}");
                }
                let mut ys: Vec<Vec<f64>> = vec![values[g.output].clone()];
                for e in &engines {
                    ys.push(e.run(&g, &x).unwrap().iter().map(|&v| v as f64).collect());
                }
                for y in ys {
                    let margin = y[0] - y[1];
                    for lower in &lowers {
                        assert!(
                            margin >= *lower,
                            "seed {seed} {soundness:?}: {margin} < {lower}"
                        );
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked > 2000,
        "only {checked} points inside the subdomains"
    );
}

/// On 2-input nets (min of y from a dense grid, spacing 0.005), branch and
/// bound finds a confirmed counterexample to `y > min + 0.05` every time,
/// never proves it, and proves `y > min − 0.5` more often than CROWN alone.
/// (Without β-CROWN multipliers or an LP, split constraints only clamp
/// intervals, so true properties close to the minimum may stay open.)
#[test]
fn bab_proves_true_and_refutes_false_properties() {
    let (mut proved, mut refuted, mut crown_proved) = (0, 0, 0);
    for_each_grid_net(|seed, m, b, min| {
        let g = m.bounded;
        let set = InputSet::Box(b.clone());
        let region = Region::of(&set, Soundness::Float32);
        let crown = BoundConfig::new(Method::Crown, Soundness::Float32);
        let root = propagate(g, &region, &crown).unwrap();
        let row = SubdomainRow {
            graph: g,
            bounds: &root,
            region: &region,
            spec: &[1.0],
            splits: &[],
        };
        let crown_lower = bound_for_branching(&row, &crown, &Default::default())
            .unwrap()
            .lower;
        crown_proved += (crown_lower > min - 0.5) as usize;
        for (rhs, holds) in [(min - 0.5, true), (min + 0.05, false)] {
            let cfg = BabConfig::new(BoundConfig {
                deadline: nncert_model::Deadline::after_secs(10.0),
                ..BoundConfig::new(Method::Crown, Soundness::Float32)
            });
            match decide_on_grid_net(seed, m, b, rhs, holds, &cfg) {
                Some(true) => proved += 1,
                Some(false) => refuted += 1,
                None => {}
            }
        }
    });
    assert_eq!(refuted, 10);
    assert!(
        proved > crown_proved,
        "proved {proved}/10, CROWN alone {crown_proved}/10"
    );
}

/// Proves `y > min − 0.01` and refutes `y > min + 0.01` on a grid net (a
/// fresh configuration per query); the subdomains the proof took.
fn prove_and_refute_near_minimum(
    seed: u64,
    m: &Models,
    b: &InputBox,
    min: f64,
    cfg: impl Fn() -> BabConfig,
) -> usize {
    let (outcome, stats) = prove_on_grid_net(m, b, min - 0.01, &cfg());
    assert!(
        matches!(outcome, Outcome::Proved),
        "seed {seed} {:?}, {} candidates: {outcome:?}",
        cfg().bounds.method,
        cfg().branch_candidates
    );
    assert_eq!(
        decide_on_grid_net(seed, m, b, min + 0.01, false, &cfg()),
        Some(false)
    );
    stats.subdomains
}

/// Close to the minimum (y > min − 0.01 on the grid nets), β-CROWN's split
/// multipliers close subdomains that interval clamping leaves open, so
/// branch and bound needs far fewer of them (both are complete here: the
/// exact leaves decide what neither bound closes), and neither proves a
/// property the grid refutes.
#[test]
fn beta_crown_closes_subdomains_that_clamping_leaves_open() {
    let mut subdomains = [0usize; 2];
    for_each_grid_net(|seed, m, b, min| {
        for (k, method) in [Method::Crown, Method::AlphaCrown].into_iter().enumerate() {
            // A fresh deadline per query, generous: it is only a cap (the
            // whole test takes ~25 s), and a loaded CI machine must not
            // turn a decided query into a timeout.
            let cfg = || {
                BabConfig::new(BoundConfig {
                    deadline: nncert_model::Deadline::after_secs(60.0),
                    ..BoundConfig::new(method, Soundness::Float32)
                })
            };
            subdomains[k] += prove_and_refute_near_minimum(seed, m, b, min, cfg);
        }
    });
    // Measured: CROWN 52,260 subdomains in all, β-CROWN 5,403 (5 Adam
    // steps per child, strong branching; BaBSR alone: 118,510 and 31,032).
    assert!(
        2 * subdomains[1] < subdomains[0],
        "subdomains: CROWN {}, β-CROWN {}",
        subdomains[0],
        subdomains[1]
    );
}

/// Filtered strong branching (bound both children of the best BaBSR
/// candidates, split the one whose worse child is highest) proves
/// `y > min − 0.01` on every grid net with fewer subdomains than BaBSR's
/// best candidate alone, and refutes `y > min + 0.01` as before.
#[test]
fn strong_branching_needs_fewer_subdomains_than_babsr() {
    let mut subdomains = [0usize; 2];
    for_each_grid_net(|seed, m, b, min| {
        for (k, candidates) in [1, BRANCH_CANDIDATES].into_iter().enumerate() {
            // A fresh, generous deadline per query (a cap, not a timing).
            let cfg = || BabConfig {
                branch_candidates: candidates,
                ..BabConfig::new(BoundConfig {
                    deadline: nncert_model::Deadline::after_secs(60.0),
                    ..BoundConfig::new(Method::AlphaCrown, Soundness::Float32)
                })
            };
            subdomains[k] += prove_and_refute_near_minimum(seed, m, b, min, cfg);
        }
    });
    // Measured: BaBSR 31,032 subdomains in all, strong branching 5,403.
    assert!(
        subdomains[1] < subdomains[0],
        "subdomains: BaBSR {}, strong branching {}",
        subdomains[0],
        subdomains[1]
    );
}

/// Batched search (two subdomains split per round, their four children
/// bounded on two threads) decides what the one-at-a-time search decides:
/// proves `y > min − 0.01` and refutes `y > min + 0.01` on every grid net.
#[test]
fn batched_subdomains_decide_like_single_ones() {
    for_each_grid_net(|seed, m, b, min| {
        // A fresh, generous deadline per query (a cap, not a timing).
        let cfg = || BabConfig {
            workers: 2,
            ..BabConfig::new(BoundConfig {
                deadline: nncert_model::Deadline::after_secs(60.0),
                ..BoundConfig::new(Method::AlphaCrown, Soundness::Float32)
            })
        };
        assert_eq!(
            decide_on_grid_net(seed, m, b, min - 0.01, true, &cfg()),
            Some(true),
            "seed {seed}"
        );
        assert_eq!(
            decide_on_grid_net(seed, m, b, min + 0.01, false, &cfg()),
            Some(false),
            "seed {seed}"
        );
    });
}

/// Past the memory cap the search goes depth first and runs on: with a cap
/// of zero (depth first from the root's children on, one and two workers)
/// it still proves `y > min − 0.01` and refutes `y > min + 0.01` on every
/// grid net, where it used to answer `Unknown` at the cap.
#[test]
fn past_the_memory_cap_the_search_goes_depth_first() {
    for_each_grid_net(|seed, m, b, min| {
        for workers in [1, 2] {
            let cfg = || BabConfig {
                workers,
                max_stored_values: 0,
                ..BabConfig::new(BoundConfig {
                    deadline: nncert_model::Deadline::after_secs(60.0),
                    ..BoundConfig::new(Method::AlphaCrown, Soundness::Float32)
                })
            };
            prove_and_refute_near_minimum(seed, m, b, min, cfg);
        }
    });
}

/// Input splitting on 2-input nets (grid minimum, spacing 0.005): proves
/// `y > min − 0.02` and refutes `y > min + 0.02` with a confirmed
/// counterexample, every time, well within the deadline.
#[test]
fn input_splitting_decides_properties_near_the_minimum() {
    for_each_grid_net(|seed, m, b, min| {
        let cfg = BoundConfig::new(Method::Crown, Soundness::Float32);
        for (rhs, holds) in [(min - 0.02, true), (min + 0.02, false)] {
            let p = property(b, &[1.0], rhs);
            let deadline = nncert_model::Deadline::after_secs(20.0);
            match prove_by_splitting(m, &p, &p.cases[0], &cfg, deadline).unwrap() {
                Outcome::Proved => assert!(holds, "seed {seed}: proved a false property"),
                Outcome::Counterexample(ce) => {
                    assert!(!holds, "seed {seed}: counterexample to a true property");
                    assert!(p.is_counterexample(&ce.x, &ce.y));
                }
                other => panic!("seed {seed} rhs {rhs}: {other:?}"),
            }
        }
    });
}

/// Input splitting on a disjunction of conjunctions (ACAS Xu's properties
/// 2, 3 and 7 have this shape; each term keeps its own slacks and the
/// parent's floor per constraint): on 2-input nets with 3 outputs, "y0 is
/// the smallest or y1 is the smallest, by at least −t" is unsafe. With `w`
/// the grid minimum of the best term's worst constraint, `t = w − 0.05` must
/// be proved and `t = w + 0.05` refuted by a confirmed counterexample.
#[test]
fn input_splitting_decides_disjunctions_of_conjunctions() {
    let b = InputBox {
        lo: vec![-0.5, -0.5],
        hi: vec![0.5, 0.5],
    };
    // Term k: y_k − y_j ≤ t for both other outputs j.
    let terms = |t: f64| -> Vec<Vec<LinearConstraint>> {
        (0..2)
            .map(|k| {
                (0..3)
                    .filter(|&j| j != k)
                    .map(|j| {
                        let mut coeffs = vec![0.0; 3];
                        coeffs[k] = 1.0;
                        coeffs[j] = -1.0;
                        LinearConstraint { coeffs, rhs: t }
                    })
                    .collect()
            })
            .collect()
    };
    for seed in 0..6 {
        let g = random_relu_mlp(&[2, 8, 8, 3], 300 + seed);
        let engines = all_engines(&g).unwrap();
        let m = Models {
            executed: &g,
            bounded: &g,
            engines: &engines,
        };
        let worst_constraint = |y: &[f64]| {
            terms(0.0)
                .iter()
                .map(|term| {
                    term.iter()
                        .map(|c| c.coeffs.iter().zip(y).map(|(a, v)| a * v).sum::<f64>())
                        .fold(f64::NEG_INFINITY, f64::max)
                })
                .fold(f64::INFINITY, f64::min)
        };
        let w = grid(&b, 201)
            .iter()
            .map(|x| worst_constraint(&nncert_model::reference_forward(&g, x).unwrap()))
            .fold(f64::INFINITY, f64::min);
        for (t, holds) in [(w - 0.05, true), (w + 0.05, false)] {
            let p = Property {
                num_inputs: 2,
                num_outputs: 3,
                cases: vec![Case {
                    input: InputSet::Box(b.clone()),
                    unsafe_output: OutputDnf { terms: terms(t) },
                }],
            };
            let cfg = BoundConfig::new(Method::Crown, Soundness::Float32);
            let deadline = nncert_model::Deadline::after_secs(20.0);
            match prove_by_splitting(&m, &p, &p.cases[0], &cfg, deadline).unwrap() {
                Outcome::Proved => assert!(holds, "seed {seed}: proved a false property"),
                Outcome::Counterexample(ce) => {
                    assert!(!holds, "seed {seed}: counterexample to a true property");
                    assert!(p.is_counterexample(&ce.x, &ce.y));
                }
                other => panic!("seed {seed} t {t}: {other:?}"),
            }
        }
    }
}

/// `x ↦ W x + b` on inputs of shape [1, n].
fn linear_net(w: &Tensor, bias: &Tensor) -> Graph {
    let mut g = Graph::with_input("x", vec![1, w.shape[1]]);
    let layer = Op::Linear {
        weight: w.clone(),
        bias: Some(bias.clone()),
    };
    g.push("fc", layer, vec![0]).unwrap();
    g
}

/// On a linear model the minimum over an L∞ ball is at a known corner:
/// PGD reaches it when it is below the threshold, and finds nothing otherwise.
#[test]
fn pgd_reaches_the_minimum_of_a_linear_model() {
    let mut r = StdRng::seed_from_u64(9);
    for seed in 0..5 {
        let w = random_tensor(&mut r, &[1, 6], 1.0);
        let g = linear_net(&w, &Tensor::new(vec![1], vec![0.1]));
        let engines = all_engines(&g).unwrap();
        let m = Models {
            executed: &g,
            bounded: &g,
            engines: &engines,
        };
        let center: Vec<f64> = (0..6).map(|_| r.gen_range(0.3..0.7)).collect();
        let eps = 0.2;
        let min: f64 = w
            .data
            .iter()
            .zip(&center)
            .map(|(&w, c)| w as f64 * c)
            .sum::<f64>()
            + 0.1
            - eps * w.data.iter().map(|w| w.abs() as f64).sum::<f64>();
        let ball = InputSet::Ball(NormBall {
            center,
            eps,
            norm: Norm::Linf,
            domain: (0.0, 1.0),
        });
        for (rhs, exists) in [(min + 0.01, true), (min - 0.01, false)] {
            let p = Property {
                num_inputs: 6,
                num_outputs: 1,
                cases: vec![Case {
                    input: ball.clone(),
                    unsafe_output: OutputDnf {
                        terms: vec![vec![LinearConstraint {
                            coeffs: vec![1.0],
                            rhs,
                        }]],
                    },
                }],
            };
            let found = pgd(
                &m,
                &p,
                &ball,
                &[1.0],
                rhs,
                &PgdConfig::default(),
                nncert_model::Deadline::none(),
            )
            .unwrap();
            assert_eq!(found.is_some(), exists, "seed {seed} rhs {rhs} (min {min})");
        }
    }
}

/// On a linear model with two outputs, the lowest value PGD finds over
/// both rows is the lower of the two rows' minima (each at a known corner
/// of the L∞ ball), and on a ReLU MLP the lowest margin lies between
/// CROWN's lower bound and the margin at the centre.
#[test]
fn lowest_row_value_finds_the_lowest_rows_minimum() {
    let mut r = StdRng::seed_from_u64(11);
    for seed in 0..5 {
        let w = random_tensor(&mut r, &[2, 6], 1.0);
        let bias = Tensor::new(vec![2], vec![0.1, -0.2]);
        let g = linear_net(&w, &bias);
        let center: Vec<f64> = (0..6).map(|_| r.gen_range(0.3..0.7)).collect();
        let eps = 0.2;
        let row_min = |o: usize| -> f64 {
            let wo = &w.data[o * 6..][..6];
            let at_centre: f64 = wo.iter().zip(&center).map(|(&w, c)| w as f64 * c).sum();
            at_centre + bias.data[o] as f64 - eps * wo.iter().map(|w| w.abs() as f64).sum::<f64>()
        };
        let exact = row_min(0).min(row_min(1));
        let ball = InputSet::Ball(NormBall {
            center,
            eps,
            norm: Norm::Linf,
            domain: (0.0, 1.0),
        });
        let spec = [1.0, 0.0, 0.0, 1.0];
        let lowest = lowest_row_value(&g, &ball, &spec, 2, &PgdConfig::default()).unwrap();
        assert!(
            (lowest - exact).abs() < 1e-9,
            "seed {seed}: {lowest} vs {exact}"
        );
    }
    let mut r = StdRng::seed_from_u64(12);
    for seed in 0..5 {
        let (g, x0, label) = labelled_point(&[4, 16, 16, 3], seed, &mut r);
        let ball = NormBall {
            center: x0.clone(),
            eps: 0.05,
            norm: Norm::Linf,
            domain: (0.0, 1.0),
        };
        let lowest = lowest_margin(&g, &ball, label, &PgdConfig::default()).unwrap();
        let spec = margin_rows(label, 3);
        let y0 = nncert_model::reference_forward(&g, &x0).unwrap();
        let at_centre = (0..3)
            .filter(|&t| t != label)
            .map(|t| y0[label] - y0[t])
            .fold(f64::INFINITY, f64::min);
        let cfg = BoundConfig::new(Method::Crown, Soundness::Real);
        let region = Region::of(&InputSet::Ball(ball), cfg.soundness);
        let nb = propagate(&g, &region, &cfg).unwrap();
        let lb = lower_bounds(&g, &nb, &region, &cfg, &spec, 2).unwrap();
        let crown = lb.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(
            crown <= lowest + 1e-9 && lowest <= at_centre,
            "seed {seed}: {crown} ≤ {lowest} ≤ {at_centre}"
        );
    }
}

/// A random ReLU MLP on 4 inputs, a point of [0.2, 0.8]⁴ and its label.
fn labelled_point(widths: &[usize], seed: u64, r: &mut StdRng) -> (Graph, Vec<f64>, usize) {
    let g = random_relu_mlp(widths, seed);
    let x0: Vec<f64> = (0..widths[0]).map(|_| r.gen_range(0.2..0.8)).collect();
    let y0 = nncert_model::reference_forward(&g, &x0).unwrap();
    let label = (0..y0.len())
        .max_by(|&a, &b| y0[a].total_cmp(&y0[b]))
        .unwrap();
    (g, x0, label)
}

/// The pipeline with CROWN bounds, microlp, one worker and its own deadline.
fn pipeline(
    soundness: Soundness,
    pgd: PgdConfig,
    guided: bool,
    complete: CompleteEngine,
) -> PipelineConfig {
    PipelineConfig {
        bounds: BoundConfig {
            deadline: nncert_model::Deadline::after_secs(30.0),
            ..BoundConfig::new(Method::Crown, soundness)
        },
        pgd,
        guided,
        complete,
        milp_solver: MilpSolver::MicroLp,
        milp_big_m: BigM::Propagated,
        bab_workers: 1,
    }
}

/// Whether a decided verdict says robust; a witness must beat the label
/// on the f64 reference.
fn decided_robust(g: &Graph, label: usize, v: &Verdict) -> Option<bool> {
    match v {
        Verdict::Robust => Some(true),
        Verdict::NotRobust { witness, target } => {
            let y = nncert_model::reference_forward(g, &witness.x).unwrap();
            assert!(y[*target] >= y[label]);
            Some(false)
        }
        _ => None,
    }
}

fn linf_ball(eps: f64) -> Ball {
    Ball {
        eps,
        norm: Norm::Linf,
        domain: (0.0, 1.0),
    }
}

/// Guided and unguided verification never contradict each other; guided
/// takes the labels in ascending order of their margin bounds, skips those
/// already proved, and every counterexample is confirmed on re-execution.
#[test]
fn label_guidance_orders_labels_and_agrees_with_unguided() {
    let mut r = StdRng::seed_from_u64(21);
    let mut decided = 0;
    for seed in 0..6 {
        let (g, x0, label) = labelled_point(&[4, 16, 16, 5], 300 + seed, &mut r);
        let engines = all_engines(&g).unwrap();
        let m = Models {
            executed: &g,
            bounded: &g,
            engines: &engines,
        };
        for eps in [0.01, 0.05, 0.2] {
            let run = |guided| {
                let cfg = pipeline(
                    Soundness::Float32,
                    PgdConfig::default(),
                    guided,
                    CompleteEngine::BranchAndBound,
                );
                verify_robustness(&m, &x0, label, linf_ball(eps), &cfg).unwrap()
            };
            let (guided, unguided) = (run(true), run(false));
            let both = (
                decided_robust(&g, label, &guided.verdict),
                decided_robust(&g, label, &unguided.verdict),
            );
            if let (Some(a), Some(b)) = both {
                assert_eq!(a, b, "seed {seed} eps {eps}");
                decided += 1;
            }
            let taken: Vec<f64> = guided
                .labels
                .iter()
                .filter(|l| l.settled_by != Some(Stage::Bounds))
                .map(|l| l.margin_lower)
                .collect();
            assert!(taken.iter().all(|&m| m <= 0.0));
            assert!(guided
                .labels
                .iter()
                .filter(|l| l.settled_by == Some(Stage::Bounds))
                .all(|l| l.margin_lower > 0.0));
        }
    }
    assert!(
        decided >= 12,
        "only {decided} of 18 cases decided both ways"
    );
}

/// `--engine auto` (MILP then branch and bound in sound mode, the other
/// order in real mode) never contradicts branch and bound alone; in sound
/// mode its "robust" never rests on the MILP, and its counterexamples are
/// real ones. No PGD, so the complete stages do the work.
#[test]
fn auto_engine_agrees_with_branch_and_bound() {
    let mut r = StdRng::seed_from_u64(23);
    let (mut decided, mut complete) = (0, 0);
    let no_pgd = PgdConfig {
        restarts: 0,
        ..PgdConfig::default()
    };
    for seed in 0..4 {
        let (g, x0, label) = labelled_point(&[4, 16, 16, 4], 500 + seed, &mut r);
        let engines = all_engines(&g).unwrap();
        let m = Models {
            executed: &g,
            bounded: &g,
            engines: &engines,
        };
        for eps in [0.05, 0.1, 0.2] {
            for soundness in [Soundness::Float32, Soundness::Real] {
                let run = |engine| {
                    let cfg = pipeline(soundness, no_pgd, true, engine);
                    verify_robustness(&m, &x0, label, linf_ball(eps), &cfg).unwrap()
                };
                let (auto, bab) = (
                    run(CompleteEngine::Auto),
                    run(CompleteEngine::BranchAndBound),
                );
                let stages: Vec<_> = auto.labels.iter().map(|l| l.settled_by).collect();
                complete += stages
                    .iter()
                    .any(|s| matches!(s, Some(Stage::Milp | Stage::BranchAndBound)))
                    as usize;
                if matches!(auto.verdict, Verdict::Robust) && soundness == Soundness::Float32 {
                    assert!(auto.labels.iter().all(|l| !l.unconfirmed));
                    assert!(!stages.contains(&Some(Stage::Milp)));
                }
                let both = (
                    decided_robust(&g, label, &auto.verdict),
                    decided_robust(&g, label, &bab.verdict),
                );
                if let (Some(a), Some(b)) = both {
                    assert_eq!(a, b, "seed {seed} eps {eps} {soundness:?}");
                    decided += 1;
                }
            }
        }
    }
    assert!(
        decided >= 18,
        "only {decided} of 24 cases decided both ways"
    );
    assert!(
        complete >= 4,
        "only {complete} cases reached a complete stage"
    );
}

/// The MILP stage decides rows exactly in real-arithmetic mode (a property
/// 0.02 above the grid minimum is proved, 0.05 below it refuted with a
/// confirmed witness), and in float32 mode its "infeasible" is never a proof.
#[test]
fn milp_rows_are_decided_and_proofs_need_real_mode() {
    let b = InputBox {
        lo: vec![-1.0, -1.0],
        hi: vec![1.0, 1.0],
    };
    for solver in [MilpSolver::MicroLp, MilpSolver::Cbc] {
        if !solver.available() {
            continue;
        }
        for seed in 0..5 {
            let g = random_relu_mlp(&[2, 8, 8, 1], 400 + seed);
            let engines = all_engines(&g).unwrap();
            let m = Models {
                executed: &g,
                bounded: &g,
                engines: &engines,
            };
            let min = grid_minimum(&g, &b);
            let set = InputSet::Box(b.clone());
            for soundness in [Soundness::Real, Soundness::Float32] {
                let region = Region::of(&set, soundness);
                let nb =
                    propagate(&g, &region, &BoundConfig::new(Method::Crown, soundness)).unwrap();
                let input = nncert_bounds::Interval {
                    lo: b.lo.clone(),
                    hi: b.hi.clone(),
                };
                let enc = milp::encode(&g, &nb, &input, None).unwrap();
                for (rhs, holds) in [(min - 0.02, true), (min + 0.05, false)] {
                    let p = property(&b, &[1.0], rhs);
                    let row = RowProblem {
                        property: &p,
                        region: &region,
                        set: &set,
                        spec: &[1.0],
                        rhs,
                    };
                    let deadline = nncert_model::Deadline::after_secs(30.0);
                    let outcome = milp::decide_row(&m, &row, &enc, solver, soundness, deadline);
                    match (outcome.unwrap(), holds, soundness) {
                        (Outcome::Proved, true, Soundness::Real) => {}
                        (Outcome::Unconfirmed, true, Soundness::Float32) => {}
                        (Outcome::Counterexample(ce), false, _) => {
                            assert!(p.is_counterexample(&ce.x, &ce.y))
                        }
                        (o, _, _) => {
                            panic!("{solver:?} seed {seed} rhs {rhs} {soundness:?}: {o:?}")
                        }
                    }
                }
            }
        }
    }
}

/// Exact leaves make branch and bound complete on the grid nets: within
/// 1e-5 of the true minimum (the MILP's optimum, checked against the grid),
/// `y > min − δ` is proved and `y > min + δ` refuted with a confirmed
/// counterexample, in float32 and in real mode, every time.
#[test]
fn exact_leaves_decide_properties_at_the_minimum() {
    for_each_grid_net(|seed, m, b, grid_min| {
        let g = m.bounded;
        let set = InputSet::Box(b.clone());
        let region = Region::of(&set, Soundness::Real);
        let nb = propagate(
            g,
            &region,
            &BoundConfig::new(Method::Crown, Soundness::Real),
        )
        .unwrap();
        let input = nncert_bounds::Interval {
            lo: b.lo.clone(),
            hi: b.hi.clone(),
        };
        let enc = milp::encode(g, &nb, &input, None).unwrap();
        let q = milp::Query {
            spec: &[1.0],
            cutoff: None,
            objective: milp::Objective::Worst,
            time_limit: std::time::Duration::from_secs(60),
            solver: MilpSolver::MicroLp,
        };
        let milp::MilpStatus::Solution { margin: min, .. } = milp::solve(&enc, &q).unwrap() else {
            panic!("seed {seed}: the MILP has no optimum");
        };
        assert!(
            min <= grid_min + 1e-9,
            "seed {seed}: MILP {min} above the grid's {grid_min}"
        );
        let delta = 1e-5 * (1.0 + min.abs());
        for soundness in [Soundness::Float32, Soundness::Real] {
            for (rhs, holds) in [(min - delta, true), (min + delta, false)] {
                let cfg = BabConfig::new(BoundConfig {
                    deadline: nncert_model::Deadline::after_secs(60.0),
                    ..BoundConfig::new(Method::AlphaCrown, soundness)
                });
                let decided = decide_on_grid_net(seed, m, b, rhs, holds, &cfg);
                assert_eq!(decided, Some(holds), "seed {seed} {soundness:?} rhs {rhs}");
            }
        }
    });
}
