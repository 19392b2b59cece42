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
    /// and on every engine (all re-executed here).
    pub fn confirm(&self, p: &Property, candidates: &[Vec<f32>]) -> Result<Option<Counterexample>> {
        if candidates.is_empty() {
            return Ok(None);
        }
        let g = self.executed;
        let x: Vec<f32> = candidates.concat();
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let reference = nncert_model::reference_forward(g, &x64)?;
        let outputs: Vec<Vec<f32>> = self
            .engines
            .iter()
            .map(|e| e.run(g, &x))
            .collect::<std::result::Result<_, _>>()?;
        let (ni, no) = (g.input_len(), g.output_len());
        for k in 0..candidates.len() {
            let xk = &x64[k * ni..][..ni];
            let yk = &reference[k * no..][..no];
            let violated_by = |y: &[f32]| {
                let y: Vec<f64> = y[k * no..][..no].iter().map(|&v| v as f64).collect();
                p.is_counterexample(xk, &y)
            };
            if p.is_counterexample(xk, yk) && outputs.iter().all(|y| violated_by(y)) {
                return Ok(Some(Counterexample {
                    x: xk.to_vec(),
                    y: yk.to_vec(),
                }));
            }
        }
        Ok(None)
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
