//! `nncert vnncomp MODEL SPEC --timeout S --out FILE`: the VNN-COMP contract.
//!
//! Answers `sat` when a probe (box centre, corners, random points) is a
//! counterexample on the f64 reference and every float32 engine, `unsat` when
//! sound-mode bounds exclude the unsafe outputs — by CROWN then α-CROWN on
//! the whole box, or, for inputs of at most 16 dimensions, by input-space
//! branch and bound (`input_split`) — otherwise `unknown` (ReLU branching:
//! issue 4), or `timeout` once the deadline passes.

use super::certify::prepare;
use super::input_split::{prove_by_splitting, Models, SplitOutcome, MAX_SPLIT_DIM};
use crate::{existing, CliResult, UserError};
use clap::Args;
use nncert_bounds::{lower_bounds, propagate, BoundConfig, Method, Region, Soundness};
use nncert_exec::{all_engines, Engine};
use nncert_model::{Deadline, Graph};
use nncert_spec::{read_vnnlib, write_atomically, InputBox, Property, VnnResult};
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

#[derive(Args)]
pub struct VnncompArgs {
    /// ONNX model (.onnx or .onnx.gz).
    model: PathBuf,
    /// VNN-LIB specification of the unsafe set.
    spec: PathBuf,
    /// Wall-clock limit in seconds for the whole run.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Result file (first line: sat/unsat/timeout/unknown/error).
    #[arg(long)]
    out: PathBuf,
    /// Seed of the random probes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Probes per evaluation batch (the deadline is checked between batches).
const BATCH: usize = 64;
/// Inputs with at most this many dimensions get every corner probed.
const ALL_CORNERS_DIM: usize = 12;
const RANDOM_PROBES: usize = 1024;

pub fn run(a: VnncompArgs) -> CliResult {
    let deadline = Deadline::after_secs(a.timeout);
    if !(a.timeout.is_finite() && a.timeout >= 0.0) {
        return Err(UserError(format!(
            "--timeout {}: expected a non-negative number of seconds",
            a.timeout
        )));
    }
    let result = decide(&a, deadline);
    let text = match &result {
        Ok(r) => r.render(),
        Err(_) => VnnResult::Error.render(),
    };
    write_atomically(&a.out, &text)
        .map_err(|e| UserError(format!("cannot write {}: {e}", a.out.display())))?;
    let r = result?;
    println!("{}", r.keyword());
    Ok(())
}

fn decide(a: &VnncompArgs, deadline: Deadline) -> CliResult<VnnResult> {
    let g = nncert_model::load_model(existing(&a.model)?)?;
    let p = read_vnnlib(existing(&a.spec)?)?;
    if (p.num_inputs, p.num_outputs) != (g.input_len(), g.output_len()) {
        return Err(UserError(format!(
            "the spec has {} inputs and {} outputs, the model {} and {}",
            p.num_inputs,
            p.num_outputs,
            g.input_len(),
            g.output_len()
        )));
    }
    if deadline.expired() {
        return Ok(VnnResult::Timeout);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    // Built once: the Toeplitz engine's dense conv matrices are costly.
    let engines = all_engines(&g)?;
    for case in &p.cases {
        let b = case.input.bounding_box();
        let probes = probe_points(&b, &mut rng);
        for chunk in probes.chunks(BATCH) {
            if deadline.expired() {
                return Ok(VnnResult::Timeout);
            }
            if let Some(r) = counterexample(&g, &engines, &p, chunk)? {
                return Ok(r);
            }
        }
    }
    if g.input_len() <= MAX_SPLIT_DIM {
        return by_splitting(&g, &engines, &p, deadline);
    }
    match proved_unsat(&g, &p, deadline) {
        Ok(true) => Ok(VnnResult::Unsat),
        Ok(false) => Ok(VnnResult::Unknown),
        Err(nncert_bounds::BoundsError::Timeout) => Ok(VnnResult::Timeout),
        Err(e) => Err(e.into()),
    }
}

/// Every case by input splitting: the first counterexample wins; any case
/// left open makes the answer `unknown`.
fn by_splitting(
    g: &Graph,
    engines: &[Engine],
    p: &Property,
    deadline: Deadline,
) -> CliResult<VnnResult> {
    let cg = prepare(g, Soundness::Float32)?;
    let cfg = BoundConfig {
        deadline,
        ..BoundConfig::new(Method::Crown, Soundness::Float32)
    };
    let m = Models {
        executed: g,
        bounded: &cg,
        engines,
    };
    let mut open = false;
    for case in &p.cases {
        match prove_by_splitting(&m, p, case, &cfg, deadline)? {
            SplitOutcome::Proved => {}
            SplitOutcome::Counterexample(r) => return Ok(r),
            SplitOutcome::Timeout => return Ok(VnnResult::Timeout),
            SplitOutcome::Unknown => open = true,
        }
    }
    Ok(if open {
        VnnResult::Unknown
    } else {
        VnnResult::Unsat
    })
}

/// Whether sound-mode CROWN (then α-CROWN where CROWN falls short) shows
/// every case's unsafe region unreachable: in each conjunction some
/// constraint `c·y ≤ d` has a lower bound above d.
fn proved_unsat(
    g: &Graph,
    p: &Property,
    deadline: Deadline,
) -> Result<bool, nncert_bounds::BoundsError> {
    let cg = prepare(g, Soundness::Float32).map_err(|_| nncert_bounds::BoundsError::Timeout)?;
    let cfg = BoundConfig {
        deadline,
        ..BoundConfig::new(Method::Crown, Soundness::Float32)
    };
    for case in &p.cases {
        let region = Region::of(&case.input, cfg.soundness);
        let nb = propagate(&cg, &region, &cfg)?;
        for term in &case.unsafe_output.terms {
            let spec: Vec<f64> = term.iter().flat_map(|c| c.coeffs.clone()).collect();
            let excluded = |cfg: &BoundConfig| -> Result<bool, nncert_bounds::BoundsError> {
                let lb = lower_bounds(&cg, &nb, &region, cfg, &spec, term.len())?;
                Ok(term.iter().zip(&lb).any(|(c, l)| *l > c.rhs))
            };
            let alpha = BoundConfig {
                method: Method::AlphaCrown,
                ..cfg
            };
            if !excluded(&cfg)? && !excluded(&alpha)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The float32 value nearest to `v` inside `[lo, hi]`, if one exists.
pub(super) fn f32_inside(v: f64, lo: f64, hi: f64) -> Option<f32> {
    let mut f = v as f32;
    if (f as f64) < lo {
        f = f.next_up();
    } else if (f as f64) > hi {
        f = f.next_down();
    }
    ((f as f64) >= lo && (f as f64) <= hi).then_some(f)
}

/// Centre, corners (all when few, else random ones) and uniform random points,
/// each rounded to a float32 point inside the box.
fn probe_points(b: &InputBox, rng: &mut impl Rng) -> Vec<Vec<f32>> {
    let d = b.dim();
    let mut pts: Vec<Vec<f64>> = vec![b.center()];
    let corner = |bits: &dyn Fn(usize) -> bool| {
        (0..d)
            .map(|i| if bits(i) { b.hi[i] } else { b.lo[i] })
            .collect::<Vec<f64>>()
    };
    if d <= ALL_CORNERS_DIM {
        pts.extend((0..1usize << d).map(|m| corner(&|i| m >> i & 1 == 1)));
    } else {
        pts.extend((0..RANDOM_PROBES / 2).map(|_| {
            let bits: Vec<bool> = (0..d).map(|_| rng.gen()).collect();
            corner(&|i| bits[i])
        }));
    }
    pts.extend((0..RANDOM_PROBES / 2).map(|_| {
        (0..d)
            .map(|i| b.lo[i] + (b.hi[i] - b.lo[i]) * rng.gen::<f64>())
            .collect()
    }));
    pts.iter()
        .filter_map(|p| {
            p.iter()
                .enumerate()
                .map(|(i, &v)| f32_inside(v, b.lo[i], b.hi[i]))
                .collect::<Option<Vec<f32>>>()
        })
        .collect()
}

/// The first probe that violates the property on the f64 reference and on
/// every float32 engine (re-executed here), as a `sat` result.
pub(super) fn counterexample(
    g: &Graph,
    engines: &[Engine],
    p: &Property,
    probes: &[Vec<f32>],
) -> CliResult<Option<VnnResult>> {
    let x: Vec<f32> = probes.concat();
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let reference = nncert_model::reference_forward(g, &x64)?;
    let engines: Vec<Vec<f32>> = engines
        .iter()
        .map(|e| e.run(g, &x))
        .collect::<Result<_, _>>()?;
    let (ni, no) = (g.input_len(), g.output_len());
    for k in 0..probes.len() {
        let xk = &x64[k * ni..(k + 1) * ni];
        let yk = &reference[k * no..(k + 1) * no];
        let everywhere = p.is_counterexample(xk, yk)
            && engines.iter().all(|y| {
                p.is_counterexample(
                    xk,
                    &y[k * no..(k + 1) * no]
                        .iter()
                        .map(|&v| v as f64)
                        .collect::<Vec<_>>(),
                )
            });
        if everywhere {
            return Ok(Some(VnnResult::Sat {
                x: xk.to_vec(),
                y: yk.to_vec(),
            }));
        }
    }
    Ok(None)
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

    #[test]
    fn probes_cover_centre_and_all_corners_in_low_dimension() {
        let b = InputBox {
            lo: vec![0.0, -1.0],
            hi: vec![1.0, 1.0],
        };
        let pts = probe_points(&b, &mut rand::rngs::StdRng::seed_from_u64(1));
        assert_eq!(&pts[0], &vec![0.5f32, 0.0]);
        for corner in [[0.0f32, -1.0], [1.0, -1.0], [0.0, 1.0], [1.0, 1.0]] {
            assert!(pts.contains(&corner.to_vec()));
        }
        assert!(pts
            .iter()
            .all(|p| b.contains(&p.iter().map(|&v| v as f64).collect::<Vec<_>>())));
    }
}
