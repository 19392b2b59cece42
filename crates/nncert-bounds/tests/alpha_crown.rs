//! α-CROWN against CROWN: never looser (it starts from CROWN's slopes and
//! keeps the best iterate), strictly tighter where unstable ReLUs leave room,
//! and still below the true minimum.

use nncert_bounds::{lower_bounds, propagate, BoundConfig, Method, Region, Soundness};
use nncert_model::testing::random_relu_mlp;
use nncert_model::{reference_forward, Graph};
use nncert_spec::{InputSet, Norm, NormBall};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn bounds(
    g: &Graph,
    set: &InputSet,
    spec: &[f64],
    method: Method,
    soundness: Soundness,
) -> Vec<f64> {
    let cfg = BoundConfig::new(method, soundness);
    let region = Region::of(set, soundness);
    let nb = propagate(g, &region, &cfg).unwrap();
    lower_bounds(g, &nb, &region, &cfg, spec, spec.len() / g.output_len()).unwrap()
}

#[test]
fn alpha_crown_is_never_looser_than_crown_and_often_tighter() {
    let mut tighter = 0;
    let mut rows = 0;
    for seed in 0..10 {
        let g = random_relu_mlp(&[4, 12, 12, 3], seed);
        let mut r = StdRng::seed_from_u64(seed + 50);
        for norm in [Norm::Linf, Norm::L2] {
            let set = InputSet::Ball(NormBall {
                center: (0..4).map(|_| r.gen_range(0.3..0.7)).collect(),
                eps: 0.3,
                norm,
                domain: (0.0, 1.0),
            });
            let spec: Vec<f64> = (0..9).map(|_| r.gen_range(-1.0..1.0)).collect();
            for soundness in [Soundness::Real, Soundness::Float32] {
                let crown = bounds(&g, &set, &spec, Method::Crown, soundness);
                let alpha = bounds(&g, &set, &spec, Method::AlphaCrown, soundness);
                for (a, c) in alpha.iter().zip(&crown) {
                    assert!(
                        a >= c,
                        "seed {seed} {norm:?}: α-CROWN {a} looser than CROWN {c}"
                    );
                    tighter += (*a > c + 1e-6 * c.abs().max(1.0)) as usize;
                    rows += 1;
                }
            }
        }
    }
    // The optimisation must actually move: most rows of these unstable nets improve.
    assert!(
        tighter * 2 > rows,
        "α-CROWN tightened only {tighter} of {rows} rows"
    );
}

#[test]
fn alpha_crown_stays_below_the_sampled_minimum() {
    for seed in 0..10 {
        let g = random_relu_mlp(&[4, 12, 12, 3], seed);
        let mut r = StdRng::seed_from_u64(seed + 90);
        let center: Vec<f64> = (0..4).map(|_| r.gen_range(0.3..0.7)).collect();
        let eps = 0.3;
        let set = InputSet::Ball(NormBall {
            center: center.clone(),
            eps,
            norm: Norm::Linf,
            domain: (0.0, 1.0),
        });
        let spec: Vec<f64> = (0..3).map(|_| r.gen_range(-1.0..1.0)).collect();
        let lb = bounds(&g, &set, &spec, Method::AlphaCrown, Soundness::Real)[0];
        let points: Vec<f64> = (0..20_000 * 4)
            .map(|k| {
                let c = center[k % 4];
                r.gen_range((c - eps).max(0.0)..=(c + eps).min(1.0))
            })
            .collect();
        let y = reference_forward(&g, &points).unwrap();
        let min = y
            .chunks(3)
            .map(|o| o.iter().zip(&spec).map(|(a, b)| a * b).sum::<f64>())
            .fold(f64::INFINITY, f64::min);
        assert!(
            lb <= min + 1e-9,
            "seed {seed}: bound {lb} above a sampled value {min}"
        );
    }
}
