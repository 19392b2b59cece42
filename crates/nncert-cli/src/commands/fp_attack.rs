//! `nncert fp-attack`: the floating-point attack of fp-exploit-verified-nns.md
//! (§4.2) on seed images that the verifier claims robust: brightness
//! bisection to a quasi-safe x0, τ search to a quasi-adversarial x1 (by the
//! real-arithmetic complete verifier), hill climbing on every float32
//! engine, with and without the gap. `--against plain` attacks a
//! real-arithmetic verifier (`--plain milp`: MIPVerify's MILP formulation;
//! `bab`: β-CROWN branch and bound as α,β-CROWN runs it), `--against
//! sound` nncert's sound pipeline; every case also records sound mode's
//! verdict on its x0 (a certified x0 with a successful engine would be a
//! soundness bug, counted as a violation).

use super::certify::prepare;
use super::verify::{BigMArg, SolverArg};
use super::{accuracy, argmax};
use crate::inputs::DataSource;
use crate::{embedded, existing, CliResult, UserError};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use nncert_bounds::Soundness;
use nncert_data::Dataset;
use nncert_exec::{all_engines, Engine, EngineKind};
use nncert_fpattack::climb::ClimbConfig;
use nncert_fpattack::oracle::{Claim, MilpVerifier, PipelineVerifier, Verifier};
use nncert_fpattack::pipeline::{
    attack_seed, audit, with_gap, AttackConfig, CaseReport, EngineResult, Finder,
};
use nncert_model::Graph;
use nncert_spec::{Norm, NormBall};
use nncert_verify::attack::{lowest_margin, PgdConfig};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Against {
    /// The plain (real-arithmetic) verifier chosen by `--plain`.
    Plain,
    /// nncert's sound mode.
    Sound,
    Both,
}

/// The real-arithmetic complete verifier: attacked as the plain verifier,
/// and the attacker's tool for the seeds and step 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Plain {
    /// MIPVerify's MILP formulation.
    Milp,
    /// β-CROWN branch and bound, as α,β-CROWN runs it (real arithmetic).
    Bab,
}

/// The order in which pool images are tried as seeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SeedOrder {
    /// A random draw (seeded by `--seed`), as the paper draws.
    Random,
    /// Lowest worst-case margin first (PGD's, at `--eps`): the images whose
    /// ball lies nearest the decision boundary, so that step 1 stops close to
    /// α = 1, where the ReLUs stay stable and the verifier decides fast.
    Nearest,
}

#[derive(Parser)]
pub struct FpAttackArgs {
    /// ONNX or native model (default: the embedded MNIST model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Test images: mnist:DIR, cifar10:PATH or embedded.
    #[arg(long, default_value = "embedded")]
    data: DataSource,
    /// L∞ radius.
    #[arg(long, default_value_t = 0.1)]
    eps: f64,
    /// Seed images to attack (drawn among those the plain verifier claims robust).
    #[arg(long, default_value_t = 32)]
    seeds: usize,
    /// Draw seed images from the first N test images.
    #[arg(long, default_value_t = 1000)]
    pool: usize,
    /// Attack these test images (comma-separated indices, those the plain
    /// verifier claims robust, up to `--seeds`) instead of a random draw.
    #[arg(long, value_delimiter = ',')]
    images: Vec<usize>,
    /// The order in which the pool's images are tried as seeds.
    #[arg(long, value_enum, default_value_t = SeedOrder::Random)]
    seed_order: SeedOrder,
    /// Attack only every N-th of the picked seeds, from the K-th (0-based):
    /// N processes with K = 0 … N−1 share one experiment (seeds are attacked
    /// one at a time, and CBC solves one MILP at a time per process).
    #[arg(long, value_parser = parse_shard, value_name = "K/N")]
    shard: Option<(usize, usize)>,
    /// Random seed of the draw and of the hill climbing.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The verifier attacked.
    #[arg(long, value_enum, default_value_t = Against::Both)]
    against: Against,
    /// The real-arithmetic complete verifier.
    #[arg(long, value_enum, default_value_t = Plain::Bab)]
    plain: Plain,
    #[arg(long, value_enum, default_value_t = SolverArg::Cbc)]
    milp_solver: SolverArg,
    /// Seconds per MILP solve.
    #[arg(long, default_value_t = 60.0)]
    milp_timeout: f64,
    /// The MILP's big-M constants (MIPVerify tightens them: lp).
    #[arg(long, value_enum, default_value_t = BigMArg::Lp)]
    milp_tightening: BigMArg,
    /// Seconds per call of nncert's branch and bound (plain or sound).
    #[arg(long, default_value_t = 10.0)]
    bab_timeout: f64,
    /// Seconds for steps 1 and 2 of one seed; when they run out, the
    /// brackets reached so far are kept (reported in each case's JSON).
    #[arg(long, default_value_t = 100.0)]
    seed_seconds: f64,
    /// Skip step 1 (the brightness bisection): x0 is the seed image itself,
    /// far from the boundary but where the verifier decides fast; only the
    /// gap variant can then succeed.
    #[arg(long)]
    no_dimming: bool,
    /// Hill-climbing sweeps over all tiles (the paper: 1000).
    #[arg(long, default_value_t = 1000)]
    sweeps: usize,
    /// Folder for case_*.json, summary.json and the x0 / x_adv PNGs.
    #[arg(long)]
    out: PathBuf,
}

/// Tables 1 and 2 of the paper, one row per attacked verifier.
#[derive(Serialize)]
struct Row {
    verifier: String,
    tested: usize,
    quasi_adversarial: usize,
    successes: Vec<EngineSuccesses>,
    sound_violations: usize,
    /// Sound-certified x0 broken by engines sound mode does not cover.
    uncovered_breaks: usize,
}

#[derive(Serialize)]
struct EngineSuccesses {
    engine: String,
    covered_by_sound_mode: bool,
    without_gap: usize,
    with_gap: usize,
    /// The lowest test accuracy (%) among the gap networks it broke.
    min_gap_test_accuracy: Option<f64>,
}

pub fn run(a: FpAttackArgs) -> CliResult {
    let solver = a.milp_solver.solver();
    if a.plain == Plain::Milp && !solver.available() {
        return Err(UserError(
            "--milp-solver cbc: this build has no CBC (rebuild with `--features cbc`, or pass --milp-solver microlp)".into(),
        ));
    }
    if !(a.eps > 0.0 && a.eps < 1.0) {
        return Err(UserError(format!(
            "--eps {}: expected a value in (0, 1)",
            a.eps
        )));
    }
    if a.seed_seconds.is_nan() || a.seed_seconds <= 0.0 {
        return Err(UserError(format!(
            "--seed-seconds {}: expected a positive number",
            a.seed_seconds
        )));
    }
    let loaded = match &a.model {
        Some(p) => nncert_model::load_model(existing(p)?)?,
        None => embedded::model(),
    };
    let g = prepare(&loaded, Soundness::Float32)?;
    let ds = a.data.load()?;
    if ds.image_len() != g.input_len() {
        return Err(UserError(format!(
            "the images have {} values but the model expects {}",
            ds.image_len(),
            g.input_len()
        )));
    }
    std::fs::create_dir_all(&a.out).map_err(|e| UserError(format!("{}: {e}", a.out.display())))?;
    let engines = all_engines(&g)?;
    // The attack also climbs Winograd (the paper's NN_G,CWG), which sound
    // mode does not cover: its breaks are reported, not counted as violations.
    let mut attacked = all_engines(&g)?;
    attacked.push(Engine::new(EngineKind::Winograd, &g)?);
    let milp = MilpVerifier {
        eps: a.eps,
        solver,
        time_limit: Duration::from_secs_f64(a.milp_timeout),
        big_m: a.milp_tightening.big_m(),
    };
    let sound = PipelineVerifier::sound(a.eps, a.bab_timeout, &engines);
    let bab = PipelineVerifier::real(a.eps, a.bab_timeout);
    let (plain, finder): (&dyn Verifier, Finder) = match a.plain {
        Plain::Milp => (&milp, Finder::Milp(&milp)),
        Plain::Bab => (&bab, Finder::Bab(&bab)),
    };
    let plain_name = match a.plain {
        Plain::Milp => "milp",
        Plain::Bab => "bab",
    };
    let cfg = AttackConfig {
        climb: ClimbConfig {
            sweeps: a.sweeps,
            seed: a.seed,
            ..ClimbConfig::default()
        },
        seed_seconds: Some(a.seed_seconds),
        dim: !a.no_dimming,
        ..AttackConfig::paper(a.eps)
    };
    let mut seeds = pick_seeds(&g, &ds, plain, &a)?;
    if let Some((k, n)) = a.shard {
        seeds = seeds.into_iter().skip(k).step_by(n).collect();
    }
    let mut verifiers: Vec<(&str, &dyn Verifier)> = Vec::new();
    if a.against != Against::Sound {
        verifiers.push((plain_name, plain));
    }
    if a.against != Against::Plain {
        verifiers.push(("sound", &sound));
    }
    let bar = ProgressBar::new((seeds.len() * verifiers.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds {elapsed_precise} {msg}")
            .expect("template"),
    );
    let start = Instant::now();
    let mut rows = Vec::new();
    for &(name, v) in &verifiers {
        let mut cases = Vec::new();
        for &(index, label) in &seeds {
            let progress = |m: String| {
                if std::env::var_os("NNCERT_TRACE").is_some() {
                    eprintln!("[{:.1} s] seed {index}: {m}", start.elapsed().as_secs_f64());
                }
                bar.set_message(format!("seed {index}: {m}"));
            };
            let image = ds.image(index);
            let mut r = attack_seed(
                (name, v),
                finder,
                &g,
                &attacked,
                index,
                image,
                label,
                &cfg,
                &progress,
            )?;
            audit(&mut r, &sound, &g)?;
            if r.engines.iter().any(|e| e.gap_success) {
                r.gap_test_accuracy = Some(gap_accuracy(&g, &ds, &r)?);
            }
            write_case(&a.out, &r, &g)?;
            bar.inc(1);
            cases.push(r);
        }
        rows.push(row(name, &cases));
    }
    bar.finish_and_clear();
    let summary = serde_json::json!({
        "model": a.model.as_ref().map(|p| p.display().to_string()),
        "eps": a.eps,
        "seeds": seeds.iter().map(|s| s.0).collect::<Vec<_>>(),
        "sweeps": a.sweeps,
        "dimming": !a.no_dimming,
        "seconds": start.elapsed().as_secs_f64(),
        "rows": rows,
    });
    let path = a.out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)?)
        .map_err(|e| UserError(format!("{}: {e}", path.display())))?;
    print_table(&rows, !a.no_dimming, start.elapsed().as_secs_f64());
    Ok(())
}

/// `K/N` with K < N.
fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let parsed = s
        .split_once('/')
        .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
    match parsed {
        Some((k, n)) if k < n => Ok((k, n)),
        _ => Err(format!("expected K/N with 0 ≤ K < N, got {s:?}")),
    }
}

/// Correctly classified test images the plain verifier claims robust: those
/// of `--images`, or in a seeded random order until `--seeds` are found.
fn pick_seeds(
    g: &Graph,
    ds: &Dataset,
    plain: &dyn Verifier,
    a: &FpAttackArgs,
) -> CliResult<Vec<(usize, usize)>> {
    let order: Vec<usize> = if a.images.is_empty() {
        let mut order: Vec<usize> = (0..a.pool.min(ds.len())).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(a.seed));
        order
    } else if let Some(i) = a.images.iter().find(|&&i| i >= ds.len()) {
        return Err(UserError(format!(
            "--images {i}: the data set has {} images",
            ds.len()
        )));
    } else {
        a.images.clone()
    };
    let reference = nncert_model::forward::Reference;
    let mut correct = Vec::new();
    for i in order {
        let x: Vec<f64> = ds.image(i).iter().map(|&v| v as f64).collect();
        let y = nncert_model::forward::run(g, &reference, &x)?;
        if argmax(&y) == ds.labels[i] as usize {
            correct.push(i);
        }
    }
    if a.seed_order == SeedOrder::Nearest && a.images.is_empty() {
        correct = nearest_first(g, ds, correct, a)?;
    }
    let mut seeds = Vec::new();
    for i in correct {
        if seeds.len() == a.seeds {
            break;
        }
        let label = ds.labels[i] as usize;
        if plain.claim(g, ds.image(i), label)? == Claim::Robust {
            seeds.push((i, label));
        }
    }
    Ok(seeds)
}

/// `images` by PGD's lowest margin over their ε-ball, lowest first; those
/// PGD already misclassifies are dropped (no verifier can claim them).
fn nearest_first(
    g: &Graph,
    ds: &Dataset,
    images: Vec<usize>,
    a: &FpAttackArgs,
) -> CliResult<Vec<usize>> {
    let bar = ProgressBar::new(images.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images ranked by PGD margin {elapsed_precise}",
        )
        .expect("template"),
    );
    let mut ranked = Vec::new();
    for i in images {
        let x: Vec<f64> = ds.image(i).iter().map(|&v| v as f64).collect();
        let ball = NormBall {
            center: x,
            eps: a.eps,
            norm: Norm::Linf,
            domain: (0.0, 1.0),
        };
        let pgd = PgdConfig {
            seed: a.seed,
            ..PgdConfig::default()
        };
        let margin = lowest_margin(g, &ball, ds.labels[i] as usize, &pgd)?;
        if margin > 0.0 {
            ranked.push((margin, i));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    ranked.sort_by(|x, y| x.0.total_cmp(&y.0));
    Ok(ranked.into_iter().map(|(_, i)| i).collect())
}

/// Test accuracy of the case's gap network on the whole data set (f64 reference).
fn gap_accuracy(g: &Graph, ds: &Dataset, r: &CaseReport) -> CliResult<f64> {
    let tau0 = r.tau0.expect("a gap success has τ0");
    let gapped = with_gap(g, r.label, tau0)?;
    let x: Vec<f64> = ds.pixels.iter().map(|&v| v as f64).collect();
    let logits = nncert_model::reference_forward(&gapped, &x)?;
    Ok(accuracy(&logits, &ds.labels, g.output_len()))
}

fn row(name: &str, cases: &[CaseReport]) -> Row {
    let engines: Vec<(String, bool)> = cases
        .iter()
        .find(|c| !c.engines.is_empty())
        .map(|c| {
            c.engines
                .iter()
                .map(|e| (e.engine.clone(), e.covered_by_sound_mode))
                .collect()
        })
        .unwrap_or_default();
    let successes = engines
        .iter()
        .enumerate()
        .map(|(k, (e, covered))| {
            let won = |f: fn(&EngineResult) -> bool| {
                cases
                    .iter()
                    .filter(move |c| c.engines.get(k).is_some_and(f))
            };
            EngineSuccesses {
                engine: e.clone(),
                covered_by_sound_mode: *covered,
                without_gap: won(|r| r.success).count(),
                with_gap: won(|r| r.gap_success).count(),
                min_gap_test_accuracy: won(|r| r.gap_success)
                    .filter_map(|c| c.gap_test_accuracy)
                    .reduce(f64::min),
            }
        })
        .collect();
    Row {
        verifier: name.to_string(),
        tested: cases.len(),
        quasi_adversarial: cases.iter().filter(|c| c.quasi_adversarial()).count(),
        successes,
        sound_violations: cases.iter().map(CaseReport::sound_violations).sum(),
        uncovered_breaks: cases.iter().map(CaseReport::uncovered_breaks).sum(),
    }
}

fn print_table(rows: &[Row], dimming: bool, seconds: f64) {
    for r in rows {
        println!(
            "against {}: quasi-adversarial {}/{} tested; sound-mode violations {} \
             (sound-certified cases broken by engines sound mode does not cover: {})",
            r.verifier, r.quasi_adversarial, r.tested, r.sound_violations, r.uncovered_breaks
        );
        for s in &r.successes {
            let plain = match dimming {
                true => s.without_gap.to_string(),
                false => "not tried (--no-dimming)".into(),
            };
            let accuracy = s.min_gap_test_accuracy.map_or(String::new(), |a| {
                format!(" (gap networks' test accuracy ≥ {a:.2}%)")
            });
            let note = match s.covered_by_sound_mode {
                true => "",
                false => " (not covered by sound mode)",
            };
            println!(
                "  {:<10} successes: {plain} without gap, {} with gap{accuracy}{note}",
                s.engine, s.with_gap
            );
        }
    }
    println!("{seconds:.1} s in all");
}

/// The case's JSON, PNGs of x0 and of each successful x_adv, and the gap
/// network as ONNX when the verifier claims it robust (for
/// bench/runtime_climb.py, which climbs it on ONNX Runtime or tract).
fn write_case(dir: &Path, r: &CaseReport, g: &Graph) -> CliResult {
    let shape = g.input_shape();
    let stem = format!("case_{}_{}", r.verifier, r.index);
    let path = dir.join(format!("{stem}.json"));
    std::fs::write(&path, serde_json::to_string(r)?)
        .map_err(|e| UserError(format!("{}: {e}", path.display())))?;
    if let (Some("robust"), Some(tau0)) = (r.claim_x0_gap.as_deref(), r.tau0) {
        let gapped = with_gap(g, r.label, tau0)?;
        nncert_model::onnx::export_onnx(&gapped, &dir.join(format!("{stem}_gap.onnx")))?;
    }
    if let Some(x0) = &r.x0 {
        write_png(&dir.join(format!("{stem}_x0.png")), x0, shape)?;
    }
    for e in &r.engines {
        for (won, climb, suffix) in [(e.success, &e.plain, ""), (e.gap_success, &e.gap, "_gap")] {
            if let (true, Some(c)) = (won, climb) {
                let name = format!("{stem}_adv_{}{suffix}.png", e.engine);
                write_png(&dir.join(name), &c.x_adv, shape)?;
            }
        }
    }
    Ok(())
}

/// A [0, 1] image as an 8-bit PNG (grey for one channel, RGB for three),
/// each pixel drawn 4×4.
fn write_png(path: &Path, x: &[f32], shape: &[usize]) -> CliResult {
    let (c, h, w) = match *shape {
        [1, c, h, w] if c == 1 || c == 3 => (c, h, w),
        _ => return Ok(()),
    };
    const ZOOM: usize = 4;
    let mut data = Vec::with_capacity(h * w * c * ZOOM * ZOOM);
    for y in 0..h * ZOOM {
        for xx in 0..w * ZOOM {
            for ch in 0..c {
                let v = x[(ch * h + y / ZOOM) * w + xx / ZOOM];
                data.push((v.clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
    }
    let file =
        std::fs::File::create(path).map_err(|e| UserError(format!("{}: {e}", path.display())))?;
    let mut enc = png::Encoder::new(
        std::io::BufWriter::new(file),
        (w * ZOOM) as u32,
        (h * ZOOM) as u32,
    );
    enc.set_color(if c == 1 {
        png::ColorType::Grayscale
    } else {
        png::ColorType::Rgb
    });
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header()?;
    writer.write_image_data(&data)?;
    Ok(())
}

#[derive(Parser)]
pub struct FpAttackCrownArgs {
    /// Networks to build and attack (seeds 0..N).
    #[arg(long, default_value_t = 8)]
    networks: u64,
    /// L∞ radius around the random centre input.
    #[arg(long, default_value_t = 0.05)]
    eps: f64,
    /// Skip step 1 (the brightness bisection): x0 is the seed image itself,
    /// far from the boundary but where the verifier decides fast; only the
    /// gap variant can then succeed.
    #[arg(long)]
    no_dimming: bool,
    /// Hill-climbing sweeps over all tiles.
    #[arg(long, default_value_t = 1000)]
    sweeps: usize,
}

/// `nncert fp-attack-crown`: §5 of the paper, real-arithmetic CROWN against
/// float32 on the 13×13 boundary network.
pub fn run_crown(a: FpAttackCrownArgs) -> CliResult {
    use nncert_fpattack::incomplete::{attack, boundary_network, crown_certifies};
    if !(a.eps > 0.0 && a.eps < 0.25) {
        return Err(UserError(format!(
            "--eps {}: expected a value in (0, 0.25)",
            a.eps
        )));
    }
    println!("network  CROWN real  CROWN sound  engine     CW loss of label 1 (float32)  (f64 reference)");
    let mut broken = 0;
    for seed in 0..a.networks {
        let n = boundary_network(seed, a.eps);
        let real = crown_certifies(&n, Soundness::Real)?;
        let sound = crown_certifies(&n, Soundness::Float32)?;
        // The float32 engines sound mode covers, and Winograd, which it does not.
        let mut engines = all_engines(&n.graph)?;
        engines.push(Engine::new(EngineKind::Winograd, &n.graph)?);
        let cfg = ClimbConfig {
            sweeps: a.sweeps,
            seed,
            ..ClimbConfig::default()
        };
        for r in attack(&n, &engines, &cfg)? {
            broken += usize::from(r.adversarial.is_some());
            let verdict = |c: bool| if c { "robust" } else { "unknown" };
            println!(
                "{seed:>7}  {:<10}  {:<11}  {:<9}  {:>+14.3e} {:<13}  {:+.3e}",
                verdict(real),
                verdict(sound),
                r.engine,
                r.loss,
                if r.adversarial.is_some() {
                    "ADVERSARIAL"
                } else {
                    ""
                },
                r.reference_loss
            );
        }
    }
    println!(
        "{broken} of {} (network, engine) pairs broken: an input of the ε-box that the float32 engine labels 0 although real-arithmetic CROWN certified label 1",
        a.networks * 4
    );
    Ok(())
}
