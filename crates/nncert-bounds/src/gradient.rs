//! Values and input gradients of linear functions of the output at a point,
//! for attacks: back-substitution over the zero-width box {x}, where every
//! relaxation is the exact local linearisation (ReLU, max pooling) or the
//! tangent (S-shaped activations), so the coefficients that reach the input
//! are the gradient (a subgradient at ReLU kinks).

use crate::interval::{Interval, Region};
use crate::ops::Gemm64;
use crate::propagate::{backsubstitute, NetworkBounds, Trace};
use crate::{BoundConfig, BoundsError, Method, Soundness};
use nncert_model::forward::run_all;
use nncert_model::Graph;

/// `spec · y(x)` per row (`rows` rows) and its gradient `[rows, n]` in x.
pub fn spec_gradient(
    g: &Graph,
    x: &[f64],
    spec: &[f64],
    rows: usize,
) -> Result<(Vec<f64>, Vec<f64>), BoundsError> {
    let region = Region {
        bbox: Interval {
            lo: x.to_vec(),
            hi: x.to_vec(),
        },
        ball: None,
    };
    // On a point, the intervals are the f64 forward pass.
    if x.len() != g.input_len() {
        return Err(BoundsError::Dimension {
            got: x.len(),
            expected: g.input_len(),
        });
    }
    let forward = run_all(g, &Gemm64, x)?;
    let nb = NetworkBounds {
        nodes: forward
            .into_iter()
            .map(|v| Interval {
                lo: v.clone(),
                hi: v,
            })
            .collect(),
        err: vec![Vec::new(); g.nodes.len()],
        symbolic_output: None,
    };
    let y = &nb.nodes[g.output].lo;
    let values = spec
        .chunks(y.len())
        .take(rows)
        .map(|row| row.iter().zip(y).map(|(c, v)| c * v).sum())
        .collect();
    let mut trace = Trace {
        coeffs: Some(vec![None; g.output + 1]),
        ..Trace::default()
    };
    let cfg = BoundConfig::new(Method::Crown, Soundness::Real);
    backsubstitute(g, g.output, &nb, &region, &cfg, spec, rows, &mut trace)?;
    let grad = trace
        .coeffs
        .and_then(|mut c| c[g.input].take())
        .unwrap_or_else(|| vec![0.0; rows * x.len()]);
    Ok((values, grad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nncert_model::passes::{canonicalize, PassOptions};
    use nncert_model::testing::{random_conv_net, random_residual_net};
    use rand::{Rng, SeedableRng};

    /// The gradient matches central finite differences of the f64 forward
    /// pass on nets with every op (ReLU, leaky ReLU, max/avg pooling, pad,
    /// batch norm, sigmoid, tanh, arctan, residual add, concat, transpose).
    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for seed in 0..4 {
            for net in [random_conv_net(seed), random_residual_net(seed)] {
                let g = canonicalize(&net, PassOptions::default()).unwrap().0;
                let (n, m) = (g.input_len(), g.output_len());
                let x: Vec<f64> = (0..n).map(|_| rng.gen_range(0.0..1.0)).collect();
                let spec: Vec<f64> = (0..2 * m).map(|_| rng.gen_range(-1.0..1.0)).collect();
                let (v, grad) = spec_gradient(&g, &x, &spec, 2).unwrap();
                let f = |x: &[f64], r: usize| -> f64 {
                    let y = nncert_model::reference_forward(&g, x).unwrap();
                    spec[r * m..][..m].iter().zip(&y).map(|(c, v)| c * v).sum()
                };
                for r in 0..2 {
                    assert!((v[r] - f(&x, r)).abs() < 1e-12 * (1.0 + v[r].abs()));
                    for _ in 0..12 {
                        let i = rng.gen_range(0..n);
                        let h = 1e-6;
                        let (mut xp, mut xm) = (x.clone(), x.clone());
                        xp[i] += h;
                        xm[i] -= h;
                        let fd = (f(&xp, r) - f(&xm, r)) / (2.0 * h);
                        let gi = grad[r * n + i];
                        assert!(
                            (fd - gi).abs() < 1e-5 * (1.0 + fd.abs()),
                            "seed {seed} row {r} input {i}: finite difference {fd}, gradient {gi}"
                        );
                    }
                }
            }
        }
    }
}
