//! `nncert` with no arguments: the embedded model on the embedded images.

use super::accuracy;
use super::certify::{certify_images, print_summary, CertifyArgs};
use crate::{embedded, CliResult};
use clap::Parser;
use indicatif::ProgressBar;
use nncert_exec::all_engines;
use std::time::Instant;

pub fn run() -> CliResult {
    let g = embedded::model();
    let ds = embedded::mnist_test();
    println!(
        "nncert {} — {}",
        env!("CARGO_PKG_VERSION"),
        embedded::MODEL_NAME
    );
    println!(
        "model: input {:?} → output {:?}, {} nodes, {} parameters",
        g.input_shape(),
        g.output_shape(),
        g.nodes.len(),
        g.param_count()
    );
    println!("data:  first {} MNIST test images (embedded)\n", ds.len());
    let classes = g.output_len();
    let t = Instant::now();
    let x64: Vec<f64> = ds.pixels.iter().map(|&v| v as f64).collect();
    let reference = nncert_model::reference_forward(&g, &x64)?;
    println!(
        "{:<10} {:>9} {:>24} {:>10}",
        "engine", "accuracy", "max |Δlogit| vs f64 ref", "ms/image"
    );
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3 / ds.len() as f64;
    println!(
        "{:<10} {:>8.2}% {:>24} {:>10.3}",
        "reference",
        accuracy(&reference, &ds.labels, classes),
        "0",
        ms(t)
    );
    for e in all_engines(&g)? {
        let t = Instant::now();
        let y: Vec<f64> = e.run(&g, &ds.pixels)?.iter().map(|&v| v as f64).collect();
        let elapsed = ms(t);
        let diff = y
            .iter()
            .zip(&reference)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        println!(
            "{:<10} {:>8.2}% {:>24.3e} {:>10.3}",
            e.kind().name(),
            accuracy(&y, &ds.labels, classes),
            diff,
            elapsed
        );
    }
    println!(
        "\nThe float32 engines sum in different orders, so their logits differ by a few ulps:"
    );
    println!("the gap a verifier that ignores floating point can be fooled through. nncert's");
    println!("certificates cover every float32 evaluation order (docs/soundness.md).\n");
    let args = CertifyArgs::parse_from(["certify"]);
    println!(
        "Certifying all {} images: CROWN, L∞ ball of radius {} in [0,1], sound for float32 …",
        ds.len(),
        args.eps
    );
    let bar = ProgressBar::new(ds.len() as u64);
    let report = certify_images(&g, &ds, &args, |_| bar.inc(1))?;
    bar.finish_and_clear();
    print_summary(&report.summary);
    println!("\nNext: `nncert verify --help`, `nncert certify --help`, `nncert info MODEL`, `nncert vnncomp MODEL SPEC --timeout 60 --out result.txt`.");
    Ok(())
}
