//! Counterexamples are re-executed before they are reported: on the f64
//! reference and on every float32 engine, each must violate the property.

use crate::Result;
use nncert_exec::Engine;
use nncert_model::Graph;
use nncert_spec::{InputBox, Property};

/// The models as executed and as bounded (sound mode analyses the latter).
pub struct Models<'a> {
    pub executed: &'a Graph,
    pub bounded: &'a Graph,
    /// The float32 engines a counterexample must fool (all shipped ones by default).
    pub engines: &'a [Engine],
}

/// An input and the f64 reference output, violating the property on every engine.
#[derive(Clone, Debug)]
pub struct Counterexample {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

impl Models<'_> {
    /// The first candidate that is a counterexample on the f64 reference
    /// and on every engine (all re-executed here). The reference runs
    /// first and each engine only on the candidates still violating: most
    /// candidates (branch and bound's minimisers on a true property) fail
    /// on the reference, and a float32 engine such as the dense Toeplitz
    /// one can cost far more than the reference.
    pub fn confirm(&self, p: &Property, candidates: &[Vec<f32>]) -> Result<Option<Counterexample>> {
        if candidates.is_empty() {
            return Ok(None);
        }
        let g = self.executed;
        let (ni, no) = (g.input_len(), g.output_len());
        let x64: Vec<f64> = candidates.iter().flatten().map(|&v| v as f64).collect();
        let reference = nncert_model::reference_forward(g, &x64)?;
        let mut live: Vec<usize> = (0..candidates.len())
            .filter(|&k| p.is_counterexample(&x64[k * ni..][..ni], &reference[k * no..][..no]))
            .collect();
        for engine in self.engines {
            if live.is_empty() {
                break;
            }
            let x: Vec<f32> = live.iter().flat_map(|&k| candidates[k].clone()).collect();
            let y = engine.run(g, &x)?;
            let mut still = Vec::with_capacity(live.len());
            for (j, &k) in live.iter().enumerate() {
                let yj: Vec<f64> = y[j * no..][..no].iter().map(|&v| v as f64).collect();
                if p.is_counterexample(&x64[k * ni..][..ni], &yj) {
                    still.push(k);
                }
            }
            live = still;
        }
        Ok(live.first().map(|&k| Counterexample {
            x: x64[k * ni..][..ni].to_vec(),
            y: reference[k * no..][..no].to_vec(),
        }))
    }
}

/// The float32 value nearest to `v` inside `[lo, hi]`, if one exists.
pub fn f32_inside(v: f64, lo: f64, hi: f64) -> Option<f32> {
    let mut f = v as f32;
    if (f as f64) < lo {
        f = f.next_up();
    } else if (f as f64) > hi {
        f = f.next_down();
    }
    ((f as f64) >= lo && (f as f64) <= hi).then_some(f)
}

/// `x` rounded coordinatewise to float32 values inside the box, if each has one.
pub fn f32_point_inside(x: &[f64], b: &InputBox) -> Option<Vec<f32>> {
    (0..x.len())
        .map(|i| f32_inside(x[i], b.lo[i], b.hi[i]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nncert_model::testing::random_relu_mlp;
    use nncert_spec::{Case, InputSet, LinearConstraint, OutputDnf};

    /// `y ≤ rhs` over [0, 1]² is the unsafe set.
    fn at_most(rhs: f64) -> Property {
        Property {
            num_inputs: 2,
            num_outputs: 1,
            cases: vec![Case {
                input: InputSet::Box(InputBox {
                    lo: vec![0.0; 2],
                    hi: vec![1.0; 2],
                }),
                unsafe_output: OutputDnf {
                    terms: vec![vec![LinearConstraint {
                        coeffs: vec![1.0],
                        rhs,
                    }]],
                },
            }],
        }
    }

    /// The first candidate violating on the reference and on every engine
    /// is returned; one that fools the reference but not an engine is not.
    #[test]
    fn confirm_needs_the_reference_and_every_engine() {
        let mut checked_boundary = 0;
        for seed in 0..20 {
            let g = random_relu_mlp(&[2, 8, 1], seed);
            let engines = nncert_exec::all_engines(&g).unwrap();
            let m = Models {
                executed: &g,
                bounded: &g,
                engines: &engines,
            };
            let xs: Vec<Vec<f32>> = vec![vec![0.1, 0.9], vec![0.7, 0.3], vec![0.45, 0.55]];
            let y = |x: &[f32]| {
                let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                nncert_model::reference_forward(&g, &x64).unwrap()[0]
            };
            let ys: Vec<f64> = xs.iter().map(|x| y(x)).collect();
            let (lo, hi) = (
                ys.iter().cloned().fold(f64::INFINITY, f64::min),
                ys.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            );
            if hi - lo < 1e-3 {
                continue;
            }
            assert!(m.confirm(&at_most(hi + 1.0), &[]).unwrap().is_none());
            assert!(m.confirm(&at_most(lo - 1.0), &xs).unwrap().is_none());
            // Every candidate violates by a wide margin: the first one is returned.
            let ce = m.confirm(&at_most(hi + 1.0), &xs).unwrap().unwrap();
            assert_eq!(ce.x, xs[0].iter().map(|&v| v as f64).collect::<Vec<_>>());
            assert_eq!(ce.y, vec![ys[0]]);
            // Only the lowest one violates.
            let k = ys.iter().position(|&v| v == lo).unwrap();
            let ce = m
                .confirm(
                    &at_most(
                        (lo + ys.iter().filter(|&&v| v > lo).cloned().fold(hi, f64::min)) / 2.0,
                    ),
                    &xs,
                )
                .unwrap()
                .unwrap();
            assert_eq!(ce.y, vec![ys[k]]);
            // At the reference's own value: confirmed exactly when no engine's
            // float32 output lies above it.
            let rhs = ys[0];
            let above = engines
                .iter()
                .any(|e| e.run(&g, &xs[0]).unwrap()[0] as f64 > rhs);
            let confirmed = m.confirm(&at_most(rhs), &xs[..1]).unwrap();
            assert_eq!(confirmed.is_some(), !above, "seed {seed}");
            checked_boundary += usize::from(above);
        }
        assert!(
            checked_boundary > 0,
            "no engine ever rounded above the reference"
        );
    }

    #[test]
    fn f32_inside_stays_in_the_box() {
        let lo = 0.1f64;
        let f = f32_inside(lo, lo, 0.2).unwrap();
        assert!(f as f64 >= lo && (f.next_down() as f64) < lo);
        // No float32 strictly between two neighbouring f64 values near 1.
        let x = 1.0f64 + f64::EPSILON;
        assert_eq!(f32_inside(x, x, x + f64::EPSILON), None);
        assert_eq!(f32_inside(0.5, 0.5, 0.5), Some(0.5));
    }
}
