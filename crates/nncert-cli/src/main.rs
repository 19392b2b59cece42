//! `nncert`: from an ONNX file to a verdict.
//!
//! Exit codes: 0 success, 2 user error (bad file, flag, unsupported op, …),
//! which is always reported as a single line on stderr.

mod commands;
mod embedded;
mod inputs;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// nncert: neural-network robustness certificates that hold under float32.
///
/// Run without a subcommand to evaluate the embedded MNIST model on the
/// embedded test images with every execution engine, then certify them
/// (CROWN, L∞ ε = 0.1, sound for float32). Exit code 2 means a usage or input
/// error, reported on one line.
#[derive(Parser)]
#[command(name = "nncert", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Summarise a model: ops, shapes, parameters, canonical form.
    Info(commands::info::InfoArgs),
    /// Certify robustness of test images by bound propagation (sound for float32 by default).
    Certify(commands::certify::CertifyArgs),
    /// Decide robustness of test images completely: attack, bounds, branch and bound, per label.
    Verify(commands::verify::VerifyArgs),
    /// Run inference with one or all engines.
    Run(commands::run::RunArgs),
    /// Lower bounds of every constraint of a VNN-LIB spec's unsafe terms, by one method (JSON).
    Bounds(commands::bounds::BoundsArgs),
    /// VNN-COMP tool contract: MODEL SPEC → sat/unsat/timeout/unknown/error in --out.
    Vnncomp(commands::vnncomp::VnncompArgs),
    /// The floating-point attack on verified networks (fp-exploit paper) against
    /// a real-arithmetic verifier (branch and bound or MILP) and against sound mode.
    FpAttack(commands::fp_attack::FpAttackArgs),
    /// §5 of the fp-exploit paper: real-arithmetic CROWN fooled by float32 on a 13×13 network.
    FpAttackCrown(commands::fp_attack::FpAttackCrownArgs),
    /// Certified training (IBP, constrained IBP) of a ReLU network on MNIST.
    Train(commands::train::TrainArgs),
    /// Clean, PGD and verified (IBP, CROWN) error of a trained model.
    Eval(commands::train::EvalArgs),
    /// Plot the per-epoch logs of one or more `nncert train` runs (PNG).
    PlotTraining(commands::train::PlotArgs),
}

/// A user-facing failure: printed as one line, exit code 2.
#[derive(Debug)]
pub struct UserError(pub String);

impl<E: std::fmt::Display> From<E> for UserError {
    fn from(e: E) -> Self {
        UserError(e.to_string())
    }
}

pub type CliResult<T = ()> = Result<T, UserError>;

/// A path argument that must exist.
pub fn existing(path: &PathBuf) -> CliResult<&PathBuf> {
    if path.exists() {
        Ok(path)
    } else {
        Err(UserError(format!("{}: no such file", path.display())))
    }
}

/// Opts this process out of transparent huge pages. mimalloc asks for them,
/// and then every fresh page its small-object heaps touch makes the kernel
/// zero 2 MiB: 18% of a short oval21 CROWN run (docs/design.md, "Allocator").
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_THP_DISABLE) only sets a flag of this process; a
    // kernel without it returns an error, which leaves things as they were.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    // `nncert … | head` should end quietly, as other Unix tools do, not panic on EPIPE.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    disable_transparent_huge_pages();
    nncert_train::tune_candle_threads();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            e.exit()
        }
        // A usage mistake: one line, exit code 2.
        Err(e) => {
            let text = e.render().to_string();
            // clap's message is the paragraph before the usage block.
            let head = text.split("\n\n").next().unwrap_or("invalid arguments");
            let msg = head.split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!(
                "nncert: error: {} (see nncert --help)",
                msg.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        None => commands::demo::run(),
        Some(Command::Info(a)) => commands::info::run(a),
        Some(Command::Certify(a)) => commands::certify::run(a),
        Some(Command::Verify(a)) => commands::verify::run(a),
        Some(Command::Run(a)) => commands::run::run(a),
        Some(Command::Bounds(a)) => commands::bounds::run(a),
        Some(Command::Vnncomp(a)) => commands::vnncomp::run(a),
        Some(Command::FpAttack(a)) => commands::fp_attack::run(a),
        Some(Command::FpAttackCrown(a)) => commands::fp_attack::run_crown(a),
        Some(Command::Train(a)) => commands::train::run_train(a),
        Some(Command::Eval(a)) => commands::train::run_eval(a),
        Some(Command::PlotTraining(a)) => commands::train::run_plot(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(UserError(msg)) => {
            eprintln!("nncert: error: {msg}");
            ExitCode::from(2)
        }
    }
}
