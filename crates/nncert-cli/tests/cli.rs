//! End-to-end tests of the `nncert` binary.

use nncert_model::onnx::{export_onnx_bytes, proto};
use nncert_model::{Graph, Op, Tensor};
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nncert(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nncert"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nncert-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn asset(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(name)
        .display()
        .to_string()
}

/// y = W x + b on two inputs, written as ONNX.
fn write_linear_model(path: &Path, w: [f32; 4], b: [f32; 2]) {
    let mut g = Graph::with_input("x", vec![1, 2]);
    let op = Op::Linear {
        weight: Tensor::new(vec![2, 2], w.to_vec()),
        bias: Some(Tensor::new(vec![2], b.to_vec())),
    };
    g.push("fc", op, vec![0]).unwrap();
    g.output_name = "y".into();
    std::fs::write(path, export_onnx_bytes(&g).unwrap()).unwrap();
}

fn spec(unsafe_y: &str) -> String {
    format!("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 -1))\n(assert (<= X_1 1))\n(assert {unsafe_y})\n")
}

#[test]
fn no_arguments_runs_the_embedded_demo() {
    let o = nncert(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = stdout(&o);
    for engine in ["reference", "direct", "im2col", "toeplitz"] {
        let line = s
            .lines()
            .find(|l| l.starts_with(engine))
            .unwrap_or_else(|| panic!("no {engine} row in\n{s}"));
        let acc: f64 = line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .trim_end_matches('%')
            .parse()
            .unwrap();
        assert!(acc > 95.0, "{engine}: {acc}%");
    }
}

#[test]
fn info_and_run_on_the_embedded_model_file() {
    let model = asset("mnist_relu_stable_conv.onnx");
    let o = nncert(&["info", &model]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("non-canonical ops left: none"));
    let o = nncert(&["run", &model, "--mnist-index", "0"]);
    assert!(o.status.success());
    let s = stdout(&o);
    assert!(s.contains("label 7"));
    assert_eq!(
        s.lines().filter(|l| l.contains("argmax 7")).count(),
        4,
        "{s}"
    );
}

#[test]
fn run_reads_text_input() {
    let (m, x) = (tmp("lin_run.onnx"), tmp("x.txt"));
    write_linear_model(&m, [1.0, 2.0, 3.0, 4.0], [0.5, -0.5]);
    std::fs::write(&x, "[1, 0.5]").unwrap();
    let o = nncert(&[
        "run",
        m.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--engine",
        "direct",
    ]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("[2.500000, 4.500000]"),
        "{}",
        stdout(&o)
    );
    // --json: every engine's logits with every digit (1/3 shows them).
    std::fs::write(&x, "[0.3333333432674408, 0]").unwrap();
    let o = nncert(&[
        "run",
        m.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let reference = v["outputs"]["reference"].as_array().unwrap();
    // y0 = 1·x + 0.5 in f64, x the float32 nearest 1/3.
    assert_eq!(reference[0], 0.3333333432674408 + 0.5);
    for engine in ["direct", "im2col", "toeplitz"] {
        assert_eq!(v["outputs"][engine].as_array().unwrap().len(), 2);
    }
}

#[test]
fn vnncomp_sat_writes_a_witness_that_violates_the_spec() {
    let (m, s, out) = (tmp("lin_sat.onnx"), tmp("sat.vnnlib"), tmp("sat.txt"));
    write_linear_model(&m, [1.0, 0.0, 0.0, 1.0], [0.0, 0.0]);
    std::fs::write(&s, spec("(>= Y_0 0.25)")).unwrap();
    let o = nncert(&[
        "vnncomp",
        m.to_str().unwrap(),
        s.to_str().unwrap(),
        "--timeout",
        "20",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().next(), Some("sat"));
    let value = |var: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("({var} ")))
            .unwrap();
        line.trim_matches(|c: char| c == '(' || c == ')' || c.is_whitespace())
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    let (x0, x1) = (value("X_0"), value("X_1"));
    assert!((0.0..=1.0).contains(&x0) && (-1.0..=1.0).contains(&x1));
    assert_eq!(value("Y_0"), x0);
    assert!(x0 >= 0.25);
}

/// On a linear model the CROWN bound of each constraint is the exact
/// minimum over the box (up to the float32 charges in sound mode), and a
/// term is excluded exactly when that minimum exceeds its right-hand side.
#[test]
fn bounds_reports_every_constraint_of_a_vnnlib_spec() {
    let (m, s) = (tmp("lin_bounds.onnx"), tmp("bounds.vnnlib"));
    // y₀ = 2x₀ − x₁ + 0.5, y₁ = x₀ + 3x₁ − 1 on x₀ ∈ [0, 1], x₁ ∈ [−1, 1].
    write_linear_model(&m, [2.0, -1.0, 1.0, 3.0], [0.5, -1.0]);
    let unsafe_y = "(or (and (<= Y_0 -1)) (and (<= Y_1 Y_0) (>= Y_1 3)))";
    std::fs::write(&s, spec(unsafe_y)).unwrap();
    for flags in [vec![], vec!["--unsound"]] {
        let mut args = vec!["bounds", m.to_str().unwrap(), s.to_str().unwrap()];
        args.extend(flags.iter().copied());
        let o = nncert(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["sound"], flags.is_empty());
        let terms = r["cases"][0]["terms"].as_array().unwrap();
        assert_eq!(terms.len(), 2);
        // min y₀ = −0.5 (x = (0, 1)); min (y₁ − y₀) = −6.5 (x = (1, −1)); min (−y₁) = −3.
        let expected = [vec![-0.5], vec![-6.5, -3.0]];
        for (term, mins) in terms.iter().zip(&expected) {
            for (c, &min) in term.as_array().unwrap().iter().zip(mins) {
                let lower = c["lower"].as_f64().unwrap();
                assert!(lower <= min && lower > min - 1e-5, "{c}");
                let rhs = c["rhs"].as_f64().unwrap();
                assert_eq!(c["excluded"], lower > rhs);
            }
        }
        // y₀ ≤ −1 is impossible (min −0.5); the second term is possible.
        assert_eq!(terms[0][0]["excluded"], true);
        assert_eq!(terms[1][0]["excluded"], false);
    }
}

/// Several specs in one call: their cases in the order given, each naming
/// its spec, with the bounds a call per spec gives; a spec that does not fit
/// the model is a one-line error (exit 2).
#[test]
fn bounds_takes_several_specs() {
    let (m, s1, s2) = (
        tmp("lin_multi.onnx"),
        tmp("multi1.vnnlib"),
        tmp("multi2.vnnlib"),
    );
    write_linear_model(&m, [2.0, -1.0, 1.0, 3.0], [0.5, -1.0]);
    std::fs::write(&s1, spec("(<= Y_0 -1)")).unwrap();
    std::fs::write(&s2, spec("(<= Y_1 Y_0)")).unwrap();
    let run = |specs: &[&Path]| {
        let mut args = vec!["bounds", m.to_str().unwrap()];
        args.extend(specs.iter().map(|s| s.to_str().unwrap()));
        let o = nncert(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        r["cases"].as_array().unwrap().clone()
    };
    let both = run(&[&s2, &s1]);
    assert_eq!(both.len(), 2);
    for (case, s) in both.iter().zip([&s2, &s1]) {
        assert_eq!(case["spec"], s.to_str().unwrap());
        let alone = &run(&[s])[0];
        assert_eq!(case["terms"], alone["terms"]);
    }
    // min y₀ = −0.5 and min (y₁ − y₀) = −6.5 (see the test above).
    assert!((both[1]["terms"][0][0]["lower"].as_f64().unwrap() + 0.5).abs() < 1e-5);
    assert!((both[0]["terms"][0][0]["lower"].as_f64().unwrap() + 6.5).abs() < 1e-5);
    let wrong = tmp("multi_wrong.vnnlib");
    std::fs::write(
        &wrong,
        "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= Y_0 0))\n",
    )
    .unwrap();
    let o = nncert(&[
        "bounds",
        m.to_str().unwrap(),
        s1.to_str().unwrap(),
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("1 inputs and 1 outputs"), "{err}");
}

/// y = relu(x₀) + relu(x₁) − relu(x₀ + x₁) ≥ 0 (ReLU is subadditive), but on
/// [−1, 1]² no choice of lower ReLU slopes lifts the linear bound above −1
/// (α = ½ on both is optimal): probes, CROWN and α-CROWN all leave
/// `y ≤ −0.05` undecided; input splitting settles it, and so, past 16
/// inputs (where nncert splits ReLUs instead), does ReLU branch and bound.
/// `inputs − 2` further inputs are ignored.
fn write_subadditive_model(path: &Path, inputs: usize) {
    let mut g = Graph::with_input("x", vec![1, inputs]);
    let mut w = vec![0.0; 3 * inputs];
    (w[0], w[inputs + 1], w[2 * inputs], w[2 * inputs + 1]) = (1.0, 1.0, 1.0, 1.0);
    let hidden = Op::Linear {
        weight: Tensor::new(vec![3, inputs], w),
        bias: None,
    };
    let h = g.push("fc1", hidden, vec![0]).unwrap();
    let r = g.push("relu", Op::Relu, vec![h]).unwrap();
    let out = Op::Linear {
        weight: Tensor::new(vec![1, 3], vec![1.0, 1.0, -1.0]),
        bias: None,
    };
    g.push("fc2", out, vec![r]).unwrap();
    std::fs::write(path, export_onnx_bytes(&g).unwrap()).unwrap();
}

#[test]
fn vnncomp_unsat_unknown_and_timeout() {
    let out = tmp("vnn.txt");
    let run = |m: &Path, s: &Path, t: &str| {
        let o = nncert(&[
            "vnncomp",
            m.to_str().unwrap(),
            s.to_str().unwrap(),
            "--timeout",
            t,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read_to_string(&out).unwrap()
    };
    let (lin, far) = (tmp("lin_unsat.onnx"), tmp("far.vnnlib"));
    write_linear_model(&lin, [1.0, 0.0, 0.0, 1.0], [0.0, 0.0]);
    std::fs::write(&far, spec("(>= Y_0 5)")).unwrap();
    assert_eq!(run(&lin, &far, "20"), "unsat\n");
    assert_eq!(run(&lin, &far, "0"), "timeout\n");
    for (inputs, expected) in [(17, "unsat\n"), (2, "unsat\n")] {
        let (m, s) = (tmp("subadditive.onnx"), tmp("subadditive.vnnlib"));
        write_subadditive_model(&m, inputs);
        let mut text = String::new();
        for i in 0..inputs {
            text += &format!(
                "(declare-const X_{i} Real)\n(assert (>= X_{i} -1))\n(assert (<= X_{i} 1))\n"
            );
        }
        text += "(declare-const Y_0 Real)\n(assert (<= Y_0 -0.05))\n";
        std::fs::write(&s, text).unwrap();
        assert_eq!(run(&m, &s, "20"), expected, "{inputs} inputs");
    }
}

/// A model whose only node is an op nncert does not support.
fn unsupported_op_model() -> Vec<u8> {
    let mut bytes = {
        let mut g = Graph::with_input("x", vec![1, 2]);
        g.push("r", Op::Relu, vec![0]).unwrap();
        export_onnx_bytes(&g).unwrap()
    };
    let mut m = proto::ModelProto::decode(&bytes[..]).unwrap();
    m.graph.as_mut().unwrap().node[0].op_type = Some("Mod".into());
    m.graph.as_mut().unwrap().node[0].name = Some("the_mod".into());
    bytes.clear();
    m.encode(&mut bytes).unwrap();
    bytes
}

#[test]
fn user_errors_are_one_line_and_exit_code_2() {
    let garbage = tmp("garbage.onnx");
    std::fs::write(&garbage, b"\x08\x07garbage").unwrap();
    let truncated = tmp("truncated.onnx");
    let full = std::fs::read(asset("mnist_relu_stable_conv.onnx")).unwrap();
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let unsupported = tmp("unsupported.onnx");
    std::fs::write(&unsupported, unsupported_op_model()).unwrap();
    let nan = tmp("nan.onnx");
    write_linear_model(&nan, [1.0, f32::NAN, 0.0, 1.0], [0.0, 0.0]);
    let lin = tmp("lin_err.onnx");
    write_linear_model(&lin, [1.0, 0.0, 0.0, 1.0], [0.0, 0.0]);
    let bad_spec = tmp("bad.vnnlib");
    std::fs::write(
        &bad_spec,
        "(declare-const X_0 Real)\n(assert (<= X_0 oops))\n",
    )
    .unwrap();
    let other_spec = tmp("other.vnnlib");
    std::fs::write(&other_spec, "(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= Y_0 1))").unwrap();
    let three = tmp("three.txt");
    std::fs::write(&three, "1 2 3").unwrap();
    let out = tmp("err.txt");
    let p = |x: &PathBuf| x.to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["info".into(), "/no/such/model.onnx".into()],
            "no such file",
        ),
        (vec!["info".into(), p(&garbage)], "not a valid ONNX file"),
        (vec!["info".into(), p(&truncated)], "not a valid ONNX file"),
        (
            vec!["info".into(), p(&unsupported)],
            "unsupported ONNX op `Mod` (node `the_mod`)",
        ),
        (vec!["info".into(), p(&nan)], "non-finite"),
        (
            vec!["run".into(), p(&lin), "--input".into(), p(&three)],
            "has 3 values but the model expects 2",
        ),
        (
            vec!["run".into(), p(&lin), "--mnist-index".into(), "0".into()],
            "expects 2",
        ),
        (
            vec!["run".into(), p(&lin), "--mnist-index".into(), "9999".into()],
            "has 200 images",
        ),
        (
            vec![
                "vnncomp".into(),
                p(&lin),
                p(&bad_spec),
                "--out".into(),
                p(&out),
            ],
            "bad.vnnlib:2:17",
        ),
        (
            vec![
                "vnncomp".into(),
                p(&lin),
                p(&other_spec),
                "--out".into(),
                p(&out),
            ],
            "the spec has 1 inputs",
        ),
        (vec!["certify-everything".into()], "unrecognized subcommand"),
        (
            vec!["run".into(), p(&lin), "--engine".into(), "gpu".into()],
            "invalid value 'gpu'",
        ),
        (
            vec![
                "run".into(),
                p(&lin),
                "--data".into(),
                "imagenet:/x".into(),
                "--mnist-index".into(),
                "1".into(),
            ],
            "expected mnist:DIR",
        ),
    ];
    for (args, expect) in cases {
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let o = nncert(&refs);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(
            err.starts_with("nncert: error: ") && err.contains(expect),
            "{args:?}: {err}"
        );
    }
    // A failed VNN-COMP run still leaves a result file saying so.
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "error\n");
}

#[test]
fn info_handles_every_shared_model() {
    let Some(shared) = nncert_model::io::shared_dir() else {
        eprintln!("SKIP: ../shared not found (set NNCERT_SHARED)");
        return;
    };
    let mut files = nncert_model::io::onnx_files_under(&shared.join("vnncomp2021"));
    files.extend(nncert_model::io::onnx_files_under(&shared.join("models")));
    assert!(files.len() >= 60);
    for f in files {
        let o = nncert(&["info", f.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            stdout(&o).contains("non-canonical ops left: none"),
            "{}",
            f.display()
        );
    }
}

fn certify_json(extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["certify", "--json"];
    args.extend(extra);
    let o = nncert(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("certify --json prints JSON")
}

#[test]
fn certify_json_schema_and_consistency() {
    let r = certify_json(&["--count", "12", "--start", "3"]);
    let images = r["images"].as_array().unwrap();
    assert_eq!(images.len(), 12);
    for (k, im) in images.iter().enumerate() {
        assert_eq!(im["index"].as_u64().unwrap() as usize, 3 + k);
        let v = im["verdict"].as_str().unwrap();
        assert!(["certified", "uncertified", "misclassified"].contains(&v));
        assert_eq!(v == "misclassified", im["label"] != im["predicted"]);
        assert!(im["ms"].as_f64().unwrap() >= 0.0 && im.get("radius").is_none());
    }
    let s = &r["summary"];
    let certified = images
        .iter()
        .filter(|i| i["verdict"] == "certified")
        .count();
    assert_eq!(s["certified"].as_u64().unwrap() as usize, certified);
    assert_eq!(s["count"], 12);
    assert_eq!(s["sound"], true);
    assert!(
        certified >= 8,
        "CROWN should certify most of these images at ε = 0.1"
    );
    for key in [
        "model",
        "method",
        "norm",
        "eps",
        "clean_accuracy",
        "certified_accuracy",
        "ms_per_image",
        "correct",
    ] {
        assert!(s.get(key).is_some(), "summary lacks {key}");
    }
}

#[test]
fn certify_ibp_never_beats_crown_and_radius_matches_verdict() {
    let ibp = certify_json(&["--count", "6", "--method", "ibp", "--eps", "0.02"]);
    let crown = certify_json(&[
        "--count", "6", "--method", "crown", "--eps", "0.02", "--radius",
    ]);
    for (a, b) in ibp["images"]
        .as_array()
        .unwrap()
        .iter()
        .zip(crown["images"].as_array().unwrap())
    {
        assert!(!(a["verdict"] == "certified" && b["verdict"] != "certified"));
        if let Some(r) = b["radius"].as_f64() {
            // The radius search and the verdict at ε must agree (up to the bisection tolerance).
            assert_eq!(b["verdict"] == "certified", r >= 0.02 - 1e-4, "{b}");
        }
    }
    let l2 = certify_json(&["--count", "3", "--norm", "2", "--eps", "0.3", "--unsound"]);
    assert_eq!(l2["summary"]["norm"], "2");
    assert_eq!(l2["summary"]["sound"], false);
}

/// Each command fails with exit code 2 and one line containing its text.
fn assert_user_errors(cases: &[(Vec<&str>, &str)]) {
    for (args, expect) in cases {
        let o = nncert(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.lines().count() == 1 && err.contains(expect),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn certify_user_errors() {
    assert_user_errors(&[
        (vec!["certify", "--eps=-1"], "non-negative"),
        (vec!["certify", "--start", "500"], "has 200 images"),
        (vec!["certify", "--norm", "3"], "unknown norm"),
        (
            vec!["certify", "--method", "magic"],
            "invalid value 'magic'",
        ),
        (vec!["certify", "--model", "/no/model.onnx"], "no such file"),
        (vec!["certify", "--jobs", "0"], "at least one"),
    ]);
}

/// Several jobs give the same images, in index order, with the same verdicts
/// and margins as one.
#[test]
fn certify_jobs_change_nothing_but_time() {
    let one = certify_json(&["--count", "10", "--start", "5"]);
    let three = certify_json(&["--count", "10", "--start", "5", "--jobs", "3"]);
    let (a, b) = (
        one["images"].as_array().unwrap(),
        three["images"].as_array().unwrap(),
    );
    assert_eq!(a.len(), 10);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        for key in ["index", "label", "predicted", "verdict", "margins"] {
            assert_eq!(x[key], y[key], "{key}");
        }
    }
}

#[test]
fn verify_json_schema_and_witnesses() {
    let o = nncert(&["verify", "--json", "--count", "20", "--timeout", "5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let images = r["images"].as_array().unwrap();
    assert_eq!(images.len(), 20);
    let g = nncert_model::load_model(Path::new(&asset("mnist_relu_stable_conv.onnx"))).unwrap();
    for im in images {
        let v = im["verdict"].as_str().unwrap();
        assert!([
            "robust",
            "not_robust",
            "unknown",
            "timeout",
            "misclassified"
        ]
        .contains(&v));
        if v == "not_robust" {
            // The witness is in the ball and reaches the target label on re-execution.
            let x: Vec<f64> = serde_json::from_value(im["witness"].clone()).unwrap();
            let y = nncert_model::reference_forward(&g, &x).unwrap();
            let (label, target) = (
                im["label"].as_u64().unwrap() as usize,
                im["target"].as_u64().unwrap() as usize,
            );
            assert!(y[target] >= y[label], "{im}");
        }
        if v != "misclassified" {
            assert!(im["sort_ms"].as_f64().unwrap() >= 0.0);
            assert!(im["labels_checked"].is_array());
        }
    }
    let s = &r["summary"];
    let robust = images.iter().filter(|i| i["verdict"] == "robust").count();
    assert_eq!(s["certified"].as_u64().unwrap() as usize, robust);
    assert!(robust >= 15, "only {robust} of 20 verified robust");
    assert_eq!(s["label_guidance"], true);
    for key in ["not_robust", "unknown", "timeout", "timeout_s"] {
        assert!(s.get(key).is_some(), "summary lacks {key}");
    }
    // certify's --radius is rejected here, as a user error.
    let o = nncert(&["verify", "--radius"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn train_and_eval_user_errors() {
    let model = untrained_small_onnx("untrained-small.onnx");
    let out = tmp("train-out").display().to_string();
    assert_user_errors(&[
        (
            vec!["train", "--data", "embedded", "--out", &out],
            "training needs mnist:DIR",
        ),
        (
            vec![
                "train",
                "--data",
                "mnist:/no/dir",
                "--epochs",
                "0",
                "--out",
                &out,
            ],
            "--epochs and --batch must be positive",
        ),
        (
            vec!["train", "--data", "mnist:/no/dir", "--out", &out],
            "/no/dir",
        ),
        (vec!["eval", "--model", "/no/model.onnx"], "no such file"),
        (
            vec![
                "eval",
                "--model",
                &asset("mnist_relu_stable_conv.onnx"),
                "--count",
                "1",
            ],
            "not a trainable network",
        ),
        (
            vec!["eval", "--model", &model, "--start", "900"],
            "has 200 images",
        ),
    ]);
}

/// Table 1's small net, untrained, written as ONNX; its path.
fn untrained_small_onnx(name: &str) -> String {
    let norm = nncert_train::net::Normalization::MNIST;
    let arch = nncert_train::Architecture::Small;
    let net = nncert_train::Net::new(&arch, [1, 28, 28], 10, norm, 3).unwrap();
    let path = tmp(name);
    std::fs::write(&path, export_onnx_bytes(&net.to_graph().unwrap()).unwrap()).unwrap();
    path.display().to_string()
}

#[test]
fn eval_json_report_is_consistent() {
    let model = untrained_small_onnx("eval-small.onnx");
    let o = nncert(&[
        "eval",
        "--model",
        &model,
        "--count",
        "30",
        "--eps",
        "0.002",
        "--pgd-steps",
        "5",
        "--pgd-restarts",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let get = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("no {k} in {r}"));
    assert_eq!(get("count"), 30.0);
    assert!(r["sound"].as_bool().unwrap());
    // Each error contains the one before it.
    let chain = [
        "clean_error",
        "pgd_error",
        "crown_verified_error",
        "ibp_verified_error",
    ];
    for w in chain.windows(2) {
        assert!(get(w[0]) <= get(w[1]), "{} > {} in {r}", w[0], w[1]);
    }
    assert_eq!(get("ibp_only"), 0.0);
}

#[test]
fn fp_attack_crown_runs_and_checks_its_flags() {
    let o = nncert(&["fp-attack-crown", "--networks", "2", "--sweeps", "20"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = stdout(&o);
    // Every network: CROWN certifies in real arithmetic, not in sound mode.
    let rows: Vec<&str> = s.lines().filter(|l| l.contains("robust")).collect();
    assert_eq!(rows.len(), 8, "{s}");
    assert!(
        rows.iter().all(|l| l.contains("robust      unknown")),
        "{s}"
    );
    assert!(s.contains("of 8 (network, engine) pairs broken"), "{s}");
    // Winograd's error is far above the 1e-7 margin: it is broken every time.
    let winograd: Vec<&&str> = rows.iter().filter(|l| l.contains("winograd")).collect();
    assert!(winograd.iter().all(|l| l.contains("ADVERSARIAL")), "{s}");
    assert_user_errors(&[(
        vec!["fp-attack-crown", "--eps", "2"],
        "expected a value in (0, 0.25)",
    )]);
}

/// The attack end to end on the embedded model against the plain β-CROWN
/// verifier and sound mode: every case is written, sound mode has no
/// violation, and a bad budget is a user error.
#[test]
fn fp_attack_runs_against_branch_and_bound_and_sound_mode() {
    let out = tmp("fp-attack");
    let dir = out.display().to_string();
    let args = [
        "fp-attack",
        "--seeds",
        "1",
        "--pool",
        "8",
        "--sweeps",
        "3",
        "--bab-timeout",
        "2",
        "--seed-seconds",
        "8",
        "--out",
        &dir,
    ];
    let o = nncert(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let rows = summary["rows"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["verifier"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bab", "sound"]);
    for r in rows {
        assert_eq!(r["tested"], 1);
        assert_eq!(r["sound_violations"], 0);
    }
    let cases = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json")
        })
        .count();
    assert_eq!(cases, 3, "two cases and the summary");
    // Without dimming x0 is the seed image and only the gap network is climbed.
    let nodim = tmp("fp-attack-nodim");
    let nodim_dir = nodim.display().to_string();
    let mut args = args.to_vec();
    let last = args.len() - 1;
    args[last] = nodim_dir.as_str();
    args.extend(["--no-dimming", "--against", "plain"]);
    let o = nncert(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(nodim.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["dimming"], false);
    for e in std::fs::read_dir(&nodim).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("case_") && name.ends_with(".json")) {
            continue;
        }
        let case: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(case["alpha"].is_null(), "{name}");
        let engines = case["engines"].as_array().unwrap();
        assert!(engines.iter().all(|e| e["plain"].is_null()), "{name}");
    }
    // (Still without dimming.) Named images are attacked as given; the
    // nearest-first order draws from the pool.
    for (name, extra, allowed) in [
        ("fp-attack-images", vec!["--images", "6"], 6..7),
        ("fp-attack-nearest", vec!["--seed-order", "nearest"], 0..8),
    ] {
        let named = tmp(name);
        let named_dir = named.display().to_string();
        let mut args = args.to_vec();
        args[last] = named_dir.as_str();
        args.extend(extra);
        let o = nncert(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let indices: Vec<u64> = std::fs::read_dir(&named)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".json") && !p.ends_with("summary.json"))
            .map(|p| {
                let case: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
                case["index"].as_u64().unwrap()
            })
            .collect();
        assert_eq!(indices.len(), 1);
        assert!(allowed.contains(&(indices[0] as usize)), "{indices:?}");
    }
    assert_user_errors(&[
        (
            vec!["fp-attack", "--seed-seconds", "0", "--out", &dir],
            "--seed-seconds 0: expected a positive number",
        ),
        (
            vec!["fp-attack", "--images", "3,20000", "--out", &dir],
            "--images 20000: the data set has",
        ),
        (
            vec!["fp-attack", "--shard", "2/2", "--out", &dir],
            "expected K/N with 0 ≤ K < N",
        ),
    ]);
    // Two shards attack the picked seeds between them, every other one each.
    let seeds_of = |dir: &Path| -> Vec<u64> {
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap())
                .unwrap();
        let seeds = summary["seeds"].as_array().unwrap();
        seeds.iter().map(|s| s.as_u64().unwrap()).collect()
    };
    let mut args = args.clone();
    args[2] = "3";
    let (whole, second) = (tmp("fp-attack-whole"), tmp("fp-attack-shard"));
    let (whole_dir, second_dir) = (whole.display().to_string(), second.display().to_string());
    args[last] = whole_dir.as_str();
    assert!(nncert(&args).status.success());
    args[last] = second_dir.as_str();
    args.extend(["--shard", "1/2"]);
    assert!(nncert(&args).status.success());
    let (whole, second) = (seeds_of(&whole), seeds_of(&second));
    assert_eq!(whole.len(), 3, "{whole:?}");
    assert_eq!(second, [whole[1]]);
}
