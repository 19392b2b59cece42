//! Every ONNX file in ../shared imports, validates, canonicalises, and the
//! canonical graph computes what the imported one does (f64 reference).

use nncert_model::io::{onnx_files_under, shared_dir};
use nncert_model::passes::{canonicalize, PassOptions};
use nncert_model::{load_model, reference_forward};
use rand::{Rng, SeedableRng};

#[test]
fn every_shared_model_imports_and_canonicalises_faithfully() {
    let Some(shared) = shared_dir() else {
        eprintln!("SKIP: ../shared not found (set NNCERT_SHARED)");
        return;
    };
    let mut files = onnx_files_under(&shared.join("vnncomp2021"));
    files.extend(onnx_files_under(&shared.join("models")));
    // ACAS Xu has 45 networks of one architecture; five of them suffice here.
    files.retain(|f| {
        !f.to_string_lossy().contains("ACASXU_run2a") || f.to_string_lossy().contains("_1_batch")
    });
    assert!(
        files.len() >= 15,
        "expected the shared models, found {}",
        files.len()
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for f in &files {
        let g = load_model(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let (c, report) = canonicalize(&g, PassOptions::default()).unwrap();
        let x: Vec<f64> = (0..g.input_len() * 2)
            .map(|_| rng.gen::<f32>() as f64)
            .collect();
        let (a, b) = (
            reference_forward(&g, &x).unwrap(),
            reference_forward(&c, &x).unwrap(),
        );
        let scale = a.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(&b)
            .fold(0.0f64, |m, (u, v)| m.max((u - v).abs()));
        eprintln!(
            "{}: {} nodes -> {} canonical {:?}, max |diff| {diff:.2e}",
            f.display(),
            g.nodes.len(),
            c.nodes.len(),
            report
        );
        assert!(
            diff <= 1e-5 * scale,
            "{}: canonical graph differs by {diff}",
            f.display()
        );
    }
}
