//! `nncert certify`: per-image robustness certificates by bound propagation.

use super::argmax;
use crate::inputs::DataSource;
use crate::{embedded, existing, CliResult, UserError};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use nncert_bounds::radius::certified_radius;
use nncert_bounds::{is_certified, robustness_margins, Ball, BoundConfig, Method, Soundness};
use nncert_data::Dataset;
use nncert_model::passes::{canonicalize, PassOptions};
use nncert_model::Graph;
use nncert_spec::Norm;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MethodArg {
    /// Interval bound propagation.
    Ibp,
    /// Symbolic intervals (ReluVal/Neurify): forward linear bounds in the input.
    Symbolic,
    /// Zonotopes (DeepZ).
    Deepz,
    /// Fast-Lin: back-substitution, parallel ReLU slopes.
    Fastlin,
    /// CROWN / CNN-Cert-Ada: back-substitution, adaptive ReLU slopes.
    Crown,
    /// α-CROWN: CROWN with the output bound's ReLU slopes optimised (Adam).
    AlphaCrown,
}

impl MethodArg {
    pub fn method(self) -> Method {
        match self {
            MethodArg::Ibp => Method::Ibp,
            MethodArg::Symbolic => Method::Symbolic,
            MethodArg::Deepz => Method::DeepZ,
            MethodArg::Fastlin => Method::FastLin,
            MethodArg::Crown => Method::Crown,
            MethodArg::AlphaCrown => Method::AlphaCrown,
        }
    }
}

#[derive(Parser, Clone)]
pub struct CertifyArgs {
    /// ONNX or native model (default: the embedded MNIST model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Test images: mnist:DIR, cifar10:PATH or embedded.
    #[arg(long, default_value = "embedded")]
    pub data: DataSource,
    /// Perturbation radius.
    #[arg(long, default_value_t = 0.1)]
    pub eps: f64,
    /// Norm of the ball: inf, 2 or 1.
    #[arg(long, default_value = "inf")]
    pub norm: Norm,
    #[arg(long, value_enum, default_value = "crown")]
    pub method: MethodArg,
    /// First image index.
    #[arg(long, default_value_t = 0)]
    pub start: usize,
    /// Number of images (default: all from --start).
    #[arg(long)]
    pub count: Option<usize>,
    /// Also search the certified radius of each correctly classified image (bisection).
    #[arg(long)]
    pub radius: bool,
    /// Real-arithmetic bounds (not sound for the float32 network; for comparison).
    #[arg(long)]
    pub unsound: bool,
    /// Do not intersect CROWN's bounds with IBP's (looser; what auto_LiRPA computes, for comparisons).
    #[arg(long)]
    pub no_ibp_intersection: bool,
    /// The model reads images flattened in (h, w, c) order (the `_mlp` models).
    #[arg(long)]
    pub hwc: bool,
    /// Write the JSON report to stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Images decided at once, one thread each (ms/image is then wall time
    /// over images; each image's own time and deadline are unchanged). In
    /// `verify --milp-solver cbc`, images queue for CBC, which solves one
    /// MILP at a time, while their deadlines run.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
}

#[derive(Serialize)]
pub struct ImageResult {
    pub index: usize,
    pub label: usize,
    pub predicted: usize,
    pub verdict: &'static str,
    pub ms: f64,
    /// Lower bounds of `y_label − y_t` over the ball, per class t (null at the
    /// label); absent for misclassified images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub margins: Option<Vec<Option<f64>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub radius: Option<f64>,
    /// `nncert verify` only.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub detail: Option<VerifyDetail>,
}

/// What `nncert verify` adds to an image's result.
#[derive(Serialize)]
pub struct VerifyDetail {
    /// The label the counterexample reaches (`not_robust`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<usize>,
    /// The re-executed counterexample (`not_robust`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness: Option<Vec<f64>>,
    /// Labels left after the bounds dropped the impossible ones, in the order taken.
    pub labels_checked: Vec<usize>,
    /// Time to bound every label's margin and order them (t_sort), ms.
    pub sort_ms: f64,
    /// Subdomains bounded by ReLU branch and bound, all labels together.
    pub subdomains: usize,
    /// Labels the MILP found no counterexample for, which sound mode cannot
    /// take as a proof (`--engine milp|auto` without `--unsound`).
    pub unconfirmed_labels: Vec<usize>,
}

#[derive(Serialize)]
pub struct Summary {
    pub model: String,
    pub method: &'static str,
    pub norm: &'static str,
    pub eps: f64,
    pub sound: bool,
    pub count: usize,
    pub correct: usize,
    pub certified: usize,
    pub clean_accuracy: f64,
    pub certified_accuracy: f64,
    pub ms_per_image: f64,
    /// `nncert verify` only.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySummary>,
}

#[derive(Serialize)]
pub struct VerifySummary {
    pub not_robust: usize,
    pub unknown: usize,
    pub timeout: usize,
    pub label_guidance: bool,
    pub timeout_s: f64,
}

#[derive(Serialize)]
pub struct Report {
    pub images: Vec<ImageResult>,
    pub summary: Summary,
}

fn norm_name(n: Norm) -> &'static str {
    match n {
        Norm::Linf => "inf",
        Norm::L2 => "2",
        Norm::L1 => "1",
    }
}

/// (h, w, c) flattening of a channel-first image.
fn to_hwc(x: &[f32], shape: [usize; 3]) -> Vec<f32> {
    let [c, h, w] = shape;
    (0..h * w * c).map(|k| x[(k % c) * h * w + k / c]).collect()
}

/// The graph bounds are computed on: sound mode keeps the float32 network
/// as deployed (only exact rewrites), real mode canonicalises fully.
pub fn prepare(g: &Graph, soundness: Soundness) -> CliResult<Graph> {
    let opts = match soundness {
        Soundness::Real => PassOptions::default(),
        Soundness::Float32 => PassOptions::float32_exact(),
    };
    Ok(canonicalize(g, opts)?.0)
}

/// What a command decided for one correctly classified image.
pub struct Decision {
    pub verdict: &'static str,
    pub margins: Option<Vec<Option<f64>>>,
    pub radius: Option<f64>,
    pub detail: Option<VerifyDetail>,
}

/// The soundness mode the flags ask for.
pub fn soundness(a: &CertifyArgs) -> Soundness {
    if a.unsound {
        Soundness::Real
    } else {
        Soundness::Float32
    }
}

/// Runs `decide(x0, label)` on each correctly classified image of
/// `start..start+count` (after checking the flags against the data), on
/// `--jobs` threads; `on_image` sees each result as it comes, and the
/// results are returned in index order.
pub fn for_each_image(
    g: &Graph,
    ds: &Dataset,
    a: &CertifyArgs,
    decide: impl Fn(&[f64], usize) -> CliResult<Decision> + Sync,
    mut on_image: impl FnMut(&ImageResult),
) -> CliResult<(Vec<ImageResult>, f64)> {
    check_flags(g, ds, a)?;
    let end = a.count.map_or(ds.len(), |c| (a.start + c).min(ds.len()));
    let total = Instant::now();
    let one = |i: usize| -> CliResult<ImageResult> {
        let t = Instant::now();
        let img = if a.hwc {
            to_hwc(ds.image(i), ds.shape)
        } else {
            ds.image(i).to_vec()
        };
        let x0: Vec<f64> = img.iter().map(|&v| v as f64).collect();
        let label = ds.labels[i] as usize;
        let predicted = argmax(&nncert_model::reference_forward(g, &x0)?);
        let d = if predicted != label {
            Decision {
                verdict: "misclassified",
                margins: None,
                radius: None,
                detail: None,
            }
        } else {
            decide(&x0, label)?
        };
        Ok(ImageResult {
            index: i,
            label,
            predicted,
            verdict: d.verdict,
            ms: t.elapsed().as_secs_f64() * 1e3,
            margins: d.margins,
            radius: d.radius,
            detail: d.detail,
        })
    };
    let next = AtomicUsize::new(a.start);
    let mut images = Vec::new();
    std::thread::scope(|scope| -> CliResult {
        let (tx, rx) = mpsc::channel();
        for _ in 0..a.jobs.max(1) {
            let (tx, next, one) = (tx.clone(), &next, &one);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end || tx.send(one(i)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for r in rx {
            // On an error the workers stop at their next image.
            let r = r.inspect_err(|_| next.store(end, Ordering::Relaxed))?;
            on_image(&r);
            images.push(r);
        }
        Ok(())
    })?;
    images.sort_by_key(|r| r.index);
    let ms_per_image = total.elapsed().as_secs_f64() * 1e3 / images.len().max(1) as f64;
    Ok((images, ms_per_image))
}

fn check_flags(g: &Graph, ds: &Dataset, a: &CertifyArgs) -> CliResult {
    if ds.image_len() != g.input_len() {
        return Err(UserError(format!(
            "the images have {} values but the model expects {} (shape {:?})",
            ds.image_len(),
            g.input_len(),
            g.input_shape()
        )));
    }
    if !(a.eps.is_finite() && a.eps >= 0.0) {
        return Err(UserError(format!(
            "--eps {}: expected a non-negative number",
            a.eps
        )));
    }
    if a.start >= ds.len() {
        return Err(UserError(format!(
            "--start {}: the data set has {} images",
            a.start,
            ds.len()
        )));
    }
    if a.jobs == 0 {
        return Err(UserError("--jobs 0: expected at least one".into()));
    }
    Ok(())
}

/// Per class t the bound of `y_label − y_t` (None at the label).
pub fn margins_by_class(lower: &[f64], label: usize, classes: usize) -> Vec<Option<f64>> {
    let mut lower = lower.iter().copied();
    (0..classes)
        .map(|t| (t != label).then(|| lower.next()).flatten())
        .collect()
}

/// The summary fields every command shares; `certified` counts `verdict_ok`.
pub fn summarize(
    a: &CertifyArgs,
    method: &'static str,
    images: &[ImageResult],
    ms_per_image: f64,
    verdict_ok: &str,
) -> Summary {
    let count = images.len();
    let correct = images
        .iter()
        .filter(|r| r.verdict != "misclassified")
        .count();
    let certified = images.iter().filter(|r| r.verdict == verdict_ok).count();
    Summary {
        model: a
            .model
            .as_ref()
            .map_or(embedded::MODEL_NAME.to_string(), |p| {
                p.display().to_string()
            }),
        method,
        norm: norm_name(a.norm),
        eps: a.eps,
        sound: soundness(a) == Soundness::Float32,
        count,
        correct,
        certified,
        clean_accuracy: 100.0 * correct as f64 / count.max(1) as f64,
        certified_accuracy: 100.0 * certified as f64 / count.max(1) as f64,
        ms_per_image,
        verify: None,
    }
}

/// Certifies images `start..start+count` of `ds`; `on_image` sees each result.
pub fn certify_images(
    g: &Graph,
    ds: &Dataset,
    a: &CertifyArgs,
    on_image: impl FnMut(&ImageResult),
) -> CliResult<Report> {
    let soundness = soundness(a);
    let cg = prepare(g, soundness)?;
    let cfg = BoundConfig {
        intersect_ibp: !a.no_ibp_intersection,
        // Certified once every margin is positive: α-CROWN may stop there.
        alpha_stop_above: Some(0.0),
        ..BoundConfig::new(a.method.method(), soundness)
    };
    let ball = |eps| Ball {
        eps,
        norm: a.norm,
        domain: (0.0, 1.0),
    };
    let diameter = match a.norm {
        Norm::Linf => 1.0,
        Norm::L2 => (g.input_len() as f64).sqrt(),
        Norm::L1 => g.input_len() as f64,
    };
    let decide = |x0: &[f64], label: usize| -> CliResult<Decision> {
        let lower = robustness_margins(&cg, x0, label, ball(a.eps), &cfg)?;
        let ok = lower.iter().all(|&m| m > 0.0);
        let radius = if a.radius {
            let mut err = None;
            let r = certified_radius(
                |e| {
                    is_certified(&cg, x0, label, ball(e), &cfg).unwrap_or_else(|e| {
                        err = Some(e);
                        false
                    })
                },
                diameter,
                1e-4 * diameter,
            );
            if let Some(e) = err {
                return Err(e.into());
            }
            Some(r)
        } else {
            None
        };
        Ok(Decision {
            verdict: if ok { "certified" } else { "uncertified" },
            margins: Some(margins_by_class(&lower, label, g.output_len())),
            radius,
            detail: None,
        })
    };
    let (images, ms) = for_each_image(g, ds, a, decide, on_image)?;
    let summary = summarize(a, a.method.method().name(), &images, ms, "certified");
    Ok(Report { images, summary })
}

pub fn print_summary(s: &Summary) {
    println!(
        "{} images, {} ε = {} ({}, {}): clean accuracy {:.2}%, certified accuracy {:.2}% ({} of {}), {:.2} ms/image",
        s.count,
        if s.norm == "inf" { "L∞".to_string() } else { format!("L{}", s.norm) },
        s.eps,
        s.method,
        if s.sound { "sound for float32" } else { "real arithmetic, NOT float32-sound" },
        s.clean_accuracy,
        s.certified_accuracy,
        s.certified,
        s.count,
        s.ms_per_image
    );
}

pub fn run(a: CertifyArgs) -> CliResult {
    run_with_progress(&a, |g, ds, a, on_image| certify_images(g, ds, a, on_image))
}

/// Loads the model and data of `a`, runs `images` with a progress bar (or
/// quietly under --json) and prints the per-image lines and the summary.
pub fn run_with_progress(
    a: &CertifyArgs,
    images: impl FnOnce(
        &Graph,
        &Dataset,
        &CertifyArgs,
        &mut dyn FnMut(&ImageResult),
    ) -> CliResult<Report>,
) -> CliResult {
    if a.jobs > 1 && std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        // The jobs already fill the cores: threaded GEMMs would only contend
        // (10% slower, docs/benchmarks.md). Set before any thread or GEMM starts.
        std::env::set_var("MATMUL_NUM_THREADS", "1");
    }
    let g = match &a.model {
        Some(p) => nncert_model::load_model(existing(p)?)?,
        None => embedded::model(),
    };
    let ds = a.data.load()?;
    let n = a
        .count
        .unwrap_or(ds.len())
        .min(ds.len().saturating_sub(a.start));
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(n as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images, {elapsed} elapsed, eta {eta}")
            .expect("valid template"),
    );
    let report = images(&g, &ds, a, &mut |r: &ImageResult| {
        if !a.json {
            let radius = r
                .radius
                .map_or(String::new(), |v| format!("  radius {v:.5}"));
            bar.println(format!(
                "image {:>5}  label {}  predicted {}  {:<13} {:>9.2} ms{radius}",
                r.index, r.label, r.predicted, r.verdict, r.ms
            ));
        }
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report.summary);
    }
    Ok(())
}
