//! Every float32 engine agrees with the f64 reference on random networks that
//! use every op; the report shows how far each engine's numerics drift.

use nncert_exec::{all_engines, Engine, EngineKind};
use nncert_model::testing::{
    random_conv_net, random_inputs, random_residual_net, relative_discrepancy,
};
use nncert_model::{reference_forward, Graph};

fn check(graph: &Graph, seed: u64) -> Vec<(EngineKind, f64)> {
    let x = random_inputs(graph, 5, seed);
    let want = reference_forward(graph, &x.iter().map(|&v| v as f64).collect::<Vec<_>>()).unwrap();
    all_engines(graph)
        .unwrap()
        .iter()
        .map(|e: &Engine| {
            let got: Vec<f64> = e
                .run(graph, &x)
                .unwrap()
                .iter()
                .map(|&v| v as f64)
                .collect();
            assert_eq!(got.len(), want.len());
            (e.kind(), relative_discrepancy(&got, &want))
        })
        .collect()
}

#[test]
fn engines_match_reference_on_random_conv_nets() {
    for seed in 0..8 {
        for (kind, d) in check(&random_conv_net(seed), seed) {
            eprintln!("conv net {seed}: {kind} rel. discrepancy {d:.2e}");
            assert!(d < 1e-4, "{kind} differs from the reference by {d}");
        }
    }
}

#[test]
fn engines_match_reference_on_random_residual_nets() {
    for seed in 0..8 {
        for (kind, d) in check(&random_residual_net(seed), seed) {
            eprintln!("residual net {seed}: {kind} rel. discrepancy {d:.2e}");
            assert!(d < 1e-4, "{kind} differs from the reference by {d}");
        }
    }
}

/// Every engine gives each row of a batch the bits it gives that row alone
/// (the fp attack's hill climbing evaluates its candidates in batches).
#[test]
fn batched_run_equals_one_by_one() {
    let g = random_conv_net(3);
    let per = g.input_len();
    let mut engines = all_engines(&g).unwrap();
    engines.push(Engine::new(EngineKind::Winograd, &g).unwrap());
    for n in [2, 4, 5, 17, 33] {
        let x = random_inputs(&g, n, 9 + n as u64);
        for e in &engines {
            let batched = e.run(&g, &x).unwrap();
            let single: Vec<f32> = x.chunks(per).flat_map(|s| e.run(&g, s).unwrap()).collect();
            assert_eq!(batched, single, "{} batching {n} changes results", e.kind());
        }
    }
}

#[test]
fn wrong_input_size_is_an_error() {
    let g = random_conv_net(1);
    let e = Engine::new(EngineKind::Direct, &g).unwrap();
    let err = e.run(&g, &[0.0; 5]).unwrap_err().to_string();
    assert!(err.contains("expects"), "{err}");
}
