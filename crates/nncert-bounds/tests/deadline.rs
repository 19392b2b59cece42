//! Long bound computations stop soon after their deadline.

use nncert_bounds::{propagate, BoundConfig, BoundsError, Method, Region, Soundness};
use nncert_model::testing::{flatten_then_linear, random_tensor};
use nncert_model::{Deadline, Graph, Op, Window2d};
use nncert_spec::{InputSet, Norm, NormBall};
use rand::SeedableRng;
use std::time::{Duration, Instant};

/// Four wide convolutions: CROWN back-substitution here takes seconds.
fn wide_conv_net() -> Graph {
    let mut r = rand::rngs::StdRng::seed_from_u64(1);
    let mut g = Graph::with_input("x", vec![1, 1, 28, 28]);
    let w = Window2d {
        kernel: [3, 3],
        stride: [1, 1],
        pads: [1, 1, 1, 1],
        dilation: [1, 1],
    };
    let mut id = 0;
    for (k, ic) in [(0, 1), (1, 32), (2, 32), (3, 32)] {
        let conv = Op::Conv2d {
            weight: random_tensor(&mut r, &[32, ic, 3, 3], 0.5),
            bias: Some(random_tensor(&mut r, &[32], 0.1)),
            window: w,
            groups: 1,
        };
        id = g.push(&format!("conv{k}"), conv, vec![id]).unwrap();
        id = g.push(&format!("relu{k}"), Op::Relu, vec![id]).unwrap();
    }
    flatten_then_linear(&mut g, &mut r, id, 10, 0.1);
    g
}

#[test]
fn crown_stops_soon_after_its_deadline() {
    let g = wide_conv_net();
    let set = InputSet::Ball(NormBall {
        center: vec![0.5; 784],
        eps: 0.3,
        norm: Norm::Linf,
        domain: (0.0, 1.0),
    });
    let region = Region::of(&set, Soundness::Float32);
    let cfg = BoundConfig {
        deadline: Deadline::after(Duration::from_millis(200)),
        ..BoundConfig::new(Method::Crown, Soundness::Float32)
    };
    let t = Instant::now();
    let r = propagate(&g, &region, &cfg);
    let took = t.elapsed();
    assert!(
        matches!(r, Err(BoundsError::Timeout)),
        "expected a timeout, got {:?}",
        r.map(|_| ())
    );
    assert!(
        took < Duration::from_secs(3),
        "stopped {took:?} after a 200 ms deadline"
    );
}
