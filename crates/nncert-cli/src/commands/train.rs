//! `nncert train` (IBP / constrained-IBP certified training on the CPU) and
//! `nncert eval` (clean, PGD, IBP- and CROWN-verified error of a model).

use crate::inputs::DataSource;
use crate::{existing, CliResult, UserError};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use nncert_bounds::Soundness;
use nncert_data::Dataset;
use nncert_train::eval::{evaluate, EvalConfig};
use nncert_train::net::Normalization;
use nncert_train::schedule::{Ramp, Schedule};
use nncert_train::train::{Method, TrainConfig, Trainer};
use nncert_train::Architecture;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ArchArg {
    Small,
    Medium,
    Large,
    Mlp,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MethodArg {
    Ibp,
    CrownIbp,
    Pgd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RampArg {
    Linear,
    Smooth,
}

#[derive(Parser)]
pub struct TrainArgs {
    /// Training data (its train split): mnist:DIR.
    #[arg(long)]
    data: DataSource,
    /// Constrained-IBP Table 1 architectures, or a dense net (--hidden).
    #[arg(long, value_enum, default_value_t = ArchArg::Small)]
    arch: ArchArg,
    /// Hidden widths of --arch mlp.
    #[arg(long, value_delimiter = ',', default_value = "256,256")]
    hidden: Vec<usize>,
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Fractions of training after which the learning rate drops tenfold.
    #[arg(long, value_delimiter = ',', default_value = "0.6,0.85")]
    lr_decay_at: Vec<f64>,
    /// L∞ radius trained for.
    #[arg(long, default_value_t = 0.2)]
    eps_train: f64,
    /// Radius of the per-epoch IBP-verified test error.
    #[arg(long, default_value_t = 0.1)]
    eps_test: f64,
    /// Epochs of nominal training (ε = 0, κ = 1) first.
    #[arg(long, default_value_t = 1.0)]
    warmup_epochs: f64,
    /// Epochs over which ε and κ ramp to their final values.
    #[arg(long, default_value_t = 3.0)]
    ramp_epochs: f64,
    #[arg(long, value_enum, default_value_t = RampArg::Linear)]
    ramp: RampArg,
    /// Final κ, the weight of the nominal loss.
    #[arg(long, default_value_t = 0.5)]
    kappa_end: f64,
    /// Weight of the hidden-layer bound size: 0 = IBP, > 0 = constrained IBP.
    #[arg(long, default_value_t = 0.0)]
    lambda: f64,
    /// The robust loss on IBP's worst-case logits, on CROWN-IBP margins
    /// (β-mixed with IBP's), or on PGD examples (Madry).
    #[arg(long, value_enum, default_value_t = MethodArg::Ibp)]
    method: MethodArg,
    /// Weight of Xiao et al.'s ReLU-stability loss on IBP's pre-activation bounds.
    #[arg(long, default_value_t = 0.0)]
    relu_stability: f64,
    /// CROWN-IBP's β at the start and at the end of the ε ramp.
    #[arg(long, value_delimiter = ',', default_value = "1,0")]
    beta: Vec<f64>,
    /// PGD steps per batch with --method pgd.
    #[arg(long, default_value_t = 10)]
    attack_steps: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train on the first N training images (default: all).
    #[arg(long)]
    train_count: Option<usize>,
    /// Test images evaluated after each epoch.
    #[arg(long, default_value_t = 1000)]
    eval_count: usize,
    /// Stop after the epoch running when this many minutes have passed.
    #[arg(long)]
    max_minutes: Option<f64>,
    /// Continue the run checkpointed in --out (its own settings are kept).
    #[arg(long)]
    resume: bool,
    /// Folder for checkpoint.*, log.json, model.json/.safetensors and model.onnx.
    #[arg(long)]
    out: PathBuf,
}

fn train_split(d: &DataSource) -> CliResult<Dataset> {
    match d {
        DataSource::Mnist(dir) => Ok(nncert_data::load_mnist(dir, "train")?),
        _ => Err(UserError(
            "--data: training needs mnist:DIR (its train split)".into(),
        )),
    }
}

fn architecture(a: &TrainArgs) -> Architecture {
    match a.arch {
        ArchArg::Small => Architecture::Small,
        ArchArg::Medium => Architecture::Medium,
        ArchArg::Large => Architecture::Large,
        ArchArg::Mlp => Architecture::Mlp(a.hidden.clone()),
    }
}

fn check_args(a: &TrainArgs) -> CliResult {
    let bad = |what: String| Err(UserError(what));
    if a.epochs == 0 || a.batch == 0 {
        return bad("--epochs and --batch must be positive".into());
    }
    if !(0.0..1.0).contains(&a.eps_train) || !(0.0..1.0).contains(&a.eps_test) {
        return bad("--eps-train and --eps-test must lie in [0, 1)".into());
    }
    if !(0.0..=1.0).contains(&a.kappa_end)
        || a.lambda < 0.0
        || a.relu_stability < 0.0
        || a.lr <= 0.0
    {
        return bad(
            "--kappa-end must lie in [0, 1], --lambda and --relu-stability ≥ 0, --lr > 0".into(),
        );
    }
    if a.beta.is_empty() || a.beta.len() > 2 || a.beta.iter().any(|b| !(0.0..=1.0).contains(b)) {
        return bad("--beta: one or two values (start,end) in [0, 1]".into());
    }
    if a.warmup_epochs < 0.0 || a.ramp_epochs < 0.0 {
        return bad("--warmup-epochs and --ramp-epochs must be ≥ 0".into());
    }
    Ok(())
}

/// The settings of a new run, from the flags.
fn train_config(a: &TrainArgs, train_len: usize) -> TrainConfig {
    let steps_per_epoch = train_len.div_ceil(a.batch) as f64;
    let schedule = Schedule {
        total_steps: (steps_per_epoch * a.epochs as f64) as u64,
        warmup_steps: (steps_per_epoch * a.warmup_epochs) as u64,
        ramp_steps: (steps_per_epoch * a.ramp_epochs) as u64,
        ramp: match a.ramp {
            RampArg::Linear => Ramp::Linear,
            RampArg::Smooth => Ramp::Smooth,
        },
        eps_train: a.eps_train,
        kappa_end: a.kappa_end,
        lr: a.lr,
        lr_decay_at: a.lr_decay_at.clone(),
    };
    TrainConfig {
        arch: architecture(a),
        epochs: a.epochs,
        batch: a.batch,
        schedule,
        lambda: a.lambda,
        relu_stability: a.relu_stability,
        method: match a.method {
            MethodArg::Ibp => Method::Ibp,
            MethodArg::CrownIbp => Method::CrownIbp {
                beta_start: a.beta[0],
                beta_end: a.beta[a.beta.len() - 1],
            },
            MethodArg::Pgd => Method::Pgd {
                steps: a.attack_steps,
            },
        },
        seed: a.seed,
        eps_test: a.eps_test,
        eval_count: a.eval_count,
    }
}

pub fn run_train(a: TrainArgs) -> CliResult {
    check_args(&a)?;
    let mut train = train_split(&a.data)?;
    if let Some(n) = a.train_count {
        train = train.take(n);
    }
    let test = a.data.load()?;
    let mut trainer = if a.resume {
        Trainer::resume(&a.out)?
    } else {
        let config = train_config(&a, train.len());
        Trainer::new(config, train.shape, 10, Normalization::of(&train))?
    };
    let per_epoch = train.len().div_ceil(trainer.config.batch) as u64;
    let bar = ProgressBar::new(per_epoch * trainer.config.epochs as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} steps {elapsed_precise} (eta {eta}) {msg}",
        )
        .expect("template"),
    );
    bar.set_position(trainer.step);
    let start = Instant::now();
    let limit = a
        .max_minutes
        .map(|m| Duration::from_secs_f64(m.max(0.0) * 60.0));
    let mut on_step = |s: &nncert_train::train::StepInfo| {
        bar.set_position(s.step);
        bar.set_message(format!(
            "epoch {} ε {:.3} loss {:.4}",
            s.epoch, s.eps, s.loss
        ));
    };
    let stop = || limit.is_some_and(|l| start.elapsed() >= l);
    let eps_test = trainer.config.eps_test;
    let mut on_epoch = |l: &nncert_train::train::EpochLog| {
        bar.suspend(|| println!(
            "epoch {:>3}  ε {:.3}  κ {:.2}  loss {:.4}  bound size {:.3e}  test error {:.2}%  IBP-verified error (ε {eps_test}) {:.2}%  {:.0} s",
            l.epoch, l.eps, l.kappa, l.loss, l.bound_size, l.test_error, l.ibp_verified_error, l.seconds
        ));
    };
    let out = a.out.clone();
    trainer.run((&train, &test), &out, &mut on_step, &mut on_epoch, &stop)?;
    trainer.save_checkpoint(&out)?;
    bar.finish_and_clear();
    write_model(&trainer, &out)?;
    println!(
        "{} epochs in {:.1} min; model in {}, plots errors.png and bound_size.png beside it",
        trainer.epochs_done,
        start.elapsed().as_secs_f64() / 60.0,
        out.join("model.onnx").display()
    );
    Ok(())
}

/// model.json (+ .safetensors), model.onnx and the run's plots into `out`.
fn write_model(trainer: &Trainer, out: &std::path::Path) -> CliResult {
    let g = trainer.net.to_graph()?;
    nncert_model::native::save_native(&g, &out.join("model.json"))?;
    nncert_model::onnx::export_onnx(&g, &out.join("model.onnx"))?;
    nncert_train::plot::plot_training(out, &[("run", &trainer.log)])?;
    Ok(())
}

#[derive(Parser)]
pub struct EvalArgs {
    /// A model trained by `nncert train` (ONNX or native JSON).
    #[arg(long)]
    model: PathBuf,
    /// Test data: mnist:DIR or embedded.
    #[arg(long, default_value = "embedded")]
    data: DataSource,
    #[arg(long, default_value_t = 0.1)]
    eps: f64,
    #[arg(long, default_value_t = 0)]
    start: usize,
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// PGD steps per restart (the paper: 200).
    #[arg(long, default_value_t = 200)]
    pgd_steps: usize,
    /// PGD restarts (the paper: 10).
    #[arg(long, default_value_t = 10)]
    pgd_restarts: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Real-arithmetic bounds instead of sound float32 ones.
    #[arg(long)]
    unsound: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run_eval(a: EvalArgs) -> CliResult {
    if !(a.eps >= 0.0 && a.eps < 1.0) {
        return Err(UserError(format!(
            "--eps {}: expected a value in [0, 1)",
            a.eps
        )));
    }
    let g = nncert_model::load_model(existing(&a.model)?)?;
    let all = a.data.load()?;
    if a.start >= all.len() {
        return Err(UserError(format!(
            "--start {}: the data set has {} images",
            a.start,
            all.len()
        )));
    }
    let end = (a.start + a.count).min(all.len());
    let n = all.image_len();
    let ds = Dataset {
        shape: all.shape,
        pixels: all.pixels[a.start * n..end * n].to_vec(),
        labels: all.labels[a.start..end].to_vec(),
    };
    let cfg = EvalConfig {
        eps: a.eps,
        pgd_steps: a.pgd_steps,
        pgd_restarts: a.pgd_restarts,
        seed: a.seed,
        soundness: if a.unsound {
            Soundness::Real
        } else {
            Soundness::Float32
        },
    };
    let bar = ProgressBar::new(ds.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images (bounds) {elapsed_precise}")
            .expect("template"),
    );
    let (report, _) = evaluate(&g, &ds, &cfg, &mut |k| bar.set_position(k as u64))?;
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} images, ε = {} ({}): clean error {:.2}%, PGD error {:.2}% ({} steps × {} restarts), verified error: IBP {:.2}%, CROWN {:.2}%",
            report.count,
            report.eps,
            if report.sound { "sound, float32" } else { "real arithmetic" },
            report.clean_error,
            report.pgd_error,
            a.pgd_steps,
            a.pgd_restarts,
            report.ibp_verified_error,
            report.crown_verified_error
        );
    }
    Ok(())
}

#[derive(Parser)]
pub struct PlotArgs {
    /// A run to draw: LABEL=DIR, DIR holding the log.json of `nncert train` (repeatable).
    #[arg(long = "run", required = true)]
    runs: Vec<String>,
    /// Folder for errors.png and bound_size.png.
    #[arg(long)]
    out: PathBuf,
}

/// `nncert plot-training`: several runs' logs in one pair of plots.
pub fn run_plot(a: PlotArgs) -> CliResult {
    let mut logs = Vec::new();
    for r in &a.runs {
        let Some((label, dir)) = r.split_once('=') else {
            return Err(UserError(format!("--run {r}: expected LABEL=DIR")));
        };
        let path = PathBuf::from(dir).join("log.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| UserError(format!("{}: {e}", path.display())))?;
        let log: Vec<nncert_train::train::EpochLog> = serde_json::from_str(&text)
            .map_err(|e| UserError(format!("{}: {e}", path.display())))?;
        logs.push((label.to_string(), log));
    }
    std::fs::create_dir_all(&a.out).map_err(|e| UserError(format!("{}: {e}", a.out.display())))?;
    let runs: Vec<(&str, &[nncert_train::train::EpochLog])> = logs
        .iter()
        .map(|(l, g)| (l.as_str(), g.as_slice()))
        .collect();
    nncert_train::plot::plot_training(&a.out, &runs)?;
    println!("{}", a.out.join("errors.png").display());
    println!("{}", a.out.join("bound_size.png").display());
    Ok(())
}
