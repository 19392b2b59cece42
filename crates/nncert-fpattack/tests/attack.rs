//! The attack's pieces where the answer is known, and the end-to-end
//! regression: on a small network, images that sound mode certifies are
//! not broken by hill climbing on any float32 engine.

use nncert_exec::{all_engines, EngineKind};
use nncert_fpattack::climb::{engine_loss, hill_climb, tiles, ClimbConfig};
use nncert_fpattack::cw_loss;
use nncert_fpattack::oracle::{Claim, MilpVerifier, PipelineVerifier, Verifier};
use nncert_fpattack::perturbation::nextafter_box;
use nncert_fpattack::pipeline::{attack_seed, audit, with_gap, AttackConfig, Finder};
use nncert_model::testing::random_relu_mlp;
use nncert_model::{Graph, Op, Tensor};
use nncert_verify::milp::{BigM, MilpSolver};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

fn solver() -> MilpSolver {
    if MilpSolver::Cbc.available() {
        MilpSolver::Cbc
    } else {
        MilpSolver::MicroLp
    }
}

/// MIPVerify's MILP (LP-tightened big-M), 30 s per solve.
fn milp_verifier(eps: f64) -> MilpVerifier {
    MilpVerifier {
        eps,
        solver: solver(),
        time_limit: Duration::from_secs(30),
        big_m: BigM::Lp,
    }
}

/// y = (w·x, c): label 0's CW loss is w·x − c, linear, so its minimum over
/// a box is known exactly.
fn linear_net(w: &[f32], c: f32) -> Graph {
    let n = w.len();
    let mut g = Graph::with_input("x", vec![1, n]);
    let mut weight = w.to_vec();
    weight.extend(std::iter::repeat_n(0.0, n));
    let op = Op::Linear {
        weight: Tensor::new(vec![2, n], weight),
        bias: Some(Tensor::new(vec![2], vec![0.0, c])),
    };
    g.push("fc", op, vec![0]).unwrap();
    g
}

#[test]
fn hill_climbing_descends_inside_the_box() {
    let mut r = StdRng::seed_from_u64(5);
    let n = 32;
    let w: Vec<f32> = (0..n).map(|_| r.gen_range(-1.0..1.0)).collect();
    let x1: Vec<f32> = (0..n).map(|_| r.gen_range(0.3..0.7)).collect();
    let wx: f64 = w.iter().zip(&x1).map(|(a, b)| *a as f64 * *b as f64).sum();
    let (lo, hi) = nextafter_box(&x1, 1e-6);
    // Box minimum of w·x, with every coordinate at its better end.
    let best: f64 = (0..n)
        .map(|i| (w[i] as f64 * lo[i] as f64).min(w[i] as f64 * hi[i] as f64))
        .sum();
    let cfg = ClimbConfig {
        sweeps: 300,
        ..ClimbConfig::default()
    };
    // The threshold c puts the start just above the boundary: reachable.
    let reachable = (wx + best) / 2.0;
    // ... or above the box minimum: no adversarial point exists.
    let unreachable = best - 1e-6;
    for (c, exists) in [(reachable, true), (unreachable, false)] {
        let g = linear_net(&w, c as f32);
        for e in all_engines(&g).unwrap() {
            let start = engine_loss(&e, &g, &x1, 0).unwrap();
            let end = hill_climb(&e, &g, &x1, (&lo, &hi), 0, &cfg).unwrap();
            assert!(end
                .x
                .iter()
                .zip(&lo)
                .zip(&hi)
                .all(|((v, l), h)| l <= v && v <= h));
            assert_eq!(engine_loss(&e, &g, &end.x, 0).unwrap(), end.loss);
            assert!(end.loss <= start, "{}: the loss rose", e.kind());
            assert_eq!(end.loss < 0.0, exists, "{} c = {c}", e.kind());
        }
    }
}

/// Winograd's tiles are Appendix A's: on a 28×28 image, the 5×5 patch at
/// offset 4 of every 9×9 square (9 patches, disjoint, none on the last
/// partial square's first 4 rows or columns); other engines keep 4×4 tiles
/// covering the image.
#[test]
fn winograd_climbs_the_papers_patches() {
    let base = ClimbConfig::default();
    let w = base.for_engine(EngineKind::Winograd);
    assert_eq!((w.tile, w.offset, w.sweeps), (9, 4, base.sweeps));
    let patches = tiles(&[1, 1, 28, 28], w.tile, w.offset);
    assert_eq!(patches.len(), 9);
    let mut seen = std::collections::HashSet::new();
    for p in &patches {
        assert_eq!(p.len(), 25);
        for &i in p {
            let (y, x) = (i / 28, i % 28);
            assert!(y % 9 >= 4 && x % 9 >= 4, "({y}, {x})");
            assert!(seen.insert(i));
        }
    }
    for kind in EngineKind::ALL {
        let c = base.for_engine(kind);
        assert_eq!((c.tile, c.offset), (4, 0));
        let all: usize = tiles(&[1, 2, 28, 28], c.tile, c.offset)
            .iter()
            .map(Vec::len)
            .sum();
        assert_eq!(all, 2 * 28 * 28);
    }
}

/// The climb as Appendix A states it: one candidate at a time.
fn one_at_a_time(
    e: &nncert_exec::Engine,
    g: &Graph,
    start: &[f32],
    (lo, hi): (&[f32], &[f32]),
    cfg: &ClimbConfig,
) -> (Vec<f32>, f64) {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let (mut x, mut loss) = (start.to_vec(), engine_loss(e, g, start, 0).unwrap());
    for _ in 0..cfg.sweeps {
        if loss < 0.0 {
            break;
        }
        for t in tiles(g.input_shape(), cfg.tile, cfg.offset) {
            let mut cand = x.clone();
            for i in t {
                cand[i] = (cand[i] + rng.gen_range(-cfg.scale..=cfg.scale)).clamp(lo[i], hi[i]);
            }
            let l = engine_loss(e, g, &cand, 0).unwrap();
            if l < loss {
                (x, loss) = (cand, l);
            }
        }
    }
    (x, loss)
}

/// The batched climb (speculative candidates) takes exactly the steps of
/// the one-at-a-time climb, on every engine, whether it crosses or not.
#[test]
fn batched_climb_is_the_sequential_climb() {
    let mut r = StdRng::seed_from_u64(8);
    let mut crossed = 0;
    for seed in 0..6 {
        let g = random_relu_mlp(&[48, 24, 2], seed);
        let x: Vec<f32> = (0..48).map(|_| r.gen_range(0.3..0.7)).collect();
        let (lo, hi) = nextafter_box(&x, 2e-6);
        let cfg = ClimbConfig {
            sweeps: 40,
            seed,
            ..ClimbConfig::default()
        };
        // Label 0's logit set just above label 1's at x (a crossing within
        // reach) on even seeds, far above on odd ones.
        let margin = if seed % 2 == 0 { 2e-6 } else { 1e-2 };
        let y =
            nncert_model::reference_forward(&g, &x.iter().map(|&v| v as f64).collect::<Vec<_>>())
                .unwrap();
        let g = with_gap(&g, 0, y[0] - y[1] - margin).unwrap();
        for e in all_engines(&g).unwrap() {
            let batched = hill_climb(&e, &g, &x, (&lo, &hi), 0, &cfg).unwrap();
            let (xs, ls) = one_at_a_time(&e, &g, &x, (&lo, &hi), &cfg);
            assert_eq!(
                (batched.x, batched.loss),
                (xs, ls),
                "seed {seed} {}",
                e.kind()
            );
            crossed += (ls < 0.0) as usize;
        }
    }
    assert!(
        crossed > 0 && crossed < 18,
        "{crossed} of 18 climbs crossed"
    );
}

#[test]
fn gap_shifts_only_the_label_logit() {
    let g = random_relu_mlp(&[6, 8, 3], 1);
    let gapped = with_gap(&g, 2, 0.25).unwrap();
    let x = vec![0.5; 6];
    let y = nncert_model::reference_forward(&g, &x).unwrap();
    let yg = nncert_model::reference_forward(&gapped, &x).unwrap();
    assert_eq!(y[0], yg[0]);
    assert_eq!(y[1], yg[1]);
    assert!((y[2] - 0.25 - yg[2]).abs() < 1e-6);
    assert!((cw_loss(&y, 2) - 0.25 - cw_loss(&yg, 2)).abs() < 1e-6);
}

/// The folded bias subtracts at most τ, by less than one float32 step: the
/// smallest float32 at or above b − τ, so the gap never undoes a claim.
#[test]
fn gap_bias_is_rounded_up() {
    let g = random_relu_mlp(&[6, 8, 3], 1);
    let Op::Linear { bias, .. } = &g.nodes[g.output].op else {
        panic!("a final linear layer");
    };
    let b = bias.as_ref().map_or(0.0, |b| b.data[1]);
    let mut r = StdRng::seed_from_u64(3);
    let mut rounded = 0;
    for _ in 0..200 {
        let tau: f64 = r.gen_range(0.5..8.0);
        let gapped = with_gap(&g, 1, tau).unwrap();
        let Op::Linear { bias: Some(bg), .. } = &gapped.nodes[g.output].op else {
            unreachable!()
        };
        let target = b as f64 - tau;
        let folded = bg.data[1];
        assert!(folded as f64 >= target && (folded.next_down() as f64) < target);
        rounded += (target as f32 != folded) as usize;
    }
    assert!(rounded > 0, "no τ needed rounding up");
}

/// End to end against sound mode: wherever it certifies x0 (with or without
/// the gap), no engine's climb from the MILP's worst point crosses the
/// boundary; against the MILP the pipeline reaches a quasi-adversarial point
/// inside the float32 box. Seeds whose brightness search finds nothing are
/// skipped, but most must run.
#[test]
fn sound_certificates_survive_the_attack() {
    let eps = 0.05;
    let mut ran = 0;
    for seed in 0..6 {
        let (g, x, label) = seed_case(seed);
        let engines = all_engines(&g).unwrap();
        let milp = milp_verifier(eps);
        let sound = PipelineVerifier::sound(eps, 5.0, &engines);
        let bab = PipelineVerifier::real(eps, 5.0);
        let cfg = AttackConfig {
            climb: ClimbConfig {
                sweeps: 200,
                ..ClimbConfig::default()
            },
            ..AttackConfig::paper(eps)
        };
        let runs: [(&str, &dyn Verifier, Finder); 3] = [
            ("milp", &milp, Finder::Milp(&milp)),
            ("bab", &bab, Finder::Bab(&bab)),
            ("sound", &sound, Finder::Bab(&bab)),
        ];
        for (name, v, finder) in runs {
            let mut rep =
                attack_seed((name, v), finder, &g, &engines, 0, &x, label, &cfg, &|_| {}).unwrap();
            if !rep.quasi_adversarial() {
                continue;
            }
            ran += 1;
            audit(&mut rep, &sound, &g).unwrap();
            assert_eq!(rep.sound_violations(), 0, "seed {seed} against {name}");
            let x0 = rep.x0.as_ref().unwrap();
            let (lo, hi) = nextafter_box(x0, eps);
            for c in rep
                .engines
                .iter()
                .flat_map(|e| e.plain.iter().chain(&e.gap))
            {
                assert!(c
                    .x_adv
                    .iter()
                    .zip(&lo)
                    .zip(&hi)
                    .all(|((v, l), h)| l <= v && v <= h));
                // Real arithmetic keeps the label wherever a climb went.
                assert!(c.reference_cw_loss > 0.0, "seed {seed} against {name}");
            }
            if name == "sound" {
                assert_eq!(rep.claim_x0.as_deref(), Some("robust"));
                assert!(
                    rep.engines.iter().all(|e| !e.success && !e.gap_success),
                    "seed {seed}"
                );
            }
            // The plain verifier's claim on x0 is what the search converged to.
            if name != "sound" {
                assert_eq!(v.claim(&g, x0, label).unwrap(), Claim::Robust);
            }
        }
    }
    assert!(
        ran >= 9,
        "only {ran} of 18 runs reached a quasi-adversarial point"
    );
}

/// A random MLP, a random input in [0.2, 0.9] and the reference's label there.
fn seed_case(seed: u64) -> (Graph, Vec<f32>, usize) {
    let g = random_relu_mlp(&[12, 16, 12, 4], seed);
    let mut r = StdRng::seed_from_u64(100 + seed);
    let x: Vec<f32> = (0..12).map(|_| r.gen_range(0.2..0.9)).collect();
    let y = nncert_model::reference_forward(&g, &x.iter().map(|&v| v as f64).collect::<Vec<_>>())
        .unwrap();
    let label = (0..4).max_by(|&a, &b| y[a].total_cmp(&y[b])).unwrap();
    (g, x, label)
}

/// Without step 1, x0 is the seed itself, its margin far beyond float32's
/// reach: only the gap network is climbed, from the MILP's worst point, and
/// wherever a climb ends real arithmetic still keeps the label.
#[test]
fn without_dimming_only_the_gap_network_is_climbed() {
    let eps = 0.05;
    let mut gapped = 0;
    for seed in 0..4 {
        let (g, x, label) = seed_case(seed);
        let engines = all_engines(&g).unwrap();
        let milp = milp_verifier(eps);
        let cfg = AttackConfig {
            dim: false,
            climb: ClimbConfig {
                sweeps: 100,
                ..ClimbConfig::default()
            },
            ..AttackConfig::paper(eps)
        };
        if milp.claim(&g, &x, label).unwrap() != Claim::Robust {
            continue;
        }
        let rep = attack_seed(
            ("milp", &milp),
            Finder::Milp(&milp),
            &g,
            &engines,
            0,
            &x,
            label,
            &cfg,
            &|_| {},
        )
        .unwrap();
        assert_eq!((rep.alpha, rep.x0.as_deref()), (None, Some(&x[..])));
        assert_eq!(rep.status, "quasi_adversarial", "seed {seed}");
        let tau0 = rep.tau0.unwrap();
        assert!(tau0 > 0.0 && rep.tau1.unwrap() - tau0 <= cfg.tau_width);
        let climbed = rep.claim_x0_gap.as_deref() == Some("robust");
        for e in &rep.engines {
            assert!(e.plain.is_none() && !e.success);
            let gap = e.gap.as_ref();
            assert_eq!(gap.is_some(), climbed, "seed {seed} {}", e.engine);
            assert!(gap.is_none_or(|c| c.reference_cw_loss > 0.0), "seed {seed}");
        }
        gapped += climbed as usize;
    }
    assert!(gapped >= 2, "only {gapped} gap networks were climbed");
}

/// §5: on the 13×13 boundary network, real-arithmetic CROWN certifies label
/// 1 while float32 engines, climbing from x0 + ε·sign(W_equiv), find inputs
/// of the box labelled 0; sound mode does not certify.
#[test]
fn real_arithmetic_crown_is_fooled_and_sound_mode_is_not() {
    use nncert_bounds::Soundness;
    use nncert_fpattack::incomplete::{attack, boundary_network, crown_certifies, LABEL};
    let mut broken = 0;
    for seed in 0..8 {
        let n = boundary_network(seed, 0.05);
        assert!(crown_certifies(&n, Soundness::Real).unwrap(), "seed {seed}");
        assert!(
            !crown_certifies(&n, Soundness::Float32).unwrap(),
            "seed {seed}"
        );
        let engines = all_engines(&n.graph).unwrap();
        let cfg = ClimbConfig {
            sweeps: 1000,
            seed,
            ..ClimbConfig::default()
        };
        let (lo, hi) = nextafter_box(&n.x0, n.eps);
        for a in attack(&n, &engines, &cfg).unwrap() {
            // In real arithmetic the label holds wherever the climb went.
            assert!(
                a.reference_loss > 0.0,
                "{}: reference {}",
                a.engine,
                a.reference_loss
            );
            eprintln!("seed {seed} {}: loss {:e}", a.engine, a.loss);
            if let Some(x) = &a.adversarial {
                assert!(x
                    .iter()
                    .zip(lo.iter().zip(&hi))
                    .all(|(v, (l, h))| l <= v && v <= h));
                let e = engines
                    .iter()
                    .find(|e| e.kind().to_string() == a.engine)
                    .unwrap();
                let y = e.run(&n.graph, x).unwrap();
                assert!(
                    y[0] >= y[LABEL],
                    "{}: re-run does not flip the label",
                    a.engine
                );
                broken += 1;
            }
        }
    }
    assert!(broken > 0, "no float32 engine was fooled");
}
