//! Every VNN-COMP 2021 instance: the spec parses and fits its network.

use nncert_model::io::shared_dir;
use nncert_model::load_model;
use nncert_spec::read_vnnlib;
use std::collections::HashMap;

#[test]
fn every_shared_instance_parses_and_fits_its_model() {
    let Some(shared) = shared_dir() else {
        eprintln!("SKIP: ../shared not found (set NNCERT_SHARED)");
        return;
    };
    let root = shared.join("vnncomp2021");
    let mut dims: HashMap<String, (usize, usize)> = HashMap::new();
    let mut checked = 0;
    for bench in std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
    {
        let dir = bench.path();
        let csv = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "csv"))
            .unwrap();
        for line in std::fs::read_to_string(&csv)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let f: Vec<&str> = line.split(',').collect();
            let (onnx, spec) = (dir.join(f[0].trim()), dir.join(f[1].trim()));
            let key = onnx.display().to_string();
            let (nx, ny) = *dims.entry(key.clone()).or_insert_with(|| {
                let g = load_model(&onnx).unwrap_or_else(|e| panic!("{key}: {e}"));
                (g.input_len(), g.output_len())
            });
            let p = read_vnnlib(&spec).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                (p.num_inputs, p.num_outputs),
                (nx, ny),
                "{}",
                spec.display()
            );
            assert!(!p.cases.is_empty());
            checked += 1;
        }
    }
    eprintln!("checked {checked} instances");
    assert!(checked > 200);
}

#[test]
fn every_shared_vnnlib_file_parses() {
    let Some(shared) = shared_dir() else {
        eprintln!("SKIP: ../shared not found (set NNCERT_SHARED)");
        return;
    };
    fn walk(d: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "vnnlib") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&shared.join("vnncomp2021"), &mut files);
    for f in &files {
        read_vnnlib(f).unwrap_or_else(|e| panic!("{e}"));
    }
    eprintln!("parsed {} files", files.len());
    assert!(files.len() >= 200);
}
