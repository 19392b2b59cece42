//! Certified training against independent checks: IBP's bounds hold for
//! sampled inputs (on the candle forward pass and on nncert's f64
//! reference), loss gradients match central finite differences in f64, the
//! exported graph (native and ONNX) computes what the trained net computes,
//! training lowers the robust loss and resumes exactly, and what IBP
//! verifies CROWN verifies too.

use candle_core::{DType, Device, Tensor};
use nncert_bounds::Soundness;
use nncert_data::Dataset;
use nncert_model::forward::reference_forward;
use nncert_train::crown_ibp::crown_ibp_margins;
use nncert_train::eval::{evaluate, EvalConfig};
use nncert_train::loss::{crown_ibp_loss, ibp_loss, LossWeights};
use nncert_train::net::{batch, Normalization};
use nncert_train::schedule::{Ramp, Schedule};
use nncert_train::train::{Method, TrainConfig, Trainer};
use nncert_train::{Architecture, Net};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const NORM: Normalization = Normalization {
    mean: 0.3,
    std: 0.4,
};

/// Three classes of 8×8 images: a bright row, a bright column or a
/// bright diagonal at a random place, on noise.
fn synthetic(n: usize, seed: u64) -> Dataset {
    let mut r = StdRng::seed_from_u64(seed);
    let mut pixels = Vec::with_capacity(n * 64);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = (i % 3) as u8;
        let k = r.gen_range(1..7usize);
        for y in 0..8 {
            for x in 0..8 {
                let on = match class {
                    0 => y == k,
                    1 => x == k,
                    _ => x == y,
                };
                let noise: f32 = r.gen_range(0.0..0.3);
                pixels.push(if on { 1.0 - noise } else { noise });
            }
        }
        labels.push(class);
    }
    Dataset {
        shape: [1, 8, 8],
        pixels,
        labels,
    }
}

fn small_conv_net(seed: u64) -> Net {
    // Table 1's small net on 12×12 inputs: 12 → 5 → 2 spatially.
    Net::new(&Architecture::Small, [1, 12, 12], 4, NORM, seed).unwrap()
}

fn logits(net: &Net, x: &[f32], shape: [usize; 3]) -> Vec<f32> {
    let [c, h, w] = shape;
    let t = Tensor::from_vec(x.to_vec(), (1, c, h, w), &Device::Cpu).unwrap();
    net.forward(&t)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn ibp_bounds_hold_for_sampled_inputs() {
    let mut r = StdRng::seed_from_u64(1);
    for seed in 0..3 {
        let net = small_conv_net(seed);
        let g = net.to_graph().unwrap();
        // Every float32 engine of nncert-exec, beside candle and the f64 reference.
        let engines = nncert_exec::all_engines(&g).unwrap();
        let x0: Vec<f32> = (0..144).map(|_| r.gen_range(0.0..1.0)).collect();
        let eps = 0.05;
        let t = Tensor::from_vec(x0.clone(), (1, 1, 12, 12), &Device::Cpu).unwrap();
        let b = net.ibp(&t, eps).unwrap();
        let lo: Vec<f32> = b.lo.flatten_all().unwrap().to_vec1().unwrap();
        let hi: Vec<f32> = b.hi.flatten_all().unwrap().to_vec1().unwrap();
        for k in 0..500 {
            let x: Vec<f32> = x0
                .iter()
                .map(|&v| {
                    let (l, u) = ((v - eps as f32).max(0.0), (v + eps as f32).min(1.0));
                    match k {
                        0 => l,
                        1 => u,
                        _ if k < 50 => [l, u][r.gen_range(0..2)],
                        _ => r.gen_range(l..=u),
                    }
                })
                .collect();
            let by_candle = logits(&net, &x, [1, 12, 12]);
            let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let by_reference = reference_forward(&g, &xd).unwrap();
            let by_engines: Vec<Vec<f32>> =
                engines.iter().map(|e| e.run(&g, &x).unwrap()).collect();
            for j in 0..4 {
                // IBP here runs in float32: a small slack for its rounding.
                let tol = 1e-4 * (1.0 + lo[j].abs().max(hi[j].abs()));
                let mut values = vec![by_candle[j], by_reference[j] as f32];
                values.extend(by_engines.iter().map(|y| y[j]));
                for v in values {
                    assert!(
                        v >= lo[j] - tol && v <= hi[j] + tol,
                        "logit {j} = {v} outside [{}, {}]",
                        lo[j],
                        hi[j]
                    );
                }
            }
        }
    }
}

/// Autodiff against central finite differences (f64, h = 1e-6) on a few
/// random coordinates of every parameter.
fn check_gradients(net: &Net, loss: &dyn Fn(&Net) -> Tensor, what: &str, r: &mut StdRng) {
    let grads = loss(net).backward().unwrap();
    for v in net.vars() {
        let g: Vec<f64> = grads
            .get(&v)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let base: Vec<f64> = v.flatten_all().unwrap().to_vec1().unwrap();
        for _ in 0..6 {
            let i = r.gen_range(0..base.len());
            let h = 1e-6;
            let at = |delta: f64| {
                let mut p = base.clone();
                p[i] += delta;
                v.set(&Tensor::from_vec(p, v.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                let l = loss(net).to_scalar::<f64>().unwrap();
                v.set(&Tensor::from_vec(base.clone(), v.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                l
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() <= 1e-5 + 1e-4 * g[i].abs(),
                "{what}: autodiff {} vs finite difference {fd}",
                g[i]
            );
        }
    }
}

#[test]
fn crown_ibp_bounds_hold_and_reduce_to_ibp_at_beta_zero() {
    let mut r = StdRng::seed_from_u64(12);
    let nets = [
        (small_conv_net(14), [1usize, 12, 12]),
        (
            Net::new(&Architecture::Mlp(vec![9, 7]), [1, 8, 8], 3, NORM, 15).unwrap(),
            [1, 8, 8],
        ),
    ];
    for (net, shape) in nets {
        let n: usize = shape.iter().product();
        let classes = net.classes();
        let x0: Vec<f32> = (0..2 * n).map(|_| r.gen_range(0.0..1.0)).collect();
        let labels: Vec<u32> = (0..2).map(|k| (k % classes) as u32).collect();
        let x =
            Tensor::from_vec(x0.clone(), (2, shape[0], shape[1], shape[2]), &Device::Cpu).unwrap();
        let y = Tensor::from_vec(labels.clone(), 2, &Device::Cpu).unwrap();
        let eps = 0.03;
        let b = net.ibp(&x, eps).unwrap();
        let g = net.to_graph().unwrap();
        let engines = nncert_exec::all_engines(&g).unwrap();
        let m = crown_ibp_margins(&net, &b, &y)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for img in 0..2 {
            let yl = labels[img] as usize;
            assert_eq!(m[img][yl], 0.0);
            for k in 0..300 {
                let xs: Vec<f32> = x0[img * n..(img + 1) * n]
                    .iter()
                    .map(|&v| {
                        let (l, u) = ((v - eps as f32).max(0.0), (v + eps as f32).min(1.0));
                        if k < 30 {
                            [l, u][r.gen_range(0..2)]
                        } else {
                            r.gen_range(l..=u)
                        }
                    })
                    .collect();
                // candle's forward pass and every float32 engine of nncert-exec.
                let mut outputs = vec![logits(&net, &xs, shape)];
                outputs.extend(engines.iter().map(|e| e.run(&g, &xs).unwrap()));
                for z in &outputs {
                    for t in 0..classes {
                        let margin = z[yl] - z[t];
                        let tol = 1e-4 * (1.0 + margin.abs());
                        assert!(
                            margin >= m[img][t] - tol,
                            "margin {margin} below CROWN-IBP's {}",
                            m[img][t]
                        );
                    }
                }
            }
        }
        let w = LossWeights {
            eps,
            kappa: 0.3,
            lambda: 0.0,
            relu_stability: 0.0,
        };
        let (ibp, crown0) = (
            ibp_loss(&net, &x, &y, w)
                .unwrap()
                .total
                .to_scalar::<f32>()
                .unwrap(),
            crown_ibp_loss(&net, &x, &y, w, 0.0)
                .unwrap()
                .total
                .to_scalar::<f32>()
                .unwrap(),
        );
        assert_eq!(ibp, crown0);
    }
}

#[test]
fn loss_gradients_match_finite_differences() {
    let ds = synthetic(6, 3);
    let (x, y) = batch(&ds, &[0, 1, 2, 3, 4, 5]).unwrap();
    let x = x.to_dtype(DType::F64).unwrap();
    let mlp = Net::new(&Architecture::Mlp(vec![7, 5]), [1, 8, 8], 3, NORM, 4)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let mut r = StdRng::seed_from_u64(5);
    let settings = [
        (1.0, 0.0, 0.0), // nominal
        (0.5, 0.0, 0.0), // IBP
        (0.5, 0.3, 0.0), // constrained IBP
        (0.0, 1.0, 0.0),
        (0.5, 0.0, 0.5), // CROWN-IBP, β mixed
        (0.0, 0.0, 1.0),
    ];
    for (kappa, lambda, beta) in settings {
        let w = LossWeights {
            eps: 0.05,
            kappa,
            lambda,
            relu_stability: 0.0,
        };
        let what = format!("MLP κ {kappa} λ {lambda} β {beta}");
        let loss = |n: &Net| crown_ibp_loss(n, &x, &y, w, beta).unwrap().total;
        check_gradients(&mlp, &loss, &what, &mut r);
    }
    // The conv path (transposed convolutions backward) on 12×12 inputs.
    let conv = small_conv_net(6).to_dtype(DType::F64).unwrap();
    let xc: Vec<f64> = (0..3 * 144).map(|_| r.gen_range(0.0..1.0)).collect();
    let xc = Tensor::from_vec(xc, (3, 1, 12, 12), &Device::Cpu).unwrap();
    let yc = Tensor::from_vec(vec![0u32, 2, 3], 3, &Device::Cpu).unwrap();
    let w = LossWeights {
        eps: 0.02,
        kappa: 0.2,
        lambda: 0.1,
        relu_stability: 0.5,
    };
    let loss = |n: &Net| crown_ibp_loss(n, &xc, &yc, w, 0.7).unwrap().total;
    check_gradients(&conv, &loss, "conv CROWN-IBP", &mut r);
}

#[test]
fn exported_graph_and_onnx_compute_what_the_net_computes() {
    let net = small_conv_net(7);
    let g = net.to_graph().unwrap();
    let bytes = nncert_model::onnx::export_onnx_bytes(&g).unwrap();
    let imported = nncert_model::onnx::import_onnx_bytes(&bytes).unwrap();
    let dir = std::env::temp_dir().join(format!("nncert-train-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    nncert_model::native::save_native(&g, &dir.join("m.json")).unwrap();
    let native = nncert_model::native::load_native(&dir.join("m.json")).unwrap();
    let reread = Net::from_graph(&imported).unwrap();
    let mut r = StdRng::seed_from_u64(8);
    for _ in 0..20 {
        let x: Vec<f32> = (0..144).map(|_| r.gen_range(0.0..1.0)).collect();
        let want = logits(&net, &x, [1, 12, 12]);
        for (a, b) in logits(&reread, &x, [1, 12, 12]).iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "re-read {a} vs {b}"
            );
        }
        let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        for model in [&g, &imported, &native] {
            let y = reference_forward(model, &xd).unwrap();
            for (a, b) in y.iter().zip(&want) {
                assert!(
                    (a - *b as f64).abs() <= 1e-4 * (1.0 + a.abs()),
                    "{a} vs {b}"
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        arch: Architecture::Mlp(vec![32]),
        epochs,
        batch: 32,
        schedule: Schedule {
            total_steps: (epochs * 8) as u64,
            warmup_steps: 4,
            ramp_steps: 8,
            ramp: Ramp::Linear,
            eps_train: 0.1,
            kappa_end: 0.5,
            lr: 3e-3,
            lr_decay_at: vec![0.8],
        },
        lambda: 0.1,
        method: Method::Ibp,
        relu_stability: 0.0,
        seed: 11,
        eps_test: 0.05,
        eval_count: 60,
    }
}

fn robust_loss(net: &Net, ds: &Dataset, eps: f64) -> f64 {
    let idx: Vec<usize> = (0..ds.len()).collect();
    let (x, y) = batch(ds, &idx).unwrap();
    let w = LossWeights {
        eps,
        kappa: 0.0,
        lambda: 0.0,
        relu_stability: 0.0,
    };
    ibp_loss(net, &x, &y, w)
        .unwrap()
        .robust
        .to_scalar::<f32>()
        .unwrap() as f64
}

fn params(net: &Net) -> Vec<Vec<f32>> {
    net.vars()
        .iter()
        .map(|v| v.flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

#[test]
fn training_lowers_the_robust_loss_and_resumes_exactly() {
    let (train, test) = (synthetic(256, 21), synthetic(60, 22));
    let dir = std::env::temp_dir().join(format!("nncert-train-resume-{}", std::process::id()));
    let run = |t: &mut Trainer, out: &std::path::Path, epochs: usize| {
        let done = std::cell::Cell::new(t.epochs_done);
        t.run(
            (&train, &test),
            out,
            &mut |_| {},
            &mut |_| done.set(done.get() + 1),
            &|| done.get() >= epochs,
        )
        .unwrap();
    };
    let mut straight = Trainer::new(config(6), [1, 8, 8], 3, NORM).unwrap();
    let before = robust_loss(&straight.net, &train, 0.1);
    run(&mut straight, &dir.join("a"), 6);
    let after = robust_loss(&straight.net, &train, 0.1);
    assert!(after < 0.5 * before, "robust loss {before} → {after}");
    assert_eq!(straight.log.len(), 6);
    nncert_train::plot::plot_training(&dir, &[("a", &straight.log), ("b", &straight.log)]).unwrap();
    for name in ["errors.png", "bound_size.png"] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 5000,
            "{name}"
        );
    }

    let mut first = Trainer::new(config(6), [1, 8, 8], 3, NORM).unwrap();
    run(&mut first, &dir.join("b"), 3);
    assert_eq!(first.epochs_done, 3);
    let mut resumed = Trainer::resume(&dir.join("b")).unwrap();
    run(&mut resumed, &dir.join("b"), 6);
    assert_eq!(params(&resumed.net), params(&straight.net));
    assert_eq!(
        resumed.log,
        straight
            .log
            .iter()
            .map(|l| {
                let mut l = l.clone();
                l.seconds = resumed.log[l.epoch].seconds;
                l
            })
            .collect::<Vec<_>>()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn what_ibp_verifies_crown_verifies() {
    let (train, test) = (synthetic(256, 31), synthetic(90, 32));
    let dir = std::env::temp_dir().join(format!("nncert-train-consistency-{}", std::process::id()));
    let mut t = Trainer::new(config(8), [1, 8, 8], 3, NORM).unwrap();
    t.run((&train, &test), &dir, &mut |_| {}, &mut |_| {}, &|| false)
        .unwrap();
    let g = t.net.to_graph().unwrap();
    for soundness in [Soundness::Float32, Soundness::Real] {
        let cfg = EvalConfig {
            eps: 0.05,
            pgd_steps: 20,
            pgd_restarts: 2,
            seed: 0,
            soundness,
        };
        let (report, images) = evaluate(&g, &test, &cfg, &mut |_| {}).unwrap();
        let ibp = images.iter().filter(|e| e.ibp).count();
        assert!(
            ibp > 0,
            "{soundness:?}: nothing verified, the check is empty"
        );
        assert_eq!(
            report.ibp_only, 0,
            "{soundness:?}: IBP verifies what CROWN does not"
        );
        for e in &images {
            // Verified ⇒ PGD finds nothing ⇒ correct.
            assert!(!e.crown || e.pgd_robust, "verified but attacked");
            assert!(!e.pgd_robust || e.correct);
        }
        assert!(report.crown_verified_error <= report.ibp_verified_error);
        assert!(report.pgd_error <= report.crown_verified_error);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_short_mnist_run_lowers_the_robust_loss() {
    let Some(shared) = nncert_model::io::shared_dir() else {
        eprintln!("SKIP: ../shared not found (set NNCERT_SHARED); MNIST training run not checked");
        return;
    };
    let dir = shared.join("data/mnist");
    let train = nncert_data::load_mnist(&dir, "train").unwrap().take(512);
    let test = nncert_data::load_mnist(&dir, "t10k").unwrap().take(100);
    let mut cfg = config(3);
    cfg.arch = Architecture::Mlp(vec![64]);
    cfg.schedule.total_steps = 3 * 16;
    let mut t = Trainer::new(cfg, train.shape, 10, Normalization::MNIST).unwrap();
    let before = robust_loss(&t.net, &train, 0.1);
    let out = std::env::temp_dir().join(format!("nncert-train-mnist-{}", std::process::id()));
    t.run((&train, &test), &out, &mut |_| {}, &mut |_| {}, &|| false)
        .unwrap();
    let after = robust_loss(&t.net, &train, 0.1);
    assert!(after < before, "robust loss {before} → {after}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn pgd_training_lowers_the_adversarial_error() {
    let (train, test) = (synthetic(256, 41), synthetic(90, 42));
    let dir = std::env::temp_dir().join(format!("nncert-train-pgd-{}", std::process::id()));
    let mut cfg = config(6);
    cfg.method = Method::Pgd { steps: 5 };
    let mut t = Trainer::new(cfg, [1, 8, 8], 3, NORM).unwrap();
    let attack = EvalConfig {
        eps: 0.1,
        pgd_steps: 20,
        pgd_restarts: 1,
        seed: 9,
        soundness: Soundness::Float32,
    };
    let idx: Vec<usize> = (0..test.len()).collect();
    let (x, y) = batch(&test, &idx).unwrap();
    let attacked = |net: &Net| {
        let r = nncert_train::eval::pgd_robust(net, &x, &y, &attack).unwrap();
        r.iter().filter(|&&ok| !ok).count()
    };
    let before = attacked(&t.net);
    t.run((&train, &test), &dir, &mut |_| {}, &mut |_| {}, &|| false)
        .unwrap();
    let after = attacked(&t.net);
    assert!(after < before / 2, "attacked images {before} → {after}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn table_1_architectures_fit_mnist() {
    let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu).unwrap();
    for arch in [
        Architecture::Small,
        Architecture::Medium,
        Architecture::Large,
    ] {
        let net = Net::new(&arch, [1, 28, 28], 10, Normalization::MNIST, 0).unwrap();
        assert_eq!(net.forward(&x).unwrap().dims(), &[2, 10], "{arch:?}");
        let g = net.to_graph().unwrap();
        assert_eq!(g.output_len(), 10, "{arch:?}");
        let b = net.ibp(&x, 0.1).unwrap();
        assert_eq!(b.lo.dims(), &[2, 10], "{arch:?}");
    }
    let too_small = Net::new(&Architecture::Large, [1, 6, 6], 10, Normalization::MNIST, 0);
    assert!(too_small.is_err());
}

#[test]
fn graphs_of_other_shapes_are_refused() {
    let mut r = StdRng::seed_from_u64(17);
    let linear = |r: &mut StdRng, o: usize, i: usize| nncert_model::Op::Linear {
        weight: nncert_model::testing::random_tensor(r, &[o, i], 1.0),
        bias: Some(nncert_model::testing::random_tensor(r, &[o], 1.0)),
    };
    // Two dense layers without a ReLU between, and one with a ReLU after the last.
    for relus in [[false, false], [true, true]] {
        let mut g = nncert_model::Graph::with_input("x", vec![1, 1, 4, 4]);
        let mut id = g
            .push_reshaped(
                "flatten",
                nncert_model::Op::Reshape,
                vec![0],
                Some(&[1, 16]),
            )
            .unwrap();
        for (k, relu) in relus.into_iter().enumerate() {
            id = g
                .push(
                    &format!("fc{k}"),
                    linear(&mut r, 5, if k == 0 { 16 } else { 5 }),
                    vec![id],
                )
                .unwrap();
            if relu {
                id = g
                    .push(&format!("relu{k}"), nncert_model::Op::Relu, vec![id])
                    .unwrap();
            }
        }
        let err = Net::from_graph(&g).unwrap_err().to_string();
        assert!(err.contains("one ReLU between"), "{relus:?}: {err}");
    }
}
