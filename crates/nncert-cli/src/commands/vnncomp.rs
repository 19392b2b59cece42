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
use nncert_bounds::{lower_bounds, propagate, BoundConfig, BoundsError, Method, Region, Soundness};
use nncert_exec::all_engines;
use nncert_model::{Deadline, Graph};
use nncert_spec::{
    read_vnnlib, write_atomically, Case, InputBox, LinearConstraint, Property, VnnResult,
};
use nncert_verify::attack::{pgd, PgdConfig};
use nncert_verify::bab::{prove_row, BabConfig, RowProblem};
use nncert_verify::input_split::{prove_by_splitting, MAX_SPLIT_DIM};
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
    Ok((g, p))
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

/// One case, its unsafe terms taken as Algorithm 1 takes labels: a term is
/// excluded once one of its constraints `c·y ≤ d` is shown impossible by
/// CROWN, then α-CROWN on the whole box; the terms left are taken most
/// dangerous first (lowest bound), each on its constraint whose bound came
/// closest. PGD runs on every open term before branch and bound on any, so
/// a counterexample in a later term is not left waiting behind a hard proof.
fn prove_case(
    m: &Models,
    p: &Property,
    case: &Case,
    cfg: &BoundConfig,
    (seed, workers): (u64, usize),
) -> nncert_verify::Result<Outcome> {
    let region = Region::of(&case.input, cfg.soundness);
    let open = open_constraints(m, &region, cfg, case)?;
    let pgd_cfg = PgdConfig {
        seed,
        ..PgdConfig::default()
    };
    for c in &open {
        if let Some(ce) = pgd(m, p, &case.input, &c.coeffs, c.rhs, &pgd_cfg, cfg.deadline)? {
            return Ok(Outcome::Counterexample(ce));
        }
    }
    // β-CROWN: slopes and split multipliers optimised per subdomain.
    let bab = BabConfig {
        workers,
        ..BabConfig::new(BoundConfig {
            method: Method::AlphaCrown,
            ..*cfg
        })
    };
    let mut undecided = false;
    for c in &open {
        let row = RowProblem {
            property: p,
            region: &region,
            set: &case.input,
            spec: &c.coeffs,
            rhs: c.rhs,
        };
        match prove_row(m, &row, &bab)?.0 {
            Outcome::Proved => {}
            Outcome::Unknown | Outcome::Unconfirmed => undecided = true,
            decided => return Ok(decided),
        }
    }
    Ok(if undecided {
        Outcome::Unknown
    } else {
        Outcome::Proved
    })
}

/// Per unsafe term that neither CROWN nor α-CROWN excludes, its constraint
/// whose bound came closest to excluding it; lowest bound first.
fn open_constraints<'c>(
    m: &Models,
    region: &Region,
    cfg: &BoundConfig,
    case: &'c Case,
) -> nncert_verify::Result<Vec<&'c LinearConstraint>> {
    let nb = propagate(m.bounded, region, cfg)?;
    let alpha = BoundConfig {
        method: Method::AlphaCrown,
        alpha_stop_above: None,
        ..*cfg
    };
    let mut open = Vec::new();
    for term in &case.unsafe_output.terms {
        let spec: Vec<f64> = term.iter().flat_map(|c| c.coeffs.clone()).collect();
        let mut best = (f64::NEG_INFINITY, 0);
        for method_cfg in [cfg, &alpha] {
            let lb = lower_bounds(m.bounded, &nb, region, method_cfg, &spec, term.len())?;
            for (k, (c, l)) in term.iter().zip(&lb).enumerate() {
                if l - c.rhs > best.0 {
                    best = (l - c.rhs, k);
                }
            }
            if best.0 > 0.0 {
                break;
            }
        }
        if best.0 <= 0.0 {
            open.push((best.0, &term[best.1]));
        }
    }
    open.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(open.into_iter().map(|(_, c)| c).collect())
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
    use nncert_spec::{InputSet, OutputDnf};

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

    /// Terms that a bound excludes are dropped, a term with one impossible
    /// constraint among possible ones included; the rest come lowest bound
    /// first, each as its constraint whose bound came closest.
    #[test]
    fn open_terms_are_ordered_most_dangerous_first() {
        let g = nncert_model::testing::random_relu_mlp(&[3, 8, 8, 2], 7);
        let engines = all_engines(&g).unwrap();
        let m = Models {
            executed: &g,
            bounded: &g,
            engines: &engines,
        };
        let c = |coeffs: [f64; 2], rhs: f64| LinearConstraint {
            coeffs: coeffs.to_vec(),
            rhs,
        };
        let input = InputSet::Box(InputBox {
            lo: vec![-1.0; 3],
            hi: vec![1.0; 3],
        });
        let y0 = nncert_model::reference_forward(&g, &[0.0; 3]).unwrap()[0];
        // y0 ≤ y0(0) holds at the centre: open, but far less so than y0 ≤ 1e3.
        let near = c([1.0, 0.0], y0);
        let everywhere = c([0.0, 1.0], 1e3);
        let impossible = c([1.0, 0.0], -1e3);
        let case = Case {
            input,
            unsafe_output: OutputDnf {
                terms: vec![
                    vec![near.clone()],
                    vec![impossible.clone()],
                    vec![everywhere.clone(), impossible],
                    vec![everywhere.clone()],
                ],
            },
        };
        let cfg = BoundConfig::new(Method::Crown, Soundness::Float32);
        let region = Region::of(&case.input, cfg.soundness);
        let open = open_constraints(&m, &region, &cfg, &case).unwrap();
        assert_eq!(open, vec![&everywhere, &near]);
    }
}
