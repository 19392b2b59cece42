//! Cross-check against an independent engine, ONNX Runtime: every nncert
//! implementation (f64 reference and each float32 engine) must agree with
//! ORT within relative 1e-4 (max |Δ| / max |y_ort|). The report prints each
//! implementation's largest discrepancy: they differ, and that difference is
//! the raw material of the floating-point work.
//!
//! Always checked: the embedded model against a committed ORT fixture
//! (tests/fixtures, made by scripts/ort_reference.py). With
//! NNCERT_ORT_REFERENCE=DIR (as .ci/run sets): every shared model.

use nncert_exec::all_engines;
use nncert_model::testing::relative_discrepancy;
use nncert_model::{load_model, reference_forward};
use serde_json::Value;
use std::path::{Path, PathBuf};

const TOLERANCE: f64 = 1e-4;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Checks one reference file; returns the worst discrepancy per implementation.
fn check(file: &Path, model_dir: Option<&Path>) -> Vec<(String, f64)> {
    let data: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let model = PathBuf::from(data["model"].as_str().unwrap());
    let model = model_dir.map_or(model.clone(), |d| d.join(&model));
    let g = load_model(&model).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    let inputs: Vec<Vec<f64>> = data["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect();
    let want: Vec<Vec<f64>> = data["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect();
    let x32: Vec<f32> = inputs.iter().flatten().map(|&v| v as f32).collect();
    let x64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
    let mut results = vec![(
        "reference".to_string(),
        reference_forward(&g, &x64).unwrap(),
    )];
    for e in all_engines(&g).unwrap() {
        let y = e.run(&g, &x32).unwrap().iter().map(|&v| v as f64).collect();
        results.push((e.kind().name().to_string(), y));
    }
    let per = g.output_len();
    let report: Vec<(String, f64)> = results
        .iter()
        .map(|(name, y)| {
            let worst = y
                .chunks(per)
                .zip(&want)
                .map(|(a, b)| relative_discrepancy(a, b))
                .fold(0.0, f64::max);
            (name.clone(), worst)
        })
        .collect();
    let line: Vec<String> = report.iter().map(|(n, d)| format!("{n} {d:.2e}")).collect();
    eprintln!(
        "{}: max rel. discrepancy vs ORT: {}",
        model.display(),
        line.join(", ")
    );
    for (n, d) in &report {
        assert!(
            *d <= TOLERANCE,
            "{}: {n} differs from ONNX Runtime by {d:.3e}",
            model.display()
        );
    }
    report
}

#[test]
fn embedded_model_matches_onnxruntime_fixture() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let report = check(
        &dir.join("tests/fixtures/embedded_mnist_ort.json"),
        Some(&dir.join("../nncert-cli/assets")),
    );
    assert_eq!(report.len(), 4);
}

fn json_files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// One model per op family, built with onnx.helper (scripts/make_op_fixtures.py):
/// checks the importer's reading of each op against ONNX Runtime's.
#[test]
fn every_supported_op_matches_onnxruntime() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ops");
    let files = json_files_in(Path::new(&dir));
    assert!(
        files.len() >= 12,
        "op fixtures missing in {}",
        dir.display()
    );
    for f in &files {
        check(f, Some(&dir));
    }
}

#[test]
fn shared_models_match_onnxruntime() {
    let Some(dir) = std::env::var_os("NNCERT_ORT_REFERENCE") else {
        eprintln!("SKIP: NNCERT_ORT_REFERENCE not set (.ci/run generates it with scripts/ort_reference.py)");
        return;
    };
    let files = json_files_in(Path::new(&dir));
    assert!(!files.is_empty(), "no reference files in {dir:?}");
    let mut worst: std::collections::BTreeMap<String, f64> = Default::default();
    for f in &files {
        for (n, d) in check(f, None) {
            let w = worst.entry(n).or_insert(0.0);
            *w = w.max(d);
        }
    }
    eprintln!(
        "over {} models, worst rel. discrepancy vs ORT per implementation: {worst:?}",
        files.len()
    );
}

#[test]
fn final_softmax_is_dropped_and_recorded() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ops");
    let g = load_model(&dir.join("global_avgpool_flatten_gemm_softmax.onnx")).unwrap();
    assert!(g.softmax_dropped);
    let plain = load_model(&dir.join("pools_pad.onnx")).unwrap();
    assert!(!plain.softmax_dropped);
}
