//! `nncert vnncomp MODEL SPEC --timeout S --out FILE`: the VNN-COMP contract.
//!
//! Answers `sat` when a probe (box centre, corners, random points) or a PGD
//! run finds a counterexample that the f64 reference and every float32
//! engine confirm; `unsat` when sound-mode bounds exclude the unsafe outputs:
//! for inputs of at most 16 dimensions by input-space branch and bound,
//! otherwise by CROWN, then α-CROWN, then (most dangerous first) PGD on every
//! unsafe term still open and ReLU branch and bound on each; otherwise
//! `unknown`, or `timeout` once the deadline passes.

use super::certify::prepare;
use crate::{existing, CliResult, UserError};
use clap::Args;
use nncert_bounds::{BoundConfig, BoundsError, Method, Soundness};
use nncert_exec::all_engines;
use nncert_model::{Deadline, Graph};
use nncert_spec::{read_vnnlib, write_atomically, InputBox, Property, VnnResult};
use nncert_verify::input_split::{prove_by_splitting, MAX_SPLIT_DIM};
use nncert_verify::terms::prove_case;
use nncert_verify::witness::f32_point_inside;
use nncert_verify::{Counterexample, Models, Outcome};
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
    /// Threads of branch and bound (subdomains bounded at once); default:
    /// the machine's cores.
    #[arg(long)]
    workers: Option<usize>,
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
    if a.workers == Some(0) {
        return Err(UserError("--workers 0: expected at least one".into()));
    }
    if workers(&a) > 1 && std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        // The workers fill the cores: threaded GEMMs inside them would only
        // contend. Set before any thread or GEMM starts.
        std::env::set_var("MATMUL_NUM_THREADS", "1");
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

fn workers(a: &VnncompArgs) -> usize {
    a.workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The model and the VNN-LIB property, checked to fit each other.
pub fn load_instance(model: &PathBuf, spec: &PathBuf) -> CliResult<(Graph, Property)> {
    let g = nncert_model::load_model(existing(model)?)?;
    let p = load_spec_for(&g, spec)?;
    Ok((g, p))
}

/// A VNN-LIB spec, checked to fit `g`'s input and output sizes.
pub fn load_spec_for(g: &Graph, spec: &PathBuf) -> CliResult<Property> {
    let p = read_vnnlib(existing(spec)?)?;
    if (p.num_inputs, p.num_outputs) != (g.input_len(), g.output_len()) {
        return Err(UserError(format!(
            "the spec has {} inputs and {} outputs, the model {} and {}",
            p.num_inputs,
            p.num_outputs,
            g.input_len(),
            g.output_len()
        )));
    }
    Ok(p)
}

fn decide(a: &VnncompArgs, deadline: Deadline) -> CliResult<VnnResult> {
    let (g, p) = load_instance(&a.model, &a.spec)?;
    if deadline.expired() {
        return Ok(VnnResult::Timeout);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    // Built once: the Toeplitz engine's dense conv matrices are costly.
    let engines = all_engines(&g)?;
    let cg = prepare(&g, Soundness::Float32)?;
    let m = Models {
        executed: &g,
        bounded: &cg,
        engines: &engines,
    };
    for case in &p.cases {
        let probes = probe_points(&case.input.bounding_box(), &mut rng);
        for chunk in probes.chunks(BATCH) {
            if deadline.expired() {
                return Ok(VnnResult::Timeout);
            }
            if let Some(ce) = m.confirm(&p, chunk)? {
                return Ok(sat(ce));
            }
        }
    }
    let cfg = BoundConfig {
        deadline,
        ..BoundConfig::new(Method::Crown, Soundness::Float32)
    };
    let mut open = false;
    for case in &p.cases {
        let outcome = if g.input_len() <= MAX_SPLIT_DIM {
            prove_by_splitting(&m, &p, case, &cfg, deadline)?
        } else {
            match prove_case(&m, &p, case, &cfg, (a.seed, workers(a))) {
                Err(nncert_verify::VerifyError::Bounds(BoundsError::Timeout)) => Outcome::Timeout,
                r => r?,
            }
        };
        match outcome {
            Outcome::Proved => {}
            Outcome::Counterexample(ce) => return Ok(sat(ce)),
            Outcome::Timeout => return Ok(VnnResult::Timeout),
            Outcome::Unknown | Outcome::Unconfirmed => open = true,
        }
    }
    Ok(if open {
        VnnResult::Unknown
    } else {
        VnnResult::Unsat
    })
}

fn sat(ce: Counterexample) -> VnnResult {
    VnnResult::Sat { x: ce.x, y: ce.y }
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
    pts.iter().filter_map(|p| f32_point_inside(p, b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
