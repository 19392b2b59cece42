//! `nncert verify`: complete robustness verification per image — attack,
//! incomplete bounds, then ReLU branch and bound and/or the MILP
//! (`--engine`) — one label at a time in the order their bounds suggest
//! (target-label guidance), with one deadline per image. Flags and JSON
//! schema are `certify`'s, plus `--timeout`, `--engine` and `--milp-solver`.

use super::certify::{
    for_each_image, margins_by_class, prepare, run_with_progress, soundness, summarize,
    CertifyArgs, Decision, ImageResult, Report, VerifyDetail, VerifySummary,
};
use crate::{CliResult, UserError};
use clap::{Parser, ValueEnum};
use nncert_bounds::{Ball, BoundConfig};
use nncert_data::Dataset;
use nncert_exec::all_engines;
use nncert_model::{Deadline, Graph};
use nncert_verify::attack::PgdConfig;
use nncert_verify::milp::{BigM, MilpSolver};
use nncert_verify::robustness::{verify_robustness, CompleteEngine, PipelineConfig, Verdict};
use nncert_verify::Models;

#[derive(Parser)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub common: CertifyArgs,
    /// Wall-clock limit per image, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Take labels in index order and drop none up front (for comparisons).
    #[arg(long)]
    pub no_label_guidance: bool,
    /// PGD steps per restart.
    #[arg(long, default_value_t = 40)]
    pub pgd_steps: usize,
    /// PGD restarts per label (the first starts at the image).
    #[arg(long, default_value_t = 3)]
    pub pgd_restarts: usize,
    /// The complete stage: ReLU branch and bound, the MILP (whose "robust"
    /// counts only with --unsound; in sound mode it is reported unconfirmed),
    /// or both: with --unsound branch and bound for half the time left, then
    /// the MILP; in sound mode the MILP for a third (for counterexamples),
    /// then branch and bound (for proofs).
    #[arg(long, value_enum, default_value_t = EngineArg::Bab)]
    pub engine: EngineArg,
    /// The MILP solver (cbc needs a build with `--features cbc`).
    #[arg(long, value_enum, default_value_t = SolverArg::Microlp)]
    pub milp_solver: SolverArg,
    /// The MILP's big-M constants: CROWN's bounds, or those tightened per
    /// unstable neuron by LP (1 s per LP call) before its binary is added.
    #[arg(long, value_enum, default_value_t = BigMArg::Crown)]
    pub milp_tightening: BigMArg,
    /// Threads of branch and bound per image (subdomains bounded at once).
    #[arg(long, default_value_t = 1)]
    pub bab_workers: usize,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EngineArg {
    Bab,
    Milp,
    Auto,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BigMArg {
    Crown,
    Lp,
}

impl BigMArg {
    pub fn big_m(self) -> BigM {
        match self {
            BigMArg::Crown => BigM::Propagated,
            BigMArg::Lp => BigM::Lp,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SolverArg {
    Microlp,
    Cbc,
}

impl EngineArg {
    fn engine(self) -> CompleteEngine {
        match self {
            EngineArg::Bab => CompleteEngine::BranchAndBound,
            EngineArg::Milp => CompleteEngine::Milp,
            EngineArg::Auto => CompleteEngine::Auto,
        }
    }
}

impl SolverArg {
    pub fn solver(self) -> MilpSolver {
        match self {
            SolverArg::Microlp => MilpSolver::MicroLp,
            SolverArg::Cbc => MilpSolver::Cbc,
        }
    }
}

pub fn run(a: VerifyArgs) -> CliResult {
    if a.common.radius {
        return Err(UserError(
            "--radius is a certify option (verify decides one radius)".into(),
        ));
    }
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        return Err(UserError(format!(
            "--timeout {}: expected a positive number of seconds",
            a.timeout
        )));
    }
    if a.bab_workers == 0 {
        return Err(UserError("--bab-workers 0: expected at least one".into()));
    }
    if a.bab_workers > 1 && std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        // As with --jobs: the workers fill the cores, threaded GEMMs contend.
        std::env::set_var("MATMUL_NUM_THREADS", "1");
    }
    if !a.milp_solver.solver().available() {
        return Err(UserError(
            "--milp-solver cbc: this build has no CBC (rebuild with `--features cbc`)".into(),
        ));
    }
    run_with_progress(&a.common, |g, ds, common, on_image| {
        verify_images(g, ds, common, &a, on_image)
    })
}

fn verify_images(
    g: &Graph,
    ds: &Dataset,
    common: &CertifyArgs,
    a: &VerifyArgs,
    on_image: &mut dyn FnMut(&ImageResult),
) -> CliResult<Report> {
    let soundness = soundness(common);
    let cg = prepare(g, soundness)?;
    let engines = all_engines(g)?;
    let m = Models {
        executed: g,
        bounded: &cg,
        engines: &engines,
    };
    let ball = Ball {
        eps: common.eps,
        norm: common.norm,
        domain: (0.0, 1.0),
    };
    let decide = |x0: &[f64], label: usize| -> CliResult<Decision> {
        let cfg = PipelineConfig {
            bounds: BoundConfig {
                deadline: Deadline::after_secs(a.timeout),
                intersect_ibp: !common.no_ibp_intersection,
                ..BoundConfig::new(common.method.method(), soundness)
            },
            pgd: PgdConfig {
                steps: a.pgd_steps,
                restarts: a.pgd_restarts,
                seed: 0,
            },
            guided: !a.no_label_guidance,
            complete: a.engine.engine(),
            milp_solver: a.milp_solver.solver(),
            milp_big_m: a.milp_tightening.big_m(),
            bab_workers: a.bab_workers,
        };
        let report = verify_robustness(&m, x0, label, ball, &cfg)?;
        let lower: Vec<f64> = report.labels.iter().map(|l| l.margin_lower).collect();
        let (verdict, target, witness) = match report.verdict {
            Verdict::Robust => ("robust", None, None),
            Verdict::NotRobust { target, witness } => ("not_robust", Some(target), Some(witness.x)),
            Verdict::Unknown => ("unknown", None, None),
            Verdict::Timeout => ("timeout", None, None),
        };
        let labels_checked = report
            .labels
            .iter()
            .filter(|l| l.settled_by != Some(nncert_verify::robustness::Stage::Bounds))
            .map(|l| l.target)
            .collect();
        Ok(Decision {
            verdict,
            margins: (!lower.is_empty()).then(|| margins_by_class(&lower, label, g.output_len())),
            radius: None,
            detail: Some(VerifyDetail {
                target,
                witness,
                labels_checked,
                sort_ms: report.sort_ms,
                subdomains: report.labels.iter().map(|l| l.subdomains).sum(),
                unconfirmed_labels: report
                    .labels
                    .iter()
                    .filter(|l| l.unconfirmed)
                    .map(|l| l.target)
                    .collect(),
            }),
        })
    };
    let (images, ms) = for_each_image(g, ds, common, decide, on_image)?;
    let mut summary = summarize(common, common.method.method().name(), &images, ms, "robust");
    let count = |v: &str| images.iter().filter(|r| r.verdict == v).count();
    summary.verify = Some(VerifySummary {
        not_robust: count("not_robust"),
        unknown: count("unknown"),
        timeout: count("timeout"),
        label_guidance: !a.no_label_guidance,
        timeout_s: a.timeout,
    });
    Ok(Report { images, summary })
}
