//! `nncert bounds MODEL SPEC…`: per input case of each VNN-LIB spec, the lower
//! bound of every constraint `c·y ≤ d` of every unsafe term, by one method —
//! what a verifier's incomplete stage sees (a constraint whose bound exceeds
//! `d` cannot hold, which excludes its term). JSON on stdout; it is also what
//! `bench/autolirpa_compare.py --vnnlib` compares with auto_LiRPA. Several
//! specs share one model load and one process, as a verifier's would.

use super::certify::{prepare, MethodArg};
use super::vnncomp::load_spec_for;
use crate::{existing, CliResult};
use clap::Args;
use nncert_bounds::{lower_bounds, propagate, BoundConfig, Region, Soundness};
use nncert_model::Graph;
use nncert_spec::Case;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args)]
pub struct BoundsArgs {
    /// ONNX model (.onnx or .onnx.gz) or native model.
    model: PathBuf,
    /// VNN-LIB specifications (one or more, bounded one after the other).
    #[arg(required = true)]
    specs: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "crown")]
    method: MethodArg,
    /// Plain real-arithmetic bounds, NOT sound for float32 execution.
    #[arg(long)]
    unsound: bool,
    /// Do not intersect with IBP (auto_LiRPA's default algorithm).
    #[arg(long)]
    no_ibp_intersection: bool,
}

#[derive(Serialize)]
struct Report {
    method: &'static str,
    sound: bool,
    cases: Vec<CaseBounds>,
}

#[derive(Serialize)]
struct CaseBounds {
    /// The VNN-LIB file the case comes from, as given.
    spec: PathBuf,
    /// The input box the bounds hold over (the case's bounding box).
    input_lo: Vec<f64>,
    input_hi: Vec<f64>,
    terms: Vec<Vec<ConstraintBound>>,
    /// Bounding time of this case (all nodes, then every constraint).
    ms: f64,
}

#[derive(Serialize)]
struct ConstraintBound {
    coeffs: Vec<f64>,
    rhs: f64,
    /// Lower bound of `coeffs · y` over the case's inputs.
    lower: f64,
    /// `lower > rhs`: the constraint, hence its term, cannot hold.
    excluded: bool,
}

pub fn run(a: BoundsArgs) -> CliResult {
    let g = nncert_model::load_model(existing(&a.model)?)?;
    let soundness = if a.unsound {
        Soundness::Real
    } else {
        Soundness::Float32
    };
    let cg = prepare(&g, soundness)?;
    let cfg = BoundConfig {
        intersect_ibp: !a.no_ibp_intersection,
        ..BoundConfig::new(a.method.method(), soundness)
    };
    let mut cases = Vec::new();
    for spec in &a.specs {
        let p = load_spec_for(&g, spec)?;
        for case in &p.cases {
            cases.push(bound_case(&cg, &cfg, case, spec)?);
        }
    }
    let report = Report {
        method: a.method.method().name(),
        sound: !a.unsound,
        cases,
    };
    println!("{}", serde_json::to_string(&report).expect("serialisable"));
    Ok(())
}

/// Every constraint's lower bound over one case, and the time taken.
fn bound_case(cg: &Graph, cfg: &BoundConfig, case: &Case, spec: &Path) -> CliResult<CaseBounds> {
    let start = Instant::now();
    let region = Region::of(&case.input, cfg.soundness);
    let nb = propagate(cg, &region, cfg)?;
    let mut terms = Vec::new();
    for term in &case.unsafe_output.terms {
        let spec: Vec<f64> = term.iter().flat_map(|c| c.coeffs.clone()).collect();
        let lower = lower_bounds(cg, &nb, &region, cfg, &spec, term.len())?;
        terms.push(
            term.iter()
                .zip(lower)
                .map(|(c, lower)| ConstraintBound {
                    coeffs: c.coeffs.clone(),
                    rhs: c.rhs,
                    lower,
                    excluded: lower > c.rhs,
                })
                .collect(),
        );
    }
    let b = case.input.bounding_box();
    Ok(CaseBounds {
        spec: spec.to_path_buf(),
        input_lo: b.lo,
        input_hi: b.hi,
        terms,
        ms: start.elapsed().as_secs_f64() * 1e3,
    })
}
